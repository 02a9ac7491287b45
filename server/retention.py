"""Retention: footage nobody needs is purged after `retention_days`, and each purge leaves a public tombstone.

What goes: media segments (kinds segment and recovered-segment) that are stored (not quarantined), linked
to no case, under no active hold, and whose age has reached retention_days. Age counts from the later of
when the recording ended (recorder clock, end_ns) and when the server received it (server clock,
received_ns), which never purges early: a recorder clock that runs behind, or was reset, cannot age
footage before it arrived; one that runs ahead only keeps footage longer; footage uploaded weeks late
still gets its full time on the server.

What stays: footage linked to a case; under an active hold; quarantined, because failing verification
makes it evidence of tampering or a fault, kept like case footage (no run ever takes it; disposing of it
would take a separate, explicit administrator decision that this server does not offer); and footage not
old enough. Records without media (boot, recovery, ...) hold nothing to purge. Manifests stay for good,
purged or not, in the index and in the log.

A purge, per batch of segments:
1. one transaction: lock the rows, check that each may still go (a hold or a case link may have come
   since the plan), append one tombstone per segment to the transparency log, set purged_ns and
   tombstone_index, write the audit record;
2. delete each blob that no unpurged row still names (two manifests may name the same media).
A crash between 1 and 2 leaves blobs that no row claims any more; every run starts by deleting those.
The other order could leave a row naming a blob that is gone, with no tombstone to say why: footage that
looks lost, the one state an evidence store must never show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, Row, Select, exists, func, insert, select, update
from sqlalchemy.orm import aliased

from protocol import log_records
from protocol.manifest import MEDIA_KINDS
from protocol.receipts import STORED
from server import api, audit, segment_rows
from server.schema import audit as audit_table
from server.schema import audit_segments, case_segments, holds, segments
from server.services import Services, services

routes = api.Routes("retention")
s = segments.c

DAY_NS = 86_400 * 10**9
BATCH = 256  # segments per purge transaction: its tombstones, row updates and one audit record
KEPT_LISTED = 1000  # a report lists at most this many kept segments (totals count them all)
CASE, HOLD, QUARANTINED, YOUNG = "case", "hold", "quarantined", "young"
ACTION = "retention-purge"


class RetentionError(ValueError):
    pass


def _media_rows(cutoff_ns: int, ids: list[int] | None = None) -> Select[Any]:
    """Unpurged media segments that started by the cutoff (the start_ns index serves this: a segment
    cannot have ended or arrived before it started), with what could keep them."""
    linked = exists().where(case_segments.c.segment_id == s.id)
    held = exists().where(holds.c.segment_id == s.id, holds.c.released_ns.is_(None))
    stmt = (select(s.id, s.device, s.seq, s.manifest, s.media_sha256, s.media_size, s.status, s.end_ns,
                   s.received_ns, linked.label("linked"), held.label("held"))
            .where(s.kind.in_(MEDIA_KINDS), s.purged_ns.is_(None), s.start_ns <= cutoff_ns).order_by(s.id))
    return stmt if ids is None else stmt.where(s.id.in_(ids))


def kept_because(row: Row[Any], cutoff_ns: int) -> list[str]:
    """Why a segment stays; empty when it goes."""
    return [reason for reason, keeps in ((CASE, row.linked), (HOLD, row.held), (QUARANTINED, row.status != STORED),
                                         (YOUNG, max(row.end_ns, row.received_ns) > cutoff_ns)) if keeps]


@dataclass(frozen=True)
class Plan:
    as_of_ns: int
    policy_days: int
    purge: list[Row[Any]]
    shared: set[str]  # media hashes of `purge` that other, unpurged rows name too: those blobs stay
    kept: list[tuple[Row[Any], list[str]]]  # segments that started by the cutoff but stay, and why
    young: tuple[int, int]  # (count, bytes) of the segments that started after the cutoff

    @property
    def cutoff_ns(self) -> int:
        return self.as_of_ns - self.policy_days * DAY_NS

    def report(self) -> dict[str, Any]:
        totals = {reason: {"count": 0, "bytes": 0} for reason in (CASE, HOLD, QUARANTINED)}
        totals[YOUNG] = {"count": self.young[0], "bytes": self.young[1]}
        for row, reasons in self.kept:
            for reason in reasons:
                totals[reason]["count"] += 1
                totals[reason]["bytes"] += row.media_size or 0
        # Too young is the usual state of footage; the list shows what is past its time and kept anyway.
        overdue = [{"id": r.id, "device": r.device, "seq": r.seq, "reasons": reasons}
                   for r, reasons in self.kept if reasons != [YOUNG]]
        freed = {r.media_sha256: r.media_size or 0 for r in self.purge if r.media_sha256 not in self.shared}
        return {
            "as_of_ns": self.as_of_ns, "cutoff_ns": self.cutoff_ns, "policy_days": self.policy_days,
            "purge": {"count": len(self.purge), "bytes_freed": sum(freed.values()), "segments": [
                {"id": r.id, "device": r.device, "seq": r.seq, "manifest": r.manifest, "media_sha256": r.media_sha256,
                 "media_size": r.media_size, "end_ns": r.end_ns, "received_ns": r.received_ns,
                 "blob": "kept: another segment names it" if r.media_sha256 in self.shared else "deleted"}
                for r in self.purge]},
            "kept": {"totals": totals, "overdue": overdue[:KEPT_LISTED], "overdue_count": len(overdue)},
        }


def _shared(conn: Connection, going: list[Row[Any]]) -> set[str]:
    ids = {r.id for r in going}
    hashes = sorted({r.media_sha256 for r in going})
    shared: set[str] = set()
    for i in range(0, len(hashes), 500):
        for row in conn.execute(select(s.id, s.media_sha256).where(s.media_sha256.in_(hashes[i : i + 500]),
                                                                   s.purged_ns.is_(None))):
            if row.id not in ids:
                shared.add(row.media_sha256)
    return shared


def plan(conn: Connection, policy_days: int, as_of_ns: int) -> Plan:
    """What a run as of `as_of_ns` would purge and what it would keep, and why. Changes nothing."""
    cutoff = as_of_ns - policy_days * DAY_NS
    purge: list[Row[Any]] = []
    kept: list[tuple[Row[Any], list[str]]] = []
    for row in conn.execute(_media_rows(cutoff)):
        reasons = kept_because(row, cutoff)
        if reasons:
            kept.append((row, reasons))
        else:
            purge.append(row)
    young = conn.execute(select(func.count(), func.coalesce(func.sum(s.media_size), 0)).where(
        s.kind.in_(MEDIA_KINDS), s.purged_ns.is_(None), s.start_ns > cutoff)).one()
    # PostgreSQL sums bigints as numeric (a Decimal here).
    return Plan(as_of_ns, policy_days, purge, _shared(conn, purge), kept, (young[0], int(young[1])))


def _purge(svc: Services, ids: list[int], cutoff_ns: int, policy_days: int, actor: str,
           reason: str) -> list[tuple[Row[Any], int]]:
    """Step 1 for one batch: the rows purged, each with its tombstone's log index."""
    with svc.db.write() as conn:
        segment_rows.lock(conn, ids)
        rows = [r for r in conn.execute(_media_rows(cutoff_ns, ids)) if not kept_because(r, cutoff_ns)]
        if not rows:
            return []
        now = svc.clock()
        first = svc.log.append(conn, [("tombstone", log_records.issue(svc.identity.signer, log_records.TOMBSTONE_TYPE, {
            "server": svc.identity.name, "at_ns": now, "actor": actor, "device": r.device, "seq": r.seq,
            "manifest": r.manifest, "media_sha256": r.media_sha256, "reason": log_records.RETENTION,
            "policy_days": policy_days})) for r in rows], now)
        for i, r in enumerate(rows):
            conn.execute(update(segments).where(s.id == r.id).values(purged_ns=now, tombstone_index=first + i))
        audit_id = conn.execute(insert(audit_table).values(
            at_ns=now, actor=actor, action=ACTION, reason=reason, log_index=first,
            target=json.dumps({"segments": [r.id for r in rows], "policy_days": policy_days, "cutoff_ns": cutoff_ns},
                              sort_keys=True))).inserted_primary_key[0]
        conn.execute(insert(audit_segments), [{"audit_id": audit_id, "segment_id": r.id} for r in rows])
    return [(r, first + i) for i, r in enumerate(rows)]


