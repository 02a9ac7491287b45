"""Simulated camera and microphone: real H.264 and AAC from a synthetic scene.

`SimulatedCamera` implements `hardware.media.MediaSource` with PyAV: libx264
(ultrafast, zerolatency, IDR every `keyframe_seconds`, SPS/PPS in extradata
and repeated in front of every keyframe) and
FFmpeg's AAC encoder (48 kHz mono, 32 kbit/s, its fast coder).

What a person sees and hears:
- a colour gradient with a bright bar sweeping left to right every 2 s,
- the frame number, bottom left,
- a bright square, bottom right, during each beep,
- the overlay lines (set_overlay) burned in top left, as on a recorder,
- a 100 ms beep every second: 1 kHz, or 2 kHz at every 10 s boundary.

Timeline (exact and deterministic):
- video frame N has pts N * 90000 / fps in 1/90000 (fps must divide 90000
  exactly, e.g. 30, 25, 15 or 30000/1001) and is shown at N / fps seconds;
- audio packet K has pts 1024 * K in 1/48000 and holds samples
  [1024 K, 1024 K + 1024) of the sound track. Packet 0 is the AAC encoder's
  priming (it decodes to silence): the microphone's first sample is heard at
  1024 / 48000 s, and from there audio and video share one clock, so a beep at
  t seconds sits under video frame t * fps;
- with `stop_at_frames=N` the recording is video frames 0..N-1 and the audio
  packets that start before N / fps seconds (ceil(N / fps * 48000 / 1024) of
  them); every produced packet is delivered.

Capture: the scene is "captured" frame by frame and 1024-sample block by
block in timeline order. Each capture reads the injectable monotonic clock
once; that reading is the `capture_ns` of the packets holding it. With
`speed` set, capture t waits until clock() >= start + t / speed; with
`speed=None` nothing waits. A reader that stalls stalls the camera (the queue
is bounded) rather than losing frames, so `frames_produced` always equals the
video packets a reader gets.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from fractions import Fraction

import av
import numpy as np
from av.codec.context import CodecContext, Flags
from PIL import Image, ImageDraw, ImageFont

from hardware.media import (
    AAC_FRAME_SAMPLES,
    AUDIO,
    AUDIO_SAMPLE_RATE,
    AUDIO_TIME_BASE,
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
)

BEEP_SECONDS = Fraction(1, 10)
BEEP_HZ = 1000
MARK_HZ = 2000  # the beep at every 10 s boundary
MARK_EVERY_S = 10
BEEP_AMPLITUDE = 0.5
RAMP_SAMPLES = 240  # 5 ms fade in and out: a hard edge clicks
SWEEP_SECONDS = 2
AUDIO_BIT_RATE = 32_000  # mono speech-grade, as recorders use

Clock = Callable[[], int]


class SimulatedCamera:
    """A camera + microphone producing real H.264/AAC packets from a test scene (see the module doc)."""

    def __init__(self, *, width: int = 320, height: int = 240, fps: int | Fraction = 30,
                 keyframe_seconds: float | Fraction = 1, speed: float | None = 1.0, audio: bool = True,
                 stop_at_frames: int | None = None, clock: Clock = time.monotonic_ns,
                 queue_size: int = 256, threads: int = 1) -> None:
        """`speed`: 1.0 real time, 4.0 four times faster, None as fast as possible.

        `threads`: libx264 slice threads. Fixed, not "auto", so that the
        bitstream is the same on every machine; one is the fastest on two cores
        (the reader and the GIL take the other).
        """
        self.fps = Fraction(fps)
        frame_ticks = 1 / (self.fps * VIDEO_TIME_BASE)
        if frame_ticks.denominator != 1:
            raise ValueError(f"fps {fps} does not divide 90000: frame times would not be exact")
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")
        self.frame_ticks = int(frame_ticks)
        self.gop = max(1, round(self.fps * Fraction(keyframe_seconds)))
        self.speed = speed
        self.stop_at_frames = stop_at_frames
        self.frames_produced = 0
        self.audio_frames_produced = 0
        self._clock = clock
        self._scene = _Scene(width, height, self.fps)
        self._overlay = Overlay(width, height)
        self._video = _video_encoder(width, height, self.fps, self.gop, threads)
        self._audio = _audio_encoder() if audio else None
        self._streams = self._describe(width, height)
        self._queue = PacketQueue(queue_size)
        self._interleaver = Interleaver({s.kind: s.time_base for s in self._streams})
        self._capture_ns: dict[tuple[str, int], int] = {}  # (kind, pts) -> clock reading, until encoded
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- MediaSource ---

    def streams(self) -> list[StreamInfo]:
        return list(self._streams)

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("a SimulatedCamera starts once")
        self._thread = threading.Thread(target=self._run, name="simulated-camera", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._queue.release()
        if self._thread is None:
            self._queue.close()
        else:
            self._thread.join()

    def read(self, timeout: float | None = None) -> EncodedPacket | None:
        return self._queue.get(timeout)

    @property
    def ended(self) -> bool:
        return self._queue.ended

    def set_overlay(self, lines: list[str]) -> None:
        self._overlay.set_lines(lines)

    # --- capture thread ---

    def _run(self) -> None:
        try:
            start_ns = self._clock()
            frame = block = 0
            end = None if self.stop_at_frames is None else Fraction(self.stop_at_frames) / self.fps
            while not self._stopping.is_set():
                t_video = frame / self.fps
                t_audio = Fraction(block * AAC_FRAME_SAMPLES, AUDIO_SAMPLE_RATE) if self._audio else None
                audio_next = t_audio is not None and t_audio < t_video
                t = t_audio if audio_next else t_video
                if end is not None and t >= end:
                    break
                self._pace(start_ns, t)
                if audio_next:
                    self._capture_audio(block)
                    block += 1
                else:
                    self._capture_video(frame)
                    frame += 1
            self._flush()
        finally:
            self._queue.close()

    def _pace(self, start_ns: int, t: Fraction) -> None:
        if self.speed is None:
            return
        due_ns = start_ns + int(t * SECOND_NS / Fraction(self.speed))
        delay_ns = due_ns - self._clock()
        if delay_ns > 0:
            self._stopping.wait(delay_ns / SECOND_NS)

    def _capture_video(self, n: int) -> None:
        self._capture(VIDEO, n * self.frame_ticks)
        yuv = self._scene.draw(n)
        self._overlay.burn(yuv)
        picture = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        picture.pts = n * self.frame_ticks
        self._emit(VIDEO, self._video.encode(picture))

    def _capture_audio(self, block: int) -> None:
        """Block 0 is the span the encoder's priming packet covers; blocks from 1 on are sound."""
        self._capture(AUDIO, block * AAC_FRAME_SAMPLES)
        if block == 0:
            return
        first = block * AAC_FRAME_SAMPLES
        samples = beep_signal(first, AAC_FRAME_SAMPLES)
        sound = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="fltp", layout="mono")
        sound.sample_rate = AUDIO_SAMPLE_RATE
        sound.pts = first - AAC_FRAME_SAMPLES  # the encoder's clock lags ours by its priming delay
        self._emit(AUDIO, self._audio.encode(sound))

    def _capture(self, kind: str, pts: int) -> None:
        self._capture_ns[kind, pts] = self._clock()

    def _flush(self) -> None:
        self._emit(VIDEO, self._video.encode(None))
        if self._audio:
            self._emit(AUDIO, self._audio.encode(None))
        self._deliver(self._interleaver.flush())

    def _emit(self, kind: str, packets: list[av.Packet]) -> None:
        for packet in packets:
            if kind == VIDEO:
                pts, duration = packet.pts, self.frame_ticks
            else:  # the encoder counts from its priming packet at -1024, our timeline from 0
                pts, duration = packet.pts + AAC_FRAME_SAMPLES, AAC_FRAME_SAMPLES
            encoded = EncodedPacket(kind=kind, data=bytes(packet), pts=pts, dts=pts, duration=duration,
                                    keyframe=packet.is_keyframe, capture_ns=self._capture_ns.pop((kind, pts)))
            self._deliver(self._interleaver.push(encoded))

    def _deliver(self, packets: list[EncodedPacket]) -> None:
        for packet in packets:
            self._queue.put(packet)
            if packet.kind == VIDEO:
                self.frames_produced += 1
            else:
                self.audio_frames_produced += 1

    def _describe(self, width: int, height: int) -> list[StreamInfo]:
        video = StreamInfo(kind=VIDEO, codec="h264", time_base=VIDEO_TIME_BASE, extradata=self._video.extradata,
                           rfc6381=avc_codec_string(self._video.extradata), width=width, height=height,
                           frame_rate=self.fps)
        if self._audio is None:
            return [video]
        audio = StreamInfo(kind=AUDIO, codec="aac", time_base=AUDIO_TIME_BASE, extradata=self._audio.extradata,
                           rfc6381=aac_codec_string(self._audio.extradata), sample_rate=AUDIO_SAMPLE_RATE,
                           channels=1)
        return [video, audio]


