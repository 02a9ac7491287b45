"""The supervisor MCU as the main board sees it: buttons, LEDs, haptic, battery,
RTC, power-fail warning, tamper switch and the secure element."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

RECORD = "record"
MARK = "mark"
POWER = "power"


@dataclass(frozen=True)
class ButtonEvent:
    button: str  # RECORD, MARK or POWER
    long_press: bool
    mcu_ms: int  # MCU uptime when the press was debounced
    mono_ns: int  # main-board monotonic time when the event arrived


@dataclass(frozen=True)
class BatteryStatus:
    percent: int
    millivolts: int
    charging: bool
    external_power: bool  # docked or on a charger


@dataclass(frozen=True)
class PowerFail:
    """Power is about to go: finalise the open segment now."""

    mono_ns: int
    millivolts: int


@dataclass(frozen=True)
class Tamper:
    opened: bool
    mono_ns: int


@dataclass(frozen=True)
class RtcTime:
    utc_ns: int
    valid: bool  # False when the RTC lost power since it was last set


SupervisorEvent = ButtonEvent | BatteryStatus | PowerFail | Tamper


class Supervisor(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def next_event(self, timeout: float | None = None) -> SupervisorEvent | None: ...

    def set_leds(self, green: bool, yellow: bool, red: bool) -> None:
        """GA/T 947: green = on, yellow = recording audio, red = recording video."""
        ...

    def haptic(self, pattern_ms: list[int]) -> None:
        """Vibrate/beep: on, off, on ... durations in milliseconds."""
        ...

    def battery(self) -> BatteryStatus | None: ...

    def rtc_read(self) -> RtcTime: ...

    def rtc_set(self, utc_ns: int) -> None: ...

    def secure_element_public_key(self) -> bytes | None:
        """DER SubjectPublicKeyInfo of the P-256 key in the secure element, or None without one."""
        ...

    def secure_element_sign(self, message: bytes) -> bytes:
        """ES256 signature (raw r||s, 64 bytes) over `message` by the secure element."""
        ...
