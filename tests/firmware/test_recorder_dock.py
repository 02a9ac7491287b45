"""A running recorder docks by itself: the recorder application (fed real H.264/AAC packets on a test clock;
the test's thread is its loop) with its dock runner, against the gateway's real dock on real sockets. External
power docks it; its dock client runs in its own thread and has the loop do what changes the recorder."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from firmware.config import ConfigError, RecorderConfig, load_config
from firmware.dock_client import DockClient, DockSummary
from firmware.main import DockRunner, running_dock_client
from firmware.recorder import DOCKED, RECORDING, STANDBY, STORAGE_FULL, Recorder, RecorderStopped
from firmware.store import RecorderStore
from gateway.checkout import DELIVERED, Checkouts, Officer
from hardware.storage import Storage
from hardware.supervisor import BatteryStatus, RtcTime, Supervisor
from liuhen.verify_folder import verify_paths
from protocol import manifest, signatures
from protocol.trust import trusted_key
from tests.firmware import test_dock_client
from tests.firmware.test_recorder import PacketSource
from tests.gateway.dock_rig import GATEWAY, NS, DockThread, Media, Recordings, Station, partial_reaches
from tests.simulators.test_sim_record_dock import copy_spooled

DEVICE = "REC-DOCK-1"
WALL_NS = 1_000_000_000 * NS  # the recorder's RTC at boot (2001): years behind the gateway's clock

# The dock client tests' fixtures: a station, and its gateway's dock writing in small chunks.
station = test_dock_client.station
gateway = test_dock_client.gateway


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    return Recordings.shared(tmp_path_factory).media


class Unplugged(requests.Session):
    """The gateway out of reach while `down`: every request fails as a refused connection does."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if self.down:
            raise requests.ConnectionError(f"{method} {url}: connection refused")
        return super().request(method, url, *args, **kwargs)


class _Body:
    """A file's bytes as requests reads them; once `after` bytes have gone, `then()` runs (once)."""

    def __init__(self, inner: Any, after: int, then: Callable[[], None]) -> None:
        self.inner, self.after, self.then, self.sent = inner, after, then, 0

    def __len__(self) -> int:
        return len(self.inner)

    def read(self, n: int = -1) -> bytes:
        if self.sent >= self.after and self.then is not None:
            then, self.then = self.then, None
            then()
        data = self.inner.read(min(n, self.after - self.sent) if self.then is not None and n > 0 else n)
        self.sent += len(data)
        return data


class LeavingMidFile(requests.Session):
    """The first file sent: after `after` bytes, `leave()` runs (the recorder is taken out of its dock)."""

    def __init__(self, after: int, leave: Callable[[], None]) -> None:
        super().__init__()
        self.after, self.leave = after, leave

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        if method == "PUT" and self.leave is not None:
            leave, self.leave = self.leave, None
            kwargs["data"] = _Body(kwargs["data"], self.after, leave)
        return super().request(method, url, *args, **kwargs)


class OnTheDock:
    """A supervisor MCU that has reported external power since before the recorder started; its RTC is right."""

    def rtc_read(self) -> RtcTime:
        return RtcTime(time.time_ns(), valid=True)

    def rtc_set(self, utc_ns: int) -> None: ...

    def battery(self) -> BatteryStatus:
        return BatteryStatus(percent=100, millivolts=4200, charging=False, external_power=True)

    def set_leds(self, green: bool, yellow: bool, red: bool) -> None: ...

    def haptic(self, pattern_ms: list[int]) -> None: ...


