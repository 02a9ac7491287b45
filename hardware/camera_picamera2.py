"""Raspberry Pi camera and microphone through picamera2: the real `MediaSource`.

How it works: picamera2 captures the main stream as YUV420; `pre_callback`
burns the overlay into each picture (the same `Overlay` the simulator uses);
picamera2's `H264Encoder` (V4L2 hardware on a Pi 4, libx264 on a Pi 5) encodes
it, and with `encoder.audio = True` its audio thread encodes the microphone
to AAC. Every encoded packet reaches `outputframe()` of an `Output` subclass,
which hands it to `PacketConverter`: that part is plain Python and does all
the work (parameter sets, timestamps, capture order, the queue).

The encoder runs with `repeat=True`: both encoders then put SPS/PPS in front
of every keyframe, which is where the V4L2 encoder's parameter sets come from
at all (it has no extradata) and keeps every segment decodable on its own.
`streams()` therefore waits for the first keyframe (and the first audio
packet); packets before the first keyframe cannot be decoded and are counted
in `packets_skipped`, not delivered.

Timestamps: picamera2 gives microseconds since the first frame's sensor
timestamp (`encoder.firsttimestamp`, CLOCK_MONOTONIC microseconds), for audio
shifted by `encoder.audio_sync`. Video pts = that in 1/90000, audio pts in
1/48000 (exact for AAC packets: picamera2 derives the microseconds from
sample counts), capture_ns = (firsttimestamp + timestamp) x 1000. Packet
durations are nominal (one frame, 1024 samples). The two encoder threads
are merged into capture order with a bounded lag, so a silent microphone
cannot hold video back for more than `max_lag_s`.

NOT RUN ON REAL HARDWARE. Written against picamera2 0.3.3x's source and
tested here with a fake `picamera2` module fed by real libx264/AAC packets.
Unverified on a Pi: the sensor clock being CLOCK_MONOTONIC, the YUV420
stride layout from MappedArray, the V4L2 encoder's keyframe flags and inline
SPS/PPS, AAC at 48 kHz mono through `audio_output`, microphone input through
ALSA with PyPI's PyAV, and the audio/video offset (picamera2's audio_sync).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from hardware.media import (
    AAC_FRAME_SAMPLES,
    AUDIO,
    AUDIO_SAMPLE_RATE,
    SECOND_NS,
    VIDEO,
    VIDEO_TIME_BASE,
    EncodedPacket,
    Interleaver,
    Overlay,
    PacketQueue,
    StreamInfo,
    aac_codec_string,
    avc_codec_string,
    parameter_sets,
)

MAIN_FORMAT = "YUV420"  # both encoders take it directly, and the overlay burns into it in place
AUDIO_BIT_RATE = 64_000
# picamera2 defaults to PulseAudio, which PyPI's PyAV wheels cannot open (they have ALSA). ALSA's
# "default" must then be the microphone (docs/recorder.md); "plug" devices convert to 48 kHz mono.
DEFAULT_AUDIO_INPUT: dict[str, Any] = {"file": "default", "format": "alsa",
                                       "options": {"sample_rate": "48000", "channels": "1"}}


def us_to_ticks(us: int, rate: int) -> int:
    """Microseconds to ticks of 1/rate, rounded: exact inverse of picamera2's int(ticks * 1e6 / rate)."""
    return (us * rate + 500_000) // 1_000_000


