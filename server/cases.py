"""Cases: who handles them and which footage belongs to them.

Supervisors open cases for their unit, administrators for any. A case is seen by its handlers, by the
supervisors of its unit and by administrators; handlers see all footage linked to it (server/access.py).
Anyone who sees a case may link to it footage they may see, or unlink it, stating a reason: each link
and unlink writes an audit record and a public custody event ("case-link", "case-unlink"). Footage
linked to any case is never purged by retention (server/retention.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web
from sqlalchemy import ColumnElement, Connection, Row, delete, insert, or_, select, true

from server import api, clips, segment_rows
from server.access import footage_scope
from server.api import Principal
from server.schema import audit as audit_table
from server.schema import case_handlers, case_segments, cases, segments, users
from server.services import Services, services

routes = api.Routes("cases")
MANAGERS = (api.SUPERVISOR, api.ADMINISTRATOR)
DEFAULT_LIMIT, MAX_LIMIT = 50, 500
FOOTAGE_SHOWN = 500  # a case's page lists this much of its footage; GET /api/segments?case= pages through all
_ID = re.compile(r"[0-9]{1,9}")  # row ids are 32-bit integers

_CREATE = {"type": "object", "required": ["number", "title"], "additionalProperties": False, "properties": {
    "number": {"type": "string", "minLength": 1, "maxLength": 64},
    "title": {"type": "string", "minLength": 1, "maxLength": 200},
    "unit": {"type": ["string", "null"], "minLength": 1, "maxLength": 64},
}}
_HANDLER = {"type": "object", "required": ["username"], "additionalProperties": False, "properties": {
    "username": {"type": "string", "minLength": 1, "maxLength": 64},
}}
_FOOTAGE = {"type": "object", "required": ["reason"], "additionalProperties": False,
            "properties": {k: v for k, v in clips.SELECTION_PROPERTIES.items() if k != "case"}}
_LIST_QUERY = {"limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
               "next": {"type": "string", "description": "the `next` of the previous page"}}


def case_scope(principal: Principal) -> ColumnElement[bool]:
    """A WHERE clause on `cases` selecting the cases `principal` may see."""
    if principal.role == api.ADMINISTRATOR:
        return true()
    handled = cases.c.id.in_(select(case_handlers.c.case_id).where(case_handlers.c.user_id == principal.id))
    if principal.role == api.SUPERVISOR and principal.unit:
        return or_(handled, cases.c.unit == principal.unit)
    return handled


def _case_json(row: Row[Any]) -> dict[str, Any]:
    return {"id": row.id, "number": row.number, "title": row.title, "unit": row.unit, "created_ns": row.created_ns,
            "created_by": row.created_by}


def _text(value: str, name: str) -> str:
    # Numbers and titles appear in audit records, public custody events and printed reports: no control
    # characters, no invisible padding.
    if not value.isprintable() or value != value.strip():
        raise api.bad_request(f"{name} must be printable, without leading or trailing spaces")
    return value


def _visible_case(conn: Connection, request: web.Request) -> Row[Any]:
    """The case of the path if the caller may see it; 404 whether it is missing or out of sight."""
    text = request.match_info["id"]
    row = conn.execute(select(cases).where(cases.c.id == int(text), case_scope(request[api.PRINCIPAL]))
                       ).first() if _ID.fullmatch(text) else None
    if row is None:
        raise api.not_found(f"no case {text!r} that you may see")
    return row


def _managed_case(conn: Connection, request: web.Request) -> Row[Any]:
    """The case of the path, if the caller may change who handles it: an administrator, or a supervisor of
    the case's unit (a handler who is a supervisor of another unit may not hand the case on)."""
    case = _visible_case(conn, request)
    principal: Principal = request[api.PRINCIPAL]
    if principal.role != api.ADMINISTRATOR and (principal.role != api.SUPERVISOR or case.unit != principal.unit):
        raise api.forbidden(f"only administrators and supervisors of unit {case.unit} may change who handles "
                            f"case {case.number}")
    return case


