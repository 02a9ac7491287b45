"""What the station page, its JSON and the station's MQTT status show: one snapshot built from the parts.

The page depends on the other parts only through plain data: the bays' progress (gateway/bays.py), the
spool's backlog (gateway/spool.py), the recorders' telemetry (gateway/station_mqtt.py), the check-outs and
recent problems. The app passes in callables that give them (`StationSources`), so the page neither holds
nor changes the live objects.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.bays import BayProgress
from gateway.checkout import DELIVERED, PENDING, Checkout
from gateway.problems import Problem
from gateway.spool import Backlog
from gateway.station_mqtt import RecorderSeen

PROBLEMS_SHOWN = 50


def _nothing() -> list[Problem]:
    return []


def _no_error() -> str | None:
    return None


@dataclass(frozen=True)
class StationSources:
    """Where the figures come from. `bays` is read in the event loop (the dock updates the bays there);
    `backlog` and `checkouts` block on SQLite and are called in a worker thread."""

    gateway: str
    bays: Callable[[], list[BayProgress]]  # Bays.snapshot
    backlog: Callable[[], Backlog]  # Spool.backlog
    recorders: Callable[[], list[RecorderSeen]]  # StationMqtt.recorders
    checkouts: Callable[[], list[Checkout]]  # Checkouts.list
    problems: Callable[[], list[Problem]] = _nothing  # the other parts' problems (StationMqtt.problems.recent)
    upload_error: Callable[[], str | None] = _no_error  # the uploader's last error, while it lasts
    clock_ns: Callable[[], int] = time.time_ns


@dataclass(frozen=True)
class StationView:
    gateway: str
    now_ns: int
    bays: list[BayProgress]
    recorders: list[RecorderSeen]
    backlog: Backlog
    upload_error: str | None
    checkouts: list[Checkout]  # newest first
    problems: list[Problem]  # newest first, the bays' refusals among them

    def recorder(self, device: str | None) -> RecorderSeen | None:
        return next((r for r in self.recorders if r.device == device), None)

    def officer(self, device: str | None) -> Checkout | None:
        """Who wears the recorder: its newest delivered check-out, else the one waiting for its next dock."""
        mine = [c for c in self.checkouts if c.device == device]
        return next((c for c in mine if c.status == DELIVERED), None) or \
            next((c for c in mine if c.status == PENDING), None)


async def build_view(sources: StationSources) -> StationView:
    bays = sources.bays()
    backlog, checkouts = await asyncio.gather(asyncio.to_thread(sources.backlog),
                                              asyncio.to_thread(sources.checkouts))
    problems = [Problem(e.at_ns, bay.bay, e.code, e.message, e.device) for bay in bays for e in bay.events]
    problems += sources.problems()
    problems.sort(key=lambda p: p.at_ns, reverse=True)
    return StationView(sources.gateway, sources.clock_ns(), bays, sources.recorders(), backlog,
                       sources.upload_error(), checkouts, problems[:PROBLEMS_SHOWN])


def view_json(view: StationView) -> dict[str, Any]:
    """`GET /api/station`: the view as JSON; each bay also carries its recorder's officer and battery."""
    return {
        "gateway": view.gateway,
        "now_ns": view.now_ns,
        "bays": [_bay_json(view, bay) for bay in view.bays],
        "recorders": [dataclasses.asdict(r) for r in view.recorders],
        "backlog": {**dataclasses.asdict(view.backlog), "upload_error": view.upload_error},
        "checkouts": [c.to_json() for c in view.checkouts],
        "problems": [dataclasses.asdict(p) for p in view.problems],
    }


def _bay_json(view: StationView, bay: BayProgress) -> dict[str, Any]:
    doc = dataclasses.asdict(bay)
    del doc["events"]  # they are among the problems
    officer, recorder = view.officer(bay.device), view.recorder(bay.device)
    doc["officer"] = officer.officer.to_json() if officer else None
    doc["battery_percent"] = recorder.battery_percent if recorder else None
    return doc


def station_status(view: StationView) -> dict[str, Any]:
    """The station's retained MQTT status (station_mqtt publishes it): bays, backlog, recorders online."""
    return {
        "bays": [{"bay": b.bay, "device": b.device, "state": b.state, "files_done": b.files_done,
                  "files_total": b.files_total, "bytes_done": b.bytes_done, "bytes_total": b.bytes_total}
                 for b in view.bays],
        "backlog": dataclasses.asdict(view.backlog),
        "upload_error": view.upload_error,
        "recorders_online": sum(r.online is True for r in view.recorders),
        "checkouts_pending": sum(c.status == PENDING for c in view.checkouts),
    }
