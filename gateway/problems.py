"""What went wrong lately, for the station page: a short list kept in memory, newest last.

The station page shows the bays' refusals (kept by gateway/bays.py) beside problems from the other parts
(the station broker's bad telemetry, a lost broker); the log has them all, this list only the latest.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

KEPT = 100


@dataclass(frozen=True)
class Problem:
    at_ns: int  # gateway time, UTC ns
    source: str  # what found it: "bay-3", "mqtt", "upload", ...
    code: str  # a finding code (protocol/errors.py) or a short kebab-case name
    message: str
    device: str | None = None


class ProblemLog:
    """A bounded list of problems, safe to add to from any thread (paho's callbacks run in its own)."""

    def __init__(self, source: str, clock_ns: Callable[[], int], keep: int = KEPT) -> None:
        self.source = source
        self._clock_ns = clock_ns
        self._problems: deque[Problem] = deque(maxlen=keep)
        self._lock = threading.Lock()

    def add(self, code: str, message: str, device: str | None = None) -> None:
        with self._lock:
            self._problems.append(Problem(self._clock_ns(), self.source, code, message, device))

    def recent(self) -> list[Problem]:
        with self._lock:
            return list(self._problems)
