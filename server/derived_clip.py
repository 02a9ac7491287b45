"""Export a UTC time range of one device's recording as a single ordinary MP4: a derived clip.

The clip is a remux: packets are copied from the original fragmented-MP4 segments, never decoded
or re-encoded, so every frame in it is bit-for-bit a frame of an original. Without re-encoding
video can only start at a keyframe, so the clip starts at the last keyframe at or before the
requested start (`ClipResult.starts_early_ns` says by how much) and ends with the last packet
captured before the requested end.

A derived clip is not evidence in itself: its container title says so, and its comment is the
canonical JSON naming the signed manifests of the originals it came from, so a viewer can always
go back to them.

Two passes over the sources, one packet in memory at a time: the first reads video timestamps
only, to find the starting keyframe (the output's time zero, so its header can be written); the
second copies the packets.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.container import InputContainer, OutputContainer
from av.stream import Stream

from protocol.canonical import CanonicalError, encode

NS = 1_000_000_000
TITLE = "DERIVED CLIP — not an original; see originals in comment"
# faststart moves the index to the front, so a browser plays the clip while it downloads.
MUX_OPTIONS = {"movflags": "+faststart"}
RESERVED_KEYS = frozenset({"derived", "from_ns", "to_ns", "originals"})


class ClipError(ValueError):
    """A clip that cannot be made from these inputs; no output file is left behind."""


@dataclass(frozen=True)
class ClipSource:
    path: Path  # the original fMP4 segment
    start_ns: int  # UTC capture time of the segment's first frame
    manifest: str  # hex SHA-256 naming the original's signed manifest
    media_sha256: str  # hex


@dataclass(frozen=True)
class ClipResult:
    path: Path
    start_ns: int  # UTC capture time of the clip's first frame (its starting keyframe)
    end_ns: int  # UTC end of the last packet in the clip (capture time plus duration)
    starts_early_ns: int  # how much earlier than the requested from_ns the clip starts (0 if not earlier)
    frames: dict[str, int]  # packets (one frame each) per stream type: "video", "audio"
    sources: tuple[ClipSource, ...]  # the originals that contributed packets, in chain order
    sha256: str  # hex, of the output file
    size: int
    label_json: bytes  # the canonical JSON written as the container's comment


@dataclass(frozen=True)
class _Timeline:
    """Maps one stream of one source from its ticks to UTC: utc_ns = base + ticks * scale."""

    base: Fraction
    scale: Fraction  # nanoseconds per tick

    def utc(self, ticks: int) -> Fraction:
        return self.base + ticks * self.scale


def remux_clip(sources: Sequence[ClipSource], from_ns: int, to_ns: int, out_path: Path,
               label: Mapping[str, str | int]) -> ClipResult:
    """Write the span [from_ns, to_ns) of the consecutive `sources` (UTC ns) to `out_path` as one MP4.

    The clip covers [result.start_ns, result.end_ns): it starts up to a group of pictures early (see
    the module doc), and later than from_ns if the recording itself starts later. Raises ClipError,
    leaving no file, when there is nothing to export or a source is missing, unreadable, not the
    file its media_sha256 names, or encoded differently from the others.
    """
    if not sources:
        raise ClipError("no source segments")
    if from_ns >= to_ns:
        raise ClipError(f"empty range: from_ns {from_ns} is not before to_ns {to_ns}")
    if any(b.start_ns <= a.start_ns for a, b in itertools.pairwise(sources)):
        raise ClipError("sources are not in chain order (start_ns must increase)")
    _check_label(label)
    _check_same_codecs(sources)

    start = _find_start(sources, from_ns, to_ns)
    if start is None:
        raise ClipError(f"no video in [{from_ns}, {to_ns}): the range lies outside the sources")
    first, origin = start
    used = tuple(s for i, s in enumerate(sources) if i == first or (i > first and s.start_ns < to_ns))
    for source in used:
        _check_media_hash(source)
    label_json = _label_json(used, from_ns, to_ns, label)

    # ffmpeg writes the file itself (faststart re-reads it by name), so the temporary file is a name
    # beside the target: the final rename stays within one filesystem and is atomic.
    tmp = out_path.with_name(f".{out_path.name}.{secrets.token_hex(8)}.part")
    try:
        frames, end_ns = _write(used, origin, to_ns, tmp, label_json)
        with open(tmp, "rb") as f:
            digest = hashlib.file_digest(f, "sha256").hexdigest()
            os.fsync(f.fileno())
        size = tmp.stat().st_size
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    start_ns = math.floor(origin)
    return ClipResult(path=out_path, start_ns=start_ns, end_ns=end_ns, starts_early_ns=max(0, from_ns - start_ns),
                      frames=frames, sources=used, sha256=digest, size=size, label_json=label_json)


def _check_media_hash(source: ClipSource) -> None:
    """The clip names its originals by hash, so each must be the file it names.

    This also catches a damaged copy, which the demuxer would mostly read as a shorter one, silently.
    """
    with open(source.path, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if digest != source.media_sha256.lower():
        raise ClipError(f"{source.path}: content does not match media_sha256 {source.media_sha256}")


def _check_label(label: Mapping[str, str | int]) -> None:
    for key, value in label.items():
        if not isinstance(key, str) or type(value) not in (str, int):
            raise ClipError(f"label entries must map str to str or int: {key!r}")
        if key in RESERVED_KEYS:
            raise ClipError(f"label key {key!r} is reserved for the clip's own description")


def _label_json(used: Sequence[ClipSource], from_ns: int, to_ns: int, label: Mapping[str, str | int]) -> bytes:
    originals = [{"manifest": s.manifest, "media_sha256": s.media_sha256} for s in used]
    try:
        return encode({**label, "derived": True, "from_ns": from_ns, "to_ns": to_ns, "originals": originals})
    except CanonicalError as e:
        raise ClipError(f"label cannot be encoded: {e}") from e


def _open(source: ClipSource) -> InputContainer:
    if not source.path.is_file():
        raise ClipError(f"source segment missing: {source.path}")
    try:
        return av.open(str(source.path))
    except (av.FFmpegError, OSError) as e:
        raise ClipError(f"source segment not readable as media: {source.path}: {e}") from e


def _media_streams(container: InputContainer, source: ClipSource) -> list[Stream]:
    """The video stream and the audio stream if any: what a recorder segment holds and a clip copies."""
    video = [s for s in container.streams if s.type == "video"]
    audio = [s for s in container.streams if s.type == "audio"]
    if len(video) != 1 or len(audio) > 1:
        raise ClipError(f"{source.path}: expected one video and at most one audio stream")
    if video[0].start_time is None:
        raise ClipError(f"{source.path}: video stream has no frames")
    return video + audio


def _codec_signature(stream: Stream) -> tuple[object, ...]:
    ctx = stream.codec_context
    if stream.type == "video":
        return "video", ctx.name, ctx.extradata, ctx.width, ctx.height, stream.time_base
    return "audio", ctx.name, ctx.extradata, ctx.sample_rate, ctx.channels, stream.time_base


def _check_same_codecs(sources: Sequence[ClipSource]) -> None:
    """One output stream carries every source's packets, so all must share the codec parameters."""
    expected = None
    for source in sources:
        with _open(source) as container:
            signature = [_codec_signature(s) for s in _media_streams(container, source)]
        if expected is None:
            expected = signature
        elif signature != expected:
            raise ClipError(f"{source.path}: codec parameters differ from {sources[0].path}")


