"""The station page and API (gateway/station.py) over HTTP, on a station's real parts: the bays' progress,
the spool's backlog, check-outs made through the API and the form, refusals; and what protects it (token,
host names, other sites' requests). Bad input is refused with a clear error and changes nothing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from gateway.bays import REFUSED
from gateway.checkout import PENDING, Officer
from gateway.station import COOKIE, StationConfigError, StationSettings, make_station_app
from gateway.station_mqtt import RecorderSeen
from gateway.station_view import build_view, station_status
from protocol import assignment, errors
from protocol.trust import TrustList, trusted_key
from tests.doc_examples import examples
from tests.gateway.station_rig import GATEWAY, NS, Station

T = TypeVar("T")
TOKEN = "station-token-0123456789"
OFFICER = {"number": "110234", "name": "王伟", "unit_code": "110100000000", "unit_name": "东城区城管执法局"}
SIZE = 1_000_000


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    """bay-1: REC-0001 receiving, 1 of 3 files in; bay-2: REC-0002 refused; a spooled shift of REC-0003 with
    one flagged segment; REC-0001's telemetry; an upload error and a broker problem."""
    made = Station(tmp_path)
    made.spool_a_shift(tmp_path / "rec3", "REC-0003", flagged_seq=2)
    made.transfer("bay-1", "REC-0001", 3, SIZE)
    made.received_file("bay-1", SIZE)
    made.bays["bay-2"].docked("REC-0002")
    made.bays["bay-2"].report(errors.KEY_UNKNOWN, "REC-0002 may not dock here", state=REFUSED)
    made.seen = [RecorderSeen("REC-0001", online=True, state="docked", battery_percent=87, charging=True,
                              storage_free_bytes=20 * 10**9, last_seen_ns=made.now_ns - 4 * NS,
                              last_event="docked", last_event_n=12)]
    made.now_ns += NS
    made.problems.add("telemetry.malformed", "liuhen/recorders/REC-0009/status: not a JSON object", "REC-0009")
    made.upload_error = "the server is away (connection refused); next try in 8 s"
    yield made
    made.close()


def over_http(station: Station, talk: Callable[[TestClient], Awaitable[T]],
              settings: StationSettings | None = None) -> T:
    async def run() -> T:
        app = make_station_app(station.sources(), station.checkouts, settings or StationSettings())
        async with TestClient(TestServer(app)) as client:
            return await talk(client)
    return asyncio.run(run())


def get_json(path: str, **options: Any) -> Callable[[TestClient], Awaitable[tuple[int, Any]]]:
    async def talk(client: TestClient) -> tuple[int, Any]:
        response = await client.get(path, **options)
        return response.status, await response.json()
    return talk


async def answer(response: ClientResponse) -> tuple[int, str]:
    return response.status, await response.text()


def test_the_station_json(station: Station) -> None:
    made = station.checkouts.check_out("REC-0001", Officer(**OFFICER))
    status, doc = over_http(station, get_json("/api/station"))
    assert status == 200 and doc["gateway"] == GATEWAY and doc["now_ns"] == station.now_ns
    bay1, bay2 = doc["bays"]
    assert bay1 == {"bay": "bay-1", "device": "REC-0001", "state": "receiving", "files_done": 1, "files_total": 3,
                    "bytes_done": SIZE, "bytes_total": 3 * SIZE, "rate_bytes_per_s": SIZE // 2, "last_error": None,
                    "officer": OFFICER, "battery_percent": 87}
    assert (bay2["device"], bay2["state"], bay2["last_error"]) == \
        ("REC-0002", "refused", "key.unknown: REC-0002 may not dock here")
    assert doc["backlog"] == {"count": 4, "media_bytes": 4 * 250_000, "oldest_ns": station.now_ns - 3 * NS,
                              "flagged": 1, "held_back": 0, "upload_error": station.upload_error}
    assert [(r["device"], r["battery_percent"], r["online"]) for r in doc["recorders"]] == [("REC-0001", 87, True)]
    assert doc["checkouts"] == [made.to_json()]
    assert [(p["source"], p["code"], p["device"]) for p in doc["problems"]] == [
        ("mqtt", "telemetry.malformed", "REC-0009"), ("bay-2", errors.KEY_UNKNOWN, "REC-0002")]


