"""Retention: the dry run lists exactly what the run then purges; footage kept by a case, a hold, quarantine
or youth survives; every purge leaves a tombstone that verifies; the API and the admin command refuse what
they must; a run cut short between its two steps is finished by the next."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from protocol import log_records, manifest
from protocol.trust import TrustList
from server import retention
from server.schema import audit, audit_segments, case_segments, cases, holds, log_head, segments
from server.services import Services
from tests.server.harness import InProcessServer, liuhen
from tests.server.indexed_footage import DAY, SECOND, Recorder, Stored

NOW = time.time_ns() // SECOND * SECOND
OLD = NOW - 200 * DAY  # received long enough ago


def log_size(s: Services) -> int:
    with s.db.read() as conn:
        return conn.execute(select(log_head.c.size)).scalar_one()


def keep_by_case(s: Services, *stored: Stored) -> None:
    with s.db.write() as conn:
        case_id = conn.execute(insert(cases).values(number=f"C-{stored[0].id}", title="t", unit="U1", created_ns=NOW)
                               ).inserted_primary_key[0]
        conn.execute(insert(case_segments), [{"case_id": case_id, "segment_id": x.id, "linked_ns": NOW,
                                              "linked_by": "test"} for x in stored])


def hold(s: Services, stored: Stored, released_ns: int | None = None) -> None:
    with s.db.write() as conn:
        conn.execute(insert(holds).values(segment_id=stored.id, reason="appeal", created_ns=NOW, created_by="test",
                                          released_ns=released_ns))


def scene(s: Services) -> dict[str, Stored]:
    """One recorder's footage in every state retention tells apart (policy: 183 days)."""
    li = Recorder(s, "REC-0001", officer="100001")
    made = {
        "boot": li.record(manifest.BOOT, NOW - 300 * DAY),  # a record: nothing to purge, ever
        "old": li.segment(NOW - 300 * DAY, received_ns=OLD),
        "old_released": li.segment(NOW - 290 * DAY, received_ns=OLD),  # its only hold was released
        "at_cutoff": li.segment(NOW - 183 * DAY - 10 * SECOND, received_ns=NOW - 183 * DAY),  # exactly old enough
        "linked": li.segment(NOW - 280 * DAY, received_ns=OLD),
        "held": li.segment(NOW - 270 * DAY, received_ns=OLD),
        "quarantined": li.segment(NOW - 260 * DAY, received_ns=OLD, status="quarantined"),
        "young": li.segment(NOW - 10 * DAY, received_ns=NOW - 9 * DAY),
        "arrived_late": li.segment(NOW - 300 * DAY, received_ns=NOW - 20 * DAY),  # a recorder clock behind, say
        "ends_late": li.segment(NOW - 183 * DAY - 5 * SECOND, received_ns=NOW - 190 * DAY),  # ends after the cutoff
    }
    keep_by_case(s, made["linked"])
    hold(s, made["held"])
    hold(s, made["old_released"], released_ns=NOW - DAY)
    return made


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Any:
    with InProcessServer(tmp_path, db_url) as srv:
        srv.services.clock = lambda: NOW
        yield srv


def test_the_run_purges_exactly_what_the_dry_run_listed(server: InProcessServer) -> None:
    s, url = server.services, server.url
    made = scene(s)
    by_id = {x.id: name for name, x in made.items()}
    admin, auditor = server.user("a.min", "administrator"), server.user("w.audit", "auditor")
    officer = server.user("o.li", "officer", officer_no="100001")

    report = auditor.get(f"{url}/api/retention/report", timeout=10).json()
    going = {"old", "old_released", "at_cutoff"}
    assert {by_id[x["id"]] for x in report["purge"]["segments"]} == going
    assert report["purge"]["bytes_freed"] == 3 * 1024 and report["policy_days"] == 183
    assert report["cutoff_ns"] == NOW - 183 * DAY
    assert report["kept"]["totals"] == {"case": {"count": 1, "bytes": 1024}, "hold": {"count": 1, "bytes": 1024},
                                        "quarantined": {"count": 1, "bytes": 1024},
                                        "young": {"count": 3, "bytes": 3 * 1024}}
    assert {by_id[x["id"]]: x["reasons"] for x in report["kept"]["overdue"]} == {
        "linked": ["case"], "held": ["hold"], "quarantined": ["quarantined"]}
    assert officer.get(f"{url}/api/retention/report", timeout=10).status_code == 403
    before = log_size(s)
    assert auditor.post(f"{url}/api/retention/run", json={"reason": "monthly"}, timeout=10).status_code == 403
    assert admin.post(f"{url}/api/retention/run", json={}, timeout=10).status_code == 400
    blank = admin.post(f"{url}/api/retention/run", json={"reason": " "}, timeout=10)
    assert blank.status_code == 400 and "state a reason" in blank.json()["message"]
    assert log_size(s) == before and admin.get(f"{url}/api/retention/report", timeout=10).json() == report

    done = admin.post(f"{url}/api/retention/run", json={"reason": "monthly purge, policy 183 days"}, timeout=30).json()
    assert sorted(x["id"] for x in done["purged"]) == sorted(made[n].id for n in going)
    assert done["purge"] == report["purge"] and done["blobs_deleted"] == 3
    admin_id = admin.get(f"{url}/api/me", timeout=10).json()["id"]
    trust = TrustList([s.identity.trusted_key()])
    with s.db.read() as conn:
        rows = {r.id: r for r in conn.execute(select(segments))}
        for purged in done["purged"]:
            row = rows[purged["id"]]
            assert (row.purged_ns, row.tombstone_index) == (NOW, purged["tombstone_index"])
            tombstone = log_records.open_record(s.log.entry(conn, row.tombstone_index), log_records.TOMBSTONE_TYPE,
                                                trust)
            assert tombstone.fields == {
                "v": 1, "server": s.identity.name, "at_ns": NOW, "actor": f"user:{admin_id}", "device": "REC-0001",
                "seq": row.seq, "manifest": row.manifest, "media_sha256": row.media_sha256, "reason": "retention",
                "policy_days": 183}
        record = conn.execute(select(audit).where(audit.c.action == "retention-purge")).one()
        assert record.reason == "monthly purge, policy 183 days"
        assert record.log_index == min(x["tombstone_index"] for x in done["purged"])
        assert {r.segment_id for r in conn.execute(select(audit_segments).where(
            audit_segments.c.audit_id == record.id))} == {x["id"] for x in done["purged"]}
    for name, stored in made.items():
        assert rows[stored.id].purged_ns == (NOW if name in going else None), name
        if stored.media_sha256:
            assert s.blobs.exists(stored.media_sha256) == (name not in going), name

    size = log_size(s)
    again = admin.post(f"{url}/api/retention/run", json={"reason": "again"}, timeout=10).json()
    assert again["purged"] == [] and again["purge"]["count"] == 0 and log_size(s) == size


