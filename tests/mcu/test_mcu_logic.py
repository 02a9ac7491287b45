"""The supervisor MCU's logic under CPython, with assertions (test_mcu_micropython.py checks that
MicroPython behaves the same on the scenarios)."""

import datetime
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.mcu import battery, outputs, rtc
from firmware.mcu.config import Config
from firmware.mcu.inputs import HOLD, PRESS, Button
from firmware.mcu.secure_element import Atecc608, SecureElementError, atecc_crc, command_packet
from protocol import mcu_link
from simulators import mcu_machine
from tests.mcu.scenarios import FakeKey, Harness, press

# ------------------------------------------------------------------------------- buttons


def feed(button: Button, levels: list[tuple[int, bool]], until: int) -> list[tuple]:
    """Readings every ms from (time, level) changes; the events produced."""
    events = []
    changes = dict(levels)
    level = False
    for now in range(until):
        level = changes.get(now, level)
        event = button.update(level, now)
        if event is not None:
            events.append(event)
    return events


def test_short_press_is_reported_on_release_with_the_press_down_time() -> None:
    assert feed(Button("record", 30, 1500), [(100, True), (300, False)], 1000) == [(PRESS, 100)]


def test_long_press_is_reported_once_when_the_time_is_reached_and_not_on_release() -> None:
    button = Button("record", 30, 1500)
    events = []
    for now in range(4000):
        event = button.update(100 <= now < 3000, now)
        if event is not None:
            events.append((now, event))
    assert events == [(1600, (HOLD, 100))]


def test_a_glitch_shorter_than_the_debounce_time_is_no_press() -> None:
    assert feed(Button("mark", 30, 1500), [(100, True), (125, False)], 1000) == []


@settings(max_examples=200, deadline=None)
@given(
    bounce=st.lists(st.integers(1, 4), min_size=0, max_size=7),
    hold=st.integers(40, 1400),
)
def test_a_bouncing_contact_gives_one_event_per_gesture(bounce: list[int], hold: int) -> None:
    """Chatter shorter than the debounce time on the way down and up never adds an event."""
    changes = []
    now, level = 100, True
    for gap in bounce:
        changes.append((now, level))
        now, level = now + gap, not level
    changes.append((now, True))
    down = changes[0][0]
    release = now + hold
    now, level = release, False
    for gap in bounce:
        changes.append((now, level))
        now, level = now + gap, not level
    changes.append((now, False))
    events = feed(Button("mark", 30, 1500), changes, now + 200)
    assert len(events) == 1
    assert events[0][0] == PRESS
    assert down <= events[0][1] <= down + sum(bounce)


# ------------------------------------------------------------------------------- outputs


def test_blink_is_on_for_the_first_half_of_each_period_from_when_it_was_set() -> None:
    pattern = outputs.Pattern()
    outputs.set_led(pattern, outputs.BLINK, 300, 1000)
    assert [pattern.level(t) for t in (1000, 1149, 1150, 1299, 1300, 1449, 1450)] == [
        True, True, False, False, True, True, False,
    ]


def test_a_haptic_pattern_plays_once_and_ends_off() -> None:
    pattern = outputs.Pattern()
    pattern.play((100, 50, 200), 0, False)
    assert [pattern.level(t) for t in (0, 99, 100, 149, 150, 349, 350, 10_000)] == [
        True, True, False, False, True, True, False, False,
    ]


# ------------------------------------------------------------------------------- battery


def test_the_discharge_curve_is_monotonic_and_reaches_every_percent() -> None:
    percents = [battery.percent_from_mv(mv) for mv in range(3000, 4400)]
    assert percents == sorted(percents)
    assert set(percents) == set(range(101))


