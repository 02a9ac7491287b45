"""The audit trail, searched by auditors and administrators: who accessed which evidence, or changed
custody or enrollment, when, how and why, with the log index of the public record (custody event,
enrollment change) each audit record wrote.

Records only: nothing here serves footage or grants access to it. Newest first, paged by record id
(`before`), so a page stays stable while new records arrive.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, Row, select

from protocol import log_records
from server import api, clips
from server.schema import audit, audit_segments, users
from server.services import services
from server.times import parse_time_ns

routes = api.Routes("audit")

DEFAULT_LIMIT, MAX_LIMIT = 50, 500
_QUERY = {
    "actor": {"type": "string"},
    "action": {"type": "string"},  # view, download, export-package, ... and enroll, revoke (server/enrollment.py)
    "from": {"type": "string"},
    "to": {"type": "string"},
    "segment": {"type": "integer"},
    "case": {"type": "string"},
    "before": {"type": "integer"},
    "limit": {"type": "integer"},
}


def _time(params: dict[str, Any], name: str) -> int | None:
    if name not in params:
        return None
    try:
        value = parse_time_ns(params[name])
    except ValueError as exc:
        raise api.bad_request(f"query parameter {name}: {exc}") from None
    return _within(name, value, clips.TIMES_NS)


def _within(name: str, value: int, bounds: tuple[int, int]) -> int:
    if not bounds[0] <= value <= bounds[1]:
        raise api.bad_request(f"query parameter {name} must be {bounds[0]} to {bounds[1]}")
    return value


@routes.add("GET", "/api/audit", summary="Search the audit trail: filter by actor (e.g. user:17), action, time "
            "range [from, to), segment id and case; newest first, paged with `before` = the last id seen",
            access=(api.AUDITOR, api.ADMINISTRATOR), query=_QUERY)
async def search_audit(request: web.Request) -> web.Response:
    params = api.query_params(request, _QUERY)
    limit = params.get("limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise api.bad_request(f"query parameter limit must be 1-{MAX_LIMIT}")
    start, end = _time(params, "from"), _time(params, "to")
    where = []
    if start is not None:
        where.append(audit.c.at_ns >= start)
    if end is not None:
        where.append(audit.c.at_ns < end)
    for name, column in (("actor", audit.c.actor), ("action", audit.c.action), ("case", audit.c.case_number)):
        if name in params:
            where.append(column == params[name])
    if "segment" in params:
        segment = _within("segment", params["segment"], clips.ROW_IDS)
        where.append(audit.c.id.in_(select(audit_segments.c.audit_id).where(audit_segments.c.segment_id == segment)))
    if "before" in params:
        where.append(audit.c.id < _within("before", params["before"], clips.ROW_IDS))
    s = services(request)

    def search() -> dict[str, Any]:
        with s.db.read() as conn:
            rows = conn.execute(select(audit).where(*where).order_by(audit.c.id.desc()).limit(limit + 1)).all()
            page = rows[:limit]
            ids = [r.id for r in page]
            subjects: dict[int, list[int]] = {i: [] for i in ids}
            for audit_id, segment_id in conn.execute(
                    select(audit_segments.c.audit_id, audit_segments.c.segment_id)
                    .where(audit_segments.c.audit_id.in_(ids)).order_by(audit_segments.c.segment_id)):
                subjects[audit_id].append(segment_id)
            names = _user_names(conn, {r.actor for r in page})
        return {"records": [_record(r, subjects[r.id], names) for r in page],
                "next_before": page[-1].id if len(rows) > limit else None}

    return web.json_response(await s.db.run(search))


def _user_names(conn: Connection, actors: set[str]) -> dict[str, str]:
    """Usernames for `user:<id>` actors: the log names accounts by id only, the private trail may name them."""
    ids = [int(a.removeprefix("user:")) for a in actors if a.startswith("user:") and a[5:].isdigit()]
    return {f"user:{i}": name for i, name in conn.execute(
        select(users.c.id, users.c.username).where(users.c.id.in_(ids)))}


def _record(r: Row[Any], segment_ids: list[int], names: dict[str, str]) -> dict[str, Any]:
    # Each custody event names at most MAX_SUBJECTS manifests, one per segment, appended one after another.
    events = max(1, math.ceil(len(segment_ids) / log_records.MAX_SUBJECTS))
    return {
        "id": r.id, "at_ns": r.at_ns, "actor": r.actor, "actor_name": names.get(r.actor), "action": r.action,
        "reason": r.reason, "case": r.case_number, "client": r.client, "segments": segment_ids,
        "target": json.loads(r.target), "log_index": r.log_index,
        "log_indexes": [] if r.log_index is None else list(range(r.log_index, r.log_index + events)),
    }

