"""C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, and tlog checkpoints (c2sp.org/tlog-checkpoint).

A note is text ending in a newline, a blank line, then one or more lines
`— <key name> base64(4-byte key ID || signature)`. Parsing is strict: anything
the specification does not allow is rejected with a `NoteError` naming the
reason, and base64 must be canonical so that no two byte strings carry the same
signature or root. Opening a note returns the signed text exactly as it was
received (invariant 5: never re-serialize to verify).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import ProtocolError
from protocol.tlog.merkle import HASH_SIZE

SIG_TYPE_ED25519 = 0x01
KEY_ID_SIZE = 4
ED25519_KEY_SIZE = 32
ED25519_SIG_SIZE = 64
# The spec requires accepting at least 16; the Go reference (golang.org/x/mod/sumdb/note) stops at 100.
MAX_SIGNATURES = 100
MAX_TREE_SIZE = 2**64 - 1
SIGNATURE_PREFIX = "\u2014 "  # EM DASH, space

NOTE_MALFORMED = "tlog.note_malformed"
NOTE_BAD_SIGNATURE = "tlog.note_bad_signature"
NOTE_UNVERIFIED = "tlog.note_unverified"
VKEY_MALFORMED = "tlog.vkey_malformed"
VKEY_UNSUPPORTED = "tlog.vkey_unsupported"
VKEY_AMBIGUOUS = "tlog.vkey_ambiguous"
CHECKPOINT_MALFORMED = "tlog.checkpoint_malformed"
CHECKPOINT_WRONG_ORIGIN = "tlog.checkpoint_wrong_origin"

_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_KEY_ID_HEX = re.compile(r"[0-9a-f]{8}")


class NoteError(ProtocolError):
    """A note, verifier key or checkpoint was rejected; `code` is one of the codes above."""


def decode_base64(text: str) -> bytes | None:
    """Standard padded base64 (RFC 4648 §4) in its one canonical spelling, else None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    # Unused trailing bits let several spellings decode alike; accept only the one we would write.
    return raw if base64.b64encode(raw).decode("ascii") == text else None


def encode_base64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def parse_decimal(text: str) -> int | None:
    """An ASCII decimal without leading zeroes that fits in 64 bits, else None."""
    if not _DECIMAL.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_TREE_SIZE else None


def is_valid_key_name(name: str) -> bool:
    """Key names are non-empty and hold no Unicode space, control character or '+'."""
    return bool(name) and "+" not in name and not any(c.isspace() or c < " " for c in name)


def ed25519_key_id(name: str, public_key: bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([SIG_TYPE_ED25519]) + public_key).digest()[:KEY_ID_SIZE]


@dataclass(frozen=True)
class VerifierKey:
    """An Ed25519 note verifier key: the key name, its 4-byte key ID and the raw 32-byte public key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __str__(self) -> str:
        """The vkey string `<name>+<hex key ID>+<base64(0x01 || public key)>`."""
        material = encode_base64(bytes([SIG_TYPE_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{material}"

    def verify(self, text: bytes, signature: bytes) -> bool:
        if len(signature) != ED25519_SIG_SIZE:
            return False
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, text)
        except InvalidSignature:
            return False
        return True


def verifier_key(name: str, public_key: bytes) -> VerifierKey:
    """The verifier key for an Ed25519 public key under `name`."""
    if not is_valid_key_name(name):
        raise NoteError(VKEY_MALFORMED, f"invalid key name {name!r}")
    if len(public_key) != ED25519_KEY_SIZE:
        raise NoteError(VKEY_MALFORMED, f"an Ed25519 public key is {ED25519_KEY_SIZE} bytes")
    return VerifierKey(name, ed25519_key_id(name, public_key), public_key)


def parse_vkey(vkey: str) -> VerifierKey:
    """Parse `<name>+<8 hex>+<base64(type || key)>`; only Ed25519 (type 0x01) is supported."""
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise NoteError(VKEY_MALFORMED, "a verifier key has three '+'-separated parts")
    name, id_hex, material_b64 = parts
    if not _KEY_ID_HEX.fullmatch(id_hex):
        raise NoteError(VKEY_MALFORMED, "the key ID must be 8 lowercase hex digits")
    material = decode_base64(material_b64)
    if not material:
        raise NoteError(VKEY_MALFORMED, "the key material is not canonical base64")
    if material[0] != SIG_TYPE_ED25519:
        raise NoteError(VKEY_UNSUPPORTED, f"signature type 0x{material[0]:02x} is not supported")
    key = verifier_key(name, material[1:])
    if key.key_id.hex() != id_hex:
        raise NoteError(VKEY_MALFORMED, f"key ID {id_hex} does not match the key ({key.key_id.hex()})")
    return key


@dataclass(frozen=True)
class NoteSignature:
    """One signature line: who signed (name, key ID) and the raw signature bytes."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> bytes:
        encoded = encode_base64(self.key_id + self.signature)
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n".encode()