def delete_unclaimed_blobs(svc: Services, among: set[str] | None = None) -> int:
    """Step 2: delete the blobs of purged segments that no unpurged row names (of `among`, or all: after
    a crash between the steps); return how many were there to delete."""
    live = aliased(segments)
    stmt = select(s.media_sha256).distinct().where(
        s.purged_ns.is_not(None), s.media_sha256.is_not(None),
        ~exists().where(live.c.media_sha256 == s.media_sha256, live.c.purged_ns.is_(None)))
    if among is not None:
        stmt = stmt.where(s.media_sha256.in_(sorted(among)))
    with svc.db.read() as conn:
        hashes = conn.execute(stmt).scalars().all()
    deleted = 0
    for sha256 in hashes:
        if svc.blobs.exists(sha256):
            svc.blobs.delete(sha256)
            deleted += 1
    return deleted


def run(svc: Services, *, actor: str, reason: str, as_of_ns: int) -> dict[str, Any]:
    """Purge what `plan` lists as of `as_of_ns` (never later than now) and report it."""
    reason = audit.check_reason(reason)
    if as_of_ns > svc.clock():
        raise RetentionError("a run may not look ahead: that would purge footage before its time (a dry run may)")
    deleted = delete_unclaimed_blobs(svc)
    with svc.db.read() as conn:
        todo = plan(conn, svc.config.retention_days, as_of_ns)
    purged: list[dict[str, int]] = []
    for i in range(0, len(todo.purge), BATCH):
        done = _purge(svc, [r.id for r in todo.purge[i : i + BATCH]], todo.cutoff_ns, todo.policy_days, actor, reason)
        purged += [{"id": r.id, "tombstone_index": index} for r, index in done]
        deleted += delete_unclaimed_blobs(svc, {r.media_sha256 for r, _ in done}) if done else 0
    return todo.report() | {"purged": purged, "blobs_deleted": deleted}


