"""The audit trail: auditors and administrators search who accessed which footage, when, how and why,
each record with the public custody event it wrote; nobody else may, and it shows no footage."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from sqlalchemy import insert

from protocol import log_records
from protocol.trust import TrustList
from server.schema import cases
from tests.server.footage import REASON, T0, Site

NS = 1_000_000_000
CASE = "2025-017"


class Trail:
    """Four accesses to the footage of `site`, one second apart, and an auditor to search them."""

    def __init__(self, site: Site) -> None:
        self.site = site
        services = site.server.services
        with services.db.write() as conn:
            conn.execute(insert(cases).values(number=CASE, title="roadside stop", unit="U1", created_ns=T0))
        self.base = services.clock()
        self.supervisor = site.server.user("s.wang", "supervisor", unit="U1")
        self.auditor = site.server.user("a.sun", "auditor")
        _, first, _, third = site.rec.ids
        accesses = [
            lambda: site.grant(segments=[first]),
            lambda: site.grant(self.supervisor, action="download", case=CASE,
                               clip={"device": "REC-0001", "from_ns": T0 + 5 * NS, "to_ns": T0 + 9 * NS}),
            lambda: site.export(self.supervisor, format="package", segments=[first], case=CASE).json(),
            lambda: site.grant(segments=[third]),
        ]
        self.ids: list[int] = []
        for n, make in enumerate(accesses):
            services.clock = lambda n=n: self.base + n * NS
            self.ids.append(make()["audit_id"])
        self.at = [self.base + n * NS for n in range(4)]

    def search(self, session: requests.Session | None = None, **params: Any) -> requests.Response:
        """Searches from the first of the four accesses on (enrolling the recorder was audited before)."""
        params = {"from": str(self.base), **params}
        return (session or self.auditor).get(f"{self.site.url}/api/audit", params=params, timeout=30)

    def found(self, **params: Any) -> list[int]:
        r = self.search(**params)
        assert r.status_code == 200, r.text
        return [rec["id"] for rec in r.json()["records"]]


@pytest.fixture
def trail(site: Site) -> Trail:
    return Trail(site)


def test_records_name_who_what_when_why_and_their_custody_event(trail: Trail) -> None:
    services = trail.site.server.services
    r = trail.search()
    assert r.status_code == 200
    records = r.json()["records"]
    view, download, export, view_again = trail.ids
    assert [x["id"] for x in records] == [view_again, export, download, view] and r.json()["next_before"] is None
    first = records[-1]
    assert first["actor_name"] == "o.li" and first["actor"].startswith("user:")
    assert (first["action"], first["reason"], first["case"], first["at_ns"]) == ("view", REASON, None, trail.at[0])
    assert first["segments"] == [trail.site.rec.ids[1]] and first["client"]
    assert records[2]["segments"] == trail.site.rec.ids[2:] and records[2]["case"] == CASE
    assert records[2]["target"]["clip"]["device"] == "REC-0001"
    trust = TrustList([services.identity.trusted_key()])
    with services.db.read() as conn:
        for record in records:
            assert record["log_indexes"] == [record["log_index"]]
            event = log_records.open_record(services.log.entry(conn, record["log_index"]),
                                            log_records.CUSTODY_TYPE, trust)
            assert (event["audit_id"], event["action"], event["actor"]) == \
                (record["id"], record["action"], record["actor"])
    # Records only: no grant, media URL or export URL comes back through the trail.
    assert "/api/media/" not in r.text and "/api/exports/" not in r.text and "grant" not in records[0]


def test_filters_combine(trail: Trail) -> None:
    view, download, export, view_again = trail.ids
    _, first, second, third = trail.site.rec.ids
    officer_actor = trail.search().json()["records"][-1]["actor"]
    assert trail.found(actor=officer_actor) == [view_again, view]
    assert trail.found(action="download") == [download]
    assert trail.found(action="export-package", actor=officer_actor) == []
    assert trail.found(**{"from": str(trail.at[1]), "to": str(trail.at[3])}) == [export, download]
    assert trail.found(**{"from": str(trail.at[3])}) == [view_again]
    assert trail.found(segment=first) == [export, view]
    assert trail.found(segment=second) == [download]
    assert trail.found(segment=third) == [view_again, download]
    assert trail.found(case=CASE) == [export, download]
    assert trail.found(case=CASE, segment=first) == [export]
    assert trail.found(case="OTHER") == []
    assert trail.found(**{"to": "2000-01-01T00:00:00Z"}) == []
    assert trail.found(action="delete") == []


def test_the_trail_holds_enrollment_changes_too(trail: Trail) -> None:
    r = trail.search(action="enroll", **{"from": "0"})
    owners = sorted(x["target"]["owner"] for x in r.json()["records"])
    assert owners == ["GW-1", "REC-0001", "srv-test"]


def test_pages_follow_one_another(trail: Trail) -> None:
    seen, before = [], None
    while True:
        r = trail.search(limit=3, **({"before": before} if before else {}))
        page = r.json()
        seen += [x["id"] for x in page["records"]]
        before = page["next_before"]
        if before is None:
            break
    assert seen == trail.ids[::-1]
    assert len(trail.found(limit=1)) == 1


def test_only_auditors_and_administrators_search(trail: Trail) -> None:
    assert trail.search(trail.site.officer).status_code == 403
    assert trail.search(trail.supervisor).status_code == 403
    assert requests.get(f"{trail.site.url}/api/audit", timeout=30).status_code == 401
    admin = trail.site.server.user("adm", "administrator")
    assert trail.search(admin).status_code == 200
    # An auditor reads the trail but sees no footage through it, nor may ask for any.
    r = trail.site.access(trail.auditor, action="view", segments=[trail.site.rec.ids[1]])
    assert r.status_code == 404


@pytest.mark.parametrize("params", [
    {"limit": 0}, {"limit": 501}, {"limit": "ten"}, {"segment": "abc"}, {"segment": 2**40}, {"before": "last"},
    {"from": "yesterday"}, {"from": "9999999999999999999"}, {"to": "2025-11-24T16:00:00"},  # no zone: refused
], ids=["limit-0", "limit-501", "limit-text", "segment", "segment-huge", "before", "from", "from-huge", "to-no-zone"])
def test_bad_searches_get_clear_errors(trail: Trail, params: dict[str, Any]) -> None:
    r = trail.search(**params)
    assert r.status_code == 400 and r.json()["message"]
