"""The gateway's durable spool (gateway/spool.py): what the dock admits is kept with its file until a server
receipt is stored; bad input changes nothing; what a crash leaves half done is finished on reopening.

The helpers at the top do what the dock does (write and fsync a file at the incoming path, admit it, give a
dock receipt signed by the gateway's key); the upload tests use them too."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from gateway.spool import Arrival, Spool, Spooled, SpoolError
from protocol import errors, receipts, signatures
from protocol.manifest import Manifest
from simulators.synthetic import SyntheticDevice, typical_shift
from tests.server.footage import Gateway, envelope

# -- What the dock does --------------------------------------------------------------------------------------


def deliver(spool: Spool, dev: SyntheticDevice, m: Manifest, *, data: bytes | None = None,
            findings: Sequence[str] = ()) -> Arrival:
    """Write a manifest's media (or `data` instead, as a tampered recorder would send) at the incoming path,
    fsynced, and describe the arrival as the dock does."""
    if m.media is None:
        return Arrival(dev.device, m.seq, m.hash.hex(), envelope(dev, m), None, 0, False, list(findings))
    body = data if data is not None else (dev.dir / m.media["name"]).read_bytes()
    path = spool.incoming_path(dev.device, m.seq)
    with open(path, "wb") as f:
        f.write(body)
        os.fsync(f.fileno())
    return Arrival(dev.device, m.seq, m.hash.hex(), envelope(dev, m), hashlib.sha256(body).hexdigest(), len(body),
                   bool(m.fields["markers"]), list(findings))


def dock_receipt(gateway: Gateway, rows: Sequence[Spooled], received_ns: int) -> bytes:
    """The dock receipt for spooled rows of one device, as the dock signs it: the media hashes of what was
    received (footage's Gateway.dock_receipt names the manifests' own), each `ok` or its first finding."""
    seqs = [r.seq for r in rows]
    return receipts.issue(gateway.signer, receipts.DOCK_TYPE, {
        "gateway": gateway.name, "device": rows[0].device, "first_seq": min(seqs), "last_seq": max(seqs),
        "head": rows[-1].manifest_hash, "received_ns": received_ns, "clock_offset_ns": 0,
        "segments": [{"seq": r.seq, "manifest": r.manifest_hash, "media_sha256": r.media_sha256,
                      "result": r.findings[0] if r.findings else receipts.RESULT_OK} for r in rows]})


def dock(spool: Spool, gateway: Gateway, dev: SyntheticDevice, manifests: Sequence[Manifest], *,
         data: dict[int, bytes] | None = None, findings: dict[int, list[str]] | None = None) -> bytes:
    """Admit manifests of one recorder as the dock does, then attach one dock receipt for all of them."""
    for m in manifests:
        spool.arrive(deliver(spool, dev, m, data=(data or {}).get(m.seq), findings=(findings or {}).get(m.seq, ())))
    seqs = [m.seq for m in manifests]
    rows = [r for r in spool.unreceipted(dev.device) if r.seq in seqs]
    receipt = dock_receipt(gateway, rows, dev.now_ns)
    spool.attach_receipt(dev.device, seqs, receipt)
    return receipt


def server_receipt(signer: signatures.Signer, row: Spooled, **over: object) -> bytes:
    return receipts.issue(signer, receipts.SERVER_TYPE, {
        "server": "srv-test", "gateway": "GW-1", "device": row.device, "seq": row.seq, "manifest": row.manifest_hash,
        "media_sha256": row.media_sha256, "received_ns": 1, "log_index": 7, "status": receipts.STORED,
        "findings": [], **over})


# -- Fixtures -------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000

    def __call__(self) -> int:
        self.ns += 1_000
        return self.ns


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def spool(tmp_path: Path, clock: Clock) -> Iterator[Spool]:
    with Spool(tmp_path / "spool", now_ns=clock) as s:
        yield s


@pytest.fixture
def dev(tmp_path: Path) -> SyntheticDevice:
    """boot, 3 segments (the second marked), a crash, boot, recovery record, 3 segments: seqs 0-3 and 5-9."""
    return typical_shift(tmp_path / "store", "REC-0001", signatures.KeySigner(signatures.generate()), segments=6,
                         size=20_000)


@pytest.fixture
def gateway() -> Gateway:
    return Gateway()


def files(spool: Spool) -> set[Path]:
    return {p for p in spool.root.rglob("*") if p.is_file() and p.suffix != ".sqlite3" and "-wal" not in p.name
            and "-shm" not in p.name}


# -- Tests ----------------------------------------------------------------------------------------------------


def test_an_arrival_moves_its_file_in_and_is_there_after_reopening(spool: Spool, dev: SyntheticDevice,
                                                                    clock: Clock) -> None:
    seg = dev.manifests[2]
    arrival = deliver(spool, dev, seg)
    incoming = spool.incoming_path(dev.device, seg.seq)
    spool.arrive(arrival)
    assert not incoming.exists()
    row = spool.get(seg.hash.hex())
    assert row is not None and row.path is not None
    assert row.path.read_bytes() == (dev.dir / seg.media["name"]).read_bytes()
    assert (row.device, row.seq, row.envelope, row.media_sha256, row.marked, row.findings, row.dock_receipt) == \
        (dev.device, seg.seq, envelope(dev, seg), seg.media["sha256"], True, [], None)
    boot = dev.manifests[0]
    spool.arrive(deliver(spool, dev, boot))  # a record: no file
    spool.close()
    with Spool(spool.root, now_ns=clock) as again:
        assert again.get(seg.hash.hex()) == row
        assert again.arrived(dev.device, range(10)) == {0: boot.hash.hex(), 2: seg.hash.hex()}
        assert again.head(dev.device) == (2, seg.hash.hex())
        assert [r.seq for r in again.unreceipted(dev.device)] == [0, 2]
        assert files(again) == {row.path}


def test_arriving_again_changes_nothing_and_a_different_claim_is_refused(spool: Spool, dev: SyntheticDevice) -> None:
    seg = dev.manifests[1]
    spool.arrive(deliver(spool, dev, seg))
    held = spool.get(seg.hash.hex())
    again = deliver(spool, dev, seg)  # the dock took the same file twice
    spool.arrive(again)
    assert spool.get(seg.hash.hex()) == held
    assert not spool.incoming_path(dev.device, seg.seq).exists()  # the second copy is dropped, the first kept
    other = deliver(spool, dev, seg, data=b"other bytes")
    with pytest.raises(SpoolError, match="held already"):
        spool.arrive(other)
    assert spool.incoming_path(dev.device, seg.seq).read_bytes() == b"other bytes"
    assert spool.get(seg.hash.hex()) == held


@pytest.mark.parametrize(("change", "message"), [
    ({"media_size": 1}, "holds 20000 bytes"),
    ({"device": "../etc"}, "not a device id"),
    ({"seq": -1}, "non-negative"),
    ({"manifest_hash": "ABC"}, "64 lower-case hex"),
    ({"media_sha256": None}, "without media has media_size 0"),
    ({"findings": ["no.such_code"]}, "finding codes"),
    ({"marked": 1}, "True or False"),
    ({"envelope": b""}, "envelope"),
])
def test_bad_arrivals_are_refused_and_change_nothing(spool: Spool, dev: SyntheticDevice, change: dict[str, object],
                                                     message: str) -> None:
    seg = dev.manifests[1]
    arrival = deliver(spool, dev, seg)
    with pytest.raises(SpoolError, match=message):
        spool.arrive(replace(arrival, **change))
    assert spool.incoming_path(dev.device, seg.seq).stat().st_size == seg.media["size"]
    assert spool.arrived(dev.device, [seg.seq]) == {} and spool.head(dev.device) is None
    assert spool.backlog().count == 0


def test_an_arrival_without_its_file_is_refused(spool: Spool, dev: SyntheticDevice) -> None:
    seg = dev.manifests[1]
    arrival = deliver(spool, dev, seg)
    spool.incoming_path(dev.device, seg.seq).unlink()
    with pytest.raises(SpoolError, match="no file at"):
        spool.arrive(arrival)
    assert spool.arrived(dev.device, [seg.seq]) == {}


def test_a_dock_receipt_attaches_to_all_its_seqs_or_none(spool: Spool, dev: SyntheticDevice,
                                                         gateway: Gateway) -> None:
    first, rest = dev.manifests[:3], dev.manifests[3:6]
    receipt = dock(spool, gateway, dev, first)
    assert spool.unreceipted(dev.device) == []
    assert spool.dock_receipts(dev.device, [1]) == [receipt]
    spool.attach_receipt(dev.device, [m.seq for m in first], receipt)  # again: nothing changes
    for m in rest:
        spool.arrive(deliver(spool, dev, m))
    rows = spool.unreceipted(dev.device)
    assert [r.seq for r in rows] == [m.seq for m in rest]
    seqs = [r.seq for r in rows]
    refusals = [
        (dock_receipt(gateway, rows[:-1], 1), seqs, "does not name"),  # one seq missing from the receipt
        (dock_receipt(gateway, [replace(rows[0], media_sha256="0" * 64), *rows[1:]], 1), seqs, "does not name"),
        (dock_receipt(gateway, rows, 1), [*seqs, 40], "seq 40 is not in the spool"),
        (dock_receipt(gateway, rows, 1), [], "at least one seq"),
        (b"not a receipt", seqs, "not a well-formed"),
        (receipt, seqs, "does not name"),  # a receipt for other seqs
    ]
    for raw, claimed, message in refusals:
        with pytest.raises(SpoolError, match=message):
            spool.attach_receipt(dev.device, claimed, raw)
        assert [r.seq for r in spool.unreceipted(dev.device)] == seqs
    elsewhere = dock_receipt(gateway, [replace(r, device="REC-0002") for r in rows], 1)
    with pytest.raises(SpoolError, match="is for REC-0002"):
        spool.attach_receipt(dev.device, seqs, elsewhere)
    later = dock_receipt(gateway, rows, 2)
    spool.attach_receipt(dev.device, seqs, later)
    assert spool.dock_receipts(dev.device, range(10)) == [receipt, later]
    assert spool.dock_receipts(dev.device, [5]) == [later]


def test_uploads_go_marked_first_then_oldest_and_held_back_ones_wait(spool: Spool, dev: SyntheticDevice,
                                                                      gateway: Gateway) -> None:
    dock(spool, gateway, dev, dev.manifests[:3])
    spool.arrive(deliver(spool, dev, dev.manifests[3]))  # no dock receipt yet: not uploaded
    order = [r.seq for r in spool.to_upload(10)]
    assert order == [2, 0, 1]  # seq 2 has the marker
    assert [r.seq for r in spool.to_upload(1)] == [2]
    held = spool.to_upload(10)[0]
    spool.hold_back(held.manifest_hash, "refused by the server: 400 bad metadata")
    assert [r.seq for r in spool.to_upload(10)] == [0, 1]
    assert [(r.seq, r.held_back) for r in spool.held_back()] == [(2, "refused by the server: 400 bad metadata")]
    assert spool.backlog().held_back == 1 and held.path is not None and held.path.exists()
    spool.release(held.manifest_hash)
    assert [r.seq for r in spool.to_upload(10)] == [2, 0, 1] and spool.held_back() == []
    with pytest.raises(SpoolError, match="say why"):
        spool.hold_back(held.manifest_hash, "")


def test_uploaded_keeps_the_receipt_deletes_the_file_and_keeps_heads_and_dock_receipts(
        spool: Spool, dev: SyntheticDevice, gateway: Gateway, clock: Clock) -> None:
    given = dock(spool, gateway, dev, dev.manifests[:4])
    server = signatures.KeySigner(signatures.generate())
    before = spool.backlog()
    assert (before.count, before.media_bytes, before.flagged) == (4, 3 * 20_000, 0)
    for row in spool.to_upload(10):
        spool.set_upload_url(row.manifest_hash, "http://server/api/uploads/0123")
        receipt = server_receipt(server, row)
        spool.uploaded(row.manifest_hash, receipt)
        done = spool.get(row.manifest_hash)
        assert done is not None and (done.path, done.upload_url, done.server_receipt) == (None, None, receipt)
        if row.path is not None:
            assert not row.path.exists()
    assert files(spool) == set()
    assert spool.backlog() == type(before)(0, 0, None, 0, 0)
    assert spool.to_upload(10) == []
    spool.close()
    with Spool(spool.root, now_ns=clock) as again:
        assert again.head(dev.device) == (3, dev.manifests[3].hash.hex())
        assert again.arrived(dev.device, range(4)) == {m.seq: m.hash.hex() for m in dev.manifests[:4]}
        assert again.dock_receipts(dev.device, [0]) == [given]


def test_uploaded_refuses_what_is_not_this_segments_receipt_and_deletes_nothing(
        spool: Spool, dev: SyntheticDevice, gateway: Gateway) -> None:
    dock(spool, gateway, dev, dev.manifests[1:3])
    row, other = spool.to_upload(10)
    server = signatures.KeySigner(signatures.generate())
    bad = [
        (b"garbage", "not a well-formed"),
        (dock_receipt(gateway, [row], 1), "not a well-formed"),  # a dock receipt is no server receipt
        (server_receipt(server, other), "names REC-0001 seq"),
    ]
    for raw, message in bad:
        with pytest.raises(SpoolError, match=message):
            spool.uploaded(row.manifest_hash, raw)
    with pytest.raises(SpoolError, match="no segment"):
        spool.uploaded("0" * 64, server_receipt(server, row))
    assert row.path is not None and row.path.exists() and spool.get(row.manifest_hash) == row
    first = server_receipt(server, row)
    spool.uploaded(row.manifest_hash, first)
    spool.uploaded(row.manifest_hash, first)  # again: nothing changes
    with pytest.raises(SpoolError, match="another server receipt"):
        spool.uploaded(row.manifest_hash, server_receipt(server, row, log_index=8))
    done = spool.get(row.manifest_hash)
    assert done is not None and done.server_receipt == first
    with pytest.raises(SpoolError, match="waits for upload"):
        spool.set_upload_url(row.manifest_hash, "http://late")


def test_flagged_segments_are_kept_receipted_and_uploaded_like_the_rest(spool: Spool, dev: SyntheticDevice,
                                                                         gateway: Gateway) -> None:
    seg = dev.manifests[1]
    dock(spool, gateway, dev, [seg], data={seg.seq: b"tampered"}, findings={seg.seq: [errors.FILE_TRUNCATED,
                                                                                        errors.FILE_HASH_MISMATCH]})
    [row] = spool.to_upload(10)
    assert row.findings == [errors.FILE_TRUNCATED, errors.FILE_HASH_MISMATCH]
    assert row.media_sha256 == hashlib.sha256(b"tampered").hexdigest()
    assert row.path is not None and row.path.read_bytes() == b"tampered"
    backlog = spool.backlog()
    assert (backlog.count, backlog.media_bytes, backlog.flagged, backlog.oldest_ns) == (1, 8, 1, row.arrived_ns)


def test_reopening_finishes_what_a_crash_interrupted(spool: Spool, dev: SyntheticDevice, gateway: Gateway,
                                                     clock: Clock) -> None:
    """The three states a crash can leave, made by hand: a moved file without its row (arrive), a file whose
    row holds a server receipt (uploaded), and a row whose file someone deleted."""
    server = signatures.KeySigner(signatures.generate())
    dock(spool, gateway, dev, dev.manifests[1:4])
    uploaded, kept, lost = spool.to_upload(10)
    spool.uploaded(uploaded.manifest_hash, server_receipt(server, uploaded))
    assert uploaded.path is not None and kept.path is not None and lost.path is not None
    uploaded.path.write_bytes(b"left behind by a crash before the unlink")
    lost.path.unlink()
    not_committed = dev.manifests[6]
    moved = spool.root / "media" / dev.device / f"{not_committed.seq:012d}.{not_committed.hash.hex()}"
    moved.write_bytes((dev.dir / not_committed.media["name"]).read_bytes())
    begun_again = dev.manifests[7]
    stale = spool.root / "media" / dev.device / f"{begun_again.seq:012d}.{begun_again.hash.hex()}"
    stale.write_bytes(b"a whole copy")
    spool.incoming_path(dev.device, begun_again.seq).write_bytes(b"the dock's new partial")
    stray = spool.root / "media" / dev.device / "notes.txt"
    stray.write_bytes(b"not ours")
    spool.close()
    with Spool(spool.root, now_ns=clock) as again:
        assert not uploaded.path.exists() and hashlib.sha256(kept.path.read_bytes()).hexdigest() == kept.media_sha256
        incoming = again.incoming_path(dev.device, not_committed.seq)
        assert incoming.read_bytes() == (dev.dir / not_committed.media["name"]).read_bytes() and not moved.exists()
        assert not stale.exists()
        assert again.incoming_path(dev.device, begun_again.seq).read_bytes() == b"the dock's new partial"
        assert stray.exists()
        assert [r.manifest_hash for r in again.held_back()] == [lost.manifest_hash]
        assert [r.manifest_hash for r in again.to_upload(10)] == [kept.manifest_hash]
        again.arrive(deliver(again, dev, not_committed))  # the dock admits it again
        assert again.arrived(dev.device, [not_committed.seq]) == {not_committed.seq: not_committed.hash.hex()}


def test_upload_urls_survive_reopening(spool: Spool, dev: SyntheticDevice, gateway: Gateway, clock: Clock) -> None:
    dock(spool, gateway, dev, dev.manifests[1:2])
    [row] = spool.to_upload(1)
    spool.set_upload_url(row.manifest_hash, "http://server/api/uploads/abc")
    spool.close()
    with Spool(spool.root, now_ns=clock) as again:
        assert again.upload_url(row.manifest_hash) == "http://server/api/uploads/abc"
        again.set_upload_url(row.manifest_hash, None)
        assert again.upload_url(row.manifest_hash) is None
        with pytest.raises(SpoolError, match="waits for upload"):
            again.upload_url("0" * 64)
