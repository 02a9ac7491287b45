"""Reading, decoding and muxing what a MediaSource delivers, the way the recorder will."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest

from hardware.media import AUDIO, VIDEO, EncodedPacket, MediaSource, StreamInfo, add_mux_stream, to_av_packet

FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}


def record(source: MediaSource, timeout: float = 10.0) -> list[EncodedPacket]:
    """Every packet until the source ends."""
    packets = []
    while (packet := source.read(timeout)) is not None:
        packets.append(packet)
    assert source.ended, "read() gave None before the source ended"
    return packets


def of_kind(packets: Sequence[EncodedPacket], kind: str) -> list[EncodedPacket]:
    return [p for p in packets if p.kind == kind]


def info_of(streams: Sequence[StreamInfo], kind: str) -> StreamInfo:
    return next(s for s in streams if s.kind == kind)


def decoder(info: StreamInfo) -> av.CodecContext:
    ctx = av.CodecContext.create(info.codec, "r")
    ctx.extradata = info.extradata
    return ctx


def decode_video(streams: Sequence[StreamInfo], packets: Sequence[EncodedPacket]) -> list[av.VideoFrame]:
    """Decode every video packet; any decoder error fails the test."""
    ctx = decoder(info_of(streams, VIDEO))
    frames = []
    for p in of_kind(packets, VIDEO):
        frames += ctx.decode(av.Packet(p.data))
    return frames + ctx.decode(None)


def decode_audio(streams: Sequence[StreamInfo], packets: Sequence[EncodedPacket]) -> np.ndarray:
    """The decoded sound track, mono float samples, one decoded frame per packet."""
    ctx = decoder(info_of(streams, AUDIO))
    frames = []
    for p in of_kind(packets, AUDIO):
        frames += ctx.decode(av.Packet(p.data))
    frames += ctx.decode(None)
    return np.concatenate([f.to_ndarray()[0] for f in frames])


def luma(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane as encoded (studio range: 16 black, 235 white), signed for differences."""
    return frame.to_ndarray()[:frame.height].astype(np.int16)


def mux(path: Path, streams: Sequence[StreamInfo], packets: Sequence[EncodedPacket]) -> Path:
    """Write packets into a fragmented MP4, as the recorder's segmenter does."""
    with av.open(str(path), "w", format="mp4", options=FRAGMENTED) as out:
        targets = {s.kind: (add_mux_stream(out, s), s.time_base) for s in streams}
        for p in packets:
            out.mux(to_av_packet(p, *targets[p.kind]))
    return path


def ffprobe(path: Path) -> dict[str, dict]:
    """ffprobe's view of each stream (decoding every frame), by codec type."""
    if shutil.which("ffprobe") is None:
        pytest.fail("ffprobe not installed: apt-get install ffmpeg (.ci/run does)")
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True)
    assert out.stderr == "", out.stderr
    probe = json.loads(out.stdout)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    streams["format"] = probe["format"]
    return streams


def dominant_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


class StepClock:
    """A fake monotonic clock: each reading is `step` ns after the previous one."""

    def __init__(self, start: int = 1_000_000_000, step: int = 1000) -> None:
        self.now, self.step = start, step

    def __call__(self) -> int:
        self.now += self.step
        return self.now
