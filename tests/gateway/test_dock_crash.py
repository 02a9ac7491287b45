"""The gateway killed (SIGKILL) in the middle of a transfer and started again: nothing is lost, nothing is
taken twice, and the file resumes where the spool's partial copy ends."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from firmware.dock_client import DockSummary
from gateway.spool import Spool
from protocol import receipts
from tests.gateway.dock_rig import (
    CuttingSession,
    DockProcess,
    Recordings,
    Station,
    partial_reaches,
)
from tests.server.harness import free_port

DEVICE = "REC-0001"


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Recordings:
    return Recordings.shared(tmp_path_factory)


def test_a_gateway_killed_again_and_again_resumes_and_loses_nothing(recordings: Recordings,
                                                                   tmp_path: Path) -> None:
    """Killed in the middle of four files (at random byte counts), and before the pending list and before
    the receipts: each time started again, the recorder carries on from what the spool holds."""
    station = Station(tmp_path / "station")
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    recorded = {p.seq: p.manifest for p in unit.store.pending()}
    spool_root = tmp_path / "spool"
    gateway = DockProcess(station, spool_root, free_port()).start()
    some_bytes_written = partial_reaches(spool_root, DEVICE, 4096)
    rng = random.Random(5)
    cuts = {put: rng.randrange(6_000, 20_000) for put in (1, 3, 4, 7)}
    restarts = []

    def kill(after: int) -> None:
        if after:
            some_bytes_written()
        gateway.kill()

    def restart(_seconds: float) -> None:
        if not gateway.running:
            restarts.append(_seconds)
            gateway.start()

    http = CuttingSession(cuts, cut=kill, before=["POST /dock/pending", "POST /dock/receipts"])
    try:
        summary = station.client(unit, gateway.url, http=http, sleep=restart).dock()
    finally:
        gateway.stop()
    assert summary.error is None, summary.error
    assert len(restarts) == 6 and not http.cuts and not http.before
    first = next(iter(summary.results))
    assert recorded[first].fields["markers"] and summary.resumed[first] >= 4096  # the marked file resumed
    assert len(summary.resumed) >= 3 and all(offset > 0 for offset in summary.resumed.values())
    assert summary.freed == sorted(recorded) and unit.stored_seqs() == []
    with Spool(spool_root) as spool:
        held = spool.to_upload(1000)
        assert sorted(s.seq for s in held) == sorted(recorded)  # each segment once
        assert spool.unreceipted(DEVICE) == [] and not any((spool_root / "incoming").rglob("*.part"))
        for s in held:
            m = recorded[s.seq]
            assert s.manifest_hash == m.hash.hex() and s.findings == []
            if m.media is not None:
                assert s.path is not None and hashlib.sha256(s.path.read_bytes()).hexdigest() == m.media["sha256"]
        [raw] = spool.dock_receipts(DEVICE, sorted(recorded))
        assert [e["seq"] for e in receipts.open_receipt(raw, receipts.DOCK_TYPE, station.gateways)["segments"]] \
            == sorted(recorded)


def test_receipts_signed_before_a_crash_come_back_after_it(recordings: Recordings, tmp_path: Path) -> None:
    """Both sides went down after the gateway signed and stored the receipts, before the recorder kept them:
    docked again, the recorder sends nothing and gets the same receipts."""
    station = Station(tmp_path / "station")
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    gateway = DockProcess(station, tmp_path / "spool", free_port()).start()
    try:
        client = station.client(unit, gateway.url)
        scratch = DockSummary(DEVICE, gateway.url)
        session = client.connect(scratch)
        pending = client.pending()
        by_seq = {p.seq: p for p in pending}
        for transfer in client.offer(session, pending).send:
            client.send(session, by_seq[transfer.seq], transfer, scratch)
        signed = client.receipts(session, list(by_seq))
        gateway.kill()
        gateway.start()
        summary = station.client(unit, gateway.url).dock()
    finally:
        gateway.stop()
    assert summary.error is None, summary.error
    assert summary.files_sent == summary.bytes_sent == 0 and summary.held == len(pending)
    assert summary.receipts == len(signed) == 1 and summary.freed == list(by_seq) and unit.stored_seqs() == []
    with Spool(tmp_path / "spool") as spool:
        assert spool.dock_receipts(DEVICE, list(by_seq)) == signed
