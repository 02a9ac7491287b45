"""The gateway's side of the docking bays: the dock link of docs/gateway.md over HTTP (aiohttp).

Each bay is its own listening address (in production the bay interface's address, in simulation one port
per bay on 127.0.0.1) served by its own small application, so the bay is known from the socket the
recorder reached and a session token from one bay is worth nothing on another. The recorder is the
client; the gateway decides what is sent and in which order, verifies, keeps and signs for it:

    POST /dock/hello      {device}                  -> {gateway, nonce, gateway_ns}
    POST /dock/session    the device-signed hello   -> {token, gateway_ns, clock_offset_ns}
    POST /dock/pending    {manifests: [...]}        -> the plan: {send, held, refused}
    PUT  /dock/files/SEQ  bytes from Dock-Offset    -> {seq, offset, complete, result}
    POST /dock/receipts   {seqs}                    -> {receipts: [...]}
    GET  /dock/assignment                           -> {assignment: envelope | null}  (a check-out)
    POST /dock/assignment {ref}                     -> {delivered: ref}   (signed into the recorder's chain)

Refusals are JSON `{error, message}` with a finding code; every one but a routine resume offset is kept on
the bay for the station page.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from gateway.bays import CHECKING, DISK_FULL, DONE, REFUSED, Bay, Bays
from gateway.device_trust import DeviceTrust
from gateway.dock_checks import review
from gateway.dock_disk import FairDisk
from gateway.dock_receipts import issue_receipts
from gateway.dock_session import BayLink, DockError, DockSession
from gateway.dock_transfer import DiskReserve, Transfers, arrival, refused_when_full
from gateway.spool import Spool
from protocol import dock, errors, signatures
from protocol.dock import Challenge, FileAnswer, Offer, Plan, SessionAnswer, Transfer
from protocol.errors import ProtocolError

log = logging.getLogger("liuhen.gateway.dock")

_QUIET = frozenset({errors.DOCK_OFFSET_MISMATCH})  # a recorder resuming where the gateway is: routine


@dataclass(frozen=True)
class DockSettings:
    gateway: str  # this gateway's id, as enrolled on the server
    reserve_bytes: int = 2 * 1024**3  # free space kept on the spool's disk: below it nothing more is taken
    chunk_bytes: int = 1024**2  # bytes per disk write: a bay's turn in the rotation
    disk_workers: int = 2
    read_timeout_s: float = 30.0  # a link silent this long mid-file is taken as lost
    max_pending_bytes: int = 64 * 1024**2  # the largest pending list (about 30,000 manifests)


class Assignments(Protocol):
    """Check-outs waiting for their recorder (gateway/checkout.py): handed over at the dock."""

    def pending_for(self, device: str) -> bytes | None: ...

    def delivered(self, device: str, ref: str) -> None: ...


class _NoCheckouts:
    def pending_for(self, device: str) -> bytes | None:
        return None

    def delivered(self, device: str, ref: str) -> None:
        raise DockError(404, errors.DOCK_MALFORMED, f"no check-out {ref} is waiting for {device}")


class Dock:
    """The bays' shared state and the steps of the dock link; the handlers below only translate HTTP."""

    def __init__(self, settings: DockSettings, spool: Spool, signer: signatures.Signer, trust: DeviceTrust,
                 bays: Bays, *, clock: Callable[[], int] = time.time_ns,
                 free_bytes: Callable[[], int] | None = None, assignments: Assignments | None = None,
                 on_receipts: Callable[[], None] = lambda: None) -> None:
        self.settings = settings
        self.spool = spool
        self.signer = signer
        self.trust = trust
        self.bays = bays
        self.clock = clock
        self.assignments = assignments or _NoCheckouts()
        self.on_receipts = on_receipts  # receipted footage may be uploaded now (the uploader's wake)
        self.links = {name: BayLink() for name in bays.names()}
        self.disk = FairDisk(settings.disk_workers)
        self.transfers = Transfers(spool, self.disk, DiskReserve(spool.root, settings.reserve_bytes, free_bytes),
                                   trust, settings.chunk_bytes, settings.read_timeout_s)

    def hello(self, bay: Bay, device: str) -> Challenge:
        """A device names itself: a fresh challenge, and whatever session the bay had ends."""
        challenge = Challenge(device, self.settings.gateway, secrets.token_hex(16), self.clock())
        self.links[bay.name] = BayLink(challenge=challenge)
        bay.docked(device)
        return challenge

    def open_session(self, bay: Bay, raw: bytes) -> SessionAnswer:
        """Check the device's signed hello against the bay's challenge; on success, a session token."""
        link = self.links[bay.name]
        challenge, link.challenge = link.challenge, None  # one answer per challenge
        if challenge is None:
            raise DockError(403, errors.DOCK_CHALLENGE_MISMATCH, "no challenge on this bay: say hello first")
        now = self.clock()
        try:
            hello = dock.open_hello(raw, self.trust.current())
            dock.check_answers(hello, challenge, now)
        except ProtocolError as exc:
            malformed = exc.code == errors.DOCK_MALFORMED or exc.code.startswith("envelope.")
            raise DockError(400 if malformed else 403, exc.code,
                            f"{challenge.device} may not dock here: {exc.message}; its footage stays on it") from exc
        offset = dock.midpoint_offset(hello["device_ns"], challenge.gateway_ns, now)
        link.session = DockSession(secrets.token_hex(16), challenge.device, offset)
        return SessionAnswer(link.session.token, self.clock(), offset)

    async def plan(self, bay: Bay, session: DockSession, offers: list[Offer]) -> Plan:
        """Verify what the recorder offers, admit records without files at once, and plan the files:
        marked first, each from the offset the gateway holds already."""
        self.transfers.reserve.check(0)
        bay.set_state(CHECKING)
        device = session.device
        async with self.transfers.lock(device):
            found = await asyncio.to_thread(review, device, offers, self.trust.current(), self.spool)
            records = [o for o in found.take if not o.has_file]
            for o in records:
                await self.transfers.admit(arrival(device, o, None, 0, list(o.findings)))
            files = sorted((o for o in found.take if o.has_file), key=lambda o: (not o.marked, o.seq))
            send = [Transfer(o.seq, self.transfers.offset(device, o.seq, size), size)
                    for o in files if (size := o.size) is not None]
        session.plan = {o.seq: o for o in files}
        bay.planned(len(send), sum(t.size for t in send), sum(t.offset for t in send))
        for r in found.refused:
            bay.report(r.code, f"seq {r.seq}: {r.message}" if r.seq is not None else r.message)
        return Plan(send, sorted(found.held + [o.seq for o in records]), found.refused)

    async def receipts(self, bay: Bay, session: DockSession, seqs: list[int]) -> list[bytes]:
        """Sign receipts for everything of the device that arrived without one, and hand back every receipt
        that names any of `seqs` (issued now or before: a recorder that crashed gets them again)."""
        device = session.device
        async with self.transfers.lock(device):
            fresh = await asyncio.to_thread(self.spool.unreceipted, device)
            for covered, raw in issue_receipts(self.signer, self.settings.gateway, device, fresh, self.clock(),
                                               session.clock_offset_ns):
                with refused_when_full("recording a dock receipt"):
                    await asyncio.to_thread(self.spool.attach_receipt, device, covered, raw)
            if fresh:
                self.on_receipts()
            wanted = set(seqs) | {s.seq for s in fresh}
            envelopes = await asyncio.to_thread(self.spool.dock_receipts, device, sorted(wanted))
        if not session.plan:
            bay.set_state(DONE)
        return envelopes

    async def close(self) -> None:
        await self.disk.close()


