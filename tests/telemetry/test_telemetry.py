"""Telemetry against real brokers (private Mosquitto and embedded amqtt): status, events, will, outbox."""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware import telemetry as tm
from firmware.telemetry import Telemetry, TelemetryConfigError, TelemetryError, TlsOptions
from tests.telemetry.conftest import DEVICE, WAIT, Broker, Link, Subscriber, url

REPO = Path(__file__).resolve().parents[2]
CLOCK_NS = 1_760_000_000_000_000_000
FAST = {"reconnect_delay": (0.05, 0.2), "clock": lambda: CLOCK_NS}

MakeTelemetry = Callable[..., Telemetry]


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def telemetry(outbox: Path) -> Iterator[MakeTelemetry]:
    made: list[Telemetry] = []

    def make(broker_url: str, *, start: bool = True, **options: Any) -> Telemetry:
        t = Telemetry(DEVICE, broker_url, outbox, **{**FAST, **options})
        made.append(t)
        if start:
            t.start()
        return t

    yield make
    for t in made:
        t.close(timeout=0.5)


def status(state: str = "standby", seq: int = 41) -> dict[str, Any]:
    return tm.recorder_status(state=state, firmware="0.1.0", clock_source="gnss", chain_seq=seq,
                              chain_hash="ab" * 32, storage_used_bytes=1 << 30, storage_free_bytes=3 << 30,
                              battery_percent=76, gnss_fix=True, gnss_satellites=9,
                              last_position=(310_000_000, 1_214_000_000, CLOCK_NS))


def numbers(wanted: range) -> Callable[[Subscriber], bool]:
    return lambda s: set(wanted) <= s.event_numbers()


def first_seen_order(sub: Subscriber) -> list[int]:
    return list(dict.fromkeys(e["n"] for e in sub.events()))


# -- status, events, online ------------------------------------------------------------------------------


def test_retained_status_seen_by_late_subscriber(broker: Broker, telemetry: MakeTelemetry,
                                                 subscribe: Callable[[int], Subscriber]) -> None:
    t = telemetry(url(broker.port))
    t.publish_status(status("recording"))
    assert t.flush(WAIT)
    sub = subscribe(broker.port)
    sub.wait(lambda s: bool(s.on(s.topics.status) and s.on(s.topics.online)), "retained status and online")
    snapshot = sub.on(sub.topics.status)[-1]
    assert {m.payload for m in sub.on(sub.topics.status)} == {snapshot.payload}
    assert snapshot.retain
    assert snapshot.payload == tm.encode(snapshot.json())  # sorted keys, compact, UTF-8
    assert snapshot.json() == {**status("recording"), "device": DEVICE, "updated_ns": CLOCK_NS}
    assert sub.online() == ["online"]
    assert all(m.retain for m in sub.on(sub.topics.online))


def test_only_the_newest_unsent_status_is_sent(broker: Broker, telemetry: MakeTelemetry,
                                               subscribe: Callable[[int], Subscriber]) -> None:
    sub = subscribe(broker.port)
    t = telemetry(url(broker.port), start=False)
    for seq in range(5):
        t.publish_status(status(seq=seq))
    t.start()
    assert t.flush(WAIT)
    sub.wait(lambda s: bool(s.on(s.topics.status)), "a status")
    assert {m.json()["chain"]["seq"] for m in sub.on(sub.topics.status)} == {4}


def test_events_arrive_in_order_with_consecutive_n(broker: Broker, telemetry: MakeTelemetry,
                                                   subscribe: Callable[[int], Subscriber]) -> None:
    sub = subscribe(broker.port)
    t = telemetry(url(broker.port))
    assert t.wait_connected(WAIT)
    assert [t.publish_event(tm.MARKER, seq=100 + i, note="标记") for i in range(50)] == list(range(1, 51))
    sub.wait(numbers(range(1, 51)), "50 events")
    events = sub.events()
    assert [e["n"] for e in events] == list(range(1, 51))
    assert events[0] == {"device": DEVICE, "kind": "marker", "n": 1, "t_ns": CLOCK_NS, "seq": 100, "note": "标记"}
    assert not any(m.retain for m in sub.on(sub.topics.events))
    assert t.flush(WAIT)
    assert not list((t._outbox.events_dir).iterdir())  # acknowledged events leave the outbox


def test_clean_close_says_offline(broker: Broker, telemetry: MakeTelemetry,
                                  subscribe: Callable[[int], Subscriber]) -> None:
    t = telemetry(url(broker.port))
    assert t.wait_connected(WAIT)
    t.close()
    sub = subscribe(broker.port)
    sub.wait(lambda s: s.online() == ["offline"], "retained offline")
    with pytest.raises(TelemetryError, match="closed"):
        t.publish_event(tm.MARKER)


