"""Debounced inputs: buttons with long press, and switches such as the enclosure's tamper switch."""

PRESS = "press"  # released before the long-press time
HOLD = "hold"  # still held at the long-press time


class Debouncer:
    """Accepts a new level only after the raw input has held it for `hold_ms`.

    `changed_at` is when the raw input first took the accepted level, not when it was accepted:
    that is the moment the contact really closed, so events carry it as their time.
    """

    def __init__(self, hold_ms: int, level: bool | None = None) -> None:
        self.hold_ms = hold_ms
        self.level = level  # None until a first level has held (for switches)
        self.changed_at = 0
        self._raw = level
        self._since = 0

    def update(self, raw: bool, now: int) -> bool:
        """Feed one reading; True when the accepted level changed."""
        if raw != self._raw:
            self._raw = raw
            self._since = now
        if raw != self.level and now - self._since >= self.hold_ms:
            self.level = raw
            self.changed_at = self._since
            return True
        return False


class Button:
    """One gesture, one event: PRESS on release before `long_ms`, or HOLD once `long_ms` is reached.

    Reporting a short press only on release is what lets a press and a hold be told apart
    without sending both; the event time is the debounced press-down time either way.
    """

    def __init__(self, name: str, debounce_ms: int, long_ms: int) -> None:
        self.name = name
        self.long_ms = long_ms
        self._contact = Debouncer(debounce_ms, False)
        self._down_at = -1
        self._held = False

    def update(self, pressed: bool, now: int) -> tuple | None:
        """Feed one reading; (PRESS or HOLD, press-down time in ms) or None."""
        if self._contact.update(pressed, now):
            if self._contact.level:
                self._down_at = self._contact.changed_at
                self._held = False
                return None
            down_at = self._down_at
            self._down_at = -1
            return None if self._held else (PRESS, down_at)
        if self._down_at >= 0 and not self._held and now - self._down_at >= self.long_ms:
            self._held = True
            return (HOLD, self._down_at)
        return None
