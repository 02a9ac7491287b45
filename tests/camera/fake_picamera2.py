"""A stand-in for the parts of picamera2 that hardware.camera_picamera2 touches.

Only the API surface is faked. The encoding is real: `PiRig` does what
picamera2 0.3.3x does on a Pi 5 (libx264 through PyAV with repeated headers,
microseconds since the first sensor timestamp, AAC from an audio thread
rebased to its first packet and shifted by `audio_sync`), so the driver gets
the same bytes and timestamps it would get there.
"""

from __future__ import annotations

import sys
import types
from fractions import Fraction
from typing import Any

import av
import numpy as np
import pytest

from simulators.camera import beep_signal


class Output:
    def __init__(self, pts: Any = None) -> None:
        self.recording = False

    def start(self) -> None:
        self.recording = True

    def stop(self) -> None:
        self.recording = False


class H264Encoder:
    def __init__(self, bitrate: int | None = None, repeat: bool = True, iperiod: int | None = None,
                 framerate: int | None = None) -> None:
        self.bitrate, self.repeat, self.iperiod, self.framerate = bitrate, repeat, iperiod, framerate
        self.audio = False
        self.audio_input = {"file": "default", "format": "pulse"}
        self.audio_output = {"codec_name": "aac"}
        self.audio_sync = -100_000
        self.firsttimestamp: int | None = None


class MappedArray:
    def __init__(self, request: FakeRequest, stream: str) -> None:
        self.array = request.arrays[stream]

    def __enter__(self) -> MappedArray:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class Picamera2:
    last: Picamera2 | None = None
    adjust_size_to: tuple[int, int] | None = None  # what picamera2's alignment would turn the size into

    def __init__(self, camera_num: int = 0) -> None:
        self.camera_num = camera_num
        self.pre_callback: Any = None
        self.camera_config: dict[str, Any] | None = None
        self.encoder: H264Encoder | None = None
        self.output: Output | None = None
        self.closed = False
        Picamera2.last = self

    def create_video_configuration(self, main: dict[str, Any], controls: dict[str, Any]) -> dict[str, Any]:
        return {"main": dict(main), "controls": dict(controls)}

    def configure(self, config: dict[str, Any]) -> None:
        if Picamera2.adjust_size_to:
            config["main"]["size"] = Picamera2.adjust_size_to
        self.camera_config = config

    def start_recording(self, encoder: H264Encoder, output: Output) -> None:
        self.encoder, self.output = encoder, output
        output.start()

    def stop_recording(self) -> None:
        self.output.stop()

    def close(self) -> None:
        self.closed = True


class FakeRequest:
    def __init__(self, main: np.ndarray) -> None:
        self.arrays = {"main": main}


def install(monkeypatch: pytest.MonkeyPatch) -> None:
    package = types.ModuleType("picamera2")
    package.Picamera2, package.MappedArray = Picamera2, MappedArray
    encoders = types.ModuleType("picamera2.encoders")
    encoders.H264Encoder = H264Encoder
    outputs = types.ModuleType("picamera2.outputs")
    outputs.Output = Output
    monkeypatch.setattr(Picamera2, "last", None)
    monkeypatch.setattr(Picamera2, "adjust_size_to", None)
    for module in (package, encoders, outputs):
        monkeypatch.setitem(sys.modules, module.__name__, module)


class PiRig:
    """Drives the driver's pre_callback and Output as picamera2's encoder threads would."""

    def __init__(self, width: int, height: int, stride: int) -> None:
        self.picam2 = Picamera2.last
        self.encoder, self.output = self.picam2.encoder, self.picam2.output
        self.width, self.height, self.stride = width, height, stride
        self.video = av.CodecContext.create("libx264", "w")
        self.video.width, self.video.height, self.video.pix_fmt = width, height, "yuv420p"
        self.video.time_base = Fraction(1, 1_000_000)
        self.video.gop_size = self.encoder.iperiod
        self.video.options = {"preset": "ultrafast", "tune": "zerolatency"}  # no global header: repeated SPS/PPS
        self._null = av.open("/dev/null", "w", format="null")
        self.audio = self._null.add_stream(**self.encoder.audio_output)
        self._first_audio_pts: int | None = None
        self.burned: list[np.ndarray] = []

    def run(self, frames: int, sensor_start_us: int = 7_000_000) -> None:
        block = 0
        for n in range(frames):
            sensor_us = sensor_start_us + n * 33_333 + n % 3  # a real sensor jitters by microseconds
            self._frame(sensor_us)
            while block * 1024 / 48000 <= n / 30:
                self._audio_block(block)
                block += 1
        for packet in self.video.encode(None):
            self.output.outputframe(bytes(packet), packet.is_keyframe, packet.pts, packet, False)
        for packet in self.audio.encode(None):
            self._audio_packet(packet)

    def _frame(self, sensor_us: int) -> None:
        if self.encoder.firsttimestamp is None:
            self.encoder.firsttimestamp = sensor_us
        main = np.full((self.height * 3 // 2, self.stride), 90, dtype=np.uint8)
        self.picam2.pre_callback(FakeRequest(main))
        self.burned.append(main)
        picture = av.VideoFrame.from_ndarray(unpad(main, self.width, self.height), format="yuv420p")
        picture.pts = sensor_us - self.encoder.firsttimestamp
        for packet in self.video.encode(picture):
            self.output.outputframe(bytes(packet), packet.is_keyframe, packet.pts, packet, False)

    def _audio_block(self, block: int) -> None:
        sound = av.AudioFrame.from_ndarray(beep_signal(block * 1024, 1024).reshape(1, -1), format="fltp",
                                           layout="mono")
        sound.sample_rate, sound.pts = 48000, block * 1024
        for packet in self.audio.encode(sound):
            self._audio_packet(packet)

    def _audio_packet(self, packet: av.Packet) -> None:
        """picamera2's Encoder._handle_audio_packet."""
        time_scale_factor = 1_000_000 * self.audio.codec_context.time_base
        delta = int(self.encoder.audio_sync / time_scale_factor)
        if self._first_audio_pts is None:
            self._first_audio_pts = packet.pts
        packet.pts -= self._first_audio_pts + delta
        packet.dts -= self._first_audio_pts + delta
        if packet.pts >= 0:
            self.output.outputframe(None, True, int(packet.pts * time_scale_factor), packet, True)


def unpad(yuv: np.ndarray, width: int, height: int) -> np.ndarray:
    """A (height * 3 / 2, stride) YUV420 buffer as the packed (height * 3 / 2, width) array PyAV takes."""
    stride = yuv.shape[1]
    y = yuv[:height, :width]
    quarter = height // 4
    u = yuv[height:height + quarter].reshape(height // 2, stride // 2)[:, :width // 2]
    v = yuv[height + quarter:height + 2 * quarter].reshape(height // 2, stride // 2)[:, :width // 2]
    return np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(height * 3 // 2, width)