class DockedRecorder:
    """The recorder and its dock runner, wired as `liuhen recorder run` wires them; the test plays its loop."""

    def __init__(self, root: Path, media: Media, station: Station, url: str, http: Callable[[], requests.Session],
                 supervisor: Supervisor | None = None, **config: Any) -> None:
        signer = signatures.KeySigner(signatures.generate())
        station.devices.add(trusted_key(signer.public_key(), "device", DEVICE))
        station.save_trust()
        self.station = station
        self.root = root
        self.now = 0
        quota = config.pop("storage_quota_bytes", None)
        cfg = RecorderConfig(device=DEVICE, store=root, segment_seconds=2, prerecord_seconds=0, **config)
        self.source = PacketSource(media[0], list(media[1]))
        self.rec = Recorder(cfg, RecorderStore(root, DEVICE), signer, self.source, supervisor=supervisor,
                            storage=Storage(root, quota), gateways=station.gateways, monotonic_ns=lambda: self.now,
                            wall_ns=lambda: WALL_NS + self.now)
        self.summaries: queue.Queue[DockSummary] = queue.Queue()

        def client(stopped: Callable[[], bool]) -> DockClient:
            return running_dock_client(self.rec, station.gateways, url, stopped=stopped, http=http())

        self.runner = DockRunner(client, 3600, backoff_s=0, on_dock=self.summaries.put)
        self.rec.on_state_change = self.runner.state_changed
        self.rec.boot()
        self.runner.start()

    def feed(self, until_s: float, presses: dict[float, str] | None = None) -> None:
        """Camera packets in capture order until `until_s`, record presses at their seconds, calls between."""
        pending = dict(sorted((presses or {}).items()))
        while self.source.packets and self.source.packets[0].capture_ns < until_s * NS:
            packet = self.source.read()
            assert packet is not None
            self.now = packet.capture_ns
            for at in [t for t in pending if t * NS <= packet.capture_ns]:
                pending.pop(at)
                self.rec.toggle_recording(int(at * NS))
            self.rec.handle_packet(packet)
            self.rec.run_calls()

    def power(self, external: bool) -> None:
        """The supervisor's battery report: external power appears (docked) or goes (taken out)."""
        self.rec.handle_event(BatteryStatus(percent=60, millivolts=3900, charging=external, external_power=external))

    def next_dock(self, timeout_s: float = 30.0) -> DockSummary:
        """The next dock's summary, doing the dock client's calls meanwhile, as the loop does."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.rec.run_calls()
            try:
                return self.summaries.get(timeout=0.005)
            except queue.Empty:
                continue
        raise AssertionError("no dock ended in time")

    def stored(self) -> dict[int, bool]:
        """seq -> whether its media file (if it has one) is there, for what the recorder holds."""
        store = self.rec.store
        return {s: (m := store.load(s)).media_path is None or m.media_path.exists() for s in store.stored_seqs()}

    def close(self) -> None:
        assert self.runner.close(self.rec.run_calls), "the dock client did not stop"
        self.rec.shutdown()

    def verify(self, gateway: DockThread, folder: Path) -> set[str]:
        """Findings over what the gateway took and what the recorder still holds, as one chain."""
        if gateway.spool.head(DEVICE) is not None:
            copy_spooled(gateway, DEVICE, folder)
        report = verify_paths([folder, self.root], self.station.devices)
        return {f.code for f in report.findings() if not f.informational}


def test_a_full_recorder_docks_when_the_gateway_comes_and_records_again(media: Media, station: Station,
                                                                     gateway: DockThread, tmp_path: Path) -> None:
    link = Unplugged()
    unit = DockedRecorder(tmp_path / "rec", media, station, gateway.url("bay-1"), lambda: link,
                          storage_quota_bytes=60_000, storage_reserve_bytes=8_000)
    unit.feed(7.0, {0.5: "record"})
    assert unit.rec.state == STORAGE_FULL and unit.rec.warned_fraction >= 0.8
    full = unit.stored()
    # In the dock, the gateway out of reach: the client tries again and again, and nothing is freed.
    unit.power(external=True)
    assert unit.rec.state == DOCKED
    failed = [unit.next_dock() for _ in range(3)]
    assert all("connection refused" in (s.error or "") and s.freed == [] for s in failed)
    assert unit.stored() == full and all(full.values()) and gateway.spool.head(DEVICE) is None
    assert [unit.runner.retry_wait_s(n) for n in (1, 2, 3)] == [0, 0, 0]  # this test's: backoff_s=0
    assert [DockRunner(unit.runner.make_client, 60).retry_wait_s(n) for n in (1, 2, 6, 7, 20)] == [1, 2, 32, 60, 60]
    # The gateway answers: everything goes, with the clock-sync record the dock's time made the recorder sign.
    link.down = False
    summary = next(s for s in iter(unit.next_dock, None) if s.error is None)
    sync = next(m for m in unit.rec.committed if m.kind == manifest.CLOCK_SYNC)
    assert sync.detail["gateway"] == GATEWAY and sync.detail["step_ns"] > 20 * 365 * 24 * 3600 * NS
    assert summary.clock_sync_seq == sync.seq and sorted(summary.freed) == sorted([*full, sync.seq])
    assert unit.stored() == {} and unit.rec.warned_fraction == 0.0  # warned afresh as it fills again
    # Out of the dock it records again: the dock made room.
    unit.power(external=False)
    assert unit.rec.state == STANDBY
    unit.feed(11.0, {8.0: "record"})
    assert [m for m in unit.rec.committed if m.kind == manifest.SEGMENT and m.seq > sync.seq]
    assert unit.rec.state == RECORDING
    unit.close()
    assert unit.verify(gateway, tmp_path / "taken") == set()


def test_leaving_the_dock_mid_file_stops_the_client_and_the_next_dock_resumes(media: Media, station: Station,
                                                                             gateway: DockThread,
                                                                             tmp_path: Path) -> None:
    holds = partial_reaches(gateway.spool.root, DEVICE, 8192)

    def taken_out() -> None:
        holds()  # what the gateway has not read off the link when it drops is lost to it
        unit.rec.call(unit.power, False).result()

    sessions = iter([LeavingMidFile(10_000, taken_out), requests.Session()])
    unit = DockedRecorder(tmp_path / "rec", media, station, gateway.url("bay-1"), lambda: next(sessions))
    unit.feed(9.0, {0.5: "record", 8.5: "record"})
    recorded = unit.stored()
    unit.power(external=True)
    cut = unit.next_dock()
    assert cut.error == "the recorder left the dock, or is stopping" and cut.freed == [] and cut.files_sent == 0
    assert cut.clock_sync_seq is not None
    recorded[cut.clock_sync_seq] = True  # signed when the dock's time came
    assert unit.rec.state == STANDBY and unit.stored() == recorded and all(recorded.values())
    # Docked again: the file goes on from what the gateway holds, and everything is freed.
    unit.power(external=True)
    again = unit.next_dock()
    assert again.error is None, again.error
    [(seq, offset)] = again.resumed.items()
    assert 8192 <= offset <= 10_000 and again.results[seq] == "ok"
    assert sorted(again.freed) == sorted(recorded) and unit.stored() == {}
    unit.close()
    with pytest.raises(RecorderStopped):
        unit.rec.call(unit.rec.undock).result()
    assert unit.verify(gateway, tmp_path / "taken") == set()


def test_a_recording_is_never_cut_by_the_dock(media: Media, station: Station, gateway: DockThread,
                                               tmp_path: Path) -> None:
    """Docked while recording, the recorder docks when the recording ends; a record press in the dock (a
    charger looks the same) records, stopping the dock client, and it docks again afterwards."""
    unit = DockedRecorder(tmp_path / "rec", media, station, gateway.url("bay-1"), requests.Session)
    unit.feed(3.0, {0.5: "record"})
    unit.power(external=True)
    assert unit.rec.state == RECORDING
    unit.feed(5.0, {4.5: "record"})
    assert unit.rec.state == DOCKED
    first = unit.next_dock()
    assert first.error is None and first.freed and unit.stored() == {}
    unit.feed(7.0, {6.0: "record"})
    assert unit.rec.state == RECORDING
    unit.feed(9.0, {8.5: "record"})
    assert unit.rec.state == DOCKED
    made = [m for m in unit.rec.committed if m.kind == manifest.SEGMENT and m.time["mono_start_ns"] >= 6 * NS]
    assert made
    second = unit.next_dock()
    assert second.error is None and {m.seq for m in made} <= set(second.freed) and unit.stored() == {}
    unit.close()
    assert unit.verify(gateway, tmp_path / "taken") == set()


def test_a_gateway_url_needs_the_gateways_trust_list(tmp_path: Path) -> None:
    config = tmp_path / "recorder.toml"
    config.write_text(f'[recorder]\ndevice = "{DEVICE}"\nstore = "{tmp_path}"\ndock_gateway_url = "http://10.0.7.1:8701"\n')
    with pytest.raises(ConfigError, match="dock_gateway_url needs gateway_trust_file"):
        load_config(config)
    config.write_text(config.read_text() + f'gateway_trust_file = "{tmp_path / "gateways.json"}"\n')
    loaded = load_config(config)
    assert loaded.dock_gateway_url == "http://10.0.7.1:8701" and loaded.dock_interval_seconds == 60


def test_a_recorder_started_in_the_dock_docks_at_once(media: Media, station: Station, gateway: DockThread,
                                                      tmp_path: Path) -> None:
    unit = DockedRecorder(tmp_path / "rec", media, station, gateway.url("bay-1"), requests.Session,
                          supervisor=OnTheDock())  # type: ignore[arg-type]
    assert unit.rec.state == DOCKED
    summary = unit.next_dock()
    assert summary.error is None and summary.clock_sync_seq is None  # its clock was right: nothing to sign
    assert summary.freed == [0] and unit.stored() == {}  # the boot record
    unit.close()


class AckLostOnce(Checkouts):
    """Check-outs whose first delivery never reaches the gateway's store, as if the answer had been lost."""

    lost = False

    def delivered(self, device: str, ref: str) -> None:
        if not self.lost:
            self.lost = True
            return
        super().delivered(device, ref)


