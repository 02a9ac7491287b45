"""The shared media helpers: header parsing, queue, interleaver, overlay."""

from __future__ import annotations

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from hardware.media import (
    AUDIO,
    VIDEO,
    EncodedPacket,
    Interleaver,
    Overlay,
    PacketQueue,
    StreamInfo,
    aac_codec_string,
    avc_codec_string,
    nal_units,
    parameter_sets,
)

SPS = bytes.fromhex("6742c01eda")
PPS = bytes.fromhex("68ce0fc8")
IDR = bytes.fromhex("65888480")  # a NAL unit never ends in a zero byte
SEI = bytes.fromhex("0605ff")


def packet(kind: str, pts: int) -> EncodedPacket:
    return EncodedPacket(kind, b"", pts, pts, 0, False, 0)


def test_nal_units_handle_three_and_four_byte_start_codes() -> None:
    stream = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01" + IDR
    assert nal_units(stream) == [SPS, PPS, IDR]
    assert nal_units(b"") == []


def test_parameter_sets_pick_sps_and_pps_from_a_keyframe() -> None:
    keyframe = b"".join(b"\x00\x00\x00\x01" + u for u in (SPS, PPS, SEI, IDR))
    assert parameter_sets(keyframe) == b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x00\x01" + PPS
    assert parameter_sets(b"\x00\x00\x00\x01" + IDR) == b""


def test_codec_strings() -> None:
    assert avc_codec_string(b"\x00\x00\x00\x01" + SPS) == "avc1.42c01e"
    assert aac_codec_string(bytes.fromhex("1188")) == "mp4a.40.2"
    with pytest.raises(ValueError):
        avc_codec_string(b"\x00\x00\x00\x01" + PPS)


def test_to_ns() -> None:
    info = StreamInfo(VIDEO, "h264", Fraction(1, 90000), b"", "")
    assert info.to_ns(90000) == 1_000_000_000 and info.to_ns(3000) == 33_333_333


def test_interleaver_orders_by_media_time_video_first_on_ties() -> None:
    merge = Interleaver({VIDEO: Fraction(1, 90000), AUDIO: Fraction(1, 48000)})
    out = merge.push(packet(VIDEO, 0))
    assert out == []  # audio might still come at or before 0
    out += merge.push(packet(AUDIO, 0))
    out += merge.push(packet(AUDIO, 1024))  # 21.3 ms
    out += merge.push(packet(VIDEO, 3000))  # 33.3 ms
    out += merge.push(packet(AUDIO, 2048))  # 42.7 ms
    out += merge.flush()
    assert [(p.kind, p.pts) for p in out] == [(VIDEO, 0), (AUDIO, 0), (AUDIO, 1024), (VIDEO, 3000), (AUDIO, 2048)]


def test_interleaver_lag_bound_lets_video_through_a_silent_microphone() -> None:
    merge = Interleaver({VIDEO: Fraction(1, 90000), AUDIO: Fraction(1, 48000)}, max_lag_ns=100_000_000)
    released = [p.pts for n in range(10) for p in merge.push(packet(VIDEO, n * 3000))]
    assert released == [n * 3000 for n in range(7)]  # those at least 100 ms older than the newest (300 ms)


def test_queue_blocks_when_full_until_read_or_released() -> None:
    queue = PacketQueue(1)
    queue.put(packet(VIDEO, 0))
    done = threading.Event()
    threading.Thread(target=lambda: (queue.put(packet(VIDEO, 1)), done.set()), daemon=True).start()
    assert not done.wait(0.05)
    assert queue.get(0).pts == 0 and done.wait(1)
    queue.release()
    for n in range(2, 5):
        queue.put(packet(VIDEO, n))  # no longer waits
    assert not queue.ended
    queue.close()
    assert [queue.get(0).pts for _ in range(4)] == [1, 2, 3, 4]
    assert queue.get(None) is None and queue.ended


def test_queue_get_times_out() -> None:
    started = time.monotonic()
    assert PacketQueue(1).get(0.05) is None
    assert time.monotonic() - started >= 0.05


def test_overlay_burns_in_place_and_leaves_stride_padding_alone() -> None:
    width, height, stride = 320, 240, 384
    yuv = np.full((height * 3 // 2, stride), 100, dtype=np.uint8)
    overlay = Overlay(width, height, ["2025-11-24T16:00:00Z", "REC0001"])
    overlay.burn(yuv)
    luma, u = yuv[:height], yuv[height:height + height // 4].reshape(height // 2, stride // 2)
    box = luma[:20, :100]
    assert box.min() == 16 and box.max() > 200  # black box, white text
    assert (u[:10, :50] == 128).all()  # neutral chroma inside the box
    assert (luma[:, width:] == 100).all() and (u[:, width // 2:] == 100).all()
    assert (luma[100:] == 100).all()


def test_overlay_text_change_changes_pixels_and_empty_text_removes_it() -> None:
    def burned(lines: list[str]) -> np.ndarray:
        yuv = np.full((360, 320), 100, dtype=np.uint8)
        overlay = Overlay(320, 240)
        overlay.set_lines(lines)
        overlay.burn(yuv)
        return yuv

    assert not np.array_equal(burned(["officer 012345"]), burned(["officer 067890"]))
    assert (burned([]) == 100).all()


def test_overlay_needs_a_420_friendly_size() -> None:
    with pytest.raises(ValueError):
        Overlay(321, 240)
