"""Camera and microphone: a source of encoded H.264 and AAC packets.

This is the seam picamera2 already offers (every output receives encoded
frames with a keyframe flag and a timestamp), so the firmware sees the same
thing from a Raspberry Pi camera and from the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

VIDEO = "video"
AUDIO = "audio"


@dataclass(frozen=True)
class StreamInfo:
    """What a muxer needs to write a stream without decoding it."""

    kind: str  # VIDEO or AUDIO
    codec: str  # FFmpeg codec name: "h264", "aac"
    time_base: Fraction  # unit of pts/dts/duration
    extradata: bytes  # H.264: avcC (SPS/PPS); AAC: AudioSpecificConfig
    rfc6381: str  # codec string for manifests, e.g. "avc1.64001f", "mp4a.40.2"
    width: int = 0
    height: int = 0
    frame_rate: Fraction = Fraction(0)
    sample_rate: int = 0
    channels: int = 0


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
        """The video stream first, then audio if there is a microphone."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read(self, timeout: float | None = None) -> EncodedPacket | None:
        """The next packet, or None when none arrived within `timeout` seconds or the source stopped."""
        ...

    def set_overlay(self, lines: list[str]) -> None:
        """Text burned into the video before encoding (time, device serial, officer number)."""
        ...
