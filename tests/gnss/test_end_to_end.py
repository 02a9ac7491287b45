"""The simulator and the real driver over a real pty, as the recorder uses them.

Simulated time runs 10x faster than real time; the driver stamps arrivals with
the simulator's clock, so its time-jump check sees the receiver's pace. At 10x a
scheduling delay of 0.2 s is 2 s of simulated time: the jump tolerance is widened
to 10 s here so a busy machine cannot fake a jump, and the jumps tested are larger.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from hardware.gnss import Fix
from hardware.gnss_serial import SerialGnss
from simulators.gnss import (
    BadChecksum,
    ColdStart,
    CutLine,
    Garbage,
    NoChecksum,
    Route,
    Scenario,
    SimulatedGnss,
    TimeJump,
    Tunnel,
    Waypoint,
)

from .nmea_data import QUECTEL_L76K, SIRF_TRIG_BEIDOU, replay

SECOND_NS = 1_000_000_000
SPEED = 10
TOLERANCE_NS = 10 * 1_000_000_000
START = 1_763_947_800 * SECOND_NS
# 11 m north, then 11 m east: a turn within the first dozen seconds
ROUTE = Route((Waypoint(31.2400, 121.4850), Waypoint(31.2401, 121.4850), Waypoint(31.2401, 121.48512)), speed=1.25)


def scenario(seconds: float, *faults: object, start: int = START) -> Scenario:
    return Scenario(route=ROUTE, start_utc_ns=start, duration=seconds, faults=faults)  # type: ignore[arg-type]


def run(sim: SimulatedGnss, **options: object) -> tuple[SerialGnss, list[Fix]]:
    """Start the driver, then the receiver; stop both once every byte sent was read."""
    seen: list[Fix] = []
    options.setdefault("jump_tolerance_ns", TOLERANCE_NS)
    driver = SerialGnss(sim.port, clock=sim.clock.now_ns, on_fix=seen.append, **options)  # type: ignore[arg-type]
    driver.start()
    try:
        sim.start()
        assert sim.wait(timeout=30)
    finally:
        driver.stop()
        sim.stop()
    return driver, seen


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll for something another thread does (a reconnect); no clock to inject here."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_the_route_is_followed() -> None:
    driver, seen = run(SimulatedGnss(scenario(14), speed=SPEED))
    stats = driver.stats()
    assert (stats.sentences, stats.fixes, stats.checksum_errors, stats.parse_errors) == (42, 14, 0, 0)
    assert stats.time_jumps == 0 and stats.reconnects == 0
    track = driver.track_since(0)
    assert track == seen and len(track) == 14 and driver.latest() == track[-1]
    assert {f.course_cdeg for f in track} == {0, 9000}
    for i, fix in enumerate(track):
        assert fix.utc_ns == START + i * SECOND_NS and fix.valid
        truth = ROUTE.motion_at(i * SECOND_NS)
        assert abs(fix.lat_e7 - truth.lat_e7) <= 1 and abs(fix.lon_e7 - truth.lon_e7) <= 1
        assert abs(fix.speed_mm_s - truth.speed_mm_s) <= 1 and fix.course_cdeg == truth.course_cdeg
    # Arrival stamps are on the simulator's clock: never before the epoch was sent, in order.
    assert all(f.mono_ns >= f.utc_ns - START for f in track)  # type: ignore[operator]
    assert [f.mono_ns for f in track] == sorted(f.mono_ns for f in track)


def test_a_tunnel_gives_invalid_fixes_then_recovers() -> None:
    driver, seen = run(SimulatedGnss(scenario(14, Tunnel(at=5, duration=6)), speed=SPEED))
    assert [f.valid for f in seen] == [True] * 5 + [False] * 6 + [True] * 3
    assert all(f.utc_ns is not None and f.lat_e7 == 0 for f in seen[5:11])
    track = driver.track_since(0)
    assert len(track) == 8 and all(f.valid for f in track)
    assert driver.track_since(seen[10].mono_ns) == seen[11:]
    assert driver.stats().parse_errors == driver.stats().checksum_errors == 0


def test_garbage_and_bad_checksums_are_counted_and_survived() -> None:
    faults = (Garbage(at=1, size=500), BadChecksum(at=3, count=2), NoChecksum(at=5), CutLine(at=7),
              Garbage(at=8, size=3000))
    driver, seen = run(SimulatedGnss(scenario(14, *faults), speed=SPEED))
    stats = driver.stats()
    assert stats.checksum_errors == 3
    assert stats.parse_errors >= 3
    assert stats.time_jumps == 0
    assert sum(f.valid for f in seen) >= 14 - 5  # at most one epoch lost per fault
    assert all(f.valid for f in seen[-5:])  # and the driver is still reading


def test_time_jumps_are_counted() -> None:
    driver, seen = run(SimulatedGnss(scenario(10, TimeJump(at=3, step=-30, duration=4)), speed=SPEED))
    assert driver.stats().time_jumps == 2
    assert [i for i, f in enumerate(seen) if f.time_jump] == [3, 7]
    assert all(f.valid for f in seen)


def test_cold_start_has_no_time_then_time_then_a_fix() -> None:
    _, seen = run(SimulatedGnss(scenario(10, ColdStart(at=0, no_time=2, no_fix=3)), speed=SPEED))
    assert [(f.utc_ns is not None, f.valid) for f in seen] == [(False, False)] * 2 + [(True, False)] * 3 \
        + [(True, True)] * 5


@pytest.mark.parametrize("capture", [SIRF_TRIG_BEIDOU, QUECTEL_L76K], ids=["sirf-trig", "quectel-l76k"])
def test_a_real_log_replayed_over_the_pty(capture: Path) -> None:
    driver, seen = run(SimulatedGnss(capture, speed=SPEED))
    expected, asm = replay(capture)

    def content(fix: Fix) -> tuple[object, ...]:
        return (fix.utc_ns, fix.valid, fix.lat_e7, fix.lon_e7, fix.quality, fix.hdop_c, fix.satellites)

    assert [content(f) for f in seen] == [content(f) for f in expected]
    assert driver.stats() == asm.stats
    assert asm.stats.time_jumps == 0


def test_the_driver_reconnects_when_the_port_comes_back(tmp_path: Path) -> None:
    link = tmp_path / "serial0"  # like /dev/serial0 -> ttyAMA0
    first = SimulatedGnss(scenario(3), speed=SPEED, link=link)
    driver = SerialGnss(str(link), clock=first.clock.now_ns, reconnect_delay_s=0.01)
    driver.start()
    try:
        first.start()
        assert first.wait(timeout=10)
        first.stop()  # the receiver is unplugged
        wait_for(lambda: not driver.connected)
        assert len(driver.track_since(0)) == 3
        second = SimulatedGnss(scenario(3, start=START + 60 * SECOND_NS), clock=first.clock, link=link)
        wait_for(lambda: driver.connected)
        with second:
            assert second.wait(timeout=10)
    finally:
        driver.stop()
    assert driver.stats().reconnects == 1
    assert [f.utc_ns for f in driver.track_since(0)] == [START + s * SECOND_NS for s in (0, 1, 2, 60, 61, 62)]


def test_a_port_that_is_not_there_yet(tmp_path: Path) -> None:
    link = tmp_path / "serial0"
    driver = SerialGnss(str(link), reconnect_delay_s=0.01)
    driver.start()  # no receiver yet: no error, the reader keeps trying
    try:
        assert not driver.connected and driver.latest() is None
        sim = SimulatedGnss(scenario(3), speed=SPEED, link=link)
        wait_for(lambda: driver.connected)
        with sim:
            assert sim.wait(timeout=10)
    finally:
        driver.stop()
    assert len(driver.track_since(0)) == 3 and driver.stats().reconnects == 0


def test_a_failing_listener_does_not_stop_the_reader() -> None:
    def listener(fix: Fix) -> None:
        raise RuntimeError("bug in the firmware")

    sim = SimulatedGnss(scenario(5), speed=SPEED)
    driver = SerialGnss(sim.port, clock=sim.clock.now_ns, on_fix=listener)
    driver.start()
    with sim:
        assert sim.wait(timeout=10)
    driver.stop()
    assert len(driver.track_since(0)) == 5


def test_history_is_bounded() -> None:
    driver, seen = run(SimulatedGnss(scenario(8), speed=SPEED), history=5)
    assert driver.track_since(0) == seen[-5:]
    assert driver.track_since(seen[-1].mono_ns + 1) == []


def test_a_simulator_stopped_early_was_not_completed() -> None:
    sim = SimulatedGnss(scenario(3600), speed=SPEED)
    sim.start()  # nobody reads: the pty fills up and the sender waits
    sim.stop()
    assert not sim.wait(timeout=1)


def test_a_link_never_replaces_a_file(tmp_path: Path) -> None:
    precious = tmp_path / "serial0"
    precious.write_text("not a link")
    with pytest.raises(FileExistsError):
        SimulatedGnss(scenario(1), link=precious)
    assert precious.read_text() == "not a link"


def test_start_twice_is_an_error_and_stop_twice_is_not() -> None:
    sim = SimulatedGnss(scenario(1), speed=SPEED)
    driver = SerialGnss(sim.port)
    driver.start()
    with pytest.raises(RuntimeError):
        driver.start()
    driver.stop()
    driver.stop()
    sim.stop()
    sim.stop()
