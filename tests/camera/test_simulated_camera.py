from __future__ import annotations

import math
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hardware.media import AUDIO, VIDEO, EncodedPacket, StreamInfo, nal_units, parameter_sets
from simulators.camera import SimulatedCamera

from .helpers import (
    StepClock,
    decode_audio,
    decode_video,
    dominant_hz,
    ffprobe,
    luma,
    mux,
    of_kind,
    record,
)

FPS = 30
FRAMES = 90  # 3 s
OVERLAY = ["2025-11-24T16:00:00Z", "REC0001", "012345"]


def fast(**kwargs) -> SimulatedCamera:
    return SimulatedCamera(speed=None, **kwargs)


def run(camera: SimulatedCamera) -> list[EncodedPacket]:
    camera.start()
    return record(camera)


def audio_packets_for(frames: int, fps: int = FPS) -> int:
    """Audio packets that start before the last video frame ends."""
    return math.ceil(frames / fps * 48000 / 1024)


@pytest.fixture(scope="module")
def three_seconds() -> tuple[SimulatedCamera, list[StreamInfo], list[EncodedPacket]]:
    camera = fast(stop_at_frames=FRAMES)
    camera.set_overlay(OVERLAY)
    packets = run(camera)
    return camera, camera.streams(), packets


def test_counts_are_exact_and_match_what_was_delivered(three_seconds) -> None:
    camera, _, packets = three_seconds
    assert camera.frames_produced == len(of_kind(packets, VIDEO)) == FRAMES
    assert camera.audio_frames_produced == len(of_kind(packets, AUDIO)) == audio_packets_for(FRAMES)


def test_every_packet_decodes(three_seconds) -> None:
    _, streams, packets = three_seconds
    frames = decode_video(streams, packets)
    assert len(frames) == FRAMES
    assert {(f.width, f.height) for f in frames} == {(320, 240)}
    sound = decode_audio(streams, packets)
    assert len(sound) == audio_packets_for(FRAMES) * 1024


def test_timestamps_are_exact_and_continuous(three_seconds) -> None:
    _, _, packets = three_seconds
    video, audio = of_kind(packets, VIDEO), of_kind(packets, AUDIO)
    assert [p.pts for p in video] == [n * 3000 for n in range(FRAMES)]
    assert [p.pts for p in audio] == [k * 1024 for k in range(len(audio))]
    assert all(p.dts == p.pts for p in packets)
    assert {p.duration for p in video} == {3000} and {p.duration for p in audio} == {1024}


def test_packets_arrive_in_capture_order(three_seconds) -> None:
    _, streams, packets = three_seconds
    by_kind = {s.kind: s for s in streams}
    media_ns = [by_kind[p.kind].to_ns(p.pts) for p in packets]
    assert media_ns == sorted(media_ns)
    captured = [p.capture_ns for p in packets]
    assert captured == sorted(captured)
    assert packets[0].kind == VIDEO and packets[0].keyframe  # a recording can open at its first packet


def test_keyframe_every_second_by_default(three_seconds) -> None:
    _, streams, packets = three_seconds
    video = of_kind(packets, VIDEO)
    assert [n for n, p in enumerate(video) if p.keyframe] == [0, 30, 60]
    # The flag is true to the bitstream: IDR slices exactly there, each led by the stream's SPS/PPS.
    idr = [n for n, p in enumerate(video) if any(u[0] & 0x1F == 5 for u in nal_units(p.data))]
    assert idr == [0, 30, 60]
    with_headers = [n for n, p in enumerate(video) if parameter_sets(p.data)]
    assert with_headers == [0, 30, 60]
    assert {parameter_sets(video[n].data) for n in with_headers} == {streams[0].extradata}
    assert [n for n, f in enumerate(decode_video(streams, packets)) if f.key_frame] == [0, 30, 60]


def test_keyframe_interval_is_configurable() -> None:
    packets = run(fast(stop_at_frames=45, keyframe_seconds=0.5, audio=False))
    assert [n for n, p in enumerate(packets) if p.keyframe] == [0, 15, 30]
    assert all(p.kind == VIDEO for p in packets)


