"""Strict field checks for signed structures, shared by manifests and receipts.

Each check raises ProtocolError with the structure's own malformed-code, so a
report says which kind of structure was bad.
"""

from __future__ import annotations

import re
from typing import Any

from protocol.errors import ProtocolError

INT64_MAX = 2**63 - 1
HEX64 = re.compile(r"[0-9a-f]{64}")
HEX32 = re.compile(r"[0-9a-f]{32}")
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Checker:
    def __init__(self, code: str) -> None:
        self.code = code

    def fail(self, message: str) -> ProtocolError:
        return ProtocolError(self.code, message)

    def exact(self, obj: object, allowed: frozenset[str], where: str) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise self.fail(f"{where} must be an object")
        keys = set(obj)
        if keys != allowed:
            missing, extra = sorted(allowed - keys), sorted(keys - allowed)
            parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {extra}"] if extra else [])
            raise self.fail(f"{where}: {'; '.join(parts)}")
        return obj

    def int(self, value: object, where: str, lo: int = 0, hi: int = INT64_MAX) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise self.fail(f"{where} must be an integer in [{lo}, {hi}]")
        return value

    def str(self, value: object, where: str, pattern: re.Pattern[str] | None = None, max_len: int = 256) -> str:
        if not isinstance(value, str) or not value or len(value) > max_len:
            raise self.fail(f"{where} must be a non-empty string of at most {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(f"{where} has an invalid form: {value!r}")
        return value

    def list(self, value: object, where: str, max_len: int = 100_000) -> list[Any]:
        if not isinstance(value, list) or len(value) > max_len:
            raise self.fail(f"{where} must be a list of at most {max_len} items")
        return value

    def bool(self, value: object, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"{where} must be true or false")
        return value