# -- HTTP ------------------------------------------------------------------------------------------------

BAY = web.AppKey("bay", str)
DOCK = web.AppKey("dock", Dock)


def _bay(request: web.Request) -> Bay:
    return request.app[DOCK].bays[request.app[BAY]]


def _dock(request: web.Request) -> Dock:
    return request.app[DOCK]


def _session(request: web.Request) -> DockSession:
    auth = request.headers.get("Authorization", "")
    token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
    return _dock(request).links[request.app[BAY]].session_for(token)


async def _json(request: web.Request) -> object:
    try:
        return json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DockError(400, errors.DOCK_MALFORMED, f"the body is not JSON: {exc}") from exc


async def _hello(request: web.Request) -> web.Response:
    challenge = _dock(request).hello(_bay(request), dock.check_hello_request(await _json(request)))
    return web.json_response(challenge.to_json())


async def _open_session(request: web.Request) -> web.Response:
    answer = _dock(request).open_session(_bay(request), await request.read())
    return web.json_response({"token": answer.token, "gateway_ns": answer.gateway_ns,
                              "clock_offset_ns": answer.clock_offset_ns})


async def _pending(request: web.Request) -> web.Response:
    session = _session(request)
    plan = await _dock(request).plan(_bay(request), session, dock.parse_pending(await _json(request)))
    return web.json_response(plan.to_json())


