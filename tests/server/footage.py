"""Real signed footage for server tests: recorders (synthetic signed chains with media files), a gateway that
signs dock receipts and signs in, and tus uploads the way a gateway makes them (tuspy); and, for tests of
what people do with stored footage, recordings of real fMP4 segments put straight into the index
(Footage) and a running server holding one (Site)."""

from __future__ import annotations

import base64
import hashlib
import itertools
import secrets
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, insert, select, update
from tusclient import client

from firmware.segmenter import CONTAINER, NS, Segmenter, SegmentFile
from protocol import gateway_auth, layout, log_records, manifest, receipts, signatures
from protocol.manifest import Manifest
from protocol.trust import TrustList, parse_trust_list
from server.enrollment import enroll
from server.schema import access_grants, audit, dock_receipts, exports, log_head, segments
from server.services import Services
from simulators.synthetic import DEFAULT_START_NS, SyntheticDevice
from tests.firmware.media_fixture import make_packets
from tests.server.harness import InProcessServer

UPLOADS = "/api/uploads/"
RECEIPT_HEADER = "Liuhen-Server-Receipt"


class Gateway:
    """A docking gateway: its key, the dock receipts it signs, and its sign-in."""

    def __init__(self, name: str = "GW-1") -> None:
        self.name = name
        self.signer = signatures.KeySigner(signatures.generate())

    def dock_receipt(self, dev: SyntheticDevice, covered: Sequence[Manifest], *, name: str | None = None,
                     results: dict[int, str] | None = None) -> bytes:
        """A dock receipt for `covered` manifests of `dev`, as the gateway signs it at docking."""
        seqs = [m.seq for m in covered]
        return receipts.issue(self.signer, receipts.DOCK_TYPE, {
            "gateway": name or self.name, "device": dev.device, "first_seq": min(seqs), "last_seq": max(seqs),
            "head": covered[-1].hash.hex(), "received_ns": dev.now_ns, "clock_offset_ns": 0,
            "segments": [{"seq": m.seq, "manifest": m.hash.hex(),
                          "media_sha256": m.media["sha256"] if m.media else None,
                          "result": (results or {}).get(m.seq, receipts.RESULT_OK)} for m in covered],
        })

    def statement(self, server: str, issued_ns: int, **over: Any) -> bytes:
        return gateway_auth.issue(self.signer, {"gateway": self.name, "server": server, "issued_ns": issued_ns,
                                                "nonce": secrets.token_hex(16), **over})

    def sign_in(self, url: str, server: str, now_ns: int) -> str:
        r = requests.post(f"{url}/api/gateway/session", data=self.statement(server, now_ns),
                          headers={"Content-Type": gateway_auth.TYPE}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()["token"]


def enroll_keys(s: Services, *, devices: dict[str, signatures.KeySigner], gateways: Sequence[Gateway],
                unit: str | None = "U1") -> None:
    with s.db.write() as conn:
        for name, signer in devices.items():
            enroll(conn, s, role="device", owner=name, public_key=signer.public_key(), actor="test", unit=unit)
        for gw in gateways:
            enroll(conn, s, role="gateway", owner=gw.name, public_key=gw.signer.public_key(), actor="test")


def media_path(dev: SyntheticDevice, m: Manifest, empty: Path) -> Path:
    """The file a gateway uploads for a manifest: its media, or an empty file for a record."""
    return dev.dir / m.media["name"] if m.media else empty


def envelope(dev: SyntheticDevice, m: Manifest) -> bytes:
    return (dev.dir / layout.manifest_name(m.seq)).read_bytes()


def tus_client(url: str, token: str) -> client.TusClient:
    return client.TusClient(url + UPLOADS, headers={"Authorization": f"Bearer {token}"})


def uploader(tus: client.TusClient, path: Path, manifest_envelope: bytes, dock: bytes, **options: Any) -> Any:
    """A tuspy uploader of one segment; `options` go to tuspy (chunk_size, url, url_storage ...)."""
    return tus.uploader(file_path=str(path), metadata={"manifest": manifest_envelope.decode("ascii"),
                                                       "dock_receipt": dock.decode("ascii")}, **options)


def receipt_after(upload: Any, token: str) -> bytes:
    """The server receipt of a finished upload, from HEAD on its URL (what a gateway that lost the last
    answer does; uploads of empty files have no PATCH to answer)."""
    head = requests.head(upload.url, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"},
                         timeout=10)
    assert head.status_code == 200, head.text
    return base64.b64decode(head.headers[RECEIPT_HEADER])


def server_trust(url: str) -> TrustList:
    r = requests.get(f"{url}/api/trust", timeout=10)
    assert r.status_code == 200
    return parse_trust_list(r.content)


# -- Footage stored as ingest leaves it, for tests of what people do with it (playback, exports, audit) --------

T0 = DEFAULT_START_NS  # UTC start of every recording unless told otherwise
SEGMENT_S = 4
REASON = "case 2025-017: reviewing the roadside stop before the hearing"


def record_media(folder: Path, seconds: int = 3 * SEGMENT_S) -> list[SegmentFile]:
    """Real fMP4 segment files of `seconds` of simulated camera, cut every SEGMENT_S seconds by the
    recorder's own segmenter."""
    streams, packets = make_packets(seconds)
    done: list[SegmentFile] = []
    counter = itertools.count()
    segmenter = Segmenter(streams, lambda _: folder / f"s{next(counter)}.mp4", done.append,
                          segment_ns=SEGMENT_S * NS)
    for packet in packets:
        segmenter.add(packet)
    segmenter.finish()
    assert [s.mono_start_ns for s in done] == [i * SEGMENT_S * NS for i in range(len(done))]
    return done


@dataclass(frozen=True)
class Recording:
    device: str
    ids: list[int]  # segment row ids in seq order: the boot record, then one per media file
    manifests: list[Manifest]
    media: dict[int, bytes]  # row id -> media bytes, for the rows with media


class Footage:
    """Puts recordings straight into one server's index, blob store and log, as ingest would: each media
    file a blob, the dock receipt and each manifest envelope log entries, each manifest a `segments` row
    with its log index and server receipt. `purge` does what retention does."""

    def __init__(self, services: Services, folder: Path, media: list[SegmentFile]) -> None:
        self.s = services
        self.folder = folder
        self.media = media
        self.gateway = Gateway()
        enroll_keys(services, devices={}, gateways=[self.gateway])

    def record(self, device: str, *, officer: str | None = None, unit: str | None = None,
               start_ns: int = T0) -> Recording:
        """One recording of a newly enrolled `device`: boot at `start_ns`, then the media files back to back."""
        signer = signatures.KeySigner(signatures.generate())
        enroll_keys(self.s, devices={device: signer}, gateways=[], unit=unit)
        dev = SyntheticDevice(self.folder, device, signer, start_ns=start_ns)
        dev.boot()
        for file in self.media:
            name = layout.media_name(dev.seq, "mp4")
            shutil.copyfile(file.path, dev.dir / name)
            dev.record(manifest.SEGMENT, {}, seconds=file.duration_ns // NS, media={
                "name": name, "sha256": file.sha256.hex(), "size": file.size, "container": CONTAINER,
                "codecs": file.codecs, "duration_ns": file.duration_ns, "frames": file.frames})
        ids = self._store(dev, officer, unit)
        media = {i: (dev.dir / m.media["name"]).read_bytes()
                 for i, m in zip(ids, dev.manifests, strict=True) if m.media is not None}
        return Recording(device, ids, dev.manifests, media)

    def _store(self, dev: SyntheticDevice, officer: str | None, unit: str | None) -> list[int]:
        s, chain = self.s, dev.manifests
        dock = self.gateway.dock_receipt(dev, chain)
        now = s.clock()
        ids = []
        with s.db.write() as conn:
            dock_index = s.log.append(conn, [("dock-receipt", dock)], now)
            dock_id = conn.execute(insert(dock_receipts).values(
                sha256=hashlib.sha256(dock).hexdigest(), gateway=self.gateway.name, device=dev.device,
                first_seq=chain[0].seq, last_seq=chain[-1].seq, envelope=dock, log_index=dock_index,
            )).inserted_primary_key[0]
            for m in chain:
                media_sha256 = m.media["sha256"] if m.media else None
                if m.media is not None:
                    s.blobs.put_file(dev.dir / m.media["name"], m.media["sha256"])
                signed = envelope(dev, m)
                log_index = s.log.append(conn, [("manifest", signed)], now)
                receipt = receipts.issue(s.identity.signer, receipts.SERVER_TYPE, {
                    "server": s.identity.name, "gateway": self.gateway.name, "device": dev.device, "seq": m.seq,
                    "manifest": m.hash.hex(), "media_sha256": media_sha256, "received_ns": now,
                    "log_index": log_index, "status": receipts.STORED, "findings": []})
                ids.append(conn.execute(insert(segments).values(
                    manifest=m.hash.hex(), device=dev.device, seq=m.seq, kind=m.kind, start_ns=m.time["start_ns"],
                    end_ns=m.time["end_ns"], officer=officer, unit=unit, markers=len(m.fields["markers"]),
                    media_name=m.media["name"] if m.media else None, media_sha256=media_sha256,
                    media_size=m.media["size"] if m.media else None, status=receipts.STORED, findings="[]",
                    gateway=self.gateway.name, received_ns=now, log_index=log_index, envelope=signed,
                    dock_receipt_id=dock_id, server_receipt=receipt)).inserted_primary_key[0])
        return ids

    def purge(self, segment_id: int, policy_days: int = 183) -> None:
        """Delete a segment's media as retention does, leaving the manifest and a tombstone in the log."""
        s = self.s
        now = s.clock()
        with s.db.write() as conn:
            row = conn.execute(select(segments).where(segments.c.id == segment_id)).one()
            tombstone = log_records.issue(s.identity.signer, log_records.TOMBSTONE_TYPE, {
                "server": s.identity.name, "at_ns": now, "actor": "system:retention", "device": row.device,
                "seq": row.seq, "manifest": row.manifest, "media_sha256": row.media_sha256,
                "reason": log_records.RETENTION, "policy_days": policy_days})
            index = s.log.append(conn, [("tombstone", tombstone)], now)
            conn.execute(update(segments).where(segments.c.id == segment_id)
                         .values(purged_ns=now, tombstone_index=index))
        s.blobs.delete(row.media_sha256)


