"""GNSS receiver: time and position from NMEA over a UART.

Everything here is an integer (or a bool): fixes end up as track points in
signed manifests, and a signed value must not depend on how a float was rounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Fix:
    """One navigation epoch of the receiver (valid or not)."""

    utc_ns: int | None  # receiver UTC of the epoch (RMC date + time), None when the receiver has no time
    mono_ns: int  # local monotonic time when the epoch's first sentence arrived
    valid: bool  # RMC status A, a known UTC and a position, and fix quality > 0
    lat_e7: int  # 1e-7 degrees, north positive; 0 when not valid
    lon_e7: int  # 1e-7 degrees, east positive; 0 when not valid
    quality: int  # GGA fix quality 0-9 (from the RMC mode when the epoch had no GGA)
    hdop_c: int  # HDOP x 100; 0 when the receiver did not say
    satellites: int  # satellites used (GGA); 0 when the receiver did not say
    speed_mm_s: int = 0  # speed over ground; 0 when not valid
    course_cdeg: int = 0  # course over ground, 1/100 degree, 0-35999; 0 when not valid
    # The receiver's UTC moved differently from the local monotonic clock since
    # the previous epoch that had a time (beyond the driver's tolerance): do not
    # discipline a clock from this epoch without a second look.
    time_jump: bool = False

    def track_point(self) -> dict[str, int]:
        """The manifest track point for a valid fix (`track.points[]`, docs/protocol.md section 5)."""
        if not self.valid or self.utc_ns is None:
            raise ValueError("only valid fixes with a UTC time make track points")
        return {"t_ns": self.utc_ns, "lat_e7": self.lat_e7, "lon_e7": self.lon_e7,
                "fix": self.quality, "hdop_c": self.hdop_c}


@dataclass
class GnssStats:
    sentences: int = 0  # well-formed sentences with a correct checksum, used or not
    checksum_errors: int = 0  # wrong or missing checksum
    parse_errors: int = 0  # garbage, malformed, unknown or overlong lines, bad field values
    time_jumps: int = 0  # epochs whose UTC step disagreed with the monotonic clock
    fixes: int = 0  # epochs assembled (valid or not)
    reconnects: int = 0  # times the port was opened again after it failed or went away


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