def test_shared_media_goes_with_the_last_segment_naming_it(server: InProcessServer) -> None:
    s = server.services
    li = Recorder(s, "REC-0001")
    media = b"the same bytes under two manifests"
    first, second = (li.segment(NOW - 300 * DAY, received_ns=OLD, media=media) for _ in range(2))
    keep_by_case(s, second)
    done = retention.run(s, actor="admin-cli", reason="monthly", as_of_ns=NOW)
    assert [x["id"] for x in done["purged"]] == [first.id] and done["purge"]["bytes_freed"] == 0
    assert done["purge"]["segments"][0]["blob"] == "kept: another segment names it"
    assert s.blobs.exists(first.media_sha256)
    with s.db.write() as conn:
        conn.execute(delete(case_segments))
    done = retention.run(s, actor="admin-cli", reason="monthly", as_of_ns=NOW)
    assert [x["id"] for x in done["purged"]] == [second.id] and done["purge"]["bytes_freed"] == len(media)
    assert not s.blobs.exists(first.media_sha256)


def test_a_run_cut_short_after_its_tombstones_is_finished_by_the_next(server: InProcessServer,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    s = server.services
    li = Recorder(s, "REC-0001")
    made = [li.segment(NOW - 300 * DAY, received_ns=OLD) for _ in range(3)]

    def crash(_sha256: str) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(s.blobs, "delete", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        retention.run(s, actor="admin-cli", reason="monthly", as_of_ns=NOW)
    monkeypatch.undo()
    with s.db.read() as conn:
        rows = conn.execute(select(segments.c.purged_ns, segments.c.tombstone_index)).all()
    assert all(r.purged_ns == NOW and r.tombstone_index is not None for r in rows)  # step 1 committed whole
    assert all(s.blobs.exists(x.media_sha256) for x in made)  # step 2 never ran: blobs nobody claims
    size = log_size(s)
    done = retention.run(s, actor="admin-cli", reason="monthly", as_of_ns=NOW)
    assert done["purged"] == [] and done["blobs_deleted"] == 3 and log_size(s) == size
    assert not any(s.blobs.exists(x.media_sha256) for x in made)


def test_a_hold_placed_after_the_plan_still_keeps_the_footage(server: InProcessServer) -> None:
    s = server.services
    li = Recorder(s, "REC-0001")
    late_hold, other = li.segment(NOW - 300 * DAY, received_ns=OLD), li.segment(NOW - 300 * DAY, received_ns=OLD)
    with s.db.read() as conn:
        todo = retention.plan(conn, 183, NOW)
    assert [r.id for r in todo.purge] == [late_hold.id, other.id]
    hold(s, late_hold)
    done = retention._purge(s, [r.id for r in todo.purge], todo.cutoff_ns, 183, "admin-cli", "monthly")
    assert [r.id for r, _ in done] == [other.id]


def test_admin_command_runs_and_dry_runs(server: InProcessServer) -> None:
    s, config = server.services, str(server.config_path)
    made = scene(s)
    size = log_size(s)
    ahead = datetime.fromtimestamp(NOW // SECOND + 400 * 86400, UTC).isoformat()
    dry = json.loads(liuhen("admin", "retention", "run", "--config", config, "--dry-run", "--now", ahead).stdout)
    # A year from now the young footage is due as well; looking ahead changes nothing.
    assert {x["id"] for x in dry["purge"]["segments"]} == {made[n].id for n in (
        "old", "old_released", "at_cutoff", "young", "arrived_late", "ends_late")}
    assert log_size(s) == size
    for args, message in [((), "--reason is required"), (("--reason", "x", "--now", ahead), "may not look ahead"),
                          (("--now", "tomorrow"), "neither UTC nanoseconds")]:
        r = liuhen("admin", "retention", "run", "--config", config, *args, check=False)
        assert r.returncode == 2 and message in r.stderr, r.stderr
    # As of the scene's own now, so the footage at the edge is exactly as old as the scene made it.
    done = json.loads(liuhen("admin", "retention", "run", "--config", config, "--reason", "monthly",
                             "--now", str(NOW)).stdout)
    assert {x["id"] for x in done["purged"]} == {made[n].id for n in ("old", "old_released", "at_cutoff")}
    assert log_size(s) == size + 3
