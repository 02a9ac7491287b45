"""Serving one stored file over HTTP with Range requests (RFC 9110 §14), as players need to seek.

One range per request: a request for several ranges gets the whole file (200), which RFC 9110 §14.2
allows ("a server MAY ignore the Range header field"); so does a Range that is not valid syntax.
The entity tag is the file's SHA-256, a strong validator that never changes for stored footage.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from aiohttp import web

from server import api

# A range-spec (RFC 9110 §14.1.1): int-range "first-[last]" or suffix-range "-length". Twenty digits
# bound the numbers a client can make the server parse.
_SPEC = re.compile(r"([0-9]{1,20})?-([0-9]{1,20})?")
Reader = Callable[[int, int], Iterator[bytes]]  # bytes [start, end) in chunks


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # exclusive


def requested_range(header: str | None, size: int) -> ByteRange | None:
    """The one range `header` asks for, clipped to the file; None for the whole file. Raises the 416
    ApiError when the range lies beyond the file."""
    if header is None:
        return None
    unit, eq, range_set = header.partition("=")
    if not eq or unit.lower() != "bytes":  # range units are case-insensitive (RFC 9110 §14.1)
        return None
    specs = [s.strip() for s in range_set.split(",") if s.strip()]  # recipients accept empty list elements
    match = _SPEC.fullmatch(specs[0]) if len(specs) == 1 else None
    if match is None or match.groups() == (None, None):
        return None
    first, last = (int(g) if g is not None else None for g in match.groups())
    if first is None:  # suffix-range: the last `last` bytes
        assert last is not None
        if last == 0 or size == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(0, size - last), size)
    if last is not None and last < first:
        return None  # invalid, so ignored
    if first >= size:
        raise _unsatisfiable(size)
    return ByteRange(first, size if last is None else min(last + 1, size))


def _unsatisfiable(size: int) -> api.ApiError:
    return api.ApiError(416, "range_not_satisfiable", f"the range lies beyond the file's {size} bytes",
                        {"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"})


def etag(sha256: str) -> str:
    return f'"{sha256}"'


async def serve(request: web.Request, *, size: int, sha256: str, read: Reader, content_type: str,
                filename: str | None = None) -> web.StreamResponse:
    """Answer `request` with the file `read` gives: all of it (200) or its requested range (206).
    `filename` makes it an attachment (a download) rather than something to show in place."""
    tag = etag(sha256)
    if_range = request.headers.get("If-Range")
    # If-Range uses the strong comparison: a weak tag or a date (we send no Last-Modified) never matches.
    wanted = requested_range(request.headers.get("Range"), size) if if_range in (None, tag) else None
    part = wanted or ByteRange(0, size)
    chunks = read(part.start, part.end)
    loop = asyncio.get_running_loop()
    # The first chunk is read before any header is sent, so a missing file is still a clean error.
    chunk = await loop.run_in_executor(None, next, chunks, None)
    response = web.StreamResponse(status=206 if wanted else 200, headers={
        "Content-Type": content_type,
        "Accept-Ranges": "bytes",
        "ETag": tag,
        "Cache-Control": "private, no-store",
        "X-Content-Type-Options": "nosniff",
    })
    if wanted:
        response.headers["Content-Range"] = f"bytes {part.start}-{part.end - 1}/{size}"
    if filename is not None:
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.content_length = part.end - part.start
    await response.prepare(request)
    while chunk is not None:
        await response.write(chunk)
        chunk = await loop.run_in_executor(None, next, chunks, None)
    await response.write_eof()
    return response
