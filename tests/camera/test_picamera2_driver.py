"""The Raspberry Pi driver against a fake picamera2 fed with real encoder output (see fake_picamera2)."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from hardware.camera_picamera2 import PacketConverter, Picamera2Camera, us_to_ticks
from hardware.media import AUDIO, VIDEO, PacketQueue, StreamInfo, nal_units, parameter_sets

from . import fake_picamera2
from .fake_picamera2 import PiRig
from .helpers import decode_video, ffprobe, luma, mux, of_kind, record

WIDTH, HEIGHT, STRIDE = 320, 240, 384  # picamera2 pads rows: the overlay must respect the stride
OVERLAY = ["2025-11-24T16:00:00Z", "REC0001", "012345"]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_picamera2.install(monkeypatch)


def started_camera(**kwargs) -> Picamera2Camera:
    camera = Picamera2Camera(width=WIDTH, height=HEIGHT, **kwargs)
    camera.set_overlay(OVERLAY)
    camera.start()
    return camera


def test_the_module_imports_without_picamera2_and_says_so_on_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(ImportError):
        Picamera2Camera().start()


def test_configures_picamera2_for_recording(fake) -> None:
    started_camera(keyframe_seconds=2, bitrate=2_000_000)
    picam2 = fake_picamera2.Picamera2.last
    assert picam2.camera_config["main"] == {"size": (WIDTH, HEIGHT), "format": "YUV420"}
    assert picam2.camera_config["controls"] == {"FrameDurationLimits": (33333, 33333)}
    encoder = picam2.encoder
    assert (encoder.repeat, encoder.iperiod, encoder.framerate, encoder.bitrate) == (True, 60, 30, 2_000_000)
    assert encoder.audio and encoder.audio_output == {"codec_name": "aac", "rate": 48000, "layout": "mono",
                                                      "bit_rate": 64000}
    assert encoder.audio_input["format"] == "alsa"  # PyPI's PyAV has no PulseAudio, picamera2's default
    assert picam2.pre_callback is not None and picam2.output.recording


def test_a_size_picamera2_would_change_is_refused(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fake_picamera2.Picamera2, "adjust_size_to", (336, 240))
    with pytest.raises(ValueError, match="336x240"):
        started_camera()
    assert fake_picamera2.Picamera2.last.closed


@pytest.fixture
def pi_recording(fake) -> tuple[Picamera2Camera, PiRig, list[StreamInfo], list]:
    camera = started_camera()
    rig = PiRig(WIDTH, HEIGHT, STRIDE)
    rig.run(frames=60)
    streams = camera.streams(timeout=0)
    camera.stop()
    return camera, rig, streams, record(camera)


def test_packets_timestamps_and_streams(pi_recording) -> None:
    camera, rig, streams, packets = pi_recording
    video, audio = of_kind(packets, VIDEO), of_kind(packets, AUDIO)
    assert camera.frames_produced == len(video) == 60
    assert camera.audio_frames_produced == len(audio) > 90
    # Sensor microseconds -> 1/90000, rounded; capture time back on the sensor's clock.
    first = rig.encoder.firsttimestamp
    expected_us = [n * 33_333 + n % 3 for n in range(60)]
    assert [p.pts for p in video] == [us_to_ticks(us, 90000) for us in expected_us]
    assert [p.capture_ns for p in video] == [(first + us) * 1000 for us in expected_us]
    assert [n for n, p in enumerate(video) if p.keyframe] == [0, 30]
    # AAC: sample-exact pts, starting where picamera2's 100 ms audio_sync puts it.
    assert [p.pts for p in audio] == [4800 + 1024 * k for k in range(len(audio))]
    by_kind = {s.kind: s for s in streams}
    media_ns = [by_kind[p.kind].to_ns(p.pts) for p in packets]
    assert media_ns == sorted(media_ns)
    # Parameter sets come from the first keyframe, which keeps them in-band.
    assert streams[0].extradata == parameter_sets(video[0].data)
    assert streams[0].rfc6381.startswith("avc1.42") and (streams[0].width, streams[0].height) == (WIDTH, HEIGHT)
    assert streams[1].extradata == rig.audio.codec_context.extradata and streams[1].rfc6381 == "mp4a.40.2"


def test_the_recording_decodes_and_muxes_into_fragmented_mp4(pi_recording, tmp_path: Path) -> None:
    _, _, streams, packets = pi_recording
    assert len(decode_video(streams, packets)) == 60
    probe = ffprobe(mux(tmp_path / "pi.mp4", streams, packets))
    assert int(probe["video"]["nb_read_frames"]) == 60
    assert int(probe["audio"]["nb_read_frames"]) == len(of_kind(packets, AUDIO))


def test_overlay_is_burned_before_encoding_and_padding_is_untouched(pi_recording) -> None:
    _, rig, streams, packets = pi_recording
    main = rig.burned[0]
    y, u = main[:HEIGHT], main[HEIGHT:HEIGHT + HEIGHT // 4].reshape(HEIGHT // 2, STRIDE // 2)
    assert y[:20, :100].min() == 16 and y[:20, :100].max() > 200
    assert (u[:10, :50] == 128).all()  # the chroma box lands where the luma box is, given the stride
    assert (y[:, WIDTH:] == 90).all() and (u[:, WIDTH // 2:] == 90).all() and (y[60:] == 90).all()
    picture = luma(decode_video(streams, packets)[0])
    assert (picture[:40, :100] < 30).mean() > 0.5 and (picture[:40, :100] > 200).sum() > 50
    assert np.abs(picture[60:] - 90).max() <= 2  # the rest of the (flat) picture is as captured


def packets_from(stream: av.stream.Stream, blocks: int) -> list[av.Packet]:
    out = []
    for k in range(blocks):
        sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        sound.sample_rate, sound.pts = stream.codec_context.sample_rate, 1024 * k
        out += stream.encode(sound)
    return out


def converter(queue: PacketQueue) -> PacketConverter:
    return PacketConverter(queue, width=WIDTH, height=HEIGHT, fps=Fraction(30), audio=True, epoch_us=lambda: 0)


def test_nothing_is_delivered_before_the_first_keyframe() -> None:
    queue = PacketQueue(16)
    convert = converter(queue)
    null = av.open("/dev/null", "w", format="null")
    audio = packets_from(null.add_stream("aac", rate=48000, layout="mono"), 4)
    convert.video(b"\x00\x00\x00\x01\x41\x9a", keyframe=False, timestamp_us=0)
    convert.audio(audio[0], timestamp_us=0)
    assert convert.packets_skipped == 2
    with pytest.raises(TimeoutError):
        convert.streams(timeout=0.01)
    sps, pps, idr = bytes.fromhex("6742c01eda"), bytes.fromhex("68ce0fc8"), bytes.fromhex("65888480")
    convert.video(b"".join(b"\x00\x00\x00\x01" + u for u in (sps, pps, idr)), keyframe=True, timestamp_us=33_333)
    convert.audio(audio[1], timestamp_us=40_000)
    assert [s.kind for s in convert.streams(timeout=0)] == [VIDEO, AUDIO]
    convert.finish()
    delivered = [queue.get(0) for _ in range(2)]
    assert queue.ended
    assert [(p.kind, p.pts) for p in delivered] == [(VIDEO, 3000), (AUDIO, 1920)]
    assert nal_units(delivered[0].data)[-1] == idr


def test_a_keyframe_without_parameter_sets_is_refused() -> None:
    with pytest.raises(RuntimeError, match="repeat=True"):
        converter(PacketQueue(4)).video(b"\x00\x00\x00\x01\x65\x88\x84\x80", keyframe=True, timestamp_us=0)


def test_audio_that_is_not_48k_mono_is_refused() -> None:
    convert = converter(PacketQueue(4))
    convert.video(bytes.fromhex("000000016742c01eda0000000168ce0fc8"), keyframe=True, timestamp_us=0)
    null = av.open("/dev/null", "w", format="null")
    packet = packets_from(null.add_stream("aac", rate=44100, layout="mono"), 3)[0]
    with pytest.raises(RuntimeError, match="44100"):
        convert.audio(packet, timestamp_us=0)


def test_microseconds_convert_back_to_exact_sample_counts() -> None:
    # picamera2 turns AAC pts into int(pts * 1e6 / 48000) microseconds; rounding recovers every pts.
    assert all(us_to_ticks(int(pts * Fraction(1_000_000, 48000)), 48000) == pts
               for pts in range(0, 48000 * 3600, 1024 * 97))
    assert us_to_ticks(33_333, 90000) == 3000
