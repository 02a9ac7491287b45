"""The dock's parts on their own: the disk rotation, partial files, receipt splitting, bay progress, the
device trust file."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
from pathlib import Path

import pytest

from gateway.bays import Bays
from gateway.device_trust import DeviceTrust
from gateway.dock_disk import FairDisk, PartialFile
from gateway.dock_receipts import issue_receipts
from gateway.spool import Spooled
from protocol import dock, errors, receipts, signatures
from protocol.trust import TrustFileError, TrustList, trusted_key

NS = 1_000_000_000


def test_the_disk_serves_the_bays_in_turn() -> None:
    order: list[str] = []

    async def main() -> None:
        disk = FairDisk(workers=1)
        jobs = [("A", 5), ("B", 2), ("C", 1)]
        await asyncio.gather(*(disk.run(bay, lambda bay=bay, i=i: order.append(f"{bay}{i}"))
                               for bay, count in jobs for i in range(count)))
        await disk.close()

    asyncio.run(main())
    assert order == ["A0", "B0", "C0", "A1", "B1", "A2", "A3", "A4"]


def test_a_failed_disk_job_fails_only_its_caller() -> None:
    async def main() -> list[object]:
        disk = FairDisk(workers=2)

        def fail() -> None:
            raise OSError(errno.EIO, "I/O error")

        results = await asyncio.gather(disk.run("A", fail), disk.run("A", lambda: 1), disk.run("B", lambda: 2),
                                       return_exceptions=True)
        await disk.close()
        return results

    failed, one, two = asyncio.run(main())
    assert isinstance(failed, OSError) and (one, two) == (1, 2)


def test_a_partial_file_is_hashed_as_written_and_again_after_a_restart(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "in" / "000000000003.part"
    partial = PartialFile.reopen(path)
    partial.append(b"a" * 1000)
    again = PartialFile.reopen(path)  # what a restarted gateway finds
    assert again.offset == 1000 and again.sha256.hexdigest() == partial.sha256.hexdigest()

    def full(fd: int, data: bytes | memoryview) -> None:
        os.write(fd, bytes(data[:10]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("gateway.dock_disk.write_all", full)
    with pytest.raises(OSError):
        again.append(b"b" * 500)
    assert path.stat().st_size == again.offset == 1000  # cut back: the file and its hash agree
    monkeypatch.undo()
    again.append(b"b" * 500)
    assert again.finish() == hashlib.sha256(b"a" * 1000 + b"b" * 500).digest()


def _spooled(seq: int, result: list[str]) -> Spooled:
    h = hashlib.sha256(b"%d" % seq).hexdigest()
    return Spooled("REC-0001", seq, h, b"{}", h, 1, False, result, 0, None, None, None, None, None)


def test_receipts_split_at_250_segments_and_again_when_too_long() -> None:
    gateway = signatures.KeySigner(signatures.generate())
    trust = TrustList([trusted_key(gateway.public_key(), "gateway", "GW-1")])
    plain = issue_receipts(gateway, "GW-1", "REC-0001", [_spooled(s, []) for s in range(600)], 1_764_000_000 * NS,
                           -5)
    assert [len(seqs) for seqs, _ in plain] == [250, 250, 100]
    # Long finding codes make 250 entries longer than a log entry may be: those receipts are halved.
    flagged = [_spooled(s, [errors.CHAIN_GAP_UNEXPLAINED, errors.FILE_HASH_MISMATCH]) for s in range(250)]
    halves = issue_receipts(gateway, "GW-1", "REC-0001", flagged, 1_764_000_000 * NS, -5)
    assert [len(seqs) for seqs, _ in halves] == [125, 125]
    for seqs, raw in plain + halves:
        assert len(raw) <= dock.MAX_RECEIPT_BYTES
        fields = receipts.open_receipt(raw, receipts.DOCK_TYPE, trust)
        assert [e["seq"] for e in fields["segments"]] == seqs == list(range(seqs[0], seqs[-1] + 1))
        assert fields["head"] == fields["segments"][-1]["manifest"] and fields["clock_offset_ns"] == -5
    assert {e["result"] for e in receipts.open_receipt(halves[0][1], receipts.DOCK_TYPE, trust)["segments"]} \
        == {errors.CHAIN_GAP_UNEXPLAINED}


def test_bay_progress_rate_and_refusals() -> None:
    clock = [0]
    bays = Bays(["bay-1"], lambda: 1_764_000_000 * NS + clock[0], lambda: clock[0])
    bay = bays["bay-1"]
    bay.docked("REC-0001")
    bay.planned(files=2, total_bytes=3_000_000, held_bytes=1_000_000)
    clock[0] = 2 * NS
    bay.received(1_000_000)
    bay.file_done()
    [p] = bays.snapshot()
    assert (p.device, p.state, p.files_done, p.files_total) == ("REC-0001", "receiving", 1, 2)
    assert (p.bytes_done, p.bytes_total, p.rate_bytes_per_s) == (2_000_000, 3_000_000, 500_000)
    bay.report(errors.DOCK_DISK_FULL, "the gateway's disk is full", state="disk-full")
    [p] = bays.snapshot()
    assert p.state == "disk-full" and p.rate_bytes_per_s == 0 and p.last_error.startswith("dock.disk_full")
    assert [(e.device, e.code, e.at_ns) for e in p.events] == [("REC-0001", errors.DOCK_DISK_FULL,
                                                                1_764_000_002 * NS)]
    p.events.clear()  # a snapshot is a copy
    assert len(bays.snapshot()[0].events) == 1


def test_the_device_trust_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "trust.json"
    with pytest.raises(TrustFileError):
        DeviceTrust(path)
    key = signatures.KeySigner(signatures.generate())
    path.write_bytes(TrustList().to_bytes())
    trust = DeviceTrust(path)
    assert trust.current().get(key.keyid) is None
    path.write_bytes(TrustList([trusted_key(key.public_key(), "device", "REC-0001")]).to_bytes())
    assert trust.current().get(key.keyid) is not None
    path.write_bytes(b'{"liuhen_trust": 1, "keys": [')  # a refresh gone wrong changes nothing
    assert trust.current().get(key.keyid) is not None and "last good one stays in use" in (trust.error or "")
