"""What one access covers: the segments a person names, or one device's recording over a time range,
always narrowed to the footage that person may see (server.access.footage_scope).

Footage a person may not see answers exactly as footage that does not exist, so a request never
tells whether a segment id or a recording is there. Rows come back whole and in chain order
(device, seq); purged segments are among them, for the caller to report rather than serve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, Row, and_, or_, select

from protocol import log_records
from protocol.fields import IDENTIFIER, INT64_MAX
from server import api, audit
from server.access import footage_scope
from server.api import Principal
from server.schema import cases, segments
from server.services import Services

MAX_SEGMENTS = 2000  # per access: one audit record, a few custody events, one response
# Bounds of the columns numbers are compared with: beyond them a database fails rather than matching nothing.
ROW_IDS = (1, 2**31 - 1)
TIMES_NS = (-INT64_MAX - 1, INT64_MAX)
_ROW_ID = {"type": "integer", "minimum": ROW_IDS[0], "maximum": ROW_IDS[1]}
_TIME_NS = {"type": "integer", "minimum": TIMES_NS[0], "maximum": TIMES_NS[1]}

# JSON-schema properties of every request for footage; the handler adds its own (action, format).
SELECTION_PROPERTIES: dict[str, Any] = {
    "segments": {"type": "array", "items": _ROW_ID, "minItems": 1,
                 "maxItems": MAX_SEGMENTS, "uniqueItems": True},
    "clip": {"type": "object", "required": ["device", "from_ns", "to_ns"], "additionalProperties": False,
             "properties": {"device": {"type": "string", "pattern": f"^{IDENTIFIER.pattern}$"},
                            "from_ns": _TIME_NS, "to_ns": _TIME_NS}},
    "reason": {"type": "string", "maxLength": audit.MAX_REASON},
    "case": {"type": "string", "minLength": 1, "maxLength": log_records.MAX_CASE},
}


@dataclass(frozen=True)
class Clip:
    """A device's recording over [from_ns, to_ns), UTC."""

    device: str
    from_ns: int
    to_ns: int


@dataclass(frozen=True)
class Selection:
    """Either explicit segment ids or a clip."""

    segment_ids: tuple[int, ...] = ()
    clip: Clip | None = None

    def describe(self) -> dict[str, object]:
        """What was asked for, as the audit record keeps it beside the segments it came to."""
        if self.clip is None:
            return {"selected": list(self.segment_ids)}
        return {"clip": {"device": self.clip.device, "from_ns": self.clip.from_ns, "to_ns": self.clip.to_ns}}


def selection(body: dict[str, Any]) -> Selection:
    """The selection in a request body already checked against SELECTION_PROPERTIES."""
    if ("segments" in body) == ("clip" in body):
        raise api.bad_request("give either segments (a list of segment ids) or clip ({device, from_ns, to_ns})")
    if "segments" in body:
        return Selection(segment_ids=tuple(body["segments"]))
    clip = Clip(body["clip"]["device"], body["clip"]["from_ns"], body["clip"]["to_ns"])
    if clip.from_ns >= clip.to_ns:
        raise api.bad_request("clip: from_ns must be before to_ns")
    return Selection(clip=clip)


@dataclass(frozen=True)
class FootageRequest:
    """A request for footage as every footage handler reads it: what is asked for, by whom, and why."""

    body: dict[str, Any]
    selection: Selection
    reason: str
    principal: Principal
    client: str

    def audit(self, conn: Connection, s: Services, action: str, rows: Sequence[Row[Any]], *, case: str | None,
              detail: dict[str, object] | None = None) -> int:
        """The audit record (and its custody events) of this request over `rows`; see server.audit.record."""
        return audit.record(conn, s, actor=self.principal.actor, action=action, reason=self.reason,
                            subjects=[audit.Subject(r.id, r.manifest) for r in rows], case=case, client=self.client,
                            detail={**self.selection.describe(), **(detail or {})})