def test_stream_descriptions(three_seconds) -> None:
    _, streams, _ = three_seconds
    video, audio = streams
    assert (video.kind, video.codec, video.width, video.height, video.frame_rate) == (VIDEO, "h264", 320, 240, 30)
    assert video.extradata.startswith(b"\x00\x00\x00\x01\x67")  # Annex B, SPS first
    assert video.rfc6381.startswith("avc1.42")  # ultrafast gives Constrained Baseline
    assert (audio.codec, audio.sample_rate, audio.channels, audio.rfc6381) == ("aac", 48000, 1, "mp4a.40.2")
    assert audio.extradata[:2] == bytes.fromhex("1188")  # AAC-LC, 48 kHz, mono


def test_fragmented_mp4_reads_back_with_pyav_and_ffprobe(three_seconds, tmp_path: Path) -> None:
    _, streams, packets = three_seconds
    path = mux(tmp_path / "whole.mp4", streams, packets)
    data = path.read_bytes()
    assert b"mvex" in data[:4096] and data.count(b"moof") == 3  # empty moov, one fragment per keyframe
    with av.open(str(path)) as mp4:
        assert sum(1 for _ in mp4.decode(video=0)) == FRAMES
    with av.open(str(path)) as mp4:
        assert sum(1 for _ in mp4.decode(audio=0)) == audio_packets_for(FRAMES)
    probe = ffprobe(path)
    assert int(probe["video"]["nb_read_frames"]) == FRAMES
    assert float(probe["video"]["duration"]) == pytest.approx(3.0)
    assert int(probe["audio"]["nb_read_frames"]) == audio_packets_for(FRAMES)
    assert (probe["video"]["width"], probe["audio"]["sample_rate"]) == (320, "48000")


def test_segments_cut_at_keyframes_add_up_to_the_frames_produced(three_seconds, tmp_path: Path) -> None:
    camera, streams, packets = three_seconds
    segments: list[list[EncodedPacket]] = []
    for p in packets:
        if not segments or (p.kind == VIDEO and p.keyframe):
            segments.append([])
        segments[-1].append(p)
    assert len(segments) == 3
    probes = [ffprobe(mux(tmp_path / f"{i}.mp4", streams, seg)) for i, seg in enumerate(segments)]
    assert [int(p["video"]["nb_read_frames"]) for p in probes] == [30, 30, 30]
    assert sum(int(p["video"]["nb_read_frames"]) for p in probes) == camera.frames_produced
    assert sum(int(p["audio"]["nb_read_frames"]) for p in probes) == camera.audio_frames_produced


def test_beeps_are_audible_at_the_right_pitch_and_time(three_seconds) -> None:
    _, streams, packets = three_seconds
    sound = decode_audio(streams, packets)
    rate = 48000

    def span(start: float, end: float) -> np.ndarray:
        return sound[int(start * rate):int(end * rate)]

    assert dominant_hz(span(1.02, 1.08), rate) == pytest.approx(1000, abs=20)
    assert dominant_hz(span(2.02, 2.08), rate) == pytest.approx(1000, abs=20)
    assert dominant_hz(span(0.03, 0.09), rate) == pytest.approx(2000, abs=20)  # 10 s boundary: other pitch
    assert np.sqrt(np.mean(span(1.02, 1.08) ** 2)) > 0.2
    assert np.sqrt(np.mean(span(1.3, 1.9) ** 2)) < 0.01  # silence between beeps
    onset = 0.9 + np.argmax(np.abs(span(0.9, 1.1)) > 0.05) / rate
    assert onset == pytest.approx(1.0, abs=0.01)  # in step with video frame 30


