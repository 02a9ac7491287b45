"""Durable writes: what is on disk after a power cut is either the old state or the new one."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write a whole file: temp file, fsync, rename over, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def durable_rename(src: Path, dst: Path) -> None:
    """Move a finished file into place without ever overwriting one."""
    if dst.exists():
        raise FileExistsError(f"{dst} exists: footage is never overwritten")
    os.rename(src, dst)
    fsync_dir(dst.parent)
    if src.parent != dst.parent:
        fsync_dir(src.parent)


class HashingWriter(io.RawIOBase):
    """A write-only, non-seekable file that hashes what it writes as it writes it.

    Non-seekable on purpose: the MP4 muxer then never goes back to patch bytes,
    so the running hash is the hash of the file and no second read is needed.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "xb", buffering=0)  # noqa: SIM115 - closed in close()
        self._hash = hashlib.sha256()
        self.size = 0
        self._unsynced = False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += self._file.write(view[written:])
        self._hash.update(view)
        self.size += written
        self._unsynced = True
        return written

    def sync(self) -> None:
        """fsync what was written so far (called once per finished fragment)."""
        if self._unsynced:
            os.fsync(self._file.fileno())
            self._unsynced = False

    def digest(self) -> bytes:
        return self._hash.digest()

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._file.close()
        super().close()
