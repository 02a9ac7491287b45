"""The station page in a real browser (Debian's Chromium driven by Playwright) against a real station: the
page served by aiohttp in the gateway's loop, the bays and spool holding real progress and backlog, and the
recorders' telemetry arriving from a real recorder publisher through the embedded broker. The page shows
them, a check-out made through its form reaches the check-outs, and it updates by itself."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from firmware import telemetry as tm
from firmware.telemetry import Telemetry
from gateway.station import StationSettings, start_station
from gateway.station_broker import StationBroker
from gateway.station_mqtt import MqttSettings, StationMqtt
from tests.gateway.station_rig import GATEWAY, LoopThread, Station, wait_until
from tests.telemetry.conftest import free_port, url

SIZE = 2_000_000


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian's chromium is not installed: apt-get install chromium (.ci/run does)")
    return path


def battery(percent: int) -> dict[str, object]:
    return tm.recorder_status(state="docked", firmware="0.1.0", clock_source="gnss", chain_seq=7,
                              chain_hash="cd" * 32, storage_used_bytes=10**9, storage_free_bytes=31 * 10**9,
                              battery_percent=percent, charging=True)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Station, LoopThread, Telemetry]]:
    """A station on the embedded broker, with REC-0001 docked at bay-1 and reporting its battery."""
    loop = LoopThread()
    broker = StationBroker("127.0.0.1", 0)
    loop.call(broker.start())
    mqtt = StationMqtt(MqttSettings(port=0), GATEWAY, port=broker.port, reconnect_delay=(0.05, 0.2))
    mqtt.start()
    recorder = Telemetry("REC-0001", url(broker.port), tmp_path / "outbox", reconnect_delay=(0.05, 0.2))
    recorder.start()
    station = Station(tmp_path, recorders=mqtt.recorders)
    station.spool_a_shift(tmp_path / "rec3", "REC-0003", flagged_seq=2)
    loop.run(lambda: station.transfer("bay-1", "REC-0001", 3, SIZE))
    loop.run(lambda: station.received_file("bay-1", SIZE))
    recorder.publish_status(battery(64))
    wait_until(lambda: [r.battery_percent for r in mqtt.recorders()] == [64], "the recorder's battery")
    port = free_port()
    runner = loop.call(start_station(station.sources(), station.checkouts, StationSettings(port=port, refresh_s=1)))
    try:
        yield f"http://127.0.0.1:{port}", station, loop, recorder
    finally:
        loop.call(runner.cleanup())
        recorder.close()
        mqtt.close()
        loop.call(broker.stop())
        loop.stop()
        station.close()


def test_the_station_page_in_a_browser(served: tuple[str, Station, LoopThread, Telemetry]) -> None:
    base, station, loop, recorder = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium())
        try:
            page = browser.new_page()
            page.goto(base)
            bay = page.locator('tr[data-bay="bay-1"]')
            expect(bay.locator("td.device")).to_have_text("REC-0001")
            expect(bay.locator("td.files")).to_have_text("1 / 3")
            expect(bay.locator("td.bytes")).to_contain_text("2.0 MB / 6.0 MB")
            expect(bay.locator("td.rate")).to_have_text("1.0 MB/s")
            expect(bay.locator("td.battery")).to_have_text("64% ⚡")
            expect(page.locator("#backlog-count")).to_have_text("4")
            expect(page.locator("#backlog-flagged")).to_have_text("1")
            expect(page.locator('#recorders tr[data-device="REC-0001"] td.online')).to_have_text("在线 online")
            check_out(page)
            expect(page).to_have_url(f"{base}/")
            expect(page.locator("#checkouts td.device")).to_have_text("REC-0001")
            expect(bay.locator("td.officer")).to_have_text("110234 王伟 (待下发 pending)")
            assert station.checkouts.pending_for("REC-0001") is not None
            the_page_follows(page, station, loop, recorder)
        finally:
            browser.close()


def check_out(page: Page) -> None:
    page.get_by_role("link", name="领用登记 Check out a recorder").click()
    page.fill("#device", "REC-0001")
    page.fill("#number", "1102345")  # one digit too many
    page.fill("#name", "王伟")
    page.fill("#unit_code", "110100000000")
    page.fill("#unit_name", "东城区城管执法局")
    page.get_by_role("button").click()
    expect(page.locator("#error")).to_contain_text("officer.number must be a non-empty string of at most 6")
    page.fill("#number", "110234")  # the rest is still filled in
    page.get_by_role("button").click()


def the_page_follows(page: Page, station: Station, loop: LoopThread, recorder: Telemetry) -> None:
    """Without anyone touching it, the page shows the next file arriving and the battery charging."""
    loop.run(lambda: station.received_file("bay-1", SIZE))
    recorder.publish_status(battery(65))
    bay = page.locator('tr[data-bay="bay-1"]')
    expect(bay.locator("td.files")).to_have_text("2 / 3", timeout=10_000)
    expect(bay.locator("td.battery")).to_have_text("65% ⚡", timeout=10_000)