def _timelines(streams: Sequence[Stream], source: ClipSource) -> list[_Timeline]:
    """`start_ns` is the capture time of the segment's first video frame; every stream counts from there."""
    video_start = streams[0].start_time * streams[0].time_base
    return [_Timeline(base=source.start_ns - video_start * NS, scale=s.time_base * NS) for s in streams]


def _find_start(sources: Sequence[ClipSource], from_ns: int, to_ns: int) -> tuple[int, Fraction] | None:
    """(source index, exact UTC) of the clip's first keyframe; None when no video frame falls in the range.

    That is the last keyframe at or before from_ns, if its group of pictures reaches from_ns; else,
    as when from_ns falls in a gap between recordings or before the first, the first keyframe after.
    """
    # Every segment starts with a keyframe, so the one we want is in the last segment starting by
    # from_ns, or later.
    first = max([i for i, s in enumerate(sources) if s.start_ns <= from_ns], default=0)
    candidate: tuple[int, Fraction] | None = None
    candidate_end = Fraction(0)  # UTC end of the candidate's group of pictures so far
    for index, packet, timeline in _video_packets(sources, first):
        utc = timeline.utc(packet.pts)
        if utc >= to_ns:
            break
        if utc <= from_ns:
            if packet.is_keyframe:
                candidate = index, utc
            if candidate is not None:
                candidate_end = utc + (packet.duration or 0) * timeline.scale
            continue
        if candidate is not None and candidate_end > from_ns:
            return candidate
        if packet.is_keyframe:
            return index, utc
        candidate = None  # frames after a gap that cannot be decoded without their keyframe
    return candidate if candidate is not None and candidate_end > from_ns else None


