"""Evidence ingest: gateways upload each segment over tus 1.0 at /api/uploads/; the server verifies it again,
keeps it (stored, or quarantined with its findings: bad evidence is kept, never dropped) and answers with a
signed server receipt, after which the gateway may delete its copy.

An upload's Upload-Metadata carries `manifest` (the manifest envelope) and `dock_receipt` (the gateway's
dock receipt envelope); its body is the media file, empty for records without media. Metadata that cannot
be indexed (no manifest, or one that does not parse) is refused with 400 when the upload is created, before
any byte is sent; the gateway keeps such a segment.

Completion runs in the tus completion hook, which runs again for an upload whose earlier run did not finish
(a crash, a failure), so it is idempotent: a manifest stored once is never stored or logged again, and the
stored receipt is the answer. The blob is put before the row is committed; the row, the log entries and the
receipt commit together.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, RowMapping, bindparam, case, false, insert, select
from sqlalchemy.exc import IntegrityError

from protocol import errors, log_records, manifest, receipts, signatures
from protocol.errors import ProtocolError
from protocol.fields import HEX64
from protocol.manifest import Manifest
from protocol.tlog.tiles import MAX_ENTRY_SIZE
from protocol.trust import TrustList
from server import api
from server import ingest_checks as checks
from server.ingest_checks import Body, DockReceipt, Finding, Stored
from server.orphans import collect_orphans
from server.schema import dock_receipts, enrolled, segment_markers, segments
from server.services import Services, services
from server.tus import CompletedUpload, TusUploads

PREFIX = "/api/uploads/"
MANIFEST, DOCK_RECEIPT = "manifest", "dock_receipt"
RECEIPT_HEADER = "Liuhen-Server-Receipt"
UPKEEP_SECONDS = 600
_ATTEMPTS = 3
_CHUNK = 1024 * 1024
_DOCK_RECEIPTS_KEPT = 64
_KIND = log_records.ENTRY_KINDS

log = logging.getLogger("liuhen.server.ingest")
routes = api.Routes("ingest")


@dataclass(frozen=True)
class Metadata:
    envelope: bytes
    manifest: Manifest
    dock_receipt: bytes


def read_metadata(metadata: dict[str, bytes]) -> Metadata:
    """The manifest and dock receipt an upload carries, parsed; a 400 ApiError if they cannot be indexed."""
    missing = [k for k in (MANIFEST, DOCK_RECEIPT) if k not in metadata]
    if missing:
        raise api.bad_request(f"Upload-Metadata lacks {' and '.join(missing)}: the manifest and the dock receipt "
                              "envelopes, base64")
    for key in (MANIFEST, DOCK_RECEIPT):
        if len(metadata[key]) > MAX_ENTRY_SIZE:
            # Both become log entries, and an entry bundle (C2SP tlog-tiles) cannot hold a longer one.
            raise api.ApiError(413, "too_large", f"{key} is {len(metadata[key])} bytes; a log entry is at most "
                                                 f"{MAX_ENTRY_SIZE} (split long dock receipts)")
    try:
        m = _parse_manifest(metadata[MANIFEST])
    except ProtocolError as exc:
        raise api.ApiError(400, exc.code, f"{MANIFEST}: {exc.message}") from None
    try:
        checks.dock_fields(metadata[DOCK_RECEIPT])
    except ProtocolError as exc:
        raise api.ApiError(400, exc.code, f"{DOCK_RECEIPT}: {exc.message}") from None
    return Metadata(metadata[MANIFEST], m, metadata[DOCK_RECEIPT])


@functools.lru_cache(maxsize=1024)
def _parse_manifest(envelope: bytes) -> Manifest:
    # Parsed when the upload is created and again when it completes: the second time comes from here.
    return manifest.parse(signatures.open_envelope(envelope, manifest.TYPE).payload)


async def _check_creation(metadata: dict[str, bytes], _length: int) -> None:
    read_metadata(metadata)


async def _gateway_of(request: web.Request) -> str:
    # The access guard let only gateways through; tus records the gateway as the upload's owner.
    return str(request[api.PRINCIPAL].id)


def _hash_file(path: Path) -> Body:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return Body(size, digest.hexdigest())


# Statements of every ingest, built once: building one costs more than running it.
_STORED_RECEIPT = select(segments.c.server_receipt).where(segments.c.manifest == bindparam("manifest"))
_DOCK_ID = select(dock_receipts.c.id).where(dock_receipts.c.sha256 == bindparam("sha256"))
_UNIT = select(enrolled.c.unit).where(enrolled.c.id == bindparam("device"), enrolled.c.role == "device")
_AROUND = (select(segments.c.seq, segments.c.manifest, segments.c.envelope)
           .where(segments.c.device == bindparam("device"), segments.c.seq.in_(bindparam("seqs", expanding=True)))
           .order_by(case((segments.c.status == receipts.STORED, 0), else_=1), segments.c.id))


def stored_receipt(conn: Connection, manifest_hash: str) -> bytes | None:
    return conn.execute(_STORED_RECEIPT, {"manifest": manifest_hash}).scalar()


class Ingest:
    """The tus uploads of one server process and what happens when one is complete."""

    def __init__(self, s: Services) -> None:
        self.s = s
        self.uploads = TusUploads(s.config.upload_dir, max_size=s.config.upload_max_bytes,
                                  expires_after_ns=s.config.upload_expiry_hours * 3600 * 10**9,
                                  authorize=_gateway_of, on_complete=self._on_complete, on_create=_check_creation,
                                  now_ns=s.clock)
        self.handlers = self.uploads.handlers()
        # Verified dock receipts by (SHA-256, trust list version): one receipt comes with each of its segments.
        self._docks: OrderedDict[tuple[str, tuple[int, int]], DockReceipt] = OrderedDict()
        self._docks_lock = threading.Lock()

    async def _on_complete(self, upload: CompletedUpload) -> dict[str, str]:
        receipt = await self.s.db.run(self.ingest, upload.principal, upload.metadata, upload.data_path,
                                      upload.sha256)
        return {RECEIPT_HEADER: base64.b64encode(receipt).decode("ascii")}

    def ingest(self, gateway: str, metadata: dict[str, bytes], path: Path, sha256: str | None = None) -> bytes:
        """Keep one uploaded segment and return its server receipt (the stored one if it was kept before).
        `sha256` is the file's, when tus hashed it on the way in; otherwise the file is read and hashed here."""
        meta = read_metadata(metadata)
        body = Body(path.stat().st_size, sha256) if sha256 is not None else _hash_file(path)
        # Even quarantined footage is kept, under its real hash; a record without media has no blob.
        keep_blob = meta.manifest.media is not None or body.size > 0
        if keep_blob:
            self.s.blobs.put_file(path, body.sha256)
        for attempt in range(_ATTEMPTS):
            try:
                with self.s.db.write() as conn:
                    receipt = self._commit(conn, gateway, meta, body, keep_blob)
                break
            except IntegrityError:
                # Another process stored the same manifest or dock receipt since we looked: look again.
                if attempt == _ATTEMPTS - 1:
                    raise
        if keep_blob and not self.s.blobs.exists(body.sha256):
            # An orphan collection took the blob between the put and the commit (see server/orphans.py).
            self.s.blobs.put_file(path, body.sha256)
        return receipt

    def _commit(self, conn: Connection, gateway: str, meta: Metadata, body: Body, keep_blob: bool) -> bytes:
        s, m = self.s, meta.manifest
        manifest_hash = m.hash.hex()
        known = stored_receipt(conn, manifest_hash)
        if known is not None:
            return known
        dock_sha256 = hashlib.sha256(meta.dock_receipt).hexdigest()
        dock_id = conn.execute(_DOCK_ID, {"sha256": dock_sha256}).scalar()
        entries = [] if dock_id is not None else [(_KIND[receipts.DOCK_TYPE], meta.dock_receipt)]
        entries.append((_KIND[manifest.TYPE], meta.envelope))
        now = s.clock()
        first = s.log.append(conn, entries, now)
        # Appending holds the log's lock until commit, so the neighbours read below cannot change meanwhile.
        if dock_id is None:
            f = checks.dock_fields(meta.dock_receipt)
            dock_id = conn.execute(insert(dock_receipts), dict(
                sha256=dock_sha256, gateway=f["gateway"], device=f["device"], first_seq=f["first_seq"],
                last_seq=f["last_seq"], envelope=meta.dock_receipt, log_index=first)).inserted_primary_key[0]
        log_index = first + len(entries) - 1
        version, trust = s.trust.versioned(conn)
        dock = self._dock_receipt(meta.dock_receipt, dock_sha256, version, trust)
        findings = (checks.check_segment(meta.envelope, m, body, trust, _stored_around(conn, m))
                    + checks.check_dock_receipt(dock, m, body.sha256 if m.media is not None else None, gateway))
        failed = list(dict.fromkeys(f["code"] for f in findings if f["code"] not in errors.INFORMATIONAL))
        media_sha256 = body.sha256 if keep_blob else None
        status = receipts.QUARANTINED if failed else receipts.STORED
        receipt = receipts.issue(s.identity.signer, receipts.SERVER_TYPE, {
            "server": s.identity.name, "gateway": gateway, "device": m.device, "seq": m.seq,
            "manifest": manifest_hash, "media_sha256": media_sha256, "received_ns": now, "log_index": log_index,
            "status": status, "findings": failed,
        })
        segment_id = conn.execute(insert(segments), dict(
            manifest=manifest_hash, device=m.device, seq=m.seq, kind=m.kind, **_times_and_place(m),
            officer=(m.fields["assignment"] or {}).get("officer"), unit=_unit(conn, m.device),
            markers=len(m.fields["markers"]), media_name=m.media["name"] if m.media else None,
            media_sha256=media_sha256, media_size=body.size if keep_blob else None, status=status,
            findings=json.dumps(findings, ensure_ascii=False), gateway=gateway, received_ns=now,
            log_index=log_index, envelope=meta.envelope, dock_receipt_id=dock_id, server_receipt=receipt,
        )).inserted_primary_key[0]
        if m.fields["markers"]:
            conn.execute(insert(segment_markers), [{"segment_id": segment_id, "t_ns": k["t_ns"], "kind": k["kind"]}
                                                   for k in m.fields["markers"]])
        return receipt


    def _dock_receipt(self, raw: bytes, sha256: str, version: tuple[int, int], trust: TrustList) -> DockReceipt:
        key = (sha256, version)
        with self._docks_lock:
            known = self._docks.get(key)
        if known is None:
            known = checks.open_dock_receipt(raw, trust)
            with self._docks_lock:
                self._docks[key] = known
                if len(self._docks) > _DOCK_RECEIPTS_KEPT:
                    self._docks.popitem(last=False)
        return known


