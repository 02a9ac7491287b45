"""Synthetic recordings: signed device chains written in the recorder store layout.

For tests, benchmarks and the demo of the protocol, before and beside the real
recorder: the manifests, signatures and chain are exactly what a recorder makes;
the media is deterministic pseudo-random bytes (container "application/octet-stream"),
because the chain rules do not depend on what the media holds. Recordings with
real H.264/AAC come from `liuhen sim record`.

Writes are plain (no fsync): these are test fixtures, not evidence.
"""

from __future__ import annotations

import hashlib
import random
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from protocol import layout, manifest, signatures
from protocol.manifest import Manifest

FIRMWARE = "synthetic-1"
SECOND_NS = 1_000_000_000
DEFAULT_START_NS = 1_764_000_000 * SECOND_NS  # 2025-11-24T16:00:00Z
MEDIA_CONTAINER = "application/octet-stream"


class SyntheticDevice:
    """Writes one device's signed chain, record by record, into <root>/<device>/."""

    def __init__(self, root: Path, device: str, signer: signatures.Signer, *,
                 start_ns: int = DEFAULT_START_NS, seed: int = 0) -> None:
        self.dir = Path(root) / device
        self.dir.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.signer = signer
        self.now_ns = start_ns
        self.mono_ns = 0
        self.seq = 0
        self.prev = manifest.genesis(device)
        self.session = ""
        self.source = "gnss"
        self.rng = random.Random(seed)
        self.manifests: list[Manifest] = []

    def boot(self, rtc_valid: bool = True, reason: str = "power-on") -> Manifest:
        self.session = secrets.token_hex(16)
        self.mono_ns = 0
        self.source = "rtc" if rtc_valid else "unsynced"
        return self.record(manifest.BOOT, {"rtc_valid": rtc_valid, "reason": reason})

    def reserve(self, count: int = 1) -> range:
        """Take sequence numbers that will never be signed (as a crash would)."""
        taken = range(self.seq, self.seq + count)
        self.seq += count
        return taken

    def segment(self, seconds: int = 10, size: int = 4096, *, markers: Iterable[int] = (),
                prerecord: bool = False, kind: str = manifest.SEGMENT) -> Manifest:
        name = layout.media_name(self.seq, "bin")
        data = self.rng.randbytes(size)
        (self.dir / name).write_bytes(data)
        media = {
            "name": name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": size,
            "container": MEDIA_CONTAINER,
            "codecs": [],
            "duration_ns": seconds * SECOND_NS,
            "frames": seconds * 30,
        }
        marks = [{"t_ns": self.now_ns + offset * SECOND_NS, "kind": "event"} for offset in markers]
        return self.record(kind, {}, media=media, seconds=seconds, markers=marks, prerecord=prerecord)

    def record(self, kind: str, detail: dict[str, Any], *, media: dict[str, Any] | None = None,
               seconds: int = 0, markers: list[dict[str, Any]] | None = None, prerecord: bool = False) -> Manifest:
        """Sign one manifest of any kind at the next sequence number and store it."""
        duration = seconds * SECOND_NS
        m = manifest.build({
            "device": self.device,
            "key": self.signer.keyid,
            "session": self.session,
            "seq": self.seq,
            "prev": self.prev.hex(),
            "kind": kind,
            "time": {"start_ns": self.now_ns, "end_ns": self.now_ns + duration, "source": self.source,
                     "mono_start_ns": self.mono_ns, "mono_end_ns": self.mono_ns + duration},
            "media": media,
            "track": self._track(seconds),
            "markers": markers or [],
            "assignment": None,
            "firmware": FIRMWARE,
            "prerecord": prerecord,
            "detail": detail,
        })
        envelope = signatures.seal(self.signer, manifest.TYPE, m.payload)
        (self.dir / layout.manifest_name(self.seq)).write_bytes(envelope)
        self.manifests.append(m)
        self.prev, self.seq = m.hash, self.seq + 1
        self.now_ns += duration
        self.mono_ns += duration
        return m

    def _track(self, seconds: int) -> dict[str, Any]:
        if seconds == 0:
            return {"points": [], "none_reason": "record-only"}
        lat, lon = 399_042_000 + self.rng.randrange(10_000), 1_164_074_000 + self.rng.randrange(10_000)
        points = [{"t_ns": self.now_ns + i * SECOND_NS, "lat_e7": lat + 90 * i, "lon_e7": lon + 120 * i,
                   "fix": 1, "hdop_c": 90} for i in range(seconds)]
        return {"points": points, "none_reason": None}


def typical_shift(root: Path, device: str, signer: signatures.Signer, *, segments: int = 6,
                  size: int = 4096, seed: int = 0) -> SyntheticDevice:
    """A clean recording: boot, segments with a marker, a crash with a signed recovery, more segments."""
    dev = SyntheticDevice(root, device, signer, seed=seed)
    dev.boot()
    half = segments // 2
    for i in range(half):
        dev.segment(size=size, markers=[3] if i == 1 else (), prerecord=i == 0)
    lost = dev.reserve()
    dev.boot(reason="power-loss")
    dev.record(manifest.RECOVERY, {"last_seq": lost.start - 1, "missing": [[lost.start, lost.stop - 1]],
                                   "partial": []})
    for _ in range(segments - half):
        dev.segment(size=size)
    return dev