def _video_packets(sources: Sequence[ClipSource], first: int) -> Iterator[tuple[int, av.Packet, _Timeline]]:
    for index in range(first, len(sources)):
        for packet, timeline in _packets(sources[index], video_only=True):
            yield index, packet, timeline


def _packets(source: ClipSource, video_only: bool = False) -> Iterator[tuple[av.Packet, _Timeline]]:
    """The source's packets in file order with the timeline of their stream; demux errors become ClipError."""
    with _open(source) as container:
        streams = _media_streams(container, source)
        timelines = dict(zip((s.index for s in streams), _timelines(streams, source), strict=True))
        try:
            for packet in container.demux(streams[:1] if video_only else streams):
                if packet.dts is not None:  # the demuxer's end-of-stream marker carries no data
                    yield packet, timelines[packet.stream.index]
        except av.FFmpegError as e:
            raise ClipError(f"{source.path}: cannot read media: {e}") from e


def _write(used: Sequence[ClipSource], origin: Fraction, to_ns: int, path: Path,
           label_json: bytes) -> tuple[dict[str, int], int]:
    """Copy every packet captured in [origin, to_ns) into `path`; (packets per stream type, UTC end)."""
    with _open(used[0]) as template:
        streams = _media_streams(template, used[0])
        # A stream that starts later than the video (audio, by up to a packet) gets an empty edit in
        # the movie's time scale: one that counts every stream's ticks places it exactly, where the
        # default (ms) would move it by a fraction of a millisecond.
        options = {**MUX_OPTIONS, "movie_timescale": str(math.lcm(*(s.time_base.denominator for s in streams)))}
        with av.open(str(path), "w", format="mp4", options=options) as out:
            out.metadata["title"] = TITLE
            out.metadata["comment"] = label_json.decode()
            # Copying codec parameters from an original keeps its avcC/AudioSpecificConfig and packet format.
            # The template container stays open meanwhile: its streams are read when the copies are made.
            outputs = {s.type: out.add_stream_from_template(s, opaque=True) for s in streams}
            return _copy(used, origin, to_ns, out, outputs)


def _copy(used: Sequence[ClipSource], origin: Fraction, to_ns: int, out: OutputContainer,
          outputs: Mapping[str, Stream]) -> tuple[dict[str, int], int]:
    frames = dict.fromkeys(outputs, 0)
    last_dts: dict[str, int] = {}
    end = origin
    for source in used:
        shifts: dict[str, int] = {}  # ticks added to this source's timestamps, per stream type
        for packet, timeline in _packets(source):
            kind = packet.stream.type
            utc = timeline.utc(packet.pts)
            if utc < origin or utc >= to_ns:
                continue
            # Each source is placed by its own start_ns, so a gap between recordings stays a gap.
            shift = shifts.setdefault(kind, round((timeline.base - origin) / timeline.scale))
            # Sources overlapping in time (a clock step between segments) would break the strictly
            # increasing dts that players need: push the rest of the source later instead.
            if kind in last_dts and packet.dts + shift <= last_dts[kind]:
                shift = shifts[kind] = last_dts[kind] + 1 - packet.dts
            packet.pts += shift
            packet.dts += shift
            last_dts[kind] = packet.dts
            end = max(end, utc + (packet.duration or 0) * timeline.scale)
            packet.stream = outputs[kind]
            out.mux(packet)
            frames[kind] += 1
    return frames, math.floor(end)
