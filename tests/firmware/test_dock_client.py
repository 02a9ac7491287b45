"""The recorder's dock client against the gateway's real dock on real sockets: resume after a dropped link,
the clock exchange with a running recorder, and what it frees."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.config import RecorderConfig
from firmware.dock_client import DockSummary
from firmware.recorder import Recorder
from hardware.storage import Storage
from liuhen import cli
from protocol import manifest, receipts, signatures
from protocol.trust import TrustList, trusted_key
from tests.firmware.test_recorder import PacketSource
from tests.gateway import dock_rig
from tests.gateway.dock_rig import (
    GATEWAY,
    NS,
    CuttingSession,
    DockThread,
    Recordings,
    Station,
    partial_reaches,
)

DEVICE = "REC-0001"


# The dock tests' shared fixtures (tests/gateway/dock_rig.py): real recorded footage, and a station.
recordings = dock_rig.recordings
station = dock_rig.station


@pytest.fixture
def gateway(station: Station, tmp_path: Path) -> Iterator[DockThread]:
    # Small disk writes, so that a file's bytes arrive in several and a cut lands between them.
    with DockThread(station, ["bay-1"], tmp_path / "spool", chunk_bytes=4096) as dock:
        yield dock


def test_a_dropped_link_resumes_within_the_file(recordings: Recordings, station: Station,
                                                gateway: DockThread) -> None:
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    pending = {p.seq: p.manifest for p in unit.store.pending()}
    written = partial_reaches(gateway.spool.root, DEVICE, 8192)
    cut = CuttingSession({1: 10_000}, cut=lambda _n: written())
    client = station.client(unit, gateway.url("bay-1"), http=cut)
    summary = client.dock()
    assert summary.error is None, summary.error
    # The first file sent is the marked one; what arrived of it before the drop was not sent again.
    first = next(iter(summary.results))
    assert pending[first].fields["markers"]
    assert list(summary.resumed) == [first] and 8192 <= summary.resumed[first] <= 10_000
    files = sum(m.media["size"] for m in pending.values() if m.media)
    assert summary.bytes_sent == files - summary.resumed[first]  # nothing was sent twice
    assert summary.freed == sorted(pending) and unit.stored_seqs() == [] and summary.kept == []
    spooled = gateway.spool.get(pending[first].hash.hex())
    assert spooled is not None and spooled.findings == []
    assert spooled.path is not None and hashlib.sha256(spooled.path.read_bytes()).hexdigest() == \
        pending[first].media["sha256"]


def test_a_running_recorder_follows_the_gateway_clock(recordings: Recordings, station: Station,
                                                      gateway: DockThread, tmp_path: Path) -> None:
    """The recorder's RTC lost power (its clock is years off): the dock sets it, and the clock-sync record
    it signs goes to the gateway in the same dock."""
    template, signer = recordings.get(DEVICE)
    unit = station.unit(DEVICE, template, signer)
    now = [0]
    rec = Recorder(RecorderConfig(device=DEVICE, store=unit.store.root, prerecord_seconds=0), unit.store, signer,
                   PacketSource([], []), storage=Storage(unit.store.root), monotonic_ns=lambda: now[0],
                   wall_ns=lambda: 1_000_000_000 * NS + now[0])
    rec.boot()
    rec.dock()
    client = station.client(unit, gateway.url("bay-1"), sync=rec.dock_sync, utc_ns=rec.clock.utc_ns,
                            monotonic_ns=lambda: now[0])
    summary = client.dock()
    assert summary.error is None, summary.error
    assert summary.clock_offset_ns is not None and summary.clock_offset_ns > 700_000_000 * NS
    sync = next(m for m in rec.committed if m.kind == manifest.CLOCK_SYNC)
    assert summary.clock_sync_seq == sync.seq and sync.detail["gateway"] == GATEWAY
    assert sync.time["source"] == "dock" and abs(rec.clock.utc_ns() - time.time_ns()) < 2 * NS
    assert sync.seq in summary.freed  # it was offered, taken and receipted in the same dock
    # The gateway measured the same offset, seen from its side, and put it in the receipt.
    receipt = receipts.open_receipt(gateway.spool.dock_receipts(DEVICE, [sync.seq])[0], receipts.DOCK_TYPE,
                                    station.gateways)
    assert abs(receipt["clock_offset_ns"] + summary.clock_offset_ns) < 2 * NS


def test_no_footage_goes_to_a_gateway_the_recorder_does_not_trust(recordings: Recordings, station: Station,
                                                                  gateway: DockThread) -> None:
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    stranger = signatures.KeySigner(signatures.generate())
    client = station.client(unit, gateway.url("bay-1"))
    client.gateways = TrustList([trusted_key(stranger.public_key(), "gateway", "GW-ELSEWHERE")])
    summary = client.dock()
    assert "not in the recorder's gateway trust list" in (summary.error or "")
    assert summary.kept == unit.stored_seqs() != [] and gateway.spool.head(DEVICE) is None


def test_only_what_a_verified_receipt_names_is_freed(recordings: Recordings, station: Station,
                                                     gateway: DockThread) -> None:
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    client = station.client(unit, gateway.url("bay-1"))
    summary = DockSummary(DEVICE, gateway.url("bay-1"))
    stored = unit.store.pending()
    # A receipt for everything, signed by a key the recorder does not trust: nothing is freed.
    forged = receipts.issue(signatures.KeySigner(signatures.generate()), receipts.DOCK_TYPE, {
        "gateway": GATEWAY, "device": DEVICE, "first_seq": stored[0].seq, "last_seq": stored[-1].seq,
        "head": stored[-1].manifest.hash.hex(), "received_ns": 1_764_000_100 * NS, "clock_offset_ns": 0,
        "segments": [{"seq": p.seq, "manifest": p.manifest.hash.hex(),
                      "media_sha256": p.manifest.media["sha256"] if p.manifest.media else None, "result": "ok"}
                     for p in stored]})
    client.apply([forged], summary)
    assert "dock receipt refused: key.unknown" in (summary.error or "") and summary.freed == []
    # Two of the files sent, then the receipts: the records (taken without files) and those two are freed.
    session = client.connect(summary)
    pending = client.pending()
    plan = client.offer(session, pending)
    by_seq = {p.seq: p for p in pending}
    for transfer in plan.send[:2]:
        client.send(session, by_seq[transfer.seq], transfer, summary)
    client.apply(client.receipts(session, list(by_seq)), summary)
    sent = {t.seq for t in plan.send[:2]}
    assert sorted(summary.freed) == sorted(sent | set(plan.held))
    assert unit.pending_seqs() == sorted({t.seq for t in plan.send[2:]}) == unit.stored_seqs()


def test_the_dock_command_docks_a_store_and_exits_with_a_summary(recordings: Recordings, station: Station,
                                                                 gateway: DockThread, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    unit = station.unit(DEVICE, *recordings.get(DEVICE))
    seqs = unit.pending_seqs()
    trust = tmp_path / "gateways.json"
    trust.write_bytes(station.gateways.to_bytes())
    key = tmp_path / "rec.key"
    key.write_bytes(recordings.private_pem(DEVICE))
    key.chmod(0o600)
    config = tmp_path / "recorder.toml"
    config.write_text(f'[recorder]\ndevice = "{DEVICE}"\nstore = "{unit.store.root}"\nkey_file = "{key}"\n'
                      f'gateway_trust_file = "{trust}"\n', encoding="utf-8")
    command = [sys.executable, "-m", "liuhen", "recorder", "dock", "--config", str(config), "--gateway",
               gateway.url("bay-1")]
    result = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["gateway"] == GATEWAY and summary["freed"] == seqs and summary["kept"] == []
    assert unit.stored_seqs() == []
    again = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "nothing pending" in again.stdout, again.stdout + again.stderr
    config.write_text(config.read_text().replace(f'gateway_trust_file = "{trust}"\n', ""))
    assert cli.main(command[3:]) == 2
    assert "needs gateway_trust_file" in capsys.readouterr().err
