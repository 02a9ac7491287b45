"""Offline inclusion proofs in the C2SP tlog-proof format (c2sp.org/tlog-proof@v1).

    c2sp.org/tlog-proof@v1
    extra <base64>            (optional, unauthenticated)
    index <decimal>
    <base64 hash>             (zero or more: leaf sibling first, root child last)
                              (empty line)
    <signed checkpoint note, verbatim>

The spec does not bound the number of proof lines nor say whether an empty
`extra` line is allowed: we accept at most 64 hashes (a tree of at most 2**64
leaves never needs more), and write and accept `extra` only with non-empty
data, so that each bundle has exactly one spelling.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.tlog.checkpoint import (
    Checkpoint,
    VerifiedNote,
    VerifierKey,
    decode_base64,
    encode_base64,
    open_checkpoint,
    parse_decimal,
)
from protocol.tlog.merkle import HASH_SIZE, leaf_hash, verify_inclusion

HEADER = "c2sp.org/tlog-proof@v1"
FILE_EXTENSION = ".tlog-proof"
MAX_PROOF_HASHES = 64

BUNDLE_MALFORMED = "tlog.bundle_malformed"


class BundleError(ProtocolError):
    """A proof bundle cannot be parsed; `code` is BUNDLE_MALFORMED."""


@dataclass(frozen=True)
class ProofBundle:
    """Index, inclusion proof and the signed checkpoint the proof leads to; `extra` is opaque."""

    index: int
    proof: tuple[bytes, ...]
    checkpoint: bytes
    extra: bytes = b""

    def encode(self) -> bytes:
        lines = [HEADER]
        if self.extra:
            lines.append(f"extra {encode_base64(self.extra)}")
        lines.append(f"index {self.index}")
        lines.extend(encode_base64(h) for h in self.proof)
        data = ("\n".join(lines) + "\n\n").encode("ascii") + self.checkpoint
        # Parsing back is the one place the rules live; fields that would not survive it are invalid.
        if parse_bundle(data) != self:
            raise BundleError(BUNDLE_MALFORMED, "the bundle fields do not form a valid proof bundle")
        return data


@dataclass(frozen=True)
class VerifiedBundle:
    """A bundle whose proof holds, with the checkpoint it was checked against."""

    bundle: ProofBundle
    checkpoint: Checkpoint
    note: VerifiedNote


def parse_bundle(data: bytes) -> ProofBundle:
    """Parse a bundle's syntax; its checkpoint is returned unparsed and unverified."""
    head, blank, checkpoint = data.partition(b"\n\n")
    if not blank or not checkpoint:
        raise BundleError(BUNDLE_MALFORMED, "no empty line followed by a checkpoint")
    if not head.isascii():
        raise BundleError(BUNDLE_MALFORMED, "the proof lines must be ASCII")
    lines = head.decode("ascii").split("\n")
    if lines[0] != HEADER:
        raise BundleError(BUNDLE_MALFORMED, f"the first line must be {HEADER}")
    extra, rest = _parse_extra(lines[1:])
    if not rest or not rest[0].startswith("index "):
        raise BundleError(BUNDLE_MALFORMED, "missing the index line")
    index = parse_decimal(rest[0].removeprefix("index "))
    if index is None:
        raise BundleError(BUNDLE_MALFORMED, "the index is not a 64-bit decimal without leading zeroes")
    return ProofBundle(index, _parse_hashes(rest[1:]), checkpoint, extra)


def verify_bundle(data: bytes, leaf: bytes, origin: str, verifiers: Iterable[VerifierKey]) -> VerifiedBundle:
    """Check that leaf hash `leaf` is in the log `origin` as of the bundle's checkpoint, signed by one
    of `verifiers`. Raises a ProtocolError subclass (BundleError, NoteError, ProofError) otherwise.

    Witness cosignatures are not checked here: they are returned as unknown signatures in `note`."""
    bundle = parse_bundle(data)
    checkpoint, note = open_checkpoint(bundle.checkpoint, origin, verifiers)
    verify_inclusion(leaf, bundle.index, checkpoint.size, bundle.proof, checkpoint.root)
    return VerifiedBundle(bundle, checkpoint, note)


def verify_bundle_entry(data: bytes, entry: bytes, origin: str, verifiers: Iterable[VerifierKey]) -> VerifiedBundle:
    """verify_bundle for the entry's bytes rather than its leaf hash."""
    return verify_bundle(data, leaf_hash(entry), origin, verifiers)


def _parse_extra(lines: list[str]) -> tuple[bytes, list[str]]:
    if not lines or not lines[0].startswith("extra "):
        return b"", lines
    extra = decode_base64(lines[0].removeprefix("extra "))
    if not extra:
        raise BundleError(BUNDLE_MALFORMED, "the extra line must hold non-empty canonical base64")
    return extra, lines[1:]


def _parse_hashes(lines: list[str]) -> tuple[bytes, ...]:
    if len(lines) > MAX_PROOF_HASHES:
        raise BundleError(BUNDLE_MALFORMED, f"more than {MAX_PROOF_HASHES} proof hashes")
    return tuple(_parse_hash(line) for line in lines)


def _parse_hash(line: str) -> bytes:
    h = decode_base64(line)
    if h is None or len(h) != HASH_SIZE:
        raise BundleError(BUNDLE_MALFORMED, "a proof line is not canonical base64 of a 32-byte hash")
    return h