def test_the_page_shows_the_same(station: Station) -> None:
    station.checkouts.check_out("REC-0001", Officer(**OFFICER))
    station.checkouts.check_out("REC-0002", Officer("110235", "<b>李娜</b>", "1101", "局"))
    status, page = over_http(station, lambda client: _get_text(client, "/"))
    assert status == 200
    for shown in ('<tr data-bay="bay-1" class="receiving">', '<td class="files">1 / 3</td>',
                  '<td class="bytes">1.0 MB / 3.0 MB <progress value="1000000" max="3000000"></progress></td>',
                  '<td class="rate">500.0 KB/s</td>', '<td class="battery">87% ⚡</td>',
                  '<td class="officer">110234 王伟 (待下发 pending)</td>', "拒绝 refused",
                  "key.unknown: REC-0002 may not dock here", '<dd id="backlog-count">4</dd>',
                  '<dd id="backlog-bytes">1.0 MB</dd>', '<dd id="backlog-flagged">1</dd>',
                  "the server is away (connection refused)", '<td class="seen">5 s ago</td>', "docked #12",
                  "&lt;b&gt;李娜&lt;/b&gt;", '<meta http-equiv="refresh" content="5">'):
        assert shown in page
    assert "<b>李娜" not in page


async def _get_text(client: TestClient, path: str, **options: Any) -> tuple[int, str]:
    return await answer(await client.get(path, **options))


def test_a_check_out_through_the_api(station: Station) -> None:
    async def talk(client: TestClient) -> list[Any]:
        made = await client.post("/api/checkouts", json={"device": "REC-0001", "officer": OFFICER})
        listed = await client.get("/api/checkouts", params={"device": "REC-0001"})
        others = await client.get("/api/checkouts", params={"device": "REC-0002"})
        return [made.status, await made.json(), await listed.json(), await others.json()]

    status, made, listed, others = over_http(station, talk)
    assert status == 201 and made["device"] == "REC-0001" and made["officer"] == OFFICER
    assert made["status"] == PENDING and listed == {"checkouts": [made]} and others == {"checkouts": []}
    envelope = station.checkouts.pending_for("REC-0001")
    assert envelope is not None
    gateways = TrustList([trusted_key(station.gateway.signer.public_key(), "gateway", GATEWAY)])
    assert assignment.open_assignment(envelope, gateways, "REC-0001").ref == made["ref"]


@pytest.mark.parametrize(("body", "content_type", "status", "message"), [
    (b'{"device": "REC-0001", "officer": {}}', "text/plain", 415, "application/json"),
    (b"not json", "application/json", 400, "Expecting value"),
    (b'{"device": "REC-0001"}', "application/json", 400, 'must be {"device"'),
    (b'{"device": 7, "officer": {}}', "application/json", 400, 'must be {"device"'),
    (b'{"device": "REC-0001", "officer": {"number": "1"}}', "application/json", 400, "missing"),
    ('{"device": "REC-0001", "officer": {"number": "1", "name": "%s", "unit_code": "1", "unit_name": "1"}}'
     % ("王" * 33), "application/json", 400, "officer.name must be a non-empty string of at most 32"),
    (b'{"device": "../x", "officer": {"number": "1", "name": "a", "unit_code": "1", "unit_name": "1"}}',
     "application/json", 400, "device has an invalid form"),
])
def test_a_bad_check_out_is_refused_and_changes_nothing(station: Station, body: bytes | str, content_type: str,
                                                        status: int, message: str) -> None:
    async def talk(client: TestClient) -> tuple[int, Any]:
        response = await client.post("/api/checkouts", data=body, headers={"Content-Type": content_type})
        return response.status, await response.json()

    got, doc = over_http(station, talk)
    assert (got, doc["error"]) == (status, "checkout.invalid") and message in doc["message"]
    assert station.checkouts.list() == []


def test_a_check_out_through_the_form(station: Station) -> None:
    form = {"device": " REC-0001 ", **OFFICER}

    async def talk(client: TestClient) -> list[Any]:
        blank = await client.get("/checkout")
        bad = await client.post("/checkout", data={**form, "number": "1234567"}, allow_redirects=False)
        good = await client.post("/checkout", data=form, allow_redirects=False)
        return [*(await answer(blank)), *(await answer(bad)), good.status, good.headers["Location"]]

    blank_status, blank, bad_status, bad, status, location = over_http(station, talk)
    assert blank_status == 200 and '<option value="REC-0001">' in blank and '<option value="REC-0002">' in blank
    assert bad_status == 400 and "officer.number must be a non-empty string of at most 6" in bad
    assert 'value="1234567"' in bad and 'value="王伟"' in bad  # what was typed stays in the form
    assert (status, location) == (303, "/")
    [made] = station.checkouts.list()
    assert made.device == "REC-0001" and made.officer.to_json() == OFFICER