def test_overlay_is_burned_into_the_picture() -> None:
    def first_frame(lines: list[str] | None) -> np.ndarray:
        camera = fast(stop_at_frames=1, audio=False)
        if lines is not None:
            camera.set_overlay(lines)
        packets = run(camera)
        return luma(decode_video(camera.streams(), packets)[0])

    plain, officer_a, officer_b = first_frame(None), first_frame(OVERLAY), first_frame([*OVERLAY[:2], "067890"])
    box = (slice(0, 40), slice(0, 120))  # top left: three lines of 10 px text
    below = (slice(60, 180), slice(0, 320))
    assert np.abs(officer_a[box] - plain[box]).mean() > 20
    assert np.abs(officer_a[below] - plain[below]).mean() < 1
    text = officer_a[box]
    assert (text < 30).mean() > 0.5 and (text > 200).sum() > 50  # white text on a black box
    # Only the changed line differs.
    changed = np.abs(officer_a[box] - officer_b[box]).mean(axis=1) > 5
    assert changed[:20].sum() == 0 and changed[20:].sum() > 3


def test_output_is_deterministic() -> None:
    def once() -> list[EncodedPacket]:
        camera = fast(stop_at_frames=45, clock=StepClock())
        camera.set_overlay(OVERLAY)
        return run(camera)

    first, second = once(), once()
    assert first == second  # bytes, timestamps, flags and capture times


def test_capture_times_come_from_the_injected_clock() -> None:
    clock = StepClock(start=5_000, step=10)
    packets = run(fast(stop_at_frames=3, clock=clock))
    # One reading at start, then one per capture in timeline order: v0 a0 a1 v1 a2 a3 v2 a4 (a4 starts at 85 ms).
    video = [p.capture_ns for p in of_kind(packets, VIDEO)]
    audio = [p.capture_ns for p in of_kind(packets, AUDIO)]
    assert video == [5_020, 5_050, 5_080]
    assert audio == [5_030, 5_040, 5_060, 5_070, 5_090]


def test_realtime_pacing_and_fast_mode() -> None:
    def timed(**kwargs) -> tuple[float, list[EncodedPacket]]:
        camera = SimulatedCamera(stop_at_frames=15, **kwargs)
        started = time.monotonic()
        packets = run(camera)
        return time.monotonic() - started, packets

    realtime, packets = timed(speed=1.0)
    assert 0.48 <= realtime < 1.0  # the last capture (audio at 491 ms) waits for its time
    video_ns = [p.capture_ns for p in of_kind(packets, VIDEO)]
    assert video_ns[-1] - video_ns[0] == pytest.approx(14 / 30 * 1e9, abs=30e6)
    quadruple, _ = timed(speed=4.0)
    assert 0.12 <= quadruple < 0.4
    unpaced, _ = timed(speed=None)
    assert unpaced < 0.12


def test_stop_is_clean_and_loses_nothing() -> None:
    camera = SimulatedCamera(speed=1.0)
    camera.start()
    packets = [camera.read(1.0) for _ in range(20)]
    started = time.monotonic()
    camera.stop()
    assert time.monotonic() - started < 0.5
    packets += record(camera, timeout=1.0)
    assert camera.read(0) is None and camera.ended
    video = of_kind(packets, VIDEO)
    assert len(video) == camera.frames_produced and [p.pts for p in video] == [n * 3000 for n in range(len(video))]
    assert len(of_kind(packets, AUDIO)) == camera.audio_frames_produced


def test_stop_does_not_hang_on_a_reader_that_stopped_reading() -> None:
    camera = SimulatedCamera(speed=None, queue_size=4)
    camera.start()
    time.sleep(0.05)  # the capture thread fills the queue and waits
    started = time.monotonic()
    camera.stop()
    assert time.monotonic() - started < 0.5
    assert len(of_kind(record(camera), VIDEO)) == camera.frames_produced > 0


def test_stop_before_start_ends_the_source() -> None:
    camera = fast()
    camera.stop()
    assert camera.read(0.01) is None and camera.ended


def test_frame_times_must_be_exact() -> None:
    with pytest.raises(ValueError, match="90000"):
        SimulatedCamera(fps=7)
    assert SimulatedCamera(fps=Fraction(30000, 1001)).frame_ticks == 3003
