"""The supervisor's entry point: copied to the board's root as main.py, which MicroPython runs at boot.

`boot()` builds the supervisor from the board's peripherals (board.py) and probes the secure
element; the simulator calls it too, with simulated peripherals and time. `run()` is the
board's endless loop: a tick every few milliseconds, the watchdog fed after each.
"""

import time

import machine

from firmware.mcu.app import App
from firmware.mcu.board import Board
from firmware.mcu.config import Config
from firmware.mcu.secure_element import Atecc608

TYPE_CHECKING = False  # MicroPython has no typing module; mypy reads this name as True
if TYPE_CHECKING:
    from collections.abc import Callable


def boot(cfg: Config, sleep_ms: "Callable[[int], None]") -> App:
    board = Board(cfg)
    chip = Atecc608(board.i2c, cfg.se_address, cfg.se_slot, sleep_ms)
    return App(cfg, board, chip if chip.present() else None)


def run() -> None:
    cfg = Config()
    app = boot(cfg, time.sleep_ms)
    # A hung loop would leave buttons dead and the power-fail warning unsent: reset instead.
    watchdog = machine.WDT(timeout=cfg.watchdog_ms)
    now = 0
    last = time.ticks_ms()
    while True:
        # Uptime from wrapping ticks: an int that grows, so the logic never sees a wrap.
        tick = time.ticks_ms()
        now += time.ticks_diff(tick, last)
        last = tick
        app.tick(now)
        watchdog.feed()
        time.sleep_ms(cfg.tick_ms)


if __name__ == "__main__":
    run()
