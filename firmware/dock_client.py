"""The recorder's side of a docking bay (docs/gateway.md, "The dock link"; docs/protocol.md §10).

The recorder is the HTTP client of its bay. It names itself, proves that it holds its key by signing the
gateway's challenge, and follows the gateway's time (a clock exchange as in NTP: the gateway's reading is
taken to fall halfway through the round trip). Then it offers every manifest it holds without a dock
receipt; the gateway answers with a plan, and the recorder sends the files it asks for, in its order,
each from the offset the gateway already holds, so a dropped link or a restarted gateway costs only the
bytes in flight. Last it asks for the dock receipts, keeps each one it can verify, and frees exactly the
segments a receipt names with the manifest and media hash it holds; everything else stays.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import requests

from firmware.store import RecorderStore, StoreError
from protocol import assignment, dock, errors, layout, signatures
from protocol.assignment import Assignment
from protocol.dock import Challenge, Plan, Refusal, Transfer
from protocol.errors import ProtocolError
from protocol.trust import TrustList

log = logging.getLogger("liuhen.recorder.dock")

# Follows the gateway's time: Recorder.dock_sync(utc_ns, mono_ns, gateway), which signs a clock-sync record.
ClockSync = Callable[[int, int, str], Any]
# Deletes footage a kept receipt names, returning the bytes freed: RecorderStore.free, or a running recorder's
# Recorder.free (on its own thread, since freeing changes what it knows of its storage).
Free = Callable[[list[int]], int]


class DockStopped(Exception):
    """The gateway refused (the device, or a transfer: its disk is full) or broke the protocol: docking ends
    here, and the recorder keeps whatever no receipt covers."""


class _LinkLost(Exception):
    """The link dropped, the gateway restarted or failed for a moment: start again with hello."""


class Undocked(Exception):
    """The recorder left the dock (or is stopping): docking ends at once. The gateway keeps what arrived of a
    file, so the next dock resumes it; nothing without a receipt was freed."""


@dataclass
class DockSummary:
    device: str
    gateway_url: str
    gateway: str | None = None
    clock_offset_ns: int | None = None  # the gateway's clock minus the recorder's, at the clock exchange
    clock_sync_seq: int | None = None  # the clock-sync record the recorder signed, if its clock stepped
    offered: int = 0
    held: int = 0  # manifests the gateway held already or took without a file
    refused: list[Refusal] = field(default_factory=list)
    files_sent: int = 0
    bytes_sent: int = 0
    resumed: dict[int, int] = field(default_factory=dict)  # seq -> offset a file was resumed from
    results: dict[int, str] = field(default_factory=dict)  # seq -> "ok" or the finding it arrived with
    receipts: int = 0
    freed: list[int] = field(default_factory=list)
    freed_bytes: int = 0
    kept: list[int] = field(default_factory=list)  # seqs still without a dock receipt
    assignment: str | None = None  # the ref of the check-out the recorder took at this dock
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc = dict(self.__dict__)
        doc["refused"] = [r.__dict__ for r in self.refused]
        return doc


@dataclass(frozen=True)
class Session:
    token: str
    gateway: str


@dataclass(frozen=True)
class Pending:
    """A manifest the recorder holds without a dock receipt, as it offers it."""

    seq: int
    envelope: bytes
    media_path: Path | None  # None: a record, or a manifest that cannot be read

    def offer(self) -> dock.Offer:
        size = self.media_path.stat().st_size if self.media_path and self.media_path.exists() else None
        return dock.Offer(self.envelope, size)


class DockClient:
    def __init__(self, store: RecorderStore, signer: signatures.Signer, gateways: TrustList, url: str, *,
                 sync: ClockSync | None = None, utc_ns: Callable[[], int] = time.time_ns,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns, http: requests.Session | None = None,
                 retries: int = 5, backoff_s: float = 1.0, sleep: Callable[[float], None] = time.sleep,
                 timeout_s: float = 30.0, stopped: Callable[[], bool] = lambda: False,
                 free: Free | None = None, assign: Callable[[Assignment], None] | None = None) -> None:
        self.store = store
        self.signer = signer
        self.gateways = gateways
        self.url = url.rstrip("/")
        self.sync = sync
        self.utc_ns = utc_ns
        self.monotonic_ns = monotonic_ns
        self.http = http or requests.Session()
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.timeout_s = timeout_s
        self.stopped = stopped
        self.free = free or store.free
        self.assign = assign  # a running recorder signs a check-out into its chain; a stopped store cannot

    # -- the whole dock ---------------------------------------------------------------------------------

    def dock(self) -> DockSummary:
        """Dock once: transfer everything pending, keep the receipts, free what they name. A lost link is
        tried again (from hello) up to `retries` times in a row without progress."""
        summary = DockSummary(self.store.device, self.url)
        failures = 0
        while True:
            progress = (summary.files_sent, summary.bytes_sent)
            try:
                self._check_docked()
                self._dock_once(summary)
                summary.error = None
                break
            except (DockStopped, Undocked) as exc:
                summary.error = str(exc)
                break
            except ProtocolError as exc:
                summary.error = f"the dock protocol was broken: {exc}"
                break
            except _LinkLost as exc:
                summary.error = str(exc)
                failures = 1 if (summary.files_sent, summary.bytes_sent) != progress else failures + 1
                if failures > self.retries:
                    break
                log.warning("dock link lost (%s): again in %.1f s", exc, self.backoff_s * failures)
                self.sleep(self.backoff_s * failures)
        self.free_receipted(summary)
        summary.kept = [p.seq for p in self.pending()]
        return summary

    def _dock_once(self, summary: DockSummary) -> None:
        session = self.connect(summary)
        if self.assign is not None:
            self.take_assignment(session, summary)
        pending = self.pending()
        plan = self.offer(session, pending)
        summary.offered, summary.held, summary.refused = len(pending), len(plan.held), plan.refused
        by_seq = {p.seq: p for p in pending}
        try:
            for transfer in plan.send:
                self.send(session, by_seq[transfer.seq], transfer, summary)
        except DockStopped:
            # What arrived before a transfer was refused (a full disk) is receipted and freed all the same.
            self.apply(self.receipts(session, list(by_seq)), summary)
            raise
        self.apply(self.receipts(session, list(by_seq)), summary)

    def free_receipted(self, summary: DockSummary) -> None:
        """Free what a kept receipt names but is still here: a stop between keeping a receipt and freeing its
        footage would otherwise leave it for good, since it is no longer pending."""
        received = self.store.received()
        left = [seq for seq in self.store.stored_seqs() if seq in received and self._held_as(seq) == received[seq]]
        if left:
            summary.freed_bytes += self.free(left)
            summary.freed.extend(left)

    def _held_as(self, seq: int) -> tuple[str, str | None] | None:
        """(manifest hash, media hash) of what the store holds at `seq`; None if its manifest is unreadable.
        A receipt that names other bytes (a file altered on the recorder) frees nothing."""
        try:
            m = self.store.load(seq).manifest
        except ProtocolError:
            return None
        return m.hash.hex(), m.media["sha256"] if m.media else None

    def _check_docked(self) -> None:
        if self.stopped():
            raise Undocked("the recorder left the dock, or is stopping")

    # -- the steps --------------------------------------------------------------------------------------

    def connect(self, summary: DockSummary) -> Session:
        """Hello, the signed answer to the challenge, and the clock exchange."""
        challenge = dock.parse_challenge(self._post("/dock/hello", None, json={"device": self.store.device}),
                                         self.store.device)
        self._check_gateway(challenge)
        hello = dock.issue_hello(self.signer, challenge, self.utc_ns())
        mono0, utc0 = self.monotonic_ns(), self.utc_ns()
        answer = dock.parse_session_answer(self._post("/dock/session", None, data=hello,
                                                      headers={"Content-Type": dock.HELLO_TYPE}))
        mono1, utc1 = self.monotonic_ns(), self.utc_ns()
        summary.gateway = challenge.gateway
        summary.clock_offset_ns = dock.midpoint_offset(answer.gateway_ns, utc0, utc1)
        if self.sync is not None:
            record = self.sync(answer.gateway_ns, (mono0 + mono1) // 2, challenge.gateway)
            if record is not None:
                summary.clock_sync_seq = record.seq
        return Session(answer.token, challenge.gateway)

    def take_assignment(self, session: Session, summary: DockSummary) -> None:
        """The check-out waiting at the gateway, if any: verified, signed into the chain (so it goes in this
        dock's pending list), then acknowledged. One that does not verify is logged and left waiting."""
        raw = dock.parse_assignment_answer(self._request("GET", "/dock/assignment", session))
        if raw is None:
            return
        try:
            taken = assignment.open_assignment(raw, self.gateways, self.store.device)
        except ProtocolError as exc:
            log.error("the check-out from gateway %s is refused: %s", session.gateway, exc)
            return
        self.assign(taken)
        self._post("/dock/assignment", session, json={"ref": taken.ref})
        summary.assignment = taken.ref

    def _check_gateway(self, challenge: Challenge) -> None:
        """Footage goes only to a gateway whose receipts the recorder can check."""
        if not any(k.role == "gateway" and k.owner == challenge.gateway for k in self.gateways.entries()):
            raise DockStopped(f"gateway {challenge.gateway} is not in the recorder's gateway trust list: "
                              "no footage goes to it")

    def pending(self) -> list[Pending]:
        """What the store holds without a dock receipt, oldest first. A manifest that cannot be read (damaged
        or altered) is offered as it is, for the gateway to refuse and report: it stays on the recorder, and
        the rest still goes."""
        received = self.store.received()
        held = []
        for seq in self.store.stored_seqs():
            if seq in received:
                continue
            try:
                stored = self.store.load(seq)
                held.append(Pending(seq, stored.envelope_path.read_bytes(), stored.media_path))
            except ProtocolError:
                held.append(Pending(seq, (self.store.dir / layout.manifest_name(seq)).read_bytes(), None))
        return held

    def offer(self, session: Session, pending: list[Pending]) -> Plan:
        sendable = [p for p in pending if p.envelope.isascii()]  # a canonical envelope is; no other can travel
        offers = [p.offer() for p in sendable]
        plan = dock.parse_plan(self._post("/dock/pending", session, json={"manifests": [o.to_json() for o in offers]}))
        plan.refused.extend(Refusal(p.seq, errors.ENVELOPE_MALFORMED, "the envelope is not ASCII: kept, not offered")
                            for p in pending if not p.envelope.isascii())
        files = {p.seq for p, o in zip(sendable, offers, strict=True) if o.size is not None}
        unknown = [t.seq for t in plan.send if t.seq not in files]
        if unknown:
            raise ProtocolError(errors.DOCK_MALFORMED, f"the plan asks for files the recorder did not offer: {unknown}")
        return plan

    def send(self, session: Session, held: Pending, transfer: Transfer, summary: DockSummary) -> None:
        """Send one file from the gateway's offset until the gateway has all of it."""
        assert held.media_path is not None
        offset = transfer.offset
        while True:
            if offset:
                summary.resumed[transfer.seq] = offset
            with open(held.media_path, "rb") as f:
                f.seek(offset)
                try:
                    body = self._request("PUT", f"/dock/files/{transfer.seq}", session,
                                         data=_DockedBody(f, transfer.size - offset, self._check_docked),
                                         headers={dock.OFFSET_HEADER: str(offset),
                                                  "Content-Length": str(transfer.size - offset)})
                except _OffsetMismatch as exc:
                    if exc.offset == offset:
                        raise DockStopped(f"the gateway refuses seq {transfer.seq} at the offset it names") from exc
                    offset = exc.offset  # the gateway holds another amount (a write of ours was cut): resume there
                    continue
            answer = dock.parse_file_answer(body)
            summary.bytes_sent += answer.offset - offset
            if answer.complete:
                summary.files_sent += 1
                summary.results[transfer.seq] = answer.result or ""
                return
            offset = answer.offset

    def receipts(self, session: Session, seqs: list[int]) -> list[bytes]:
        return dock.parse_receipts_answer(self._post("/dock/receipts", session, json={"seqs": seqs}))

    def apply(self, envelopes: list[bytes], summary: DockSummary) -> None:
        """Keep each receipt that verifies, and free what it names as this store holds it."""
        for envelope in envelopes:
            try:
                covered = self.store.apply_receipt(envelope, self.gateways)
            except StoreError as exc:
                log.error("%s", exc)
                summary.error = str(exc)
                continue
            summary.receipts += 1
            summary.freed_bytes += self.free(covered)
            summary.freed.extend(covered)

    # -- HTTP -------------------------------------------------------------------------------------------

    def _post(self, path: str, session: Session | None, **kwargs: Any) -> Any:
        return self._request("POST", path, session, **kwargs)

    def _request(self, method: str, path: str, session: Session | None, *, headers: dict[str, str] | None = None,
                 **kwargs: Any) -> Any:
        headers = dict(headers or {})
        if session is not None:
            headers["Authorization"] = f"Bearer {session.token}"
        try:
            r = self.http.request(method, self.url + path, headers=headers, timeout=self.timeout_s, **kwargs)
        except requests.RequestException as exc:
            raise _LinkLost(f"{method} {path}: {exc}") from exc
        if r.status_code == 200:
            try:
                return r.json()
            except ValueError as exc:
                raise DockStopped(f"{method} {path}: the gateway's answer is not JSON") from exc
        _refusal(method, path, r)


class _DockedBody:
    """A file's bytes as requests sends them, block by block, while the recorder stays in the dock: leaving it
    ends the transfer mid-file, as pulling the recorder out would."""

    def __init__(self, file: BinaryIO, length: int, check_docked: Callable[[], None]) -> None:
        self.file, self.length, self.check_docked = file, length, check_docked

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        self.check_docked()
        return self.file.read(n)


# The session or the challenge is gone (the gateway restarted, the bay saw another hello, signing was slow).
_START_AGAIN = frozenset({errors.DOCK_NO_SESSION, errors.DOCK_CHALLENGE_MISMATCH, errors.DOCK_STALE})


class _OffsetMismatch(Exception):
    def __init__(self, offset: int) -> None:
        super().__init__(f"the gateway holds {offset} bytes")
        self.offset = offset


def _refusal(method: str, path: str, r: requests.Response) -> None:
    """Raise what a refusal means for the recorder."""
    try:
        body = r.json()
        code, message = str(body["error"]), str(body["message"])
    except (ValueError, KeyError, TypeError):
        body, code, message = {}, f"http.{r.status_code}", r.text[:200]
    if r.status_code == 409 and isinstance(body.get("offset"), int):
        raise _OffsetMismatch(body["offset"])
    text = f"{method} {path}: {code}: {message}"
    if code in _START_AGAIN or r.status_code == 401 or (r.status_code >= 500 and r.status_code != 507):
        raise _LinkLost(text)
    raise DockStopped(text)
