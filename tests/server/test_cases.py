"""Cases, their handlers, footage links and holds: who may do what, what each writes (audit records and
public custody events that verify), and bad requests refused without changing anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

from protocol import log_records, manifest
from protocol.log_records import Record
from protocol.trust import TrustList
from server.audit import commitment_of
from server.schema import audit, case_segments, holds, log_entries, log_head
from server.services import Services
from tests.server.harness import InProcessServer
from tests.server.indexed_footage import SECOND, Recorder

T = 1_764_000_000 * SECOND
REASON = "case 2025-017: the roadside stop of 24 November"


def custody_events(s: Services) -> list[Record]:
    """Every custody event in the log, each opened and verified against the server's key."""
    trust = TrustList([s.identity.trusted_key()])
    with s.db.read() as conn:
        entries = conn.execute(select(log_entries.c.entry).where(log_entries.c.kind == "custody")
                               .order_by(log_entries.c.idx)).scalars().all()
    return [log_records.open_record(e, log_records.CUSTODY_TYPE, trust) for e in entries]


def written(s: Services) -> tuple[int, ...]:
    with s.db.read() as conn:
        counts = [conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (audit, case_segments, holds)]
        return (*counts, conn.execute(select(log_head.c.size)).scalar_one())


def open_case(session: requests.Session, url: str, number: str, **extra: Any) -> requests.Response:
    return session.post(f"{url}/api/cases", json={"number": number, "title": "Roadside stop", **extra}, timeout=10)


