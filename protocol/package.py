"""Evidence packages: the sealed zip a case server exports for a court or an outside auditor.

The format is specified in docs/evidence-package.md. This module holds what the
writer (server/evidence_package.py) and the offline verifier
(liuhen/verify_package.py) share: member names, the package index
(`export.json`) and the seal kept in the zip archive comment.

The seal is a server-signed envelope over the SHA-256 of every byte of the zip
from offset 0 up to and including the End-Of-Central-Directory record's
comment-length field, i.e. all bytes except the comment that holds the seal.
Covering the length field means its value must be known before signing, so the
seal has a length fixed by the signing key and the export id (`seal_length`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from protocol import canonical, errors, log_records, manifest, signatures
from protocol.errors import ProtocolError
from protocol.fields import HEX64, IDENTIFIER, Checker
from protocol.layout import MANIFEST_SUFFIX, SEQ_DIGITS, manifest_name, seq_from_manifest_name
from protocol.tlog.proof_bundle import FILE_EXTENSION as PROOF_SUFFIX

VERSION = 1
SEAL_TYPE = "application/vnd.liuhen.package-seal.v1+json"
# Only Ed25519 seals: an ES256 signature (r, s) has a twin (r, n - s) that verifies as well, which would let
# the archive comment change without failing; the log's note key is Ed25519 anyway.
SEAL_ALG = signatures.ED25519

README = "README.txt"
INDEX = "export.json"
TRUST = "trust.json"
LOG_VKEY = "log.vkey"
CHECKPOINT = "checkpoint"
SEGMENTS, RECEIPTS, PROOFS = "segments", "receipts", "proofs"

# Member kinds.
MANIFEST, MEDIA, TOMBSTONE = "manifest", "media", "tombstone"
DOCK, SERVER = "dock", "server"
PROOF, DOCK_PROOF, TOMBSTONE_PROOF = "proof", "dock-proof", "tombstone-proof"
TOP_LEVEL = {README: "readme", TRUST: "trust", LOG_VKEY: "log-vkey", CHECKPOINT: "checkpoint"}

# Suffix after `<seq, 12 digits>` for each per-segment kind, by folder.
_SUFFIXES: dict[str, dict[str, str]] = {
    SEGMENTS: {MANIFEST: MANIFEST_SUFFIX, TOMBSTONE: ".tombstone"},
    RECEIPTS: {DOCK: ".dock", SERVER: ".server"},
    PROOFS: {PROOF: PROOF_SUFFIX, DOCK_PROOF: ".dock" + PROOF_SUFFIX, TOMBSTONE_PROOF: ".tombstone" + PROOF_SUFFIX},
}
_FOLDER_OF = {kind: folder for folder, kinds in _SUFFIXES.items() for kind in kinds}

# Read limits: everything but media is read into memory, and the index may list many files.
MAX_RECORD_BYTES = canonical.MAX_SIZE
MAX_INDEX_BYTES = 64 << 20

# End-Of-Central-Directory record (APPNOTE 4.3.16): 22 bytes, the last two the comment length.
EOCD_SIGNATURE = b"PK\x05\x06"
EOCD_SIZE = 22
MAX_COMMENT = 0xFFFF
LOCAL_HEADER_SIGNATURE = b"PK\x03\x04"

_c = Checker(errors.PACKAGE_MALFORMED)
_EXPORT_FIELDS = frozenset({"v", "id", "created_ns", "server", "actor", "reason_sha256", "case", "clip", "files"})
_CLIP_FIELDS = frozenset({"devices", "from_ns", "to_ns"})
_FILE_FIELDS = frozenset({"name", "sha256", "size"})
_SEAL_FIELDS = frozenset({"v", "sha256", "export"})
_SEQ = re.compile(rf"[0-9]{{{SEQ_DIGITS}}}")


@dataclass(frozen=True)
class Member:
    """What a member name means in the package layout."""

    kind: str
    device: str | None = None
    seq: int | None = None


def member_name(kind: str, device: str, seq: int) -> str:
    """The name of a per-segment member (not media: media keep the name their manifest gives)."""
    folder = _FOLDER_OF[kind]
    return f"{folder}/{device}/{manifest_name(seq).removesuffix(MANIFEST_SUFFIX)}{_SUFFIXES[folder][kind]}"


def media_member(device: str, media_name: str) -> str:
    return f"{SEGMENTS}/{device}/{media_name}"


def classify(name: str) -> Member | None:
    """The layout meaning of a member name, or None when the layout has no such name.

    Only these shapes exist, so absolute paths, `..`, backslashes and anything
    unexpected are refused by construction. A name classified as media must still
    be named by a manifest in the package; the verifier checks that.
    """
    if name in TOP_LEVEL:
        return Member(TOP_LEVEL[name])
    parts = name.split("/")
    if len(parts) != 3 or parts[0] not in _SUFFIXES or not IDENTIFIER.fullmatch(parts[1]):
        return None
    folder, device, file = parts
    stem, tail = file[:SEQ_DIGITS], file[SEQ_DIGITS:]
    if _SEQ.fullmatch(stem):
        for kind, suffix in _SUFFIXES[folder].items():
            if tail == suffix:
                return Member(kind, device, int(stem))
    if folder == SEGMENTS and manifest.valid_media_name(file) and seq_from_manifest_name(file) is None:
        return Member(MEDIA, device)
    return None


@dataclass(frozen=True)
class IndexEntry:
    name: str
    sha256: str
    size: int

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


def check_export(f: object) -> dict[str, Any]:
    """Validate the index object (export.json); raise ProtocolError package.malformed."""
    f = _c.exact(f, _EXPORT_FIELDS, INDEX)
    if f["v"] != VERSION or isinstance(f["v"], bool):
        raise _c.fail(f"unsupported package version {f['v']!r}")
    _c.str(f["id"], "id", IDENTIFIER)
    _c.int(f["created_ns"], "created_ns")
    _c.str(f["server"], "server", IDENTIFIER)
    _c.str(f["actor"], "actor", log_records.ACTOR, log_records.MAX_ACTOR)
    _c.str(f["reason_sha256"], "reason_sha256", HEX64)
    if f["case"] is not None:
        _c.str(f["case"], "case", max_len=log_records.MAX_CASE)
    clip = _c.exact(f["clip"], _CLIP_FIELDS, "clip")
    devices = _c.list(clip["devices"], "clip.devices", 10_000)
    for i, d in enumerate(devices):
        _c.str(d, f"clip.devices[{i}]", IDENTIFIER)
    if not devices or devices != sorted(set(devices)):
        raise _c.fail("clip.devices must be a non-empty list of distinct device ids in sorted order")
    if _c.int(clip["to_ns"], "clip.to_ns") < _c.int(clip["from_ns"], "clip.from_ns"):
        raise _c.fail("clip.to_ns is before clip.from_ns")
    names = []
    for i, entry in enumerate(_c.list(f["files"], "files", 1_000_000)):
        entry = _c.exact(entry, _FILE_FIELDS, f"files[{i}]")
        names.append(_c.str(entry["name"], f"files[{i}].name", max_len=512))
        _c.str(entry["sha256"], f"files[{i}].sha256", HEX64)
        _c.int(entry["size"], f"files[{i}].size")
    # Sorted by UTF-8 bytes and distinct: one spelling per index, and duplicates cannot hide.
    if [n.encode() for n in names] != sorted({n.encode() for n in names}) or INDEX in names:
        raise _c.fail("files must be sorted by name, without repeats and without export.json itself")
    return f


def encode_index(fields: dict[str, Any], files: list[IndexEntry]) -> bytes:
    """The canonical bytes of export.json: the caller's fields, the version and the file list."""
    index = {**fields, "v": VERSION, "files": [e.to_json() for e in files]}
    check_export(index)
    return canonical.encode(index)