def _times_and_place(m: Manifest) -> dict[str, int | None]:
    points = m.fields["track"]["points"]
    lats, lons = [p["lat_e7"] for p in points], [p["lon_e7"] for p in points]
    return {"start_ns": m.time["start_ns"], "end_ns": m.time["end_ns"],
            "min_lat_e7": min(lats, default=None), "max_lat_e7": max(lats, default=None),
            "min_lon_e7": min(lons, default=None), "max_lon_e7": max(lons, default=None)}


def _unit(conn: Connection, device: str) -> str | None:
    return conn.execute(_UNIT, {"device": device}).scalar()


def _stored_around(conn: Connection, m: Manifest) -> list[Stored]:
    """Every stored manifest of the device at `seq` (forks), and one at `seq ± 1`: a stored one before a
    quarantined one, then the first received."""
    rows = conn.execute(_AROUND, {"device": m.device, "seqs": [m.seq - 1, m.seq, m.seq + 1]}).all()
    around: list[Stored] = []
    for r in rows:
        if r.seq == m.seq or all(s.seq != r.seq for s in around):
            around.append(Stored(r.seq, r.manifest, r.envelope))
    return around


# Startup recovery and upkeep

INGEST = web.AppKey("ingest", Ingest)


async def upkeep(ingest: Ingest) -> None:
    swept = await ingest.uploads.sweep_expired()
    collected = await ingest.s.db.run(collect_orphans, ingest.s)
    if swept or collected:
        log.info("swept %d expired uploads, collected %d orphan blobs", swept, collected)