def test_adc_reading_to_millivolts_through_the_divider() -> None:
    assert battery.adc_to_mv(65535, 3300, 100_000, 100_000) == 6600
    assert battery.adc_to_mv(0, 3300, 100_000, 100_000) == 0
    assert battery.adc_to_mv(65535 // 2, 3300, 200_000, 100_000) == 4949


@settings(max_examples=100, deadline=None)
@given(center=st.integers(3500, 4100), noise=st.lists(st.integers(-15, 15), min_size=50, max_size=200))
def test_the_gauge_does_not_flicker_when_the_voltage_wanders(center: int, noise: list[int]) -> None:
    gauge = battery.Gauge(32, 2, 120)
    for _ in range(200):
        gauge.add(center, False)
    reports = [gauge.percent for mv in noise if gauge.add(center + mv, False)]
    # Back and forth between two values would be flicker: the reports only ever move one way.
    assert reports == sorted(reports) or reports == sorted(reports, reverse=True)


def test_power_fail_needs_several_low_readings_and_fires_once_until_rearmed() -> None:
    detector = battery.PowerFailDetector(3350, 3500, 3)
    assert [detector.add(mv, False) for mv in (3300, 3400, 3300, 3300, 3300, 3300)] == [
        False, False, False, False, True, False,
    ]
    assert [detector.add(mv, False) for mv in (3450, 3300, 3300, 3300)] == [False, False, False, False]
    assert [detector.add(mv, False) for mv in (3550, 3300, 3300, 3300)] == [False, False, False, True]
    detector = battery.PowerFailDetector(3350, 3500, 1)
    assert detector.add(3000, True) is False  # on external power


# ------------------------------------------------------------------------------- rtc


@settings(max_examples=300, deadline=None)
@given(st.integers(0, rtc.MAX_UTC_MS - 1))
def test_rtc_tuples_match_the_standard_library(utc_ms: int) -> None:
    dt = datetime.datetime.fromtimestamp(utc_ms // 1000, datetime.UTC)
    expected = (dt.year, dt.month, dt.day, dt.weekday(), dt.hour, dt.minute, dt.second, 0)
    assert rtc.to_datetime(utc_ms) == expected
    assert rtc.from_datetime(expected) == utc_ms // 1000 * 1000


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 130 * 366 * 86_400))
def test_the_simulated_rtc_calendar_matches_the_standard_library(seconds: int) -> None:
    dt = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    expected = (dt.year, dt.month, dt.day, dt.weekday(), dt.hour, dt.minute, dt.second, 0)
    assert mcu_machine.tuple_from_seconds(seconds) == expected
    assert mcu_machine.seconds_from_tuple(expected) == seconds


# ------------------------------------------------------------------------------- secure element


def test_atecc_crc_known_answers() -> None:
    # Packets every ATECC sends: the wake answer (status 0x11) and success (status 0x00).
    assert atecc_crc(b"\x04\x11") == b"\x33\x43"
    assert atecc_crc(b"\x04\x00") == b"\x03\x40"


@given(st.binary(max_size=80))
def test_the_two_crc_implementations_agree(data: bytes) -> None:
    assert atecc_crc(data) == mcu_machine.atecc_crc(data)


def test_command_packet_layout() -> None:
    packet = command_packet(0x41, 0x80, 0x0102, b"\xaa")
    assert packet[:7] == bytes([0x03, 8, 0x41, 0x80, 0x02, 0x01, 0xAA])
    assert packet[7:] == atecc_crc(packet[1:7])


def chip_on_bus(key: FakeKey, busy_reads: int = 0) -> tuple[Atecc608, mcu_machine.Atecc608Emulator]:
    board = mcu_machine.SimBoard()
    mcu_machine.use(board)
    emulator = mcu_machine.Atecc608Emulator(key, busy_reads=busy_reads)
    board.i2c_devices[0x60] = emulator
    sleeps: list[int] = []
    return Atecc608(mcu_machine.I2C(0), 0x60, 0, sleeps.append), emulator


def test_atecc_driver_reads_the_key_and_signs_through_the_emulated_chip() -> None:
    key = FakeKey()
    chip, emulator = chip_on_bus(key, busy_reads=3)
    assert chip.present()
    assert chip.public_key() == key.public_key()
    digest = hashlib.sha256(b"m").digest()
    assert chip.sign_digest(digest) == key.sign_digest(digest)
    assert emulator.commands == [0x40, 0x16, 0x41]
    assert not emulator.awake  # put back to sleep


def test_atecc_driver_errors() -> None:
    board = mcu_machine.SimBoard()
    mcu_machine.use(board)
    absent = Atecc608(mcu_machine.I2C(0), 0x60, 0, lambda ms: None)
    assert not absent.present()
    with pytest.raises(SecureElementError, match="no answer"):
        absent.public_key()
    chip, _ = chip_on_bus(FakeKey(fail=True))
    with pytest.raises(SecureElementError):
        chip.sign_digest(bytes(32))
    with pytest.raises(SecureElementError, match="32 bytes"):
        chip.sign_digest(b"short")
    chip, _ = chip_on_bus(FakeKey(), busy_reads=1000)
    with pytest.raises(SecureElementError, match="no answer"):
        chip.public_key()


def test_atecc_driver_refuses_a_response_with_a_bad_crc(monkeypatch: pytest.MonkeyPatch) -> None:
    chip, emulator = chip_on_bus(FakeKey())
    monkeypatch.setattr(emulator, "_packet", lambda data: bytes([len(data) + 3]) + data + b"\x00\x00")
    with pytest.raises(SecureElementError, match="bad response"):
        chip.public_key()


