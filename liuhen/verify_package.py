"""Verify an evidence package offline (the format is docs/evidence-package.md).

The zip is read in place, never extracted: records are read into memory under
size limits and media are hashed as they stream by. Members must be stored, not
compressed, so no member expands beyond the bytes the archive holds. Every
problem becomes a Finding with a stable code, and the evidence inside goes
through the same chain rules as a recorder store (protocol.chain).
"""

from __future__ import annotations

import dataclasses
import hashlib
import posixpath
import struct
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol import chain, errors, log_records, manifest, package, receipts, signatures
from protocol.chain import FileFacts, Finding, Item, Report
from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol.package import IndexEntry, Member
from protocol.tlog.checkpoint import Checkpoint, VerifierKey, open_checkpoint, parse_vkey
from protocol.tlog.proof_bundle import parse_bundle, verify_bundle_entry
from protocol.trust import TrustedKey, TrustFileError, TrustList, parse_trust_list

_CHUNK = 1 << 20
# What zipfile raises on a damaged archive: its own errors, and the seeks, reads and unpacking of nonsense
# offsets and lengths that it does not check itself (NotImplementedError: a compression method it lacks).
_DAMAGED = (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OverflowError, EOFError, NotImplementedError,
            RuntimeError, struct.error, OSError)
_SEAL = "seal"
_SERVER_ROLE = "server"


class PackageUnreadable(Exception):
    """Not a zip archive at all, or the file cannot be read: a usage error rather than a finding."""


@dataclass
class PackageReport:
    path: str
    report: Report = field(default_factory=Report)
    export: dict[str, Any] | None = None
    server_key: TrustedKey | None = None  # the key that made a valid seal
    sealed_by: str | None = None  # the seal's key id, valid or not
    keys_file_trusted: bool = False  # the seal key is a server key of the reader's own --keys file
    log_vkey: str | None = None
    checkpoint: Checkpoint | None = None
    members: int = 0
    member_bytes: int = 0

    @property
    def intact(self) -> bool:
        return self.report.intact

    @property
    def log_key_is_server_key(self) -> bool:
        key = self.server_key.public_key if self.server_key else None
        return (isinstance(key, ed25519.Ed25519PublicKey) and self.log_vkey is not None
                and parse_vkey(self.log_vkey).public_key == key.public_bytes_raw())

    def to_json(self) -> dict[str, object]:
        export = {k: v for k, v in self.export.items() if k != "files"} if self.export else None
        cp = self.checkpoint
        return {
            "intact": self.intact,
            "package": {
                "path": self.path,
                "export": export,
                "server_keyid": self.sealed_by,
                "server_key_trusted": "keys-file" if self.keys_file_trusted else "package-only",
                "log_vkey": self.log_vkey,
                "log_key_is_server_key": self.log_key_is_server_key,
                "checkpoint": {"origin": cp.origin, "size": cp.size, "root": cp.root.hex()} if cp else None,
                "members": self.members,
                "bytes": self.member_bytes,
            },
            **{k: v for k, v in self.report.to_json().items() if k != "intact"},
        }


