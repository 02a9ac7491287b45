"""The dock link end to end: real recorder stores docked over real sockets into a real spool."""

from __future__ import annotations

import base64
import errno
import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.config import RecorderConfig
from firmware.dock_client import DockSummary
from firmware.recorder import Recorder
from firmware.store import RecorderStore
from gateway import dock_disk
from hardware.storage import Storage
from protocol import canonical, dock, errors, manifest, receipts, signatures
from tests.firmware.test_recorder import PacketSource
from tests.gateway import dock_rig
from tests.gateway.dock_rig import NS, DockThread, Recordings, Station, Unit, record

DEVICE = "REC-0001"


# The dock tests' shared fixtures (tests/gateway/dock_rig.py): real recorded footage, and a station.
recordings = dock_rig.recordings
station = dock_rig.station


@pytest.fixture
def gateway(station: Station, tmp_path: Path) -> Iterator[DockThread]:
    with DockThread(station, ["bay-1", "bay-2"], tmp_path / "spool", chunk_bytes=4096) as dock_:
        yield dock_


def opened(raw: bytes, station: Station) -> receipts.Receipt:
    return receipts.open_receipt(raw, receipts.DOCK_TYPE, station.gateways)


def test_a_recorder_docks_marked_first_and_is_freed(recordings: Recordings, station: Station,
                                                     gateway: DockThread) -> None:
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    pending = {p.seq: p.manifest for p in unit.store.pending()}
    summary = station.client(unit, gateway.url("bay-1")).dock()
    assert summary.error is None, summary.error
    order = list(summary.results)
    marked = [s for s in order if pending[s].fields["markers"]]
    assert marked and order[:len(marked)] == marked and order[len(marked):] == sorted(order[len(marked):])
    assert set(summary.results.values()) == {receipts.RESULT_OK}
    assert summary.freed == sorted(pending) and unit.stored_seqs() == [] and summary.kept == []
    # What the gateway holds is what was recorded, and its signed receipt says so.
    [raw] = gateway.spool.dock_receipts(DEVICE, sorted(pending))
    receipt = opened(raw, station)
    assert (receipt["first_seq"], receipt["last_seq"]) == (0, max(pending))
    assert receipt["head"] == pending[max(pending)].hash.hex() == gateway.spool.head(DEVICE)[1]
    for entry in receipt["segments"]:
        m = pending[entry["seq"]]
        spooled = gateway.spool.get(entry["manifest"])
        assert spooled is not None and entry["manifest"] == m.hash.hex() and entry["result"] == "ok"
        if m.media is not None:
            assert spooled.path is not None and hashlib.sha256(spooled.path.read_bytes()).hexdigest() == \
                m.media["sha256"] == entry["media_sha256"]
    progress = gateway.progress("bay-1")
    assert (progress.device, progress.state, progress.events) == (DEVICE, "done", [])
    assert progress.files_done == progress.files_total == summary.files_sent
    assert progress.bytes_done == progress.bytes_total == summary.bytes_sent


@pytest.mark.parametrize("enrolled", [False, True], ids=["unknown", "revoked"])
def test_an_unknown_or_revoked_device_is_refused_and_reported(recordings: Recordings, station: Station,
                                                              gateway: DockThread, enrolled: bool) -> None:
    unit = station.unit(DEVICE, *recordings.get(DEVICE), enroll=enrolled)
    if enrolled:
        station.revoke(unit)
    code = errors.KEY_REVOKED if enrolled else errors.KEY_UNKNOWN
    summary = station.client(unit, gateway.url("bay-2")).dock()
    assert summary.error is not None and code in summary.error
    assert "may not dock here" in summary.error and "its footage stays on it" in summary.error
    assert summary.kept == unit.stored_seqs() == unit.pending_seqs() != [] and summary.freed == []
    assert gateway.spool.head(DEVICE) is None
    progress = gateway.progress("bay-2")
    assert progress.state == "refused" and [(e.device, e.code) for e in progress.events] == [(DEVICE, code)]
    assert gateway.progress("bay-1").events == []  # reported on the bay it happened on


def _forge_signature(path: Path, signer: signatures.Signer) -> None:
    env = canonical.decode(path.read_bytes())
    assert isinstance(env, dict)
    env["sig"] = base64.b64encode(signer.sign(b"not this manifest")).decode("ascii")
    path.write_bytes(canonical.encode(env))


