"""Done means: with the case server away, recorders still dock and are freed, the gateway's spool holds
their footage and the station shows the backlog and the upload error; when the server is back, the uploads
resume and the backlog empties, and the server holds exactly what was recorded. Real processes: `liuhen server
run` (stopped and started again), `liuhen gateway run`, `liuhen recorder dock`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.gateway.dock_rig import Recordings
from tests.gateway.e2e_station import E2EStation

DEVICES = ["REC-A1", "REC-A2", "REC-A3"]


def test_the_server_away_the_spool_grows_recorders_are_freed_and_uploads_resume(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    recordings = Recordings.shared(tmp_path_factory)
    station = E2EStation(tmp_path, bays=len(DEVICES))
    for device in DEVICES:
        station.add_rig_recorder(device, recordings)
    recorders = station.recorders.values()
    media_bytes = sum(r.media_bytes() for r in recorders)
    with station.running():
        station.server.stop()
        for device, docked in zip(DEVICES, station.dock_all(DEVICES), strict=True):
            assert docked.returncode == 0 and docked.summary is not None, docked.output
            assert docked.summary["kept"] == [] and station.recorders[device].holds() == {}  # freed all the same

        away = station.gateway.wait_station(lambda doc: doc["backlog"]["upload_error"] is not None)
        assert away["backlog"]["count"] == sum(len(r.recorded) for r in recorders)  # everything waits in the spool
        assert away["backlog"]["media_bytes"] == media_bytes > 0
        assert "Connection refused" in away["backlog"]["upload_error"], away["backlog"]
        assert "upload failed" in station.gateway.run_log()

        station.server.start()
        back = station.gateway.wait_backlog_empty()
        assert back["backlog"]["upload_error"] is None and station.spool_leftovers() == []
        for device in DEVICES:
            assert station.on_server(device) == station.recorders[device].recorded

