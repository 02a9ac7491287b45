"""Durable writes: what is on disk after a power cut is either the old state or the new one."""

from __future__ import annotations

import hashlib
import io
import os
import threading
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


class GroupSyncer:
    """fsyncs a file from a helper thread, coalescing requests (a group commit).

    The capture loop asks for a sync after each fragment and goes on at once;
    the helper fsyncs whatever has been written by then, and one fsync covers
    every request that arrived while the previous one ran. So durability lags
    the writes by at most one fsync, and a slow disk never builds a backlog.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._cond = threading.Condition()
        self._requested = self._done = 0  # request counter, and the last request a finished fsync covers
        self._closing = False
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="fsync", daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._cond:
            self._raise_error()
            self._requested += 1
            self._cond.notify_all()

    def wait(self) -> None:
        """Block until everything requested so far is on disk."""
        with self._cond:
            target = self._requested
            self._cond.wait_for(lambda: self._done >= target or self._error is not None)
            self._raise_error()

    def close(self) -> None:
        self.wait()
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._requested > self._done or self._closing)
                if self._requested == self._done:
                    return
                covering = self._requested
            try:
                os.fsync(self._fd)
            except OSError as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                self._done = covering
                self._cond.notify_all()


class HashingWriter(io.RawIOBase):
    """A write-only, non-seekable file that hashes what it writes as it writes it.

    Non-seekable on purpose: the MP4 muxer then never goes back to patch bytes,
    so the running hash is the hash of the file and no second read is needed.
    Finished fragments are fsynced by a GroupSyncer, so the capture loop never
    waits for the disk; close() returns only when everything is on disk.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._file = open(path, "xb", buffering=0)  # noqa: SIM115 - closed in close()
        self._hash = hashlib.sha256()
        self.size = 0
        self._unsynced = False
        self._syncer = GroupSyncer(self._file.fileno())

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
        """Ask for an fsync of what was written so far (called once per finished fragment)."""
        if self._unsynced:
            self._syncer.request()
            self._unsynced = False

    def digest(self) -> bytes:
        return self._hash.digest()

    def close(self) -> None:
        if not self._file.closed:
            self.sync()
            self._syncer.close()
            self._file.close()
        super().close()