def test_a_check_out_waiting_at_the_gateway_is_taken_at_the_dock(media: Media, station: Station,
                                                                 tmp_path: Path) -> None:
    """The running recorder takes the gateway-signed assignment, signs it into its chain (it goes in the same
    dock), shows the officer, and the gateway counts it delivered; a second dock signs nothing again."""
    with AckLostOnce(tmp_path / "checkouts", GATEWAY, station.gateway_signer) as checkouts, \
            DockThread(station, ["bay-1"], tmp_path / "spool", assignments=checkouts) as gw:
        made = checkouts.check_out(DEVICE, Officer("100001", "李明", "U1", "城东所"))
        unit = DockedRecorder(tmp_path / "rec", media, station, gw.url("bay-1"), requests.Session)
        unit.feed(3.0, {0.5: "record", 2.5: "record"})
        unit.power(external=True)
        summary = unit.next_dock()
        assigned = [m for m in unit.rec.committed if m.kind == manifest.ASSIGNMENT]
        assert summary.error is None and summary.assignment == made.ref and len(assigned) == 1
        assert unit.rec.assignment is not None and unit.rec.assignment.officer_number == "100001"
        assert assigned[0].seq in summary.freed and unit.stored() == {}
        # The acknowledgement was lost on the way: the gateway hands the check-out over again at the next dock,
        # and the recorder, which has it, signs nothing again.
        assert checkouts.get(made.ref).status != DELIVERED
        unit.power(external=False)
        unit.power(external=True)
        again = unit.next_dock()
        assert again.error is None and again.assignment == made.ref
        assert len([m for m in unit.rec.committed if m.kind == manifest.ASSIGNMENT]) == 1
        assert checkouts.get(made.ref).status == DELIVERED
        unit.close()
        assert unit.verify(gw, tmp_path / "taken") == set()
