"""End to end with real processes: simulated recorders record (`liuhen sim record`), dock at a real gateway
(`liuhen recorder dock` against `liuhen gateway run`), and everything reaches a real case server
(`liuhen server run`) with receipts; the recorders are freed, the spool ends empty, and an evidence package of
the server's copy verifies (`liuhen verify`)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.gateway.e2e_station import GATEWAY, SUPERVISOR, E2EStation
from tests.server.harness import liuhen

DEVICES = ["REC-E2E-1", "REC-E2E-2", "REC-E2E-3"]
REASON = "end-to-end check of the evidence chain"


@pytest.fixture
def station(tmp_path: Path) -> Iterator[E2EStation]:
    station = E2EStation(tmp_path, bays=len(DEVICES))
    with ThreadPoolExecutor(len(DEVICES)) as pool:
        list(pool.map(station.add_sim_recorder, DEVICES))
    with station.running():
        yield station


def test_three_recorders_record_dock_and_reach_the_server(station: E2EStation, tmp_path: Path) -> None:
    recorded = {d: station.recorders[d].recorded for d in DEVICES}
    assert all(len(r) >= 2 for r in recorded.values()), recorded  # a boot record and footage, at least

    for device, result in zip(DEVICES, station.dock_all(DEVICES), strict=True):
        assert result.returncode == 0 and result.summary is not None, result.output
        assert result.summary["gateway"] == GATEWAY and sorted(result.summary["freed"]) == sorted(recorded[device])
        assert station.recorders[device].holds() == {}  # the recorder is freed

    status = station.gateway.wait_backlog_empty()
    assert status["backlog"] == {**status["backlog"], "count": 0, "media_bytes": 0, "flagged": 0, "held_back": 0}
    assert station.spool_leftovers() == []

    ids = []
    for device in DEVICES:
        rows = station.server_rows(device)
        assert {row["seq"]: row["manifest"] for row in rows} == recorded[device]
        assert {row["status"] for row in rows} == {"stored"}
        ids += [row["id"] for row in rows]

    supervisor = station.session(SUPERVISOR)
    made = supervisor.post(f"{station.server.url}/api/exports",
                           json={"format": "package", "reason": REASON, "segments": ids}, timeout=120)
    assert made.status_code == 201, made.text
    package = tmp_path / "package.zip"
    _download(supervisor, station.server.url + made.json()["url"], package)
    verified = liuhen("verify", str(package), "--keys", str(station.gateway_trust), check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _download(session: requests.Session, url: str, path: Path) -> None:
    with session.get(url, stream=True, timeout=120) as r:
        r.raise_for_status()
        with open(path, "wb") as f:
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
