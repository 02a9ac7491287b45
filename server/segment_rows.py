"""Segments as handlers show and change them: summaries with their markers, the manifest fields decoded
from the stored envelope, rows locked against a concurrent retention run, and time ranges that the
start_ns index can serve."""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Row, func, select

from protocol import manifest, signatures
from server.schema import segment_markers, segments

s = segments.c
COLUMNS = (s.id, s.device, s.seq, s.kind, s.manifest, s.start_ns, s.end_ns, s.officer, s.unit, s.media_sha256,
           s.media_size, s.status, s.findings, s.purged_ns, s.min_lat_e7, s.max_lat_e7, s.min_lon_e7, s.max_lon_e7)
# Ids re-read on every span update: PostgreSQL hands out ids before commit, so a transaction that started
# earlier can commit a lower id after a higher one was seen. Ingest commits one segment at a time.
_RESCAN_IDS = 1000


def summaries(conn: Connection, rows: Sequence[Row[Any]]) -> list[dict[str, Any]]:
    """What a list of footage shows per segment, markers included (one query for all the rows)."""
    marks: dict[int, list[dict[str, Any]]] = {}
    if rows:
        m = segment_markers.c
        for mark in conn.execute(select(m.segment_id, m.t_ns, m.kind).where(m.segment_id.in_([r.id for r in rows]))
                                 .order_by(m.segment_id, m.t_ns)):
            marks.setdefault(mark.segment_id, []).append({"t_ns": mark.t_ns, "kind": mark.kind})
    return [{
        "id": r.id, "device": r.device, "seq": r.seq, "kind": r.kind, "manifest": r.manifest,
        "start_ns": r.start_ns, "end_ns": r.end_ns, "officer": r.officer, "unit": r.unit,
        "markers": marks.get(r.id, []), "media_sha256": r.media_sha256, "media_size": r.media_size,
        "status": r.status, "findings": json.loads(r.findings), "purged_ns": r.purged_ns,
    } for r in rows]


def lock(conn: Connection, ids: Iterable[int]) -> dict[int, int | None]:
    """Lock the rows of `ids` until the transaction ends and return their purged_ns. On PostgreSQL this
    keeps retention from purging footage while a hold or case link on it is written, and the other way
    round (SQLite's one writer holds the whole database); rows are locked in id order, so two such
    writers cannot deadlock. Read after the lock, purged_ns is the newest committed value."""
    stmt = select(s.id, s.purged_ns).where(s.id.in_(sorted(set(ids)))).order_by(s.id).with_for_update(of=segments)
    return {r.id: r.purged_ns for r in conn.execute(stmt)}


def manifest_fields(envelope: bytes) -> dict[str, Any]:
    """The fields of a stored manifest envelope (verified at ingest; parsed strictly all the same)."""
    return manifest.parse(signatures.open_envelope(envelope, manifest.TYPE).payload).fields


@dataclass(frozen=True)
class Spans:
    """The longest time span (end_ns - start_ns) and latitude span of any segment. They bound range filters on
    both sides (start_ns >= from - longest), so the start_ns and latitude indexes serve them."""

    seen_id: int = 0
    time_ns: int = 0
    lat_e7: int = 0


class _SpanTracker:
    # Rows are added and never moved in time or place, so the maxima only grow: each update reads only the
    # rows added since the last one, and a process reads the whole table once.
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans = Spans()

    def update(self, conn: Connection) -> Spans:
        with self._lock:
            floor = max(0, self._spans.seen_id - _RESCAN_IDS)
        row = conn.execute(select(func.max(s.end_ns - s.start_ns), func.max(s.max_lat_e7 - s.min_lat_e7),
                                  func.max(s.id)).where(s.id > floor)).one()
        with self._lock:
            old = self._spans
            self._spans = Spans(max(old.seen_id, row[2] or 0), max(old.time_ns, row[0] or 0),
                                max(old.lat_e7, row[1] or 0))
            return self._spans


_trackers: weakref.WeakKeyDictionary[Engine, _SpanTracker] = weakref.WeakKeyDictionary()
_trackers_lock = threading.Lock()


def spans(conn: Connection) -> Spans:
    with _trackers_lock:
        tracker = _trackers.setdefault(conn.engine, _SpanTracker())
    return tracker.update(conn)


def overlapping(conn: Connection, from_ns: int | None, to_ns: int | None) -> list[ColumnElement[bool]]:
    """Rows whose [start_ns, end_ns] meets [from_ns, to_ns] (either end may be open)."""
    clauses: list[ColumnElement[bool]] = []
    if to_ns is not None:
        clauses.append(s.start_ns <= to_ns)
    if from_ns is not None:
        clauses += [s.end_ns >= from_ns, s.start_ns >= from_ns - spans(conn).time_ns]
    return clauses
