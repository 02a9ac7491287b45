"""Recorder telemetry over MQTT 3.1.1: retained status, numbered events, online/offline, a disk outbox.

Topics, under `liuhen/recorders/<device>/`:

- `status`  retained, QoS 1: the latest snapshot (state, battery, storage, GNSS, clock, chain head).
- `events`  QoS 1, not retained: one JSON object per happening, numbered by `n` (1, 2, 3, ... for the
            device's whole life) so that a consumer sees any gap.
- `online`  retained, QoS 1: "online" on every connect; "offline" on a clean close, and from the broker
            (the last will) when the recorder vanishes.

Telemetry is a side channel: everything that matters as evidence is also a signed record in the device's
chain. What it must not do is lose events while the officer is out of range, or slow down capture. So the
capture loop only writes a small file and returns; a sender thread fsyncs it, publishes it, and deletes it
once the broker has acknowledged it (PUBACK).

The outbox is one file per event, named by `n`, plus a counter holding the highest acknowledged `n`.
Chosen over an append-only log with an acknowledgement index because every change is then a single atomic
filesystem operation (create by rename, delete by unlink, replace by rename) with no compaction and no torn
tail to repair after a power cut; and a recorder makes tens of events per shift, not thousands per second.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from firmware.durable import DurableCounter, atomic_write, fsync_dir
from protocol.manifest import valid_device_id

log = logging.getLogger("liuhen.telemetry")

TOPIC_ROOT = "liuhen/recorders"
ONLINE = "online"
OFFLINE = "offline"

# Event kinds: a closed vocabulary, so that a misspelt kind fails in the recorder's tests, not in a dashboard.
BOOT = "boot"
RECORDING_STARTED = "recording-started"
RECORDING_STOPPED = "recording-stopped"
MARKER = "marker"
POWER_CUT_RECOVERY = "power-cut-recovery"
STORAGE_WARNING = "storage-warning"
STORAGE_FULL = "storage-full"
LOW_BATTERY = "low-battery"
TAMPER = "tamper"
ASSIGNMENT = "assignment"
CLOCK_STEP = "clock-step"
DOCKED = "docked"
UNDOCKED = "undocked"
EVENTS_DROPPED = "events-dropped"  # written by the outbox itself when it overflows
EVENT_KINDS = frozenset({BOOT, RECORDING_STARTED, RECORDING_STOPPED, MARKER, POWER_CUT_RECOVERY, STORAGE_WARNING,
                         STORAGE_FULL, LOW_BATTERY, TAMPER, ASSIGNMENT, CLOCK_STEP, DOCKED, UNDOCKED})
_RESERVED_FIELDS = frozenset({"device", "kind", "n", "t_ns"})

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}


class TelemetryError(RuntimeError):
    pass


class TelemetryConfigError(ValueError):
    """A bad broker URL, TLS option, device id or outbox setting: raised before anything starts."""


# -- configuration ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsOptions:
    ca_file: Path | None = None  # None: the system's trust store
    cert_file: Path | None = None  # client certificate, for brokers that require mutual TLS
    key_file: Path | None = None


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None


def parse_broker_url(url: str) -> BrokerAddress:
    """`mqtt://[user[:password]@]host[:port]` or `mqtts://...` (TLS, default port 8883)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TelemetryConfigError(f"broker URL {url!r}: bad port ({exc})") from exc
    if parts.scheme not in DEFAULT_PORTS:
        raise TelemetryConfigError(f"broker URL {url!r}: the scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise TelemetryConfigError(f"broker URL {url!r} names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise TelemetryConfigError(f"broker URL {url!r}: no path, query or fragment allowed")
    if port == 0:
        raise TelemetryConfigError(f"broker URL {url!r}: port 0")
    return BrokerAddress(parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts",
                         unquote(parts.username) if parts.username is not None else None,
                         unquote(parts.password) if parts.password is not None else None)


class Topics(NamedTuple):
    status: str
    events: str
    online: str


def topics(device: str) -> Topics:
    base = f"{TOPIC_ROOT}/{device}"
    return Topics(f"{base}/status", f"{base}/events", f"{base}/online")


def encode(obj: Mapping[str, Any]) -> bytes:
    """Payload bytes: JSON, sorted keys, UTF-8, no NaN (not JSON), no whitespace."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def recorder_status(*, state: str, firmware: str, clock_source: str, chain_seq: int, chain_hash: str,
                    storage_used_bytes: int, storage_free_bytes: int, battery_percent: int | None = None,
                    charging: bool = False, external_power: bool = False, gnss_fix: bool = False,
                    gnss_satellites: int = 0, last_position: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """The status object in the shape consumers expect; `last_position` is (lat_e7, lon_e7, t_ns).

    `battery_percent` None means no supervisor MCU (nothing known about the battery).
    """
    battery = None if battery_percent is None else {
        "percent": battery_percent, "charging": charging, "external_power": external_power}
    position = None if last_position is None else dict(zip(("lat_e7", "lon_e7", "t_ns"), last_position, strict=True))
    return {
        "state": state,
        "battery": battery,
        "storage": {"used_bytes": storage_used_bytes, "free_bytes": storage_free_bytes},
        "gnss": {"fix": gnss_fix, "satellites": gnss_satellites, "last_position": position},
        "clock_source": clock_source,
        "chain": {"seq": chain_seq, "hash": chain_hash},
        "firmware": firmware,
    }


# -- the disk outbox --------------------------------------------------------------------------------------


@dataclass
class Entry:
    """One queued event: its file holds exactly the payload that goes on the wire."""

    n: int
    path: Path
    payload: bytes
    synced: bool = False
    dropped: tuple[int, int] | None = None  # an events-dropped notice: (first_n, count of events it stands for)


class Outbox:
    """Files `events/<n>.json` and `status.json` under `root`, and `acked_n`, the highest acknowledged n.

    Only two kinds of writer touch it: the publishing thread creates files (write_event, write_status: no
    fsync, so the capture loop never waits for the disk), and the sender thread syncs, replaces and deletes
    them. A crash of the process leaves the files in the page cache; a power cut can lose only events not
    yet fsynced, which were never sent either, so their numbers are simply given out again.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.events_dir = root / "events"
        try:
            self.events_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TelemetryConfigError(f"telemetry outbox {root}: {exc}") from exc
        self._lock_fd = _lock(root / "lock")
        self._acked = DurableCounter(root / "acked_n")

    def load(self) -> tuple[list[Entry], bytes | None, int]:
        """What a previous run left: the queued events in order, the last status, and the next n."""
        for stray in self.events_dir.glob(".*.tmp"):
            stray.unlink()  # a write the crash interrupted before its rename: never published
        entries = [e for e in map(self._read_entry, sorted(self.events_dir.glob("*.json"))) if e is not None]
        entries = self._finish_trim(entries)
        try:
            acked = self._acked.read()
        except ValueError:  # the counter file was created but never written (power cut at first start)
            acked = 0
        return entries, self._read_status(), max([acked, *(e.n for e in entries)]) + 1

    def _read_status(self) -> bytes | None:
        path = self.root / "status.json"
        if not path.exists():
            return None
        payload = path.read_bytes()
        try:
            json.loads(payload)
        except ValueError:  # caught by a power cut before it reached the disk: a newer one will come
            log.warning("telemetry outbox: ignoring unreadable status.json (%d bytes)", len(payload))
            return None
        return payload

    def _read_entry(self, path: Path) -> Entry | None:
        payload = path.read_bytes()
        try:
            event = json.loads(payload)
            n = int(event["n"])
            dropped = (int(event["first_n"]), int(event["dropped"])) if event["kind"] == EVENTS_DROPPED else None
        except (ValueError, KeyError, TypeError):
            # A file the power cut caught before its fsync: it was never sent, so dropping it loses nothing
            # the broker saw; its number will be given out again.
            log.warning("telemetry outbox: dropping unreadable %s (%d bytes)", path.name, len(payload))
            path.unlink()
            return None
        return Entry(n, path, payload, synced=False, dropped=dropped)

    def _finish_trim(self, entries: list[Entry]) -> list[Entry]:
        """Remove events that a notice already counts as dropped (a crash came in the middle of a trim)."""
        covered = [(e.dropped[0], e.n) for e in entries if e.dropped]
        stale = [e for e in entries if not e.dropped and any(first <= e.n < last for first, last in covered)]
        for e in stale:
            self.remove(e)
        return [e for e in entries if e not in stale]

    def event_path(self, n: int) -> Path:
        return self.events_dir / f"{n:020d}.json"

    def write_event(self, n: int, payload: bytes) -> Entry:
        path = self.event_path(n)
        _write_renamed(path, payload)
        return Entry(n, path, payload)

    def write_status(self, payload: bytes) -> None:
        _write_renamed(self.root / "status.json", payload)

    def sync(self, entries: list[Entry]) -> None:
        """Make entries durable before the broker can see them: a number the broker saw is never reused."""
        unsynced = [e for e in entries if not e.synced]
        for e in unsynced:
            fd = os.open(e.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            e.synced = True
        if unsynced:
            fsync_dir(self.events_dir)

    def acknowledged(self, entry: Entry) -> None:
        # Counter first: a crash before the unlink resends the event (a QoS 1 duplicate), never reuses its n.
        if entry.n > self._acked.read():
            self._acked.set(entry.n)
        entry.path.unlink(missing_ok=True)

    def replace(self, entry: Entry, payload: bytes, dropped: tuple[int, int]) -> Entry:
        atomic_write(entry.path, payload)
        return Entry(entry.n, entry.path, payload, synced=True, dropped=dropped)

    def remove(self, entry: Entry) -> None:
        entry.path.unlink(missing_ok=True)

    def close(self) -> None:
        self._acked.close()
        os.close(self._lock_fd)


def _lock(path: Path) -> int:
    """Two processes sending from one outbox would number events twice: refuse the second."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise TelemetryError(f"telemetry outbox {path.parent} is in use by another process") from None
    return fd


def _write_renamed(path: Path, payload: bytes) -> None:
    # The rename makes a half-written file invisible: after a crash a file is either whole or absent.
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(payload)
    os.replace(tmp, path)


# -- the client -------------------------------------------------------------------------------------------


class _Status:
    """Marks the status message among what is in flight (events are Entries)."""


_STATUS = _Status()


class Telemetry:
    """Publishes a recorder's status and events; publish_* never block on the network.

    Typical use: `t = Telemetry(device, url, outbox_dir); t.start(); ... t.publish_event(MARKER, seq=41);
    ... t.close()`. Events published before start() (or while out of range) wait in the outbox.
    """

    def __init__(self, device: str, broker_url: str, outbox_dir: Path, *,
                 clock: Callable[[], int] = time.time_ns, client_id: str | None = None, keepalive: int = 30,
                 tls: TlsOptions | None = None, max_events: int = 10_000,
                 reconnect_delay: tuple[float, float] = (1.0, 60.0), window: int = 16) -> None:
        """`clock` gives the UTC ns stamped on events (`t_ns`) and status (`updated_ns`); pass the recorder's
        disciplined clock. `max_events` bounds the outbox (see _trim); `window` is how many events may wait
        for their PUBACK at once; `reconnect_delay` is the (first, longest) wait between connection attempts,
        doubling in between.
        """
        if not valid_device_id(device):
            raise TelemetryConfigError(f"invalid device id {device!r}")
        self.address = parse_broker_url(broker_url)
        _check_tls(self.address, tls)
        if max_events <= window:
            raise TelemetryConfigError(f"max_events ({max_events}) must exceed the in-flight window ({window})")
        if keepalive < 1:
            raise TelemetryConfigError("keepalive must be at least 1 s: out of range, it is how the broker notices")
        self.device = device
        self.topics = topics(device)
        self._clock = clock
        self._max_events = max_events
        self._window = window
        self._keepalive = keepalive
        self._client = self._make_client(client_id or f"liuhen-{device}", tls, reconnect_delay)
        self._outbox = Outbox(Path(outbox_dir))  # last: it takes the outbox's lock
        entries, status, self._next_n = self._outbox.load()
        self._write_lock = threading.Lock()  # numbering and file writes of concurrent publishers
        self._commands: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._idle = threading.Condition()
        self._outstanding = len(entries) + (status is not None)  # not yet acknowledged; guarded by _idle
        self._online = threading.Event()
        self._unreachable_reported = False
        self._closed = False
        self._sender = _Sender(self, entries, status)
        if entries:
            log.info("telemetry outbox holds %d events from before (n %d-%d)", len(entries), entries[0].n,
                     entries[-1].n)

    def _make_client(self, client_id: str, tls: TlsOptions | None,
                     reconnect_delay: tuple[float, float]) -> mqtt.Client:
        # Clean session: what must survive a disconnect is in our outbox, not in a broker session.
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True,
                             protocol=mqtt.MQTTv311)
        if self.address.username is not None:
            client.username_pw_set(self.address.username, self.address.password)
        if self.address.tls:
            tls = tls or TlsOptions()
            try:
                client.tls_set(ca_certs=_str(tls.ca_file), certfile=_str(tls.cert_file), keyfile=_str(tls.key_file))
            except OSError as exc:  # ssl.SSLError included: a file that is not PEM, a key that does not match
                raise TelemetryConfigError(f"TLS options: {exc}") from exc
        client.will_set(self.topics.online, OFFLINE, qos=1, retain=True)
        # paho annotates the delays as int, but waits them out with float arithmetic and sleep().
        client.reconnect_delay_set(*reconnect_delay)  # type: ignore[arg-type]
        client.max_inflight_messages_set(self._window + 2)  # our window, plus the status and online messages
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_connect_fail = self._on_connect_fail
        return client

    # -- lifecycle

    def start(self) -> None:
        """Connect in the background (retrying with backoff) and start sending the outbox."""
        self._sender.start()
        self._client.connect_async(self.address.host, self.address.port, keepalive=self._keepalive)
        self._client.loop_start()

    def close(self, timeout: float = 2.0) -> None:
        """A clean stop: try for `timeout` s to deliver what is queued, say "offline", disconnect.

        What is not delivered stays in the outbox for the next start. Out of range it does not wait for the
        network, only (up to about a second) for paho's reconnect loop to notice it should stop.
        """
        if self._closed:
            return
        self._closed = True
        if self._online.is_set():
            self.flush(timeout)
        self._sender.stop()
        if self._online.is_set():
            self._say_offline(timeout)
        self._client.disconnect()
        self._client.loop_stop()
        self._outbox.close()

    def _say_offline(self, timeout: float) -> None:
        info = self._client.publish(self.topics.online, OFFLINE, qos=1, retain=True)
        with contextlib.suppress(RuntimeError):  # the connection went as we spoke: the last will says it
            info.wait_for_publish(timeout)

    def __enter__(self) -> Telemetry:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- publishing (called from the recorder's loop)

    def publish_status(self, status: Mapping[str, Any]) -> None:
        """Replace the retained status; only the newest unsent snapshot is kept. `updated_ns` is added."""
        payload = encode({"updated_ns": self._clock(), **status, "device": self.device})
        with self._write_lock:
            self._check_open()
            self._outbox.write_status(payload)
            self._submitted()
        self._commands.put(("status", payload))

    def publish_event(self, kind: str, **fields: Any) -> int:
        """Queue an event durably enough to survive a crash of this process; returns its number `n`."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown telemetry event kind {kind!r}")
        if clash := _RESERVED_FIELDS & fields.keys():
            raise ValueError(f"event fields {sorted(clash)} are set by telemetry")
        with self._write_lock:
            self._check_open()
            n = self._next_n
            payload = encode({**fields, "device": self.device, "kind": kind, "n": n, "t_ns": self._clock()})
            entry = self._outbox.write_event(n, payload)
            self._next_n += 1
            self._submitted()
        self._commands.put(("event", entry))
        return n

    def _check_open(self) -> None:
        if self._closed:
            raise TelemetryError("telemetry is closed")

    def _submitted(self) -> None:
        with self._idle:
            self._outstanding += 1

    def _settled(self, count: int) -> None:
        with self._idle:
            self._outstanding -= count
            if self._outstanding == 0:
                self._idle.notify_all()

    # -- state

    @property
    def connected(self) -> bool:
        return self._online.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._online.wait(timeout)

    def flush(self, timeout: float) -> bool:
        """Wait until the broker has acknowledged everything published so far; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    # -- paho callbacks (paho's network thread: hand over, never block, never touch the outbox)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("telemetry: broker %s:%d refused the connection: %s", self.address.host,
                        self.address.port, reason_code)
            return
        log.info("telemetry: connected to %s:%d", self.address.host, self.address.port)
        self._unreachable_reported = False
        client.publish(self.topics.online, ONLINE, qos=1, retain=True)
        self._online.set()
        self._commands.put(("connected", True))

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason_code: Any,
                       properties: Any) -> None:
        if self._online.is_set() and not self._closed:
            log.warning("telemetry: disconnected from %s:%d (%s); events wait in the outbox",
                        self.address.host, self.address.port, reason_code)
        self._online.clear()
        self._commands.put(("connected", False))

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._unreachable_reported:  # once per outage: out of range is normal, not news every minute
            self._unreachable_reported = True
            log.warning("telemetry: cannot reach broker %s:%d; retrying, events wait in the outbox",
                        self.address.host, self.address.port)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        self._commands.put(("ack", mid))


class _Sender:
    """The one thread that owns the queue in memory: it syncs, publishes, trims and deletes.

    paho keeps a message it was handed until its PUBACK, resending it after each reconnect, so each event
    is handed over once per process; after a restart the outbox hands everything over again. Only `window`
    events are handed over at a time, so that while out of range the backlog stays on disk, where _trim
    can bound it.
    """

    def __init__(self, telemetry: Telemetry, entries: list[Entry], status: bytes | None) -> None:
        self.t = telemetry
        self.outbox = telemetry._outbox
        self.pending: deque[Entry] = deque(entries)
        self.inflight: dict[int, Entry | _Status] = {}
        self.status = status  # the newest snapshot not yet handed over
        self.last_status = status  # republished on every connect: a restarted broker may have lost it
        self.connected = False
        self.hold = False  # after a reconnect, until paho's resends of older messages are acknowledged
        self.handlers: dict[str, Callable[[Any], None]] = {
            "event": self._on_event, "status": self._on_status, "connected": self._on_connected, "ack": self._on_ack}
        self.thread = threading.Thread(target=self._run, name=f"telemetry-{telemetry.device}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        if self.thread.is_alive():
            self.t._commands.put(("stop", None))
            self.thread.join()

    def _run(self) -> None:
        try:
            while self._apply_commands():
                self._trim()
                if self.connected:
                    self._send()
        except Exception:
            # Everything is still on disk; a restart resends it. Say loudly that sending stopped.
            log.exception("telemetry sender failed; events stay in the outbox until the next start")

    def _apply_commands(self) -> bool:
        """Wait for at least one command, then take all that queued up; False on stop."""
        command = self.t._commands.get()
        while True:
            kind, arg = command
            if kind == "stop":
                return False
            self.handlers[kind](arg)
            try:
                command = self.t._commands.get_nowait()
            except queue.Empty:
                return True

    def _on_event(self, entry: Entry) -> None:
        self.pending.append(entry)

    def _on_status(self, payload: bytes) -> None:
        if self.status is not None:
            self.t._settled(1)  # the older unsent snapshot is superseded
        self.status = self.last_status = payload

    def _on_connected(self, connected: bool) -> None:
        self.connected = connected
        # paho resends what was in flight only after on_connect returns: anything handed over before those
        # resends are acknowledged could overtake them (an older status would end up retained).
        self.hold = connected and bool(self.inflight)
        if connected and self.status is None and self.last_status is not None:
            self.status = self.last_status
            self.t._submitted()

    def _on_ack(self, mid: int) -> None:
        item = self.inflight.pop(mid, None)
        if item is None:
            return  # the "online" message
        if isinstance(item, Entry):
            self.outbox.acknowledged(item)
        self.t._settled(1)

    def _inflight_events(self) -> int:
        return sum(isinstance(item, Entry) for item in self.inflight.values())

    def _send(self) -> None:
        if self.hold and self.inflight:
            return
        self.hold = False
        if self.status is not None:
            self._publish(self.t.topics.status, self.status, _STATUS, retain=True)
            self.status = None
        room = self.t._window - self._inflight_events()
        batch = [self.pending.popleft() for _ in range(min(room, len(self.pending)))]
        self.outbox.sync(batch)
        for entry in batch:
            self._publish(self.t.topics.events, entry.payload, entry, retain=False)

    def _publish(self, topic: str, payload: bytes, item: Entry | _Status, *, retain: bool) -> None:
        # NO_CONN is fine: paho keeps a QoS 1 message and sends it after the reconnect.
        info = self.t._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise TelemetryError(f"paho refused to queue a message: {mqtt.error_string(info.rc)}")
        self.inflight[info.mid] = item

    def _trim(self) -> None:
        """Bound the outbox at max_events: drop the oldest unsent events, keep the newest.

        Events are never dropped silently: the newest dropped event's file (and number) becomes an
        events-dropped notice naming the range it stands for, so a consumer sees a gap explained by the event
        that ends it. Repeated overflows fold into that one notice. The trade-off: a recorder out of range for
        very long loses its oldest telemetry, never its newest state, and never footage (that is in the
        signed chain, which telemetry only mirrors).
        """
        excess = len(self.pending) + self._inflight_events() - self.t._max_events
        if excess <= 0:
            return
        # max_events > window >= in-flight events, so pending holds at least excess + 1 entries.
        victims = [self.pending.popleft() for _ in range(excess + 1)]
        first_n = victims[0].dropped[0] if victims[0].dropped else victims[0].n
        count = sum(v.dropped[1] if v.dropped else 1 for v in victims)
        last = victims[-1]
        notice = encode({"device": self.t.device, "kind": EVENTS_DROPPED, "n": last.n, "t_ns": self.t._clock(),
                         "dropped": count, "first_n": first_n, "last_n": last.n})
        # The notice first: a gap is never left without its explanation; if a crash comes before the
        # removals, Outbox.load finishes them.
        self.pending.appendleft(self.outbox.replace(last, notice, (first_n, count)))
        for victim in victims[:-1]:
            self.outbox.remove(victim)
        self.t._settled(len(victims) - 1)
        log.warning("telemetry outbox over %d events: %d oldest unsent events dropped so far (n %d-%d)",
                    self.t._max_events, count, first_n, last.n)


def _check_tls(address: BrokerAddress, tls: TlsOptions | None) -> None:
    if tls is None:
        return
    if not address.tls:
        raise TelemetryConfigError("TLS options need an mqtts:// broker URL")
    if (tls.cert_file is None) != (tls.key_file is None):
        raise TelemetryConfigError("a TLS client certificate needs both cert_file and key_file")
    for path in (tls.ca_file, tls.cert_file, tls.key_file):
        if path is not None and not Path(path).is_file():
            raise TelemetryConfigError(f"TLS file {path} does not exist")


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)
