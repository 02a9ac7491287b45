"""Durable writes: what is on disk after a power cut is either the old state or the new one."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import Future, ThreadPoolExecutor
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


def place(src: Path, dst: Path) -> None:
    """Move a finished, fsynced file into place without ever overwriting one.

    No folder fsync here: the caller's next atomic_write in the same folder
    fsyncs it, and a journaling filesystem (ext4, the recorder's) commits
    renames in order, so that one fsync makes this rename durable first.
    """
    if dst.exists():
        raise FileExistsError(f"{dst} exists: footage is never overwritten")
    os.rename(src, dst)


def write_unsynced(path: Path, data: bytes) -> None:
    """Write a new small file and let the next fsync in its folder carry it.

    On ext4 (data=ordered) any fsync commits the journal, and the journal
    commit writes the data of files created in that transaction first.
    """
    with open(path, "xb") as f:
        f.write(data)


class DurableCounter:
    """An integer persisted in place: one fdatasync per update, no rename.

    The value is rewritten at offset 0 with a fixed width, which the disk writes
    as one sector, so after a power cut the file holds the old or the new value.
    """

    WIDTH = 20

    def __init__(self, path: Path) -> None:
        new = not path.exists()
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if new:
            self._write(0)
            fsync_dir(path.parent)

    def read(self) -> int:
        return int(os.pread(self._fd, self.WIDTH, 0))

    def _write(self, value: int) -> None:
        os.pwrite(self._fd, b"%0*d" % (self.WIDTH, value), 0)
        os.fdatasync(self._fd)

    def set(self, value: int) -> None:
        self._write(value)

    def close(self) -> None:
        os.close(self._fd)


class HashingWriter(io.RawIOBase):
    """A write-only, non-seekable file that hashes what it writes as it writes it.

    Non-seekable on purpose: the MP4 muxer then never goes back to patch bytes,
    so the running hash is the hash of the file and no second read is needed.

    Each finished fragment is fsynced by a helper thread (fsync releases the
    GIL), so the capture loop goes on muxing while the disk settles; at most the
    fragment being fsynced is at risk besides the one being written, and close()
    returns only when everything is on disk.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "xb", buffering=0)  # noqa: SIM115 - closed in close()
        self._hash = hashlib.sha256()
        self.size = 0
        self._unsynced = False
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fsync")
        self._pending: Future[None] | None = None

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
        """Start an fsync of what was written so far (called once per finished fragment)."""
        if self._unsynced:
            if self._pending is not None:
                self._pending.result()  # one at a time: a slow disk slows the loop, never piles up
            self._pending = self._syncer.submit(os.fsync, self._file.fileno())
            self._unsynced = False

    def digest(self) -> bytes:
        return self._hash.digest()

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            if self._pending is not None:
                self._pending.result()
            self._syncer.shutdown()
            self._file.close()
        super().close()
