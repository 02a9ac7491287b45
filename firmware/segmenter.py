"""Cut the camera's encoded packets into fragmented MP4 segments.

Segments start only at a video keyframe, so each one plays on its own, and a
packet goes into exactly one segment, so consecutive segments neither lose nor
repeat a frame. Each file is hashed while it is written and fsynced fragment by
fragment (half a second each), which bounds what a power cut can take.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from firmware.durable import HashingWriter
from hardware.media import VIDEO, EncodedPacket, StreamInfo, add_mux_stream, to_av_packet

CONTAINER = "mp4-fragmented"
# frag_discont keeps each packet's own timestamp in the fragment's decode time
# and avoid_negative_ts=disabled stops the muxer from shifting it to zero, so
# segment N+1 starts exactly where segment N ended.
# Fragments of at most half a second (a keyframe also starts one) bound what a
# power cut takes: only the fragment being written is lost.
FRAGMENT_US = 500_000
MUX_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof+frag_discont", "avoid_negative_ts": "disabled",
               "frag_duration": str(FRAGMENT_US)}
NS = 1_000_000_000


class SegmentError(RuntimeError):
    pass


def to_ns(ticks: int, time_base: Fraction) -> int:
    return ticks * time_base.numerator * NS // time_base.denominator


@dataclass(frozen=True)
class SegmentFile:
    path: Path
    sha256: bytes
    size: int
    frames: int
    audio_frames: int
    codecs: list[str]
    start_pts_ns: int  # stream time of the first video frame
    duration_ns: int
    mono_start_ns: int
    mono_end_ns: int
    prerecord: bool


class SegmentWriter:
    """One segment file being written from packets."""

    def __init__(self, path: Path, streams: list[StreamInfo], prerecord: bool) -> None:
        self.path = path
        self.prerecord = prerecord
        self._writer = HashingWriter(path)
        self._out = av.open(self._writer, "w", format="mp4", options=MUX_OPTIONS)
        self._infos = {info.kind: info for info in streams}
        self._streams = {info.kind: add_mux_stream(self._out, info) for info in streams}
        self.frames = self.audio_frames = 0
        self._first: EncodedPacket | None = None
        self._last_video: EncodedPacket | None = None

    def write(self, packet: EncodedPacket) -> None:
        info = self._infos[packet.kind]
        if self._first is None:
            if packet.kind != VIDEO or not packet.keyframe:
                raise SegmentError("a segment must start with a video keyframe")
            self._first = packet
        self._out.mux(to_av_packet(packet, self._streams[packet.kind], info.time_base))
        if packet.kind == VIDEO:
            self.frames += 1
            self._last_video = packet
        else:
            self.audio_frames += 1
        self._writer.sync()  # the muxer writes only when a fragment is complete

    def elapsed_ns(self, packet: EncodedPacket) -> int:
        assert self._first is not None
        return to_ns(packet.pts - self._first.pts, self._infos[VIDEO].time_base)

    def close(self) -> SegmentFile:
        self._out.close()
        self._writer.close()
        first, last = self._first, self._last_video
        if first is None or last is None:
            raise SegmentError("a segment needs at least one video frame")
        tb = self._infos[VIDEO].time_base
        duration = to_ns(last.pts + last.duration - first.pts, tb)
        return SegmentFile(
            path=self.path,
            sha256=self._writer.digest(),
            size=self._writer.size,
            frames=self.frames,
            audio_frames=self.audio_frames,
            codecs=[info.rfc6381 for info in self._infos.values()],
            start_pts_ns=to_ns(first.pts, tb),
            duration_ns=duration,
            mono_start_ns=first.capture_ns,
            mono_end_ns=last.capture_ns + to_ns(last.duration, tb),
            prerecord=self.prerecord,
        )


class Segmenter:
    """Feeds packets into segments of about `segment_ns`, cut at the first keyframe after it."""

    def __init__(self, streams: list[StreamInfo], new_path: Callable[[EncodedPacket], Path],
                 on_segment: Callable[[SegmentFile], None], segment_ns: int = 10 * NS) -> None:
        if not streams or streams[0].kind != VIDEO:
            raise SegmentError("the first stream must be video")
        self.streams = streams
        self.new_path = new_path
        self.on_segment = on_segment
        self.segment_ns = segment_ns
        self.current: SegmentWriter | None = None
        self.halted = False

    def halt(self) -> None:
        """Open no further segment (the owner stopped recording while handling a finished one)."""
        self.halted = True

    def add(self, packet: EncodedPacket, prerecord: bool = False) -> None:
        cut = (packet.kind == VIDEO and packet.keyframe and self.current is not None
               and self.current.elapsed_ns(packet) >= self.segment_ns)
        if cut:
            self.finish()
        if self.halted:
            return
        if self.current is None:
            if packet.kind != VIDEO or not packet.keyframe:
                raise SegmentError("recording must start at a video keyframe")
            self.current = SegmentWriter(self.new_path(packet), self.streams, prerecord)
        self.current.write(packet)

    def finish(self) -> None:
        """Close the open segment, if any, and hand it on."""
        if self.current is not None:
            segment, self.current = self.current.close(), None
            self.on_segment(segment)