def test_tampered_segments_arrive_flagged_and_the_receipt_says_so(recordings: Recordings, station: Station,
                                                                  gateway: DockThread) -> None:
    """On the recorder one file was altered, one manifest re-signed with a wrong signature, and one manifest
    damaged beyond reading: the first two are taken and flagged, the third stays (and the gap it leaves in
    the chain is flagged on the segment after it); everything else goes as usual."""
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    media = [p for p in unit.store.pending() if p.manifest.media is not None]
    altered, resigned, damaged, after = media[1], media[2], media[3], media[4]
    data = bytearray(altered.media_path.read_bytes())  # type: ignore[union-attr]
    data[len(data) // 2] ^= 1
    altered.media_path.write_bytes(bytes(data))  # type: ignore[union-attr]
    _forge_signature(resigned.envelope_path, unit.signer)
    damaged.envelope_path.write_bytes(damaged.envelope_path.read_bytes()[:100])
    summary = station.client(unit, gateway.url("bay-1")).dock()
    assert summary.error is None, summary.error
    assert summary.results[altered.seq] == errors.FILE_HASH_MISMATCH
    assert summary.results[resigned.seq] == errors.SIGNATURE_BAD
    assert summary.results[after.seq] == errors.CHAIN_GAP_UNEXPLAINED
    assert {s for s, r in summary.results.items() if r != "ok"} == {altered.seq, resigned.seq, after.seq}
    assert [(r.seq, r.code) for r in summary.refused] == [(None, errors.ENVELOPE_MALFORMED)]
    [raw] = gateway.spool.dock_receipts(DEVICE, [altered.seq])
    entries = {e["seq"]: e for e in opened(raw, station)["segments"]}
    # The receipt names the bytes the gateway took; the recorder keeps its altered copy (it is not what its
    # manifest names) and the damaged one (no receipt names it), and frees the rest, the re-signed one too
    # (its bytes are what the receipt names).
    assert entries[altered.seq]["result"] == errors.FILE_HASH_MISMATCH
    assert entries[altered.seq]["media_sha256"] == hashlib.sha256(data).hexdigest()
    assert entries[resigned.seq]["result"] == errors.SIGNATURE_BAD and damaged.seq not in entries
    assert unit.stored_seqs() == [altered.seq, damaged.seq] and summary.kept == [damaged.seq]
    flagged = {s.seq: s.findings for s in (gateway.spool.get(e["manifest"]) for e in entries.values()) if s}
    assert flagged[altered.seq] == [errors.FILE_HASH_MISMATCH] and flagged[resigned.seq] == [errors.SIGNATURE_BAD]
    assert flagged[after.seq] == [errors.CHAIN_GAP_UNEXPLAINED] and sum(1 for f in flagged.values() if f) == 3
    assert [e.code for e in gateway.progress("bay-1").events] == [errors.ENVELOPE_MALFORMED]


def test_the_chain_continues_from_the_head_the_gateway_holds(recordings: Recordings, station: Station,
                                                             gateway: DockThread) -> None:
    template, signer = recordings.get(DEVICE)
    unit = station.unit(DEVICE, template, signer)
    first = station.client(unit, gateway.url("bay-1")).dock()
    assert first.error is None and unit.stored_seqs() == []
    # The next shift: the recorder boots again and records on; someone removes one of the new segments.
    record(unit.store.root, DEVICE, signer, recordings.media, until_s=7.5, wall_ns=1_764_003_600 * NS,
           presses={0.5: "record", 7.0: "record"})
    new = unit.store.pending()
    removed = next(p for p in new if p.manifest.media is not None)
    removed.envelope_path.unlink()
    removed.media_path.unlink()  # type: ignore[union-attr]
    after = next(p.seq for p in new if p.seq > removed.seq)
    second = station.client(unit, gateway.url("bay-1")).dock()
    assert second.error is None, second.error
    [raw] = gateway.spool.dock_receipts(DEVICE, [after])
    results = {e["seq"]: e["result"] for e in opened(raw, station)["segments"]}
    assert results[after] == errors.CHAIN_GAP_UNEXPLAINED == second.results[after]
    # The new boot record links to the head the gateway held from the first dock: no finding there.
    assert new[0].manifest.kind == manifest.BOOT and results[new[0].seq] == "ok"
    assert {s for s, r in results.items() if r != "ok"} == {after}
    assert unit.stored_seqs() == []


def test_receipts_cover_at_most_250_segments_each(station: Station, gateway: DockThread, tmp_path: Path) -> None:
    signer = signatures.KeySigner(signatures.generate())
    unit = station.unit(DEVICE, _markers_only(tmp_path / "template", signer, 300), signer)
    summary = station.client(unit, gateway.url("bay-1")).dock()
    assert summary.error is None, summary.error
    issued = gateway.spool.dock_receipts(DEVICE, range(301))
    assert summary.receipts == len(issued) == 2 and summary.freed == list(range(301))
    fields = [opened(raw, station).fields for raw in issued]
    assert [(f["first_seq"], f["last_seq"], len(f["segments"])) for f in fields] == [(0, 249, 250), (250, 300, 51)]
    assert all(len(raw) <= dock.MAX_RECEIPT_BYTES for raw in issued)


def _markers_only(root: Path, signer: signatures.Signer, count: int) -> Path:
    """A recorder that boots and has its mark button pressed `count` times, never recording: all records."""
    now = [0]
    rec = Recorder(RecorderConfig(device=DEVICE, store=root, prerecord_seconds=0), RecorderStore(root, DEVICE),
                   signer, PacketSource([], []), storage=Storage(root), monotonic_ns=lambda: now[0],
                   wall_ns=lambda: 1_764_000_000 * NS + now[0])
    rec.boot()
    for i in range(count):
        now[0] = (i + 1) * NS
        rec.mark(now[0])
    rec.shutdown()
    return root


def test_a_full_disk_refuses_before_anything_is_written(recordings: Recordings, station: Station,
                                                        tmp_path: Path) -> None:
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    with DockThread(station, ["bay-1"], tmp_path / "spool", reserve_bytes=10**9, free_bytes=lambda: 10**9 - 1) as gw:
        summary = station.client(unit, gw.url("bay-1")).dock()
        assert errors.DOCK_DISK_FULL in (summary.error or "") and "recorder keeps its footage" in summary.error
        assert summary.freed == [] and summary.kept == unit.stored_seqs() != []
        assert gw.spool.head(DEVICE) is None and not any((tmp_path / "spool" / "incoming").rglob("*.part"))
        progress = gw.progress("bay-1")
        assert progress.state == "disk-full" and [e.code for e in progress.events] == [errors.DOCK_DISK_FULL]


def test_a_write_that_hits_a_full_disk_admits_nothing_and_resumes_later(
        recordings: Recordings, station: Station, gateway: DockThread, monkeypatch: pytest.MonkeyPatch) -> None:
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    write_all, writes = dock_disk.write_all, [0]

    def third_write_fails(fd: int, data: bytes | memoryview) -> None:
        writes[0] += 1
        if writes[0] == 3:
            write_all(fd, bytes(data)[: len(data) // 2])  # a part got to the disk, then it was full
            raise OSError(errno.ENOSPC, "No space left on device")
        write_all(fd, data)

    monkeypatch.setattr(dock_disk, "write_all", third_write_fails)
    summary = station.client(unit, gateway.url("bay-1")).dock()
    assert errors.DOCK_DISK_FULL in (summary.error or "") and summary.files_sent == 0
    cut = next(iter(gateway.spool.incoming_path(DEVICE, s) for s in unit.stored_seqs()
                    if gateway.spool.incoming_path(DEVICE, s).exists()))
    assert cut.stat().st_size == 2 * 4096  # cut back to the last whole write: nothing half-written stays
    files = unit.pending_seqs()  # the records went across (taken without files), receipted and freed
    assert files and gateway.spool.arrived(DEVICE, files) == {}  # no file was admitted
    monkeypatch.setattr(dock_disk, "write_all", write_all)  # space was freed
    again = station.client(unit, gateway.url("bay-1")).dock()
    assert again.error is None, again.error
    assert list(again.resumed.values()) == [2 * 4096] and set(again.results.values()) == {"ok"}
    assert unit.stored_seqs() == [] and again.kept == []


def test_25_bays_at_once_share_the_disk_and_all_finish(recordings: Recordings, station: Station,
                                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bays = [f"bay-{i:02d}" for i in range(1, 26)]
    units = [station.unit(f"REC-{i:04d}", *recordings.get(f"REC-{i:04d}", until_s=7.5)) for i in range(1, 26)]
    served: list[str] = []  # whose bytes reached the disk, in order
    append = dock_disk.PartialFile.append

    def logged(self: dock_disk.PartialFile, data: bytes) -> None:
        served.append(self.path.parent.name)
        append(self, data)

    monkeypatch.setattr(dock_disk.PartialFile, "append", logged)
    with DockThread(station, bays, tmp_path / "spool", chunk_bytes=4096) as gw:
        start = threading.Barrier(len(units))
        summaries: dict[str, DockSummary] = {}

        def dock_one(unit: Unit, bay: str) -> None:
            client = station.client(unit, gw.url(bay))
            summary = DockSummary(unit.device, gw.url(bay))
            session = client.connect(summary)
            pending = client.pending()
            plan = client.offer(session, pending)
            start.wait(timeout=60)  # every bay has its plan: the transfers start together
            by_seq = {p.seq: p for p in pending}
            for transfer in plan.send:
                client.send(session, by_seq[transfer.seq], transfer, summary)
            client.apply(client.receipts(session, list(by_seq)), summary)
            summaries[unit.device] = summary

        threads = [threading.Thread(target=dock_one, args=(u, b)) for u, b in zip(units, bays, strict=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert len(summaries) == 25
        for unit in units:
            assert unit.stored_seqs() == [] and summaries[unit.device].error is None
        for p in gw.snapshot():
            assert p.state == "done" and p.files_done == p.files_total > 0 and p.bytes_done == p.bytes_total > 0
    # Fair: the bays' chunks reached the disk in turn, so when the first bay was done every other one had
    # come most of the way too (a bay skips its turn only between two of its files).
    first_done = min(len(served) - 1 - served[::-1].index(device) for device in set(served))
    counts = Counter(served[:first_done + 1])
    assert len(counts) == 25 and min(counts.values()) >= max(counts.values()) // 2, counts
    assert not any((tmp_path / "spool" / "incoming").rglob("*.part"))
