"""Verification at the dock: what the gateway checks before it takes a recorder's footage, and when a
file has arrived.

When the recorder offers its pending manifests, each is parsed and checked with protocol.chain:
signature, key validity, and the chain, continuing from the head the gateway already holds for the
device (a gap explained by a signed record is fine). Whatever fails there is not refused: the segment
is taken all the same and arrives flagged with the finding (bad evidence is kept, not dropped). Refused
are only manifests the spool could not file: unreadable ones, another device's, and a second manifest
for a seq the gateway already holds. When a file is complete its size and SHA-256 are checked against
the manifest, by the same rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.spool import Spool
from protocol import chain, errors, manifest, signatures
from protocol.dock import Offer, Refusal
from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol.trust import TrustList

_FILE_CODES = frozenset({errors.FILE_MISSING, errors.FILE_TRUNCATED, errors.FILE_SIZE_MISMATCH,
                         errors.FILE_HASH_MISMATCH})


@dataclass(frozen=True)
class Offered:
    """A manifest the gateway takes, with what the verification found about the manifest itself."""

    manifest: Manifest
    envelope: bytes
    size: int | None  # the recorder's file size; None: no media, or the recorder lacks the file
    findings: tuple[str, ...]

    @property
    def seq(self) -> int:
        return self.manifest.seq

    @property
    def marked(self) -> bool:
        return bool(self.manifest.fields["markers"])

    @property
    def has_file(self) -> bool:
        """Whether file bytes are to come: the manifest names media and the recorder has a file."""
        return self.manifest.media is not None and self.size is not None


@dataclass(frozen=True)
class Review:
    take: list[Offered]  # by seq
    held: list[int]  # already arrived, with the same manifest
    refused: list[Refusal]


def _parse(offers: list[Offer]) -> tuple[list[tuple[Offer, Manifest]], list[Refusal]]:
    parsed, refused = [], []
    for offer in offers:
        try:
            parsed.append((offer, manifest.parse(signatures.open_envelope(offer.envelope, manifest.TYPE).payload)))
        except ProtocolError as exc:
            refused.append(Refusal(None, exc.code, f"unreadable manifest: {exc.message}"))
    return parsed, refused


def _sort_out(device: str, parsed: list[tuple[Offer, Manifest]], held: Mapping[int, str],
              result: Review) -> list[tuple[Offer, Manifest]]:
    """Refusals and what is held already go into `result`; the fresh offers come back, by seq."""
    fresh: dict[int, tuple[Offer, Manifest]] = {}
    for offer, m in parsed:
        if m.device != device:
            result.refused.append(Refusal(m.seq, errors.DEVICE_REPLAYED,
                                          f"a manifest of {m.device} offered by {device}"))
        elif m.seq in fresh or m.seq in result.held:
            result.refused.append(Refusal(m.seq, errors.CHAIN_DUPLICATE_SEQ, f"seq {m.seq} is offered twice"))
        elif m.seq in held and held[m.seq] != m.hash.hex():
            result.refused.append(Refusal(m.seq, errors.CHAIN_FORK,
                                          f"the gateway holds another manifest for seq {m.seq} of {device}"))
        elif m.seq in held:
            result.held.append(m.seq)
        else:
            fresh[m.seq] = (offer, m)
    return [fresh[s] for s in sorted(fresh)]


def _head_below(spool: Spool, device: str, first: int) -> tuple[int, str] | None:
    """The head the fresh manifests continue: the newest the gateway holds, unless files of a later seq
    arrived before them (marked first, then a crash); then the one just before the first fresh seq."""
    head = spool.head(device)
    if head is None or head[0] < first:
        return head
    before = spool.arrived(device, [first - 1]) if first > 0 else {}
    return (first - 1, before[first - 1]) if before else None


def review(device: str, offers: list[Offer], trust: TrustList, spool: Spool) -> Review:
    """Sort the offered manifests into those to take (each with its findings), those the gateway holds
    already, and refusals."""
    parsed, refused = _parse(offers)
    result = Review([], [], refused)
    fresh = _sort_out(device, parsed, spool.arrived(device, [m.seq for _, m in parsed]), result)
    head = _head_below(spool, device, fresh[0][1].seq) if fresh else None
    known = {device: (head[0], bytes.fromhex(head[1]))} if head is not None else {}
    sizes = {m.seq: offer.size for offer, m in fresh}

    def claimed_facts(_item: chain.Item, m: Manifest) -> chain.FileFacts | None:
        # Files are checked when they arrive; until then each is what its manifest says, if the recorder has it.
        return None if sizes[m.seq] is None else chain.FileFacts(m.media["size"], bytes.fromhex(m.media["sha256"]))

    items = [chain.Item(str(m.seq), offer.envelope, device) for offer, m in fresh]
    by_seq: dict[int, list[str]] = {}
    for f in chain.verify(items, trust, claimed_facts, known).findings():
        if not f.informational and f.seq is not None:
            by_seq.setdefault(f.seq, []).append(f.code)
    for offer, m in fresh:
        findings = tuple(dict.fromkeys(by_seq.get(m.seq, ())))
        result.take.append(Offered(m, offer.envelope, offer.size, findings))
    return result


def file_findings(offered: Offered, size: int, sha256: bytes, trust: TrustList) -> list[str]:
    """The findings about a complete file, by protocol.chain's rules (truncated, too long, other hash)."""
    facts = chain.FileFacts(size, sha256)
    report = chain.verify([chain.Item(str(offered.seq), offered.envelope, offered.manifest.device)], trust,
                          lambda _item, _m: facts)
    return [f.code for f in report.findings() if f.code in _FILE_CODES]
