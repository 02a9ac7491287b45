"""tus 1.0 resumable uploads for aiohttp: core protocol plus creation, checksum, expiration and termination.

The case server mounts this at ``/api/uploads/`` for evidence ingest from docking gateways.

All state is on disk, so several server processes can share one staging directory and a SIGKILL at any instant
loses nothing that was acknowledged. Per upload ``<id>`` (32 hex characters) the staging directory holds:

- ``<id>.info``: JSON ``{"length", "metadata" (key -> base64 value), "principal", "created_ns", "expires_ns"}``,
  plus ``"result"`` (the completion hook's response headers) once the upload is finalized. It is only ever
  replaced whole (``<id>.info.tmp``, fsync, rename, then fsync of the directory, except when the result is added:
  losing that rename in a crash only means the hook runs again), and the upload exists exactly as long as it does.
- ``<id>.part``: the bytes received so far; the upload offset is its size. Every PATCH fsyncs it before its 204.
- ``<id>.lock``: ``flock``-ed by whichever request or maintenance task is changing the upload. Whoever finds it
  held gets 409 at once instead of waiting, so two PATCHes to one upload never interleave (``flock`` also excludes
  other processes, and other open files in this process); the client re-reads the offset with HEAD and carries on.

An upload is receiving until its offset reaches its length, then complete, then finalized once the completion hook
has run and its headers are stored. A complete upload that is not finalized (the process died, or the hook failed)
is finalized by the next HEAD on it or by :meth:`TusUploads.finalize_pending`.

Retention: an incomplete upload past its ``Upload-Expires`` answers 410, and :meth:`TusUploads.sweep_expired`
deletes it. A finalized upload stays (so a gateway that lost the response can HEAD it for the result headers) until
:meth:`TusUploads.forget` or, after the same expiry, :meth:`TusUploads.sweep_expired`. A complete upload that is not
finalized is never swept: it holds evidence the hook has not yet accepted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from email.utils import formatdate
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,checksum,expiration,termination"
CHECKSUM_ALGORITHMS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "md5": hashlib.md5}

_OFFSET_OCTET_STREAM = "application/offset+octet-stream"
_ID = re.compile(r"[0-9a-f]{32}")
# 19 digits keep every value below 2**63 and int() far from its digit limit.
_UINT = re.compile(r"[0-9]{1,19}")
# How much of a PATCH body to take from aiohttp at a time: aiohttp's default 64 KiB buffer would mean a hundred
# reads, writes and hash updates per 5 MB segment; a larger buffer lets it gather more while we write.
_READ_SIZE = 1 << 20
# Running hashes kept at most (about 200 bytes each); an upload dropped from it is hashed again at completion.
_MAX_HASHES = 4096

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class CompletedUpload:
    """An upload whose last byte is on disk, as handed to the completion hook.

    The hook may run more than once for one upload (see the module docstring), and must leave ``data_path`` in
    place: hard-link or copy it, because the upload's offset is that file's size.
    """

    id: str
    principal: str
    length: int
    metadata: dict[str, bytes]
    data_path: Path
    # The SHA-256 of the whole file when this process received every byte of it (hashed as it arrived, so the
    # hook need not read the file again); None after a restart or when other processes took part of it.
    sha256: str | None = None


@dataclass(frozen=True)
class _Info:
    length: int
    metadata: dict[str, str]  # base64 values, the way Upload-Metadata carries them
    principal: str
    created_ns: int
    expires_ns: int
    result: dict[str, str] | None = None


class _TusError(Exception):
    """A request the server turns down; it becomes a short plain-text response."""

    def __init__(self, status: int, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers: dict[str, str] = {}


class TusUploads:
    """tus uploads staged in ``directory``; see the module docstring for the files and the life cycle."""

    def __init__(
        self,
        directory: Path,
        *,
        max_size: int,
        expires_after_ns: int,
        authorize: Callable[[web.Request], Awaitable[str]],
        on_complete: Callable[[CompletedUpload], Awaitable[dict[str, str]]],
        on_create: Callable[[dict[str, bytes], int], Awaitable[None]] | None = None,
        now_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.directory = directory
        self.max_size = max_size
        self.expires_after_ns = expires_after_ns
        self._authorize = authorize
        self._on_complete = on_complete
        # Called with the metadata and length before an upload is created; raising an HTTPException (a 400)
        # refuses it before a byte is stored, so the client learns at once what the completion hook could not use.
        self._on_create = on_create
        self._now_ns = now_ns
        # upload id -> (offset, SHA-256 of bytes [0, offset) of its .part): kept while every byte so far came
        # through this process. The .part only ever grows by appends under the upload's lock (a discarded chunk
        # is cut back to where it began), so bytes below an offset this process saw never change.
        self._hashes: OrderedDict[str, tuple[int, hashlib._Hash]] = OrderedDict()
        directory.mkdir(parents=True, exist_ok=True)

    def add_routes(self, router: web.UrlDispatcher, prefix: str) -> None:
        """Serve creation (OPTIONS, POST) at ``prefix`` and each upload (HEAD, PATCH, DELETE) below it."""
        if not prefix.endswith("/"):
            raise ValueError(f"tus prefix must end with '/': {prefix!r}")
        for (method, on_upload), handler in self.handlers().items():
            router.add_route(method, prefix + "{upload_id}" if on_upload else prefix, handler)

    def handlers(self) -> dict[tuple[str, bool], _Handler]:
        """The request handlers by (method, whether the route names an upload), for an application that declares
        its routes itself: the upload's route ends in ``{upload_id}``, the other is the prefix."""
        return {
            ("OPTIONS", False): self._options,
            ("POST", False): self._tus(self._post),
            ("HEAD", True): self._tus(self._head),
            ("PATCH", True): self._tus(self._patch),
            ("DELETE", True): self._tus(self._delete),
        }

    def principal_of(self, upload_id: str) -> str | None:
        """The principal that created the upload, or None if there is no such upload."""
        info = self._read_info(upload_id) if _ID.fullmatch(upload_id) else None
        return info.principal if info else None

    async def finalize_pending(self) -> int:
        """Run the completion hook for every complete upload that is not finalized; returns how many succeeded.

        The server calls this at startup. Uploads busy with a request, and hook failures (logged), are skipped:
        HEAD or a later call finalizes those.
        """
        finalized = 0
        for upload_id in self._ids():
            if self._pending(upload_id) is None:
                continue
            try:
                async with self._locked(upload_id):
                    if info := self._pending(upload_id):
                        await self._finalize(upload_id, info)
                        finalized += 1
            except _TusError:
                continue
        return finalized

    async def sweep_expired(self) -> int:
        """Delete expired uploads, incomplete or finalized; returns how many.

        Also clears what a crash during a deletion left behind. Uploads busy with a request are skipped.
        """
        swept = 0
        now = self._now_ns()
        for upload_id in self._ids():
            # Checked before locking too, so that a live upload's PATCH does not meet a lock held by the sweep.
            if not self._sweepable(upload_id, now):
                continue
            try:
                async with self._locked(upload_id):
                    if self._sweepable(upload_id, now):
                        if self._path(upload_id, ".info").exists():
                            swept += 1
                        self._remove(upload_id)
            except _TusError:
                continue
        return swept

    async def forget(self, upload_id: str) -> bool:
        """Delete an upload's staged files, typically once the case server has taken a finalized upload's data.

        Waits for a request working on it to finish. Returns False if there is no such upload. Must not be called
        from the completion hook, which runs while the upload is locked.
        """
        if not _ID.fullmatch(upload_id):
            return False
        async with self._locked(upload_id, wait_s=math.inf):
            if self._read_info(upload_id) is None:
                return False
            self._remove(upload_id)
            return True

    # Handlers

    def _tus(self, handler: _Handler) -> _Handler:
        async def tus_handler(request: web.Request) -> web.StreamResponse:
            try:
                if request.headers.get("Tus-Resumable") != TUS_VERSION:
                    error = _TusError(412, f"this server speaks tus {TUS_VERSION}; send Tus-Resumable: {TUS_VERSION}")
                    error.headers["Tus-Version"] = TUS_VERSION
                    raise error
                response = await handler(request)
            except _TusError as error:
                response = web.Response(
                    status=error.status, reason=error.reason, text=error.message + "\n", headers=error.headers
                )
            except web.HTTPException as error:
                # authorize's 401 and 403 go out unchanged, but still as tus responses.
                error.headers["Tus-Resumable"] = TUS_VERSION
                raise
            response.headers["Tus-Resumable"] = TUS_VERSION
            return response

        return tus_handler

    async def _options(self, request: web.Request) -> web.Response:
        return web.Response(
            status=204,
            headers={
                "Tus-Version": TUS_VERSION,
                "Tus-Extension": TUS_EXTENSIONS,
                "Tus-Max-Size": str(self.max_size),
                "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
            },
        )

    async def _post(self, request: web.Request) -> web.Response:
        principal = await self._authorize(request)
        length = _parse_uint(request.headers.get("Upload-Length"), "Upload-Length")
        if length > self.max_size:
            raise _TusError(413, f"Upload-Length {length} exceeds the maximum upload size of {self.max_size} bytes")
        metadata = _parse_metadata(request.headers.get("Upload-Metadata", ""))
        if self._on_create is not None:
            await self._on_create(metadata, length)
        upload_id = secrets.token_hex(16)
        now = self._now_ns()
        info = _Info(
            length=length,
            metadata={key: base64.b64encode(value).decode("ascii") for key, value in metadata.items()},
            principal=principal,
            created_ns=now,
            expires_ns=now + self.expires_after_ns,
        )
        headers = {"Location": request.url.raw_path + upload_id, "Upload-Expires": _http_date(info.expires_ns)}
        # Nobody else knows the id yet, but sweep_expired may briefly hold the lock of what looks like a leftover.
        async with self._locked(upload_id, wait_s=math.inf):
            # .part before .info: a crash in between leaves a leftover for sweep_expired, not a broken upload.
            self._path(upload_id, ".part").touch(mode=0o600, exist_ok=False)
            await asyncio.to_thread(self._write_info, upload_id, info)
            if length == 0:
                try:
                    info = await self._finalize(upload_id, info)
                except _TusError as error:
                    error.headers.update(headers)  # the upload exists: the client can HEAD it to retry
                    raise
                headers.update(info.result or {})
        return web.Response(status=201, headers=headers)

    async def _head(self, request: web.Request) -> web.Response:
        upload_id, principal = await self._identify(request)
        info, offset = self._load(upload_id, principal)
        if offset == info.length and info.result is None:
            async with self._locked(upload_id):
                # Re-read under the lock: a PATCH may have finalized it, or discarded a chunk we saw on disk.
                info, offset = self._load(upload_id, principal)
                if offset == info.length and info.result is None:
                    info = await self._finalize(upload_id, info)
        headers = self._progress_headers(info, offset)
        headers["Upload-Length"] = str(info.length)
        headers["Cache-Control"] = "no-store"
        if info.metadata:
            headers["Upload-Metadata"] = ",".join(f"{key} {value}".rstrip() for key, value in info.metadata.items())
        return web.Response(status=200, headers=headers)

    async def _patch(self, request: web.Request) -> web.Response:
        upload_id, principal = await self._identify(request)
        if request.content_type != _OFFSET_OCTET_STREAM:
            raise _TusError(415, f"PATCH needs Content-Type: {_OFFSET_OCTET_STREAM}")
        client_offset = _parse_uint(request.headers.get("Upload-Offset"), "Upload-Offset")
        checksum = _parse_checksum(request.headers.get("Upload-Checksum"))
        async with self._locked(upload_id):
            info, offset = self._load(upload_id, principal)
            if client_offset != offset:
                raise _TusError(409, f"Upload-Offset is {client_offset} but the upload's offset is {offset}")
            remaining = info.length - offset
            if request.content_length is not None and request.content_length > remaining:
                raise _TusError(413, f"the body of {request.content_length} bytes exceeds the {remaining} remaining")
            # A complete upload takes no more bytes; its file may be a read-only blob by now (hard link).
            if remaining:
                offset = await self._receive(request, upload_id, offset, remaining, checksum)
            if offset == info.length and info.result is None:
                info = await self._finalize(upload_id, info)
        return web.Response(status=204, headers=self._progress_headers(info, offset))

    async def _delete(self, request: web.Request) -> web.Response:
        upload_id, principal = await self._identify(request)
        async with self._locked(upload_id):
            self._load(upload_id, principal)
            self._remove(upload_id)
        return web.Response(status=204)

    # Steps

    async def _identify(self, request: web.Request) -> tuple[str, str]:
        principal = await self._authorize(request)
        upload_id = request.match_info["upload_id"]
        if not _ID.fullmatch(upload_id):
            raise _TusError(404, "no such upload")
        return upload_id, principal

    def _load(self, upload_id: str, principal: str) -> tuple[_Info, int]:
        info, offset = self._read_info(upload_id), self._offset(upload_id)
        # Someone else's upload looks exactly like a missing one, so ids cannot be probed.
        if info is None or offset is None or info.principal != principal:
            raise _TusError(404, "no such upload")
        if info.result is None and offset < info.length and self._now_ns() >= info.expires_ns:
            raise _TusError(410, "the upload expired before it was complete")
        return info, offset

    async def _receive(
        self,
        request: web.Request,
        upload_id: str,
        offset: int,
        remaining: int,
        checksum: tuple[hashlib._Hash, bytes] | None,
    ) -> int:
        """Append the body to the .part (with the upload locked) and return the new offset."""
        failure: _TusError | None = None
        interrupted = False
        received = 0
        body_hash = self._body_hash(upload_id, offset)
        with open(self._path(upload_id, ".part"), "ab") as part:
            while True:
                try:
                    chunk = await request.content.read(_READ_SIZE)
                except (OSError, HttpProcessingError):
                    # The client went away (or broke the framing) mid-body: tus keeps what arrived.
                    interrupted = True
                    break
                if not chunk:
                    break
                received += len(chunk)
                if received > remaining:
                    failure = _TusError(413, f"the body exceeds the {remaining} bytes remaining; chunk discarded")
                    break
                part.write(chunk)
                if checksum:
                    checksum[0].update(chunk)
                if body_hash:
                    body_hash.update(chunk)
            if checksum and not (failure or interrupted) and checksum[0].digest() != checksum[1]:
                failure = _TusError(460, "Upload-Checksum mismatch; chunk discarded", reason="Checksum Mismatch")
            if failure or (interrupted and checksum):
                # A rejected chunk, or one that can no longer be verified, must leave no trace.
                part.truncate(offset)
            part.flush()
            # fsync can take a while on a busy disk; other uploads keep being served meanwhile.
            await asyncio.to_thread(os.fsync, part.fileno())
            new_offset = os.fstat(part.fileno()).st_size
        # The hash covers the file only if exactly the bytes it took are there (none cut off, none missing).
        if body_hash and not failure and new_offset == offset + received:
            self._hashes[upload_id] = (new_offset, body_hash)
            if len(self._hashes) > _MAX_HASHES:
                self._hashes.popitem(last=False)
        if failure:
            raise failure
        return new_offset

    def _body_hash(self, upload_id: str, offset: int) -> hashlib._Hash | None:
        """The running SHA-256 of the .part's first ``offset`` bytes, to continue with the PATCH's body, or None
        if this process did not see all of them; taken out of ``_hashes`` until the body is on disk."""
        if offset == 0:
            self._hashes.pop(upload_id, None)
            return hashlib.sha256()
        kept = self._hashes.pop(upload_id, None)
        return kept[1] if kept is not None and kept[0] == offset else None

    async def _finalize(self, upload_id: str, info: _Info) -> _Info:
        """Run the completion hook (with the upload locked) and record its headers; returns the finalized info."""
        completed = CompletedUpload(
            id=upload_id,
            principal=info.principal,
            length=info.length,
            metadata={key: base64.b64decode(value) for key, value in info.metadata.items()},
            data_path=self._path(upload_id, ".part"),
            sha256=self._sha256_of(upload_id, info.length),
        )
        try:
            result = dict(await self._on_complete(completed))
        except Exception as exc:
            log.exception("tus completion hook failed for upload %s", upload_id)
            raise _TusError(
                500,
                f"all bytes were received but processing the upload failed ({type(exc).__name__}); HEAD retries it",
            ) from exc
        self._hashes.pop(upload_id, None)
        finalized = replace(info, result=result)
        # Not durable at once (no fsync of the directory): if a crash loses the rename, the upload is complete
        # but not finalized again, and the hook, which must be idempotent anyway, runs once more and gives the
        # same answer. The hook's own result (the index row) is what must be durable, and it is by now.
        await asyncio.to_thread(self._write_info, upload_id, finalized, durable=False)
        return finalized

    def _sha256_of(self, upload_id: str, length: int) -> str | None:
        if length == 0:
            return hashlib.sha256().hexdigest()
        kept = self._hashes.get(upload_id)
        return kept[1].hexdigest() if kept is not None and kept[0] == length else None

    def _pending(self, upload_id: str) -> _Info | None:
        """The info of a complete upload that is not finalized, else None."""
        info = self._read_info(upload_id)
        if info is None or info.result is not None or self._offset(upload_id) != info.length:
            return None
        return info

    def _sweepable(self, upload_id: str, now: int) -> bool:
        """Whether sweep_expired removes the upload: expired and not awaiting its hook, or a leftover."""
        info = self._read_info(upload_id)
        if info is None:
            return True
        return now >= info.expires_ns and (info.result is not None or self._offset(upload_id) != info.length)

    def _progress_headers(self, info: _Info, offset: int) -> dict[str, str]:
        headers = {"Upload-Offset": str(offset)}
        if offset < info.length:
            headers["Upload-Expires"] = _http_date(info.expires_ns)
        headers.update(info.result or {})
        return headers

    # Files

    def _path(self, upload_id: str, suffix: str) -> Path:
        return self.directory / (upload_id + suffix)

    def _ids(self) -> set[str]:
        return {path.name[:32] for path in self.directory.iterdir() if _ID.fullmatch(path.name[:32])}

    def _read_info(self, upload_id: str) -> _Info | None:
        try:
            text = self._path(upload_id, ".info").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        return _Info(**json.loads(text))

    def _offset(self, upload_id: str) -> int | None:
        try:
            return self._path(upload_id, ".part").stat().st_size
        except FileNotFoundError:
            return None

    def _write_info(self, upload_id: str, info: _Info, *, durable: bool = True) -> None:
        """Replace the .info whole. The file is always fsynced before the rename, so that after a crash the .info
        is the old one or the new one, never a torn one; ``durable`` also fsyncs the directory, so that the new
        one survives a crash once this returns. Called in a worker thread, so the event loop never waits on it."""
        temporary = self._path(upload_id, ".info.tmp")
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump({key: value for key, value in asdict(info).items() if value is not None}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._path(upload_id, ".info"))
        if not durable:
            return
        directory = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _remove(self, upload_id: str) -> None:
        # .info first: from then on the upload is gone, whatever a crash leaves behind for sweep_expired.
        # The .lock goes when the lock is released.
        self._hashes.pop(upload_id, None)
        for suffix in (".info", ".part", ".info.tmp"):
            self._path(upload_id, suffix).unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def _locked(self, upload_id: str, wait_s: float = 0.0) -> AsyncIterator[None]:
        lock_path = self._path(upload_id, ".lock")
        deadline = time.monotonic() + wait_s
        while (fd := _try_flock(lock_path)) is None:
            if time.monotonic() >= deadline:
                raise _TusError(409, "the upload is busy with another request; HEAD it and retry")
            await asyncio.sleep(0.01)
        try:
            yield
        finally:
            # Drop a lock file that has no upload (removed, or never existed) while still holding it.
            if not self._path(upload_id, ".info").exists():
                lock_path.unlink(missing_ok=True)
            os.close(fd)


