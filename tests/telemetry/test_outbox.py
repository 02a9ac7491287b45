"""The disk outbox on its own: what a crash or a power cut leaves behind is read back correctly."""

from __future__ import annotations

from pathlib import Path

from firmware import telemetry as tm
from firmware.telemetry import Outbox


def event(n: int, **fields: object) -> bytes:
    return tm.encode({"device": "D", "kind": tm.MARKER, "n": n, "t_ns": 0, **fields})


def notice(n: int, first_n: int, dropped: int) -> bytes:
    return tm.encode({"device": "D", "kind": tm.EVENTS_DROPPED, "n": n, "t_ns": 0, "dropped": dropped,
                      "first_n": first_n, "last_n": n})


def reopen(root: Path) -> tuple[list[tm.Entry], bytes | None, int]:
    box = Outbox(root)
    try:
        return box.load()
    finally:
        box.close()


def test_empty_outbox_starts_at_one(tmp_path: Path) -> None:
    assert reopen(tmp_path) == ([], None, 1)


def test_numbering_goes_on_after_everything_was_acknowledged(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    entries = [box.write_event(n, event(n)) for n in (1, 2, 3)]
    box.sync(entries)
    for e in entries:
        box.acknowledged(e)
    box.close()
    assert reopen(tmp_path) == ([], None, 4)


def test_unreadable_leftovers_are_dropped_and_their_numbers_reused(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.write_event(1, event(1))
    box.event_path(2).write_bytes(b"")  # a power cut before the fsync
    (box.events_dir / f".{box.event_path(3).name}.tmp").write_bytes(event(3)[:5])  # a crash before the rename
    (tmp_path / "status.json").write_bytes(b'{"sta')
    box.close()
    entries, status, next_n = reopen(tmp_path)
    assert [e.n for e in entries] == [1]
    assert (status, next_n) == (None, 2)
    assert sorted(p.name for p in (tmp_path / "events").iterdir()) == [f"{1:020d}.json"]


def test_a_trim_cut_short_by_a_crash_is_finished(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for n in range(1, 6):
        box.write_event(n, event(n))
    box.event_path(3).write_bytes(notice(3, 1, 3))  # the notice was written; 1 and 2 were not yet removed
    box.close()
    entries, _, next_n = reopen(tmp_path)
    assert [(e.n, e.dropped) for e in entries] == [(3, (1, 3)), (4, None), (5, None)]
    assert next_n == 6


def test_last_status_is_kept(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.write_status(b'{"state":"standby"}')
    box.write_status(b'{"state":"recording"}')
    box.close()
    assert reopen(tmp_path)[1] == b'{"state":"recording"}'
