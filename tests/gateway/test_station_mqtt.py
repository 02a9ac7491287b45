"""The gateway on the station broker (gateway/station_mqtt.py, gateway/station_broker.py), against a private
Mosquitto and the gateway's embedded amqtt: a real recorder's telemetry (firmware/telemetry.py) reaches the
station's table, last wills included; the station's own status and online state are retained and come back
after a broker restart; bad telemetry is ignored and reported."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from firmware import telemetry as tm
from firmware.telemetry import Telemetry, TlsOptions
from gateway.station_broker import StationBroker
from gateway.station_mqtt import MqttConfigError, MqttSettings, RecorderSeen, StationMqtt
from tests.gateway.station_rig import BROKERS, LoopThread, publish, retained, running_broker, wait_until
from tests.telemetry.conftest import Broker, Link, Mosquitto, need_mosquitto, url
from tests.telemetry.test_tls import _pki

GATEWAY = "GW-STATION-01"
DEVICE = "REC-0001"


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    yield from running_broker(request.param, tmp_path)


def station(port: int, **settings: Any) -> StationMqtt:
    made = StationMqtt(MqttSettings(embedded=False, port=port, **settings), GATEWAY, reconnect_delay=(0.05, 0.2))
    made.start()
    assert made.wait_connected(10), "the station did not connect"
    return made


def recorder(tmp_path: Path, port: int, **options: Any) -> Telemetry:
    made = Telemetry(DEVICE, url(port), tmp_path / "outbox", reconnect_delay=(0.05, 0.2), **options)
    made.start()
    return made


def status(**fields: Any) -> dict[str, Any]:
    defaults: dict[str, Any] = {"state": "standby", "firmware": "0.1.0", "clock_source": "gnss", "chain_seq": 41,
                                "chain_hash": "ab" * 32, "storage_used_bytes": 3_000_000_000,
                                "storage_free_bytes": 29_000_000_000, "battery_percent": 64, "charging": True}
    return tm.recorder_status(**{**defaults, **fields})


def seen(mqtt: StationMqtt) -> RecorderSeen | None:
    return next((r for r in mqtt.recorders() if r.device == DEVICE), None)


def test_a_recorders_telemetry_reaches_the_station(broker: Broker, tmp_path: Path) -> None:
    mqtt = station(broker.port)
    rec = recorder(tmp_path, broker.port)
    try:
        rec.publish_status(status())
        rec.publish_event(tm.MARKER, seq=42)
        wait_until(lambda: (s := seen(mqtt)) is not None and s.online is True and s.last_event == tm.MARKER
                   and s.battery_percent == 64, "the recorder's status, event and online state")
        got = seen(mqtt)
        assert got is not None
        assert (got.state, got.charging, got.storage_free_bytes, got.storage_used_bytes, got.chain_seq) == \
            ("standby", True, 29_000_000_000, 3_000_000_000, 41)
        assert got.last_event_n == 1 and got.status_ns is not None and got.last_seen_ns is not None
        rec.publish_status(status(state="docked", battery_percent=65))
        wait_until(lambda: (seen(mqtt).state, seen(mqtt).battery_percent) == ("docked", 65),  # type: ignore[union-attr]
                   "the new status")
        assert replace(seen(mqtt), state="standby", battery_percent=64, status_ns=got.status_ns,  # type: ignore[arg-type]
                       last_seen_ns=got.last_seen_ns) == got  # nothing else changed
    finally:
        rec.close()
    wait_until(lambda: seen(mqtt).online is False, "offline after a clean stop")  # type: ignore[union-attr]
    mqtt.close()


def test_a_recorder_that_vanishes_is_offline_by_its_last_will(broker: Broker, tmp_path: Path) -> None:
    mqtt = station(broker.port)
    link = Link(broker.port)  # the recorder's radio link, which the test cuts
    rec = recorder(tmp_path, link.port, keepalive=1)
    try:
        rec.publish_status(status())
        wait_until(lambda: (s := seen(mqtt)) is not None and s.online is True, "online")
        link.cut()
        wait_until(lambda: seen(mqtt).online is False, "the last will")  # type: ignore[union-attr]
        assert seen(mqtt).battery_percent == 64  # type: ignore[union-attr]  # the last status stays
    finally:
        rec.close(timeout=0.2)
        mqtt.close()


def test_status_seen_before_the_station_started_is_shown(broker: Broker, tmp_path: Path) -> None:
    """Retained messages reach a station that connects later; they do not count as seen just now."""
    rec = recorder(tmp_path, broker.port)
    rec.publish_status(status(battery_percent=12))
    assert rec.flush(10)
    mqtt = station(broker.port)
    try:
        wait_until(lambda: (s := seen(mqtt)) is not None and s.battery_percent == 12 and s.online is True,
                   "the retained status")
        assert seen(mqtt).last_seen_ns is None  # type: ignore[union-attr]
    finally:
        rec.close()
        mqtt.close()


def test_the_station_status_is_retained_and_comes_back_after_a_broker_restart(broker: Broker) -> None:
    mqtt = station(broker.port, status_interval_s=60)
    topics = mqtt.topics
    try:
        assert (topics.status, topics.online) == (f"liuhen/gateways/{GATEWAY}/status",
                                                  f"liuhen/gateways/{GATEWAY}/online")
        mqtt.publish_status({"backlog": {"count": 3}})
        wait_until(lambda: retained(broker.port, topics.status) is not None, "the retained station status")
        doc = json.loads(retained(broker.port, topics.status) or b"")
        assert doc["gateway"] == GATEWAY and doc["backlog"] == {"count": 3} and isinstance(doc["updated_ns"], int)
        assert retained(broker.port, topics.online) == b"online"
        broker.stop()  # forgets every retained message
        wait_until(lambda: not mqtt.connected, "the station noticing")
        broker.start()
        wait_until(lambda: retained(broker.port, topics.status, timeout=0.3) is not None, "the status again")
        assert json.loads(retained(broker.port, topics.status) or b"")["backlog"] == {"count": 3}
        assert retained(broker.port, topics.online) == b"online"
        assert [p.code for p in mqtt.problems.recent()][:1] == ["mqtt.disconnected"]
    finally:
        mqtt.close()
    assert retained(broker.port, topics.online) == b"offline"


def test_a_station_that_vanishes_is_offline_by_its_last_will(broker: Broker) -> None:
    link = Link(broker.port)
    mqtt = station(link.port, keepalive_s=1)
    try:
        link.cut()
        wait_until(lambda: retained(broker.port, mqtt.topics.online, timeout=0.3) == b"offline", "the last will")
    finally:
        mqtt.close()


def test_run_republishes_the_status_every_interval_and_outlives_a_failure(broker: Broker) -> None:
    mqtt = station(broker.port, status_interval_s=0.05)
    calls: list[int] = []

    async def figures() -> dict[str, Any]:
        calls.append(len(calls))
        if calls[-1] == 1:
            raise OSError("disk I/O error")  # the spool could not be read this time
        return {"call": calls[-1]}

    async def run_a_while() -> None:
        task = asyncio.create_task(mqtt.run(figures))
        while len(calls) < 3:
            await asyncio.sleep(0.01)
        task.cancel()

    try:
        asyncio.run(run_a_while())
        wait_until(lambda: json.loads(retained(broker.port, mqtt.topics.status) or b"{}").get("call", 0) >= 2,
                   "a later status retained")
        assert [(p.code, "disk I/O error" in p.message) for p in mqtt.problems.recent()] == [("station.status", True)]
    finally:
        mqtt.close()


def test_bad_telemetry_is_ignored_and_reported(broker: Broker) -> None:
    mqtt = station(broker.port, max_recorders=1)
    base = f"liuhen/recorders/{DEVICE}"
    good = json.dumps({**status(battery_percent=70), "device": DEVICE}).encode()
    bad = [(f"{base}/status", b"not json"), (f"{base}/status", b"[1, 2]"),
           (f"{base}/status", json.dumps({**status(), "device": "REC-9999"}).encode()),
           (f"{base}/status", b'{"device": "%s", "pad": "%s"}' % (DEVICE.encode(), b"x" * 70_000)),
           (f"{base}/online", b"maybe"), (f"{base}/events", json.dumps({"device": DEVICE, "kind": "marker"}).encode())]
    try:
        publish(broker.port, [*bad, (f"{base}/status", good),
                              ("liuhen/recorders/REC-0002/online", b"online"),  # one too many for max_recorders=1
                              ("liuhen/recorders/not an id/status", b"x"), (f"{base}/firmware-update", b"x")])
        wait_until(lambda: len(mqtt.problems.recent()) == 7, "every bad message reported")
        wait_until(lambda: seen(mqtt) is not None and seen(mqtt).battery_percent == 70, "the good status")
        assert [r.device for r in mqtt.recorders()] == [DEVICE]
        assert [p.code for p in mqtt.problems.recent()] == ["telemetry.malformed"] * 6 + [
            "telemetry.too-many-recorders"]
        assert {p.device for p in mqtt.problems.recent()} == {DEVICE, "REC-0002"}
        messages = " ".join(p.message for p in mqtt.problems.recent())
        for said in ("not a JSON object", "'REC-9999', not its topic's", "more than 65536", "neither 'online'",
                     "needs a kind and a number"):
            assert said in messages
    finally:
        mqtt.close()


def test_mqtts_to_the_stations_mosquitto(tmp_path: Path) -> None:
    need_mosquitto()
    ca, cert, key = _pki(tmp_path)
    broker = Mosquitto(tmp_path, f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n")
    broker.start()
    try:
        mqtt = station(broker.port, tls=True, ca_file=ca)
        rec = Telemetry(DEVICE, f"mqtts://127.0.0.1:{broker.port}", tmp_path / "outbox", tls=TlsOptions(ca_file=ca))
        rec.start()
        rec.publish_status(status(battery_percent=33))
        wait_until(lambda: (s := seen(mqtt)) is not None and s.battery_percent == 33, "telemetry over TLS")
        rec.close()
        mqtt.close()
    finally:
        broker.stop()


@pytest.mark.parametrize(("settings", "message"), [
    ({"port": 70000}, "1-65535"),
    ({"embedded": False, "port": 0}, "embedded broker only"),
    ({"tls": True}, "embedded broker speaks plain MQTT"),
    ({"embedded": False, "ca_file": Path("ca.pem")}, "need tls = true"),
    ({"embedded": False, "tls": True, "cert_file": Path("c.pem")}, "both cert_file and key_file"),
    ({"password": "x"}, "needs a username"),
    ({"keepalive_s": 0}, "must be positive"),
])
def test_bad_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(MqttConfigError, match=message):
        MqttSettings(**settings)


def test_a_missing_ca_file_is_refused_before_connecting(tmp_path: Path) -> None:
    with pytest.raises(MqttConfigError, match="TLS settings"):
        StationMqtt(MqttSettings(embedded=False, tls=True, ca_file=tmp_path / "none.pem"), GATEWAY)
    with pytest.raises(MqttConfigError, match="gateway id"):
        StationMqtt(MqttSettings(), "GW 1")


def test_the_embedded_broker_on_a_taken_port_is_an_error() -> None:
    loop = LoopThread()
    try:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            with pytest.raises(OSError):
                loop.call(StationBroker("127.0.0.1", taken.getsockname()[1]).start())
        with pytest.raises(ValueError, match="0-65535"):
            StationBroker("127.0.0.1", 70000)
    finally:
        loop.stop()
