"""Ingest as a gateway sees it: tuspy uploads with the gateway's token, signed server receipts that verify,
manifests in the public log with proofs, resumption, idempotent repeats, out-of-order arrival, and refusals."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import select
from tusclient.exceptions import TusCommunicationError

from protocol import receipts, signatures
from protocol.manifest import Manifest
from protocol.receipts import SERVER_TYPE
from protocol.tlog.proof_bundle import verify_bundle_entry
from server import orphans
from server.schema import dock_receipts, log_head, segment_markers, segments
from simulators.synthetic import SyntheticDevice, typical_shift
from tests.server.footage import (
    RECEIPT_HEADER,
    Gateway,
    enroll_keys,
    envelope,
    media_path,
    receipt_after,
    server_trust,
    tus_client,
    uploader,
)
from tests.server.harness import InProcessServer

SERVER = "srv-test"


@dataclass
class Station:
    """A running server with one enrolled gateway (signed in) and one enrolled recorder's shift on disk."""

    server: InProcessServer
    gateway: Gateway
    token: str
    dev: SyntheticDevice
    empty: Path

    @property
    def url(self) -> str:
        return self.server.url

    def upload(self, seq: int, dock: bytes | None = None, **options: object) -> bytes:
        """Upload the manifest of `seq` with its media; return the server receipt."""
        m = self.manifest(seq)
        dock = dock or self.gateway.dock_receipt(self.dev, self.dev.manifests)
        up = uploader(tus_client(self.url, self.token), media_path(self.dev, m, self.empty), envelope(self.dev, m),
                      dock, **options)
        up.upload()
        return receipt_after(up, self.token)

    def manifest(self, seq: int) -> Manifest:
        return next(m for m in self.dev.manifests if m.seq == seq)

    def log_size(self) -> int:
        with self.server.services.db.read() as conn:
            return conn.execute(select(log_head.c.size)).scalar_one()

    def rows(self) -> list[dict[str, object]]:
        with self.server.services.db.read() as conn:
            return [dict(r) for r in conn.execute(select(segments).order_by(segments.c.seq)).mappings()]


@pytest.fixture
def station(db_url: str, tmp_path: Path) -> Iterator[Station]:
    with InProcessServer(tmp_path, db_url) as server:
        gateway = Gateway()
        signer = signatures.KeySigner(signatures.generate())
        enroll_keys(server.services, devices={"REC-0001": signer}, gateways=[gateway])
        dev = typical_shift(tmp_path / "store", "REC-0001", signer, segments=4, size=50_000)
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        yield Station(server, gateway, gateway.sign_in(server.url, SERVER, server.services.clock()), dev, empty)


def test_uploads_are_stored_with_receipts_that_verify_and_log_proofs(station: Station) -> None:
    s = station.server.services
    dock = station.gateway.dock_receipt(station.dev, station.dev.manifests)
    before = station.log_size()
    got = [station.upload(m.seq, dock, chunk_size=20_000) for m in station.dev.manifests]
    trust = server_trust(station.url)
    for m, raw in zip(station.dev.manifests, got, strict=True):
        receipt = receipts.open_receipt(raw, SERVER_TYPE, trust)
        assert (receipt["status"], receipt["findings"], receipt["device"], receipt["seq"]) == \
            ("stored", [], "REC-0001", m.seq)
        assert receipt["manifest"] == m.hash.hex() and receipt["gateway"] == "GW-1" and receipt["server"] == SERVER
        assert receipt["media_sha256"] == (m.media["sha256"] if m.media else None)
        bundle = requests.get(f"{station.url}/log/proof/{receipt['log_index']}", timeout=10)
        assert bundle.status_code == 200
        verify_bundle_entry(bundle.content, envelope(station.dev, m), s.identity.origin, [s.identity.vkey])
        if m.media:
            assert s.blobs.exists(m.media["sha256"])
    # One dock receipt and one entry per manifest, nothing else.
    assert station.log_size() == before + 1 + len(station.dev.manifests)
    with s.db.read() as conn:
        [dock_row] = conn.execute(select(dock_receipts)).mappings().all()
        assert dock_row["envelope"] == dock
        assert s.log.entry(conn, dock_row["log_index"]) == dock
        markers = conn.execute(select(segment_markers.c.kind)).scalars().all()
    rows = station.rows()
    assert [r["status"] for r in rows] == ["stored"] * len(station.dev.manifests)
    assert {r["unit"] for r in rows} == {"U1"} and {r["gateway"] for r in rows} == {"GW-1"}
    [marked] = [r for r in rows if r["markers"]]
    assert markers == ["event"] and marked["seq"] == 2
    points = station.dev.manifests[1].fields["track"]["points"]
    first = rows[1]
    assert (first["min_lat_e7"], first["max_lat_e7"]) == (min(p["lat_e7"] for p in points),
                                                         max(p["lat_e7"] for p in points))
    assert rows[0]["min_lat_e7"] is None and rows[0]["media_sha256"] is None  # the boot record
    assert [r["server_receipt"] for r in rows] == got


