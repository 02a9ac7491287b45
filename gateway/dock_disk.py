"""The dock's disk: files arriving from recorders, and the rotation that shares the disk between bays.

A bay's handler reads file bytes off its link in chunks and hands each chunk to `FairDisk`, which writes
(and hashes) it in a worker thread. Each bay has its own link, so the disk (with the hashing beside it) is
what the bays share: 25 links of 100 Mbit/s bring about as much as a disk writes with fsync, and then
whoever gets the next write decides who progresses. A plain pool would serve whoever asks most often;
FairDisk instead keeps a queue per bay and serves the bays in rotation, one chunk each per turn, so a bay
with a fast link or huge files cannot starve the others and all bays progress at the same pace. Because a
handler reads the next chunk only while its previous one is written, each bay holds at most two chunks in
memory (and what aiohttp buffers of its link, at most 128 KiB and one read of the socket): the gateway's memory
stays bounded whatever the file sizes.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_READ_CHUNK = 1 << 20


class FairDisk:
    """Runs disk jobs in worker threads, taking the bays with work waiting in turn; one bay's jobs run one
    at a time, in the order given (they append to one file).

    The workers pick the next bay's job themselves, under a lock: a job never waits for the event loop to
    hand it to a worker, which it would for every chunk if the rotation ran on the loop, busy as the loop is
    reading 25 links. Only a job's result goes back through the loop."""

    def __init__(self, workers: int = 2) -> None:
        self._lock = threading.Condition()
        self._queues: dict[str, deque[_Job]] = {}
        self._turns: deque[str] = deque()  # bays with work waiting, in the order they will be served
        self._busy: set[str] = set()  # bays whose job is running
        self._waking = False  # a wake-up of the idle workers is scheduled on the loop
        self._closed = False
        self._threads = [threading.Thread(target=self._serve, name=f"dock-disk-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    async def run(self, bay: str, job: Callable[[], T]) -> T:
        """Run `job` in a disk thread when `bay`'s turn comes; its result or exception comes back here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            queue = self._queues.setdefault(bay, deque())
            queue.append(_Job(job, loop, future))
            if len(queue) == 1 and bay not in self._busy:
                self._turns.append(bay)
            if not self._waking:
                # Idle workers wake once the loop has queued what this turn of it brings, so that jobs handed
                # in together are served in turn, not in the order the loop happened to queue them.
                self._waking = True
                loop.call_soon(self._wake)
        return await future

    def _wake(self) -> None:
        with self._lock:
            self._waking = False
            self._lock.notify(len(self._turns))

    def _next(self) -> tuple[str, _Job] | None:
        """The next bay in turn and its oldest job; None once closed."""
        with self._lock:
            while not self._turns and not self._closed:
                self._lock.wait()
            if self._closed:
                return None
            bay = self._turns.popleft()
            self._busy.add(bay)
            return bay, self._queues[bay].popleft()

    def _done(self, bay: str) -> None:
        with self._lock:
            self._busy.discard(bay)
            if self._queues[bay]:
                self._turns.append(bay)  # behind every other bay that has work waiting
                self._lock.notify()

    def _serve(self) -> None:
        while (turn := self._next()) is not None:
            bay, job = turn
            try:
                outcome: tuple[Any, BaseException | None] = (job.run(), None)
            except Exception as exc:  # the job's failure is its caller's to handle
                outcome = (None, exc)
            self._done(bay)
            job.loop.call_soon_threadsafe(_settle, job.future, *outcome)

    async def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        for thread in self._threads:
            await asyncio.to_thread(thread.join)  # a job under way finishes first
        self._threads = []


@dataclass(frozen=True)
class _Job:
    run: Callable[[], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # its caller was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte (os.write may write fewer); the one place the dock's file bytes reach the disk."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def is_disk_full(exc: BaseException) -> bool:
    """A full disk, as the OS (a write, an fsync) or SQLite (the spool's index) reports it."""
    if isinstance(exc, sqlite3.Error):
        return getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


@dataclass
class PartialFile:
    """A file arriving at `path`: appended at its end and hashed as written, so a complete file needs no
    second read. The file's length on disk is where a recorder resumes; after a restart the hash of what
    is there is rebuilt once (`reopen`)."""

    path: Path
    offset: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)

    @classmethod
    def reopen(cls, path: Path) -> PartialFile:
        """What is on disk at `path` (nothing yet: an empty file)."""
        partial = cls(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab+") as f:
            f.seek(0)
            while chunk := f.read(_READ_CHUNK):
                partial.sha256.update(chunk)
                partial.offset += len(chunk)
        return partial

    def matches_disk(self) -> bool:
        try:
            return self.path.stat().st_size == self.offset
        except FileNotFoundError:
            return False

    def append(self, data: bytes | memoryview) -> None:
        """Append and hash `data`. A failed write (a full disk) is cut back off, so the file and the hash
        always agree and a later attempt resumes at a whole, known offset."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            try:
                write_all(fd, data)
            except OSError:
                os.ftruncate(fd, self.offset)
                raise
        finally:
            os.close(fd)
        self.sha256.update(data)
        self.offset += len(data)

    def finish(self) -> bytes:
        """fsync the complete file and return its SHA-256. If the disk fails here (delayed allocation
        reports a full disk at fsync), what the file holds is unknown: it is deleted, to come again."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            self.path.unlink(missing_ok=True)
            raise
        return self.sha256.digest()