async def _file(request: web.Request) -> web.Response:
    session = _session(request)
    try:
        seq = int(request.match_info["seq"])
        offset = int(request.headers[dock.OFFSET_HEADER])
    except (KeyError, ValueError) as exc:
        raise DockError(400, errors.DOCK_MALFORMED, f"a file is PUT at /dock/files/<seq> with a "
                                                    f"{dock.OFFSET_HEADER} header") from exc
    if request.content_length is None:
        raise DockError(411, errors.DOCK_MALFORMED, "a file's bytes come with a Content-Length")
    answer: FileAnswer = await _dock(request).transfers.receive(_bay(request), session, seq, offset,
                                                                request.content_length, request.content)
    return web.json_response({"seq": answer.seq, "offset": answer.offset, "complete": answer.complete,
                              "result": answer.result})


async def _assignment(request: web.Request) -> web.Response:
    session = _session(request)
    raw = await asyncio.to_thread(_dock(request).assignments.pending_for, session.device)
    return web.json_response({"assignment": raw.decode("ascii") if raw is not None else None})


async def _assignment_applied(request: web.Request) -> web.Response:
    session = _session(request)
    ref = dock.parse_assignment_ack(await _json(request))
    try:
        await asyncio.to_thread(_dock(request).assignments.delivered, session.device, ref)
    except ValueError as exc:  # the check-outs know no such assignment for this device
        raise DockError(404, errors.DOCK_MALFORMED, str(exc)) from exc
    return web.json_response({"delivered": ref})


async def _receipts(request: web.Request) -> web.Response:
    session = _session(request)
    envelopes = await _dock(request).receipts(_bay(request), session,
                                              dock.parse_receipts_request(await _json(request)))
    return web.json_response({"receipts": [e.decode("ascii") for e in envelopes]})


def _state_after(error: DockError) -> str | None:
    if error.code == errors.DOCK_DISK_FULL:
        return DISK_FULL
    return REFUSED if error.status == 403 else None


@web.middleware
async def _refusals(request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except DockError as exc:
        error = exc
    except ProtocolError as exc:
        error = DockError(400, exc.code, exc.message)
    except Exception:
        log.exception("%s %s on bay %s failed", request.method, request.path, request.app[BAY])
        error = DockError(500, "internal", "the gateway failed (see its log); the recorder keeps its footage")
    if error.code not in _QUIET:
        _bay(request).report(error.code, error.message, state=_state_after(error))
    return web.json_response(error.body(), status=error.status)


def make_bay_app(dock_: Dock, bay: str) -> web.Application:
    app = web.Application(middlewares=[_refusals], client_max_size=dock_.settings.max_pending_bytes)
    app[DOCK] = dock_
    app[BAY] = bay
    app.router.add_post("/dock/hello", _hello)
    app.router.add_post("/dock/session", _open_session)
    app.router.add_post("/dock/pending", _pending)
    app.router.add_put("/dock/files/{seq}", _file)
    app.router.add_post("/dock/receipts", _receipts)
    app.router.add_get("/dock/assignment", _assignment)
    app.router.add_post("/dock/assignment", _assignment_applied)
    return app


async def start_bays(dock_: Dock, addresses: Mapping[str, tuple[str, int]]) -> list[web.AppRunner]:
    """Listen on each bay's address; the runners are cleaned up by the caller (`stop_bays`)."""
    runners = []
    for bay, (host, port) in addresses.items():
        runner = web.AppRunner(make_bay_app(dock_, bay), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        runners.append(runner)
    log.info("dock %s listening on %d bays", dock_.settings.gateway, len(runners))
    return runners


async def stop_bays(dock_: Dock, runners: list[web.AppRunner]) -> None:
    for runner in runners:
        await runner.cleanup()
    await dock_.close()