def _handlers(conn: Connection, case_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(select(users.c.id, users.c.username, users.c.display_name, users.c.role)
                        .join(case_handlers, case_handlers.c.user_id == users.c.id)
                        .where(case_handlers.c.case_id == case_id).order_by(users.c.username))
    return [dict(r._mapping) for r in rows]


@routes.add("POST", "/api/cases", summary="Open a case (supervisors: for their own unit)", access=MANAGERS,
            body=_CREATE, responses={201: "opened", 400: "bad fields", 409: "the number is taken"})
async def create_case(request: web.Request) -> web.Response:
    body = await api.json_body(request, _CREATE)
    principal: Principal = request[api.PRINCIPAL]
    number, title = _text(body["number"], "number"), _text(body["title"], "title")
    unit = body.get("unit", principal.unit if principal.role == api.SUPERVISOR else None)
    if principal.role == api.SUPERVISOR and (unit is None or unit != principal.unit):
        raise api.forbidden("a supervisor opens cases for their own unit only" if principal.unit
                            else "you belong to no unit: ask an administrator to open the case")
    s = services(request)

    def create() -> dict[str, Any]:
        with s.db.write() as conn:
            if conn.execute(select(cases.c.id).where(cases.c.number == number)).first() is not None:
                raise api.ApiError(409, "conflict", f"case number {number!r} is taken")
            case_id = conn.execute(insert(cases).values(number=number, title=title, unit=unit, created_ns=s.clock(),
                                                        created_by=principal.id)).inserted_primary_key[0]
            return _case_json(conn.execute(select(cases).where(cases.c.id == case_id)).one())

    return web.json_response(await s.db.run(create), status=201)


@routes.add("GET", "/api/cases", summary="The cases you may see (handlers: theirs; supervisors: also their "
            "unit's; administrators: all), newest first", access=api.USERS, query=_LIST_QUERY)
async def list_cases(request: web.Request) -> web.Response:
    params = api.query_params(request, _LIST_QUERY)
    limit = params.get("limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise api.bad_request(f"query parameter limit must be 1-{MAX_LIMIT}")
    before = params.get("next")
    if before is not None and not _ID.fullmatch(before):
        raise api.bad_request("query parameter next is not the next of a previous page")
    s = services(request)

    def load() -> dict[str, Any]:
        stmt = select(cases).where(case_scope(request[api.PRINCIPAL])).order_by(cases.c.id.desc()).limit(limit + 1)
        if before is not None:
            stmt = stmt.where(cases.c.id < int(before))
        with s.db.read() as conn:
            rows = conn.execute(stmt).all()
        more = len(rows) > limit
        return {"cases": [_case_json(r) for r in rows[:limit]], "next": str(rows[limit - 1].id) if more else None}

    return web.json_response(await s.db.run(load))


@routes.add("GET", "/api/cases/{id}", summary="A case you may see, its handlers, and the footage linked to it "
            f"that you may see (the first {FOOTAGE_SHOWN} by time)", access=api.USERS,
            responses={404: "no such case, or not one you may see"})
async def get_case(request: web.Request) -> web.Response:
    s = services(request)

    def load() -> dict[str, Any]:
        with s.db.read() as conn:
            case = _visible_case(conn, request)
            rows = conn.execute(select(*segment_rows.COLUMNS).join(case_segments, case_segments.c.segment_id ==
                                                                   segments.c.id)
                                .where(case_segments.c.case_id == case.id, footage_scope(request[api.PRINCIPAL]))
                                .order_by(segments.c.start_ns, segments.c.id).limit(FOOTAGE_SHOWN)).all()
            return _case_json(case) | {"handlers": _handlers(conn, case.id),
                                       "footage": segment_rows.summaries(conn, rows)}

    return web.json_response(await s.db.run(load))


def _audit_handlers(conn: Connection, s: Services, principal: Principal, action: str, case: Row[Any],
                    user_id: int) -> None:
    # Making someone a handler lets them see the case's footage: the audit trail shows who granted that.
    conn.execute(insert(audit_table).values(
        at_ns=s.clock(), actor=principal.actor, action=action, reason="", case_number=case.number,
        target=json.dumps({"case": case.number, "user": user_id}, sort_keys=True)))


@routes.add("POST", "/api/cases/{id}/handlers", summary="Make a user a handler of the case: they see its footage",
            access=MANAGERS, body=_HANDLER, responses={404: "no such case or active user"})
async def add_handler(request: web.Request) -> web.Response:
    body = await api.json_body(request, _HANDLER)
    s = services(request)

    def add() -> dict[str, Any]:
        with s.db.write() as conn:
            case = _managed_case(conn, request)
            user_id = conn.execute(select(users.c.id).where(users.c.username == body["username"],
                                                            users.c.disabled.is_(False))).scalar_one_or_none()
            if user_id is None:
                raise api.not_found(f"no active user {body['username']!r}")
            if conn.execute(select(case_handlers).where(case_handlers.c.case_id == case.id,
                                                        case_handlers.c.user_id == user_id)).first() is None:
                conn.execute(insert(case_handlers).values(case_id=case.id, user_id=user_id))
                _audit_handlers(conn, s, request[api.PRINCIPAL], "case-handler-add", case, user_id)
            return {"case": case.id, "handlers": _handlers(conn, case.id)}

    return web.json_response(await s.db.run(add))


_REMOVE_QUERY = {"username": {"type": "string", "required": True}}


@routes.add("DELETE", "/api/cases/{id}/handlers", summary="Stop a user handling the case (?username=)",
            access=MANAGERS, query=_REMOVE_QUERY, responses={404: "no such case, or the user does not handle it"})
async def remove_handler(request: web.Request) -> web.Response:
    username = api.query_params(request, _REMOVE_QUERY)["username"]
    s = services(request)

    def remove() -> dict[str, Any]:
        with s.db.write() as conn:
            case = _managed_case(conn, request)
            user_id = conn.execute(select(users.c.id).where(users.c.username == username)).scalar_one_or_none()
            gone = conn.execute(delete(case_handlers).where(case_handlers.c.case_id == case.id,
                                                            case_handlers.c.user_id == user_id)).rowcount
            if not gone:
                raise api.not_found(f"{username!r} does not handle case {case.number}")
            _audit_handlers(conn, s, request[api.PRINCIPAL], "case-handler-remove", case, user_id)
            return {"case": case.id, "handlers": _handlers(conn, case.id)}

    return web.json_response(await s.db.run(remove))


def _linked(conn: Connection, case_id: int, ids: list[int]) -> set[int]:
    return set(conn.execute(select(case_segments.c.segment_id).where(
        case_segments.c.case_id == case_id, case_segments.c.segment_id.in_(ids))).scalars())


@routes.add("POST", "/api/cases/{id}/footage", summary="Link footage you may see to the case (segment ids or one "
            "device's clip), with a reason: audited, and a public case-link custody event; linked footage is kept "
            "beyond retention", access=api.USERS, body=_FOOTAGE,
            responses={400: "no reason, or a bad selection", 404: "no such case or footage that you may see"})
async def link_footage(request: web.Request) -> web.Response:
    req = await clips.read_request(request, _FOOTAGE)
    sel, principal, s = req.selection, req.principal, services(request)

    def link() -> dict[str, Any]:
        with s.db.write() as conn:
            case = _visible_case(conn, request)
            rows = clips.resolve(conn, principal, sel)
            # Locked so that retention, which checks links under the same locks, cannot purge them meanwhile.
            segment_rows.lock(conn, [r.id for r in rows])
            already = _linked(conn, case.id, [r.id for r in rows])
            new = [r for r in rows if r.id not in already]
            audit_id = None
            if new:
                conn.execute(insert(case_segments), [{"case_id": case.id, "segment_id": r.id, "linked_ns": s.clock(),
                                                      "linked_by": principal.actor} for r in new])
                audit_id = req.audit(conn, s, "case-link", new, case=case.number)
            return {"case": case.id, "linked": [r.id for r in new], "already_linked": sorted(already),
                    "audit_id": audit_id}

    return web.json_response(await s.db.run(link))


@routes.add("DELETE", "/api/cases/{id}/footage", summary="Unlink footage from the case (segment ids or one "
            "device's clip), with a reason: audited, and a public case-unlink custody event", access=api.USERS,
            body=_FOOTAGE, responses={400: "no reason, or a bad selection",
                                      404: "no such case, or the footage is not linked to it"})
async def unlink_footage(request: web.Request) -> web.Response:
    req = await clips.read_request(request, _FOOTAGE)
    sel, principal, s = req.selection, req.principal, services(request)

    def unlink() -> dict[str, Any]:
        with s.db.write() as conn:
            case = _visible_case(conn, request)
            rows = clips.resolve(conn, principal, sel)
            linked = _linked(conn, case.id, [r.id for r in rows])
            strays = [r.id for r in rows if r.id not in linked]
            if sel.clip is None and strays:
                raise api.not_found(f"segment {', '.join(map(str, strays))} is not linked to case {case.number}")
            if not linked:
                raise api.not_found(f"none of the footage in that clip is linked to case {case.number}")
            gone = [r for r in rows if r.id in linked]
            conn.execute(delete(case_segments).where(case_segments.c.case_id == case.id,
                                                     case_segments.c.segment_id.in_(linked)))
            audit_id = req.audit(conn, s, "case-unlink", gone, case=case.number)
            return {"case": case.id, "unlinked": [r.id for r in gone], "audit_id": audit_id}

    return web.json_response(await s.db.run(unlink))