def _try_flock(path: Path) -> int | None:
    """An fd holding ``flock`` on the file now at ``path``, or None if someone else holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        # The previous holder unlinked this file along with its upload; lock whatever is at the path now.
        os.close(fd)


def _parse_uint(value: str | None, header: str) -> int:
    if value is None:
        raise _TusError(400, f"{header} is missing")
    if not _UINT.fullmatch(value):
        raise _TusError(400, f"{header} must be a non-negative decimal integer, not {value[:40]!r}")
    return int(value)


def _parse_metadata(header: str) -> dict[str, bytes]:
    """Upload-Metadata, strictly: comma-separated ``key base64value`` pairs or bare keys, keys unique."""
    metadata: dict[str, bytes] = {}
    if not header.strip(" \t"):
        return metadata  # tuspy sends an empty header when there is no metadata
    for item in header.split(","):
        key, _, value = item.strip(" \t").partition(" ")
        if not key:
            raise _TusError(400, "Upload-Metadata has an empty entry or key")
        if not (key.isascii() and key.isprintable()):
            raise _TusError(400, f"Upload-Metadata key {key[:40]!r} is not printable ASCII")
        if key in metadata:
            raise _TusError(400, f"Upload-Metadata has the key {key!r} twice")
        try:
            metadata[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise _TusError(400, f"Upload-Metadata value of {key!r} is not valid base64") from None
    return metadata


def _parse_checksum(header: str | None) -> tuple[hashlib._Hash, bytes] | None:
    """A fresh hash object and the expected digest from Upload-Checksum, or None without one."""
    if header is None:
        return None
    algorithm, _, encoded = header.partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        supported = ",".join(CHECKSUM_ALGORITHMS)
        raise _TusError(400, f"Upload-Checksum algorithm {algorithm[:40]!r} is not supported (only {supported})")
    hasher = CHECKSUM_ALGORITHMS[algorithm]()
    try:
        digest = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _TusError(400, "Upload-Checksum digest is not valid base64") from None
    if len(digest) != hasher.digest_size:
        raise _TusError(400, f"Upload-Checksum digest is not {hasher.digest_size} bytes long as {algorithm} needs")
    return hasher, digest


def _http_date(ns: int) -> str:
    return formatdate(ns / 1e9, usegmt=True)
