"""File transfers at the dock: bytes received at an offset, hashed as written, admitted when complete.

A PUT carries a file's bytes from the offset the gateway holds. They are written through the fair disk
rotation (gateway/dock_disk.py) while the next chunk is read off the link. When the link drops, what
arrived so far stays in the partial file and the recorder resumes there. A complete file is fsynced,
checked against its manifest, and admitted into the spool with its findings; it is never dropped.

The free-space reserve is checked before anything is written (a transfer that would take the disk below
it is refused, and the recorder keeps its footage); a write that fails for a full disk anyway is cut back
to the last whole offset, and a file whose fsync fails is deleted, so nothing half-written is admitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

from aiohttp import StreamReader

from gateway.bays import Bay
from gateway.device_trust import DeviceTrust
from gateway.dock_checks import Offered, file_findings
from gateway.dock_disk import FairDisk, PartialFile, is_disk_full
from gateway.dock_session import DockError, DockSession
from gateway.spool import Arrival, Spool
from protocol import errors, receipts
from protocol.dock import FileAnswer


class DiskReserve:
    """Refuses work that would take the spool's disk below `reserve_bytes` free."""

    def __init__(self, spool_root: Path, reserve_bytes: int, free_bytes: Callable[[], int] | None = None) -> None:
        self.reserve_bytes = reserve_bytes
        self._free_bytes = free_bytes or (lambda: shutil.disk_usage(spool_root).free)

    def check(self, needed: int) -> None:
        free = self._free_bytes()
        if free - needed < self.reserve_bytes:
            raise disk_full(f"{free:,} bytes free, {needed:,} needed, {self.reserve_bytes:,} kept in reserve")


def disk_full(detail: str) -> DockError:
    return DockError(507, errors.DOCK_DISK_FULL, f"the gateway's disk is full ({detail}): this was not taken, the "
                                                 "recorder keeps its footage")


@contextlib.contextmanager
def refused_when_full(doing: str) -> Iterator[None]:
    """A full disk (the OS's or SQLite's report) while `doing` becomes the dock's refusal; what failed left
    nothing admitted (a cut-back write, a deleted file, a spool transaction rolled back)."""
    try:
        yield
    except (OSError, sqlite3.Error) as exc:
        if is_disk_full(exc):
            raise disk_full(f"{doing} failed: {exc}") from exc
        raise


def arrival(device: str, offered: Offered, media_sha256: str | None, size: int, findings: list[str]) -> Arrival:
    m = offered.manifest
    return Arrival(device, m.seq, m.hash.hex(), offered.envelope, media_sha256, size, offered.marked, findings)


