from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import av
import pytest

from firmware import fmp4
from firmware.segmenter import NS, Segmenter, SegmentFile
from hardware.media import AUDIO, VIDEO, EncodedPacket, StreamInfo
from server import derived_clip
from server.derived_clip import TITLE, ClipError, ClipResult, ClipSource, remux_clip
from simulators.camera import SimulatedCamera
from tests.camera.helpers import ffprobe, record
from tests.firmware.media_fixture import FPS, make_packets

T0 = 1_700_000_000 * NS  # UTC capture time of the recording's first frame
MS = 1_000_000
SEGMENT_S = 4
RATES = {VIDEO: 90000, AUDIO: 48000}  # ticks per second
FRAME_TICKS = RATES[VIDEO] // FPS
LABEL = {"exported_by": "supervisor-7", "export_id": 42, "reason_sha256": "ab" * 32}


@dataclass(frozen=True)
class Recording:
    sources: list[ClipSource]  # three 4 s segments of one recording
    packets: list[EncodedPacket]  # what the camera produced; capture_ns is media time, so UTC is T0 + capture_ns


def _segment(streams: list[StreamInfo], packets: list[EncodedPacket], folder: Path) -> list[SegmentFile]:
    """Cut packets into segment files the way the recorder does."""
    done: list[SegmentFile] = []
    counter = itertools.count()
    segmenter = Segmenter(streams, lambda _: folder / f"s{next(counter)}.mp4", done.append, segment_ns=SEGMENT_S * NS)
    for packet in packets:
        segmenter.add(packet)
    segmenter.finish()
    return done


def _source(segment: SegmentFile, start_ns: int) -> ClipSource:
    manifest = hashlib.sha256(f"manifest of {segment.path.name}".encode()).hexdigest()
    return ClipSource(segment.path, start_ns, manifest, segment.sha256.hex())


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Recording:
    streams, packets = make_packets(3 * SEGMENT_S)
    segments = _segment(streams, packets, tmp_path_factory.mktemp("segments"))
    assert len(segments) == 3
    return Recording([_source(s, T0 + s.mono_start_ns) for s in segments], packets)


def _captured(packets: list[EncodedPacket], kind: str, start_ns: int, end_ns: int) -> list[EncodedPacket]:
    return [p for p in packets if p.kind == kind and start_ns <= T0 + p.capture_ns < end_ns]


def _demux(path: Path) -> dict[str, list[av.Packet]]:
    with av.open(str(path)) as container:
        packets: dict[str, list[av.Packet]] = {VIDEO: [], AUDIO: []}
        for packet in container.demux():
            if packet.dts is not None:
                packets[packet.stream.type].append(packet)
        return packets


