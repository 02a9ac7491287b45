"""Timed on/off outputs: an LED that is off, on or blinking, and the vibration motor's patterns."""

OFF = "off"
ON = "on"
BLINK = "blink"
LED_MODES = (OFF, ON, BLINK)

MAX_PATTERN_STEPS = 16
MAX_STEP_MS = 10_000
MIN_PERIOD_MS = 100
MAX_PERIOD_MS = 10_000


class Pattern:
    """A level over time: steady, or on/off durations (on first) played once or repeated."""

    def __init__(self) -> None:
        self._steady = False
        self._steps: tuple = ()
        self._start = 0
        self._repeat = False

    def steady(self, on: bool) -> None:
        self._steady = on
        self._steps = ()

    def play(self, steps_ms: tuple, now: int, repeat: bool) -> None:
        """Durations in ms: on, off, on, ... An empty tuple turns the output off."""
        self._steady = False
        self._steps = steps_ms
        self._start = now
        self._repeat = repeat

    def level(self, now: int) -> bool:
        if not self._steps:
            return self._steady
        elapsed = now - self._start
        total = sum(self._steps)
        if self._repeat:
            elapsed %= total
        elif elapsed >= total:
            self._steps = ()
            self._steady = False
            return False
        for i in range(len(self._steps)):
            elapsed -= self._steps[i]
            if elapsed < 0:
                return i % 2 == 0
        return False


def set_led(pattern: Pattern, mode: str, period_ms: int, now: int) -> None:
    """Blinking is on for the first half of each period, from the moment it was set."""
    if mode == BLINK:
        half = period_ms // 2
        pattern.play((half, period_ms - half), now, True)
    else:
        pattern.steady(mode == ON)