class PacketConverter:
    """Turns picamera2's encoded frames into `EncodedPacket`s, in capture order, into a `PacketQueue`.

    Called from picamera2's video encoder thread and its audio thread at once,
    hence the lock.
    """

    def __init__(self, queue: PacketQueue, *, width: int, height: int, fps: Fraction, audio: bool,
                 epoch_us: Callable[[], int], max_lag_s: float = 0.5) -> None:
        self.frames_produced = 0
        self.audio_frames_produced = 0
        self.packets_skipped = 0
        self._queue = queue
        self._size = (width, height)
        self._fps = fps
        self._audio = audio
        self._epoch_us = epoch_us
        time_bases = {VIDEO: VIDEO_TIME_BASE} | ({AUDIO: Fraction(1, AUDIO_SAMPLE_RATE)} if audio else {})
        self._interleaver = Interleaver(time_bases, max_lag_ns=int(max_lag_s * SECOND_NS))
        self._lock = threading.Lock()
        self._video_info: StreamInfo | None = None
        self._audio_info: StreamInfo | None = None
        self._known = threading.Event()

    def video(self, frame: bytes, keyframe: bool, timestamp_us: int) -> None:
        with self._lock:
            if self._video_info is None:
                if not keyframe:
                    self.packets_skipped += 1
                    return
                self._video_info = self._describe_video(frame)
                self._note_known()
            pts = us_to_ticks(timestamp_us, VIDEO_TIME_BASE.denominator)
            duration = int(1 / (self._fps * VIDEO_TIME_BASE))
            self._push(EncodedPacket(VIDEO, bytes(frame), pts, pts, duration, keyframe,
                                     self._capture_ns(timestamp_us)))

    def audio(self, packet: Any, timestamp_us: int) -> None:
        """`packet` is the av.Packet from picamera2's audio encoder stream."""
        with self._lock:
            if self._video_info is None:  # the recording starts at the first keyframe
                self.packets_skipped += 1
                return
            if self._audio_info is None:
                self._audio_info = _describe_audio(packet.stream.codec_context)
                self._note_known()
            pts = us_to_ticks(timestamp_us, self._audio_info.sample_rate)
            self._push(EncodedPacket(AUDIO, bytes(packet), pts, pts, AAC_FRAME_SAMPLES, True,
                                     self._capture_ns(timestamp_us)))

    def finish(self) -> None:
        """After the encoders stopped: deliver what the interleaver holds and end the stream."""
        with self._lock:
            self._deliver(self._interleaver.flush())
        self._queue.close()

    def streams(self, timeout: float | None) -> list[StreamInfo]:
        if not self._known.wait(timeout):
            raise TimeoutError("no keyframe (or no audio) from the camera yet")
        return [info for info in (self._video_info, self._audio_info) if info is not None]

    def _note_known(self) -> None:
        if self._video_info is not None and (self._audio_info is not None or not self._audio):
            self._known.set()

    def _describe_video(self, keyframe: bytes) -> StreamInfo:
        extradata = parameter_sets(keyframe)
        if not extradata:
            raise RuntimeError("keyframe without SPS/PPS: the H.264 encoder must run with repeat=True")
        width, height = self._size
        return StreamInfo(kind=VIDEO, codec="h264", time_base=VIDEO_TIME_BASE, extradata=extradata,
                          rfc6381=avc_codec_string(extradata), width=width, height=height, frame_rate=self._fps)

    def _capture_ns(self, timestamp_us: int) -> int:
        return (self._epoch_us() + timestamp_us) * 1000

    def _push(self, packet: EncodedPacket) -> None:
        self._deliver(self._interleaver.push(packet))

    def _deliver(self, packets: list[EncodedPacket]) -> None:
        for packet in packets:
            self._queue.put(packet)
            if packet.kind == VIDEO:
                self.frames_produced += 1
            else:
                self.audio_frames_produced += 1


def _describe_audio(codec_context: Any) -> StreamInfo:
    if codec_context.sample_rate != AUDIO_SAMPLE_RATE or codec_context.layout.nb_channels != 1:
        raise RuntimeError(f"audio is {codec_context.sample_rate} Hz x {codec_context.layout.nb_channels}: "
                           f"expected {AUDIO_SAMPLE_RATE} Hz mono (see audio_output)")
    extradata = bytes(codec_context.extradata or b"")
    return StreamInfo(kind=AUDIO, codec="aac", time_base=Fraction(1, AUDIO_SAMPLE_RATE), extradata=extradata,
                      rfc6381=aac_codec_string(extradata), sample_rate=AUDIO_SAMPLE_RATE, channels=1)


def _output_class() -> type:
    """picamera2's Output base, subclassed only once picamera2 can be imported."""
    from picamera2.outputs import Output

    class PacketOutput(Output):
        def __init__(self, converter: PacketConverter) -> None:
            super().__init__()
            self.converter = converter

        def outputframe(self, frame: bytes | None, keyframe: bool = True, timestamp: int | None = None,
                        packet: Any = None, audio: bool = False) -> None:
            if audio:
                self.converter.audio(packet, timestamp)
            else:
                self.converter.video(frame, keyframe, timestamp)

    return PacketOutput


