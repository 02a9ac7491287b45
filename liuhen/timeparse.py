"""Times on the command line: ISO 8601 (with a zone) or `now`, to UTC nanoseconds."""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_time_ns(text: str) -> int:
    if text == "now":
        return time.time_ns()
    try:
        dt = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if dt.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}+08:00 or {text}Z")
    return ((dt - _EPOCH) // timedelta(microseconds=1)) * 1000


def format_ns(ns: int) -> str:
    return (_EPOCH + timedelta(microseconds=ns // 1000)).isoformat().replace("+00:00", "Z")
