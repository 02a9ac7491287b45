"""End to end over a real pty: the real driver (hardware.supervisor_serial) talks to the simulated
MCU (simulators.mcu), which runs the firmware/mcu code faster than real time."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from hardware.supervisor import (
    BatteryStatus,
    ButtonEvent,
    PowerFail,
    SupervisorError,
    SupervisorEvent,
    SupervisorTimeout,
    Tamper,
)
from hardware.supervisor_serial import SerialSupervisor
from protocol import mcu_link
from simulators.mcu import McuEvent, SimulatedMcu

SPEED = 20.0
ROOT = Path(__file__).resolve().parent.parent.parent


@pytest.fixture
def sim() -> Iterator[SimulatedMcu]:
    with SimulatedMcu(speed=SPEED) as simulated:
        yield simulated


@pytest.fixture
def sup(sim: SimulatedMcu) -> Iterator[SerialSupervisor]:
    with SerialSupervisor(sim.port) as driver:
        yield driver


def wait_for(sup: SerialSupervisor, kind: type, timeout: float = 5.0,
             accept: Callable[[SupervisorEvent], bool] = lambda event: True) -> SupervisorEvent:
    """The next event of a kind (others are skipped); fails after `timeout` real seconds."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        event = sup.next_event(left)
        if isinstance(event, kind) and accept(event):
            return event
    pytest.fail(f"no {kind.__name__} within {timeout} s")


def buttons_within(sup: SerialSupervisor, seconds: float) -> list[ButtonEvent]:
    found = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        event = sup.next_event(left)
        if isinstance(event, ButtonEvent):
            found.append(event)
    return found


def test_buttons_arrive_debounced_once_each(sim: SimulatedMcu, sup: SerialSupervisor) -> None:
    sim.press("record")
    sim.press("mark")
    assert [(e.button, e.long_press) for e in buttons_within(sup, 0.5)] == [("record", False), ("mark", False)]
    sim.press("record", long=True)
    held = wait_for(sup, ButtonEvent)
    received = time.monotonic_ns()
    assert (held.button, held.long_press) == ("record", True)
    # Dated at the press, the long-press time (1.5 s of the MCU's clock) before the report.
    assert 1_500_000_000 <= received - held.mono_ns < 1_700_000_000
    sim.press("power", long=True)
    assert [(e.button, e.long_press) for e in buttons_within(sup, 0.6)] == [("power", True)]


def test_led_and_haptic_commands_are_acknowledged_and_take_effect(sim: SimulatedMcu, sup: SerialSupervisor) -> None:
    sup.set_leds(green=True, yellow=False, red=True)
    assert sim.leds() == {"green": True, "yellow": False, "red": True}
    sup.set_led("yellow", "blink", period_ms=400)
    seen = set()
    start = sim.now_ms
    for ms in range(50, 1000, 100):
        sim.wait_until(start + ms, timeout=2)
        seen.add(sim.leds()["yellow"])
    assert seen == {True, False}
    sup.haptic([100, 50, 200])
    end = sim.now_ms + 400
    sim.wait_until(end, timeout=2)
    changes = sim.haptic_history()[-4:]
    assert [level for _, level in changes] == [1, 0, 1, 0]
    durations = [b[0] - a[0] for a, b in itertools.pairwise(changes)]
    assert durations == pytest.approx([100, 50, 200], abs=sim.step_ms)


def test_battery_is_reported_and_charges_when_docked() -> None:
    with SimulatedMcu(start_percent=50, drain_per_hour=3600, speed=SPEED) as sim, SerialSupervisor(sim.port) as sup:
        status = sup.battery()
        assert status is not None
        assert 48 <= status.percent <= 50 and not status.charging and not status.external_power
        lower = wait_for(sup, BatteryStatus, accept=lambda e: e.percent <= status.percent - 2)  # 1 %/simulated s
        assert not lower.charging
        sim.dock()
        docked = wait_for(sup, BatteryStatus, accept=lambda e: e.external_power)
        assert docked.charging
        rising = wait_for(sup, BatteryStatus, accept=lambda e: e.percent > docked.percent)
        assert rising.charging and rising.external_power