class Site:
    """A running server holding one recording of REC-0001 by officer 100001 of unit U1, that officer
    signed in, and helpers to ask for footage and count what asking wrote."""

    def __init__(self, server: InProcessServer, footage: Footage) -> None:
        self.server = server
        self.url = server.url
        self.footage = footage
        self.rec = footage.record("REC-0001", officer="100001", unit="U1")
        self.officer = server.user("o.li", "officer", unit="U1", officer_no="100001")

    def access(self, session: requests.Session, **body: Any) -> requests.Response:
        return session.post(f"{self.url}/api/access", json={"reason": REASON, **body}, timeout=30)

    def grant(self, session: requests.Session | None = None, **body: Any) -> dict[str, Any]:
        r = self.access(session or self.officer, **{"action": "view", **body})
        assert r.status_code == 201, r.text
        return r.json()

    def export(self, session: requests.Session | None = None, **body: Any) -> requests.Response:
        return (session or self.officer).post(f"{self.url}/api/exports", json={"reason": REASON, **body}, timeout=120)

    def written(self) -> tuple[int, ...]:
        """Audit records, grants, exports and log entries: what an access writes."""
        with self.server.services.db.read() as conn:
            return (*(conn.execute(select(func.count()).select_from(t)).scalar_one()
                      for t in (audit, access_grants, exports)),
                    conn.execute(select(log_head.c.size)).scalar_one())


@contextmanager
def server_with_footage(folder: Path, db_url: str, media: list[SegmentFile], **settings: object
                        ) -> Iterator[tuple[InProcessServer, Footage]]:
    """A running in-process server and a Footage that stores recordings into it."""
    with InProcessServer(folder, db_url, **settings) as server:
        yield server, Footage(server.services, folder / "recorders", media)
