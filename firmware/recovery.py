"""After a power cut: make what was being written into signed, playable footage.

A segment open at the cut is cut back to its last complete fragment, signed as
a `recovered-segment` with the time it was recorded, and described (original
size and hash, bytes kept) in the signed `recovery` record that follows, which
also names the sequence numbers that were reserved but never signed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import av

from firmware import fmp4


@dataclass(frozen=True)
class OpenSegmentInfo:
    """Written beside a segment when it opens, so a recovery knows when it was recorded."""

    utc_start_ns: int
    time_source: str
    prerecord: bool
    session: str  # the boot session that recorded it, and its monotonic clock at the first frame
    mono_start_ns: int

    def to_bytes(self) -> bytes:
        return json.dumps(self.__dict__).encode()

    @classmethod
    def read(cls, path: Path) -> OpenSegmentInfo | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None


@dataclass(frozen=True)
class Recovered:
    path: Path
    original_size: int
    original_sha256: str
    kept_bytes: int
    fragments: int
    sha256: bytes
    frames: int
    duration_ns: int


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _video_frames(path: Path) -> tuple[int, int]:
    """(frames, duration_ns) of the video stream of a playable file."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        packets = [(p.pts, p.duration) for p in c.demux(stream) if p.pts is not None]
        tb = stream.time_base
    if not packets:
        return 0, 0
    last_pts, last_duration = max(packets)
    span = last_pts + last_duration - min(packets)[0]
    return len(packets), span * tb.numerator * 1_000_000_000 // tb.denominator


def recover_file(path: Path) -> Recovered | None:
    """Cut a power-cut segment back to its intact fragments; None when nothing playable is left."""
    size = path.stat().st_size
    original = _sha256(path)
    with open(path, "rb") as f:
        keep, fragments = fmp4.intact_length(f, size)
    if keep == 0 or fragments == 0:
        return None
    if keep < size:
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    frames, duration = _video_frames(path)
    return Recovered(path, size, original, keep, fragments, bytes.fromhex(_sha256(path)), frames, duration)
