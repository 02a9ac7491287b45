"""Playing and downloading footage: one reason buys a short-lived grant, the grant serves the original
files with HTTP Range, and nothing is ever served without its audit record and custody event."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import select

from protocol import log_records
from protocol.trust import TrustList
from server import audit
from server.schema import audit as audit_table
from tests.server.footage import REASON, SEGMENT_S, T0, Site

NS = 1_000_000_000
HOUR_NS = 3600 * NS


def test_a_grant_serves_the_original_with_ranges_after_its_audit_record(site: Site) -> None:
    services = site.server.services
    segment = site.rec.ids[1]
    data = site.rec.media[segment]
    size, tag = len(data), f'"{hashlib.sha256(data).hexdigest()}"'
    reads: list[tuple[int, ...]] = []
    real_read = services.blobs.read_range

    def spying_read(sha256: str, start: int, end: int) -> Iterator[bytes]:
        reads.append(site.written())  # what the index holds when the first byte is read
        return real_read(sha256, start, end)

    services.blobs.read_range = spying_read  # type: ignore[method-assign]
    before = site.written()
    granted = site.grant(segments=[segment])
    after = (before[0] + 1, before[1] + 1, before[2], before[3] + 1)  # a record, a grant, a custody event
    assert site.written() == after
    assert [s["id"] for s in granted["segments"]] == [segment] and granted["purged"] == []
    assert granted["expires_ns"] - services.clock() == pytest.approx(2 * HOUR_NS, abs=60 * NS)

    # The audit record names who, what, why; its custody event in the public log names the manifest.
    with services.db.read() as conn:
        record = conn.execute(select(audit_table).where(audit_table.c.id == granted["audit_id"])).one()
        entry = services.log.entry(conn, record.log_index)
    assert (record.action, record.reason, record.actor.startswith("user:")) == ("view", REASON, True)
    event = log_records.open_record(entry, log_records.CUSTODY_TYPE, TrustList([services.identity.trusted_key()]))
    assert event["audit_id"] == record.id and event["action"] == "view"
    assert event["subjects"] == [site.rec.manifests[1].hash.hex()]
    # The log commits to the reason with the record's salt: the bare hash of a guessable reason is not there.
    assert event["reason_sha256"] == audit.reason_commitment(REASON, record.reason_salt)
    assert event["reason_sha256"] != hashlib.sha256(REASON.encode()).hexdigest()

    url = site.url + granted["segments"][0]["url"]
    full = site.officer.get(url, timeout=30)
    assert full.status_code == 200 and full.content == data
    assert full.headers["Content-Type"] == "video/mp4" and full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["ETag"] == tag and full.headers["Content-Length"] == str(size)
    assert "Content-Disposition" not in full.headers
    assert reads and all(r[0] >= before[0] + 1 for r in reads)

    cases = [  # Range, If-Range, expected status, expected bytes (start, end) or None for 416
        ("bytes=0-99", None, 206, (0, 100)),
        ("bytes=-100", None, 206, (size - 100, size)),
        ("bytes=100-", None, 206, (100, size)),
        ("bytes=0-0", None, 206, (0, 1)),
        (f"bytes={size - 10}-{size + 1000}", None, 206, (size - 10, size)),  # clipped to the end
        (f"bytes=-{size + 1000}", None, 206, (0, size)),
        (f"bytes={size}-", None, 416, None),
        (f"bytes={size + 5}-{size + 10}", None, 416, None),
        ("bytes=-0", None, 416, None),
        ("bytes=0-9, 20-29", None, 200, (0, size)),  # several ranges: the whole file
        ("bytes=10-5", None, 200, (0, size)),  # invalid: ignored
        ("bytes=abc", None, 200, (0, size)),
        ("pages=0-9", None, 200, (0, size)),
        ("BYTES=5-9", None, 206, (5, 10)),
        ("bytes=0-9,", None, 206, (0, 10)),  # an empty list element is no second range
        ("bytes=0-99", tag, 206, (0, 100)),  # If-Range matches: the range
        ("bytes=0-99", '"0000"', 200, (0, size)),  # the file changed for the client: all of it
        ("bytes=0-99", f"W/{tag}", 200, (0, size)),  # weak tags never match If-Range
        ("bytes=0-99", "Sat, 01 Jan 2000 00:00:00 GMT", 200, (0, size)),
    ]
    for range_header, if_range, status, span in cases:
        headers = {"Range": range_header} | ({"If-Range": if_range} if if_range else {})
        r = site.officer.get(url, headers=headers, timeout=30)
        assert r.status_code == status, (range_header, if_range, r.status_code)
        if span is None:
            assert r.headers["Content-Range"] == f"bytes */{size}"
            continue
        assert r.content == data[span[0]:span[1]], (range_header, if_range)
        assert r.headers["ETag"] == tag
        if status == 206:
            assert r.headers["Content-Range"] == f"bytes {span[0]}-{span[1] - 1}/{size}"
        else:
            assert "Content-Range" not in r.headers
    # Seeking wrote nothing more: one reason, one record.
    assert site.written() == after


def test_download_grants_are_attachments_and_clips_cover_overlapping_segments(site: Site) -> None:
    _, first, second, third = site.rec.ids
    # 5 s to 9 s: the second segment (4-8 s) and the third (8-12 s), in chain order.
    clip = {"device": "REC-0001", "from_ns": T0 + 5 * NS, "to_ns": T0 + 9 * NS}
    granted = site.grant(action="download", clip=clip)
    assert [s["id"] for s in granted["segments"]] == [second, third]
    r = site.officer.get(site.url + granted["segments"][0]["url"], timeout=30)
    assert r.status_code == 200 and r.content == site.rec.media[second]
    assert r.headers["Content-Disposition"] == 'attachment; filename="REC-0001_000000000002.mp4"'
    assert site.officer.get(f"{site.url}/api/media/{granted['grant']}/{first}", timeout=30).status_code == 404

    # The whole recording from before it began: the boot record has no media and is left out.
    whole = site.grant(clip={"device": "REC-0001", "from_ns": T0 - NS, "to_ns": T0 + 3 * SEGMENT_S * NS})
    assert [s["id"] for s in whole["segments"]] == [first, second, third]
    # A range that ends where a segment starts does not include it.
    edge = site.grant(clip={"device": "REC-0001", "from_ns": T0 + NS, "to_ns": T0 + SEGMENT_S * NS})
    assert [s["id"] for s in edge["segments"]] == [first]


def test_purged_media_is_reported_not_served(site: Site) -> None:
    _, first, second, third = site.rec.ids
    old = site.grant(segments=[second])
    site.footage.purge(second)
    r = site.officer.get(site.url + old["segments"][0]["url"], timeout=30)
    assert r.status_code == 410 and r.json()["error"] == "purged"

    granted = site.grant(clip={"device": "REC-0001", "from_ns": T0, "to_ns": T0 + 12 * NS})
    assert [s["id"] for s in granted["segments"]] == [first, third]
    assert [p["id"] for p in granted["purged"]] == [second] and granted["purged"][0]["purged_ns"] is not None
    with site.server.services.db.read() as conn:
        target = conn.execute(select(audit_table.c.target).where(audit_table.c.id == granted["audit_id"])).scalar()
    assert '"purged": [' + str(second) + "]" in target
    assert site.officer.get(f"{site.url}/api/media/{granted['grant']}/{second}", timeout=30).status_code == 404

    before = site.written()
    r = site.access(site.officer, action="view", segments=[second])
    assert r.status_code == 410 and site.written() == before


def test_grants_expire(site: Site) -> None:
    services = site.server.services
    granted = site.grant(segments=[site.rec.ids[1]])
    url = site.url + granted["segments"][0]["url"]
    start = services.clock()
    services.clock = lambda: start + 2 * HOUR_NS - NS
    assert site.officer.get(url, headers={"Range": "bytes=0-9"}, timeout=30).status_code == 206
    services.clock = lambda: start + 2 * HOUR_NS + NS
    r = site.officer.get(url, headers={"Range": "bytes=0-9"}, timeout=30)
    assert r.status_code == 410 and r.json()["error"] == "grant_expired"


def test_a_grant_is_its_holders_only(site: Site) -> None:
    granted = site.grant(segments=[site.rec.ids[1]])
    url = site.url + granted["segments"][0]["url"]
    supervisor = site.server.user("s.wang", "supervisor", unit="U1")  # may see the footage, but not by this grant
    r = supervisor.get(url, timeout=30)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert requests.get(url, timeout=30).status_code == 401
    assert site.officer.get(f"{site.url}/api/media/not-a-grant/{site.rec.ids[1]}", timeout=30).status_code == 404
    assert site.officer.get(f"{site.url}/api/media/{granted['grant']}/x", timeout=30).status_code == 404
    assert requests.post(f"{site.url}/api/access", json={"action": "view", "segments": [1], "reason": REASON},
                         timeout=30).status_code == 401


def test_footage_out_of_scope_is_answered_as_missing(site: Site) -> None:
    segment = site.rec.ids[1]
    before = site.written()
    unknown = site.access(site.officer, action="view", segments=[segment + 1000])
    assert unknown.status_code == 404
    for name, role, unit, officer_no in [("o.zhao", "officer", "U1", "100002"), ("s.chen", "supervisor", "U2", None),
                                         ("a.sun", "auditor", None, None), ("adm", "administrator", None, None)]:
        session = site.server.user(name, role, unit=unit, officer_no=officer_no)
        hidden = site.access(session, action="view", segments=[segment])
        # Existence is not revealed: the answer is the one for an id that does not exist.
        assert (hidden.status_code, hidden.json()["message"].replace(str(segment), "N")) == \
            (404, unknown.json()["message"].replace(str(segment + 1000), "N")), name
        r = site.access(session, action="view", clip={"device": "REC-0001", "from_ns": T0, "to_ns": T0 + 9 * NS})
        assert r.status_code == 404, name
    assert site.written() == before
    supervisor = site.server.user("s.wang", "supervisor", unit="U1")
    assert site.access(supervisor, action="view", segments=[segment]).status_code == 201


@pytest.mark.parametrize("body", [
    {"action": "view"},
    {"action": "view", "reason": ""},
    {"action": "view", "reason": "   \n\t"},
    {"action": "view", "reason": None},
    {"action": "view", "reason": "x" * 2001},
], ids=["missing", "empty", "blank", "null", "too-long"])
def test_no_reason_no_access_and_nothing_written(site: Site, body: dict[str, Any]) -> None:
    before = site.written()
    r = site.officer.post(f"{site.url}/api/access", json={**body, "segments": [site.rec.ids[1]]}, timeout=30)
    assert r.status_code == 400 and "reason" in r.json()["message"]
    assert site.written() == before


def test_bad_selections_are_refused_and_change_nothing(site: Site) -> None:
    boot, first, *_ = site.rec.ids
    clip = {"device": "REC-0001", "from_ns": T0, "to_ns": T0 + NS}
    bad: list[dict[str, Any]] = [
        {"action": "view"},  # neither segments nor clip
        {"action": "view", "segments": [first], "clip": clip},
        {"action": "view", "segments": []},
        {"action": "view", "segments": [first, first]},
        {"action": "view", "segments": ["1"]},
        {"action": "view", "segments": [2**40]},
        {"action": "view", "clip": {**clip, "to_ns": 2**70}},
        {"action": "view", "clip": {**clip, "to_ns": T0}},
        {"action": "view", "clip": {**clip, "device": "../etc"}},
        {"action": "view", "clip": {"device": "REC-0001", "from_ns": T0}},
        {"action": "export", "segments": [first]},
        {"action": "view", "segments": [boot]},  # a boot record has no media
        {"action": "view", "segments": [first], "case": "NO-SUCH-CASE"},
        {"action": "view", "segments": [first], "extra": 1},
    ]
    before = site.written()
    for body in bad:
        r = site.access(site.officer, **body)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"] in ("bad_request", "reason_required") and r.json()["message"]
    assert site.officer.post(f"{site.url}/api/access", data="view please", timeout=30).status_code == 415
    assert site.written() == before


def test_a_failing_audit_write_serves_nothing(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*_args: object, **_kwargs: object) -> int:
        raise RuntimeError("the index is full")

    reads: list[str] = []
    monkeypatch.setattr(audit, "record", failing)
    monkeypatch.setattr(site.server.services.blobs, "read_range", lambda sha, *_: reads.append(sha))
    before = site.written()
    r = site.access(site.officer, action="download", segments=[site.rec.ids[1]])
    assert r.status_code == 500 and "grant" not in r.json()
    assert site.written() == before and reads == []
