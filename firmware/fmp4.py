"""Just enough of ISO BMFF to recover a fragmented MP4 cut short by a power loss.

A segment is written as ftyp, moov, then moof+mdat pairs, each pair fsynced
when the muxer emits it. After a power cut the file ends somewhere inside the
last pair; everything up to the end of the last complete mdat that follows a
complete moof is intact and playable.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO

_HEADER = struct.Struct(">I4s")


def boxes(f: BinaryIO, file_size: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, offset, size) of each complete top-level box; stops at the first incomplete one."""
    offset = 0
    while offset + _HEADER.size <= file_size:
        f.seek(offset)
        size, kind = _HEADER.unpack(f.read(_HEADER.size))
        header = _HEADER.size
        if size == 1:  # 64-bit size follows the type
            if offset + 16 > file_size:
                return
            size = struct.unpack(">Q", f.read(8))[0]
            header = 16
        if size < header or offset + size > file_size:
            return
        yield kind, offset, size
        offset += size


def intact_length(f: BinaryIO, file_size: int) -> tuple[int, int]:
    """(bytes to keep, complete fragments) of a possibly cut fragmented MP4.

    Keeps ftyp+moov and every moof that is followed by its complete mdat; 0 when
    not even the header survived.
    """
    keep, fragments, seen_moov, moof_pending = 0, 0, False, False
    for kind, offset, size in boxes(f, file_size):
        if kind == b"moov":
            seen_moov, keep = True, offset + size
        elif kind == b"moof" and seen_moov:
            moof_pending = True
        elif kind == b"mdat" and moof_pending:
            moof_pending, keep, fragments = False, offset + size, fragments + 1
    return (keep if seen_moov else 0), fragments
