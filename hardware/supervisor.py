"""The supervisor MCU as the main board sees it: buttons, LEDs, haptic, battery,
RTC, power-fail warning, tamper switch and the secure element.

The real driver is `hardware.supervisor_serial.SerialSupervisor` (the MCU link of
docs/protocol.md section 2 over a UART); `simulators.mcu.SimulatedMcu` runs the MCU's own code
behind a pty for it to open.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

RECORD = "record"
MARK = "mark"
POWER = "power"

# LEDs (GA/T 947: green = on, yellow = recording audio, red = recording video) and their modes.
GREEN = "green"
YELLOW = "yellow"
RED = "red"
LED_OFF = "off"
LED_ON = "on"
LED_BLINK = "blink"


@dataclass(frozen=True)
class ButtonEvent:
    button: str  # RECORD, MARK or POWER
    long_press: bool  # held for the long-press time (reported then, not at release)
    mcu_ms: int  # MCU uptime when the button went down (debounced)
    mono_ns: int  # main-board monotonic time when the button went down (arrival less the press's age)


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
    ms_left: int = 0  # about how long the supply holds after the warning


@dataclass(frozen=True)
class Tamper:
    opened: bool
    mono_ns: int
    count: int = 0  # openings since the MCU started: a jump means openings went unreported
    source: str = "case"


@dataclass(frozen=True)
class RtcTime:
    utc_ns: int
    valid: bool  # False when the RTC lost power since it was last set


SupervisorEvent = ButtonEvent | BatteryStatus | PowerFail | Tamper


class SupervisorError(Exception):
    """The MCU refused a request or the link failed: `.code` is stable, `.message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class SupervisorTimeout(SupervisorError, TimeoutError):
    """The MCU did not answer (code "mcu.timeout")."""


class Supervisor(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def next_event(self, timeout: float | None = None) -> SupervisorEvent | None: ...

    def set_leds(self, green: bool, yellow: bool, red: bool) -> None:
        """GA/T 947: green = on, yellow = recording audio, red = recording video."""
        ...

    def set_led(self, led: str, mode: str, period_ms: int = 1000) -> None:
        """One LED (GREEN, YELLOW, RED) LED_OFF, LED_ON or LED_BLINK (on for the first half of each period)."""
        ...

    def haptic(self, pattern_ms: list[int]) -> None:
        """Vibrate/beep: on, off, on ... durations in milliseconds; [] stops."""
        ...

    def battery(self) -> BatteryStatus | None:
        """The battery now (asked of the MCU); None when there is no battery gauge."""
        ...

    def rtc_read(self) -> RtcTime: ...

    def rtc_set(self, utc_ns: int) -> None: ...

    def secure_element_public_key(self) -> bytes | None:
        """DER SubjectPublicKeyInfo of the P-256 key in the secure element, or None without one."""
        ...

    def secure_element_sign(self, message: bytes) -> bytes:
        """ES256 signature (raw r||s, 64 bytes) over `message` by the secure element."""
        ...