def test_the_last_patch_answers_with_the_receipt_and_it_can_be_fetched(station: Station) -> None:
    m = station.manifest(1)
    up = uploader(tus_client(station.url, station.token), media_path(station.dev, m, station.empty),
                  envelope(station.dev, m), station.gateway.dock_receipt(station.dev, [m]), chunk_size=20_000)
    up.upload()
    raw = base64.b64decode(up.request.response_headers[RECEIPT_HEADER.lower()])  # tuspy lower-cases names
    headers = {"Authorization": f"Bearer {station.token}"}
    fetched = requests.get(f"{station.url}/api/ingest/receipts/{m.hash.hex()}", headers=headers, timeout=10)
    assert fetched.status_code == 200 and fetched.content == raw
    assert fetched.headers["Content-Type"] == SERVER_TYPE
    missing = requests.get(f"{station.url}/api/ingest/receipts/{'0' * 64}", headers=headers, timeout=10)
    assert missing.status_code == 404
    assert requests.get(f"{station.url}/api/ingest/receipts/xyz", headers=headers, timeout=10).status_code == 400
    assert requests.get(f"{station.url}/api/ingest/receipts/{m.hash.hex()}", timeout=10).status_code == 401


def test_an_interrupted_upload_resumes_where_it_stopped(station: Station) -> None:
    m = station.manifest(2)
    path, signed = media_path(station.dev, m, station.empty), envelope(station.dev, m)
    dock = station.gateway.dock_receipt(station.dev, [m])
    tus = tus_client(station.url, station.token)
    first = uploader(tus, path, signed, dock, chunk_size=8_000)
    for _ in range(3):
        first.upload_chunk()
    url = first.url
    del first  # the gateway restarted

    second = uploader(tus, path, signed, dock, chunk_size=8_000, url=url)
    assert second.offset == 24_000  # asked the server
    second.upload()
    raw = receipt_after(second, station.token)
    assert receipts.open_receipt(raw, SERVER_TYPE, server_trust(station.url))["status"] == "stored"
    assert len(station.rows()) == 1
    assert station.server.services.blobs.size(m.media["sha256"]) == m.media["size"]


def test_a_repeated_upload_returns_the_stored_receipt_and_adds_nothing(station: Station) -> None:
    dock = station.gateway.dock_receipt(station.dev, station.dev.manifests)
    first = station.upload(1, dock)
    size = station.log_size()
    again = station.upload(1, dock)  # a new upload of the same segment (the gateway lost the answer)
    assert again == first and station.log_size() == size and len(station.rows()) == 1
    empty_again = [station.upload(0, dock), station.upload(0, dock)]  # a record without media, twice
    assert empty_again[0] == empty_again[1] and len(station.rows()) == 2


def test_segments_arriving_out_of_order_link_up(station: Station) -> None:
    chain = station.dev.manifests
    dock = station.gateway.dock_receipt(station.dev, chain)
    order = [2, 7, 1, 0, 5, 6, 4]  # the marked segment first, then the rest as the gateway finds them
    assert sorted(order) == [m.seq for m in chain]
    got = {seq: station.upload(seq, dock) for seq in order}
    trust = server_trust(station.url)
    assert all(receipts.open_receipt(r, SERVER_TYPE, trust)["status"] == "stored" for r in got.values())
    assert [r["seq"] for r in station.rows()] == sorted(order)


