"""The simulated supervisor MCU: the firmware/mcu code itself, on simulated hardware, behind a pty.

`SimulatedMcu` runs `firmware.mcu.main.boot()` under CPython with `simulators.mcu_machine` as its
`machine` module, in a thread, in simulated time that runs `speed` times faster than real time.
The MCU's UART is bridged to a pty: the recorder opens `.port` with the real driver
(`hardware.supervisor_serial.SerialSupervisor`) exactly as it opens the board's UART. Around the
firmware the simulation plays the outside world: buttons pressed (with contact bounce), a battery
that drains, or charges when docked, a supply that fails, an enclosure opened, an RTC that
loses power (the MCU restarts), and an ATECC608 on the I2C bus whose key is a
`SoftSecureElement` (CPython and `cryptography` only: MicroPython has no ECDSA).

Scripted events come from a list of `McuEvent`, or from a scenario file's [mcu] table
(`SimulatedMcu.from_scenario`, format in docs/sections/recorder-mcu.md). As a process:
`python -m simulators.mcu [--scenario FILE] [--speed X]` prints the pty's path and runs until stopped.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
import tomllib
import tty
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, decode_dss_signature

from simulators import mcu_machine

# The firmware imports `machine`; in this process that is the simulated one.
sys.modules.setdefault("machine", mcu_machine)

from firmware.mcu import main as mcu_main  # noqa: E402
from firmware.mcu.app import App  # noqa: E402
from firmware.mcu.battery import DISCHARGE_CURVE  # noqa: E402
from firmware.mcu.config import Config  # noqa: E402
from firmware.mcu.secure_element import SecureElement  # noqa: E402
from protocol import signatures  # noqa: E402

BUTTONS = ("record", "mark", "power")
ACTIONS = ("press", "dock", "undock", "power_fail", "power_restore", "rtc_reset", "tamper_open", "tamper_close")
SHORT_PRESS_MS = 150
BOUNCE_MS = (0, 1, 2, 4)  # contact chatter when a button goes down or up: level flips at these offsets
DEPLETED_MV = 3300  # an empty cell under load, below the firmware's power-fail threshold
COLLAPSED_MV = 3100  # what `power_fail()` drops the supply to


class SoftSecureElement(SecureElement):
    """A P-256 key in memory that signs with `cryptography`: the simulation's stand-in for the key
    inside the ATECC608. CPython only."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.key = key or ec.generate_private_key(ec.SECP256R1())

    def public_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")

    def sign_digest(self, digest: bytes) -> bytes:
        der = self.key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        r, s = decode_dss_signature(der)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def public_key_der(self) -> bytes:
        return signatures.spki_der(self.key.public_key())


@dataclass(frozen=True)
class McuEvent:
    """Something that happens to the recorder at `at_s` seconds of simulated time."""

    at_s: float
    action: str  # one of ACTIONS
    button: str = "record"  # for "press"
    long: bool = False  # for "press": held past the long-press time

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown MCU event {self.action!r}: expected one of {', '.join(ACTIONS)}")
        if self.button not in BUTTONS:
            raise ValueError(f"unknown button {self.button!r}: expected one of {', '.join(BUTTONS)}")
        if self.at_s < 0:
            raise ValueError("an MCU event's time is at least 0")

    @classmethod
    def from_dict(cls, item: dict[str, Any]) -> McuEvent:
        """One [[mcu.events]] entry of a scenario file: {at = 12.5, action = "press", button = "mark"}."""
        unknown = set(item) - {"at", "action", "button", "long"}
        if unknown:
            raise ValueError(f"unknown keys in an MCU event: {', '.join(sorted(unknown))}")
        return cls(float(item["at"]), str(item["action"]), str(item.get("button", "record")), bool(item.get("long")))


def mv_at(percent: float) -> int:
    """The simulated cell's voltage at a state of charge, on the firmware's discharge curve."""
    if percent <= 0:
        return DEPLETED_MV
    high_mv, high_pct = DISCHARGE_CURVE[0]
    for low_mv, low_pct in DISCHARGE_CURVE[1:]:
        if percent >= low_pct:
            share = (min(percent, high_pct) - low_pct) / (high_pct - low_pct)
            return round(low_mv + share * (high_mv - low_mv))
        high_mv, high_pct = low_mv, low_pct
    return DISCHARGE_CURVE[-1][0]


