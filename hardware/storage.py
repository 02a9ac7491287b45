"""Storage: how much room the recorder has, with an optional quota (simulated small cards)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Space:
    total_bytes: int
    free_bytes: int


class Storage:
    """Free space of the filesystem holding `root`, or of a quota on it when one is set."""

    def __init__(self, root: Path, quota_bytes: int | None = None) -> None:
        self.root = root
        self.quota_bytes = quota_bytes

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file())

    def space(self) -> Space:
        if self.quota_bytes is not None:
            return Space(self.quota_bytes, max(0, self.quota_bytes - self.used_bytes()))
        st = os.statvfs(self.root)
        return Space(st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize)
