"""Upload of the spool to a real case server (in this process, on SQLite): everything reaches the server with
verified receipts and leaves the spool, marked first; flagged footage is uploaded and quarantined; refusals and
receipts that do not match are held back for a person, never deleted and never retried in a loop; a server
that is away (or answers 5xx) is waited out with growing, jittered backoff; an expired token is renewed."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import http.server
import json
import logging
import random
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from gateway.identity import GatewayIdentity, IdentityConfig, create_key
from gateway.server_link import LinkConfig, ServerLink
from gateway.server_receipts import ReceiptRefused, check_server_receipt
from gateway.spool import Spool
from gateway.uploader import UploadConfig, Uploader
from protocol import errors, receipts, signatures
from protocol.trust import TrustList, trusted_key
from server.schema import segments, tokens
from simulators.synthetic import SyntheticDevice, typical_shift
from tests.gateway.test_spool import deliver, dock, dock_receipt, server_receipt
from tests.server.footage import Gateway, enroll_keys, envelope, server_trust, tus_client, uploader
from tests.server.harness import InProcessServer

SERVER = "srv-test"  # the name tests/server/harness.py gives the server


class TooManySleeps(Exception):
    pass


class Station:
    """A case server, and a gateway with its key file (enrolled), its spool, and recorders it docked."""

    def __init__(self, folder: Path, server: InProcessServer) -> None:
        self.folder = folder
        self.server = server
        self.identity: GatewayIdentity = create_key(IdentityConfig("GW-1", folder / "gateway.key"))
        self.gateway = Gateway(self.identity.gateway_id)
        self.gateway.signer = self.identity.signer  # footage's helpers sign with the key file's key
        enroll_keys(server.services, devices={}, gateways=[self.gateway])
        self.spool = Spool(folder / "spool")
        self.sleeps: list[float] = []
        self.on_sleep: list[Any] = []  # called at each backoff, before it returns
        self.max_sleeps = 20

    def recorder(self, name: str, **shift: Any) -> SyntheticDevice:
        """An enrolled recorder's shift (tests/server/footage.py's keys; simulators' signed chain)."""
        signer = signatures.KeySigner(signatures.generate())
        enroll_keys(self.server.services, devices={name: signer}, gateways=[])
        return typical_shift(self.folder / "store", name, signer, **shift)

    def link(self, **config: Any) -> ServerLink:
        return ServerLink(LinkConfig(server_url=self.server.url, server_id=SERVER, **config), self.identity)

    async def sleep(self, seconds: float) -> None:
        """The uploader's backoff, without waiting: recorded, and a stop when a test waits too often."""
        self.sleeps.append(seconds)
        for hook in self.on_sleep:
            hook(len(self.sleeps))
        if len(self.sleeps) > self.max_sleeps:
            raise TooManySleeps(self.sleeps)

    def uploader(self, link: ServerLink | None = None, **config: Any) -> Uploader:
        return Uploader(self.spool, link or self.link(), UploadConfig(**config), sleep=self.sleep,
                        rng=random.Random(5))

    def upload(self, link: ServerLink | None = None, **config: Any) -> Uploader:
        """Upload until nothing is left to upload."""
        up = self.uploader(link, **config)
        asyncio.run(up.run(until_empty=True))
        return up

    def stored(self) -> list[dict[str, Any]]:
        with self.server.services.db.read() as conn:
            return [dict(r) for r in conn.execute(select(segments).order_by(segments.c.id)).mappings()]

    def media_files(self) -> set[Path]:
        return {p for p in (self.spool.root / "media").rglob("*") if p.is_file()}


@contextmanager
def open_station(folder: Path, *, started: bool = True) -> Iterator[Station]:
    """A Station; with `started=False` its server is made but not listening yet (a test starts it)."""
    (folder / "server").mkdir(parents=True)
    server = InProcessServer(folder / "server", f"sqlite:///{folder / 'server' / 'index.sqlite3'}")
    station = Station(folder, server)
    try:
        if started:
            with server:
                yield station
        else:
            yield station
    finally:
        station.spool.close()


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    with open_station(tmp_path) as s:
        yield s


