from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import BinaryIO

import av

from firmware import fmp4
from firmware.segmenter import NS, Segmenter, SegmentFile
from hardware.media import VIDEO

from .media_fixture import FPS, make_packets


def _segment(tmp_path: Path, seconds: float, segment_s: int = 2) -> tuple[list[SegmentFile], int]:
    streams, packets = make_packets(seconds)
    done: list[SegmentFile] = []
    counter = iter(range(1000))
    seg = Segmenter(streams, lambda _: tmp_path / f"s{next(counter)}.mp4", done.append, segment_ns=segment_s * NS)
    for p in packets:
        seg.add(p)
    seg.finish()
    return done, sum(p.kind == VIDEO for p in packets)


def test_segments_cut_at_keyframes_without_losing_or_repeating_frames(tmp_path: Path) -> None:
    done, produced = _segment(tmp_path, 7.0)
    assert [s.frames for s in done] == [2 * FPS, 2 * FPS, 2 * FPS, FPS]
    assert sum(s.frames for s in done) == produced
    decoded_pts = []
    for s in done:
        assert hashlib.sha256(s.path.read_bytes()).digest() == s.sha256 and s.path.stat().st_size == s.size
        frames, audio = _decode(s.path)
        assert frames[0].key_frame
        assert len(frames) == s.frames and sum(a.samples for a in audio) == s.audio_frames * 1024
        decoded_pts += [f.pts for f in frames]
    # Timestamps run on across segment boundaries: no gap, no overlap.
    assert decoded_pts == [i * 3000 for i in range(produced)]
    for a, b in itertools.pairwise(done):
        assert a.start_pts_ns + a.duration_ns == b.start_pts_ns


def test_power_cut_keeps_every_complete_fragment(tmp_path: Path) -> None:
    done, _ = _segment(tmp_path, 4.0, segment_s=10)
    [seg] = done
    data = seg.path.read_bytes()
    with open(seg.path, "rb") as f:
        ends = [off + size for kind, off, size in fmp4.boxes(f, len(data)) if kind == b"mdat"]
    assert len(ends) == 8  # half-second fragments
    for cut in (len(data) - 1, len(data) * 2 // 3, len(data) // 3, 200):
        with open(seg.path, "rb") as f:
            keep, fragments = fmp4.intact_length(_Cut(f, cut), cut)
        cut_file = tmp_path / f"cut{cut}.mp4"
        cut_file.write_bytes(data[:keep])
        if keep == 0:
            continue
        frames, _ = _decode(cut_file)
        # Every fragment that was complete before the cut survives; only the one being written is lost.
        assert fragments == sum(end <= cut for end in ends)
        assert len(frames) == fragments * FPS // 2


def _decode(path: Path) -> tuple[list[av.VideoFrame], list[av.AudioFrame]]:
    video, audio = [], []
    with av.open(str(path)) as c:
        for packet in c.demux():
            for frame in packet.decode():
                (video if packet.stream.type == "video" else audio).append(frame)
    return video, audio


class _Cut:
    """A file object that ends at `size`, like a file cut by a power loss."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size = f, size

    def seek(self, pos: int) -> None:
        self.f.seek(pos)

    def read(self, n: int) -> bytes:
        pos = self.f.tell()
        return self.f.read(max(0, min(n, self.size - pos)))
