"""The docking bays as the station sees them: who is docked where, how far each transfer is, what went wrong.

`Bays.snapshot()` gives plain data (copies) for the station page and its JSON; the dock updates the live
records from its handlers, all on one event loop, so nothing here needs a lock.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

IDLE = "idle"
HELLO = "hello"  # a device named itself; its identity is not proven yet
CHECKING = "checking"  # the pending list is being verified
RECEIVING = "receiving"
DONE = "done"  # receipts handed over
REFUSED = "refused"  # the device, or what it sent, was refused
DISK_FULL = "disk-full"

EVENTS_KEPT = 50  # refusals and errors per bay, newest last
RATE_WINDOW_NS = 2 * 10**9


@dataclass(frozen=True)
class BayEvent:
    """A refusal or error on a bay, as the station page lists it."""

    at_ns: int
    device: str | None
    code: str
    message: str


@dataclass
class BayProgress:
    bay: str
    device: str | None = None
    state: str = IDLE
    files_done: int = 0
    files_total: int = 0
    bytes_done: int = 0
    bytes_total: int = 0
    rate_bytes_per_s: int = 0
    last_error: str | None = None
    events: list[BayEvent] = field(default_factory=list)


class Bay:
    """One bay's live progress record and the bookkeeping behind its transfer rate."""

    def __init__(self, name: str, clock_ns: Callable[[], int], monotonic_ns: Callable[[], int]) -> None:
        self.progress = BayProgress(name)
        self._events: deque[BayEvent] = deque(maxlen=EVENTS_KEPT)
        self._clock_ns = clock_ns
        self._monotonic_ns = monotonic_ns
        self._window: tuple[int, int] = (monotonic_ns(), 0)  # (when, bytes_done then)

    @property
    def name(self) -> str:
        return self.progress.bay

    def docked(self, device: str) -> None:
        """A device said hello: a new transfer starts from nothing."""
        self.progress = BayProgress(self.name, device=device, state=HELLO, last_error=self.progress.last_error)
        self._window = (self._monotonic_ns(), 0)

    def set_state(self, state: str) -> None:
        self.progress.state = state
        if state != RECEIVING:
            self.progress.rate_bytes_per_s = 0

    def planned(self, files: int, total_bytes: int, held_bytes: int) -> None:
        p = self.progress
        p.state, p.files_total, p.files_done, p.bytes_total, p.bytes_done = RECEIVING, files, 0, total_bytes, held_bytes
        self._window = (self._monotonic_ns(), held_bytes)

    def received(self, count: int) -> None:
        self.progress.bytes_done += count
        now = self._monotonic_ns()
        since, bytes_then = self._window
        if now - since >= RATE_WINDOW_NS:
            self.progress.rate_bytes_per_s = (self.progress.bytes_done - bytes_then) * 10**9 // (now - since)
            self._window = (now, self.progress.bytes_done)

    def file_done(self) -> None:
        self.progress.files_done += 1

    def report(self, code: str, message: str, device: str | None = None, state: str | None = None) -> None:
        """A refusal or an error: kept for the station page, newest last."""
        self._events.append(BayEvent(self._clock_ns(), device or self.progress.device, code, message))
        self.progress.last_error = f"{code}: {message}"
        if state is not None:
            self.set_state(state)

    def snapshot(self) -> BayProgress:
        return dataclasses.replace(self.progress, events=list(self._events))


class Bays:
    def __init__(self, names: Iterable[str], clock_ns: Callable[[], int], monotonic_ns: Callable[[], int]) -> None:
        self._bays = {name: Bay(name, clock_ns, monotonic_ns) for name in names}

    def __getitem__(self, name: str) -> Bay:
        return self._bays[name]

    def names(self) -> list[str]:
        return list(self._bays)

    def snapshot(self) -> list[BayProgress]:
        return [bay.snapshot() for bay in self._bays.values()]
