"""The dock's disk: files arriving from recorders, and the rotation that shares the disk between bays.

A bay's handler reads file bytes off its link in chunks and hands each chunk to `FairDisk`, which writes
(and hashes) it in a worker thread. Each bay has its own link, so the disk (with the hashing beside it) is
what the bays share: 25 links of 100 Mbit/s bring about as much as a disk writes with fsync, and then
whoever gets the next write decides who progresses. A plain pool would serve whoever asks most often;
FairDisk instead keeps a queue per bay and serves the bays in rotation, one chunk each per turn, so a bay
with a fast link or huge files cannot starve the others and all bays progress at the same pace. Because a
handler reads the next chunk only while its previous one is written, each bay holds at most two chunks in
memory: the gateway's memory stays bounded whatever the file sizes.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import sqlite3
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
_READ_CHUNK = 1 << 20


class FairDisk:
    """Runs disk jobs in worker threads, taking the bays with work waiting in turn; one bay's jobs run one
    at a time, in the order given (they append to one file)."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="dock-disk")
        self._workers = workers
        self._queues: dict[str, deque[tuple[Callable[[], Any], asyncio.Future[Any]]]] = {}
        self._turns: deque[str] = deque()  # bays with work waiting, in the order they will be served
        self._busy: set[str] = set()  # bays whose job is running
        self._ready: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self, bay: str, job: Callable[[], T]) -> T:
        """Run `job` in a disk thread when `bay`'s turn comes; its result or exception comes back here."""
        self._start()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        queue = self._queues.setdefault(bay, deque())
        queue.append((job, future))
        if len(queue) == 1 and bay not in self._busy:
            self._wait_turn(bay)
        return await future

    def _wait_turn(self, bay: str) -> None:
        assert self._ready is not None
        self._turns.append(bay)
        self._ready.set()

    def _start(self) -> None:
        if not self._tasks:
            self._ready = asyncio.Event()
            self._tasks = [asyncio.get_running_loop().create_task(self._serve()) for _ in range(self._workers)]

    async def _serve(self) -> None:
        assert self._ready is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._ready.wait()
            if not self._turns:
                self._ready.clear()
                continue
            bay = self._turns.popleft()
            job, future = self._queues[bay].popleft()
            self._busy.add(bay)
            try:
                result = await loop.run_in_executor(self._pool, job)
            except Exception as exc:  # the job's failure is its caller's to handle
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
            finally:
                self._busy.discard(bay)
                if self._queues[bay]:
                    self._wait_turn(bay)  # behind every other bay that has work waiting

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._pool.shutdown(wait=True)


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

    def append(self, data: bytes) -> None:
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
