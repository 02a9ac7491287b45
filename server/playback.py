"""Playing and downloading footage: one stated reason, then any number of Range requests.

A player seeks with many HTTP Range requests and cannot state a reason for each. So the reason is
stated once, to POST /api/access, which writes the audit record and its custody event and, in the
same transaction, a grant: a random token (only its SHA-256 is kept) for those segments, that
person and `access_grant_hours`. A grant never exists without its committed record, so neither does
any byte served under it. GET /api/media/{grant}/{segment_id} then serves the segment's original
file, checking each time that the grant is the caller's, unexpired, covers the segment, and that the
caller may still see it.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, Row, insert, select

from server import api, byte_ranges, clips
from server.access import footage_scope
from server.accounts import token_digest
from server.api import Principal
from server.schema import access_grant_segments, access_grants, segments
from server.services import Services, services

routes = api.Routes("footage")

VIEW, DOWNLOAD = "view", "download"
MEDIA_TYPE = "video/mp4"  # recorder segments are fragmented MP4
_HOUR_NS = 3600 * 10**9

_ACCESS = {"type": "object", "required": ["action", "reason"], "additionalProperties": False,
           "properties": {"action": {"enum": [VIEW, DOWNLOAD]}, **clips.SELECTION_PROPERTIES}}


def media_url(token: str, segment_id: int) -> str:
    return f"/api/media/{token}/{segment_id}"


def _segment_json(r: Row[Any]) -> dict[str, Any]:
    return {"id": r.id, "device": r.device, "seq": r.seq, "kind": r.kind, "start_ns": r.start_ns,
            "end_ns": r.end_ns, "manifest": r.manifest}


@routes.add("POST", "/api/access", summary="State a reason to view or download footage: writes the audit record "
            "and custody event, then returns a short-lived grant with one media URL per segment",
            access=api.USERS, body=_ACCESS,
            responses={201: "granted", 400: "no reason, or a bad selection", 404: "no such footage that you may see",
                       410: "all of it purged by retention"})
async def grant_access(request: web.Request) -> web.Response:
    req = await clips.read_request(request, _ACCESS)
    body, sel, principal, s = req.body, req.selection, req.principal, services(request)
    token = secrets.token_urlsafe(32)

    def grant() -> dict[str, Any]:
        with s.db.write() as conn:
            clips.check_case(conn, body.get("case"))
            media = clips.with_media(clips.resolve(conn, principal, sel), explicit=sel.clip is None)
            served = [r for r in media if r.purged_ns is None]
            purged = [r.id for r in media if r.purged_ns is not None]
            audit_id = req.audit(conn, s, body["action"], served, case=body.get("case"), detail={"purged": purged})
            expires_ns = _insert_grant(conn, s, token, audit_id, principal, body["action"], served)
        return {
            "grant": token, "action": body["action"], "audit_id": audit_id, "expires_ns": expires_ns,
            "segments": [{**_segment_json(r), "media_sha256": r.media_sha256, "media_size": r.media_size,
                          "url": media_url(token, r.id)} for r in served],
            "purged": [{**_segment_json(r), "purged_ns": r.purged_ns} for r in media if r.purged_ns is not None],
        }

    return web.json_response(await s.db.run(grant), status=201)


def _insert_grant(conn: Connection, s: Services, token: str, audit_id: int, principal: Principal, action: str,
                  served: list[Row[Any]]) -> int:
    now = s.clock()
    expires_ns = now + s.config.access_grant_hours * _HOUR_NS
    grant_id = conn.execute(insert(access_grants).values(
        token_sha256=token_digest(token), audit_id=audit_id, user_id=principal.id,
        action=action, created_ns=now, expires_ns=expires_ns)).inserted_primary_key[0]
    conn.execute(insert(access_grant_segments), [{"grant_id": grant_id, "segment_id": r.id} for r in served])
    return expires_ns


@routes.add("GET", "/api/media/{grant}/{segment_id}", summary="A segment's original media under a grant, with "
            "HTTP Range support (ETag = media SHA-256; attachment for download grants)",
            access=api.USERS, footage=True,
            responses={206: "the requested range", 403: "the grant is another person's",
                       404: "no such grant, or it does not cover this segment", 410: "the grant expired, or the "
                       "media was purged since", 416: "the range lies beyond the file"})
async def media(request: web.Request) -> web.StreamResponse:
    token = request.match_info["grant"]
    try:
        segment_id = int(request.match_info["segment_id"])
    except ValueError:
        raise api.not_found("segment ids are integers") from None
    principal: Principal = request[api.PRINCIPAL]
    s = services(request)

    def look_up() -> tuple[str, Row[Any]]:
        with s.db.read() as conn:
            grant = conn.execute(select(access_grants).where(
                access_grants.c.token_sha256 == token_digest(token))).first()
            if grant is None:
                raise api.not_found("no such grant")
            if grant.user_id != principal.id:
                raise api.forbidden("this grant was given to another person")
            if grant.expires_ns <= s.clock():
                raise api.ApiError(410, "grant_expired", "the grant expired: state the reason again "
                                   "(POST /api/access) for a new one")
            # The scope is checked again: a case unlinked since the grant ends access to its footage.
            row = conn.execute(
                select(segments).join(access_grant_segments, access_grant_segments.c.segment_id == segments.c.id)
                .where(access_grant_segments.c.grant_id == grant.id, segments.c.id == segment_id,
                       footage_scope(principal))).first()
            if row is None:
                raise api.not_found(f"the grant does not cover segment {segment_id}")
            if row.purged_ns is not None:
                raise api.ApiError(410, "purged", f"the media of segment {segment_id} was deleted by retention")
            return grant.action, row

    action, row = await s.db.run(look_up)
    return await byte_ranges.serve(request, size=row.media_size, sha256=row.media_sha256,
                                   read=partial(s.blobs.read_range, row.media_sha256), content_type=MEDIA_TYPE,
                                   filename=f"{row.device}_{row.media_name}" if action == DOWNLOAD else None)