# -- the client process dies --------------------------------------------------------------------------------


def spawn(broker_url: str, outbox: Path, events: int, *, wait_online: bool) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "tests.telemetry.client_proc", DEVICE, broker_url, str(outbox),
               "--events", str(events), *(["--wait-online"] if wait_online else [])]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def expect_line(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], WAIT)
    assert ready, f"client said nothing, expected {expected!r}"
    assert proc.stdout.readline().strip() == expected


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(WAIT)


def test_last_will_says_offline_when_the_client_is_killed(broker: Broker, outbox: Path,
                                                          subscribe: Callable[[int], Subscriber]) -> None:
    sub = subscribe(broker.port)
    proc = spawn(url(broker.port), outbox, 0, wait_online=True)
    try:
        expect_line(proc, "queued 0")
        expect_line(proc, "online")
        sub.wait(lambda s: s.online() == ["online"], "online")
    finally:
        kill(proc)
    sub.wait(lambda s: s.online() == ["online", "offline"], "the last will")
    late = subscribe(broker.port)
    late.wait(lambda s: s.online() == ["offline"], "retained offline")


def test_outbox_survives_a_crash(broker: Broker, outbox: Path, telemetry: MakeTelemetry, dead_port: int,
                                 subscribe: Callable[[int], Subscriber]) -> None:
    proc = spawn(url(dead_port), outbox, 20, wait_online=False)  # out of range
    try:
        expect_line(proc, "queued 20")
    finally:
        kill(proc)
    sub = subscribe(broker.port)
    t = telemetry(url(broker.port))  # the same outbox: the dead process's lock went with it
    sub.wait(numbers(range(1, 21)), "the 20 events queued before the crash")
    assert first_seen_order(sub) == list(range(1, 21))
    assert t.publish_event(tm.MARKER) == 21


# -- out of range ----------------------------------------------------------------------------------------


def test_broker_down_then_back_loses_nothing(broker: Broker, link: Link, telemetry: MakeTelemetry,
                                             subscribe: Callable[[int], Subscriber]) -> None:
    sub = subscribe(broker.port)
    t = telemetry(url(link.port))
    t.publish_status(status("recording"))
    for i in range(5):
        t.publish_event(tm.MARKER, i=i)
    sub.wait(numbers(range(1, 6)), "events before the outage")

    broker.stop()
    link.cut()  # keeps the recorder away until the new subscriber is in place
    began = time.monotonic()
    for i in range(5, 25):
        t.publish_event(tm.MARKER, i=i)
    assert time.monotonic() - began < 1.0, "publishing waited for the network"

    broker.start()  # same port, empty: no sessions, no retained messages
    after = subscribe(broker.port)
    link.restore()
    after.wait(numbers(range(6, 26)), "every event produced while the broker was down")
    assert t.flush(WAIT)
    assert sub.event_numbers() | after.event_numbers() == set(range(1, 26))  # none lost
    assert first_seen_order(after) == sorted(first_seen_order(after))  # in order, duplicates aside
    # The restarted broker had lost the retained status: the reconnect published it again.
    after.wait(lambda s: bool(s.on(s.topics.status)), "the status again")
    assert after.on(after.topics.status)[-1].json()["state"] == "recording"


def publish_size(topic: str, payload: bytes) -> int:
    """Bytes of a QoS 1 PUBLISH packet (fixed header with a one-byte length, topic, packet id, payload)."""
    return 2 + 2 + len(topic.encode()) + 2 + len(payload)


def test_unacknowledged_messages_are_resent_before_newer_ones(broker: Broker, link: Link, telemetry: MakeTelemetry,
                                                              subscribe: Callable[[int], Subscriber]) -> None:
    sub = subscribe(broker.port)
    t = telemetry(url(link.port))
    assert t.wait_connected(WAIT)
    link.stall()  # the next events leave the recorder and vanish: paho holds them, unacknowledged
    sent = [tm.encode({"device": DEVICE, "kind": "marker", "n": t.publish_event(tm.MARKER, i=i), "t_ns": CLOCK_NS,
                       "i": i}) for i in range(5)]
    link.wait_swallowed(sum(publish_size(t.topics.events, p) for p in sent))
    link.cut()
    for i in range(5, 15):
        t.publish_event(tm.MARKER, i=i)
    link.restore()
    sub.wait(numbers(range(1, 16)), "every event")
    assert first_seen_order(sub) == list(range(1, 16))