class SimulatedMcu:
    def __init__(
        self,
        script: Iterable[McuEvent] = (),
        *,
        start_percent: float = 80.0,
        drain_per_hour: float = 8.0,
        charge_per_hour: float = 40.0,
        docked: bool = False,
        rtc_valid: bool = True,
        rtc_utc_ms: int | None = None,
        case_shut: bool = True,
        secure_element: SoftSecureElement | None = None,
        fit_secure_element: bool = True,
        speed: float = 1.0,
        step_ms: int = 10,
    ) -> None:
        """`secure_element`: the key in the emulated chip (a new one by default); no chip at all
        without `fit_secure_element`. `rtc_utc_ms`: what the RTC reads at the start when
        `rtc_valid` (default: the wall clock). Drain and charge are percent per simulated hour;
        `step_ms` is the longest stretch of simulated time between two ticks of the firmware."""
        if speed <= 0:
            raise ValueError("speed must be above 0")
        self.speed = speed
        self.step_ms = step_ms
        self.percent = float(start_percent)
        self.drain_per_hour = drain_per_hour
        self.charge_per_hour = charge_per_hour
        self.docked = docked
        self.secure_element = secure_element or SoftSecureElement()
        # The link's timings are real-time properties of the main board's driver: in simulated time
        # they stretch with the speed, so that the MCU still waits 100 ms of real time for an ACK.
        self.config = Config().update({
            "ack_ms": max(1, round(100 * speed)),
            "idle_ms": max(1, round(20 * speed)),
            "sticky_retry_ms": max(1, round(1000 * speed)),
        })
        self.board = mcu_machine.SimBoard()
        self.board.inputs[self.config.tamper_pin] = 0 if case_shut else 1
        if fit_secure_element:
            self.board.i2c_devices[self.config.se_address] = mcu_machine.Atecc608Emulator(self.secure_element)
        self._scheduled: list[tuple[int, int, Callable[[], None]]] = []  # (ms, order, action)
        self._order = 0
        self._commands: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._ticked = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._supply_override: int | None = None
        self.dropped_bytes = 0  # sent while nobody read the pty
        self._update_battery()
        self.app = self._boot()
        if rtc_valid:
            self.app.set_rtc(rtc_utc_ms if rtc_utc_ms is not None else time.time_ns() // 1_000_000)
        for event in script:
            self._schedule(round(event.at_s * 1000), self._script_action(event))
        self._master, self._slave = os.openpty()
        # Raw, or the tty would echo the MCU's frames back to it before the driver opens the port.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(self._slave)

    @classmethod
    def from_scenario(cls, scenario: dict[str, Any], **options: Any) -> SimulatedMcu:
        """From a scenario file's parsed TOML: its [mcu] table (settings and [[mcu.events]])."""
        table = dict(scenario.get("mcu", {}))
        script = [McuEvent.from_dict(item) for item in table.pop("events", [])]
        allowed = {"start_percent", "drain_per_hour", "charge_per_hour", "docked", "rtc_valid", "case_shut",
                   "fit_secure_element"}
        unknown = set(table) - allowed
        if unknown:
            raise ValueError(f"unknown keys in [mcu]: {', '.join(sorted(unknown))}")
        return cls(script, **{**table, **options})

    # ------------------------------------------------------------------------- control

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="simulated-mcu", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._master >= 0:
            os.close(self._master)
            os.close(self._slave)
        self._master = self._slave = -1

    def __enter__(self) -> SimulatedMcu:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def now_ms(self) -> int:
        """Simulated time since the start, in ms."""
        return self.board.now_ms

    def wait_until(self, ms: int, timeout: float | None = None) -> bool:
        """Block until simulated time reaches `ms`; False on timeout (real seconds)."""
        with self._ticked:
            return self._ticked.wait_for(lambda: self.board.now_ms >= ms, timeout)

    def press(self, button: str, long: bool = False) -> None:
        """Press a button now (long: held past its long-press time), contacts bouncing."""
        self._command(lambda: self._press(button, long))

    def power_fail(self) -> None:
        """The supply collapses (a battery pulled, a cell giving out) until power_restore()."""
        self._command(lambda: self._set_supply(COLLAPSED_MV))

    def power_restore(self) -> None:
        self._command(lambda: self._set_supply(None))

    def dock(self) -> None:
        self._command(lambda: self._set_docked(True))

    def undock(self) -> None:
        self._command(lambda: self._set_docked(False))

    def tamper(self, opened: bool = True) -> None:
        self._command(lambda: self._set_case(opened))

    def rtc_reset(self) -> None:
        """The MCU loses power: it restarts, and its RTC with it (RTC_TIME valid false until set)."""
        self._command(self._power_cycle)

    def inject(self, data: bytes) -> None:
        """Bytes on the line towards the main board, as from a noisy UART."""
        self._command(lambda: self._write_pty(data))

    def inject_to_mcu(self, data: bytes) -> None:
        """Bytes on the line towards the MCU."""
        self._command(lambda: self.board.feed_uart(data))

    # ------------------------------------------------------------------------- observation

    def leds(self) -> dict[str, bool]:
        return {name: bool(self.board.level(pin)) for name, pin in self.config.leds}

    def haptic_history(self) -> list[tuple[int, int]]:
        """(simulated ms, level) of every change of the vibration motor."""
        return [(ms, level) for ms, pin, level in list(self.board.history) if pin == self.config.haptic_pin]

    def public_key_der(self) -> bytes:
        return self.secure_element.public_key_der()

    # ------------------------------------------------------------------------- the simulation

    def _boot(self) -> App:
        mcu_machine.use(self.board)
        return mcu_main.boot(self.config, lambda ms: None)  # the emulated chip needs no waiting

    def _run(self) -> None:
        started = time.monotonic()
        origin = self.board.now_ms
        while not self._stop.is_set():
            self._run_commands()
            self._read_pty()
            target = origin + int((time.monotonic() - started) * 1000 * self.speed)
            while self.board.now_ms < target:
                self._step(target)
            with self._ticked:
                self._ticked.notify_all()
            # About a step of simulated time; at most 5 ms, well inside the driver's 100 ms for an ACK.
            time.sleep(min(0.005, max(0.0005, self.step_ms / 1000 / self.speed)))

    def _step(self, target: int) -> None:
        now = self.board.now_ms
        due = self._scheduled[0][0] if self._scheduled else target
        step = max(1, min(self.step_ms, target - now, due - now))
        self._drain(step)
        self.board.now_ms = now + step
        while self._scheduled and self._scheduled[0][0] <= self.board.now_ms:
            self._scheduled.pop(0)[2]()
        self._update_battery()
        self.app.tick(self.board.now_ms)
        self._write_pty(self.board.take_uart())

    def _command(self, action: Callable[[], None]) -> None:
        with self._lock:
            self._commands.append(action)
        if self._thread is None:  # not started: apply at once, at simulated time 0
            self._run_commands()

    def _run_commands(self) -> None:
        with self._lock:
            commands, self._commands = self._commands, []
        for action in commands:
            action()

    def _schedule(self, at_ms: int, action: Callable[[], None]) -> None:
        self._order += 1
        self._scheduled.append((at_ms, self._order, action))
        self._scheduled.sort(key=lambda item: item[:2])

    def _script_action(self, event: McuEvent) -> Callable[[], None]:
        actions: dict[str, Callable[[], None]] = {
            "press": lambda: self._press(event.button, event.long),
            "dock": lambda: self._set_docked(True),
            "undock": lambda: self._set_docked(False),
            "power_fail": lambda: self._set_supply(COLLAPSED_MV),
            "power_restore": lambda: self._set_supply(None),
            "rtc_reset": self._power_cycle,
            "tamper_open": lambda: self._set_case(True),
            "tamper_close": lambda: self._set_case(False),
        }
        return actions[event.action]

    def _press(self, button: str, long: bool) -> None:
        pin = {name: number for name, number, _ in self.config.buttons}[button]
        long_ms = {name: hold for name, _, hold in self.config.buttons}[button]
        held = long_ms + 300 if long else SHORT_PRESS_MS
        now = self.board.now_ms
        for i, offset in enumerate(BOUNCE_MS):
            self._schedule(now + offset, self._level(pin, 0 if i % 2 == 0 else 1))
            self._schedule(now + held + offset, self._level(pin, 1 if i % 2 == 0 else 0))
        self._schedule(now + BOUNCE_MS[-1] + 1, self._level(pin, 0))
        self._schedule(now + held + BOUNCE_MS[-1] + 1, self._level(pin, 1))

    def _level(self, pin: int, level: int) -> Callable[[], None]:
        def apply() -> None:
            self.board.inputs[pin] = level

        return apply

    def _set_case(self, opened: bool) -> None:
        self.board.inputs[self.config.tamper_pin] = 1 if opened else 0

    def _set_docked(self, docked: bool) -> None:
        self.docked = docked
        self._update_battery()

    def _set_supply(self, mv: int | None) -> None:
        self._supply_override = mv
        self._update_battery()

    def _power_cycle(self) -> None:
        self.board.rtc_reset()
        self.board.take_uart()
        self.board.rx = bytearray()
        self.app = self._boot()

    def _drain(self, step_ms: int) -> None:
        hours = step_ms / 3_600_000
        if self.docked:
            self.percent = min(100.0, self.percent + self.charge_per_hour * hours)
        else:
            self.percent = max(0.0, self.percent - self.drain_per_hour * hours)

    def _update_battery(self) -> None:
        cfg = self.config
        charging = self.docked and self.percent < 100
        mv = mv_at(self.percent) + (cfg.charge_offset_mv if charging else 0)
        if self._supply_override is not None:
            mv = self._supply_override
        # The smallest reading the firmware converts back to exactly `mv` (it rounds down).
        full_scale = cfg.adc_vref_mv * (cfg.divider_top_ohm + cfg.divider_bottom_ohm)
        raw = (mv * 65535 * cfg.divider_bottom_ohm + full_scale - 1) // full_scale
        self.board.analog[cfg.battery_adc_pin] = min(65535, raw)
        self.board.inputs[cfg.charging_pin] = 0 if charging else 1
        self.board.inputs[cfg.external_pin] = 1 if self.docked else 0

    def _read_pty(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        self.board.feed_uart(data)

    def _write_pty(self, data: bytes) -> None:
        if not data:
            return
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        self.dropped_bytes += len(data) - written  # a UART with nobody listening loses its bytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulators.mcu",
        description="Run the simulated supervisor MCU behind a pty; print the pty's path, run until stopped.",
    )
    parser.add_argument("--scenario", help="scenario TOML file; its [mcu] table is read")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated time per real time (default 1)")
    args = parser.parse_args(argv)
    scenario = {}
    if args.scenario:
        with open(args.scenario, "rb") as file:
            scenario = tomllib.load(file)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    with SimulatedMcu.from_scenario(scenario, speed=args.speed) as sim:
        print(sim.port, flush=True)
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