async def maintenance(app: web.Application) -> AsyncIterator[None]:
    """At startup, finish what a crash interrupted: finalize complete uploads, then sweep and collect; then
    sweep and collect every 10 minutes until the server stops."""
    ingest = app[INGEST]
    finalized = await ingest.uploads.finalize_pending()
    if finalized:
        log.info("finalized %d uploads completed before a restart", finalized)
    await upkeep(ingest)

    async def every_while() -> None:
        while True:
            await asyncio.sleep(UPKEEP_SECONDS)
            try:
                await upkeep(ingest)
            except Exception:
                log.exception("ingest upkeep failed; trying again in %d s", UPKEEP_SECONDS)

    task = asyncio.create_task(every_while())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


# Routes

def _tus(method: str, on_upload: bool, summary: str, access: str) -> None:
    async def handle(request: web.Request) -> web.StreamResponse:
        return await request.app[INGEST].handlers[(method, on_upload)](request)

    routes.add(method, PREFIX + "{upload_id}" if on_upload else PREFIX, summary=summary, access=access,
               raw=True)(handle)


_tus("OPTIONS", False, "tus 1.0: what the upload endpoint supports", api.PUBLIC)
_tus("POST", False, "tus 1.0: create an upload of one segment; Upload-Metadata carries `manifest` and "
     "`dock_receipt` (the envelopes); refused with 400 and a finding code if they cannot be indexed", api.GATEWAY)
