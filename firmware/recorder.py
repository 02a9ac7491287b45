"""The recorder application: states, buttons, pre-record, segments, signing, recovery.

States: standby (pre-record buffering), recording, post-record, docked (no
buffering), low battery, storage full. One loop takes camera packets and
supervisor events in order; every segment and every event in the device's
life becomes a signed manifest in the store, in one hash chain. Other threads
(the dock client) have the loop do what changes the recorder (`call`).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from firmware import telemetry
from firmware.config import RecorderConfig
from firmware.durable import atomic_write, write_unsynced
from firmware.prerecord import PreRecordBuffer
from firmware.recovery import OpenSegmentInfo, Recovered, recover_file
from firmware.segmenter import CONTAINER, NS, Segmenter, SegmentFile
from firmware.store import RecorderStore
from firmware.telemetry import recorder_status
from firmware.timekeeper import TimeKeeper
from hardware.gnss import GnssReceiver
from hardware.media import AUDIO, VIDEO, EncodedPacket, MediaSource
from hardware.storage import Space, Storage
from hardware.supervisor import (
    MARK,
    RECORD,
    BatteryStatus,
    ButtonEvent,
    PowerFail,
    Supervisor,
    SupervisorEvent,
    Tamper,
)
from protocol import layout, manifest, signatures
from protocol.assignment import Assignment, open_assignment
from protocol.manifest import Manifest
from protocol.trust import TrustList

STANDBY = "standby"
RECORDING = "recording"
POST_RECORD = "post-record"
DOCKED = "docked"
LOW_BATTERY = "low-battery"
STORAGE_FULL = "storage-full"


STATUS_INTERVAL_NS = 10 * NS
# Telemetry events for signed records and state changes (the chain itself travels at the dock).
_RECORD_EVENTS = {manifest.BOOT: telemetry.BOOT, manifest.RECOVERY: telemetry.POWER_CUT_RECOVERY,
                  manifest.STORAGE_FULL: telemetry.STORAGE_FULL, manifest.TAMPER: telemetry.TAMPER,
                  manifest.ASSIGNMENT: telemetry.ASSIGNMENT, manifest.CLOCK_SYNC: telemetry.CLOCK_STEP,
                  manifest.MARKER: telemetry.MARKER}
_EVENT_DETAIL = frozenset({"reason", "missing", "free_bytes", "total_bytes", "opened", "count", "source", "step_ns"})
_ENTER_EVENTS = {RECORDING: telemetry.RECORDING_STARTED, DOCKED: telemetry.DOCKED, LOW_BATTERY: telemetry.LOW_BATTERY}
_LEAVE_EVENTS = {RECORDING: telemetry.RECORDING_STOPPED, POST_RECORD: telemetry.RECORDING_STOPPED,
                 DOCKED: telemetry.UNDOCKED}


T = TypeVar("T")


class RecorderStopped(RuntimeError):
    """The recorder has stopped: what was asked of it with `call` will not be done."""


class TelemetrySink(Protocol):
    """Where status and events go (firmware.telemetry.Telemetry); neither call may block."""

    def publish_status(self, status: Mapping[str, Any]) -> None: ...

    def publish_event(self, kind: str, **fields: Any) -> int: ...


@dataclass
class _Open:
    """The recording in progress: markers pressed during it, when it started."""

    press_mono_ns: int
    stop_at_mono_ns: int | None = None
    markers: list[tuple[int, str]] = field(default_factory=list)  # (mono_ns, kind)


class Recorder:
    def __init__(self, config: RecorderConfig, store: RecorderStore, signer: signatures.Signer,
                 media: MediaSource, supervisor: Supervisor | None = None, gnss: GnssReceiver | None = None,
                 storage: Storage | None = None, gateways: TrustList | None = None,
                 telemetry: TelemetrySink | None = None,
                 monotonic_ns: Callable[[], int] = time.monotonic_ns,
                 wall_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.store = store
        self.signer = signer
        self.media = media
        self.supervisor = supervisor
        self.gnss = gnss
        self.storage = storage or Storage(store.root, config.storage_quota_bytes)
        self.gateways = gateways
        self.telemetry = telemetry
        self.last_status_ns: int | None = None
        self.monotonic_ns = monotonic_ns
        self.wall_ns = wall_ns  # the system clock: the RTC's time when there is no supervisor MCU
        self.state = STANDBY
        self.session = ""
        self.clock: TimeKeeper | None = None
        self.buffer = PreRecordBuffer(config.prerecord_seconds)
        self.segmenter: Segmenter | None = None
        self.open: _Open | None = None
        self.assignment: Assignment | None = None
        self.last_reminder_ns = 0
        self.overlay_second = -1
        self.boot_mono_ns = 0
        self.warned_fraction = 0.0
        self._open_index = 0
        self.committed: list[Manifest] = []
        self.external_power = False  # docked or on a charger, as the supervisor last reported
        # Told each new state, on the loop's thread (it must not block): how the dock client learns of the dock.
        self.on_state_change: Callable[[str], None] | None = None
        self._calls: list[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]]] = []
        self._calls_lock = threading.Lock()
        self._calls_closed = False

    # -- boot and recovery ------------------------------------------------------------------------

    def boot(self) -> None:
        rtc = self.supervisor.rtc_read() if self.supervisor else None
        rtc_ns, rtc_valid = (rtc.utc_ns, rtc.valid) if rtc else (self.wall_ns(), True)
        self.clock = TimeKeeper(self.monotonic_ns, rtc_ns, rtc_valid)
        self.boot_mono_ns = self.monotonic_ns()
        self.session = secrets.token_hex(16)
        self.assignment = self._load_assignment()
        running = self.store.state / "running"
        unclean = running.exists()
        head, next_seq = self.store.head(), self.store.next_seq()
        self._sign(manifest.BOOT, {"rtc_valid": rtc_valid, "reason": "power-loss" if unclean else "power-on"})
        recovered = [self._recover(path) for path in self.store.orphan_media() + self.store.open_segments()]
        missing = [[head.seq + 1, next_seq - 1]] if next_seq - 1 > head.seq else []
        if unclean or missing or recovered:
            self._sign(manifest.RECOVERY, {
                "last_seq": head.seq if head.seq >= 0 else None,
                "missing": missing,
                "partial": [r for r in recovered if r is not None],
            })
        atomic_write(running, self.session.encode())
        self.media.set_overlay(self._overlay_lines())
        # A recorder started in the dock docks now: the supervisor reports power only when it changes.
        battery = self.supervisor.battery() if self.supervisor else None
        if battery is not None:
            self._battery(battery)

    def _recover(self, path: Path) -> dict[str, Any] | None:
        info = OpenSegmentInfo.read(path.with_suffix(".json"))
        result = recover_file(path)
        entry: dict[str, Any] = {"name": path.name, "size": path.stat().st_size}
        if result is None:
            entry.update({"kept_bytes": 0, "recovered_seq": None})
            self._quarantine(path)
            return entry
        m = self._commit_recovered(path, result, info)
        entry.update({"size": result.original_size, "sha256": result.original_sha256,
                      "kept_bytes": result.kept_bytes, "fragments": result.fragments, "recovered_seq": m.seq})
        return entry

    def _quarantine(self, path: Path) -> None:
        """Keep what could not be recovered (never delete footage) out of the way of new segments."""
        target = self.store.state / "unrecoverable"
        target.mkdir(exist_ok=True)
        path.rename(target / path.name)

    def _commit_recovered(self, path: Path, r: Recovered, info: OpenSegmentInfo | None) -> Manifest:
        assert self.clock is not None
        now = self.monotonic_ns()
        start = info.utc_start_ns if info else self.clock.utc_ns(now) - r.duration_ns
        media = self._media_fields(r.sha256, r.kept_bytes, r.duration_ns, r.frames)
        times = {"start_ns": start, "end_ns": start + r.duration_ns,
                 "source": info.time_source if info else "unsynced", "mono_start_ns": now, "mono_end_ns": now}
        detail: dict[str, Any] = {"fragments": r.fragments}
        if info is not None:
            detail.update(session=info.session, mono_start_ns=info.mono_start_ns)
        m = self._sign(manifest.RECOVERED_SEGMENT, detail, media=media, times=times,
                       prerecord=bool(info and info.prerecord), media_src=path)
        path.with_suffix(".json").unlink(missing_ok=True)
        return m

    # -- signing --------------------------------------------------------------------------------

    def _media_fields(self, sha256: bytes, size: int, duration_ns: int, frames: int) -> dict[str, Any]:
        return {"name": "", "sha256": sha256.hex(), "size": size, "container": CONTAINER,
                "codecs": [s.rfc6381 for s in self.media.streams()], "duration_ns": duration_ns, "frames": frames}

    def _times(self, mono_start: int, mono_end: int) -> dict[str, Any]:
        assert self.clock is not None
        return {"start_ns": self.clock.utc_ns(mono_start), "end_ns": self.clock.utc_ns(mono_end),
                "source": self.clock.source(mono_end), "mono_start_ns": mono_start, "mono_end_ns": mono_end}

    def _track(self, mono_start: int, mono_end: int) -> dict[str, Any]:
        assert self.clock is not None
        if self.gnss is None:
            return {"points": [], "none_reason": "no-receiver"}
        fixes = [f for f in self.gnss.track_since(mono_start) if f.mono_ns <= mono_end and f.valid]
        if not fixes:
            return {"points": [], "none_reason": "no-fix"}
        return {"points": [{"t_ns": self.clock.utc_ns(f.mono_ns), "lat_e7": f.lat_e7, "lon_e7": f.lon_e7,
                            "fix": f.quality, "hdop_c": f.hdop_c} for f in fixes], "none_reason": None}

    def _sign(self, kind: str, detail: dict[str, Any], *, media: dict[str, Any] | None = None,
              times: dict[str, Any] | None = None, track: dict[str, Any] | None = None,
              markers: list[dict[str, Any]] | None = None, prerecord: bool = False,
              media_src: Path | None = None) -> Manifest:
        """Reserve the next seq, sign a manifest of `kind` and commit it (with its media) to the store."""
        now = self.monotonic_ns()
        head = self.store.head()
        seq = self.store.reserve_seq()
        if media is not None:
            media = {**media, "name": layout.media_name(seq, "mp4")}
        m = manifest.build({
            "device": self.store.device, "key": self.signer.keyid, "session": self.session, "seq": seq,
            "prev": head.hash.hex(), "kind": kind, "time": times or self._times(now, now), "media": media,
            "track": track or {"points": [], "none_reason": "record-only"}, "markers": markers or [],
            "assignment": self.assignment.manifest_field() if self.assignment else None,
            "firmware": self.config.firmware_version, "prerecord": prerecord, "detail": detail,
        })
        envelope = signatures.seal(self.signer, manifest.TYPE, m.payload)
        self.store.commit(m, envelope, media_src)
        self.committed.append(m)
        if kind in _RECORD_EVENTS:
            self._event(_RECORD_EVENTS[kind], seq=seq, **{k: v for k, v in detail.items() if k in _EVENT_DETAIL})
        return m

    def _event(self, kind: str, **fields: Any) -> None:
        if self.telemetry is not None:
            self.telemetry.publish_event(kind, **fields)

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        for kind in (_LEAVE_EVENTS.get(self.state), _ENTER_EVENTS.get(state)):
            if kind is not None and not (kind == telemetry.RECORDING_STOPPED and state == POST_RECORD):
                self._event(kind, session=self.session)
        self.state = state
        self.last_status_ns = None  # a new state is worth a status now
        if self.on_state_change is not None:
            self.on_state_change(state)

    def _publish_status(self, now: int) -> None:
        """The retained status: battery, storage, state, GNSS fix, chain head, clock source."""
        if self.telemetry is None or (self.last_status_ns is not None
                                      and now - self.last_status_ns < STATUS_INTERVAL_NS):
            return
        assert self.clock is not None
        self.last_status_ns = now
        head, space = self.store.head(), self.storage.space()
        battery = self.supervisor.battery() if self.supervisor else None
        fix = self.gnss.latest() if self.gnss else None
        position = (fix.lat_e7, fix.lon_e7, self.clock.utc_ns(fix.mono_ns)) if fix and fix.valid else None
        self.telemetry.publish_status(recorder_status(
            state=self.state, firmware=self.config.firmware_version, clock_source=self.clock.source(now),
            chain_seq=head.seq, chain_hash=head.hash.hex(), storage_used_bytes=space.total_bytes - space.free_bytes,
            storage_free_bytes=space.free_bytes, battery_percent=battery.percent if battery else None,
            charging=bool(battery and battery.charging), external_power=bool(battery and battery.external_power),
            gnss_fix=bool(fix and fix.valid), gnss_satellites=fix.satellites if fix else 0,
            last_position=position))

    # -- assignment -----------------------------------------------------------------------------

    def _load_assignment(self) -> Assignment | None:
        path = self.store.state / "assignment"
        if not path.exists() or self.gateways is None:
            return None
        return open_assignment(path.read_bytes(), self.gateways, self.store.device)

    def assign(self, assignment: Assignment) -> Manifest:
        """A gateway-signed assignment from the dock: keep it, sign it into the chain, show it."""
        atomic_write(self.store.state / "assignment", assignment.envelope)
        self.assignment = assignment
        self.media.set_overlay(self._overlay_lines())
        return self._sign(manifest.ASSIGNMENT, {"officer": assignment.fields["officer"],
                                                "gateway": assignment.fields["gateway"]})

    def _overlay_lines(self) -> list[str]:
        """UTC time, device serial and officer number, as GA/T 947 and Axon show them."""
        assert self.clock is not None
        utc = datetime.fromtimestamp(self.clock.utc_ns() // NS, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        officer = self.assignment.officer_number if self.assignment else "------"
        return [utc, self.store.device, f"OFFICER {officer}"]

    # -- the loop -------------------------------------------------------------------------------

    def handle_packet(self, packet: EncodedPacket) -> None:
        if self.state in (RECORDING, POST_RECORD):
            assert self.segmenter is not None and self.open is not None
            if self.open.stop_at_mono_ns is None or packet.capture_ns < self.open.stop_at_mono_ns:
                if self.segmenter.current is None and not (packet.kind == VIDEO and packet.keyframe):
                    return  # begun with nothing buffered (just out of the dock): nothing plays before a keyframe
                self.segmenter.add(packet)
                if self.state == STORAGE_FULL:
                    self._finish_recording()
                return
            self._finish_recording()
        if self.state == STANDBY:
            self.buffer.add(packet)

    def handle_event(self, event: SupervisorEvent) -> None:
        if isinstance(event, ButtonEvent) and event.mono_ns < self.boot_mono_ns:
            return  # pressed before this boot (the MCU resends unacknowledged presses): not meant for us
        if isinstance(event, ButtonEvent) and event.button == RECORD:
            self.toggle_recording(event.mono_ns)
        elif isinstance(event, ButtonEvent) and event.button == MARK:
            self.mark(event.mono_ns)
        elif isinstance(event, PowerFail):
            self.power_fail()
        elif isinstance(event, BatteryStatus):
            self._battery(event)
        elif isinstance(event, Tamper):
            # Opening the case is how storage or a key would be got at: it goes into the chain.
            self._sign(manifest.TAMPER, {"opened": event.opened, "count": event.count, "source": event.source})

    def toggle_recording(self, mono_ns: int) -> None:
        if self.state == DOCKED and self._has_room():
            # A charger looks like a dock to the recorder: the officer's press wins, and the recorder docks
            # again when this recording ends.
            self._set_state(STANDBY)
        if self.state == STANDBY:
            self.start_recording(mono_ns)
        elif self.state == RECORDING:
            self.stop_recording(mono_ns)

    def start_recording(self, mono_ns: int) -> None:
        if self.state != STANDBY:
            return
        self.open = _Open(press_mono_ns=mono_ns)
        self.segmenter = Segmenter(self.media.streams(), self._new_segment_path, self._segment_done,
                                   segment_ns=self.config.segment_seconds * NS)
        self._set_state(RECORDING)
        self._leds()
        buffered = self.buffer.drain()
        for packet in buffered:
            self.segmenter.add(packet, prerecord=buffered[0].capture_ns < mono_ns)

    def stop_recording(self, mono_ns: int) -> None:
        if self.state != RECORDING or self.open is None:
            return
        self.open.stop_at_mono_ns = mono_ns + int(self.config.postrecord_seconds * NS)
        self._set_state(POST_RECORD)

    def mark(self, mono_ns: int) -> None:
        if self.open is not None:
            self.open.markers.append((mono_ns, "event"))
        else:
            self._sign(manifest.MARKER, {}, markers=[{"t_ns": self._utc(mono_ns), "kind": "event"}])

    def power_fail(self) -> None:
        """Power is going: close and sign what is open so that nothing waits for recovery."""
        if self.open is not None:
            self._finish_recording()
        self.shutdown()

    def _battery(self, status: BatteryStatus) -> None:
        appeared = status.external_power and not self.external_power
        gone = self.external_power and not status.external_power
        self.external_power = status.external_power
        if appeared and self.open is None:
            self.dock()  # during a recording the dock waits for its end: a plug never cuts a recording
        elif gone:
            self.undock()
        if status.percent <= self.config.low_battery_percent and not status.external_power:
            if self.open is not None:
                self._finish_recording()
            self._set_state(LOW_BATTERY)

    def _finish_recording(self) -> None:
        if self.segmenter is None:
            return
        segmenter, self.segmenter = self.segmenter, None
        segmenter.finish()
        self.open = None
        if self.state in (RECORDING, POST_RECORD):
            self._set_state(STANDBY)
        self._leds()
        if self.external_power:
            self.dock()  # it came during the recording

    def _utc(self, mono_ns: int) -> int:
        assert self.clock is not None
        return self.clock.utc_ns(mono_ns)

    def _new_segment_path(self, first: EncodedPacket) -> Path:
        assert self.clock is not None and self.open is not None
        self._open_index += 1
        path = self.store.open_segment_path(self.session, self._open_index)
        info = OpenSegmentInfo(self.clock.utc_ns(first.capture_ns), self.clock.source(first.capture_ns),
                               prerecord=first.capture_ns < self.open.press_mono_ns, session=self.session,
                               mono_start_ns=first.capture_ns)
        # Carried to disk by the segment's first fragment fsync; were it lost, a
        # recovery would still work, estimating the start time.
        write_unsynced(path.with_suffix(".json"), info.to_bytes())
        return path

    def _segment_done(self, seg: SegmentFile) -> None:
        assert self.open is not None
        markers = [{"t_ns": self._utc(t), "kind": k} for t, k in self.open.markers
                   if seg.mono_start_ns <= t < seg.mono_end_ns or t < seg.mono_start_ns]
        self.open.markers = [(t, k) for t, k in self.open.markers if t >= seg.mono_end_ns]
        media = self._media_fields(seg.sha256, seg.size, seg.duration_ns, seg.frames)
        self._sign(manifest.SEGMENT, {"audio_frames": seg.audio_frames}, media=media,
                   times=self._times(seg.mono_start_ns, seg.mono_end_ns),
                   track=self._track(seg.mono_start_ns, seg.mono_end_ns), markers=markers,
                   prerecord=seg.prerecord, media_src=seg.path)
        seg.path.with_suffix(".json").unlink(missing_ok=True)
        self._check_storage()
        self._discipline_clock()

    def _warn_level(self, space: Space) -> float:
        """The highest warning fraction the store has reached (0.0: none)."""
        used = 1 - space.free_bytes / space.total_bytes if space.total_bytes else 1.0
        return max((f for f in self.config.storage_warn_fractions if used >= f), default=0.0)

    def _check_storage(self) -> None:
        space = self.storage.space()
        warn = self._warn_level(space)
        if warn > self.warned_fraction:
            self._event(telemetry.STORAGE_WARNING, used_fraction=warn, free_bytes=space.free_bytes)
            if self.supervisor is not None:
                self.supervisor.haptic([300, 200, 300, 200, 300])
        self.warned_fraction = max(self.warned_fraction, warn)
        if space.free_bytes < self.config.storage_reserve_bytes and self.state != STORAGE_FULL:
            self._set_state(STORAGE_FULL)
            if self.segmenter is not None:
                self.segmenter.halt()
            self._sign(manifest.STORAGE_FULL, {"free_bytes": space.free_bytes, "total_bytes": space.total_bytes})

    def _leds(self) -> None:
        if self.supervisor is None:
            return
        recording = self.state in (RECORDING, POST_RECORD)
        audio = recording and any(s.kind == AUDIO for s in self.media.streams())
        self.supervisor.set_leds(green=True, yellow=audio, red=recording)

    def tick(self) -> None:
        """Periodic work between packets: GNSS time, the recording reminder."""
        now = self.monotonic_ns()
        self._publish_status(now)
        if now // NS != self.overlay_second:
            self.overlay_second = now // NS
            self.media.set_overlay(self._overlay_lines())
        if self.open is None:  # while recording, time steps wait for the next segment boundary
            self._discipline_clock()
        interval = self.config.haptic_reminder_seconds * NS
        if self.state == RECORDING and interval and now - self.last_reminder_ns >= interval:
            self.last_reminder_ns = now
            if self.supervisor is not None:
                self.supervisor.haptic([150])

    def _discipline_clock(self) -> None:
        """Follow GNSS time; a step is signed as a clock-sync record, between segments, never inside one."""
        assert self.clock is not None
        fix = self.gnss.latest() if self.gnss else None
        # Only a real fix: status V times are the receiver's own guess, and a jump is not to be followed.
        if (fix is None or not fix.valid or fix.time_jump or fix.utc_ns is None
                or fix.mono_ns == self.clock.last_gnss_mono):
            return
        step = self.clock.gnss_time(fix.utc_ns, fix.mono_ns)
        if step is not None:
            if self.supervisor is not None:
                self.supervisor.rtc_set(self.clock.utc_ns())
            self._sign(manifest.CLOCK_SYNC, {"source": step.source, "step_ns": step.step_ns})

    def dock(self) -> None:
        """In the dock: no recording, no buffering (the dock client takes over)."""
        self._finish_recording()
        self.buffer.clear()
        self._set_state(DOCKED)
        self._leds()

    def dock_sync(self, utc_ns: int, mono_ns: int, gateway: str) -> Manifest | None:
        """The gateway's time, measured at docking: follow it, and sign a clock-sync record for a step."""
        assert self.clock is not None
        step = self.clock.dock_time(utc_ns, mono_ns)
        if step is None:
            return None
        if self.supervisor is not None:
            self.supervisor.rtc_set(self.clock.utc_ns())
        return self._sign(manifest.CLOCK_SYNC, {"source": step.source, "step_ns": step.step_ns, "gateway": gateway})

    def undock(self) -> None:
        """Out of the dock: back to standby, or to storage-full when the dock could not free enough."""
        if self.state == DOCKED:
            self._set_state(STANDBY)
            self._leds()
            self._check_storage()

    def free(self, seqs: list[int]) -> int:
        """Delete the footage a kept dock receipt names (for the dock client, on this thread); returns the
        bytes freed. The officer is warned afresh as the store fills again, and a full recorder records again."""
        freed = self.store.free(seqs)
        self.warned_fraction = self._warn_level(self.storage.space())
        if self.state == STORAGE_FULL and self._has_room():
            self._set_state(STANDBY)
        return freed

    def _has_room(self) -> bool:
        return self.storage.space().free_bytes >= self.config.storage_reserve_bytes

    # -- calls from other threads ---------------------------------------------------------------

    def call(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Have the loop's thread run `fn(*args)`, from any thread: only that thread changes the recorder.
        The future holds its result or exception; RecorderStopped once the recorder has stopped."""
        future: Future[T] = Future()
        with self._calls_lock:
            if not self._calls_closed:
                self._calls.append((fn, args, future))
                return future
        future.set_exception(RecorderStopped("the recorder has stopped"))
        return future

    def run_calls(self) -> None:
        """Run, in order, what other threads asked for with `call` (the loop does this between packets)."""
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for fn, args, future in calls:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except Exception as exc:  # the caller's to handle, in its own thread
                    future.set_exception(exc)

    def _close_calls(self) -> None:
        with self._calls_lock:
            self._calls_closed = True
            calls, self._calls = self._calls, []
        for _fn, _args, future in calls:
            if future.set_running_or_notify_cancel():
                future.set_exception(RecorderStopped("the recorder stopped before doing this"))

    def run(self, stop: Callable[[], bool]) -> None:
        """The main loop: packets in capture order, supervisor events and calls from other threads between
        them."""
        self.media.start()
        try:
            while not stop():
                while self.supervisor is not None and (event := self.supervisor.next_event(timeout=0)):
                    self.handle_event(event)
                self.run_calls()
                packet = self.media.read(timeout=0.05)
                if packet is not None:
                    self.handle_packet(packet)
                self.tick()
        finally:
            self.media.stop()
            # What the encoder still held at stop is footage too.
            while (packet := self.media.read(timeout=1.0)) is not None:
                self.handle_packet(packet)

    def shutdown(self) -> None:
        """A clean stop: finish the open segment, do no more calls and mark the store as cleanly closed."""
        self._close_calls()
        if self.open is not None:
            self._finish_recording()
        (self.store.state / "running").unlink(missing_ok=True)
