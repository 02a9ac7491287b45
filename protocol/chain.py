"""Device chain verification: signatures, keys, media files and the hash chain.

Pure: the caller supplies the envelope bytes it found and a `media_lookup`
callback that returns the size and SHA-256 of the media file a manifest names
(or None when it is missing), so files are read once, by whoever holds them.
Every problem becomes a Finding with a stable code from `protocol.errors`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from protocol import errors, manifest, signatures
from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol.trust import TrustList

DEFAULT_TIME_TOLERANCE_NS = 2_000_000_000


@dataclass(frozen=True)
class FileFacts:
    size: int
    sha256: bytes


@dataclass(frozen=True)
class Item:
    """One stored manifest envelope and where the store says it belongs."""

    location: str
    envelope: bytes
    claimed_device: str | None = None
    claimed_seq: int | None = None


@dataclass(frozen=True)
class Finding:
    code: str
    device: str | None
    seq: int | None
    location: str | None
    message: str

    @property
    def informational(self) -> bool:
        return self.code in errors.INFORMATIONAL

    def to_json(self) -> dict[str, object]:
        return {"code": self.code, "device": self.device, "seq": self.seq,
                "location": self.location, "message": self.message}


@dataclass
class DeviceReport:
    device: str
    manifests: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: bytes | None = None
    sessions: int = 0
    media_files: int = 0
    media_bytes: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return all(f.informational for f in self.findings)

    def to_json(self) -> dict[str, object]:
        return {
            "device": self.device,
            "intact": self.intact,
            "manifests": self.manifests,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "head": self.head.hex() if self.head else None,
            "sessions": self.sessions,
            "media_files": self.media_files,
            "media_bytes": self.media_bytes,
            "findings": [f.to_json() for f in self.findings],
        }


@dataclass
class Report:
    devices: dict[str, DeviceReport] = field(default_factory=dict)
    # Findings that cannot be attributed to a device (unparseable envelopes).
    unattributed: list[Finding] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.unattributed and all(d.intact for d in self.devices.values())

    def findings(self) -> list[Finding]:
        return self.unattributed + [f for d in self.devices.values() for f in d.findings]

    def device(self, name: str) -> DeviceReport:
        return self.devices.setdefault(name, DeviceReport(name))

    def to_json(self) -> dict[str, object]:
        return {
            "intact": self.intact,
            "devices": [d.to_json() for d in sorted(self.devices.values(), key=lambda d: d.device)],
            "unattributed": [f.to_json() for f in self.unattributed],
        }


@dataclass(frozen=True)
class _Entry:
    item: Item
    manifest: Manifest


MediaLookup = Callable[[Item, Manifest], FileFacts | None]


class _Verifier:
    def __init__(self, trust: TrustList, media_lookup: MediaLookup, tolerance_ns: int) -> None:
        self.trust = trust
        self.media_lookup = media_lookup
        self.tolerance_ns = tolerance_ns
        self.report = Report()

    def add(self, code: str, device: str | None, seq: int | None, location: str | None, message: str) -> None:
        finding = Finding(code, device, seq, location, message)
        if device is None:
            self.report.unattributed.append(finding)
        else:
            self.report.device(device).findings.append(finding)

    def open_item(self, item: Item) -> Manifest | None:
        try:
            env = signatures.open_envelope(item.envelope, manifest.TYPE)
            m = manifest.parse(env.payload)
        except ProtocolError as exc:
            self.add(exc.code, item.claimed_device, item.claimed_seq, item.location, exc.message)
            return None
        if item.claimed_device is not None and item.claimed_device != m.device:
            self.add(errors.DEVICE_REPLAYED, item.claimed_device, m.seq, item.location,
                     f"manifest of device {m.device} (seq {m.seq}) stored as {item.claimed_device}'s")
            return None
        self.check_signature(item, env, m)
        if item.claimed_seq is not None and item.claimed_seq != m.seq:
            self.add(errors.CHAIN_REORDERED, m.device, m.seq, item.location,
                     f"manifest states seq {m.seq} but is stored at position {item.claimed_seq}")
        self.check_media(item, m)
        return m

    def check_signature(self, item: Item, env: signatures.Envelope, m: Manifest) -> None:
        if m.key != env.keyid:
            self.add(errors.MANIFEST_KEY_MISMATCH, m.device, m.seq, item.location,
                     f"manifest names key {m.key[:16]}… but was signed by {env.keyid[:16]}…")
            return
        try:
            key = self.trust.check_envelope(env, "device", m.device)
        except ProtocolError as exc:
            self.add(exc.code, m.device, m.seq, item.location, exc.message)
            return
        code = key.usage_finding(m.time["start_ns"], m.seq)
        if code is not None:
            self.add(code, m.device, m.seq, item.location,
                     f"key {key.keyid[:16]}… of {key.owner} may not sign seq {m.seq} at {m.time['start_ns']}")

    def check_media(self, item: Item, m: Manifest) -> None:
        if m.kind not in manifest.MEDIA_KINDS:
            return
        media = m.media
        facts = self.media_lookup(item, m)
        where = f"{item.location}: {media['name']}"
        if facts is None:
            self.add(errors.FILE_MISSING, m.device, m.seq, item.location, f"media file {media['name']} is missing")
            return
        dev = self.report.device(m.device)
        dev.media_files += 1
        dev.media_bytes += facts.size
        if facts.size < media["size"]:
            self.add(errors.FILE_TRUNCATED, m.device, m.seq, where,
                     f"media file has {facts.size} bytes, manifest says {media['size']}")
        elif facts.size > media["size"]:
            self.add(errors.FILE_SIZE_MISMATCH, m.device, m.seq, where,
                     f"media file has {facts.size} bytes, manifest says {media['size']}")
        elif facts.sha256.hex() != media["sha256"]:
            self.add(errors.FILE_HASH_MISMATCH, m.device, m.seq, where,
                     f"media SHA-256 is {facts.sha256.hex()}, manifest says {media['sha256']}")


def _dedupe(v: _Verifier, device: str, entries: list[_Entry]) -> dict[int, _Entry]:
    """One entry per seq; repeats are duplicates (same bytes) or forks (different bytes)."""
    by_seq: dict[int, _Entry] = {}
    for e in sorted(entries, key=lambda e: (e.manifest.seq, e.item.location)):
        seq = e.manifest.seq
        first = by_seq.get(seq)
        if first is None:
            by_seq[seq] = e
        elif first.manifest.payload == e.manifest.payload:
            v.add(errors.CHAIN_DUPLICATE_SEQ, device, seq, e.item.location,
                  f"the same manifest for seq {seq} is also at {first.item.location}")
        else:
            v.add(errors.CHAIN_FORK, device, seq, e.item.location,
                  f"a different manifest for seq {seq} is at {first.item.location}")
    return by_seq


def _explained(missing: range, declared: list[tuple[int, int]]) -> bool:
    return all(any(a <= s <= b for a, b in declared) for s in missing)


def _check_link(v: _Verifier, device: str, a: _Entry | None, b: _Entry, declared: list[tuple[int, int]],
                head: tuple[int, bytes] | None) -> None:
    """Check b's prev against its predecessor a (or against genesis / the known head)."""
    m = b.manifest
    if a is None:
        prev_seq, prev_hash = (-1, manifest.genesis(device)) if head is None else head
        if head is None and m.seq != 0:
            return  # earlier manifests are not here: nothing to link to
    else:
        prev_seq, prev_hash = a.manifest.seq, a.manifest.hash
    if m.seq == prev_seq + 1:
        if m.prev != prev_hash:
            code = errors.CHAIN_BROKEN_LINK if a is not None or head is None else errors.CHAIN_HEAD_MISMATCH
            v.add(code, device, m.seq, b.item.location,
                  f"prev {m.prev.hex()[:16]}… is not the hash of seq {prev_seq} ({prev_hash.hex()[:16]}…)")
        return
    if m.seq <= prev_seq:
        v.add(errors.CHAIN_HEAD_MISMATCH, device, m.seq, b.item.location,
              f"seq {m.seq} does not follow the known head at seq {prev_seq}")
        return
    missing = range(prev_seq + 1, m.seq)
    span = f"seq {missing.start}..{missing.stop - 1}"
    if m.prev == prev_hash and _explained(missing, declared):
        v.add(errors.CHAIN_GAP_EXPLAINED, device, m.seq, b.item.location,
              f"{span} never signed, explained by a signed record")
    elif m.prev == prev_hash:
        v.add(errors.CHAIN_GAP_UNEXPLAINED, device, m.seq, b.item.location, f"{span} missing, nothing explains it")
    else:
        v.add(errors.CHAIN_GAP_UNEXPLAINED, device, m.seq, b.item.location,
              f"{span} missing and seq {m.seq} links to a manifest that is not here: manifests were removed")


