"""Trustworthy time for manifests: GNSS when there is a fix, the dock's time, else the RTC.

UTC is kept as an offset from the monotonic clock, so a step in UTC never
reorders what was recorded; every manifest names the source its times came
from, and an RTC that lost power is reported as `unsynced` until a GNSS fix or
a dock sets the time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

GNSS = "gnss"
DOCK = "dock"
RTC = "rtc"
UNSYNCED = "unsynced"

# A GNSS time older than this no longer counts as GNSS-disciplined.
GNSS_HOLD_NS = 300 * 1_000_000_000


@dataclass(frozen=True)
class ClockStep:
    """A change of the UTC offset large enough to record in a signed clock-sync record."""

    source: str
    step_ns: int
    mono_ns: int


class TimeKeeper:
    def __init__(self, monotonic_ns: Callable[[], int], rtc_utc_ns: int, rtc_valid: bool,
                 step_threshold_ns: int = 500_000_000) -> None:
        self.monotonic_ns = monotonic_ns
        mono = monotonic_ns()
        self.offset_ns = rtc_utc_ns - mono
        self.base_source = RTC if rtc_valid else UNSYNCED
        self.last_gnss_mono: int | None = None
        self.step_threshold_ns = step_threshold_ns

    def source(self, mono_ns: int | None = None) -> str:
        mono = self.monotonic_ns() if mono_ns is None else mono_ns
        if self.last_gnss_mono is not None and mono - self.last_gnss_mono <= GNSS_HOLD_NS:
            return GNSS
        return self.base_source

    def utc_ns(self, mono_ns: int | None = None) -> int:
        return (self.monotonic_ns() if mono_ns is None else mono_ns) + self.offset_ns

    def _apply(self, utc_ns: int, mono_ns: int, source: str) -> ClockStep | None:
        step = (utc_ns - mono_ns) - self.offset_ns
        self.offset_ns += step
        was_unsynced = self.base_source == UNSYNCED
        if source != GNSS:
            self.base_source = source
        elif was_unsynced:
            self.base_source = RTC  # the RTC is set from GNSS by the recorder
        if abs(step) >= self.step_threshold_ns or was_unsynced:
            return ClockStep(source, step, mono_ns)
        return None

    def gnss_time(self, utc_ns: int, mono_ns: int) -> ClockStep | None:
        """A GNSS receiver's UTC for a sentence that arrived at `mono_ns`."""
        self.last_gnss_mono = mono_ns
        return self._apply(utc_ns, mono_ns, GNSS)

    def dock_time(self, utc_ns: int, mono_ns: int) -> ClockStep | None:
        """The gateway's time, measured at docking."""
        return self._apply(utc_ns, mono_ns, DOCK)