def test_cases_are_opened_by_supervisors_and_seen_by_their_people(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        url = server.url
        sup1, sup2 = server.user("s.one", "supervisor", unit="U1"), server.user("s.two", "supervisor", unit="U2")
        admin, officer = server.user("a.min", "administrator"), server.user("o.li", "officer", officer_no="100001")
        c1 = open_case(sup1, url, "京公(东)行罚决字\u30142025\u301517号")  # a decision number, brackets and all
        assert c1.status_code == 201 and c1.json()["unit"] == "U1"
        c2 = open_case(admin, url, "C-2", unit="U2").json()
        for session, body, status, message in [
            (sup1, {"number": "C-3", "title": "t", "unit": "U2"}, 403, "own unit"),
            (officer, {"number": "C-3", "title": "t"}, 403, "not open to your role"),
            (sup1, {"number": c1.json()["number"], "title": "t"}, 409, "is taken"),
            (sup1, {"number": "C-3\n", "title": "t"}, 400, "printable"),
            (sup1, {"number": " C-3", "title": "t"}, 400, "leading or trailing"),
            (sup1, {"number": "C" * 65, "title": "t"}, 400, "too long"),
            (sup1, {"number": "C-3"}, 400, "'title' is a required property"),
        ]:
            r = session.post(f"{url}/api/cases", json=body, timeout=10)
            assert r.status_code == status and message in r.json()["message"], (body, r.text)

        def listed(session: requests.Session, **params: Any) -> list[str]:
            r = session.get(f"{url}/api/cases", params=params, timeout=10)
            assert r.status_code == 200, r.text
            return [c["number"] for c in r.json()["cases"]]

        assert listed(sup1) == [c1.json()["number"]]
        assert listed(sup2) == ["C-2"]
        assert listed(admin) == ["C-2", c1.json()["number"]]
        assert listed(officer) == []
        first = admin.get(f"{url}/api/cases", params={"limit": 1}, timeout=10).json()
        assert listed(admin, limit=1, next=first["next"]) == [c1.json()["number"]]
        for params in ({"limit": 0}, {"next": "x"}):
            assert admin.get(f"{url}/api/cases", params=params, timeout=10).status_code == 400
        for session in (sup1, officer):
            hidden = session.get(f"{url}/api/cases/{c2['id']}", timeout=10)
            assert hidden.status_code == 404 and hidden.json()["message"] == f"no case '{c2['id']}' that you may see"
        assert sup2.get(f"{url}/api/cases/{c2['id']}", timeout=10).json()["handlers"] == []
        assert admin.post(f"{url}/api/cases/{c1.json()['id']}/handlers", json={"username": "o.li"},
                          timeout=10).status_code == 200
        assert listed(officer) == [c1.json()["number"]]
        assert officer.get(f"{url}/api/cases/x", timeout=10).status_code == 404


def test_handlers_see_the_case_footage_until_removed(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s, url = server.services, server.url
        seg = Recorder(s, "REC-0001", officer="100001").segment(T)
        sup1, sup2 = server.user("s.one", "supervisor", unit="U1"), server.user("s.two", "supervisor", unit="U2")
        admin, wang = server.user("a.min", "administrator"), server.user("o.wang", "officer", officer_no="100002")
        case = open_case(sup1, url, "C-1").json()
        handlers = f"{url}/api/cases/{case['id']}/handlers"
        assert sup1.post(f"{url}/api/cases/{case['id']}/footage", json={"segments": [seg.id], "reason": REASON},
                         timeout=10).status_code == 200

        def sees() -> list[int]:
            return [x["id"] for x in wang.get(f"{url}/api/segments", timeout=10).json()["segments"]]

        assert sees() == []
        r = sup1.post(handlers, json={"username": "o.wang"}, timeout=10)
        assert r.status_code == 200 and [h["username"] for h in r.json()["handlers"]] == ["o.wang"]
        assert sup1.post(handlers, json={"username": "o.wang"}, timeout=10).status_code == 200  # once is enough
        assert sees() == [seg.id]
        assert [x["id"] for x in wang.get(f"{url}/api/cases/{case['id']}", timeout=10).json()["footage"]] == [seg.id]
        assert wang.post(handlers, json={"username": "o.wang"}, timeout=10).status_code == 403
        assert sup2.post(handlers, json={"username": "s.two"}, timeout=10).status_code == 404
        assert admin.post(handlers, json={"username": "s.two"}, timeout=10).status_code == 200
        refused = sup2.post(handlers, json={"username": "o.wang"}, timeout=10)  # handles it, but not of its unit
        assert refused.status_code == 403 and "supervisors of unit U1" in refused.json()["message"]
        assert sup1.post(handlers, json={"username": "nobody"}, timeout=10).status_code == 404
        assert sup1.post(handlers, json={"user": "o.wang"}, timeout=10).status_code == 400
        assert sup1.delete(handlers, params={"username": "o.wang"}, timeout=10).status_code == 200
        assert sees() == []
        again = sup1.delete(handlers, params={"username": "o.wang"}, timeout=10)
        assert again.status_code == 404 and "does not handle" in again.json()["message"]
        assert sup1.delete(handlers, timeout=10).status_code == 400
        with s.db.read() as conn:
            actions = conn.execute(select(audit.c.action, audit.c.case_number)
                                   .where(audit.c.action.like("case-handler%")).order_by(audit.c.id)).all()
        assert [tuple(a) for a in actions] == [("case-handler-add", "C-1")] * 2 + [("case-handler-remove", "C-1")]


def test_linking_footage_is_audited_and_logged(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s, url = server.services, server.url
        li = Recorder(s, "REC-0001", officer="100001")
        boot, a, b = li.record(manifest.BOOT, T - SECOND), li.segment(T), li.segment(T + 10 * SECOND)
        hidden = Recorder(s, "REC-0009", unit="U2", officer="200001").segment(T)
        sup1, officer = server.user("s.one", "supervisor", unit="U1"), server.user("o.li", "officer",
                                                                                  officer_no="100001")
        case = open_case(sup1, url, "C-1").json()
        footage = f"{url}/api/cases/{case['id']}/footage"

        r = sup1.post(footage, json={"segments": [a.id], "reason": REASON}, timeout=10)
        assert r.status_code == 200 and r.json()["linked"] == [a.id]
        event = custody_events(s)[-1]
        assert event["action"] == "case-link" and event["case"] == "C-1" and event["subjects"] == [a.manifest]
        with s.db.read() as conn:
            assert event["reason_sha256"] == commitment_of(conn, event["audit_id"])
        assert event["actor"] == f"user:{sup1.get(f'{url}/api/me', timeout=10).json()['id']}"
        with s.db.read() as conn:
            row = conn.execute(select(audit).where(audit.c.id == r.json()["audit_id"])).one()
            assert (row.action, row.case_number, row.reason, json.loads(row.target)["segments"]) == \
                ("case-link", "C-1", REASON, [a.id])
            assert s.log.entry(conn, row.log_index) == event.envelope.raw

        clip = {"device": "REC-0001", "from_ns": T - 5 * SECOND, "to_ns": T + 15 * SECOND}
        r = sup1.post(footage, json={"clip": clip, "reason": REASON}, timeout=10)
        assert r.json()["linked"] == [boot.id, b.id] and r.json()["already_linked"] == [a.id]
        assert custody_events(s)[-1]["subjects"] == [boot.manifest, b.manifest]
        before = written(s)
        same = sup1.post(footage, json={"segments": [a.id, b.id], "reason": REASON}, timeout=10).json()
        assert same["linked"] == [] and same["audit_id"] is None and written(s) == before
        for session, body, status in [
            (sup1, {"segments": [hidden.id], "reason": REASON}, 404),  # footage the caller may not see
            (sup1, {"segments": [a.id, hidden.id], "reason": REASON}, 404),
            (sup1, {"segments": [a.id]}, 400),
            (sup1, {"segments": [a.id], "reason": "  "}, 400),
            (sup1, {"segments": [], "reason": REASON}, 400),
            (sup1, {"segments": [a.id], "clip": clip, "reason": REASON}, 400),
            (sup1, {"clip": {"device": "REC-0001", "from_ns": 5, "to_ns": 5}, "reason": REASON}, 400),
            (officer, {"segments": [a.id], "reason": REASON}, 404),  # may see the footage, not the case
        ]:
            r = session.post(footage, json=body, timeout=10)
            assert r.status_code == status, (body, r.text)
        assert sup1.post(f"{url}/api/cases/999/footage", json={"segments": [a.id], "reason": REASON},
                         timeout=10).status_code == 404
        assert written(s) == before

        r = sup1.delete(footage, json={"segments": [a.id], "reason": "linked by mistake"}, timeout=10)
        assert r.status_code == 200 and r.json()["unlinked"] == [a.id]
        event = custody_events(s)[-1]
        assert (event["action"], event["case"], event["subjects"]) == ("case-unlink", "C-1", [a.manifest])
        before = written(s)
        again = sup1.delete(footage, json={"segments": [a.id, b.id], "reason": REASON}, timeout=10)
        assert again.status_code == 404 and f"segment {a.id} is not linked to case C-1" in again.json()["message"]
        clip = {"device": "REC-0001", "from_ns": T + 11 * SECOND, "to_ns": T + 12 * SECOND}
        assert sup1.delete(footage, json={"clip": clip, "reason": REASON}, timeout=10).json()["unlinked"] == [b.id]
        assert sup1.delete(footage, json={"clip": clip, "reason": REASON}, timeout=10).status_code == 404
        assert written(s)[1] == before[1] - 1


def test_holds_are_placed_and_released_with_reasons(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s, url = server.services, server.url
        li = Recorder(s, "REC-0001", officer="100001")
        boot, a, b = li.record(manifest.BOOT, T - SECOND), li.segment(T), li.segment(T + 10 * SECOND)
        hidden = Recorder(s, "REC-0009", unit="U2").segment(T)
        sup1, sup2 = server.user("s.one", "supervisor", unit="U1"), server.user("s.two", "supervisor", unit="U2")
        legal, officer = server.user("l.chen", "legal_reviewer"), server.user("o.li", "officer", officer_no="100001")
        case = open_case(sup1, url, "C-1").json()
        sup1.post(f"{url}/api/cases/{case['id']}/footage", json={"segments": [a.id], "reason": REASON}, timeout=10)
        sup1.post(f"{url}/api/cases/{case['id']}/handlers", json={"username": "l.chen"}, timeout=10)

        r = legal.post(f"{url}/api/holds", json={"segments": [a.id], "reason": "appeal pending", "case": "C-1"},
                       timeout=10)
        assert r.status_code == 201, r.text
        [hold] = r.json()["holds"]
        event = custody_events(s)[-1]
        assert (event["action"], event["subjects"], event["case"]) == ("hold", [a.manifest], "C-1")
        detail = sup1.get(f"{url}/api/segments/{a.id}", timeout=10).json()
        assert [(h["id"], h["reason"], h["released_ns"]) for h in detail["holds"]] == [(hold["id"], "appeal pending",
                                                                                         None)]
        clip = {"device": "REC-0001", "from_ns": T - 5 * SECOND, "to_ns": T + 20 * SECOND}
        placed = sup1.post(f"{url}/api/holds", json={"clip": clip, "reason": "complaint"}, timeout=10).json()
        assert [h["segment_id"] for h in placed["holds"]] == [a.id, b.id]  # media only: the boot record holds none
        before = written(s)
        for session, body, status in [
            (officer, {"segments": [a.id], "reason": "x"}, 403),
            (sup1, {"segments": [hidden.id], "reason": "x"}, 404),
            (legal, {"segments": [b.id], "reason": "x"}, 404),  # b is no footage of the cases legal handles
            (sup1, {"segments": [boot.id], "reason": "x"}, 400),
            (sup1, {"segments": [a.id]}, 400),
            (sup1, {"segments": [a.id], "reason": "x", "case": "C-404"}, 400),
        ]:
            r = session.post(f"{url}/api/holds", json=body, timeout=10)
            assert r.status_code == status, (body, r.text)
        assert written(s) == before

        release = f"{url}/api/holds/{hold['id']}/release"
        assert sup2.post(release, json={"reason": "x"}, timeout=10).status_code == 404
        assert legal.post(release, json={}, timeout=10).status_code == 400
        assert legal.post(f"{url}/api/holds/abc/release", json={"reason": "x"}, timeout=10).status_code == 404
        assert written(s) == before
        r = legal.post(release, json={"reason": "appeal withdrawn"}, timeout=10)
        assert r.status_code == 200 and r.json()["segment_id"] == a.id
        event = custody_events(s)[-1]
        assert (event["action"], event["subjects"], event["case"]) == ("release", [a.manifest], None)
        again = legal.post(release, json={"reason": "appeal withdrawn"}, timeout=10)
        assert again.status_code == 409 and "released already" in again.json()["message"]