def test_everything_reaches_the_server_marked_first_with_verified_receipts_and_leaves_the_spool(
        station: Station) -> None:
    rec1 = station.recorder("REC-0001", segments=6, size=30_000)
    rec2 = station.recorder("REC-0002", segments=2, size=10_000, seed=2)
    dock(station.spool, station.gateway, rec1, rec1.manifests)
    dock(station.spool, station.gateway, rec2, rec2.manifests)
    station.upload(concurrency=1)
    rows = station.stored()
    marked = [m for m in rec1.manifests if m.fields["markers"]]
    assert [r["manifest"] for r in rows[:len(marked)]] == [m.hash.hex() for m in marked]  # marked first
    chains = rec1.manifests + rec2.manifests
    assert sorted(r["manifest"] for r in rows) == sorted(m.hash.hex() for m in chains)
    assert {r["status"] for r in rows} == {"stored"}
    trust = server_trust(station.server.url)
    for m in chains:
        row = station.spool.get(m.hash.hex())
        assert row is not None and row.path is None and row.server_receipt is not None
        receipt = receipts.open_receipt(row.server_receipt, receipts.SERVER_TYPE, trust)
        assert (receipt["manifest"], receipt["gateway"], receipt["status"]) == (m.hash.hex(), "GW-1", "stored")
        if m.media:
            assert station.server.services.blobs.exists(m.media["sha256"])
    assert station.spool.backlog().count == 0 and station.media_files() == set()
    assert station.sleeps == []

    # More docked later, uploaded two at a time.
    more = station.recorder("REC-0003", segments=4, size=20_000, seed=3)
    dock(station.spool, station.gateway, more, more.manifests)
    station.upload()
    assert len(station.stored()) == len(chains) + len(more.manifests)
    assert station.spool.backlog().count == 0 and station.media_files() == set()


def test_a_flagged_segment_is_uploaded_and_quarantined_by_the_server(station: Station) -> None:
    rec = station.recorder("REC-0001", segments=2, size=20_000)
    seg = rec.manifests[1]
    tampered = b"\x00" * seg.media["size"]
    dock(station.spool, station.gateway, rec, rec.manifests, data={seg.seq: tampered},
         findings={seg.seq: [errors.FILE_HASH_MISMATCH]})
    assert station.spool.backlog().flagged == 1
    station.upload()
    row = next(r for r in station.stored() if r["seq"] == seg.seq)
    assert row["status"] == "quarantined" and row["media_sha256"] == hashlib.sha256(tampered).hexdigest()
    assert errors.FILE_HASH_MISMATCH in {f["code"] for f in json.loads(row["findings"])}
    assert station.server.services.blobs.exists(row["media_sha256"])  # kept on the server, under its real hash
    spooled = station.spool.get(seg.hash.hex())
    assert spooled is not None and spooled.server_receipt == row["server_receipt"] and spooled.path is None
    assert {r["status"] for r in station.stored() if r["seq"] != seg.seq} == {"stored"}
    assert station.spool.backlog().count == 0


@pytest.mark.parametrize(("sent", "answer"), [
    (b'{"not":"an envelope"}', "400 envelope.malformed"),  # no manifest comes out of it
    (b"x" * 70_000, "413 too_large"),  # longer than a transparency log entry may be
])
def test_a_refused_segment_is_held_back_with_the_reason_and_the_rest_go_on(station: Station, sent: bytes,
                                                                            answer: str) -> None:
    rec = station.recorder("REC-0001", segments=2, size=20_000)
    seg = rec.manifests[1]
    for m in rec.manifests:
        arrival = deliver(station.spool, rec, m)
        if m is seg:  # the dock flagged it and kept it; the server refuses it when the upload is created
            arrival = replace(arrival, envelope=sent, findings=[errors.ENVELOPE_MALFORMED])
        station.spool.arrive(arrival)
    rows = station.spool.unreceipted(rec.device)
    station.spool.attach_receipt(rec.device, [r.seq for r in rows], dock_receipt(station.gateway, rows, rec.now_ns))
    station.upload()
    [held] = station.spool.held_back()
    assert held.manifest_hash == seg.hash.hex() and answer in (held.held_back or ""), held.held_back
    assert held.path is not None and held.path.read_bytes() == (rec.dir / seg.media["name"]).read_bytes()
    assert len(station.stored()) == len(rec.manifests) - 1
    backlog = station.spool.backlog()
    assert (backlog.count, backlog.held_back) == (1, 1)
    # A person lets it go again: refused again, still kept.
    station.spool.release(held.manifest_hash)
    station.upload()
    assert [h.manifest_hash for h in station.spool.held_back()] == [held.manifest_hash] and held.path.exists()
    assert station.sleeps == []


