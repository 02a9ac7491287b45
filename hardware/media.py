"""Camera and microphone: a source of encoded H.264 and AAC packets.

This is the seam picamera2 already offers (every output receives encoded
frames with a keyframe flag and a timestamp), so the firmware sees the same
thing from a Raspberry Pi camera and from the simulator.

Conventions every source keeps:

- Video: H.264 Annex B (start codes), no B-frames (pts == dts), time base
  1/90000. Keyframes are IDR pictures that carry the SPS and PPS in front
  (picamera2's repeat=True), so any keyframe can start a segment, even for a
  muxer that takes the parameter sets from its first packet.
  `StreamInfo.extradata` holds the same SPS and PPS, also in Annex B form:
  FFmpeg's mp4 muxer turns it into the avcC box and the packets into
  length-prefixed samples itself (`add_mux_stream` below hands it over).
- Audio: AAC-LC, 48 kHz mono, 1024 samples a packet, time base 1/48000,
  extradata the AudioSpecificConfig.
- `read()` delivers packets of both streams in capture order: by media time
  (pts x time base), video first on a tie; `capture_ns` grows in that order.

Besides the interface, this module holds what both sources share: H.264/AAC
header parsing, the bounded packet queue, the interleaver, the overlay
renderer, and the one PyAV call sequence that muxes these packets. numpy,
Pillow and PyAV are imported inside the functions that use them, so the
interface imports on any machine.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np
    from av.container import OutputContainer
    from av.packet import Packet
    from av.stream import Stream

VIDEO = "video"
AUDIO = "audio"

VIDEO_TIME_BASE = Fraction(1, 90000)
AUDIO_SAMPLE_RATE = 48000
AUDIO_TIME_BASE = Fraction(1, AUDIO_SAMPLE_RATE)
AAC_FRAME_SAMPLES = 1024
SECOND_NS = 1_000_000_000

START_CODE = b"\x00\x00\x01"
NAL_SPS = 7
NAL_PPS = 8


@dataclass(frozen=True)
class StreamInfo:
    """What a muxer needs to write a stream without decoding it."""

    kind: str  # VIDEO or AUDIO
    codec: str  # FFmpeg codec name: "h264", "aac"
    time_base: Fraction  # unit of pts/dts/duration
    extradata: bytes  # H.264: SPS+PPS in Annex B form; AAC: AudioSpecificConfig
    rfc6381: str  # codec string for manifests, e.g. "avc1.42c01e", "mp4a.40.2"
    width: int = 0
    height: int = 0
    frame_rate: Fraction = Fraction(0)
    sample_rate: int = 0
    channels: int = 0

    def to_ns(self, ticks: int) -> int:
        """A pts, dts or duration of this stream in nanoseconds (floor)."""
        return ticks * self.time_base.numerator * SECOND_NS // self.time_base.denominator


@dataclass(frozen=True)
class EncodedPacket:
    kind: str  # VIDEO or AUDIO
    data: bytes
    pts: int  # in the stream's time_base
    dts: int
    duration: int
    keyframe: bool
    capture_ns: int  # monotonic time of capture (CLOCK_MONOTONIC), for ordering and pre-record


class MediaSource(Protocol):
    """A camera + microphone that delivers encoded packets in capture order."""

    def streams(self) -> list[StreamInfo]:
        """The video stream first, then audio if there is a microphone.

        Call after start(): a real camera knows its parameter sets only from
        its first keyframe, so this may block until that arrives.
        """
        ...

    def start(self) -> None: ...

    def stop(self) -> None:
        """Stop capturing. Packets already produced stay readable."""
        ...

    def read(self, timeout: float | None = None) -> EncodedPacket | None:
        """The next packet, or None when none arrived within `timeout` seconds or the source has ended."""
        ...

    @property
    def ended(self) -> bool:
        """True once the source has stopped and every packet it produced has been read."""
        ...

    def set_overlay(self, lines: list[str]) -> None:
        """Text burned into the video before encoding (time, device serial, officer number)."""
        ...


# --- H.264 and AAC headers -------------------------------------------------------------------


def nal_units(annexb: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without their start codes."""
    units = []
    at = annexb.find(START_CODE)
    while at >= 0:
        following = annexb.find(START_CODE, at + 3)
        end = len(annexb) if following < 0 else following
        # A NAL unit never ends in a zero byte: zeros there are a 4-byte start code's or trailing_zero_8bits.
        units.append(annexb[at + 3:end].rstrip(b"\x00"))
        at = following
    return units


