"""Encoded H.264 + AAC packets in capture order, made with PyAV, for segmenter tests."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from hardware.media import AUDIO, VIDEO, EncodedPacket, StreamInfo

FPS = 30
RATE = 48000
VIDEO_TB = Fraction(1, 90000)
AUDIO_TB = Fraction(1, RATE)


def _video_encoder() -> av.CodecContext:
    enc = av.CodecContext.create("libx264", "w")
    enc.width, enc.height, enc.pix_fmt = 160, 120, "yuv420p"
    enc.time_base = VIDEO_TB
    enc.framerate = FPS
    enc.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(FPS), "keyint_min": str(FPS),
                   "sc_threshold": "0"}
    enc.open()
    return enc


def _audio_encoder() -> av.CodecContext:
    enc = av.CodecContext.create("aac", "w")
    enc.sample_rate, enc.layout, enc.format = RATE, "mono", "fltp"
    enc.time_base = AUDIO_TB
    enc.open()
    return enc


def make_packets(seconds: float) -> tuple[list[StreamInfo], list[EncodedPacket]]:
    venc, aenc = _video_encoder(), _audio_encoder()
    frames = int(seconds * FPS)
    packets: list[EncodedPacket] = []
    for i in range(frames):
        img = np.zeros((120, 160, 3), dtype=np.uint8)
        img[:, (i * 4) % 160:(i * 4) % 160 + 8] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i * (90000 // FPS)
        for p in venc.encode(frame):
            packets.append(EncodedPacket(VIDEO, bytes(p), p.pts, p.dts, 90000 // FPS, p.is_keyframe,
                                         p.pts * 1_000_000_000 // 90000))
    samples = frames * RATE // FPS
    for start in range(0, samples - 1023, 1024):
        t = np.arange(start, start + 1024)
        frame = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 1000 * t / RATE)).astype(np.float32)[None],
                                           format="fltp", layout="mono")
        frame.sample_rate, frame.pts = RATE, start
        for p in aenc.encode(frame):
            if p.pts is not None and p.pts >= 0:
                packets.append(EncodedPacket(AUDIO, bytes(p), p.pts, p.dts, 1024, True, p.pts * 1_000_000_000 // RATE))
    packets.sort(key=lambda p: (p.capture_ns, p.kind != VIDEO))
    streams = [
        StreamInfo(VIDEO, "h264", VIDEO_TB, b"", "avc1.42c00c", width=160, height=120, frame_rate=Fraction(FPS)),
        StreamInfo(AUDIO, "aac", AUDIO_TB, bytes(aenc.extradata), "mp4a.40.2", sample_rate=RATE, channels=1),
    ]
    return streams, packets
