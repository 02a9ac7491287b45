"""Done means: the gateway killed (SIGKILL) at 50 random instants while recorders dock and while it uploads,
started again each time, with a real server (`liuhen server run`) and a real gateway (`liuhen gateway run`):
no segment is lost or duplicated, the server holds exactly what was recorded (each manifest stored and logged
once), and transfers resume from what the gateway held instead of starting again.

The recorders are the firmware's dock client, each in a thread of the test, docking again until it holds
nothing without a receipt, as a recorder left in its bay does. Its wait between tries is injected: it waits
for the gateway to be back rather than for a fixed time, so the kills keep meeting recorders mid-dock.
They arrive four at a time, every ten kills; the first two kills after an arrival strike a random instant
just after a bay starts receiving a file, the others after the gateway ran for a random fraction of a
second, mostly while it uploads."""

from __future__ import annotations

import os
import random
import re
import threading
import time
from pathlib import Path

import pytest

from firmware.dock_client import DockClient, DockSummary
from firmware.store import RecorderStore
from protocol.trust import parse_trust_list
from tests.gateway.dock_rig import Recordings
from tests.gateway.e2e_station import E2EStation

DEVICES = [f"REC-K{i:02d}" for i in range(1, 21)]
KILLS = 50
WAVE, WAVE_EVERY = 4, 10  # recorders arrive four at a time, every ten kills: docking recurs through the kills
MID_DOCK = 2  # of each ten kills, the first two strike a random instant after a bay starts receiving a file
DELAY_S = (0.02, 0.25)  # the others: how long the gateway runs before the kill
MID_FILE_S = (0.0, 0.03)
DOCKING = frozenset({"hello", "checking", "receiving"})  # a bay's states while a dock is under way
DOCKS = 20  # docks a recorder tries (each one gives up after 5 lost links in a row without progress)
DEADLINE_S = 120.0


class Dockings:
    """The recorders in their bays: each one's dock client in a thread, docking again until nothing is pending."""

    def __init__(self, station: E2EStation, recordings: Recordings) -> None:
        self.station = station
        self.recordings = recordings
        self.gateways = parse_trust_list(station.gateway_trust.read_bytes())
        self.gateway_up = threading.Event()
        self.gateway_up.set()
        self.kills = 0  # so far
        self.cut_by: set[int] = set()  # the kills that cut a recorder's link mid-dock (by number, from 1)
        self.summaries: list[DockSummary] = []
        self.threads: dict[str, threading.Thread] = {}
        self.failed: list[str] = []

    def arrive(self, device: str) -> None:
        thread = threading.Thread(target=self._dock_until_free, args=(device,), daemon=True)
        self.threads[device] = thread
        thread.start()

    def _dock_until_free(self, device: str) -> None:
        recorder = self.station.recorders[device]
        bay = list(self.station.recorders).index(device) + 1
        client = DockClient(recorder.store(), self.recordings.get(device)[1], self.gateways,
                            self.station.gateway.bay_url(bay), sleep=self._link_lost)
        for _ in range(DOCKS):
            summary = client.dock()
            self.summaries.append(summary)
            if summary.error is None and not summary.kept:
                return
            self.gateway_up.wait(DEADLINE_S)
        self.failed.append(f"{device}: {self.summaries[-1].error}")

    def _link_lost(self, _seconds: float) -> None:
        """The dock client's wait before it tries again: the last kill cut its link."""
        self.cut_by.add(self.kills)
        self.gateway_up.wait(DEADLINE_S)

    def until_receiving(self) -> None:
        """Until a bay receives a file (or no recorder docks any more)."""
        deadline = time.monotonic() + DEADLINE_S
        while any(t.is_alive() for t in self.threads.values()):
            if any(b["state"] == "receiving" for b in self.station.gateway.station()["bays"]):
                return
            assert time.monotonic() < deadline, "the recorders never got to send a file"
            time.sleep(0.005)

    def join(self) -> None:
        for thread in self.threads.values():
            thread.join(DEADLINE_S)
        assert not self.failed and not any(t.is_alive() for t in self.threads.values()), self.failed

    def resumed(self) -> list[tuple[int, int]]:
        """(offset, size) of each file the gateway held part of when its recorder came back to it."""
        return [(offset, self._size(s.device, seq)) for s in self.summaries for seq, offset in s.resumed.items()]

    def _size(self, device: str, seq: int) -> int:
        template, _ = self.recordings.get(device)
        media = RecorderStore(template, device).load(seq).manifest.media
        assert media is not None
        return int(media["size"])