def verify_package(path: Path, keys: TrustList | None = None,
                   tolerance_ns: int = chain.DEFAULT_TIME_TOLERANCE_NS) -> PackageReport:
    """Verify the package at `path`. With `keys` (the reader's trust list) the seal must be made by one of
    its server keys; without, by the server key in the package's own trust.json, which the reader must
    then compare with the agency's published key (the report names it)."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; the OSError of opening is a usage error
    except OSError as exc:
        raise PackageUnreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
    with f:
        return _Verifier(f, str(path), keys, tolerance_ns).run()


def check_tombstone(raw: bytes, trust: TrustList, m: Manifest) -> None:
    """Check that `raw` is a server-signed tombstone recording the purge of manifest `m`'s media;
    raise ProtocolError otherwise (a bad record or signature, or the tombstone of another segment)."""
    f = log_records.open_record(raw, log_records.TOMBSTONE_TYPE, trust).fields
    if (f["device"], f["seq"], f["manifest"], f["media_sha256"]) != (m.device, m.seq, m.hash.hex(), _media_sha256(m)):
        raise ProtocolError(errors.TOMBSTONE_BAD, f"the tombstone is for another segment or media file than "
                            f"{m.device} seq {m.seq}")


def _manifest_at(raw: bytes, device: str, seq: int) -> Manifest | None:
    """The manifest stored at (device, seq) if it parses and says so; the chain check reports the rest."""
    try:
        m = manifest.parse(signatures.open_envelope(raw, manifest.TYPE).payload)
    except ProtocolError:
        return None
    return m if (m.device, m.seq) == (device, seq) else None


def _media_sha256(m: Manifest) -> str | None:
    return m.media["sha256"] if m.kind in manifest.MEDIA_KINDS else None


class _Verifier:
    def __init__(self, f: BinaryIO, path: str, keys: TrustList | None, tolerance_ns: int) -> None:
        self.f = f
        self.keys = keys
        self.tolerance_ns = tolerance_ns
        self.out = PackageReport(path)
        self.findings: list[Finding] = []
        self.records: dict[str, bytes] = {}  # members other than media, read whole
        self.facts: dict[str, FileFacts] = {}  # every member read
        self.layout: dict[str, Member] = {}  # the members that fit the package layout
        self.trust = TrustList()
        self.covered_sha256: bytes | None = None
        self.size = 0

    def add(self, code: str, location: str | None, message: str, device: str | None = None,
            seq: int | None = None) -> None:
        self.findings.append(Finding(code, device, seq, location, message))

    # -- the archive -----------------------------------------------------------------------------------

    def run(self) -> PackageReport:
        covered, comment = self.locate_seal()
        try:
            zf = zipfile.ZipFile(self.f)
            infos = zf.infolist()
        except _DAMAGED as exc:
            self.add(errors.PACKAGE_MALFORMED, None, f"the zip structure cannot be read: {exc}")
            return self.finish(Report())
        index = self.read_index(zf, infos)
        names = [e.name for e in index] if index is not None else [i.filename for i in infos]
        self.read_members(zf, infos, index, names)
        self.read_trust()
        self.check_seal(covered, comment)
        return self.finish(self.check_evidence())

    def locate_seal(self) -> tuple[int, bytes | None]:
        """The number of bytes the seal covers and the seal (None if no EOCD record ends the file);
        the SHA-256 of the covered bytes goes to `covered_sha256`."""
        f = self.f
        try:
            size = f.seek(0, 2)
            f.seek(0)
            head = f.read(len(package.LOCAL_HEADER_SIGNATURE))
            f.seek(max(0, size - package.EOCD_SIZE - package.MAX_COMMENT))
            tail = f.read()
        except OSError as exc:
            raise PackageUnreadable(f"cannot read {self.out.path}: {exc.strerror or exc}") from exc
        self.size = size
        if head != package.LOCAL_HEADER_SIGNATURE and package.EOCD_SIGNATURE not in tail:
            raise PackageUnreadable(f"{self.out.path} is not a zip file (no zip headers at its start or end)")
        split = package.split_seal(tail, size)
        if split is None:
            self.add(errors.PACKAGE_SEAL_BAD, _SEAL, "no End-Of-Central-Directory record ends the file with its "
                     "comment: bytes were added or cut off at the end, or the archive has no seal")
            return 0, None
        covered, comment = split
        digest = hashlib.sha256()
        f.seek(0)
        try:
            for chunk in iter(lambda: f.read(min(_CHUNK, covered - f.tell())), b""):
                digest.update(chunk)
        except OSError as exc:
            raise PackageUnreadable(f"cannot read {self.out.path}: {exc.strerror or exc}") from exc
        self.covered_sha256 = digest.digest()
        return covered, comment

    def read(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, keep: bool) -> bytes | None:
        """Hash a member as it streams by (keeping its bytes if asked); None when it cannot be read."""
        digest, parts, size = hashlib.sha256(), [], 0
        try:
            with zf.open(info) as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    if keep:
                        parts.append(chunk)
        except _DAMAGED as exc:
            self.add(errors.PACKAGE_MALFORMED, info.filename, f"the member cannot be read: {exc}")
            return None
        self.facts[info.filename] = FileFacts(size, digest.digest())
        self.out.members += 1
        self.out.member_bytes += size
        return b"".join(parts)

    def read_index(self, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo]) -> list[IndexEntry] | None:
        info = next((i for i in infos if i.filename == package.INDEX), None)
        if info is None:
            self.add(errors.PACKAGE_FILE_MISSING, package.INDEX, "the package has no index")
            return None
        if info.file_size > package.MAX_INDEX_BYTES or not self.readable(info):
            self.add(errors.PACKAGE_MALFORMED, package.INDEX, "the index is too large or not a stored member")
            return None
        data = self.read(zf, info, keep=True)
        if data is None:
            return None
        try:
            self.out.export, index = package.parse_index(data)
        except ProtocolError as exc:
            self.add(exc.code, package.INDEX, exc.message)
            return None
        return index

    def readable(self, info: zipfile.ZipInfo) -> bool:
        # Stored and unencrypted only: a compressed member could expand far beyond what the archive holds.
        return info.compress_type == zipfile.ZIP_STORED and not info.flag_bits & 0x1

    def read_members(self, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], index: list[IndexEntry] | None,
                     names: list[str]) -> None:
        """Compare the archive with the index and read every member the layout knows, within limits."""
        counts = Counter(i.filename for i in infos)
        for name in sorted(n for n, c in counts.items() if c > 1):
            self.add(errors.PACKAGE_FILE_DUPLICATE, name, f"{counts[name]} members have this name")
        by_name = {i.filename: i for i in infos if counts[i.filename] == 1}
        if sum(i.file_size for i in infos) > self.size:
            # Stored members occupy disjoint bytes; more than the file holds means entries overlap.
            self.add(errors.PACKAGE_MALFORMED, None, "the members claim more bytes than the archive holds")
            return
        expected = {e.name: e for e in index} if index is not None else {}
        if index is not None:
            for info in infos:
                if info.filename not in expected and info.filename != package.INDEX and counts[info.filename] == 1:
                    self.add(errors.PACKAGE_FILE_EXTRA, info.filename, "the index does not list this member")
            order = [i.filename for i in infos]
            if len(order) == len(names) + 1 and set(order) == {*names, package.INDEX} \
                    and order != [*names, package.INDEX]:
                self.add(errors.PACKAGE_INDEX_MISMATCH, None, "the members are not in index order")
        for name in names:
            if name == package.INDEX or counts[name] > 1:
                continue
            info = by_name.get(name)
            if info is None:
                self.add(errors.PACKAGE_FILE_MISSING, name, "the index lists this file but the archive lacks it")
            else:
                self.read_member(zf, info, expected.get(name))

    def read_member(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo, entry: IndexEntry | None) -> None:
        name = info.filename
        member = package.classify(name) if info.orig_filename == name else None
        if member is None:
            self.add(errors.PACKAGE_BAD_NAME, name, "not a name the package layout has")
            return
        if entry is not None and info.file_size > entry.size:
            self.add(errors.PACKAGE_INDEX_MISMATCH, name,
                     f"the member has {info.file_size} bytes, the index says {entry.size}: not read",
                     member.device, member.seq)
            return
        keep = member.kind != package.MEDIA
        if not self.readable(info) or (keep and info.file_size > package.MAX_RECORD_BYTES):
            self.add(errors.PACKAGE_MALFORMED, name, "the member is compressed, encrypted or too large for its kind")
            return
        data = self.read(zf, info, keep)
        if data is None:
            return
        self.layout[name] = member
        if keep:
            self.records[name] = data
        facts = self.facts[name]
        if entry is not None and (facts.size != entry.size or facts.sha256.hex() != entry.sha256):
            self.add(errors.PACKAGE_INDEX_MISMATCH, name,
                     f"the member has {facts.size} bytes with SHA-256 {facts.sha256.hex()[:16]}…, "
                     f"the index says {entry.size} bytes with {entry.sha256[:16]}…", member.device, member.seq)

    def read_trust(self) -> None:
        data = self.records.get(package.TRUST)
        if data is None:
            self.add(errors.PACKAGE_MALFORMED, package.TRUST, "the package has no readable trust list")
            return
        try:
            self.trust = parse_trust_list(data)
        except TrustFileError as exc:
            self.add(errors.PACKAGE_MALFORMED, package.TRUST, str(exc))

    # -- the seal --------------------------------------------------------------------------------------

    def check_seal(self, covered: int, comment: bytes | None) -> None:
        if comment is None:
            return
        try:
            seal = package.open_seal(comment)
        except ProtocolError as exc:
            self.add(errors.PACKAGE_SEAL_BAD, _SEAL, f"the archive comment is not a valid seal: {exc}")
            return
        self.out.sealed_by = seal.envelope.keyid
        if seal.sha256 != self.covered_sha256:
            self.add(errors.PACKAGE_SEAL_BAD, _SEAL, f"the first {covered} bytes of the archive are not the ones "
                     "the seal signs: the archive was changed after it was sealed")
        export = self.out.export
        if export is not None and seal.export != export["id"]:
            self.add(errors.PACKAGE_SEAL_BAD, _SEAL, f"the seal is for export {seal.export!r}, the index for "
                     f"{export['id']!r}")
        anchor = self.keys if self.keys is not None else self.trust
        try:
            key = anchor.check_envelope(seal.envelope, _SERVER_ROLE, export["server"] if export else None)
        except ProtocolError as exc:
            if self.keys is not None and exc.code in (errors.KEY_UNKNOWN, errors.KEY_WRONG_OWNER):
                self.add(errors.PACKAGE_SEAL_UNTRUSTED, _SEAL, f"package signed by a key you do not trust: {exc}")
            else:
                self.add(errors.PACKAGE_SEAL_BAD, _SEAL, str(exc))
            return
        self.out.server_key = key
        self.out.keys_file_trusted = self.keys is not None
        code = key.usage_finding(export["created_ns"]) if export else None
        if code is not None:
            self.add(code, _SEAL, f"the server key may not sign at the export time {export['created_ns']}")

    # -- the evidence ----------------------------------------------------------------------------------

    def members_of(self, kind: str) -> dict[tuple[str, int], str]:
        return {(m.device, m.seq): n for n, m in self.layout.items()
                if m.kind == kind and m.device is not None and m.seq is not None}

    def check_evidence(self) -> Report:
        manifests = self.members_of(package.MANIFEST)
        items = [Item(name, self.records[name], device, seq) for (device, seq), name in sorted(manifests.items())]

        def media_lookup(item: Item, m: Manifest) -> FileFacts | None:
            return self.facts.get(posixpath.join(posixpath.dirname(item.location), m.media["name"]))

        report = chain.verify(items, self.trust, media_lookup, tolerance_ns=self.tolerance_ns)
        parsed = {key: _manifest_at(self.records[name], *key) for key, name in manifests.items()}
        self.check_belonging(manifests, parsed)
        log = self.open_log()
        purged = set()
        for (device, seq), m in sorted(parsed.items()):
            if m is not None:
                index = self.check_proof(package.PROOF, device, seq, self.records[manifests[device, seq]], log)
                self.check_receipts(device, seq, m, index, log)
                if self.check_purge(device, seq, m, log):
                    purged.add((device, seq))
        # The chain rules know nothing of retention: a media file a valid tombstone accounts for is not missing.
        for d in report.devices.values():
            d.findings = [dataclasses.replace(f, code=errors.FILE_PURGED, message="the media file was purged by "
                                              "retention; a valid server-signed tombstone records it")
                          if f.code == errors.FILE_MISSING and (f.device, f.seq) in purged else f for f in d.findings]
        return report

    def check_belonging(self, manifests: dict[tuple[str, int], str], parsed: dict[tuple[str, int], Manifest | None]
                        ) -> None:
        """Every per-segment member needs its manifest in the package, and every device its place in the clip."""
        named_media = {package.media_member(d, m.media["name"]) for (d, _), m in parsed.items()
                       if m is not None and m.kind in manifest.MEDIA_KINDS}
        for name, member in sorted(self.layout.items()):
            if member.kind == package.MEDIA and name not in named_media:
                self.add(errors.PACKAGE_BAD_NAME, name, "no manifest in the package names this media file",
                         member.device)
            elif member.seq is not None and (member.device, member.seq) not in manifests:
                self.add(errors.PACKAGE_BAD_NAME, name, "the package holds no manifest for this member",
                         member.device, member.seq)
        clip = set(self.out.export["clip"]["devices"]) if self.out.export else None
        for device in sorted({d for d, _ in manifests}):
            if clip is not None and device not in clip:
                self.add(errors.PACKAGE_INDEX_MISMATCH, None, f"the package holds manifests of {device}, which the "
                         "index's clip does not name", device)

    def open_log(self) -> tuple[VerifierKey, bytes] | None:
        """The log key and the package checkpoint, once the checkpoint is found signed by that key."""
        vkey_file, checkpoint = self.records.get(package.LOG_VKEY), self.records.get(package.CHECKPOINT)
        if vkey_file is None or checkpoint is None:
            self.add(errors.PACKAGE_MALFORMED, None, "the package lacks a readable log key or checkpoint")
            return None
        try:
            text = vkey_file.decode("ascii")
            if not text.endswith("\n") or text.count("\n") != 1:
                raise ValueError("log.vkey is one line ending in a newline")
            vkey = parse_vkey(text[:-1])
        except (ValueError, ProtocolError) as exc:
            self.add(errors.PACKAGE_MALFORMED, package.LOG_VKEY, str(exc))
            return None
        self.out.log_vkey = str(vkey)
        try:
            self.out.checkpoint, _ = open_checkpoint(checkpoint, vkey.name, [vkey])
        except ProtocolError as exc:
            self.add(errors.PROOF_CHECKPOINT_BAD, package.CHECKPOINT, str(exc))
            return None
        return vkey, checkpoint

    def check_proof(self, kind: str, device: str, seq: int, entry: bytes,
                    log: tuple[VerifierKey, bytes] | None) -> int | None:
        """The log index at which the proof shows `entry`, or None (with a finding unless the proof is optional)."""
        name = package.member_name(kind, device, seq)
        data = self.records.get(name)
        if data is None:
            if kind == package.PROOF:
                self.add(errors.PROOF_MISSING, name, "the manifest has no inclusion proof", device, seq)
            return None
        if log is None:
            return None
        vkey, checkpoint = log
        try:
            if parse_bundle(data).checkpoint != checkpoint:
                raise ProtocolError(errors.PROOF_BAD, "the proof is against another checkpoint than the package's")
            return verify_bundle_entry(data, entry, vkey.name, [vkey]).bundle.index
        except ProtocolError as exc:
            self.add(errors.PROOF_BAD, name, str(exc), device, seq)
            return None

    def check_receipts(self, device: str, seq: int, m: Manifest, log_index: int | None,
                       log: tuple[VerifierKey, bytes] | None) -> None:
        dock_name = package.member_name(package.DOCK, device, seq)
        raw = self.records.get(dock_name)
        if raw is not None:
            dock = self.open_receipt(raw, receipts.DOCK_TYPE, dock_name, device, seq)
            if dock is not None:
                self.check_dock(dock, dock_name, device, seq, m)
            self.check_proof(package.DOCK_PROOF, device, seq, raw, log)
        server_name = package.member_name(package.SERVER, device, seq)
        raw = self.records.get(server_name)
        if raw is not None:
            server = self.open_receipt(raw, receipts.SERVER_TYPE, server_name, device, seq)
            if server is not None:
                self.check_server(server, server_name, device, seq, m, log_index)

    def open_receipt(self, raw: bytes, type_: str, name: str, device: str, seq: int) -> receipts.Receipt | None:
        try:
            return receipts.open_receipt(raw, type_, self.trust)
        except ProtocolError as exc:
            self.add(exc.code, name, exc.message, device, seq)
            return None

    def check_dock(self, r: receipts.Receipt, name: str, device: str, seq: int, m: Manifest) -> None:
        entry = next((s for s in r["segments"] if s["seq"] == seq), None)
        if r["device"] != device or entry is None:
            self.add(errors.RECEIPT_MISMATCH, name, f"the dock receipt does not cover {device} seq {seq}", device, seq)
            return
        if (entry["manifest"], entry["media_sha256"]) != (m.hash.hex(), _media_sha256(m)):
            self.add(errors.RECEIPT_MISMATCH, name, "the dock receipt names another manifest or media hash",
                     device, seq)
        if r["last_seq"] == seq and r["head"] != m.hash.hex():
            self.add(errors.RECEIPT_MISMATCH, name, "the dock receipt's head is not this manifest", device, seq)
        if entry["result"] != receipts.RESULT_OK:
            self.add(errors.RECEIPT_QUARANTINED, name, f"the gateway found {entry['result']} on receipt", device, seq)

    def check_server(self, r: receipts.Receipt, name: str, device: str, seq: int, m: Manifest,
                     log_index: int | None) -> None:
        said = (r["device"], r["seq"], r["manifest"], r["media_sha256"])
        if said != (device, seq, m.hash.hex(), _media_sha256(m)):
            self.add(errors.RECEIPT_MISMATCH, name, "the server receipt names another segment, manifest or media hash",
                     device, seq)
        if log_index is not None and r["log_index"] != log_index:
            self.add(errors.RECEIPT_MISMATCH, name, f"the server receipt says log index {r['log_index']}, the "
                     f"proof shows the manifest at {log_index}", device, seq)
        if r["status"] != receipts.STORED:
            self.add(errors.RECEIPT_QUARANTINED, name, f"the server quarantined the segment on receipt: "
                     f"{', '.join(r['findings'])}", device, seq)

    def check_purge(self, device: str, seq: int, m: Manifest, log: tuple[VerifierKey, bytes] | None) -> bool:
        name = package.member_name(package.TOMBSTONE, device, seq)
        raw = self.records.get(name)
        if raw is None:
            return False
        self.check_proof(package.TOMBSTONE_PROOF, device, seq, raw, log)
        try:
            check_tombstone(raw, self.trust, m)
        except ProtocolError as exc:
            self.add(exc.code, name, exc.message, device, seq)
            return False
        return True

    def finish(self, report: Report) -> PackageReport:
        for f in self.findings:
            (report.unattributed if f.device is None else report.device(f.device).findings).append(f)
        self.out.report = report
        return self.out