def parameter_sets(annexb: bytes) -> bytes:
    """The SPS and PPS units of an access unit, in Annex B form; b"" when it has none."""
    units = [u for u in nal_units(annexb) if u and u[0] & 0x1F in (NAL_SPS, NAL_PPS)]
    return b"".join(b"\x00\x00\x00\x01" + u for u in units)


def avc_codec_string(extradata: bytes) -> str:
    """RFC 6381 codec string from the SPS: avc1.PPCCLL (profile, constraint flags, level)."""
    sps = next((u for u in nal_units(extradata) if u and u[0] & 0x1F == NAL_SPS), None)
    if sps is None or len(sps) < 4:
        raise ValueError("no SPS in H.264 extradata")
    return f"avc1.{sps[1:4].hex()}"


def aac_codec_string(audio_specific_config: bytes) -> str:
    """RFC 6381 codec string: mp4a.40.<audio object type> (2 = AAC-LC)."""
    if not audio_specific_config:
        raise ValueError("empty AudioSpecificConfig")
    return f"mp4a.40.{audio_specific_config[0] >> 3}"


# --- Delivery: bounded queue and capture-order interleaving ------------------------------------


class PacketQueue:
    """A bounded FIFO from a capture thread to the reader.

    A full queue makes the producer wait (as a slow output stalls a real
    encoder): packets are never dropped. Once `release()` is called the
    producer no longer waits, so stopping cannot deadlock on a reader that has
    gone; `close()` marks the end of the stream.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("queue size must be at least 1")
        self._maxsize = maxsize
        self._items: deque[EncodedPacket] = deque()
        self._cond = threading.Condition()
        self._released = False
        self._closed = False

    def put(self, packet: EncodedPacket) -> None:
        with self._cond:
            while len(self._items) >= self._maxsize and not self._released:
                self._cond.wait()
            self._items.append(packet)
            self._cond.notify_all()

    def get(self, timeout: float | None = None) -> EncodedPacket | None:
        with self._cond:
            self._cond.wait_for(lambda: self._items or self._closed, timeout)
            if not self._items:
                return None
            packet = self._items.popleft()
            self._cond.notify_all()
            return packet

    def release(self) -> None:
        with self._cond:
            self._released = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._released = self._closed = True
            self._cond.notify_all()

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._closed and not self._items


class Interleaver:
    """Merges per-stream packet sequences (each in pts order) into one sequence in media-time order.

    A packet is released once every stream has a packet at or after it. With
    `max_lag_ns`, a packet is also released when the newest packet seen is
    that much later, so a silent stream (a microphone that stopped) cannot
    hold the others back forever.
    """

    def __init__(self, time_bases: Mapping[str, Fraction], max_lag_ns: int | None = None) -> None:
        # Dict order is the tie-break order: the first kind (video) wins a tie.
        self._time_bases = dict(time_bases)
        self._pending: dict[str, deque[tuple[int, EncodedPacket]]] = {kind: deque() for kind in time_bases}
        self._max_lag_ns = max_lag_ns
        self._newest_ns = 0

    def push(self, packet: EncodedPacket) -> list[EncodedPacket]:
        tb = self._time_bases[packet.kind]
        at_ns = packet.pts * tb.numerator * SECOND_NS // tb.denominator
        self._pending[packet.kind].append((at_ns, packet))
        self._newest_ns = max(self._newest_ns, at_ns)
        return self._release(flushing=False)

    def flush(self) -> list[EncodedPacket]:
        return self._release(flushing=True)

    def _release(self, flushing: bool) -> list[EncodedPacket]:
        ready = []
        while True:
            heads = [(q[0][0], rank, kind) for rank, (kind, q) in enumerate(self._pending.items()) if q]
            if not heads:
                return ready
            at_ns, _, kind = min(heads)
            complete = len(heads) == len(self._pending)
            stale = self._max_lag_ns is not None and at_ns <= self._newest_ns - self._max_lag_ns
            if not (complete or stale or flushing):
                return ready
            ready.append(self._pending[kind].popleft()[1])


# --- Overlay --------------------------------------------------------------------------------


class Overlay:
    """Text lines burned into YUV 4:2:0 pictures: white text on an opaque black box, top left.

    Both sources burn the same pixels, so the simulator's pictures show what a
    recorder's will. The text is rendered once per `set_lines` (about once a
    second, when the time changes); burning a frame is two array copies.
    Needs numpy and Pillow >= 10.1 (for its built-in scalable font, which has
    Latin glyphs only: the overlay carries times, serials and officer numbers).
    """

    def __init__(self, width: int, height: int, lines: Sequence[str] = ()) -> None:
        from PIL import ImageFont

        if width % 2 or height % 4:
            raise ValueError("YUV 4:2:0 overlay needs an even width and a height divisible by 4")
        self.width, self.height = width, height
        self._font = ImageFont.load_default(size=max(10, height // 24))
        self._luma: np.ndarray | None = None
        self.set_lines(lines)

    def set_lines(self, lines: Iterable[str]) -> None:
        """Replace the text; safe to call from any thread (the next burned frame shows it)."""
        self._luma = self._render([str(line) for line in lines])

    def burn(self, yuv: np.ndarray) -> None:
        """Burn the current text into a yuv420p picture in place.

        `yuv` is (height * 3 / 2, stride) bytes: the Y plane, then U and V with
        half the stride, as PyAV's yuv420p arrays and picamera2's YUV420
        MappedArray lay them out (stride >= width; padding is left alone).
        """
        luma = self._luma  # one read: set_lines may swap it meanwhile
        if luma is None:
            return
        h, w = luma.shape
        yuv[:h, :w] = luma
        for plane in _chroma_planes(yuv, self.height):
            plane[:h // 2, :w // 2] = 128  # no colour inside the box

    def _render(self, lines: list[str]) -> np.ndarray | None:
        import numpy as np
        from PIL import Image, ImageDraw

        if not any(lines):
            return None
        ascent, descent = self._font.getmetrics()
        pad, step = max(2, ascent // 4), ascent + descent
        text_w = max(int(self._font.getlength(line)) for line in lines)
        # Even sizes keep the box on the 2x2 chroma grid.
        w = min(self.width, _even(text_w + 2 * pad))
        h = min(self.height, _even(step * len(lines) + 2 * pad))
        mask = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(mask)
        for i, line in enumerate(lines):
            draw.text((pad, pad + i * step), line, fill=255, font=self._font)
        # Studio range: black box at Y=16, text up to Y=235.
        return (16 + np.asarray(mask, dtype=np.uint16) * 219 // 255).astype(np.uint8)


def _even(n: int) -> int:
    return n + (n & 1)


def _chroma_planes(yuv: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Views (not copies) of the U and V planes of a (height * 3 / 2, stride) yuv420p array."""
    stride = yuv.shape[1]
    quarter = height // 4
    planes = []
    for first in (height, height + quarter):
        plane = yuv[first:first + quarter].view()
        plane.shape = (height // 2, stride // 2)  # raises rather than silently copying
        planes.append(plane)
    return planes[0], planes[1]


# --- Muxing ---------------------------------------------------------------------------------


def add_mux_stream(container: OutputContainer, info: StreamInfo) -> Stream:
    """An output stream that writes `info`'s packets as they are, with its extradata.

    PyAV sets codec parameters such as extradata only through a codec context;
    a stream from `add_stream` would open a fresh encoder at the header and
    replace them, and one from `add_mux_stream` has no context to set them on.
    A stream copied from a template keeps an unopened context whose fields go
    into the header, so the template is made in a scratch container.
    """
    import av

    scratch = av.open(io.BytesIO(), "w", format=container.format.name)
    try:
        if info.kind == VIDEO:
            template = scratch.add_stream(info.codec, rate=info.frame_rate, width=info.width, height=info.height)
        else:
            template = scratch.add_stream(info.codec, rate=info.sample_rate,
                                          layout="mono" if info.channels == 1 else "stereo")
        stream = container.add_stream_from_template(template, opaque=True)
    finally:
        scratch.close()
    stream.codec_context.extradata = info.extradata
    stream.time_base = info.time_base
    return stream


def to_av_packet(packet: EncodedPacket, stream: Stream, time_base: Fraction) -> Packet:
    """The PyAV packet to mux `packet` into `stream` (made by add_mux_stream)."""
    import av

    out = av.Packet(packet.data)
    out.pts, out.dts, out.duration = packet.pts, packet.dts, packet.duration
    out.time_base = time_base
    out.is_keyframe = packet.keyframe
    out.stream = stream
    return out