def test_fifty_gateway_kills_lose_nothing_duplicate_nothing_and_transfers_resume(
        tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    recordings = Recordings.shared(tmp_path_factory)
    seed = int(os.environ.get("LIUHEN_CRASH_SEED", time.time_ns() % 10**6))
    print(f"gateway kill test seed {seed} (LIUHEN_CRASH_SEED reruns it)")
    rng = random.Random(seed)
    station = E2EStation(tmp_path, bays=len(DEVICES), chunk_bytes=4096)
    for device in DEVICES:
        station.add_rig_recorder(device, recordings)
    with station.running():
        dockings = Dockings(station, recordings)
        bays_docking: set[int] = set()
        uploading: set[int] = set()
        started = time.monotonic()
        for kill in range(1, KILLS + 1):
            if kill % WAVE_EVERY == 1:
                for device in DEVICES[kill // WAVE_EVERY * WAVE:][:WAVE]:
                    dockings.arrive(device)
            if kill % WAVE_EVERY in range(1, MID_DOCK + 1):
                dockings.until_receiving()
                time.sleep(rng.uniform(*MID_FILE_S))
            else:
                time.sleep(rng.uniform(*DELAY_S))
            doing = station.gateway.station()  # what the gateway is doing at the instant it is killed
            dockings.kills = kill
            dockings.gateway_up.clear()
            station.gateway.kill()
            if any(b["state"] in DOCKING for b in doing["bays"]):
                bays_docking.add(kill)
            if doing["backlog"]["count"] > 0:
                uploading.add(kill)
            station.gateway.start()
            dockings.gateway_up.set()
        docking = bays_docking | dockings.cut_by
        print(f"{KILLS} kills in {time.monotonic() - started:.0f} s: {len(docking)} while recorders docked "
              f"({len(dockings.cut_by)} cutting a dock link), {len(uploading)} with footage to upload")
        dockings.join()
        station.gateway.wait_backlog_empty(DEADLINE_S)
        assert station.spool_leftovers() == []

        recorded = {d: r.recorded for d, r in station.recorders.items()}
        for device in DEVICES:
            assert station.recorders[device].holds() == {}
            assert station.on_server(device) == recorded[device]
    rows, logged = station.index_counts()
    manifests = sum(map(len, recorded.values()))
    assert sorted(rows) == sorted(h for r in recorded.values() for h in r.values())
    assert set(rows.values()) == {1} and len(logged) == manifests and set(logged.values()) == {1}
    files, uploads = dockings.resumed(), resumed_uploads(station.server.log_path)
    mid_file = [(offset, size) for offset, size in files if offset < size]
    print(f"files resumed at the dock: {len(files)}, {len(mid_file)} of them mid-file {sorted(mid_file)}, the "
          f"others complete but not yet admitted; uploads resumed on the server: {len(uploads)}")
    assert len(docking) >= 3 and len(uploading) >= 10
    # A gateway that started files again would plan them from 0: no recorder would resume one.
    assert mid_file and all(offset <= size for offset, size in files)
    assert uploads


def resumed_uploads(server_log: Path) -> set[str]:
    """The tus uploads with media that the gateway came back to after a kill. Without a kill the gateway
    creates an upload and PATCHes it, the last PATCH answering with the receipt; only a gateway resuming an
    upload it began before asks its offset (HEAD) first. One that started again would create a new upload."""
    asked: dict[str, set[str]] = {}
    for method, upload in re.findall(r'"(HEAD|PATCH) /api/uploads/([0-9a-f]{32}) ', server_log.read_text()):
        asked.setdefault(upload, set()).add(method)
    return {upload for upload, methods in asked.items() if methods == {"HEAD", "PATCH"}}
