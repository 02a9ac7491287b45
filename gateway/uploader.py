"""Upload of the spool to the case server over tus 1.0 (docs/gateway.md, "Upload to the server").

Each receipted segment is one tus upload (tuspy, the project's reference client) at /api/uploads/ with
`Upload-Metadata` carrying its manifest and dock receipt envelopes and an `Upload-Checksum` on every chunk.
The upload's URL is kept in the spool before the first byte goes, so after a restart the upload resumes
where the server's offset says (HEAD); one the server no longer has (expired, swept) starts again, unless
the server says it stored the manifest already. The server's receipt is verified (gateway/server_receipts.py)
before `spool.uploaded` deletes anything; a segment the server refuses (400, 413), or whose receipt fails
the check, is held back in the spool with the reason, for a person. The server away (no connection, 5xx)
means exponential backoff with jitter, shared by all uploads, and a log line per failure.

Why asyncio with threads: tuspy is synchronous, so each segment's transfer runs in a thread of the uploader's
own pool (`concurrency` threads, so that long uploads never take the threads the dock's disk work needs),
while what to send next, backoff and stopping stay in the gateway's event loop, beside the dock and the
station page, and a shutdown cancels them like any other task.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import random
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError
from tusclient.uploader import Uploader as TusUploader

from gateway.server_link import (
    RECEIPT_HEADER,
    Refused,
    ServerAway,
    ServerLink,
    SignInRefused,
    TokenRejected,
    describe,
    receipt_from_header,
)
from gateway.server_receipts import ReceiptRefused, check_server_receipt
from gateway.spool import Spool, Spooled
from protocol import errors
from protocol.receipts import Receipt

log = logging.getLogger("liuhen.gateway.upload")

_ATTEMPTS = 3  # per segment and try: a rejected token and a vanished upload each cost one
# Answers that say nothing against the segment itself: busy (409), checksum mismatch in transit (460),
# rate limits, and the gateway not allowed (403) or a tus version mismatch (412), which a person fixes on
# the server while the gateway keeps trying.
_TRY_AGAIN = frozenset({403, 408, 409, 412, 423, 429, 460})


@dataclass(frozen=True)
class UploadConfig:
    """How the gateway uploads (part of the `[gateway]` section)."""

    concurrency: int = 2  # segments uploaded at once
    chunk_size: int = 4 * 1024**2  # bytes per PATCH, each with its own Upload-Checksum (held in memory)
    backoff_min_s: float = 1.0  # the first wait after a failure reaching the server...
    backoff_max_s: float = 300.0  # ...doubling with each failure in a row up to this; jitter takes up to half
    idle_poll_s: float = 5.0  # with nothing to upload, look again this often (wake() looks at once)

    def __post_init__(self) -> None:
        if not 1 <= self.concurrency <= 16:
            raise ValueError(f"concurrency must be 1-16, not {self.concurrency}")
        if not 64 * 1024 <= self.chunk_size <= 256 * 1024**2:
            raise ValueError(f"chunk_size must be 64 KiB-256 MiB, not {self.chunk_size}")
        if not 0 < self.backoff_min_s <= self.backoff_max_s:
            raise ValueError("backoff needs 0 < backoff_min_s <= backoff_max_s")
        if not self.idle_poll_s > 0:
            raise ValueError("idle_poll_s must be positive")


class _Gone(Exception):
    """The server no longer has the upload (404, 410)."""


class _Stopped(Exception):
    """The uploader is stopping: the transfer ends between chunks and resumes at the next start."""


class Uploader:
    """Uploads what the spool holds, for as long as `run` runs."""

    def __init__(self, spool: Spool, link: ServerLink, config: UploadConfig | None = None, *,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep, rng: random.Random | None = None) -> None:
        self.spool = spool
        self.link = link
        self.config = config or UploadConfig()
        self._sleep = sleep
        self._rng = rng or random.Random()
        self.failures = 0  # failures reaching the server in a row, all uploads together
        self.last_error: str | None = None  # the newest of those failures, for the station page
        self._busy: set[str] = set()
        self._changed = asyncio.Event()  # something was uploaded, released, or arrived (wake)
        self._gate = asyncio.Lock()  # held while waiting out a backoff: no upload starts meanwhile
        self._round = 0  # backoffs waited out so far
        self._stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None

    def wake(self) -> None:
        """There may be new work (the dock attached a receipt); call from the event loop."""
        self._changed.set()

    async def run(self, *, until_empty: bool = False) -> None:
        """Upload until cancelled, or with `until_empty` until nothing is left to upload (what waits for a
        dock receipt or for a person stays)."""
        self._stopping.clear()
        self._pool = ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="liuhen-upload")
        workers = [asyncio.create_task(self._work(until_empty)) for _ in range(self.config.concurrency)]
        try:
            await asyncio.gather(*workers)
        finally:
            self._stopping.set()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            # Transfers in flight end after their current chunk; the next run resumes them.
            await asyncio.to_thread(self._pool.shutdown)

    # Scheduling (in the event loop)

    async def _work(self, until_empty: bool) -> None:
        while True:
            self._changed.clear()
            seg = await self._claim()
            if seg is None:
                if until_empty and not self._busy:
                    self._changed.set()  # the other workers find the same and end too
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), self.config.idle_poll_s)
                continue
            try:
                await self._upload(seg)
            finally:
                self._busy.discard(seg.manifest_hash)
                self._changed.set()

    async def _claim(self) -> Spooled | None:
        """The next segment no other worker has, marked first."""
        # Busy ones are at most concurrency - 1 while a worker claims, so the first `concurrency` hold a free one.
        waiting = await self._in_pool(self.spool.to_upload, self.config.concurrency)
        for seg in waiting:
            if seg.manifest_hash not in self._busy:
                self._busy.add(seg.manifest_hash)
                return seg
        return None

    async def _upload(self, seg: Spooled) -> None:
        async with self._gate:
            pass  # wait out a backoff in progress
        started_in = self._round
        try:
            await self._in_pool(self._job, seg)
        except ServerAway as exc:
            await self._back_off(seg, exc, started_in)
            return
        except Exception as exc:
            # A bug or a failing disk: logged, and waited out like a failure reaching the server, so that it
            # can never spin; the segment stays in the spool.
            log.exception("%s: upload failed unexpectedly", _label(seg))
            await self._back_off(seg, exc, started_in)
            return
        self.failures, self.last_error = 0, None

    async def _back_off(self, seg: Spooled, exc: Exception, started_in: int) -> None:
        """Wait before the next try; a failure of a try that began before the last wait ended is the same
        outage seen by another upload, so it is logged but not waited for again."""
        level = logging.ERROR if isinstance(exc, SignInRefused) else logging.WARNING
        self.last_error = f"{_label(seg)}: {exc}"
        async with self._gate:
            if started_in != self._round:
                log.log(level, "%s: upload failed: %s", _label(seg), exc)
                return
            self.failures += 1
            ceiling = min(self.config.backoff_max_s, self.config.backoff_min_s * 2 ** min(self.failures - 1, 60))
            delay = self._rng.uniform(ceiling / 2, ceiling)
            log.log(level, "%s: upload failed (%d in a row): %s; next try in %.1f s", _label(seg), self.failures,
                    exc, delay)
            await self._sleep(delay)
            self._round += 1

    async def _in_pool(self, fn: Callable[..., Any], *args: Any) -> Any:
        assert self._pool is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # One segment (in an upload thread)

    def _job(self, seg: Spooled) -> None:
        try:
            raw = self._transfer(seg)
            receipt = self._check(seg, raw)
        except (Refused, ReceiptRefused) as exc:
            self.spool.hold_back(seg.manifest_hash, str(exc))
            log.error("%s: held back in the spool for a person: %s", _label(seg), exc)
            return
        self.spool.uploaded(seg.manifest_hash, raw)
        log.info("%s: uploaded, %s at log index %d%s", _label(seg), receipt["status"], receipt["log_index"],
                 f" ({', '.join(receipt['findings'])})" if receipt["findings"] else "")

    def _transfer(self, seg: Spooled) -> bytes:
        """Send the segment; the server's receipt, not yet checked."""
        for _ in range(_ATTEMPTS):
            token = self.link.token()
            try:
                return self._send(seg, token)
            except TokenRejected:
                self.link.drop_token(token)  # expired, or the server forgot it: sign in again
            except _Gone:
                log.info("%s: the server no longer has its upload; starting it again", _label(seg))
                self.spool.set_upload_url(seg.manifest_hash, None)
        raise ServerAway(f"no upload after {_ATTEMPTS} tries: tokens refused or uploads gone")

    def _send(self, seg: Spooled, token: str) -> bytes:
        url = self.spool.upload_url(seg.manifest_hash)
        # Without an upload to resume, the server may still hold the manifest: from an upload whose URL a
        # crash lost, or from another gateway. Its stored receipt is the answer then, without a byte sent.
        if url is None and (stored := self.link.stored_receipt(seg.manifest_hash, token)) is not None:
            return stored
        try:
            upload = self._tus_upload(self.link.tus_client(token), seg, url)
            if upload.url is None:
                upload.set_url(upload.create_url())
                self.spool.set_upload_url(seg.manifest_hash, upload.url)  # before the first byte: resumable
            elif upload.offset:
                log.info("%s: resuming its upload at byte %d of %d", _label(seg), upload.offset, upload.stop_at)
            while upload.offset < upload.stop_at:
                if self._stopping.is_set():
                    raise _Stopped()
                upload.upload_chunk()
        except TusCommunicationError as exc:
            raise _failure(exc) from None
        header = upload.request.response_headers.get(RECEIPT_HEADER.lower()) if upload.request else None
        if header is not None:
            return receipt_from_header(header)
        # No PATCH answered it here (an empty body, or all bytes sent before a restart): HEAD tells.
        raw = self.link.upload_receipt(upload.url, token)
        if raw is None:
            raise _Gone()
        return raw

    def _tus_upload(self, tus: TusClient, seg: Spooled, url: str | None) -> TusUploader:
        """tuspy's uploader for the segment; given the URL of an upload under way, it HEADs it for the offset."""
        try:
            metadata = {"manifest": seg.envelope.decode("ascii"),
                        "dock_receipt": (seg.dock_receipt or b"").decode("ascii")}
        except UnicodeDecodeError:
            raise Refused("its envelopes are not ASCII text, which tus metadata cannot carry") from None
        body: dict[str, Any] = {"file_path": str(seg.path)} if seg.path else {"file_stream": io.BytesIO()}
        return tus.uploader(url=url, metadata=metadata, chunk_size=self.config.chunk_size, upload_checksum=True,
                            **body)

    def _check(self, seg: Spooled, raw: bytes) -> Receipt:
        who = {"gateway": self.link.identity.gateway_id, "server": self.link.config.server_id}
        try:
            return check_server_receipt(raw, seg, trust=self.link.trust(), **who)
        except ReceiptRefused as exc:
            if exc.code != errors.KEY_UNKNOWN:
                raise
        # Signed by a key the list did not hold when it was read: the server may have a new key since.
        return check_server_receipt(raw, seg, trust=self.link.refresh_trust(), **who)


def _failure(exc: TusCommunicationError) -> Exception:
    """What a failed tus request means for the segment."""
    status = exc.status_code
    if status is None:
        return ServerAway(f"tus request failed: {exc}")
    content = exc.response_content
    what = f"tus answered {describe(status, content if isinstance(content, bytes) else b'')}"
    if status >= 500 or status in _TRY_AGAIN:
        return ServerAway(what)
    if status == 401:
        return TokenRejected(what)
    if status in (404, 410):
        return _Gone(what)
    return Refused(f"the server refused it: {what}")


def _label(seg: Spooled) -> str:
    return f"{seg.device} seq {seg.seq} ({seg.manifest_hash[:12]})"