def test_restart_with_a_non_empty_outbox_sends_the_rest(broker: Broker, link: Link, telemetry: MakeTelemetry,
                                                        subscribe: Callable[[int], Subscriber]) -> None:
    sub = subscribe(broker.port)
    first = telemetry(url(link.port))
    for i in range(3):
        first.publish_event(tm.RECORDING_STARTED, i=i)
    assert first.flush(WAIT)
    link.cut()
    for i in range(3, 10):
        first.publish_event(tm.RECORDING_STOPPED, i=i)
    first.close(timeout=0.5)  # out of range: nothing more to deliver, the rest stays in the outbox

    second = telemetry(url(link.port), start=False)
    assert second.publish_event(tm.MARKER) == 11  # numbering goes on from the outbox
    link.restore()
    second.start()
    sub.wait(numbers(range(1, 12)), "the rest of the outbox")
    assert first_seen_order(sub) == list(range(1, 12))
    assert second.flush(WAIT)


class LogWaiter(logging.Handler):
    """Lets a test wait for a log line instead of sleeping."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.WARNING)
        self.text = text
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


def test_outbox_bounded_with_a_notice_of_what_was_dropped(broker: Broker, link: Link, telemetry: MakeTelemetry,
                                                          subscribe: Callable[[int], Subscriber]) -> None:
    sub = subscribe(broker.port)
    link.cut()
    t = telemetry(url(link.port), max_events=10, window=4)
    waiter = LogWaiter("21 oldest unsent events dropped so far (n 1-21)")
    logging.getLogger("liuhen.telemetry").addHandler(waiter)
    try:
        for i in range(30):
            t.publish_event(tm.LOW_BATTERY, percent=30 - i)
        assert waiter.seen.wait(WAIT), "no log line about the dropped events"
    finally:
        logging.getLogger("liuhen.telemetry").removeHandler(waiter)
    assert len(list(t._outbox.events_dir.glob("*.json"))) == 10  # bounded on disk while out of range

    link.restore()
    sub.wait(numbers(range(21, 31)), "the notice and the newest events")
    events = sub.events()
    assert [e["n"] for e in events] == list(range(21, 31))  # the gap 1-20 is explained by the notice
    assert events[0] == {"device": DEVICE, "kind": "events-dropped", "n": 21, "t_ns": CLOCK_NS,
                         "dropped": 21, "first_n": 1, "last_n": 21}
    assert [e["percent"] for e in events[1:]] == [30 - i for i in range(21, 30)]


# -- bad input -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("broker_url", "complaint"), [
    ("", "scheme"),
    ("tcp://127.0.0.1:1883", "scheme"),
    ("127.0.0.1:1883", "scheme"),
    ("mqtt://", "no host"),
    ("mqtt://:1883", "no host"),
    ("mqtt://broker:99999", "bad port"),
    ("mqtt://broker:port", "bad port"),
    ("mqtt://broker:0", "port 0"),
    ("mqtt://broker/liuhen", "no path"),
])
def test_bad_broker_url_is_a_clear_error(outbox: Path, broker_url: str, complaint: str) -> None:
    with pytest.raises(TelemetryConfigError, match=complaint):
        Telemetry(DEVICE, broker_url, outbox)
    assert not outbox.exists()  # nothing was set up


def test_broker_urls() -> None:
    assert tm.parse_broker_url("mqtt://gw.local") == tm.BrokerAddress("gw.local", 1883, False)
    assert tm.parse_broker_url("mqtts://u%40x:p%3A@gw.local") == tm.BrokerAddress("gw.local", 8883, True, "u@x", "p:")


def test_other_bad_input(outbox: Path, tmp_path: Path) -> None:
    with pytest.raises(TelemetryConfigError, match="device id"):
        Telemetry("a/b", "mqtt://localhost", outbox)
    with pytest.raises(TelemetryConfigError, match="mqtts://"):
        Telemetry(DEVICE, "mqtt://localhost", outbox, tls=TlsOptions(ca_file=tmp_path / "ca.pem"))
    with pytest.raises(TelemetryConfigError, match="does not exist"):
        Telemetry(DEVICE, "mqtts://localhost", outbox, tls=TlsOptions(ca_file=tmp_path / "ca.pem"))
    t = Telemetry(DEVICE, "mqtt://localhost", outbox)
    try:
        with pytest.raises(TelemetryError, match="in use"):
            Telemetry(DEVICE, "mqtt://localhost", outbox)
        with pytest.raises(ValueError, match="unknown telemetry event kind"):
            t.publish_event("markr")
        with pytest.raises(ValueError, match="set by telemetry"):
            t.publish_event(tm.MARKER, n=7)
        with pytest.raises(TypeError):
            t.publish_event(tm.MARKER, when=object())
        assert t.publish_event(tm.MARKER) == 1  # the refused ones used no number
    finally:
        t.close()