def _decoded_video_frames(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def _check_clip(result: ClipResult, recording: Recording, to_ns: int) -> dict[str, list[av.Packet]]:
    """What every clip must be; returns its packets."""
    expected = {kind: _captured(recording.packets, kind, result.start_ns, to_ns) for kind in (VIDEO, AUDIO)}
    assert result.frames == {kind: len(packets) for kind, packets in expected.items()}
    data = result.path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == result.sha256 and len(data) == result.size
    with open(result.path, "rb") as f:
        boxes = [kind for kind, _, _ in fmp4.boxes(f, result.size)]
    assert b"moof" not in boxes and boxes.index(b"moov") < boxes.index(b"mdat")  # regular MP4, index first

    packets = _demux(result.path)
    # Time zero is the first keyframe (on a whole second here); every packet keeps its time relative to it.
    for kind, rate in RATES.items():
        start = (result.start_ns - T0) * rate // NS
        assert [p.pts for p in packets[kind]] == [p.pts - start for p in expected[kind]]
        assert all(a.dts < b.dts for a, b in itertools.pairwise(packets[kind]))
    frames = _decoded_video_frames(result.path)
    assert len(frames) == len(expected[VIDEO]) and frames[0].key_frame

    probe = ffprobe(result.path)
    assert int(probe["video"]["nb_read_frames"]) == len(expected[VIDEO])
    assert probe["video"]["codec_name"] == "h264" and probe["audio"]["codec_name"] == "aac"
    last_video = expected[VIDEO][-1]
    duration_s = (T0 + last_video.capture_ns - result.start_ns) / NS + 1 / FPS
    assert float(probe["video"]["duration"]) == pytest.approx(duration_s, abs=1e-3)
    assert float(probe["format"]["duration"]) == pytest.approx((result.end_ns - result.start_ns) / NS, abs=1e-3)
    tags = probe["format"]["tags"]
    assert tags["title"] == TITLE and tags["comment"].encode() == result.label_json
    return packets


def test_clip_across_segments_is_a_remux_from_the_keyframe_before_from_ns(recording: Recording,
                                                                          tmp_path: Path) -> None:
    from_ns, to_ns = T0 + 1500 * MS, T0 + 10_500 * MS
    result = remux_clip(recording.sources, from_ns, to_ns, tmp_path / "clip.mp4", LABEL)

    assert result.start_ns == T0 + 1000 * MS and result.starts_early_ns == 500 * MS
    assert result.frames[VIDEO] == 285  # 1.0 s to 10.5 s
    assert result.sources == tuple(recording.sources)
    last_audio = _captured(recording.packets, AUDIO, result.start_ns, to_ns)[-1]
    assert result.end_ns == T0 + (last_audio.pts + last_audio.duration) * NS // RATES[AUDIO]
    packets = _check_clip(result, recording, to_ns)
    # Continuous across both segment boundaries: one frame every 1/30 s from zero.
    assert [p.pts for p in packets[VIDEO]] == [i * FRAME_TICKS for i in range(285)]

    # No re-encoding: every sample is the original's bytes (both files hold length-prefixed NAL units).
    originals: dict[tuple[str, int], bytes] = {}
    for source in recording.sources:
        for kind, source_packets in _demux(source.path).items():
            originals.update({(kind, p.pts): bytes(p) for p in source_packets})
    for kind, clip_packets in packets.items():  # the clip starts 1 s into the recording
        assert [bytes(p) for p in clip_packets] == [originals[kind, p.pts + RATES[kind]] for p in clip_packets]

    assert json.loads(result.label_json) == {
        "derived": True, "from_ns": from_ns, "to_ns": to_ns, **LABEL,
        "originals": [{"manifest": s.manifest, "media_sha256": s.media_sha256} for s in recording.sources]}
    # The same export twice gives the same bytes, so anyone can re-derive a clip and compare.
    again = remux_clip(recording.sources, from_ns, to_ns, tmp_path / "again.mp4", LABEL)
    assert again.sha256 == result.sha256
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.mp4", "clip.mp4"]  # no temporary file left


@pytest.mark.parametrize(("from_s", "to_s", "start_s", "used"), [
    (5.2, 6.9, 5.0, [1]),  # inside one segment, from mid-GOP
    (8.0, 9.0, 8.0, [2]),  # from a segment's first keyframe exactly
    (2.5, 4.0, 2.0, [0]),  # up to the next segment's first frame, which it excludes
    (-5.0, 0.5, 0.0, [0]),  # from before the recording: starts where it does
], ids=["mid-gop", "at-keyframe", "to-boundary", "before-recording"])
def test_clip_starts_at_the_last_keyframe_at_or_before_from_ns(recording: Recording, tmp_path: Path, from_s: float,
                                                                to_s: float, start_s: float, used: list[int]) -> None:
    from_ns, to_ns = T0 + round(from_s * 1000) * MS, T0 + round(to_s * 1000) * MS
    result = remux_clip(recording.sources, from_ns, to_ns, tmp_path / "clip.mp4", LABEL)
    assert result.start_ns == T0 + round(start_s * 1000) * MS
    assert result.starts_early_ns == max(0, from_ns - result.start_ns)
    assert result.sources == tuple(recording.sources[i] for i in used)
    assert len(json.loads(result.label_json)["originals"]) == len(used)
    _check_clip(result, recording, to_ns)


def test_a_gap_between_sources_stays_a_gap(recording: Recording, tmp_path: Path) -> None:
    late = [*recording.sources[:2], replace(recording.sources[2], start_ns=recording.sources[2].start_ns + 2 * NS)]
    result = remux_clip(late, T0 + 7 * NS, T0 + 12 * NS, tmp_path / "clip.mp4", LABEL)
    pts = [p.pts for p in _demux(result.path)[VIDEO]]
    # 7.0-8.0 s from the second segment, then the third's 8.0-10.0 s placed at 10.0-12.0 s.
    assert pts == [i * FRAME_TICKS for i in range(30)] + [3 * 90000 + i * FRAME_TICKS for i in range(60)]
    assert result.end_ns == pytest.approx(T0 + 12 * NS, abs=25 * MS)

    # A range that starts in the gap begins at the next keyframe, not a GOP that ended before it.
    result = remux_clip(late, T0 + 9 * NS, T0 + 11 * NS, tmp_path / "gap.mp4", LABEL)
    assert result.start_ns == T0 + 10 * NS and result.starts_early_ns == 0 and result.sources == (late[2],)
    assert result.frames[VIDEO] == 30


def test_overlapping_sources_are_pushed_later_not_dropped(recording: Recording, tmp_path: Path) -> None:
    # The third segment claims to start 0.1 s before the second ends (a clock step on the recorder).
    early = [*recording.sources[:2], replace(recording.sources[2], start_ns=recording.sources[2].start_ns - 100 * MS)]
    result = remux_clip(early, T0 + 7 * NS, T0 + 9 * NS, tmp_path / "clip.mp4", LABEL)
    packets = _demux(result.path)
    for kind in (VIDEO, AUDIO):
        assert all(a.dts < b.dts for a, b in itertools.pairwise(packets[kind]))
    pts = [p.pts for p in packets[VIDEO]]
    # All of the second segment's last second, then the third's from one tick after it, frame spacing kept.
    assert pts[:30] == [i * FRAME_TICKS for i in range(30)]
    assert pts[30:] == [29 * FRAME_TICKS + 1 + i * FRAME_TICKS for i in range(len(pts) - 30)]
    assert result.frames[VIDEO] == len(pts) == 30 + 33  # the third's frames captured before 9 s by its clock


def _other_camera(folder: Path) -> ClipSource:
    """A segment of the same length from a camera at another resolution (other SPS)."""
    camera = SimulatedCamera(width=320, height=240, fps=FPS, speed=None, stop_at_frames=SEGMENT_S * FPS,
                             clock=lambda: 0)
    camera.start()
    [segment] = _segment(camera.streams(), record(camera), folder)
    return _source(segment, T0 + 3 * SEGMENT_S * NS)


def _garbage(folder: Path) -> ClipSource:
    path = folder / "garbage.mp4"
    path.write_bytes(b"not a video " * 100)
    return ClipSource(path, T0 + 3 * SEGMENT_S * NS, "00" * 32, hashlib.sha256(path.read_bytes()).hexdigest())


BadCase = Callable[[list[ClipSource], Path], tuple[list[ClipSource], float, float, dict[str, str | int]]]
BAD: dict[str, BadCase] = {
    "no-sources": lambda s, _: ([], 1, 2, LABEL),
    "empty-range": lambda s, _: (s, 3, 3, LABEL),
    "after-recording": lambda s, _: (s, 12.5, 14, LABEL),
    "before-recording": lambda s, _: (s, -5, 0, LABEL),
    "missing-file": lambda s, d: ([*s, replace(s[2], path=d / "gone.mp4", start_ns=T0 + 12 * NS)], 1, 2, LABEL),
    "not-media": lambda s, d: ([*s, _garbage(d)], 1, 2, LABEL),
    "other-codec-parameters": lambda s, d: ([*s, _other_camera(d)], 1, 2, LABEL),
    "wrong-media-hash": lambda s, _: ([s[0], replace(s[1], media_sha256="00" * 32)], 3, 5, LABEL),
    "out-of-order": lambda s, _: ([s[1], s[0]], 1, 2, LABEL),
    "reserved-label": lambda s, _: (s, 1, 2, {**LABEL, "derived": "no"}),
    "float-label": lambda s, _: (s, 1, 2, {**LABEL, "export_id": 1.5}),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_input_raises_clip_error_and_leaves_no_file(recording: Recording, tmp_path: Path, case: str) -> None:
    sources, from_s, to_s, label = BAD[case](recording.sources, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ClipError):
        remux_clip(sources, T0 + round(from_s * NS), T0 + round(to_s * NS), out / "clip.mp4", label)
    assert list(out.iterdir()) == []


def test_failure_while_writing_removes_the_partial_file(recording: Recording, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = derived_clip._packets

    def failing(source: ClipSource, video_only: bool = False) -> Iterator[tuple[av.Packet, object]]:
        for n, item in enumerate(real(source, video_only)):
            if n == 100 and not video_only:  # copying, with the output file already open
                raise ClipError("damaged mid-way")
            yield item

    monkeypatch.setattr(derived_clip, "_packets", failing)
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"an earlier export")
    with pytest.raises(ClipError, match="damaged"):
        remux_clip(recording.sources, T0, T0 + 6 * NS, out, LABEL)
    assert list(tmp_path.iterdir()) == [out] and out.read_bytes() == b"an earlier export"