def test_rtc_read_and_set_with_the_lost_power_flag() -> None:
    with SimulatedMcu(rtc_valid=False, speed=1) as sim, SerialSupervisor(sim.port) as sup:
        lost = sup.rtc_read()
        assert not lost.valid
        assert lost.utc_ns // 1_000_000_000 in range(1_609_459_200, 1_609_459_260)  # the RTC's reset value
        now_ns = time.time_ns()
        sup.rtc_set(now_ns)
        read = sup.rtc_read()
        assert read.valid
        assert abs(read.utc_ns - time.time_ns()) < 100_000_000
        sim.rtc_reset()
        sim.wait_until(sim.now_ms + 50, timeout=2)
        again = sup.rtc_read()
        assert not again.valid and again.utc_ns < now_ns


def test_power_fail_is_an_event(sim: SimulatedMcu, sup: SerialSupervisor) -> None:
    sim.power_fail()
    warning = wait_for(sup, PowerFail)
    assert warning.millivolts < 3350 and warning.ms_left == 3000


def test_tamper_opened_and_shut(sim: SimulatedMcu, sup: SerialSupervisor) -> None:
    sim.tamper(opened=True)
    assert wait_for(sup, Tamper) == Tamper(opened=True, mono_ns=pytest.approx(time.monotonic_ns(), abs=1e9),
                                           count=1, source="case")
    sim.tamper(opened=False)
    shut = wait_for(sup, Tamper)
    assert not shut.opened and shut.count == 1


def test_a_case_opened_while_the_main_board_was_off_is_reported_when_it_starts() -> None:
    with SimulatedMcu(speed=SPEED) as sim:
        sim.tamper(opened=True)
        sim.wait_until(sim.now_ms + 2000, timeout=2)  # the MCU gave up its first sends
        with SerialSupervisor(sim.port) as sup:
            assert wait_for(sup, Tamper, timeout=3).opened


def test_a_signature_from_the_secure_element_verifies_against_its_public_key(
    sim: SimulatedMcu, sup: SerialSupervisor
) -> None:
    der = sup.secure_element_public_key()
    assert der is not None and der == sim.public_key_der()
    key = serialization.load_der_public_key(der)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    message = b"manifest bytes"
    signature = sup.secure_element_sign(message)
    assert len(signature) == 64
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))  # raises if bad


def test_without_a_secure_element() -> None:
    with SimulatedMcu(fit_secure_element=False, speed=SPEED) as sim, SerialSupervisor(sim.port) as sup:
        assert sup.secure_element_public_key() is None
        with pytest.raises(SupervisorError) as caught:
            sup.secure_element_sign(b"x")
        assert caught.value.code == "mcu.no_secure_element"


def test_a_refused_request_raises_with_the_mcus_code(sup: SerialSupervisor) -> None:
    with pytest.raises(SupervisorError) as caught:
        sup.set_led("blue", "on")
    assert caught.value.code == "mcu.bad_value"
    assert sup.stats()["refused"] == 1


def test_garbage_on_the_line_is_survived(sim: SimulatedMcu, sup: SerialSupervisor) -> None:
    rng = random.Random(3)
    fake_sync = b"\xa5\x5a" + bytes(rng.randrange(256) for _ in range(12))
    cut = mcu_link.encode_message(mcu_link.BUTTON, 9, {"button": "record", "action": "press", "t_ms": 1})[:15]
    for round_ in range(20):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        sim.inject(junk + fake_sync + cut)
        sim.inject_to_mcu(fake_sync + junk + cut)
        sup.set_led("green", "on" if round_ % 2 else "off")
        assert sup.rtc_read().valid
    sim.press("mark")
    assert [e.button for e in buttons_within(sup, 0.5)] == ["mark"]  # the cut BUTTON frames never surface
    assert sup.stats()["discarded"] > 1000
    assert sim.app.link.decoder.discarded > 1000
    assert sim.board.rx_overflow == 0  # the MCU's receive buffer kept up