def _video_encoder(width: int, height: int, fps: Fraction, gop: int, threads: int) -> CodecContext:
    ctx = CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base, ctx.framerate = VIDEO_TIME_BASE, fps
    ctx.thread_count = threads
    # Parameter sets both in extradata (known before the first frame) and in front of every keyframe,
    # as picamera2's encoders give them (repeat=True): any keyframe can open a segment on its own.
    ctx.flags |= Flags.global_header
    # Keyframes exactly every `gop` frames: the recorder cuts segments there. No scene-cut IDRs.
    ctx.options = {"preset": "ultrafast", "tune": "zerolatency",
                   "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:repeat-headers=1"}
    ctx.open()
    return ctx


def _audio_encoder() -> CodecContext:
    ctx = CodecContext.create("aac", "w")
    ctx.sample_rate, ctx.layout, ctx.format = AUDIO_SAMPLE_RATE, "mono", "fltp"
    ctx.time_base = AUDIO_TIME_BASE
    ctx.bit_rate = AUDIO_BIT_RATE
    ctx.flags |= Flags.global_header
    # The default "twoloop" coder costs more CPU than 320x240 video; "fast" is ample for beeps and speech.
    ctx.options = {"aac_coder": "fast"}
    ctx.open()
    return ctx


def beep_signal(first: int, count: int) -> np.ndarray:
    """Samples [first, first + count) of the sound track (float32, -1..1): silence with a beep each second."""
    index = np.arange(first, first + count, dtype=np.int64)
    second, offset = np.divmod(index, AUDIO_SAMPLE_RATE)
    beep_len = int(BEEP_SECONDS * AUDIO_SAMPLE_RATE)
    if not (offset < beep_len).any():
        return np.zeros(count, dtype=np.float32)  # nine blocks in ten are silent: skip the sine
    freq = np.where(second % MARK_EVERY_S == 0, MARK_HZ, BEEP_HZ)
    # offset < one second, so the phase is exact in float64 and the tone is the same every second.
    tone = np.sin(2 * np.pi * freq * offset / AUDIO_SAMPLE_RATE)
    ramp = np.clip(np.minimum(offset, beep_len - offset) / RAMP_SAMPLES, 0.0, 1.0)
    return (BEEP_AMPLITUDE * tone * ramp).astype(np.float32)