def _check_time(v: _Verifier, device: str, a: _Entry, b: _Entry) -> None:
    ta, tb = a.manifest.time, b.manifest.time
    same_session = a.manifest.session == b.manifest.session
    if same_session and tb["mono_start_ns"] + v.tolerance_ns < ta["mono_end_ns"]:
        v.add(errors.TIME_BACKWARDS, device, b.manifest.seq, b.item.location,
              "the monotonic clock goes backwards within one boot session")
        return
    comparable = "unsynced" not in (ta["source"], tb["source"]) and b.manifest.kind != manifest.CLOCK_SYNC
    if comparable and tb["start_ns"] + v.tolerance_ns < ta["end_ns"]:
        back_ms = (ta["end_ns"] - tb["start_ns"]) // 1_000_000
        v.add(errors.TIME_BACKWARDS, device, b.manifest.seq, b.item.location,
              f"starts {back_ms} ms before seq {a.manifest.seq} ended")


def _check_session(v: _Verifier, device: str, a: _Entry, b: _Entry, seen: set[str]) -> None:
    sb = b.manifest.session
    if sb == a.manifest.session:
        return
    if sb in seen:
        v.add(errors.CHAIN_SESSION_SPLICE, device, b.manifest.seq, b.item.location,
              f"boot session {sb[:8]}… resumes after another session ran")
    elif b.manifest.kind != manifest.BOOT:
        v.add(errors.CHAIN_SESSION_SPLICE, device, b.manifest.seq, b.item.location,
              f"boot session {sb[:8]}… starts with a {b.manifest.kind} record instead of a boot record")


