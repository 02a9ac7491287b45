"""What goes into an evidence package, gathered from the index, the log and the blob store, and
handed to the package writer (server/evidence_package.py).

For every segment: the manifest envelope as signed, its server receipt, the dock receipt that covers
it, the tombstone if its media was purged (else the original media), and a proof of each log entry,
all against one checkpoint. Beside them: that checkpoint, and a trust list of the keys of every
device, gateway and server involved, so `liuhen verify` needs nothing else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Row, select

from protocol.trust import TrustList
from server.evidence_package import PackageInfo, PackageSegment, write_package
from server.schema import dock_receipts
from server.services import Services


def write_evidence_package(s: Services, rows: list[Row[Any]], media: Mapping[str, Path],
                           export: Mapping[str, Any], out_path: Path) -> PackageInfo:
    """Write the package of segments `rows` (chain order) with index fields `export` to `out_path`;
    `media` maps the media SHA-256 of each row not purged to a copy of its original."""
    with s.db.read() as conn:
        checkpoint = s.log.checkpoint(conn)  # one for every proof: the log may grow meanwhile
        docks = {d.id: d for d in conn.execute(select(dock_receipts).where(
            dock_receipts.c.id.in_({r.dock_receipt_id for r in rows if r.dock_receipt_id is not None})))}
        parts = [_segment(conn, s, r, docks.get(r.dock_receipt_id), checkpoint, media) for r in rows]
        gateways = {r.gateway for r in rows if r.gateway} | {d.gateway for d in docks.values()}
        trust = trust_list(conn, s, {r.device for r in rows}, gateways)
    return write_package(out_path, parts, checkpoint[1], trust.to_bytes(), str(s.identity.vkey), export,
                         s.identity.signer)


def _segment(conn: Connection, s: Services, r: Row[Any], dock: Row[Any] | None, checkpoint: tuple[int, bytes],
             media: Mapping[str, Path]) -> PackageSegment:
    def proof(index: int | None) -> bytes | None:
        return None if index is None else s.log.proof_bundle(conn, index, checkpoint)

    media_path = media[r.media_sha256] if r.media_sha256 is not None and r.purged_ns is None else None
    tombstone = None if r.tombstone_index is None else s.log.entry(conn, r.tombstone_index)
    return PackageSegment(
        device=r.device, seq=r.seq, manifest=r.envelope, proof=proof(r.log_index), media_path=media_path,
        media_name=r.media_name if media_path else None, server_receipt=r.server_receipt,
        dock_receipt=dock.envelope if dock else None, dock_proof=proof(dock.log_index if dock else None),
        tombstone=tombstone, tombstone_proof=proof(r.tombstone_index))


def trust_list(conn: Connection, s: Services, devices: Iterable[str], gateways: Iterable[str]) -> TrustList:
    """The enrolled keys of these devices and gateways and of this server (enrolled at its start), revocations
    included."""
    wanted = {("device", d) for d in devices} | {("gateway", g) for g in gateways} | {("server", s.identity.name)}
    return TrustList([k for k in s.trust.trust(conn).entries() if (k.role, k.owner) in wanted])