async def read_request(request: web.Request, schema: dict[str, Any]) -> FootageRequest:
    """The body (checked against `schema`), its selection and stated reason, and the caller."""
    body = await api.json_body(request, schema)
    return FootageRequest(body, selection(body), stated_reason(body), request[api.PRINCIPAL],
                          api.client_of(request))


def stated_reason(body: dict[str, Any]) -> str:
    try:
        return audit.check_reason(body.get("reason"))
    except audit.ReasonError as exc:
        raise api.bad_request(str(exc), "reason_required") from None


def check_case(conn: Connection, case: str | None) -> None:
    """A case an access names must exist: the audit trail and the public log will name it."""
    if case is not None and conn.execute(select(cases.c.id).where(cases.c.number == case)).first() is None:
        raise api.bad_request(f"there is no case numbered {case!r}")


def resolve(conn: Connection, principal: Principal, sel: Selection) -> list[Row[Any]]:
    """The segments rows `sel` covers that `principal` may see, in chain order; 404 if any named one is
    not among them, or a clip holds none."""
    scope = footage_scope(principal)
    if sel.clip is None:
        rows = _rows(conn, segments.c.id.in_(sel.segment_ids), scope)
        missing = sorted(set(sel.segment_ids) - {r.id for r in rows})
        if missing:
            raise api.not_found(f"no footage you may see has segment id {', '.join(map(str, missing))}")
        return rows
    clip = sel.clip
    # Overlap with [from_ns, to_ns); records without duration (boot, marker, ...) count when they fall inside.
    overlaps = and_(segments.c.device == clip.device, segments.c.start_ns < clip.to_ns,
                    or_(segments.c.end_ns > clip.from_ns, segments.c.start_ns >= clip.from_ns))
    rows = _rows(conn, overlaps, scope)
    if not rows:
        raise api.not_found(f"no footage you may see of {clip.device} in that time range")
    if len(rows) > MAX_SEGMENTS:
        raise api.bad_request(f"the clip covers {len(rows)} segments; one access covers at most {MAX_SEGMENTS}: "
                              "ask for a shorter range")
    return rows


def with_chain_between(conn: Connection, principal: Principal, rows: list[Row[Any]]) -> list[Row[Any]]:
    """`rows` plus every row the principal may see between each device's first and last of them, so
    that an evidence package holds an unbroken run of each device's chain (a verifier reports a hole
    as removed manifests)."""
    spans: dict[str, tuple[int, int]] = {}
    for r in rows:
        low, high = spans.get(r.device, (r.seq, r.seq))
        spans[r.device] = (min(low, r.seq), max(high, r.seq))
    within = or_(*(and_(segments.c.device == d, segments.c.seq.between(low, high)) for d, (low, high) in spans.items()))
    filled = _rows(conn, within, footage_scope(principal))
    if len(filled) > MAX_SEGMENTS:
        raise api.bad_request(f"the package would hold {len(filled)} segments, at most {MAX_SEGMENTS}: "
                              "export fewer at a time")
    return filled


def with_media(rows: list[Row[Any]], explicit: bool) -> list[Row[Any]]:
    """The rows with media, for playing or remuxing: 404 if there are none, 410 if all were purged.
    A record without media named on purpose (`explicit`) is a mistake worth telling."""
    without = [r for r in rows if r.media_sha256 is None]
    if explicit and without:
        raise api.bad_request(f"segment {without[0].id} is a {without[0].kind} record: it has no media")
    media = [r for r in rows if r.media_sha256 is not None]
    if not media:
        raise api.not_found("no footage you may see with media in that time range")
    if all(r.purged_ns is not None for r in media):
        raise api.ApiError(410, "purged", "the media of every segment asked for was deleted by retention; "
                           "the manifests and tombstones remain (an evidence package carries them)")
    return media


def _rows(conn: Connection, *where: Any) -> list[Row[Any]]:
    # One more than allowed, so an oversized clip is refused without reading all of it.
    return list(conn.execute(select(segments).where(*where).order_by(segments.c.device, segments.c.seq)
                             .limit(MAX_SEGMENTS + 1)).all())
