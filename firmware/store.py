"""The recorder's durable store: signed footage in the protocol's store layout.

    <root>/<device>/<seq>.manifest, <seq>.mp4   signed, in protocol/layout.py's layout
    <root>/.state/next_seq                      the next sequence number, persisted before signing
    <root>/.state/head                          seq and hash of the last committed manifest
    <root>/.state/open/                         segments being written (fsynced per fragment)
    <root>/.state/receipts/                     dock receipts received for this device

Nothing under <device>/ is ever overwritten, and a file there is deleted only
when a verified gateway receipt names its manifest hash and media hash.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from firmware.durable import DurableCounter, atomic_write, fsync_dir, place
from protocol import layout, manifest, receipts, signatures
from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol.trust import TrustList


class StoreError(RuntimeError):
    pass


@dataclass(frozen=True)
class Head:
    seq: int  # -1 before the first manifest
    hash: bytes


@dataclass(frozen=True)
class StoredManifest:
    seq: int
    manifest: Manifest
    envelope_path: Path
    media_path: Path | None


class RecorderStore:
    def __init__(self, root: Path, device: str) -> None:
        if not manifest.valid_device_id(device):
            raise StoreError(f"invalid device id {device!r}")
        self.root = root
        self.device = device
        self.dir = root / device
        self.state = root / ".state"
        self.open_dir = self.state / "open"
        self.receipt_dir = self.state / "receipts"
        for d in (self.dir, self.state, self.open_dir, self.receipt_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._next_seq = DurableCounter(self.state / "next_seq")

    # -- sequence numbers and the chain head ------------------------------------------------

    def next_seq(self) -> int:
        return self._next_seq.read()

    def reserve_seq(self) -> int:
        """Take the next sequence number, durably, before anything is signed with it.

        A crash after this and before the manifest is written leaves a gap that
        the next boot's recovery record explains; a number is never used twice.
        """
        seq = self._next_seq.read()
        self._next_seq.set(seq + 1)
        return seq

    def head(self) -> Head:
        """The last committed manifest: the newest one in the store, or, once that was freed, the
        one recorded when footage was last freed."""
        path = self.state / "head"
        head = Head(-1, manifest.genesis(self.device))
        if path.exists():
            doc = json.loads(path.read_text())
            head = Head(doc["seq"], bytes.fromhex(doc["hash"]))
        # A crash between writing a manifest and recording the head: the files are the truth.
        newest = self._newest_manifest()
        if newest is not None and newest.seq > head.seq:
            head = Head(newest.seq, newest.manifest.hash)
        return head

    def _newest_manifest(self) -> StoredManifest | None:
        seqs = sorted(s for p in self.dir.iterdir() if (s := layout.seq_from_manifest_name(p.name)) is not None)
        return self.load(seqs[-1]) if seqs else None

    def _set_head(self, seq: int, digest: bytes) -> None:
        atomic_write(self.state / "head", json.dumps({"seq": seq, "hash": digest.hex()}).encode())

    # -- committing ---------------------------------------------------------------------------

    def media_path(self, seq: int, extension: str = "mp4") -> Path:
        return self.dir / layout.media_name(seq, extension)

    def commit(self, m: Manifest, envelope: bytes, media_src: Path | None = None) -> None:
        """Store a signed manifest (and move its media into place first): the manifest is the commit point."""
        if m.device != self.device:
            raise StoreError(f"manifest of {m.device} offered to {self.device}'s store")
        if media_src is not None:
            place(media_src, self.dir / m.media["name"])  # made durable, before it, by the manifest's write
        target = self.dir / layout.manifest_name(m.seq)
        if target.exists():
            raise StoreError(f"{target} exists: a sequence number is never reused")
        atomic_write(target, envelope)

    def load(self, seq: int) -> StoredManifest:
        path = self.dir / layout.manifest_name(seq)
        m = manifest.parse(signatures.open_envelope(path.read_bytes(), manifest.TYPE).payload)
        media = self.dir / m.media["name"] if m.media else None
        return StoredManifest(seq, m, path, media)

    def open_segment_path(self, session: str, index: int) -> Path:
        return self.open_dir / f"{session}-{index:06d}.mp4"

    def open_segments(self) -> list[Path]:
        """Segments left open by a power cut, oldest first."""
        return sorted(self.open_dir.glob("*.mp4"))

    def orphan_media(self) -> list[Path]:
        """Media moved into place whose manifest was never written (a cut between the two steps)."""
        manifests = {p.name.split(".")[0] for p in self.dir.glob(f"*{layout.MANIFEST_SUFFIX}")}
        return sorted(p for p in self.dir.iterdir()
                      if layout.is_media_name(p.name) and p.name.split(".")[0] not in manifests)

    # -- what the dock takes -------------------------------------------------------------------

    def stored_seqs(self) -> list[int]:
        return sorted(s for p in self.dir.iterdir() if (s := layout.seq_from_manifest_name(p.name)) is not None)

    def pending(self) -> list[StoredManifest]:
        """Manifests (and their media) that no dock receipt covers yet, oldest first."""
        received = self.received()
        return [self.load(s) for s in self.stored_seqs() if s not in received]

    def received(self) -> dict[int, tuple[str, str | None]]:
        """seq -> (manifest hash, media hash) from every stored dock receipt."""
        got: dict[int, tuple[str, str | None]] = {}
        for path in sorted(self.receipt_dir.glob("*.receipt")):
            payload = json.loads(signatures.open_envelope(path.read_bytes(), receipts.DOCK_TYPE).payload)
            for s in payload["segments"]:
                got[s["seq"]] = (s["manifest"], s["media_sha256"])
        return got

    def apply_receipt(self, envelope: bytes, gateways: TrustList) -> list[int]:
        """Verify a gateway's dock receipt for this device and keep it; return the seqs it covers.

        Entries that do not match what this store holds are ignored, so a
        receipt can never make the recorder free footage the gateway does not have.
        """
        try:
            receipt = receipts.open_receipt(envelope, receipts.DOCK_TYPE, gateways)
        except ProtocolError as exc:
            raise StoreError(f"dock receipt refused: {exc}") from exc
        if receipt["device"] != self.device:
            raise StoreError(f"dock receipt is for {receipt['device']}, not {self.device}")
        covered = [s["seq"] for s in receipt["segments"] if self._matches(s)]
        name = f"{receipt['first_seq']:012d}-{receipt['last_seq']:012d}-{receipt.envelope.payload_hash.hex()[:16]}"
        atomic_write(self.receipt_dir / f"{name}.receipt", envelope)
        return covered

    def _matches(self, entry: dict[str, object]) -> bool:
        path = self.dir / layout.manifest_name(int(entry["seq"]))  # type: ignore[arg-type]
        if not path.exists():
            return False
        stored = self.load(int(entry["seq"]))  # type: ignore[arg-type]
        media_hash = stored.manifest.media["sha256"] if stored.manifest.media else None
        return entry["manifest"] == stored.manifest.hash.hex() and entry["media_sha256"] == media_hash

    def free(self, seqs: list[int]) -> int:
        """Delete footage a dock receipt covers; refuse anything else. Returns bytes freed."""
        received = self.received()
        head = self.head()
        self._set_head(head.seq, head.hash)  # the newest manifest may be among those freed
        uncovered = [s for s in seqs if s not in received]
        if uncovered:
            raise StoreError(f"no dock receipt for seq {uncovered}: footage is kept")
        freed = 0
        for seq in seqs:
            stored = self.load(seq)
            if (stored.manifest.hash.hex(), stored.manifest.media["sha256"] if stored.manifest.media else None) \
                    != received[seq]:
                raise StoreError(f"seq {seq} differs from what the receipt names: footage is kept")
            for path in (stored.media_path, stored.envelope_path):
                if path is not None and path.exists():
                    freed += path.stat().st_size
                    os.unlink(path)
        fsync_dir(self.dir)
        return freed