class Transfers:
    def __init__(self, spool: Spool, disk: FairDisk, reserve: DiskReserve, trust: DeviceTrust,
                 chunk_bytes: int, read_timeout_s: float) -> None:
        self.spool = spool
        self.disk = disk
        self.reserve = reserve
        self.trust = trust
        self.chunk_bytes = chunk_bytes
        # A recorder pulled out mid-transfer leaves a connection that never closes: give up on it.
        self.read_timeout_s = read_timeout_s
        self._partials: dict[tuple[str, int], PartialFile] = {}  # hash states of files under way
        self._locks: dict[str, asyncio.Lock] = {}  # by device

    def offset(self, device: str, seq: int, size: int) -> int:
        """How much of the file the gateway holds (a partial file longer than the file is begun again)."""
        path = self.spool.incoming_path(device, seq)
        held = path.stat().st_size if path.exists() else 0
        if held > size:
            self._partials.pop((device, seq), None)
            path.unlink()
            return 0
        return held

    def lock(self, device: str) -> asyncio.Lock:
        """One request at a time changes what the gateway holds of a device: a recorder that reconnected
        waits for its old request to let go."""
        return self._locks.setdefault(device, asyncio.Lock())

    async def receive(self, bay: Bay, session: DockSession, seq: int, offset: int, length: int,
                      body: StreamReader) -> FileAnswer:
        async with self.lock(session.device):
            offered = session.plan.get(seq)
            if offered is None or offered.size is None:
                raise DockError(404, errors.DOCK_NOT_PLANNED, f"seq {seq} is not (or no longer) in this session's "
                                                              "plan")
            if offset + length > offered.size:
                raise DockError(400, errors.DOCK_MALFORMED, f"{length} bytes at offset {offset} run past the end "
                                                            f"of the {offered.size}-byte file")
            partial = await self._partial(bay, session.device, seq)
            if offset != partial.offset:
                raise DockError(409, errors.DOCK_OFFSET_MISMATCH,
                                f"the gateway holds {partial.offset} bytes of seq {seq}: send from there",
                                offset=partial.offset)
            self.reserve.check(offered.size - offset)
            with refused_when_full(f"writing seq {seq}"):
                await self._write(bay, partial, length, body)
            if partial.offset < offered.size:
                return FileAnswer(seq, partial.offset, False, None)
            return FileAnswer(seq, offered.size, True, await self._admit(bay, session, offered, partial))

    async def _partial(self, bay: Bay, device: str, seq: int) -> PartialFile:
        partial = self._partials.get((device, seq))
        if partial is None or not partial.matches_disk():
            # After a restart (or a cut write) the hash of what is on disk is rebuilt once.
            partial = await self.disk.run(bay.name, lambda: PartialFile.reopen(self.spool.incoming_path(device, seq)))
            self._partials[(device, seq)] = partial
        return partial

    async def _write(self, bay: Bay, partial: PartialFile, length: int, body: StreamReader) -> None:
        """Write `length` bytes from the link, chunk by chunk, reading the next chunk while one is written;
        stop early, keeping what arrived, if the link drops."""
        link = _Link(body, self.read_timeout_s)
        writing: asyncio.Future[None] | None = None
        remaining = length
        try:
            while remaining:
                want = min(remaining, self.chunk_bytes)
                pieces = await link.read(want)
                if writing is not None:
                    await asyncio.shield(writing)
                    writing = None
                got = sum(len(p) for p in pieces)
                if got:
                    writing = asyncio.ensure_future(self._append(bay, partial, pieces, got))
                    remaining -= got
                if got < want:
                    return  # the link dropped
        finally:
            if writing is not None:
                await asyncio.shield(writing)  # the file and its hash agree before anyone else touches them

    async def _append(self, bay: Bay, partial: PartialFile, pieces: list[memoryview], size: int) -> None:
        await self.disk.run(bay.name, lambda: partial.append(_joined(pieces)))
        bay.received(size)

    async def _admit(self, bay: Bay, session: DockSession, offered: Offered, partial: PartialFile) -> str:
        with refused_when_full(f"fsync of seq {offered.seq}"):
            # Outside the rotation: an fsync waits for the disk, and the disk threads' turns are for writing
            # and hashing (work for the CPU); each bay has at most one file being fsynced.
            sha256 = await asyncio.to_thread(partial.finish)
        findings = [*offered.findings, *file_findings(offered, partial.offset, sha256, self.trust.current())]
        findings = list(dict.fromkeys(findings))
        await self.admit(arrival(session.device, offered, sha256.hex(), partial.offset, findings))
        self._partials.pop((session.device, offered.seq), None)
        del session.plan[offered.seq]
        bay.file_done()
        return findings[0] if findings else receipts.RESULT_OK

    async def admit(self, a: Arrival) -> None:
        """Into the spool (durably: rename, fsync, committed row); a full disk refuses it whole."""
        with refused_when_full(f"admitting seq {a.seq}"):
            await asyncio.to_thread(self.spool.arrive, a)


def _joined(pieces: list[memoryview]) -> bytes | memoryview:
    """A chunk's pieces as one buffer, copied in the disk thread rather than on the event loop, which reads every
    bay's link; the pieces are let go at once, so that the chunk is not held twice while it is written."""
    data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
    pieces.clear()
    return data


class _Link:
    """A file's bytes as they come off a bay's link, in chunks of an exact size (shorter only when the link
    dropped or went silent for `timeout_s`). A chunk is the pieces aiohttp received, not copied into one; a
    piece that runs past the end of a chunk is split (a memoryview) and its rest begins the next."""

    def __init__(self, body: StreamReader, timeout_s: float) -> None:
        self._body = body
        self._timeout_s = timeout_s
        self._rest: memoryview | None = None

    async def read(self, size: int) -> list[memoryview]:
        pieces: list[memoryview] = []
        while size:
            piece = self._rest if self._rest is not None else await self._piece()
            self._rest = None
            if piece is None:
                break
            if len(piece) > size:
                piece, self._rest = piece[:size], piece[size:]
            pieces.append(piece)
            size -= len(piece)
        return pieces

    async def _piece(self) -> memoryview | None:
        """The next piece received, as it is (read(n) would join and copy pieces); None at the end."""
        try:
            while True:
                async with asyncio.timeout(self._timeout_s):
                    data, end_of_http_chunk = await self._body.readchunk()
                if data or not end_of_http_chunk:
                    return memoryview(data) if data else None
        except (ConnectionError, TimeoutError):
            return None