_tus("HEAD", True, "tus 1.0: an upload's offset; once complete, also its Liuhen-Server-Receipt", api.GATEWAY)
_tus("PATCH", True, "tus 1.0: append bytes at Upload-Offset; the last answers with Liuhen-Server-Receipt (base64 "
     "of the signed server receipt)", api.GATEWAY)
_tus("DELETE", True, "tus 1.0: abandon an upload", api.GATEWAY)


@routes.add("GET", "/api/ingest/receipts/{manifest}", summary="The server receipt of a stored manifest (by its "
            "hash), for a gateway that lost the upload's answer", access=api.GATEWAY,
            responses={400: "not a manifest hash", 404: "not stored"})
async def server_receipt(request: web.Request) -> web.Response:
    manifest_hash = request.match_info["manifest"]
    if not HEX64.fullmatch(manifest_hash):
        raise api.bad_request("a manifest hash is 64 lower-case hex digits")
    s = services(request)

    def read() -> bytes | None:
        with s.db.read() as conn:
            return stored_receipt(conn, manifest_hash)

    receipt = await s.db.run(read)
    if receipt is None:
        raise api.not_found(f"no stored manifest {manifest_hash}")
    return web.Response(body=receipt, content_type=receipts.SERVER_TYPE)


_QUARANTINE_QUERY = {"limit": {"type": "integer", "description": "at most this many (1-1000, default 100)"},
                     "offset": {"type": "integer", "description": "skip this many (default 0)"}}


@routes.add("GET", "/api/quarantine", summary="Footage that failed verification, newest first, with its findings: "
            "a supervisor's unit, or all for an administrator", access=(api.SUPERVISOR, api.ADMINISTRATOR),
            query=_QUARANTINE_QUERY)
async def quarantine(request: web.Request) -> web.Response:
    q = api.query_params(request, _QUARANTINE_QUERY)
    limit, offset = q.get("limit", 100), q.get("offset", 0)
    if not 1 <= limit <= 1000 or offset < 0:
        raise api.bad_request("limit is 1-1000 and offset at least 0")
    principal = request[api.PRINCIPAL]
    s = services(request)
    where = [segments.c.status == receipts.QUARANTINED]
    if principal.role != api.ADMINISTRATOR:
        where.append(segments.c.unit == principal.unit if principal.unit else false())

    def read() -> list[dict[str, Any]]:
        with s.db.read() as conn:
            rows = conn.execute(select(segments).where(*where).order_by(segments.c.received_ns.desc(),
                                                                          segments.c.id.desc())
                                .limit(limit).offset(offset)).mappings().all()
        return [_quarantined(r) for r in rows]

    return web.json_response({"segments": await s.db.run(read)})


def _quarantined(r: RowMapping) -> dict[str, Any]:
    findings: list[Finding] = json.loads(r["findings"])
    return {**{k: r[k] for k in ("id", "device", "seq", "kind", "manifest", "start_ns", "end_ns", "officer", "unit",
                                 "gateway", "received_ns", "log_index", "media_sha256", "media_size")},
            "findings": findings}