class Picamera2Camera:
    """The Raspberry Pi camera + microphone as a `MediaSource` (see the module doc)."""

    def __init__(self, *, width: int = 1280, height: int = 720, fps: int = 30, keyframe_seconds: float = 1,
                 bitrate: int | None = None, audio: bool = True, audio_input: dict[str, Any] | None = None,
                 camera_num: int = 0, queue_size: int = 512, max_lag_s: float = 0.5) -> None:
        """`bitrate`: H.264 bits per second, None for picamera2's choice from the size.
        `audio_input`: keyword arguments of av.open() for the microphone (picamera2's encoder.audio_input),
        e.g. {"file": "plughw:CARD=Device,DEV=0", "format": "alsa"}; None for DEFAULT_AUDIO_INPUT."""
        self.width, self.height, self.fps = width, height, Fraction(fps)
        self.gop = max(1, round(fps * keyframe_seconds))
        self.bitrate = bitrate
        self.audio = audio
        self.audio_input = DEFAULT_AUDIO_INPUT if audio_input is None else audio_input
        self.camera_num = camera_num
        self._queue = PacketQueue(queue_size)
        self._max_lag_s = max_lag_s
        self._overlay = Overlay(width, height)
        self._picam2: Any = None
        self._encoder: Any = None
        self.converter: PacketConverter | None = None

    def start(self) -> None:
        from picamera2 import Picamera2
        from picamera2.encoders import H264Encoder

        picam2 = Picamera2(self.camera_num)
        frame_us = round(Fraction(1_000_000) / self.fps)
        picam2.configure(picam2.create_video_configuration(
            main={"size": (self.width, self.height), "format": MAIN_FORMAT},
            controls={"FrameDurationLimits": (frame_us, frame_us)}))
        actual = tuple(picam2.camera_config["main"]["size"])
        if actual != (self.width, self.height):
            picam2.close()
            # The overlay and StreamInfo are laid out for the requested size.
            raise ValueError(f"picamera2 adjusted {self.width}x{self.height} to {actual[0]}x{actual[1]}: "
                             "ask for that size")
        picam2.pre_callback = self.burn_overlay
        encoder = H264Encoder(bitrate=self.bitrate, repeat=True, iperiod=self.gop, framerate=int(self.fps))
        encoder.audio = self.audio
        if self.audio:
            encoder.audio_input = self.audio_input
            encoder.audio_output = {"codec_name": "aac", "rate": AUDIO_SAMPLE_RATE, "layout": "mono",
                                    "bit_rate": AUDIO_BIT_RATE}
        self.converter = PacketConverter(self._queue, width=self.width, height=self.height, fps=self.fps,
                                         audio=self.audio, epoch_us=lambda: encoder.firsttimestamp,
                                         max_lag_s=self._max_lag_s)
        self._picam2, self._encoder = picam2, encoder
        picam2.start_recording(encoder, _output_class()(self.converter))

    def stop(self) -> None:
        self._queue.release()  # a reader that has gone must not block picamera2's threads
        try:
            if self._picam2 is not None:
                self._picam2.stop_recording()  # the encoders flush their last packets to the output here
                self._picam2.close()
                self._picam2 = None
        finally:
            if self.converter is not None:
                self.converter.finish()
            else:
                self._queue.close()

    def streams(self, timeout: float | None = 5.0) -> list[StreamInfo]:
        if self.converter is None:
            raise RuntimeError("start() the camera first")
        return self.converter.streams(timeout)

    def read(self, timeout: float | None = None) -> EncodedPacket | None:
        return self._queue.get(timeout)

    @property
    def ended(self) -> bool:
        return self._queue.ended

    @property
    def frames_produced(self) -> int:
        return self.converter.frames_produced if self.converter else 0

    @property
    def audio_frames_produced(self) -> int:
        return self.converter.audio_frames_produced if self.converter else 0

    def set_overlay(self, lines: list[str]) -> None:
        self._overlay.set_lines(lines)

    def burn_overlay(self, request: Any) -> None:
        """picamera2's pre_callback: runs on each captured request before it is encoded."""
        from picamera2 import MappedArray

        with MappedArray(request, "main") as mapped:
            self._overlay.burn(mapped.array)
