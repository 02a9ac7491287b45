"""Dock receipts: the gateway's signed promise that segments are in its spool, one per batch.

One receipt per batch rather than per file, because the server logs every distinct dock receipt; but a
receipt must fit one transparency-log entry, so a batch holds at most 250 segments and is halved again
while its envelope is longer than an entry may be (long finding codes make entries longer than "ok").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.spool import Spooled
from protocol import dock, receipts, signatures


def _entry(s: Spooled) -> dict[str, Any]:
    return {"seq": s.seq, "manifest": s.manifest_hash, "media_sha256": s.media_sha256,
            "result": s.findings[0] if s.findings else receipts.RESULT_OK}


def issue_receipts(signer: signatures.Signer, gateway: str, device: str, segments: Sequence[Spooled],
                   received_ns: int, clock_offset_ns: int) -> list[tuple[list[int], bytes]]:
    """Signed dock receipts covering `segments` (sorted by seq), each with the seqs it names."""
    ordered = sorted(segments, key=lambda s: s.seq)
    out: list[tuple[list[int], bytes]] = []

    def issue(batch: Sequence[Spooled]) -> None:
        raw = receipts.issue(signer, receipts.DOCK_TYPE, {
            "gateway": gateway, "device": device, "first_seq": batch[0].seq, "last_seq": batch[-1].seq,
            "head": batch[-1].manifest_hash, "received_ns": received_ns, "clock_offset_ns": clock_offset_ns,
            "segments": [_entry(s) for s in batch]})
        if len(raw) > dock.MAX_RECEIPT_BYTES and len(batch) > 1:
            half = len(batch) // 2
            issue(batch[:half])
            issue(batch[half:])
        else:
            out.append(([s.seq for s in batch], raw))

    for start in range(0, len(ordered), dock.MAX_RECEIPT_SEGMENTS):
        issue(ordered[start:start + dock.MAX_RECEIPT_SEGMENTS])
    return out
