from __future__ import annotations

from pathlib import Path

import pytest

from firmware.config import RecorderConfig
from firmware.recorder import DOCKED, LOW_BATTERY, RECORDING, STANDBY, STORAGE_FULL, Recorder
from firmware.store import RecorderStore
from hardware.media import EncodedPacket, StreamInfo
from hardware.storage import Storage
from hardware.supervisor import BatteryStatus, PowerFail, Tamper
from liuhen.verify_folder import verify_paths
from protocol import assignment, errors, manifest, signatures
from protocol.trust import TrustList, trusted_key

from .media_fixture import FPS, make_packets

NS = 1_000_000_000
DEVICE = "REC-0001"


class PacketSource:
    """A MediaSource over packets encoded beforehand (real H.264/AAC made with PyAV)."""

    def __init__(self, streams: list[StreamInfo], packets: list[EncodedPacket]) -> None:
        self._streams, self.packets, self.overlay = streams, packets, []

    def streams(self) -> list[StreamInfo]:
        return self._streams

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read(self, timeout: float | None = None) -> EncodedPacket | None:
        return self.packets.pop(0) if self.packets else None

    def set_overlay(self, lines: list[str]) -> None:
        self.overlay = lines


@pytest.fixture(scope="module")
def media() -> tuple[list[StreamInfo], list[EncodedPacket]]:
    return make_packets(20.0)


class Rig:
    def __init__(self, root: Path, media: tuple[list[StreamInfo], list[EncodedPacket]], **config: object) -> None:
        self.root = root
        self.signer = signatures.KeySigner(signatures.generate())
        self.trust = TrustList([trusted_key(self.signer.public_key(), "device", DEVICE)])
        self.gateway = signatures.KeySigner(signatures.generate())
        self.gateways = TrustList([trusted_key(self.gateway.public_key(), "gateway", "GW-01")])
        self.config = RecorderConfig(device=DEVICE, store=root, segment_seconds=4, prerecord_seconds=2,
                                     **config)  # type: ignore[arg-type]
        self.media = media
        self.now = 0
        self.wall_base = 1_764_000_000 * NS  # advanced at each reboot, as a real RTC would be

    def recorder(self, quota: int | None = None) -> Recorder:
        store = RecorderStore(self.root, DEVICE)
        source = PacketSource(*self.media)
        source.packets = list(source.packets)
        rec = Recorder(self.config, store, self.signer, source, storage=Storage(self.root, quota),
                       gateways=self.gateways, monotonic_ns=lambda: self.now,
                       wall_ns=lambda: self.wall_base + self.now)
        rec.boot()
        return rec

    def feed(self, rec: Recorder, until_s: float, presses: dict[float, str] | None = None) -> None:
        source = rec.media
        assert isinstance(source, PacketSource)
        pending = dict(sorted((presses or {}).items()))
        while source.packets and source.packets[0].capture_ns < until_s * NS:
            packet = source.read()
            assert packet is not None
            self.now = packet.capture_ns
            for at in [t for t in pending if t * NS <= packet.capture_ns]:
                action = pending.pop(at)
                {"record": rec.toggle_recording, "mark": rec.mark}[action](int(at * NS))
            rec.handle_packet(packet)

    def verify(self) -> set[str]:
        report = verify_paths([self.root], self.trust)
        return {f.code for f in report.findings() if not f.informational}


def segments(rec: Recorder) -> list[manifest.Manifest]:
    return [m for m in rec.committed if m.kind in manifest.MEDIA_KINDS]


def test_prerecord_segments_and_verify(tmp_path: Path, media) -> None:
    rig = Rig(tmp_path / "store", media)
    rec = rig.recorder()
    rig.feed(rec, 19.5, {5.2: "record", 7.0: "mark", 15.0: "record"})
    rec.shutdown()
    segs = segments(rec)
    first = segs[0]
    # Pre-record: the first segment opens at the keyframe at least 2 s before the press (keyframes every 1 s).
    assert first.fields["prerecord"] and first.time["mono_start_ns"] == 3 * NS
    assert sum(m.media["frames"] for m in segs) == (15 - 3) * FPS
    assert [m.media["frames"] for m in segs] == [4 * FPS, 4 * FPS, 4 * FPS]
    assert any(mk["kind"] == "event" for m in segs for mk in m.fields["markers"])
    assert rig.verify() == set()
    assert rec.state == STANDBY


def test_power_cut_recovers_the_open_segment(tmp_path: Path, media) -> None:
    rig = Rig(tmp_path / "store", media)
    rec = rig.recorder()
    rig.feed(rec, 11.5, {3.0: "record"})  # crash: a segment is open, nothing calls shutdown
    before = segments(rec)
    rig.wall_base += rig.now + 5 * NS  # the reboot takes a few seconds
    rig.now = 0
    again = rig.recorder()
    kinds = [m.kind for m in again.committed]
    assert kinds == [manifest.BOOT, manifest.RECOVERED_SEGMENT, manifest.RECOVERY]
    recovered = again.committed[1]
    # The open segment ran from 9 s to 11.5 s: whole fragments (1 s each) survive, at most one is lost.
    assert recovered.media["frames"] >= (11.5 - 9 - 1) * FPS - FPS
    recovery = again.committed[2].detail
    assert recovery["partial"][0]["recovered_seq"] == recovered.seq
    assert rig.verify() == set()
    assert sum(m.media["frames"] for m in before) == 8 * FPS  # 1 s to 9 s, pre-record included