class _Scene:
    """Draws frame N of the test scene as a yuv420p array (height * 3 / 2, width)."""

    def __init__(self, width: int, height: int, fps: Fraction) -> None:
        self.width, self.height, self.fps = width, height, fps
        self._background = _gradient(width, height)
        self._bar = _down_to_even(max(2, width // 16))
        self._digits = _digit_glyphs(max(10, height // 8))
        self._flash = _down_to_even(max(4, height // 8))

    def draw(self, n: int) -> np.ndarray:
        yuv = self._background.copy()
        luma = yuv[:self.height]
        sweep = int(self.fps * SWEEP_SECONDS)
        x = _down_to_even((n % sweep) * (self.width - self._bar) // sweep)
        luma[:, x:x + self._bar] = 235
        if (n % self.fps) / self.fps < BEEP_SECONDS:
            luma[-self._flash - 4:-4, -self._flash - 4:-4] = 235
        self._draw_number(luma, n)
        return yuv

    def _draw_number(self, luma: np.ndarray, n: int) -> None:
        glyph_h, glyph_w = self._digits[0].shape
        top = self.height - glyph_h - 4
        for i, digit in enumerate(f"{n:06d}"):
            left = 4 + i * glyph_w
            if left + glyph_w > self.width:
                return
            cell = luma[top:top + glyph_h, left:left + glyph_w]
            np.copyto(cell, self._digits[int(digit)], where=self._digits[int(digit)] > 16)


def _gradient(width: int, height: int) -> np.ndarray:
    """A diagonal luma ramp with hue changing across and down: movement over it is easy to see."""
    yuv = np.empty((height * 3 // 2, width), dtype=np.uint8)
    xs, ys = np.arange(width) / width, np.arange(height) / height
    yuv[:height] = (40 + 120 * (xs[None, :] + ys[:, None]) / 2).astype(np.uint8)
    cx, cy = np.arange(width // 2) / (width // 2), np.arange(height // 2) / (height // 2)
    u = np.broadcast_to((64 + 128 * cx)[None, :], (height // 2, width // 2))
    v = np.broadcast_to((192 - 128 * cy)[:, None], (height // 2, width // 2))
    yuv[height:height + height // 4] = u.astype(np.uint8).reshape(height // 4, width)
    yuv[height + height // 4:] = v.astype(np.uint8).reshape(height // 4, width)
    return yuv


def _digit_glyphs(size: int) -> list[np.ndarray]:
    """Luma stamps for 0-9, all one cell size, rendered once: per-frame text rendering is slow."""
    font = ImageFont.load_default(size=size)
    ascent, descent = font.getmetrics()
    cell_w = max(int(font.getlength(str(d))) for d in range(10)) + 2
    glyphs = []
    for d in range(10):
        image = Image.new("L", (cell_w, ascent + descent), 16)
        ImageDraw.Draw(image).text((1, 0), str(d), fill=235, font=font)
        glyphs.append(np.asarray(image, dtype=np.uint8))
    return glyphs


def _down_to_even(n: int) -> int:
    return n - (n & 1)
