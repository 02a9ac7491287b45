"""Exports: an evidence package (the sealed zip `liuhen verify` checks offline) or an MP4 clip.

POST /api/exports writes the audit record and custody event first and commits them, then builds the
file in a worker thread under `export_dir` and answers with its id, digest and URL;
GET /api/exports/{id} streams it (with Range, so a large package can resume) to the person who
asked, until `export_hours` have passed. Building after answering would save the client a wait but
leave it polling; building first means the answer already says whether the export worked.

A package holds each device's chain unbroken from the first to the last segment selected (see
server.clips.with_chain_between); purged segments come with their tombstones instead of media. An
MP4 is one device's recording, remuxed from the originals and labelled as derived (its label names
the export, the person and the commitment to the reason); purged segments leave gaps in it.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, Row, insert, select, update

from server import api, audit, byte_ranges, clips
from server.api import Principal
from server.blobs import BlobError, read_file_range
from server.derived_clip import ClipError, ClipSource, remux_clip
from server.evidence_package import PackageError
from server.package_contents import write_evidence_package
from server.schema import exports
from server.services import Services, services

routes = api.Routes("exports")

PACKAGE, MP4 = "package", "mp4"
FORMATS = {PACKAGE: ("export-package", "zip", "application/zip"), MP4: ("export-mp4", "mp4", "video/mp4")}
BUILDING, READY, FAILED, EXPIRED = "building", "ready", "failed", "expired"
_HOUR_NS = 3600 * 10**9

_EXPORT = {"type": "object", "required": ["format", "reason"], "additionalProperties": False,
           "properties": {"format": {"enum": list(FORMATS)}, **clips.SELECTION_PROPERTIES}}


@dataclass(frozen=True)
class Plan:
    """What one export holds, settled (and audited) before anything is built."""

    id: str
    format: str
    rows: list[Row[Any]]  # the segments in the file, chain order
    purged: list[int]  # segments whose media retention deleted: tombstones in a package, gaps in an MP4
    from_ns: int
    to_ns: int


def file_path(s: Services, export_id: str, fmt: str) -> Path:
    return s.config.export_dir / f"{export_id}.{FORMATS[fmt][1]}"


def _plan(conn: Connection, principal: Principal, export_id: str, fmt: str, sel: clips.Selection) -> Plan:
    rows = clips.resolve(conn, principal, sel)
    if fmt == PACKAGE:
        rows = clips.with_chain_between(conn, principal, rows)
        purged = [r.id for r in rows if r.media_sha256 is not None and r.purged_ns is not None]
    else:
        media = clips.with_media(rows, explicit=sel.clip is None)
        purged = [r.id for r in media if r.purged_ns is not None]
        rows = [r for r in media if r.purged_ns is None]
        if len({r.device for r in rows}) > 1:
            raise api.bad_request("an MP4 holds one device's recording: export one device at a time, "
                                  "or all of them in a package")
        if any(b.start_ns <= a.start_ns for a, b in itertools.pairwise(rows)):
            raise api.bad_request("these segments' times do not increase with their sequence numbers (a clock "
                                  "step on the recorder), so they make no single MP4: export a package")
    if sel.clip is not None:
        return Plan(export_id, fmt, rows, purged, sel.clip.from_ns, sel.clip.to_ns)
    return Plan(export_id, fmt, rows, purged, min(r.start_ns for r in rows), max(r.end_ns for r in rows))


@routes.add("POST", "/api/exports", summary="Export footage as an evidence package or an MP4 clip, with a stated "
            "reason: writes the audit record and custody event, builds the file and returns its download URL",
            access=api.USERS, body=_EXPORT,
            responses={201: "built", 400: "no reason, or a bad selection", 404: "no such footage that you may see",
                       410: "all of it purged by retention", 422: "the file could not be built from the originals"})
async def create_export(request: web.Request) -> web.Response:
    req = await clips.read_request(request, _EXPORT)
    body, sel, principal, s = req.body, req.selection, req.principal, services(request)
    fmt, case = body["format"], body.get("case")
    export_id = f"exp-{secrets.token_hex(10)}"

    def audited() -> tuple[Plan, int, int, str]:
        with s.db.write() as conn:
            clips.check_case(conn, case)
            plan = _plan(conn, principal, export_id, fmt, sel)
            audit_id = req.audit(conn, s, FORMATS[fmt][0], plan.rows, case=case,
                                 detail={"export": export_id, "purged": plan.purged})
            now = s.clock()
            expires_ns = now + s.config.export_hours * _HOUR_NS
            conn.execute(insert(exports).values(id=export_id, user_id=principal.id, audit_id=audit_id, format=fmt,
                                                status=BUILDING, created_ns=now, expires_ns=expires_ns))
            return plan, audit_id, expires_ns, audit.commitment_of(conn, audit_id)

    plan, audit_id, expires_ns, reason_sha256 = await s.db.run(audited)
    await s.db.run(sweep_expired, s)
    fields = {"id": export_id, "created_ns": s.clock(), "server": s.identity.name, "actor": principal.actor,
              "reason_sha256": reason_sha256, "case": case}
    try:
        built = await asyncio.to_thread(_build, s, plan, fields)
    except (ClipError, PackageError, BlobError) as exc:  # BlobError: purged by retention since the audit
        await s.db.run(_finish, s, export_id, {"status": FAILED, "error": str(exc)})
        raise api.ApiError(422, "export_failed", f"export {export_id} could not be built: {exc}") from None
    except BaseException:
        await s.db.run(_finish, s, export_id, {"status": FAILED, "error": "the server failed; see its log"})
        raise
    await s.db.run(_finish, s, export_id, {"status": READY, "sha256": built["sha256"], "size": built["size"]})
    segment_ids = [r.id for r in plan.rows]
    return web.json_response({"id": export_id, "format": fmt, "url": f"/api/exports/{export_id}",
                              "audit_id": audit_id, "expires_ns": expires_ns, "segments": segment_ids,
                              "purged": plan.purged, **built}, status=201)


def _build(s: Services, plan: Plan, fields: Mapping[str, Any]) -> dict[str, Any]:
    folder = s.config.export_dir
    staging = folder / f".{plan.id}.media"
    staging.mkdir(parents=True, exist_ok=True)
    try:
        # Copies through the blob store's interface, which an object store implements as well as a folder.
        media: dict[str, Path] = {}
        for r in plan.rows:
            if r.media_sha256 is not None and r.purged_ns is None and r.media_sha256 not in media:
                media[r.media_sha256] = staging / r.media_sha256
                s.blobs.copy_to(r.media_sha256, media[r.media_sha256])
        out = file_path(s, plan.id, plan.format)
        if plan.format == PACKAGE:
            devices = sorted({r.device for r in plan.rows})
            info = write_evidence_package(s, plan.rows, media, {
                **fields, "clip": {"devices": devices, "from_ns": plan.from_ns, "to_ns": plan.to_ns}}, out)
            return {"sha256": info.sha256, "size": info.size}
        return _remux(plan, media, fields, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remux(plan: Plan, media: Mapping[str, Path], fields: Mapping[str, Any], out: Path) -> dict[str, Any]:
    sources = [ClipSource(media[r.media_sha256], r.start_ns, r.manifest, r.media_sha256) for r in plan.rows]
    label = {"export_id": plan.id, "exported_by": fields["actor"], "reason_sha256": fields["reason_sha256"]}
    result = remux_clip(sources, plan.from_ns, plan.to_ns, out, label)
    by_manifest = {r.manifest: r for r in plan.rows}
    return {
        "sha256": result.sha256, "size": result.size, "start_ns": result.start_ns, "end_ns": result.end_ns,
        "starts_early_ns": result.starts_early_ns,
        "originals": [{"segment": by_manifest[c.manifest].id, "device": by_manifest[c.manifest].device,
                       "seq": by_manifest[c.manifest].seq, "manifest": c.manifest, "media_sha256": c.media_sha256}
                      for c in result.sources],
    }


def _finish(s: Services, export_id: str, values: dict[str, Any]) -> None:
    with s.db.write() as conn:
        conn.execute(update(exports).where(exports.c.id == export_id).values(**values))


def sweep_expired(s: Services) -> None:
    """Delete the files of exports past their time; their rows stay, as the history of what was exported."""
    with s.db.write() as conn:
        done = conn.execute(select(exports.c.id, exports.c.format).where(
            exports.c.status != EXPIRED, exports.c.expires_ns <= s.clock())).all()
        for export_id, fmt in done:
            file_path(s, export_id, fmt).unlink(missing_ok=True)
        if done:
            conn.execute(update(exports).where(exports.c.id.in_([e for e, _ in done])).values(status=EXPIRED))


@routes.add("GET", "/api/exports/{export_id}", summary="Download a built export (the person who made it only; "
            "HTTP Range supported)", access=api.USERS, footage=True,
            responses={206: "the requested range", 403: "another person's export", 404: "no such export",
                       409: "the export failed or is not built yet", 410: "the export expired",
                       416: "the range lies beyond the file"})
async def download_export(request: web.Request) -> web.StreamResponse:
    export_id = request.match_info["export_id"]
    principal: Principal = request[api.PRINCIPAL]
    s = services(request)

    def look_up() -> Row[Any]:
        with s.db.read() as conn:
            row = conn.execute(select(exports).where(exports.c.id == export_id)).first()
        if row is None:
            raise api.not_found(f"no export {export_id}")
        if row.user_id != principal.id:
            raise api.forbidden("this export was made by another person: export it yourself, with your reason")
        if row.status == EXPIRED or row.expires_ns <= s.clock():
            raise api.ApiError(410, "export_expired", "the export expired and its file was deleted: export again")
        if row.status != READY:
            raise api.ApiError(409, "export_not_ready", f"the export is {row.status}: {row.error or 'not built yet'}")
        return row

    row = await s.db.run(look_up)
    path = file_path(s, row.id, row.format)
    return await byte_ranges.serve(request, size=row.size, sha256=row.sha256, read=partial(read_file_range, path),
                                   content_type=FORMATS[row.format][2], filename=path.name)
