"""Legal holds: footage kept beyond retention whatever its cases, until the hold is released.

Supervisors, legal reviewers and administrators place holds on footage they may see and release them,
stating a reason each time; each writes an audit record and a public custody event ("hold",
"release"). A segment may be under several holds (one per matter); retention keeps it while any is
active. One hold covers one segment, so a request for many segments makes many holds.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import insert, select, update

from server import api, audit, clips, segment_rows
from server.access import footage_scope
from server.api import Principal
from server.schema import holds, segments
from server.services import services

routes = api.Routes("holds")
HOLDERS = (api.SUPERVISOR, api.LEGAL_REVIEWER, api.ADMINISTRATOR)

_PLACE = {"type": "object", "required": ["reason"], "additionalProperties": False,
          "properties": clips.SELECTION_PROPERTIES}
_RELEASE = {"type": "object", "required": ["reason"], "additionalProperties": False,
            "properties": {"reason": clips.SELECTION_PROPERTIES["reason"]}}


@routes.add("POST", "/api/holds", summary="Place holds on footage you may see (segment ids or one device's clip), "
            "with a reason: kept beyond retention until released; audited, with a public hold custody event",
            access=HOLDERS, body=_PLACE,
            responses={201: "placed", 400: "no reason, or a bad selection", 404: "no such footage that you may see",
                       410: "all of it purged by retention already"})
async def place_holds(request: web.Request) -> web.Response:
    req = await clips.read_request(request, _PLACE)
    body, sel, principal, s = req.body, req.selection, req.principal, services(request)

    def place() -> dict[str, Any]:
        with s.db.write() as conn:
            clips.check_case(conn, body.get("case"))
            rows = clips.with_media(clips.resolve(conn, principal, sel), explicit=sel.clip is None)
            # Locked, then purged_ns read afresh: retention checks holds under the same locks, so a hold
            # either lands before a purge (which then keeps the footage) or sees that it came too late.
            purged_ns = segment_rows.lock(conn, [r.id for r in rows])
            kept = [r for r in rows if purged_ns[r.id] is None]
            if not kept:
                raise api.ApiError(410, "purged", "the media of every segment asked for was deleted by retention")
            now = s.clock()
            ids = [conn.execute(insert(holds).values(segment_id=r.id, reason=req.reason, created_ns=now,
                                                     created_by=principal.actor)).inserted_primary_key[0]
                   for r in kept]
            audit_id = req.audit(conn, s, "hold", kept, case=body.get("case"))
            return {"holds": [{"id": i, "segment_id": r.id} for i, r in zip(ids, kept, strict=True)],
                    "purged": [r.id for r in rows if purged_ns[r.id] is not None], "audit_id": audit_id}

    return web.json_response(await s.db.run(place), status=201)


@routes.add("POST", "/api/holds/{id}/release", summary="Release a hold on footage you may see, with a reason: "
            "audited, with a public release custody event", access=HOLDERS, body=_RELEASE,
            responses={404: "no such hold on footage you may see", 409: "released already"})
async def release_hold(request: web.Request) -> web.Response:
    body = await api.json_body(request, _RELEASE)
    reason = clips.stated_reason(body)
    principal: Principal = request[api.PRINCIPAL]
    text = request.match_info["id"]
    s = services(request)

    def release() -> dict[str, Any]:
        with s.db.write() as conn:
            hold = conn.execute(select(holds, segments.c.manifest).join(segments, segments.c.id == holds.c.segment_id)
                                .where(holds.c.id == int(text), footage_scope(principal))
                                ).first() if text.isdigit() and len(text) <= 9 else None
            if hold is None:
                raise api.not_found(f"no hold {text!r} on footage that you may see")
            now = s.clock()
            # Conditional, so two releases at once cannot both succeed.
            if not conn.execute(update(holds).where(holds.c.id == hold.id, holds.c.released_ns.is_(None))
                                .values(released_ns=now)).rowcount:
                raise api.ApiError(409, "conflict", f"hold {hold.id} was released already")
            audit_id = audit.record(conn, s, actor=principal.actor, action="release", reason=reason,
                                    subjects=[audit.Subject(hold.segment_id, hold.manifest)],
                                    client=api.client_of(request), detail={"hold": hold.id})
            return {"id": hold.id, "segment_id": hold.segment_id, "released_ns": now, "audit_id": audit_id}

    return web.json_response(await s.db.run(release))