def test_a_receipt_for_other_media_is_refused_and_the_file_kept(station: Station) -> None:
    """The server stored this manifest before with other bytes (from somewhere else): it answers with that
    receipt, which does not name the file the spool holds."""
    rec = station.recorder("REC-0001", segments=2, size=20_000)
    seg = rec.manifests[1]
    other = station.folder / "other"
    other.write_bytes(b"other bytes")
    token = station.gateway.sign_in(station.server.url, SERVER, station.server.services.clock())
    uploader(tus_client(station.server.url, token), other, envelope(rec, seg),
             station.gateway.dock_receipt(rec, [seg])).upload()
    dock(station.spool, station.gateway, rec, rec.manifests)
    station.upload()
    [held] = station.spool.held_back()
    assert held.manifest_hash == seg.hash.hex() and "media" in (held.held_back or "")
    assert held.path is not None and held.path.exists() and held.server_receipt is None


def test_a_receipt_by_a_key_the_pinned_trust_file_lacks_is_refused_until_the_file_has_it(station: Station) -> None:
    rec = station.recorder("REC-0001", segments=1, size=20_000)
    dock(station.spool, station.gateway, rec, rec.manifests)
    pinned = station.folder / "trust.json"
    stranger = trusted_key(signatures.generate().public_key(), "server", SERVER)
    pinned.write_bytes(TrustList([stranger]).to_bytes())
    station.upload(station.link(trust_file=pinned))
    held = station.spool.held_back()
    assert len(held) == len(rec.manifests) and all(errors.KEY_UNKNOWN in (h.held_back or "") for h in held)
    assert all(h.path.exists() for h in held if h.path)
    # The administrator pins the server's real key; a person releases them; the receipts now verify.
    pinned.write_bytes(server_trust(station.server.url).to_bytes())
    for h in held:
        station.spool.release(h.manifest_hash)
    station.upload(station.link(trust_file=pinned))
    assert station.spool.backlog().count == 0 and station.media_files() == set()


def test_the_server_away_is_waited_out_with_growing_jittered_backoff(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "liuhen.gateway.upload")
    with open_station(tmp_path, started=False) as station:
        rec = station.recorder("REC-0001", segments=3, size=20_000)
        dock(station.spool, station.gateway, rec, rec.manifests)
        comes_back = 5
        station.on_sleep.append(lambda n: station.server.__enter__() if n == comes_back else None)
        try:
            station.upload(backoff_min_s=2.0, backoff_max_s=10.0)
        finally:
            station.server.__exit__()
        assert len(station.sleeps) == comes_back
        ceilings = [2.0, 4.0, 8.0, 10.0, 10.0]
        assert all(c / 2 <= s <= c for s, c in zip(station.sleeps, ceilings, strict=True)), station.sleeps
        assert len(set(station.sleeps)) == len(station.sleeps)  # jittered
        failures = [r.getMessage() for r in caplog.records if "upload failed" in r.getMessage()]
        assert len(failures) >= comes_back and all("Connection refused" in f or "connect" in f for f in failures)
        assert station.spool.backlog().count == 0
        assert len(station.stored()) == len(rec.manifests)


class _Busy(http.server.BaseHTTPRequestHandler):
    """A server that signs the gateway in, has stored nothing, and fails every upload with 503."""

    def do_POST(self) -> None:
        if self.path == "/api/gateway/session":
            self._answer(200, b'{"token": "t", "gateway": "GW-1", "expires_ns": 1}')
        else:
            self._answer(503, b"overloaded")

    def do_GET(self) -> None:
        self._answer(404, b'{"error": "not_found", "message": "no such manifest"}')

    def _answer(self, status: int, body: bytes) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_5xx_answers_are_waited_out_and_change_nothing(station: Station, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "liuhen.gateway.upload")
    rec = station.recorder("REC-0001", segments=1, size=20_000)
    dock(station.spool, station.gateway, rec, rec.manifests)
    busy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Busy)
    threading.Thread(target=busy.serve_forever, args=(0.01,), daemon=True).start()
    try:
        link = ServerLink(LinkConfig(server_url=f"http://127.0.0.1:{busy.server_port}", server_id=SERVER),
                          station.identity)
        station.max_sleeps = 4
        with pytest.raises(TooManySleeps):
            station.upload(link)
    finally:
        busy.shutdown()
    assert all(c / 2 <= s <= c for s, c in zip(station.sleeps[:5], [1, 2, 4, 8, 16], strict=True)), station.sleeps
    assert any("503" in r.getMessage() for r in caplog.records)
    assert station.spool.held_back() == [] and station.spool.backlog().count == len(rec.manifests)
    assert all(r.upload_url is None for r in station.spool.to_upload(10))