def parse_index(data: bytes) -> tuple[dict[str, Any], list[IndexEntry]]:
    try:
        obj = canonical.decode(data, MAX_INDEX_BYTES)
    except canonical.CanonicalError as exc:
        raise _c.fail(f"{INDEX} is not canonical JSON: {exc}") from exc
    f = check_export(obj)
    return f, [IndexEntry(e["name"], e["sha256"], e["size"]) for e in f["files"]]


def _seal_payload(digest: bytes, export_id: str) -> bytes:
    return canonical.encode({"v": VERSION, "sha256": digest.hex(), "export": export_id})


class _PlaceholderSigner:
    """Signs with zeros: the seal's length depends on the signature's length only, not its value."""

    alg = SEAL_ALG

    def __init__(self, keyid: str) -> None:
        self.keyid = keyid

    def sign(self, message: bytes) -> bytes:
        return bytes(64)


def seal_length(keyid: str, export_id: str) -> int:
    """The byte length of the seal an Ed25519 key `keyid` makes for `export_id`."""
    return len(signatures.seal(_PlaceholderSigner(keyid), SEAL_TYPE, _seal_payload(bytes(32), export_id)))


def make_seal(signer: signatures.Signer, digest: bytes, export_id: str) -> bytes:
    if signer.alg != SEAL_ALG:
        raise ValueError(f"a package seal is signed with {SEAL_ALG}, not {signer.alg}")
    seal = signatures.seal(signer, SEAL_TYPE, _seal_payload(digest, export_id))
    if len(seal) != seal_length(signer.keyid, export_id):
        raise ValueError("the signer made a signature of unexpected length")
    return seal


@dataclass(frozen=True)
class Seal:
    envelope: signatures.Envelope
    sha256: bytes
    export: str


def open_seal(raw: bytes) -> Seal:
    """Parse the seal; the signature is checked by the caller against the key it trusts."""
    env = signatures.open_envelope(raw, SEAL_TYPE)
    if env.alg != SEAL_ALG:
        raise ProtocolError(errors.PACKAGE_SEAL_BAD, f"the seal must be signed with {SEAL_ALG}, not {env.alg}")
    try:
        f = Checker(errors.PACKAGE_SEAL_BAD).exact(canonical.decode(env.payload), _SEAL_FIELDS, "seal")
    except canonical.CanonicalError as exc:
        raise ProtocolError(errors.PACKAGE_SEAL_BAD, f"seal payload: {exc}") from exc
    if f["v"] != VERSION or not isinstance(f["sha256"], str) or not HEX64.fullmatch(f["sha256"]) \
            or not isinstance(f["export"], str):
        raise ProtocolError(errors.PACKAGE_SEAL_BAD, "seal payload fields have the wrong form")
    return Seal(env, bytes.fromhex(f["sha256"]), f["export"])


def split_seal(tail: bytes, file_size: int) -> tuple[int, bytes] | None:
    """Find the End-Of-Central-Directory record whose comment ends exactly at the end of the file.

    `tail` is the last bytes of the file (at least EOCD_SIZE + MAX_COMMENT of them, or the whole file).
    Returns (covered, comment): the number of bytes the seal digest covers and the comment, or None.
    """
    base = file_size - len(tail)
    pos = tail.rfind(EOCD_SIGNATURE)
    while pos >= 0:
        end = pos + EOCD_SIZE
        if end <= len(tail) and end + int.from_bytes(tail[end - 2 : end], "little") == len(tail):
            return base + end, tail[end:]
        pos = tail.rfind(EOCD_SIGNATURE, 0, pos)
    return None
