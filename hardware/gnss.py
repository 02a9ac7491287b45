"""GNSS receiver: time and position from NMEA over a UART."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Fix:
    """One navigation solution, integers only (what goes into manifests)."""

    utc_ns: int | None  # receiver UTC time of the fix, None when the receiver has no time
    mono_ns: int  # local monotonic time when the sentence arrived
    valid: bool  # RMC status A and GGA quality > 0
    lat_e7: int  # 1e-7 degrees; 0 when not valid
    lon_e7: int
    quality: int  # GGA fix quality 0-9
    hdop_c: int  # HDOP x 100
    satellites: int
    speed_mm_s: int = 0
    course_cdeg: int = 0  # course over ground, 1/100 degree


@dataclass
class GnssStats:
    sentences: int = 0
    checksum_errors: int = 0
    parse_errors: int = 0  # malformed, unknown or garbage lines
    time_jumps: int = 0


class GnssReceiver(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def latest(self) -> Fix | None:
        """The most recent fix (valid or not), or None before the first one."""
        ...

    def track_since(self, mono_ns: int) -> list[Fix]:
        """Valid fixes that arrived at or after `mono_ns`, oldest first (bounded history)."""
        ...

    def stats(self) -> GnssStats: ...
