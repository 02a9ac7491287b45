"""GET /api/segments and one segment's details, manifest and proof: who sees what, every filter and its
edges, paging, and clear 400s for bad parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from sqlalchemy import insert

from protocol import manifest, signatures
from protocol.tlog.proof_bundle import verify_bundle_entry
from server import retention
from server.schema import case_handlers, case_segments, cases, holds
from server.services import Services
from tests.server.harness import InProcessServer
from tests.server.indexed_footage import DAY, SECOND, Recorder, e7

T = 1_764_000_000 * SECOND  # 2025-11-24T16:00:00Z
METERS_PER_E7_LAT = 6_371_008.8 * 3.141592653589793 / 180 / 10**7  # along a meridian, as the server measures


def found(session: requests.Session, url: str, **params: Any) -> list[int]:
    r = session.get(f"{url}/api/segments", params=params, timeout=10)
    assert r.status_code == 200, r.text
    return [x["id"] for x in r.json()["segments"]]


def link(s: Services, number: str, segment_ids: list[int], handler_ids: tuple[int, ...] = ()) -> int:
    with s.db.write() as conn:
        case_id = conn.execute(insert(cases).values(number=number, title="t", unit="U1", created_ns=T)
                               ).inserted_primary_key[0]
        for user_id in handler_ids:
            conn.execute(insert(case_handlers).values(case_id=case_id, user_id=user_id))
        for segment_id in segment_ids:
            conn.execute(insert(case_segments).values(case_id=case_id, segment_id=segment_id, linked_ns=T,
                                                      linked_by="test"))
    return case_id


def user_id(session: requests.Session, url: str) -> int:
    return session.get(f"{url}/api/me", timeout=10).json()["id"]


def test_each_person_sees_only_the_footage_they_may(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s, url = server.services, server.url
        a = Recorder(s, "REC-0001", unit="U1", officer="100001").segment(T)
        b = Recorder(s, "REC-0002", unit="U1", officer="100002").segment(T + 20 * SECOND)
        c = Recorder(s, "REC-0003", unit="U2", officer="200001").segment(T + 40 * SECOND)
        officer = server.user("o.li", "officer", unit="U1", officer_no="100001")
        sup1, sup2 = server.user("s.one", "supervisor", unit="U1"), server.user("s.two", "supervisor", unit="U2")
        others = [server.user(name, role) for name, role in (("l.chen", "legal_reviewer"), ("p.sun", "publisher"),
                                                             ("w.audit", "auditor"), ("a.min", "administrator"))]
        assert found(officer, url) == [a.id]
        assert found(sup1, url) == [b.id, a.id]
        assert found(sup2, url) == [c.id]
        for session in others:
            assert found(session, url) == []
        # Handling a case shows its footage, to any role, and nothing else; one way of seeing is enough.
        link(s, "C-1", [c.id, a.id], (user_id(others[0], url), user_id(officer, url)))
        assert found(others[0], url) == [c.id, a.id]
        assert found(officer, url) == [c.id, a.id]
        assert found(others[1], url) == []
        # Out of scope answers exactly as missing: the answer never says what exists.
        for tail in ("", "/manifest", "/proof"):
            hidden = sup1.get(f"{url}/api/segments/{c.id}{tail}", timeout=10)
            missing = sup1.get(f"{url}/api/segments/999999{tail}", timeout=10)
            assert hidden.status_code == missing.status_code == 404
            assert hidden.json()["message"].replace(str(c.id), "N") == missing.json()["message"].replace("999999", "N")
        assert sup1.get(f"{url}/api/segments/x1", timeout=10).status_code == 404
        assert requests.get(f"{url}/api/segments", timeout=10).status_code == 401


def test_filters_by_officer_device_time_status_kind_marker_and_case(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s, url = server.services, server.url
        li, wang = Recorder(s, "REC-0001", officer="100001"), Recorder(s, "REC-0002", officer="100002")
        boot = li.record(manifest.BOOT, T - 5 * SECOND)
        a = li.segment(T, markers=[(3, "event")])
        b = li.segment(T + 10 * SECOND, markers=[(2, "arrest")])
        q = wang.segment(T + 20 * SECOND, status="quarantined")
        long = wang.segment(T - 7200 * SECOND, seconds=3 * 3600)  # [T - 2 h, T + 1 h]: found by its end
        sup = server.user("s.one", "supervisor", unit="U1")

        def ids(**params: Any) -> list[int]:
            return found(sup, url, **params)

        assert ids() == [q.id, b.id, a.id, long.id]
        assert ids(officer="100002") == [q.id, long.id]
        assert ids(device="REC-0001") == [b.id, a.id]
        assert ids(officer="100001", device="REC-0002") == []
        # A segment is found when it overlaps [from, to]: both ends inclusive, times as ns or ISO 8601.
        assert ids(**{"from": T + 15 * SECOND, "to": T + 30 * SECOND}) == [q.id, b.id, long.id]
        assert ids(**{"from": "2025-11-24T16:00:10Z", "to": "2025-11-25T00:00:10+08:00"}) == [b.id, a.id, long.id]
        assert ids(to=T - 1) == [long.id]
        assert ids(**{"from": T + 3600 * SECOND + 1}) == []
        assert ids(status="quarantined") == [q.id]
        assert ids(status="stored") == [b.id, a.id, long.id]
        assert ids(include_records="true", device="REC-0001") == [b.id, a.id, boot.id]
        assert ids(marker="event") == [a.id]
        assert ids(marker="event", **{"from": T + 4 * SECOND}) == []  # the marker itself must be in range
        assert ids(marker="none-such") == []
        link(s, "C-7", [b.id, q.id])
        assert ids(case="C-7") == [q.id, b.id]
        assert ids(case="C-8") == []
        page = sup.get(f"{url}/api/segments", params={"device": "REC-0001"}, timeout=10).json()["segments"]
        assert page[0] == {
            "id": b.id, "device": "REC-0001", "seq": 2, "kind": "segment", "manifest": b.manifest,
            "start_ns": T + 10 * SECOND, "end_ns": T + 20 * SECOND, "officer": "100001", "unit": "U1",
            "markers": [{"t_ns": T + 12 * SECOND, "kind": "arrest"}], "media_sha256": b.media_sha256,
            "media_size": 1024, "status": "stored", "findings": [], "purged_ns": None}
        quarantined = sup.get(f"{url}/api/segments", params={"status": "quarantined"}, timeout=10).json()
        assert quarantined["segments"][0]["findings"] == [{"code": "chain.broken_link", "message": "test"}]


def test_place_as_box_or_circle_matches_track_points(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s, url = server.services, server.url
        rec = Recorder(s, "REC-0001", officer="100001")
        inside = rec.segment(T, track=[(e7(39.902), e7(116.402)), (e7(39.903), e7(116.403))])
        corner = rec.segment(T + 10 * SECOND, track=[(e7(39.905), e7(116.395)), (e7(39.915), e7(116.405))])
        on_edge = rec.segment(T + 20 * SECOND, track=[(e7(39.91), e7(116.41)), (e7(39.92), e7(116.42))])
        rec.segment(T + 30 * SECOND)  # no fix: in no place
        sup = server.user("s.one", "supervisor", unit="U1")
        # The corner track's bounding box meets the box, but none of its points is inside.
        assert found(sup, url, box="39.90,116.40,39.91,116.41") == [on_edge.id, inside.id]
        assert found(sup, url, box="39.9150000,116.4050000,40,117") == [on_edge.id, corner.id]

        center = (e7(39.95), e7(116.45))
        north = [center[0] + round(m / METERS_PER_E7_LAT) for m in (499, 501, 2000, 100)]
        near = rec.segment(T + 40 * SECOND, track=[(north[0], center[1])])
        outside = rec.segment(T + 50 * SECOND, track=[(north[1], center[1])])
        crossing = rec.segment(T + 60 * SECOND, track=[(north[2], center[1]), (north[3], center[1])])
        assert found(sup, url, near="39.95,116.45,500") == [crossing.id, near.id]
        assert found(sup, url, near="39.95,116.45,502") == [crossing.id, outside.id, near.id]
        # Across the 180th meridian: 0.0015 degrees of longitude apart is about 170 m at the equator.
        east = rec.segment(T + 70 * SECOND, track=[(0, e7(179.9990))])
        west = rec.segment(T + 80 * SECOND, track=[(0, e7(-179.9995))])
        assert found(sup, url, near="0,179.9990,200") == [west.id, east.id]
        assert found(sup, url, near="0,-179.9995,100") == [west.id]


def test_pages_follow_each_other_in_either_order(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s, url = server.services, server.url
        one, two = Recorder(s, "REC-0001", officer="100001"), Recorder(s, "REC-0002", officer="100001")
        made = [one.segment(T + i * 10 * SECOND, track=[(e7(39.9), e7(116.4))]) for i in range(5)]
        made += [two.segment(T + i * 10 * SECOND, track=[(e7(39.9), e7(116.4))]) for i in (1, 3)]  # same starts
        officer = server.user("o.li", "officer", unit="U1", officer_no="100001")
        starts = {x.id: T + i * 10 * SECOND for i, x in enumerate(made[:5])} | {made[5].id: T + 10 * SECOND,
                                                                                made[6].id: T + 30 * SECOND}
        newest = sorted(starts, key=lambda i: (starts[i], i), reverse=True)
        for order, expected, extra in (("newest", newest, {}), ("oldest", newest[::-1], {}),
                                       ("newest", newest, {"box": "39,116,40,117"})):
            pages, cursor = [], None
            while True:
                params = {"limit": 3, "order": order, **extra, **({"next": cursor} if cursor else {})}
                body = officer.get(f"{url}/api/segments", params=params, timeout=10).json()
                pages.append([x["id"] for x in body["segments"]])
                cursor = body["next"]
                if cursor is None:
                    break
            assert [len(p) for p in pages] == [3, 3, 1]
            assert [i for p in pages for i in p] == expected


def test_bad_parameters_get_clear_errors(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        sup = server.user("s.one", "supervisor", unit="U1")
        cases_ = [
            ({"offcer": "1"}, "unknown query parameter offcer"),
            ({"limit": "0"}, "limit must be 1-500"),
            ({"limit": "501"}, "limit must be 1-500"),
            ({"limit": "ten"}, "limit must be integer"),
            ({"from": "yesterday"}, "neither UTC nanoseconds nor an ISO 8601 time"),
            ({"to": "2025-11-24T16:00:00"}, "has no time zone"),
            ({"from": "2", "to": "1"}, "from is after to"),
            ({"status": "deleted"}, "status must be one of stored, quarantined"),
            ({"order": "random"}, "order must be one of newest, oldest"),
            ({"include_records": "yes"}, "include_records must be boolean"),
            ({"officer": ""}, "officer must be 1-64 characters"),
            ({"device": "x" * 65}, "device must be 1-64 characters"),
            ({"next": "abc"}, "next is not the next of a previous page"),
            ({"box": "1,2,3"}, "expected 4 comma-separated numbers"),
            ({"box": "40,116,39,117"}, "min_lat is north of max_lat"),
            ({"box": "39,179,40,-179"}, "crosses the 180th meridian"),
            ({"box": "39,116,91,117"}, "box max_lat must be between -90 and 90"),
            ({"box": "39.123456789,116,40,117"}, "at most 7 decimals"),
            ({"near": "39,116"}, "expected 3 comma-separated numbers"),
            ({"near": "39,181,100"}, "near lon must be between -180 and 180"),
            ({"near": "39,116,0"}, "radius must be 1 to 100000 meters"),
            ({"near": "39,116,100001"}, "radius must be 1 to 100000 meters"),
            ({"near": "39,116,1e3"}, "radius must be 1 to 100000 meters"),
            ({"box": "39,116,40,117", "near": "39,116,100"}, "not both"),
        ]
        for params, message in cases_:
            r = sup.get(f"{server.url}/api/segments", params=params, timeout=10)
            assert r.status_code == 400, (params, r.text)
            assert message in r.json()["message"], (params, r.json())
        assert sup.get(f"{server.url}/api/segments/1/proof", params={"of": "x"}, timeout=10).status_code == 400


def test_details_manifest_and_proofs_outlive_the_media(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s, url = server.services, server.url
        now = s.clock()
        rec = Recorder(s, "REC-0001", officer="100001")
        old = rec.segment(now - 400 * DAY, received_ns=now - 399 * DAY, markers=[(1, "event")],
                          track=[(e7(39.9), e7(116.4))])
        kept = rec.segment(now - 300 * DAY, received_ns=now - 299 * DAY)
        sup = server.user("s.one", "supervisor", unit="U1")
        case_id = link(s, "C-9", [kept.id])
        with s.db.write() as conn:
            conn.execute(insert(holds).values(segment_id=kept.id, reason="appeal", created_ns=now, created_by="test"))
        detail = sup.get(f"{url}/api/segments/{kept.id}", timeout=10).json()
        assert detail["manifest_fields"] == manifest.parse(signatures.open_envelope(kept.envelope).payload).fields
        assert detail["cases"] == [{"id": case_id, "number": "C-9", "linked_ns": T}]
        assert [h["reason"] for h in detail["holds"]] == ["appeal"] and detail["holds"][0]["released_ns"] is None
        assert (detail["log_index"], detail["tombstone_index"], detail["gateway"]) == (kept.log_index, None, "GW-1")

        retention.run(s, actor="user:1", reason="monthly purge", as_of_ns=now)
        assert s.blobs.exists(kept.media_sha256) and not s.blobs.exists(old.media_sha256)
        listed = {x["id"]: x for x in sup.get(f"{url}/api/segments", timeout=10).json()["segments"]}
        assert listed[old.id]["purged_ns"] is not None and listed[kept.id]["purged_ns"] is None
        detail = sup.get(f"{url}/api/segments/{old.id}", timeout=10).json()
        assert detail["tombstone_index"] is not None and detail["manifest_fields"]["markers"][0]["kind"] == "event"
        r = sup.get(f"{url}/api/segments/{old.id}/manifest", timeout=10)
        assert r.status_code == 200 and r.content == old.envelope
        assert "REC-0001-000000000000.manifest" in r.headers["Content-Disposition"]
        ident = s.identity
        bundle = sup.get(f"{url}/api/segments/{old.id}/proof", timeout=10)
        verify_bundle_entry(bundle.content, old.envelope, ident.origin, [ident.vkey])
        with s.db.read() as conn:
            tombstone = s.log.entry(conn, detail["tombstone_index"])
        bundle = sup.get(f"{url}/api/segments/{old.id}/proof", params={"of": "tombstone"}, timeout=10)
        verify_bundle_entry(bundle.content, tombstone, ident.origin, [ident.vkey])
        r = sup.get(f"{url}/api/segments/{kept.id}/proof", params={"of": "tombstone"}, timeout=10)
        assert r.status_code == 404 and "not purged" in r.json()["message"]