class NoteSigner:
    """Signs note text with an Ed25519 private key under a key name."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        self.verifier = verifier_key(name, private_key.public_key().public_bytes_raw())
        self._private_key = private_key

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> NoteSigner:
        """A signer from a 32-byte RFC 8032 seed (Ed25519 is deterministic, so signatures are reproducible)."""
        if len(seed) != ED25519_KEY_SIZE:
            raise NoteError(VKEY_MALFORMED, f"an Ed25519 seed is {ED25519_KEY_SIZE} bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def name(self) -> str:
        return self.verifier.name

    def sign(self, text: bytes) -> NoteSignature:
        return NoteSignature(self.name, self.verifier.key_id, self._private_key.sign(text))


@dataclass(frozen=True)
class Note:
    """A parsed note: the signed text (with its final newline) and its signature lines in order."""

    text: bytes
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True)
class VerifiedNote:
    """An opened note: its text, the signatures that verified, and those from keys not given."""

    text: bytes
    verified: tuple[NoteSignature, ...]
    unknown: tuple[NoteSignature, ...]


def sign_note(text: bytes, signers: Sequence[NoteSigner]) -> bytes:
    """The signed note: text, blank line, one signature line per signer in the given order."""
    _check_text(text)
    if not 1 <= len(signers) <= MAX_SIGNATURES:
        raise NoteError(NOTE_MALFORMED, f"a note needs 1 to {MAX_SIGNATURES} signatures")
    return text + b"\n" + b"".join(s.sign(text).line() for s in signers)


def parse_note(data: bytes) -> Note:
    """Split a note into text and signatures, checking its syntax only (no signature is verified)."""
    _check_text(data)
    split = data.rfind(b"\n\n")
    if split < 0:
        raise NoteError(NOTE_MALFORMED, "no blank line between the text and the signatures")
    text, block = data[: split + 1], data[split + 2 :]
    lines = block.decode("utf-8").split("\n")[:-1]
    if not lines:
        raise NoteError(NOTE_MALFORMED, "a note needs at least one signature line")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(NOTE_MALFORMED, f"more than {MAX_SIGNATURES} signature lines")
    return Note(text, tuple(_parse_signature_line(line) for line in lines))


def open_note(data: bytes, verifiers: Iterable[VerifierKey]) -> VerifiedNote:
    """Parse a note and verify it: at least one signature must be by a given key, and every signature
    by a given key must verify; signatures by other keys are returned unchecked in `unknown`."""
    note = parse_note(data)
    known = _index_keys(verifiers)
    verified: list[NoteSignature] = []
    unknown: list[NoteSignature] = []
    for sig in note.signatures:
        key = known.get((sig.name, sig.key_id))
        if key is None:
            unknown.append(sig)
        elif key.verify(note.text, sig.signature):
            verified.append(sig)
        else:
            # The spec lets a client accept the note anyway; a bad signature by a trusted key is suspect.
            raise NoteError(NOTE_BAD_SIGNATURE, f"the signature by {sig.name}+{sig.key_id.hex()} is invalid")
    if not verified:
        raise NoteError(NOTE_UNVERIFIED, "no signature by a trusted key")
    return VerifiedNote(note.text, tuple(verified), tuple(unknown))


def _check_text(data: bytes) -> None:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise NoteError(NOTE_MALFORMED, "a note must be valid UTF-8") from None
    if any(c < " " and c != "\n" for c in text):
        raise NoteError(NOTE_MALFORMED, "a note must not contain control characters other than newline")
    if not text.endswith("\n"):
        raise NoteError(NOTE_MALFORMED, "note text must end with a newline")


def _parse_signature_line(line: str) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteError(NOTE_MALFORMED, "a signature line must start with an em dash and a space")
    name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not is_valid_key_name(name):
        raise NoteError(NOTE_MALFORMED, f"invalid key name {name!r} in a signature line")
    raw = decode_base64(encoded)
    if raw is None or len(raw) <= KEY_ID_SIZE:
        raise NoteError(NOTE_MALFORMED, f"the signature by {name} is not canonical base64 of key ID and signature")
    return NoteSignature(name, raw[:KEY_ID_SIZE], raw[KEY_ID_SIZE:])


def _index_keys(keys: Iterable[VerifierKey]) -> dict[tuple[str, bytes], VerifierKey]:
    index: dict[tuple[str, bytes], VerifierKey] = {}
    for key in keys:
        slot = (key.name, key.key_id)
        if index.setdefault(slot, key) != key:
            raise NoteError(VKEY_AMBIGUOUS, f"two different keys are named {key.name}+{key.key_id.hex()}")
    return index


@dataclass(frozen=True)
class Checkpoint:
    """A tree head: origin, tree size, root hash, and optional extension lines."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> bytes:
        """The note text `<origin>\\n<size>\\n<base64 root>\\n` followed by `<extension>\\n` lines."""
        lines = (self.origin, str(self.size), encode_base64(self.root), *self.extensions)
        text = "".join(line + "\n" for line in lines).encode("utf-8")
        # Parsing back is the one place the rules live; a field that would not survive it is invalid.
        if parse_checkpoint(text) != self:
            raise NoteError(CHECKPOINT_MALFORMED, "the checkpoint fields do not form a valid checkpoint")
        return text