def test_an_expired_token_is_renewed(station: Station) -> None:
    rec = station.recorder("REC-0001", segments=2, size=20_000)
    dock(station.spool, station.gateway, rec, rec.manifests[:2])
    link = station.link()
    station.upload(link)
    with station.server.services.db.write() as conn:
        conn.execute(update(tokens).where(tokens.c.gateway == "GW-1").values(expires_ns=1))
    dock(station.spool, station.gateway, rec, rec.manifests[2:])
    station.upload(link)
    with station.server.services.db.read() as conn:
        assert len(conn.execute(select(tokens).where(tokens.c.gateway == "GW-1")).all()) == 2  # signed in again
    assert station.spool.backlog().count == 0 and station.sleeps == []


def test_an_upload_the_server_no_longer_has_starts_again_unless_it_was_stored(station: Station) -> None:
    rec = station.recorder("REC-0001", segments=2, size=20_000)
    dock(station.spool, station.gateway, rec, rec.manifests)
    stored, lost = (m for m in rec.manifests if m.media)
    token = station.gateway.sign_in(station.server.url, SERVER, station.server.services.clock())
    uploader(tus_client(station.server.url, token), rec.dir / stored.media["name"], envelope(rec, stored),
             station.spool.dock_receipts(rec.device, [stored.seq])[0]).upload()
    gone = station.server.url + "/api/uploads/" + "0" * 32  # expired and swept, as the server sees it
    for m in (stored, lost):
        station.spool.set_upload_url(m.hash.hex(), gone)
    station.upload()
    assert station.spool.backlog().count == 0 and station.sleeps == []
    rows = {r["manifest"]: r for r in station.stored()}
    assert len(rows) == len(rec.manifests) and {r["status"] for r in rows.values()} == {"stored"}
    done = station.spool.get(stored.hash.hex())
    assert done is not None and done.server_receipt == rows[stored.hash.hex()]["server_receipt"]
    # The stored one was answered with its receipt: not sent again, so the server holds one upload of it.
    infos = [json.loads(p.read_text()) for p in station.server.services.config.upload_dir.glob("*.info")]
    sent = [i for i in infos if base64.b64decode(i["metadata"]["manifest"]) == envelope(rec, stored)]
    assert len(sent) == 1


def test_a_server_receipt_must_be_the_servers_and_name_exactly_the_spooled_segment(station: Station) -> None:
    rec = station.recorder("REC-0001", segments=1, size=20_000)
    dock(station.spool, station.gateway, rec, rec.manifests)
    seg = next(s for s in station.spool.to_upload(10) if s.media_sha256)
    trust = server_trust(station.server.url)

    def issued(signer: signatures.Signer = station.server.services.identity.signer, **over: object) -> bytes:
        return server_receipt(signer, seg, **over)

    assert check_server_receipt(issued(), seg, gateway="GW-1", server=SERVER, trust=trust)["seq"] == seg.seq
    wrong = [
        (issued(signatures.KeySigner(signatures.generate())), errors.KEY_UNKNOWN),
        (issued(station.gateway.signer), errors.KEY_WRONG_OWNER),  # the gateway's own key is no server's
        (issued(gateway="GW-2"), "gateway 'GW-2'"),
        (issued(seq=seg.seq + 1), "seq"),
        (issued(device="REC-0002"), "device"),
        (issued(manifest="1" * 64), "manifest"),
        (issued(media_sha256=None), "media None"),
        (dock_receipt(station.gateway, [seg], 1), errors.ENVELOPE_WRONG_TYPE),
    ]
    for raw, said in wrong:
        with pytest.raises(ReceiptRefused, match=re.escape(said)):
            check_server_receipt(raw, seg, gateway="GW-1", server=SERVER, trust=trust)
    with pytest.raises(ReceiptRefused, match="server 'srv-test'"):
        check_server_receipt(issued(), seg, gateway="GW-1", server="another-server", trust=trust)


def test_a_running_uploader_takes_new_work_when_woken_and_stops_when_cancelled(station: Station) -> None:
    rec = station.recorder("REC-0001", segments=2, size=20_000)

    async def scenario() -> None:
        up = station.uploader(idle_poll_s=600.0)  # idle, it would look again only after ten minutes
        running = asyncio.create_task(up.run())
        await asyncio.sleep(0.2)  # it looked, found nothing, and waits
        await asyncio.to_thread(dock, station.spool, station.gateway, rec, rec.manifests)
        up.wake()
        async with asyncio.timeout(30):
            while (await asyncio.to_thread(station.spool.backlog)).count:
                await asyncio.sleep(0.01)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(scenario())
    assert len(station.stored()) == len(rec.manifests) and station.media_files() == set()
