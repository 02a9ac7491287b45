"""What the server checks about one uploaded segment before it keeps it: the manifest's signature and key,
the media file against the manifest, the chain against the device's neighbours already stored, and the
gateway's dock receipt. Each problem is a finding {code, message}; any that is not informational
quarantines the segment (it is kept all the same).

The chain rules are protocol.chain's, run over the new manifest and the stored manifests of `seq - 1` and
`seq + 1` only: ingest judges the new arrival's links, and gaps are a matter for whoever follows the whole
chain (the log monitor), since gateways may send segments out of order.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from protocol import canonical, chain, errors, manifest, receipts, signatures
from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol.trust import TrustList

Finding = dict[str, str]
_UPLOAD = "upload"
# Findings chain.verify reports on the stored successor that are about its link to the new manifest.
_LINK_CODES = frozenset({errors.CHAIN_BROKEN_LINK, errors.TIME_BACKWARDS, errors.CHAIN_SESSION_SPLICE})


@dataclass(frozen=True)
class Body:
    """The uploaded file as received."""

    size: int
    sha256: str


@dataclass(frozen=True)
class Stored:
    """A manifest of the same device already in the index."""

    seq: int
    manifest: str
    envelope: bytes


def finding(code: str, message: str) -> Finding:
    return {"code": code, "message": message}


def check_segment(envelope: bytes, m: Manifest, body: Body, trust: TrustList,
                  stored: Sequence[Stored]) -> list[Finding]:
    """Findings about the manifest, its media and its links to the stored manifests of `seq ± 1`; another
    stored manifest for the same seq is a fork."""
    found = [finding(errors.CHAIN_FORK, f"seq {m.seq} of {m.device} is stored already as manifest {s.manifest}")
             for s in stored if s.seq == m.seq and s.manifest != m.hash.hex()]
    if m.kind not in manifest.MEDIA_KINDS and body.size:
        found.append(finding(errors.FILE_SIZE_MISMATCH, f"a {m.kind} record has no media, but {body.size} bytes came"))
    neighbours = [s for s in stored if s.seq in (m.seq - 1, m.seq + 1)]
    items = [chain.Item(_UPLOAD, envelope)] + [chain.Item(f"stored seq {s.seq}", s.envelope) for s in neighbours]
    facts = chain.FileFacts(body.size, bytes.fromhex(body.sha256))
    report = chain.verify(items, trust, lambda item, _m: facts if item.location == _UPLOAD else None)
    for f in report.findings():
        if f.seq == m.seq:  # only the upload has this seq among the items
            found.append(finding(f.code, f.message))
        elif f.seq == m.seq + 1 and f.code in _LINK_CODES:
            found.append(finding(f.code, f"the stored seq {f.seq} does not follow this manifest: {f.message}"))
    return found


@dataclass(frozen=True)
class DockReceipt:
    """A dock receipt as verified: its fields (checked for form) and what its signature check found."""

    fields: Mapping[str, Any]
    findings: tuple[Finding, ...]


def open_dock_receipt(raw: bytes, trust: TrustList) -> DockReceipt:
    """The dock receipt's fields and its signature's findings; ProtocolError if it is malformed."""
    try:
        return DockReceipt(receipts.open_receipt(raw, receipts.DOCK_TYPE, trust).fields, ())
    except ProtocolError as exc:
        return DockReceipt(dock_fields(raw), (finding(exc.code, f"dock receipt: {exc.message}"),))


def check_dock_receipt(dock: DockReceipt, m: Manifest, media_sha256: str | None, gateway: str) -> list[Finding]:
    """Findings about the dock receipt the uploading gateway sent with the segment: signed by that gateway,
    naming this seq with this manifest and the file received; a finding the gateway made itself is kept."""
    found, fields = list(dock.findings), dock.fields
    if fields["gateway"] != gateway:
        found.append(finding(errors.RECEIPT_WRONG_GATEWAY,
                             f"the dock receipt is {fields['gateway']}'s, but {gateway} uploaded the segment"))
    entry = next((e for e in fields["segments"] if e["seq"] == m.seq), None) if fields["device"] == m.device else None
    if entry is None:
        found.append(finding(errors.RECEIPT_MISMATCH, f"the dock receipt does not list seq {m.seq} of {m.device}"))
    elif (entry["manifest"], entry["media_sha256"]) != (m.hash.hex(), media_sha256):
        found.append(finding(errors.RECEIPT_MISMATCH, f"the dock receipt lists seq {m.seq} with manifest "
                             f"{entry['manifest']} and media {entry['media_sha256']}, not the ones uploaded"))
    elif entry["result"] != receipts.RESULT_OK:
        found.append(finding(entry["result"], "the gateway found this when the recorder docked"))
    return found


@functools.lru_cache(maxsize=64)
def dock_fields(raw: bytes) -> Mapping[str, Any]:
    """A dock receipt's fields, checked for form but not for signature; ProtocolError if malformed. Cached:
    one receipt covers up to 250 segments, each uploaded with it (so callers must not change the fields)."""
    env = signatures.open_envelope(raw, receipts.DOCK_TYPE)
    try:
        return receipts.check_dock(canonical.decode(env.payload))
    except canonical.CanonicalError as exc:
        raise ProtocolError(errors.RECEIPT_MALFORMED, f"dock receipt payload: {exc}") from None
