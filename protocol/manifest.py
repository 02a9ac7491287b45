"""Segment manifest v1: what a recorder signs for every segment and every record.

The payload is the canonical encoding of one object; see docs/protocol.md,
"Segment manifest", for every field. Parsing is strict: unknown fields, missing
fields and wrong types are errors, so two verifiers never read one manifest in
two ways.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from protocol import canonical, errors
from protocol.errors import ProtocolError
from protocol.fields import HEX32, HEX64, IDENTIFIER, Checker

TYPE = "application/vnd.liuhen.manifest.v1+json"
VERSION = 1

BOOT = "boot"
SEGMENT = "segment"
RECOVERED_SEGMENT = "recovered-segment"
RECOVERY = "recovery"
GAP = "gap"
STORAGE_FULL = "storage-full"
CLOCK_SYNC = "clock-sync"
ASSIGNMENT = "assignment"
MARKER = "marker"
TAMPER = "tamper"
KINDS = (BOOT, SEGMENT, RECOVERED_SEGMENT, RECOVERY, GAP, STORAGE_FULL, CLOCK_SYNC, ASSIGNMENT, MARKER, TAMPER)
MEDIA_KINDS = (SEGMENT, RECOVERED_SEGMENT)
# Records that may state which sequence numbers were reserved but never signed.
GAP_KINDS = (RECOVERY, GAP, STORAGE_FULL)

CLOCK_SOURCES = ("gnss", "dock", "rtc", "unsynced")
_MEDIA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")

_TOP_FIELDS = frozenset(
    {"v", "device", "key", "session", "seq", "prev", "kind", "time", "media", "track", "markers",
     "assignment", "firmware", "prerecord", "detail"}
)
_TIME_FIELDS = frozenset({"start_ns", "end_ns", "source", "mono_start_ns", "mono_end_ns"})
_MEDIA_FIELDS = frozenset({"name", "sha256", "size", "container", "codecs", "duration_ns", "frames"})
_POINT_FIELDS = frozenset({"t_ns", "lat_e7", "lon_e7", "fix", "hdop_c"})
_MARKER_FIELDS = frozenset({"t_ns", "kind"})
_ASSIGNMENT_FIELDS = frozenset({"officer", "ref"})
_TRACK_FIELDS = frozenset({"points", "none_reason"})


def genesis(device: str) -> bytes:
    """The `prev` of a device's first manifest: binds the chain's start to the device."""
    return hashlib.sha256(b"LIUHEN-GENESIS-V1 " + device.encode("utf-8")).digest()


def valid_device_id(device: str) -> bool:
    return bool(IDENTIFIER.fullmatch(device))


def valid_media_name(name: str) -> bool:
    return bool(_MEDIA_NAME.fullmatch(name)) and name not in (".", "..")


@dataclass(frozen=True)
class Manifest:
    """A parsed manifest; `payload` is the exact canonical bytes it came from."""

    fields: dict[str, Any]
    payload: bytes

    @property
    def hash(self) -> bytes:
        return hashlib.sha256(self.payload).digest()

    device = property(lambda self: self.fields["device"])
    key = property(lambda self: self.fields["key"])
    session = property(lambda self: self.fields["session"])
    seq = property(lambda self: self.fields["seq"])
    kind = property(lambda self: self.fields["kind"])
    time = property(lambda self: self.fields["time"])
    media = property(lambda self: self.fields["media"])
    detail = property(lambda self: self.fields["detail"])

    @property
    def prev(self) -> bytes:
        return bytes.fromhex(self.fields["prev"])

    def missing_ranges(self) -> list[tuple[int, int]]:
        """Sequence ranges this record declares reserved-but-unsigned (inclusive)."""
        if self.kind not in GAP_KINDS:
            return []
        return [(a, b) for a, b in self.fields["detail"].get("missing", [])]


_c = Checker(errors.MANIFEST_MALFORMED)


def _check_time(t: object) -> None:
    t = _c.exact(t, _TIME_FIELDS, "time")
    start, end = _c.int(t["start_ns"], "time.start_ns"), _c.int(t["end_ns"], "time.end_ns")
    if end < start:
        raise _c.fail("time.end_ns is before time.start_ns")
    if t["source"] not in CLOCK_SOURCES:
        raise _c.fail(f"time.source must be one of {CLOCK_SOURCES}")
    if _c.int(t["mono_end_ns"], "time.mono_end_ns") < _c.int(t["mono_start_ns"], "time.mono_start_ns"):
        raise _c.fail("time.mono_end_ns is before time.mono_start_ns")


def _check_media(kind: str, media: object) -> None:
    if kind not in MEDIA_KINDS:
        if media is not None:
            raise _c.fail(f"a {kind} record carries no media (media must be null)")
        return
    m = _c.exact(media, _MEDIA_FIELDS, "media")
    name = _c.str(m["name"], "media.name", max_len=128)
    if not valid_media_name(name):
        raise _c.fail(f"media.name {name!r} is not a plain file name")
    _c.str(m["sha256"], "media.sha256", HEX64)
    _c.int(m["size"], "media.size")
    _c.str(m["container"], "media.container", max_len=64)
    for i, codec in enumerate(_c.list(m["codecs"], "media.codecs", 8)):
        _c.str(codec, f"media.codecs[{i}]", max_len=64)
    _c.int(m["duration_ns"], "media.duration_ns")
    _c.int(m["frames"], "media.frames")


def _check_track(track: object) -> None:
    track = _c.exact(track, _TRACK_FIELDS, "track")
    points = _c.list(track["points"], "track.points")
    for i, p in enumerate(points):
        p = _c.exact(p, _POINT_FIELDS, f"track.points[{i}]")
        _c.int(p["t_ns"], f"track.points[{i}].t_ns")
        _c.int(p["lat_e7"], f"track.points[{i}].lat_e7", -900_000_000, 900_000_000)
        _c.int(p["lon_e7"], f"track.points[{i}].lon_e7", -1_800_000_000, 1_800_000_000)
        _c.int(p["fix"], f"track.points[{i}].fix", 0, 9)
        _c.int(p["hdop_c"], f"track.points[{i}].hdop_c", 0, 99_999)
    reason = track["none_reason"]
    if points and reason is not None:
        raise _c.fail("track.none_reason must be null when there are points")
    if not points:
        _c.str(reason, "track.none_reason (required when there are no points)")


def _check_markers(markers: object) -> None:
    for i, m in enumerate(_c.list(markers, "markers", 1000)):
        m = _c.exact(m, _MARKER_FIELDS, f"markers[{i}]")
        _c.int(m["t_ns"], f"markers[{i}].t_ns")
        _c.str(m["kind"], f"markers[{i}].kind", max_len=64)


def _check_assignment(assignment: object) -> None:
    if assignment is None:
        return
    a = _c.exact(assignment, _ASSIGNMENT_FIELDS, "assignment")
    _c.str(a["officer"], "assignment.officer", max_len=64)
    _c.str(a["ref"], "assignment.ref", HEX64)


def _check_detail(kind: str, seq: int, detail: object) -> None:
    if not isinstance(detail, dict):
        raise _c.fail("detail must be an object")
    if kind not in GAP_KINDS or "missing" not in detail:
        return
    for i, pair in enumerate(_c.list(detail["missing"], "detail.missing", 1000)):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _c.fail(f"detail.missing[{i}] must be [first, last]")
        first, last = _c.int(pair[0], f"detail.missing[{i}][0]"), _c.int(pair[1], f"detail.missing[{i}][1]")
        if not first <= last < seq:
            raise _c.fail(f"detail.missing[{i}] must satisfy first <= last < seq")


def check_fields(f: object) -> dict[str, Any]:
    """Validate a manifest object against v1; return it or raise MANIFEST_MALFORMED."""
    f = _c.exact(f, _TOP_FIELDS, "manifest")
    if f["v"] != VERSION or isinstance(f["v"], bool):
        raise _c.fail(f"unsupported manifest version {f['v']!r}")
    _c.str(f["device"], "device", IDENTIFIER)
    _c.str(f["key"], "key", HEX64)
    _c.str(f["session"], "session", HEX32)
    seq = _c.int(f["seq"], "seq")
    _c.str(f["prev"], "prev", HEX64)
    kind = f["kind"]
    if kind not in KINDS:
        raise _c.fail(f"kind must be one of {KINDS}, not {kind!r}")
    _check_time(f["time"])
    _check_media(kind, f["media"])
    _check_track(f["track"])
    _check_markers(f["markers"])
    _check_assignment(f["assignment"])
    _c.str(f["firmware"], "firmware", max_len=64)
    _c.bool(f["prerecord"], "prerecord")
    _check_detail(kind, seq, f["detail"])
    return f


def parse(payload: bytes) -> Manifest:
    """Parse manifest payload bytes; raise ProtocolError (non-canonical or malformed)."""
    try:
        obj = canonical.decode(payload)
    except canonical.CanonicalError as exc:
        code = errors.MANIFEST_NON_CANONICAL if exc.code == "canonical.non_canonical" else errors.MANIFEST_MALFORMED
        raise ProtocolError(code, f"manifest bytes: {exc}") from exc
    return Manifest(check_fields(obj), payload)


def build(fields: dict[str, Any]) -> Manifest:
    """Validate and encode a manifest object (what a recorder does before signing)."""
    fields = {"v": VERSION, **fields}
    check_fields(fields)
    return Manifest(fields, canonical.encode(fields))