def test_uploads_need_a_gateway(station: Station) -> None:
    m = station.manifest(1)
    args = (media_path(station.dev, m, station.empty), envelope(station.dev, m),
            station.gateway.dock_receipt(station.dev, [m]))
    with pytest.raises(TusCommunicationError) as anonymous:
        uploader(tus_client(station.url, "no-such-token"), *args).upload()
    assert anonymous.value.status_code == 401
    person = station.server.user("a.admin", "administrator")
    token = person.headers["Authorization"].removeprefix("Bearer ")
    with pytest.raises(TusCommunicationError) as user:
        uploader(tus_client(station.url, token), *args).upload()
    assert user.value.status_code == 403
    assert station.rows() == []
    assert requests.options(f"{station.url}/api/uploads/", timeout=10).headers["Tus-Version"] == "1.0.0"


@pytest.mark.parametrize(("metadata", "code"), [
    ("", "bad_request"),
    ("manifest {signed}", "bad_request"),
    ("manifest {garbage},dock_receipt {dock}", "envelope.malformed"),
    ("manifest {dock},dock_receipt {dock}", "envelope.wrong_type"),
    ("manifest {signed},dock_receipt {signed}", "envelope.wrong_type"),
], ids=["none", "no-dock-receipt", "garbage", "dock-receipt-as-manifest", "manifest-as-dock-receipt"])
def test_unusable_metadata_is_refused_before_any_byte(station: Station, metadata: str, code: str) -> None:
    m = station.manifest(1)
    b64 = {"signed": envelope(station.dev, m), "dock": station.gateway.dock_receipt(station.dev, [m]),
           "garbage": b"{not an envelope"}
    header = metadata.format(**{k: base64.b64encode(v).decode() for k, v in b64.items()})
    r = requests.post(f"{station.url}/api/uploads/", headers={
        "Tus-Resumable": "1.0.0", "Authorization": f"Bearer {station.token}", "Upload-Length": "10",
        "Upload-Metadata": header}, timeout=10)
    assert r.status_code == 400 and r.json()["error"] == code, r.text
    assert not list(station.server.services.config.upload_dir.glob("*.info"))


def test_orphan_blobs_are_collected_and_named_ones_kept(station: Station, tmp_path: Path) -> None:
    s = station.server.services
    station.upload(1)
    orphan = tmp_path / "orphan"
    orphan.write_bytes(b"no row names me")
    orphan_sha = "ab" * 32
    s.blobs.put_file(orphan, orphan_sha)
    assert orphans.collect_orphans(s) == 0  # younger than the grace period
    later = s.clock() + (s.config.orphan_grace_seconds + 1) * 10**9
    s.clock = lambda: later
    assert orphans.collect_orphans(s) == 1
    assert not s.blobs.exists(orphan_sha) and s.blobs.exists(station.manifest(1).media["sha256"])


def test_openapi_declares_the_ingest_endpoints(station: Station) -> None:
    paths = requests.get(f"{station.url}/api/openapi.json", timeout=10).json()["paths"]
    assert paths["/api/uploads/"]["post"]["x-liuhen-access"] == ["gateway"]
    assert paths["/api/uploads/"]["options"]["x-liuhen-access"] == ["public"]
    for method in ("head", "patch", "delete"):
        assert paths["/api/uploads/{upload_id}"][method]["x-liuhen-access"] == ["gateway"]
    assert paths["/api/quarantine"]["get"]["x-liuhen-access"] == ["supervisor", "administrator"]
    assert paths["/api/ingest/receipts/{manifest}"]["get"]["x-liuhen-access"] == ["gateway"]


def test_an_envelope_too_long_for_the_log_is_refused(station: Station) -> None:
    m = station.manifest(1)
    many = [{"seq": i, "manifest": "ab" * 32, "media_sha256": "cd" * 32, "result": "ok"} for i in range(400)]
    dock = receipts.issue(station.gateway.signer, receipts.DOCK_TYPE, {
        "gateway": "GW-1", "device": "REC-0001", "first_seq": 0, "last_seq": 399, "head": "ab" * 32,
        "received_ns": 1, "clock_offset_ns": 0, "segments": many})
    assert len(dock) > 65535
    r = requests.post(f"{station.url}/api/uploads/", headers={
        "Tus-Resumable": "1.0.0", "Authorization": f"Bearer {station.token}", "Upload-Length": "10",
        "Upload-Metadata": f"manifest {base64.b64encode(envelope(station.dev, m)).decode()},"
                           f"dock_receipt {base64.b64encode(dock).decode()}"}, timeout=10)
    assert r.status_code == 413 and "split long dock receipts" in r.json()["message"]
