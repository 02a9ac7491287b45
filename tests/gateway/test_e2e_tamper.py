"""Done means: a tampered segment on a docked recorder is flagged at the dock, quarantined by the server and
uploaded as such, its server receipt says so; the rest of its chain is stored. Real processes: `liuhen server
run`, `liuhen gateway run`, `liuhen recorder dock`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.spool import Spool
from protocol import errors, receipts
from protocol.trust import parse_trust_list
from tests.gateway.dock_rig import Recordings
from tests.gateway.e2e_station import E2EStation

DEVICE = "REC-T1"


def test_a_tampered_segment_is_flagged_quarantined_and_uploaded_as_such(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    recordings = Recordings.shared(tmp_path_factory)
    station = E2EStation(tmp_path, bays=1)
    recorder = station.add_rig_recorder(DEVICE, recordings)
    store = recorder.store()
    altered = next(p for p in store.pending() if p.manifest.media is not None and p.seq > 1)
    assert altered.media_path is not None
    data = bytearray(altered.media_path.read_bytes())
    data[len(data) // 2] ^= 1  # one bit of one file, after the recorder signed it
    altered.media_path.write_bytes(bytes(data))
    tampered = altered.manifest.hash.hex()

    with station.running():
        docked = station.dock(DEVICE, 1)
        assert docked.returncode == 0 and docked.summary is not None, docked.output
        results = {int(seq): result for seq, result in docked.summary["results"].items()}
        assert results.pop(altered.seq) == errors.FILE_HASH_MISMATCH  # flagged at the dock
        assert set(results.values()) == {receipts.RESULT_OK}
        # Receipted and taken; the recorder keeps its altered copy (not what its manifest names) for a person.
        assert recorder.holds() == {altered.seq: tampered}
        station.gateway.wait_backlog_empty()

        rows = {row["seq"]: row for row in station.server_rows(DEVICE)}
        assert {seq: row["manifest"] for seq, row in rows.items()} == recorder.recorded
        assert {seq for seq, row in rows.items() if row["status"] != "stored"} == {altered.seq}
        [quarantined] = station.quarantine()
        assert (quarantined["device"], quarantined["seq"], quarantined["manifest"]) == (DEVICE, altered.seq, tampered)
        assert errors.FILE_HASH_MISMATCH in {f["code"] for f in quarantined["findings"]}
        uploaded = rf"{DEVICE} seq {altered.seq} \({tampered[:12]}\): uploaded, quarantined at log index \d+ \(.*"
        assert re.search(uploaded + re.escape(errors.FILE_HASH_MISMATCH), station.gateway.run_log())
        assert station.spool_leftovers() == []  # the server's receipt, quarantined, lets the gateway free it
    with Spool(station.gateway.settings.spool_dir) as spool:
        held = spool.get(tampered)
    assert held is not None and held.findings == [errors.FILE_HASH_MISMATCH] and held.server_receipt is not None
    receipt = receipts.open_receipt(held.server_receipt, receipts.SERVER_TYPE,
                                    parse_trust_list(station.gateway_trust.read_bytes()))
    assert (receipt["status"], receipt["manifest"]) == (receipts.QUARANTINED, tampered)
    assert errors.FILE_HASH_MISMATCH in receipt["findings"]
