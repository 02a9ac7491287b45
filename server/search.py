"""Finding footage: GET /api/segments by officer, device, time, place, case, marker and status, within
what the caller may see (server/access.py), newest or oldest first, a page at a time; and one segment's
details, its signed manifest and its transparency-log proof.

These serve metadata (index fields, signed manifests, proofs), never footage bytes, so they write no
audit record; playback and exports do. A segment outside the caller's scope is answered exactly like a
segment that does not exist (404), so the answer never tells anyone what footage exists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import ColumnElement, Connection, Row, Select, or_, select, union

from protocol import layout, manifest
from server import api, geo
from server.access import footage_scope, footage_scopes
from server.schema import case_segments, cases, holds, segment_markers, segments
from server.segment_rows import COLUMNS, manifest_fields, overlapping, spans, summaries
from server.services import services
from server.times import parse_time_ns
from server.transparency import LogError

routes = api.Routes("search")
s = segments.c
Clause = ColumnElement[bool]

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
# A place search reads rows whose bounding box meets the place, at least _PLACE_BATCH at a time, and keeps
# those with a track point inside; it stops after _PLACE_MAX_CANDIDATES and returns a shorter page with a
# `next` cursor, so one request's work stays bounded.
_PLACE_BATCH = 100
_PLACE_MAX_CANDIDATES = 2000
QUARANTINED = "quarantined"
_CURSOR = re.compile(r"([0-9]{1,19})\.([0-9]{1,9})")
_ROW_ID = re.compile(r"[0-9]{1,9}")  # row ids are 32-bit integers
_TEXT = {"type": "string", "maxLength": 64}

QUERY: dict[str, dict[str, Any]] = {
    "officer": _TEXT | {"description": "officer number (the manifests' assignment.officer)"},
    "device": _TEXT | {"description": "recorder id"},
    "from": {"type": "string", "description": "footage ending at or after: UTC ns or ISO 8601 with a zone"},
    "to": {"type": "string", "description": "footage starting at or before: UTC ns or ISO 8601 with a zone"},
    "box": {"type": "string", "description": "min_lat,min_lon,max_lat,max_lon in decimal degrees: footage with a "
            "track point inside"},
    "near": {"type": "string", "description": "lat,lon,meters (decimal degrees; radius up to 100 km): footage "
             "with a track point within"},
    "case": _TEXT | {"description": "case number: footage linked to it"},
    "marker": _TEXT | {"description": "marker kind: footage with such a marker (between from and to if given)"},
    "status": {"type": "string", "enum": ["stored", "quarantined"]},
    "include_records": {"type": "boolean", "description": "also boot, recovery, gap ... records (default false)"},
    "order": {"type": "string", "enum": ["newest", "oldest"], "description": "by start time (default newest)"},
    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "description": f"default {DEFAULT_LIMIT}"},
    "next": {"type": "string", "description": "the `next` of the previous page: continues the same search"},
}


@dataclass(frozen=True)
class Search:
    officer: str | None
    device: str | None
    from_ns: int | None
    to_ns: int | None
    place: geo.Place | None
    case: str | None
    marker: str | None
    status: str | None
    include_records: bool
    newest: bool
    limit: int
    after: tuple[int, int] | None  # (start_ns, id) of the last row already returned


def _time(params: dict[str, Any], name: str) -> int | None:
    if name not in params:
        return None
    try:
        return parse_time_ns(params[name])
    except ValueError as exc:
        raise api.bad_request(f"query parameter {name}: {exc}") from None


def parse_search(request: web.Request) -> Search:
    unknown = sorted(set(request.query) - set(QUERY))
    if unknown:
        raise api.bad_request(f"unknown query parameter {', '.join(unknown)}; known: {', '.join(QUERY)}")
    p = api.query_params(request, QUERY)
    for name in ("officer", "device", "case", "marker"):
        if name in p and not 0 < len(p[name]) <= 64:
            raise api.bad_request(f"query parameter {name} must be 1-64 characters")
    limit = p.get("limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise api.bad_request(f"query parameter limit must be 1-{MAX_LIMIT}")
    from_ns, to_ns = _time(p, "from"), _time(p, "to")
    if from_ns is not None and to_ns is not None and from_ns > to_ns:
        raise api.bad_request("query parameter from is after to")
    if "box" in p and "near" in p:
        raise api.bad_request("give a place as box or as near, not both")
    try:
        place = geo.parse_box(p["box"]) if "box" in p else geo.parse_near(p["near"]) if "near" in p else None
    except geo.PlaceError as exc:
        raise api.bad_request(str(exc)) from None
    after = None
    if "next" in p:
        match = _CURSOR.fullmatch(p["next"])
        if match is None:
            raise api.bad_request("query parameter next is not the next of a previous page")
        after = (int(match[1]), int(match[2]))
    return Search(p.get("officer"), p.get("device"), from_ns, to_ns, place, p.get("case"), p.get("marker"),
                  p.get("status"), p.get("include_records", False), p.get("order", "newest") == "newest", limit, after)


def _place_bounds(conn: Connection, box: geo.Box) -> list[Clause]:
    # Bounding boxes that meet `box`; the lower bound on min_lat_e7 (no segment spans more latitude than the
    # widest one stored) lets the latitude index serve the range from both sides.
    return [s.min_lat_e7 <= box.max_lat, s.min_lat_e7 >= box.min_lat - spans(conn).lat_e7,
            s.max_lat_e7 >= box.min_lat, s.min_lon_e7 <= box.max_lon, s.max_lon_e7 >= box.min_lon]


def _where(conn: Connection, q: Search) -> list[Clause]:
    where = overlapping(conn, q.from_ns, q.to_ns)
    if not q.include_records:
        where.append(s.kind.in_(manifest.MEDIA_KINDS))
    if q.officer is not None:
        where.append(s.officer == q.officer)
    if q.device is not None:
        where.append(s.device == q.device)
    if q.status == QUARANTINED:
        # Quarantined footage is rare: list it from the status index and order those few rows, rather than
        # walk a unit's footage in time order testing the status of each row.
        rare = segments.alias("rare")
        where.append(s.id.in_(select(rare.c.id).where(rare.c.status == QUARANTINED)))
    elif q.status is not None:
        where.append(s.status == q.status)
    if q.place is not None:
        where += _place_bounds(conn, q.place.bounds)
    if q.case is not None:
        where.append(s.id.in_(select(case_segments.c.segment_id)
                              .join(cases, cases.c.id == case_segments.c.case_id).where(cases.c.number == q.case)))
    if q.marker is not None:
        m = segment_markers.c
        marked = select(m.segment_id).where(m.kind == q.marker)
        if q.from_ns is not None:
            marked = marked.where(m.t_ns >= q.from_ns)
        if q.to_ns is not None:
            marked = marked.where(m.t_ns <= q.to_ns)
        where.append(s.id.in_(marked))
    return where


def _after(q: Search, after: tuple[int, int]) -> list[Clause]:
    # Spelled as a plain range on start_ns plus a tie-break, which every planner serves from the index.
    start, row_id = after
    if q.newest:
        return [s.start_ns <= start, or_(s.start_ns < start, s.id < row_id)]
    return [s.start_ns >= start, or_(s.start_ns > start, s.id > row_id)]


def _in_place(conn: Connection, place: geo.Place, rows: list[Row[Any]]) -> list[Row[Any]]:
    """The rows with a track point in `place`; the track is read only where the bounding box is not enough."""
    unsure = [r.id for r in rows
              if not place.covers(geo.Box(r.min_lat_e7, r.min_lon_e7, r.max_lat_e7, r.max_lon_e7))]
    touching = {r.id for r in conn.execute(select(s.id, s.envelope).where(s.id.in_(unsure)))
                if geo.touches(place, manifest_fields(r.envelope)["track"]["points"])} if unsure else set()
    unsure_ids = set(unsure)
    return [r for r in rows if r.id not in unsure_ids or r.id in touching]


def _statement(q: Search, scopes: list[Clause], where: list[Clause], batch: int) -> Select[Any]:
    """The next `batch` rows in order. Each way of seeing footage is its own ordered, limited query, so each
    walks its own index (officer or unit, then start_ns) and stops early; the union merges them and drops
    rows seen more than one way."""
    def ordered(stmt: Any, c: Any) -> Any:
        return stmt.order_by(*((c.start_ns.desc(), c.id.desc()) if q.newest else (c.start_ns, c.id))).limit(batch)

    arms = [ordered(select(*COLUMNS).where(scope, *where), s) for scope in scopes]
    if len(arms) == 1:
        return arms[0]
    merged = union(*(select(arm.subquery()) for arm in arms)).subquery()
    return ordered(select(merged), merged.c)


def find(conn: Connection, q: Search, principal: api.Principal) -> tuple[list[Row[Any]], str | None]:
    """One page of the search and the cursor of the next (None on the last page)."""
    where, scopes = _where(conn, q), footage_scopes(principal)
    batch = q.limit + 1 if q.place is None else max(q.limit + 1, _PLACE_BATCH)
    found: list[Row[Any]] = []
    after, read = q.after, 0
    while True:
        rows = conn.execute(_statement(q, scopes, [*where, *(_after(q, after) if after else ())], batch)).all()
        found += rows if q.place is None else _in_place(conn, q.place, rows)
        read += len(rows)
        if len(found) > q.limit or len(rows) < batch:
            break
        after = (rows[-1].start_ns, rows[-1].id)
        if read >= _PLACE_MAX_CANDIDATES:
            return found, f"{after[0]}.{after[1]}"
    if len(found) > q.limit:
        last = found[q.limit - 1]
        return found[: q.limit], f"{last.start_ns}.{last.id}"
    return found, None


@routes.add("GET", "/api/segments", summary="Search footage you may see (officers: their own; supervisors: their "
            "unit's; anyone: footage of cases they handle), newest first", access=api.USERS, query=QUERY,
            responses={400: "a malformed or unknown parameter"})
async def search(request: web.Request) -> web.Response:
    q = parse_search(request)
    principal = request[api.PRINCIPAL]
    svc = services(request)

    def run() -> dict[str, Any]:
        with svc.db.read() as conn:
            rows, cursor = find(conn, q, principal)
            return {"segments": summaries(conn, rows), "next": cursor}

    return web.json_response(await svc.db.run(run))


def _segment_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not _ROW_ID.fullmatch(text):
        raise api.not_found(f"no segment {text!r}")
    return int(text)


def _visible_row(conn: Connection, request: web.Request, *columns: Any) -> Row[Any]:
    """The segment of the path, if the caller may see it; 404 whether it is missing or out of scope."""
    segment_id = _segment_id(request)
    row = conn.execute(select(*COLUMNS, *columns).where(s.id == segment_id, footage_scope(request[api.PRINCIPAL]))
                       ).first()
    if row is None:
        raise api.not_found(f"no segment {segment_id} that you may see")
    return row


@routes.add("GET", "/api/segments/{id}", summary="One segment you may see: index fields, the signed manifest's "
            "fields, its cases and holds, and its log entries", access=api.USERS,
            responses={404: "no such segment, or not one you may see"})
async def detail(request: web.Request) -> web.Response:
    svc = services(request)

    def load() -> dict[str, Any]:
        with svc.db.read() as conn:
            row = _visible_row(conn, request, s.envelope, s.gateway, s.received_ns, s.log_index, s.tombstone_index)
            linked = conn.execute(select(cases.c.id, cases.c.number, case_segments.c.linked_ns)
                                  .join(cases, cases.c.id == case_segments.c.case_id)
                                  .where(case_segments.c.segment_id == row.id).order_by(cases.c.id))
            held = conn.execute(select(holds.c.id, holds.c.reason, holds.c.created_ns, holds.c.created_by,
                                       holds.c.released_ns).where(holds.c.segment_id == row.id).order_by(holds.c.id))
            return summaries(conn, [row])[0] | {
                "manifest_fields": manifest_fields(row.envelope), "gateway": row.gateway,
                "received_ns": row.received_ns, "log_index": row.log_index, "tombstone_index": row.tombstone_index,
                "cases": [dict(c._mapping) for c in linked], "holds": [dict(h._mapping) for h in held],
            }

    return web.json_response(await svc.db.run(load))


@routes.add("GET", "/api/segments/{id}/manifest", summary="The signed manifest envelope, byte for byte as the "
            "recorder signed it", access=api.USERS, responses={404: "no such segment, or not one you may see"})
async def manifest_envelope(request: web.Request) -> web.Response:
    svc = services(request)

    def load() -> Row[Any]:
        with svc.db.read() as conn:
            return _visible_row(conn, request, s.envelope)

    row = await svc.db.run(load)
    return web.Response(body=row.envelope, content_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="{row.device}-{layout.manifest_name(row.seq)}"'})


_PROOF_QUERY = {"of": {"type": "string", "enum": ["manifest", "tombstone"],
                       "description": "which entry: the manifest (default) or the tombstone of its purge"}}


@routes.add("GET", "/api/segments/{id}/proof", summary="C2SP tlog-proof bundle: the manifest's (or its "
            "tombstone's) inclusion in the transparency log at the newest checkpoint", access=api.USERS,
            query=_PROOF_QUERY, responses={404: "no such segment or entry, or not one you may see"})
async def proof(request: web.Request) -> web.Response:
    of = api.query_params(request, _PROOF_QUERY).get("of", "manifest")
    svc = services(request)

    def load() -> tuple[Row[Any], bytes]:
        with svc.db.read() as conn:
            row = _visible_row(conn, request, s.log_index, s.tombstone_index)
            index = row.log_index if of == "manifest" else row.tombstone_index
            if index is None:
                raise api.not_found(f"segment {row.id} has no tombstone: its media was not purged")
            try:
                return row, svc.log.proof_bundle(conn, index)
            except LogError as exc:
                raise api.not_found(str(exc)) from None

    row, bundle = await svc.db.run(load)
    return web.Response(body=bundle, content_type="text/plain", charset="utf-8", headers={
        "Content-Disposition": f'attachment; filename="{row.device}-{row.seq}-{of}.tlog-proof"'})
