"""Done means: with the gateway's disk full it refuses new transfers, with a clear error on the station API and
from the recorder's dock command, and the recorders keep all their footage; once there is space again
(here: a smaller free-space reserve, the gateway started again) they dock and everything reaches the server.
Real processes: `liuhen server run`, `liuhen gateway run`, `liuhen recorder dock`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from protocol import errors
from tests.gateway.dock_rig import Recordings
from tests.gateway.e2e_station import E2EStation

DEVICES = ["REC-D1", "REC-D2"]


def test_a_full_disk_refuses_transfers_the_recorders_keep_their_footage_and_nothing_is_lost(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    recordings = Recordings.shared(tmp_path_factory)
    # A reserve beyond what the spool's filesystem has free: to the dock, the disk is full.
    station = E2EStation(tmp_path, bays=len(DEVICES), reserve_bytes=shutil.disk_usage(tmp_path).free + 2**40)
    for device in DEVICES:
        station.add_rig_recorder(device, recordings)
    with station.running():
        for device, docked in zip(DEVICES, station.dock_all(DEVICES), strict=True):
            recorder = station.recorders[device]
            assert docked.returncode == 1 and docked.summary is not None, docked.output
            assert errors.DOCK_DISK_FULL in docked.summary["error"] and "keeps its footage" in docked.summary["error"]
            assert docked.summary["freed"] == [] and docked.summary["kept"] == sorted(recorder.recorded)
            assert recorder.holds() == recorder.recorded
        doc = station.gateway.station()
        assert {b["device"]: b["state"] for b in doc["bays"]} == dict.fromkeys(DEVICES, "disk-full")
        assert all(b["last_error"].startswith(errors.DOCK_DISK_FULL) for b in doc["bays"])
        assert sorted(p["device"] for p in doc["problems"] if p["code"] == errors.DOCK_DISK_FULL) == DEVICES
        assert doc["backlog"]["count"] == 0  # nothing was taken

        station.gateway.stop()
        station.gateway.set_dock(reserve_bytes=0)  # space came back
        station.gateway.start()
        for device, docked in zip(DEVICES, station.dock_all(DEVICES), strict=True):
            assert docked.returncode == 0 and docked.summary is not None, docked.output
            assert station.recorders[device].holds() == {}
        station.gateway.wait_backlog_empty()
        assert station.spool_leftovers() == []
        for device in DEVICES:
            assert station.on_server(device) == station.recorders[device].recorded
