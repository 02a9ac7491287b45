"""Times people type into queries and commands: UTC nanoseconds, or RFC 3339 / ISO 8601 with a zone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NS = re.compile(r"-?[0-9]{1,19}")
_INT64 = 2**63


def parse_time_ns(text: str) -> int:
    """`1764000000000000000` or `2025-11-24T16:00:00Z` / `...+08:00` to UTC ns; ValueError says what is wrong.
    A time without a zone is refused: guessing the server's zone would shift a search by hours."""
    if _NS.fullmatch(text):
        ns = int(text)
    else:
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text!r} is neither UTC nanoseconds nor an ISO 8601 time such as "
                             "2025-11-24T16:00:00Z") from None
        if dt.tzinfo is None:
            raise ValueError(f"{text!r} has no time zone: add Z or an offset such as +08:00")
        ns = ((dt - _EPOCH) // timedelta(microseconds=1)) * 1000
    if not -_INT64 <= ns < _INT64:
        raise ValueError(f"{text!r} is outside the years 1677-2262 that 64-bit nanoseconds hold")
    return ns
