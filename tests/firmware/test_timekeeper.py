from __future__ import annotations

from firmware.timekeeper import DOCK, GNSS, GNSS_HOLD_NS, RTC, UNSYNCED, TimeKeeper

S = 1_000_000_000


def test_rtc_then_gnss_then_hold_expires() -> None:
    now = [10 * S]
    clock = TimeKeeper(lambda: now[0], rtc_utc_ns=1_000 * S, rtc_valid=True)
    assert clock.source() == RTC and clock.utc_ns() == 1_000 * S
    assert clock.gnss_time(1_000 * S + 100, now[0]) is None  # a small correction is no step
    assert clock.source() == GNSS
    now[0] += GNSS_HOLD_NS + 1
    assert clock.source() == RTC  # no fresh GNSS time: back to the RTC it set


def test_lost_rtc_is_unsynced_until_a_dock_sets_the_time() -> None:
    now = [5 * S]
    clock = TimeKeeper(lambda: now[0], rtc_utc_ns=0, rtc_valid=False)
    assert clock.source() == UNSYNCED
    step = clock.dock_time(1_764_000_000 * S, now[0])
    assert step is not None and step.source == DOCK and step.step_ns == 1_764_000_000 * S
    assert clock.source() == DOCK and clock.utc_ns(now[0] + S) == 1_764_000_001 * S


def test_large_gnss_step_is_reported() -> None:
    clock = TimeKeeper(lambda: 0, rtc_utc_ns=100 * S, rtc_valid=True)
    step = clock.gnss_time(103 * S, 0)
    assert step is not None and step.step_ns == 3 * S