# ------------------------------------------------------------------------------- link and app


def test_config_refuses_unknown_settings() -> None:
    with pytest.raises(ValueError, match="unknown setting ack_msec"):
        Config().update({"ack_msec": 5})


def test_unacknowledged_frames_are_sent_six_times_100_ms_apart(capsys: pytest.CaptureFixture) -> None:
    h = Harness()
    h.run(10)
    h.auto_ack = False
    press(h, "record", 100)
    h.run(1000)
    sent = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines() if " BUTTON " in line]
    assert [t - sent[0] for t in sent] == [0, 100, 200, 300, 400, 500]
    buttons = [m for m in h.received if m.ftype == mcu_link.BUTTON]
    assert len({m.seq for m in buttons}) == 1
    assert h.app.link.counters["gave_up"] == 1


def test_a_repeated_frame_is_acted_on_once_but_a_repeated_question_is_answered_again(
    capsys: pytest.CaptureFixture,
) -> None:
    h = Harness()
    h.run(10)
    for _ in range(2):
        h.send(mcu_link.HAPTIC, {"pattern_ms": [30]}, seq=9)
        h.run(10)
    for _ in range(2):
        h.send(mcu_link.RTC_GET, {}, seq=10)
        h.run(10)
    capsys.readouterr()
    acks = [m.body["seq"] for m in h.received if m.ftype == mcu_link.ACK]
    assert acks == [9, 9, 10, 10]
    assert [m.body["req"] for m in h.received if m.ftype == mcu_link.RTC_TIME] == [10, 10]
    haptic_edges = [e for e in h.board.history if e[1] == h.cfg.haptic_pin and e[0] > 0]
    assert len(haptic_edges) == 2  # one pulse, not restarted by the repeat


@pytest.mark.parametrize(
    ("ftype", "payload", "code"),
    [
        (0x77, b"{}", "mcu.unknown_type"),
        (mcu_link.BUTTON, b"{}", "mcu.unknown_type"),
        (mcu_link.LED_SET, b'{"led": "red"}', "canonical.non_canonical"),
        (mcu_link.LED_SET, b"[]", "mcu.bad_body"),
        (mcu_link.LED_SET, b'{"led":"red","mode":"on","period_ms":5}', "mcu.bad_value"),
        (mcu_link.RTC_SET, b'{"utc_ms":true}', "mcu.bad_value"),
        (mcu_link.SIGN_REQUEST, b'{"alg":"es256","digest":"00"}', "mcu.bad_value"),
    ],
)
def test_refused_frames_get_a_nack_with_a_code(
    ftype: int, payload: bytes, code: str, capsys: pytest.CaptureFixture
) -> None:
    h = Harness()
    h.run(10)
    h.board.feed_uart(mcu_link.encode_frame(ftype, 7, payload))
    h.run(10)
    capsys.readouterr()
    assert h.last(mcu_link.NACK).body == {"seq": 7, "code": code}


def test_rtc_is_invalid_until_set_and_keeps_counting(capsys: pytest.CaptureFixture) -> None:
    h = Harness()
    h.run(10)
    h.send(mcu_link.RTC_GET, {})
    h.run(10)
    assert h.last(mcu_link.RTC_TIME).body["valid"] is False
    h.send(mcu_link.RTC_SET, {"utc_ms": 1_764_000_000_500})
    h.run(10)
    h.run(10_000, 10)
    h.send(mcu_link.RTC_GET, {})
    h.run(10)
    capsys.readouterr()
    assert h.last(mcu_link.RTC_TIME).body["valid"] is True
    assert h.last(mcu_link.RTC_TIME).body["utc_ms"] == 1_764_000_000_500 + 10_010  # set at 21 ms, read at 10031
    assert h.board.rtc_seconds() == 1_764_000_010  # the RTC itself keeps whole seconds


def test_signing_waits_until_the_request_is_acknowledged(capsys: pytest.CaptureFixture) -> None:
    h = Harness(chip=FakeKey())
    h.run(10)
    seq = h.send(mcu_link.SIGN_REQUEST, {"alg": "es256", "digest": "11" * 32})
    h.run(10)
    capsys.readouterr()
    kinds = [(m.ftype, m.body.get("seq", m.body.get("req"))) for m in h.received[-2:]]
    assert kinds == [(mcu_link.ACK, seq), (mcu_link.SIGN_RESPONSE, seq)]