def test_a_new_driver_takes_over_from_a_stopped_one(sim: SimulatedMcu) -> None:
    # The second driver's first request repeats the first one's (RTC_GET, seq 0, {}): the MCU
    # answers it again rather than taking it for a resend to ignore.
    for _ in range(2):
        with SerialSupervisor(sim.port) as sup:
            assert sup.rtc_read().valid


def test_an_mcu_that_does_not_answer_gives_a_clear_timeout_error() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with SerialSupervisor(os.ttyname(slave), ack_timeout=0.02, retries=3) as sup:
            started = time.monotonic()
            with pytest.raises(SupervisorTimeout) as caught:
                sup.rtc_read()
            assert time.monotonic() - started == pytest.approx(0.08, abs=0.05)
        assert caught.value.code == "mcu.timeout"
        assert "RTC_GET" in str(caught.value) and "after 4 sends" in str(caught.value)
        assert isinstance(caught.value, TimeoutError)
    finally:
        os.close(master)
        os.close(slave)


def test_an_mcu_that_acknowledges_but_never_answers_gives_a_clear_timeout_error() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    stop = threading.Event()

    def acknowledge_only() -> None:
        decoder = mcu_link.FrameDecoder()
        while not stop.is_set():
            try:
                data = os.read(master, 1024)
            except OSError:
                return
            for frame in decoder.feed(data):
                os.write(master, mcu_link.encode_message(mcu_link.ACK, 0, {"seq": frame.seq}))

    responder = threading.Thread(target=acknowledge_only, daemon=True)
    responder.start()
    try:
        with SerialSupervisor(os.ttyname(slave), answer_timeout=0.1) as sup:
            with pytest.raises(SupervisorTimeout, match=r"acknowledged KEY_GET .* but sent no KEY_INFO"):
                sup.secure_element_public_key()
            sup.set_led("red", "on")  # a request with no answer is complete with its ACK
    finally:
        stop.set()
        os.close(slave)
        os.close(master)
        responder.join()


def test_scripted_events_and_scenario_tables() -> None:
    script = [McuEvent(1, "press", "mark"), McuEvent(2, "tamper_open"), McuEvent(3, "power_fail")]
    with SimulatedMcu(script, speed=SPEED) as sim, SerialSupervisor(sim.port) as sup:
        seen: list[SupervisorEvent] = []
        deadline = time.monotonic() + 5
        while len({type(e) for e in seen} - {BatteryStatus}) < 3 and time.monotonic() < deadline:
            event = sup.next_event(0.1)
            seen += [event] if event is not None else []
        assert [e.button for e in seen if isinstance(e, ButtonEvent)] == ["mark"]
        assert [e.opened for e in seen if isinstance(e, Tamper)] == [True]
        assert len([e for e in seen if isinstance(e, PowerFail)]) == 1
    scenario = {"mcu": {"start_percent": 30, "rtc_valid": False,
                        "events": [{"at": 1, "action": "press", "button": "power", "long": True}]}}
    sim = SimulatedMcu.from_scenario(scenario, speed=SPEED)
    try:
        assert sim.percent == 30 and not sim.app.rtc_valid
    finally:
        sim.stop()
    with pytest.raises(ValueError, match="unknown MCU event 'explode'"):
        McuEvent(1, "explode")
    with pytest.raises(ValueError, match="unknown keys in \\[mcu\\]: colour"):
        SimulatedMcu.from_scenario({"mcu": {"colour": "red"}})


def test_the_simulator_runs_as_a_process(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text('[mcu]\nrtc_valid = false\nstart_percent = 42\n')
    process = subprocess.Popen(
        [sys.executable, "-m", "simulators.mcu", "--scenario", str(scenario), "--speed", "5"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        with SerialSupervisor(port) as sup:
            assert not sup.rtc_read().valid
            status = sup.battery()
            assert status is not None and status.percent == 42
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