def _verify_device(v: _Verifier, device: str, entries: list[_Entry], head: tuple[int, bytes] | None) -> None:
    by_seq = _dedupe(v, device, entries)
    ordered = [by_seq[s] for s in sorted(by_seq)]
    declared = [r for e in ordered for r in e.manifest.missing_ranges()]
    report = v.report.device(device)
    seen_sessions: set[str] = set()
    prev: _Entry | None = None
    prev_timed: _Entry | None = None  # recovered segments carry the time they were recorded, before the boot
    for e in ordered:
        _check_link(v, device, prev, e, declared, head)
        if prev is not None:
            _check_session(v, device, prev, e, seen_sessions)
        if e.manifest.kind != manifest.RECOVERED_SEGMENT:
            if prev_timed is not None:
                _check_time(v, device, prev_timed, e)
            prev_timed = e
        seen_sessions.add(e.manifest.session)
        prev = e
    report.manifests = len(ordered)
    report.sessions = len(seen_sessions)
    if ordered:
        report.first_seq, report.last_seq = ordered[0].manifest.seq, ordered[-1].manifest.seq
        report.head = ordered[-1].manifest.hash


def verify(
    items: Iterable[Item],
    trust: TrustList,
    media_lookup: MediaLookup,
    known_heads: Mapping[str, tuple[int, bytes]] | None = None,
    tolerance_ns: int = DEFAULT_TIME_TOLERANCE_NS,
) -> Report:
    """Verify stored manifests and their media; `known_heads` maps device -> (seq, manifest hash)
    already committed elsewhere (a gateway's last receipt), which the chain must continue."""
    v = _Verifier(trust, media_lookup, tolerance_ns)
    per_device: dict[str, list[_Entry]] = {}
    for item in items:
        m = v.open_item(item)
        if m is not None:
            per_device.setdefault(m.device, []).append(_Entry(item, m))
    heads = known_heads or {}
    for device, entries in per_device.items():
        _verify_device(v, device, entries, heads.get(device))
    return v.report
