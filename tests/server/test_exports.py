"""Exports: an evidence package that `liuhen verify` checks offline, or a labelled MP4 remuxed from the
originals; each written to the audit trail and the public log before it is built, and downloadable by
the person who made it only, until it expires."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import av
import pytest
import requests
from sqlalchemy import insert, select

from protocol import log_records
from protocol.trust import TrustList
from server import audit, exports
from server.derived_clip import TITLE, ClipError
from server.schema import audit as audit_table
from server.schema import cases
from server.schema import exports as exports_table
from tests.server.footage import REASON, T0, Site
from tests.server.harness import sign_in

NS = 1_000_000_000
HOUR_NS = 3600 * NS
LIUHEN = Path(sys.executable).with_name("liuhen")
WHOLE = {"device": "REC-0001", "from_ns": T0 - NS, "to_ns": T0 + 12 * NS}


def _verify(path: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([str(LIUHEN), "verify", str(path), "--json"], capture_output=True, text=True, timeout=120)
    return done.returncode, json.loads(done.stdout)


def _download(site: Site, session: requests.Session, created: dict[str, Any], folder: Path) -> Path:
    r = session.get(site.url + created["url"], timeout=60)
    assert r.status_code == 200, r.text
    assert hashlib.sha256(r.content).hexdigest() == created["sha256"] and len(r.content) == created["size"]
    path = folder / r.headers["Content-Disposition"].split('filename="')[1].rstrip('"')
    path.write_bytes(r.content)
    return path


def _custody(site: Site, audit_id: int) -> tuple[Any, dict[str, Any]]:
    services = site.server.services
    with services.db.read() as conn:
        record = conn.execute(select(audit_table).where(audit_table.c.id == audit_id)).one()
        entry = services.log.entry(conn, record.log_index)
    trust = TrustList([services.identity.trusted_key()])
    return record, log_records.open_record(entry, log_records.CUSTODY_TYPE, trust).fields


def test_a_package_export_verifies_offline_and_fails_when_changed(site: Site, tmp_path: Path) -> None:
    with site.server.services.db.write() as conn:
        conn.execute(insert(cases).values(number="2025-017", title="roadside stop", unit="U1", created_ns=T0))
    supervisor = site.server.user("s.wang", "supervisor", unit="U1")
    r = site.export(supervisor, format="package", clip=WHOLE, case="2025-017")
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["segments"] == site.rec.ids and created["purged"] == []

    record, event = _custody(site, created["audit_id"])
    assert (record.action, record.case_number, record.reason) == ("export-package", "2025-017", REASON)
    assert event["action"] == "export-package" and event["case"] == "2025-017"
    assert event["subjects"] == [m.hash.hex() for m in site.rec.manifests]

    path = _download(site, supervisor, created, tmp_path)
    assert path.name == f"{created['id']}.zip"
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        index = json.loads(zf.read("export.json"))
    seqs = [f"{seq:012d}" for seq in range(4)]
    assert {"README.txt", "trust.json", "log.vkey", "checkpoint", "export.json"} <= names
    for seq in seqs:
        assert {f"segments/REC-0001/{seq}.manifest", f"proofs/REC-0001/{seq}.tlog-proof",
                f"receipts/REC-0001/{seq}.dock", f"receipts/REC-0001/{seq}.server",
                f"proofs/REC-0001/{seq}.dock.tlog-proof"} <= names
    assert {f"segments/REC-0001/{seq}.mp4" for seq in seqs[1:]} <= names
    assert index["id"] == created["id"] and index["case"] == "2025-017"
    assert index["clip"] == {"devices": ["REC-0001"], **{k: WHOLE[k] for k in ("from_ns", "to_ns")}}
    with site.server.services.db.read() as conn:
        assert index["reason_sha256"] == audit.commitment_of(conn, created["audit_id"])

    status, report = _verify(path)
    assert status == 0 and report["intact"], report

    data = bytearray(path.read_bytes())
    data[data.find(site.rec.media[site.rec.ids[2]]) + 1000] ^= 0x01  # a byte inside one original
    changed = tmp_path / "changed.zip"
    changed.write_bytes(bytes(data))
    status, report = _verify(changed)
    assert status == 1 and not report["intact"]


def test_a_package_carries_the_tombstone_of_purged_media_and_an_unbroken_chain(site: Site, tmp_path: Path) -> None:
    _, first, second, third = site.rec.ids
    site.footage.purge(second)
    # Asked for the first and third segments only: the second comes too, or the chain would have a hole.
    r = site.export(format="package", segments=[third, first])
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["segments"] == [first, second, third] and created["purged"] == [second]
    _, event = _custody(site, created["audit_id"])
    assert len(event["subjects"]) == 3

    path = _download(site, site.officer, created, tmp_path)
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {"segments/REC-0001/000000000002.tombstone", "proofs/REC-0001/000000000002.tombstone.tlog-proof"} <= names
    assert "segments/REC-0001/000000000002.mp4" not in names
    assert "segments/REC-0001/000000000000.manifest" not in names  # the boot record was not asked for
    status, report = _verify(path)
    assert status == 0, report
    codes = [f["code"] for d in report["devices"] for f in d["findings"]]
    assert codes == ["file.purged"]


def test_an_mp4_export_is_a_labelled_remux_of_the_originals(site: Site, tmp_path: Path) -> None:
    _, first, second, third = site.rec.ids
    r = site.export(format="mp4", clip={"device": "REC-0001", "from_ns": T0 + 5 * NS, "to_ns": T0 + 9 * NS})
    assert r.status_code == 201, r.text
    created = r.json()
    assert [o["segment"] for o in created["originals"]] == [second, third]
    assert [o["manifest"] for o in created["originals"]] == [m.hash.hex() for m in site.rec.manifests[2:]]
    assert created["start_ns"] == T0 + 5 * NS and created["starts_early_ns"] == 0  # a keyframe every second
    record, event = _custody(site, created["audit_id"])
    assert record.action == event["action"] == "export-mp4" and len(event["subjects"]) == 2

    path = _download(site, site.officer, created, tmp_path)
    with av.open(str(path)) as container:
        assert container.metadata["title"] == TITLE
        label = json.loads(container.metadata["comment"])
        frames = list(container.decode(video=0))
    assert len(frames) == 4 * 30 and frames[0].key_frame
    assert label["derived"] is True and label["export_id"] == created["id"]
    assert label["exported_by"] == record.actor
    with site.server.services.db.read() as conn:
        assert label["reason_sha256"] == audit.commitment_of(conn, created["audit_id"])
    assert [o["manifest"] for o in label["originals"]] == [o["manifest"] for o in created["originals"]]

    # Purged media leaves a gap and is reported.
    site.footage.purge(second)
    r = site.export(format="mp4", clip=WHOLE)
    assert r.status_code == 201, r.text
    assert [o["segment"] for o in r.json()["originals"]] == [first, third] and r.json()["purged"] == [second]


def test_an_export_is_its_makers_only_until_it_expires(site: Site, tmp_path: Path) -> None:
    services = site.server.services
    created = site.export(format="mp4", segments=[site.rec.ids[1]]).json()
    url = site.url + created["url"]
    part = site.officer.get(url, headers={"Range": "bytes=0-99"}, timeout=30)
    assert part.status_code == 206 and len(part.content) == 100
    assert part.headers["Content-Type"] == "video/mp4" and part.headers["ETag"] == f'"{created["sha256"]}"'
    supervisor = site.server.user("s.wang", "supervisor", unit="U1")
    assert supervisor.get(url, timeout=30).status_code == 403
    assert requests.get(url, timeout=30).status_code == 401
    assert site.officer.get(f"{site.url}/api/exports/exp-nosuchthing", timeout=30).status_code == 404

    start = services.clock()
    services.clock = lambda: start + 24 * HOUR_NS + NS
    officer = sign_in(site.url, "o.li")  # the first session expired too
    r = officer.get(url, timeout=30)
    assert r.status_code == 410 and r.json()["error"] == "export_expired"
    file = services.config.export_dir / f"{created['id']}.mp4"
    assert file.exists()
    assert site.export(officer, format="mp4", segments=[site.rec.ids[2]]).status_code == 201  # sweeps expired ones
    assert not file.exists()
    with services.db.read() as conn:
        assert conn.execute(select(exports_table.c.status).where(exports_table.c.id == created["id"])).scalar() == \
            exports.EXPIRED


def test_bad_exports_are_refused_and_change_nothing(site: Site) -> None:
    boot, first, *_ = site.rec.ids
    other = site.footage.record("REC-0002", officer="100001", unit="U1", start_ns=T0 + 3600 * NS)
    bad: list[tuple[dict[str, Any], int]] = [
        ({"format": "package", "segments": [first], "reason": ""}, 400),
        ({"format": "package", "segments": [first], "reason": " "}, 400),
        ({"format": "avi", "segments": [first]}, 400),
        ({"format": "package"}, 400),
        ({"format": "package", "segments": [first], "clip": WHOLE}, 400),
        ({"format": "package", "segments": [first], "case": "NO-SUCH-CASE"}, 400),
        ({"format": "mp4", "segments": [boot]}, 400),  # a record without media makes no MP4
        ({"format": "mp4", "segments": [first, other.ids[1]]}, 400),  # two devices make no one MP4
        ({"format": "package", "segments": [first + 1000]}, 404),
        ({"format": "mp4", "clip": {**WHOLE, "device": "REC-0009"}}, 404),
    ]
    export_dir = site.server.services.config.export_dir
    before = site.written()
    for body, status in bad:
        r = site.export(**body)
        assert r.status_code == status, (body, r.text)
    stranger = site.server.user("o.zhao", "officer", unit="U1", officer_no="100002")
    assert site.export(stranger, format="package", segments=[first]).status_code == 404
    assert site.written() == before
    assert not export_dir.exists() or list(export_dir.iterdir()) == []


def test_a_failing_audit_write_builds_nothing(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("the index is full")

    monkeypatch.setattr(audit, "record", failing)
    before = site.written()
    r = site.export(format="package", segments=[site.rec.ids[1]])
    assert r.status_code == 500
    assert site.written() == before
    export_dir = site.server.services.config.export_dir
    assert not export_dir.exists() or list(export_dir.iterdir()) == []


def test_a_build_that_fails_keeps_its_audit_record_and_serves_nothing(site: Site,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*_args: object, **_kwargs: object) -> None:
        raise ClipError("the original cannot be read as media")

    monkeypatch.setattr(exports, "remux_clip", failing)
    before = site.written()
    r = site.export(format="mp4", segments=[site.rec.ids[1]])
    assert r.status_code == 422 and "cannot be read" in r.json()["message"]
    export_id = r.json()["message"].split()[1]
    # The access was attempted with a reason: its record and custody event stay; no file exists.
    assert site.written() == (before[0] + 1, before[1], before[2] + 1, before[3] + 1)
    r = site.officer.get(f"{site.url}/api/exports/{export_id}", timeout=30)
    assert r.status_code == 409 and "failed" in r.json()["message"]
    assert list(site.server.services.config.export_dir.iterdir()) == []