def test_crash_between_reserving_and_signing_is_explained(tmp_path: Path, media) -> None:
    rig = Rig(tmp_path / "store", media)
    rec = rig.recorder()
    rec.store.reserve_seq()  # as if the power went right after persisting the number
    again = rig.recorder()
    assert again.committed[-1].kind == manifest.RECOVERY
    assert again.committed[-1].detail["missing"] == [[1, 1]]
    assert rig.verify() == set()


def test_storage_full_stops_recording_with_a_signed_record(tmp_path: Path, media) -> None:
    rig = Rig(tmp_path / "store", media, storage_reserve_bytes=200_000)
    rec = rig.recorder(quota=300_000)
    rig.feed(rec, 19.5, {3.0: "record"})
    assert rec.state == STORAGE_FULL
    assert rec.committed[-1].kind == manifest.STORAGE_FULL
    assert rig.verify() == set()
    # Nothing is ever deleted to make room.
    assert all((rig.root / DEVICE / m.media["name"]).exists() for m in segments(rec))


def test_assignment_goes_into_manifests_and_overlay(tmp_path: Path, media) -> None:
    rig = Rig(tmp_path / "store", media)
    rec = rig.recorder()
    env = assignment.issue(rig.gateway, {"gateway": "GW-01", "device": DEVICE, "issued_ns": 1,
                                         "officer": {"number": "110234", "name": "张伟", "unit_code": "330100000000",
                                                     "unit_name": "杭州市综合执法局"}})
    rec.assign(assignment.open_assignment(env, rig.gateways, DEVICE))
    rig.feed(rec, 9.0, {3.0: "record"})
    rec.shutdown()
    assert rec.media.overlay[1:] == [DEVICE, "OFFICER 110234"]
    assert all(m.fields["assignment"]["officer"] == "110234" for m in segments(rec))
    assert rig.verify() == set()
    # The assignment survives a reboot.
    assert rig.recorder().assignment is not None


def test_assignment_for_another_device_is_refused(tmp_path: Path, media) -> None:
    rig = Rig(tmp_path / "store", media)
    env = assignment.issue(rig.gateway, {"gateway": "GW-01", "device": "REC-9999", "issued_ns": 1,
                                         "officer": {"number": "1", "name": "x", "unit_code": "1", "unit_name": "x"}})
    with pytest.raises(errors.ProtocolError):
        assignment.open_assignment(env, rig.gateways, DEVICE)


def test_tamper_and_power_fail_events(tmp_path: Path, media) -> None:
    rig = Rig(tmp_path / "store", media)
    rec = rig.recorder()
    rig.feed(rec, 6.0, {2.0: "record"})
    rec.handle_event(Tamper(opened=True, mono_ns=rig.now, count=1))
    assert rec.committed[-1].kind == manifest.TAMPER and rec.committed[-1].detail["opened"] is True
    rec.handle_event(PowerFail(mono_ns=rig.now, millivolts=3000))
    assert rec.open is None and not (rig.root / ".state" / "running").exists()
    assert segments(rec) and rig.verify() == set()


def test_docked_means_no_buffering_and_dock_time_is_signed(tmp_path: Path, media) -> None:
    rig = Rig(tmp_path / "store", media)
    rec = rig.recorder()
    rig.feed(rec, 5.0, {1.5: "record"})
    rec.dock()
    assert rec.state == DOCKED and rec.open is None and segments(rec)
    rig.feed(rec, 8.0)
    assert rec.buffer.drain() == []  # nothing buffered in the dock
    sync = rec.dock_sync(rec.clock.utc_ns(rig.now) + 3 * NS, rig.now, "GW-01")
    assert sync is not None and sync.kind == manifest.CLOCK_SYNC and sync.detail["step_ns"] == 3 * NS
    assert rec.dock_sync(rec.clock.utc_ns(rig.now), rig.now, "GW-01") is None  # already right
    rec.undock()
    assert rec.state == STANDBY
    rig.feed(rec, 9.5)
    assert rec.buffer.drain()  # buffering again
    assert rig.verify() == set()


def test_low_battery_stops_recording_unless_on_external_power(tmp_path: Path, media) -> None:
    rig = Rig(tmp_path / "store", media)
    rec = rig.recorder()
    rig.feed(rec, 4.0, {1.5: "record"})
    rec.handle_event(BatteryStatus(percent=4, millivolts=3300, charging=False, external_power=True))
    assert rec.state == RECORDING
    rec.handle_event(BatteryStatus(percent=4, millivolts=3300, charging=False, external_power=False))
    assert rec.state == LOW_BATTERY and rec.open is None and segments(rec)
    assert rig.verify() == set()
