"""Segments rows made straight in the index, as ingest (server/ingest.py) makes them, with every field that
search and retention look at under the test's control: time, track, markers, officer assignment, status,
when the server received it, and which media (two manifests may name the same bytes). Each row has a real
manifest signed by an enrolled recorder key in a real chain, its log entry, server receipt and blob.
The media is random bytes: nothing here plays it (tests/server/footage.py makes real fMP4)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from protocol import layout, manifest, receipts, signatures
from server.schema import segment_markers, segments
from server.services import Services
from tests.server.footage import enroll_keys

SECOND = 10**9
DAY = 86_400 * SECOND
GATEWAY = "GW-1"


def e7(degrees: float) -> int:
    return round(degrees * 10**7)


@dataclass(frozen=True)
class Stored:
    id: int
    manifest: str
    media_sha256: str | None
    media_size: int | None
    envelope: bytes
    log_index: int


class Recorder:
    """One enrolled recorder of `unit`, checked out to `officer`, whose manifests go straight into the index."""

    def __init__(self, s: Services, device: str, *, unit: str | None = "U1", officer: str | None = None) -> None:
        self.s, self.device, self.officer = s, device, officer
        self.signer = signatures.KeySigner(signatures.generate())
        enroll_keys(s, devices={device: self.signer}, gateways=[], unit=unit)
        self.unit = unit
        self.seq, self.prev, self.session = 0, manifest.genesis(device).hex(), secrets.token_hex(16)

    def segment(self, start_ns: int, seconds: int = 10, *, track: Sequence[tuple[int, int]] = (),
                markers: Sequence[tuple[int, str]] = (), status: str = receipts.STORED,
                received_ns: int | None = None, media: bytes | None = None) -> Stored:
        """A media segment: `track` points (lat_e7, lon_e7) one second apart, `markers` (offset s, kind)."""
        data = os.urandom(1024) if media is None else media
        return self._store(manifest.SEGMENT, start_ns, seconds, track, markers, status, received_ns, data)

    def record(self, kind: str, start_ns: int) -> Stored:
        """A record without media (boot, recovery, ...)."""
        return self._store(kind, start_ns, 0, (), (), receipts.STORED, None, None)

    def _store(self, kind: str, start_ns: int, seconds: int, track: Sequence[tuple[int, int]],
               markers: Sequence[tuple[int, str]], status: str, received_ns: int | None, data: bytes | None) -> Stored:
        s = self.s
        sha256 = hashlib.sha256(data).hexdigest() if data is not None else None
        m = manifest.build({
            "device": self.device, "key": self.signer.keyid, "session": self.session, "seq": self.seq,
            "prev": self.prev, "kind": kind,
            "time": {"start_ns": start_ns, "end_ns": start_ns + seconds * SECOND, "source": "gnss",
                     "mono_start_ns": 0, "mono_end_ns": seconds * SECOND},
            "media": None if data is None else {
                "name": layout.media_name(self.seq, "mp4"), "sha256": sha256, "size": len(data),
                "container": "mp4-fragmented", "codecs": ["avc1.64001f"], "duration_ns": seconds * SECOND,
                "frames": seconds * 30},
            "track": {"points": [{"t_ns": start_ns + i * SECOND, "lat_e7": lat, "lon_e7": lon, "fix": 1, "hdop_c": 90}
                                 for i, (lat, lon) in enumerate(track)],
                      "none_reason": None if track else "no-fix"},
            "markers": [{"t_ns": start_ns + offset * SECOND, "kind": k} for offset, k in markers],
            "assignment": {"officer": self.officer, "ref": "ab" * 32} if self.officer else None,
            "firmware": "test-1", "prerecord": False, "detail": {},
        })
        self.seq, self.prev = self.seq + 1, m.hash.hex()
        envelope = signatures.seal(self.signer, manifest.TYPE, m.payload)
        if data is not None:
            staged = s.config.data_dir / f"staged-{sha256}"
            staged.write_bytes(data)
            s.blobs.put_file(staged, sha256)
            staged.unlink()
        findings = [] if status == receipts.STORED else [{"code": "chain.broken_link", "message": "test"}]
        now = s.clock()
        received = now if received_ns is None else received_ns
        lats, lons = [p[0] for p in track], [p[1] for p in track]
        with s.db.write() as conn:
            log_index = s.log.append(conn, [("manifest", envelope)], now)
            receipt = receipts.issue(s.identity.signer, receipts.SERVER_TYPE, {
                "server": s.identity.name, "gateway": GATEWAY, "device": self.device, "seq": m.seq,
                "manifest": m.hash.hex(), "media_sha256": sha256, "received_ns": received, "log_index": log_index,
                "status": status, "findings": [f["code"] for f in findings]})
            row: dict[str, Any] = {
                "manifest": m.hash.hex(), "device": self.device, "seq": m.seq, "kind": kind, "start_ns": start_ns,
                "end_ns": m.time["end_ns"], "officer": self.officer, "unit": self.unit,
                "min_lat_e7": min(lats, default=None), "max_lat_e7": max(lats, default=None),
                "min_lon_e7": min(lons, default=None), "max_lon_e7": max(lons, default=None),
                "markers": len(markers), "media_name": m.media["name"] if m.media else None, "media_sha256": sha256,
                "media_size": None if data is None else len(data), "status": status,
                "findings": json.dumps(findings), "gateway": GATEWAY, "received_ns": received,
                "log_index": log_index, "envelope": envelope, "server_receipt": receipt}
            segment_id = conn.execute(insert(segments).values(**row)).inserted_primary_key[0]
            if markers:
                conn.execute(insert(segment_markers), [{"segment_id": segment_id, "t_ns": k["t_ns"], "kind": k["kind"]}
                                                       for k in m.fields["markers"]])
        return Stored(segment_id, m.hash.hex(), sha256, row["media_size"], envelope, log_index)