def parse_checkpoint(text: bytes) -> Checkpoint:
    """Parse checkpoint note text (not a signed note: use open_checkpoint for that)."""
    try:
        _check_text(text)
    except NoteError as e:
        raise NoteError(CHECKPOINT_MALFORMED, e.message) from None
    lines = text.decode("utf-8")[:-1].split("\n")
    if len(lines) < 3 or not all(lines):
        raise NoteError(CHECKPOINT_MALFORMED, "a checkpoint is three or more non-empty lines")
    origin, size_text, root_text, *extensions = lines
    size = parse_decimal(size_text)
    if size is None:
        raise NoteError(CHECKPOINT_MALFORMED, f"tree size {size_text!r} is not a 64-bit decimal")
    root = decode_base64(root_text)
    if root is None or len(root) != HASH_SIZE:
        raise NoteError(CHECKPOINT_MALFORMED, "the root hash is not canonical base64 of 32 bytes")
    return Checkpoint(origin, size, root, tuple(extensions))


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> bytes:
    return sign_note(checkpoint.body(), signers)


def open_checkpoint(data: bytes, origin: str, verifiers: Iterable[VerifierKey]) -> tuple[Checkpoint, VerifiedNote]:
    """Verify a signed checkpoint from the log `origin` against that log's keys."""
    note = open_note(data, verifiers)
    checkpoint = parse_checkpoint(note.text)
    if checkpoint.origin != origin:
        raise NoteError(CHECKPOINT_WRONG_ORIGIN, f"checkpoint is from {checkpoint.origin!r}, not {origin!r}")
    return checkpoint, note