@routes.add("GET", "/api/retention/report", summary="What a retention run now would purge (and the bytes it would "
            "free) and what it keeps, and why: case, hold, quarantined, too young. Changes nothing",
            access=(api.ADMINISTRATOR, api.AUDITOR))
async def report(request: web.Request) -> web.Response:
    svc = services(request)

    def load() -> dict[str, Any]:
        with svc.db.read() as conn:
            return plan(conn, svc.config.retention_days, svc.clock()).report()

    return web.json_response(await svc.db.run(load))


_RUN = {"type": "object", "required": ["reason"], "additionalProperties": False,
        "properties": {"reason": {"type": "string", "maxLength": audit.MAX_REASON}}}


@routes.add("POST", "/api/retention/run", summary="Purge footage past retention now: a tombstone in the log for "
            "each segment, then its media deleted; audited with the reason", access=api.ADMINISTRATOR, body=_RUN,
            responses={400: "no reason"})
async def run_now(request: web.Request) -> web.Response:
    body = await api.json_body(request, _RUN)
    svc = services(request)
    actor = request[api.PRINCIPAL].actor
    try:
        reason = audit.check_reason(body["reason"])
    except audit.ReasonError as exc:
        raise api.bad_request(str(exc), "reason_required") from None
    return web.json_response(await svc.db.run(lambda: run(svc, actor=actor, reason=reason, as_of_ns=svc.clock())))