def test_with_a_token_every_request_needs_it(station: Station) -> None:
    settings = StationSettings(token=TOKEN)

    async def talk(client: TestClient) -> list[Any]:
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        results = [(await client.get("/")).status, (await client.get("/api/station")).status,
                   (await client.get("/api/station", headers={"Authorization": "Bearer wrong-token-0000000"})).status,
                   (await client.get("/api/station", headers=bearer)).status,
                   (await client.post("/api/checkouts", json={}, headers={})).status,
                   (await client.get("/?token=wrong")).status]
        signed_in = await client.get(f"/?token={TOKEN}", allow_redirects=False)
        results += [signed_in.status, signed_in.headers["Location"], signed_in.cookies[COOKIE]["samesite"]]
        results.append((await client.get("/")).status)  # the browser now sends the cookie
        return results

    assert over_http(station, talk, settings) == [401, 401, 401, 200, 401, 401, 303, "/", "Strict", 200]


def test_a_dns_name_needs_a_token(station: Station) -> None:
    """Without a token only IP addresses and localhost reach it: another site's name pointed here (DNS
    rebinding) would otherwise let that site's scripts read the page."""
    async def talk(client: TestClient) -> list[int]:
        return [(await client.get("/api/station", headers={"Host": host})).status
                for host in ("evil.example:8490", "localhost:8490", "127.0.0.1", "[::1]:8490", "[::1")]

    assert over_http(station, talk) == [403, 200, 200, 200, 403]
    assert over_http(station, talk, StationSettings(token=TOKEN)) == [401] * 5
    status, doc = over_http(station, get_json("/api/station", headers={"Host": "evil.example"}))
    assert status == 403 and doc["error"] == "station.denied"


def test_another_sites_page_cannot_check_out(station: Station) -> None:
    async def talk(client: TestClient) -> list[int]:
        origin = f"http://{client.host}:{client.port}"
        return [(await client.post("/checkout", data={"device": "REC-0001", **OFFICER},
                                   headers={"Origin": "http://evil.example"}, allow_redirects=False)).status,
                (await client.post("/api/checkouts", json={"device": "REC-0001", "officer": OFFICER},
                                   headers={"Origin": "http://evil.example"})).status,
                (await client.post("/api/checkouts", json={"device": "REC-0001", "officer": OFFICER},
                                   headers={"Origin": origin})).status]

    assert over_http(station, talk) == [403, 403, 201]
    assert len(station.checkouts.list()) == 1


def test_the_station_status_for_mqtt(station: Station) -> None:
    station.checkouts.check_out("REC-0001", Officer(**OFFICER))
    view = asyncio.run(build_view(station.sources()))
    assert station_status(view) == {
        "bays": [{"bay": "bay-1", "device": "REC-0001", "state": "receiving", "files_done": 1, "files_total": 3,
                  "bytes_done": SIZE, "bytes_total": 3 * SIZE},
                 {"bay": "bay-2", "device": "REC-0002", "state": "refused", "files_done": 0, "files_total": 0,
                  "bytes_done": 0, "bytes_total": 0}],
        "backlog": {"count": 4, "media_bytes": 1_000_000, "oldest_ns": station.now_ns - 3 * NS, "flagged": 1,
                    "held_back": 0},
        "upload_error": station.upload_error, "recorders_online": 1, "checkouts_pending": 1}


def test_the_documented_station_status_has_the_published_fields(station: Station) -> None:
    documented = json.loads(examples(Path(__file__).parents[2] / "docs" / "gateway.md")["station-status"][1])
    published = station_status(asyncio.run(build_view(station.sources())))
    assert set(documented) == set(published) | {"gateway", "updated_ns"}  # StationMqtt adds those two
    assert set(documented["backlog"]) == set(published["backlog"])
    assert set(documented["bays"][0]) == set(published["bays"][0])


@pytest.mark.parametrize(("settings", "message"), [
    ({"port": 70000}, "0-65535"), ({"token": "short"}, "at least 16"), ({"token": "with space 0123456789"}, "spaces"),
    ({"token": "令牌令牌令牌令牌令牌令牌令牌令牌"}, "ASCII"), ({"refresh_s": 0}, "1-3600"),
])
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(StationConfigError, match=message):
        StationSettings(**settings)
