"""The gateway on the station's MQTT broker: recorders' telemetry in, the station's own status out.

In (firmware/telemetry.py publishes them, docs/recorder.md "Telemetry"), under `liuhen/recorders/<device>/`:
`status` (retained JSON snapshot), `events` (JSON, numbered by `n`) and `online` (retained `online` or
`offline`, the latter also the recorder's last will). The gateway keeps each recorder's last status for the
station page. Telemetry comes from the network and is not evidence: a message that is too long, not JSON,
or names another device than its topic is ignored and kept as a problem for the page.

Out, under `liuhen/gateways/<gateway id>/`:
`status` (retained, QoS 1) the station's status as JSON (station_view.station_status), republished every
`status_interval_s` and on every connect, so a restarted broker has it again and `updated_ns` tells its age;
`online` (retained, QoS 1) `online` on every connect, `offline` on a clean stop and, as the last will, from
the broker when the gateway vanishes.

paho runs its network loop in a thread of its own: its callbacks only update the recorder table under a lock,
and the station page, in the gateway's event loop, reads copies. Clean session: what the station shows is the
retained status of each recorder, which a new subscription receives at once; events missed while the gateway
was away are in the recorders' signed chains.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.problems import ProblemLog
from protocol.fields import IDENTIFIER

log = logging.getLogger("liuhen.gateway.mqtt")

RECORDERS = "liuhen/recorders"
GATEWAYS = "liuhen/gateways"
ONLINE = "online"
OFFLINE = "offline"
MAX_PAYLOAD = 64 * 1024  # a recorder's status is under 1 KiB
_TEXT_MAX = 64  # longest state or event kind kept: the page shows them


class MqttConfigError(ValueError):
    """Bad broker settings: raised before anything connects."""


@dataclass(frozen=True)
class MqttSettings:
    """The station broker (the `[gateway.mqtt]` section)."""

    embedded: bool = True  # run the embedded amqtt broker on host:port (embedded defaults); else connect to one
    host: str = "127.0.0.1"  # the broker's address; for the embedded one, where it listens
    port: int = 1883  # 8883 is usual with TLS; 0 (embedded only) picks a free port
    tls: bool = False  # mqtts to the station's Mosquitto; not with the embedded broker
    ca_file: Path | None = None  # CA of the broker's certificate; None: the system's trust store
    cert_file: Path | None = None  # client certificate, for a broker that requires one
    key_file: Path | None = None
    username: str | None = None
    password: str | None = None
    keepalive_s: int = 30  # the broker declares the gateway offline about 1.5 x this after it vanishes
    status_interval_s: float = 10.0  # how often the station's status is republished
    max_recorders: int = 1000  # recorders tracked at once: telemetry naming more is ignored and reported

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535 or (self.port == 0 and not self.embedded):
            raise MqttConfigError(f"MQTT port {self.port} must be 1-65535 (0: a free one, embedded broker only)")
        if self.embedded and self.tls:
            raise MqttConfigError("the embedded broker speaks plain MQTT: run Mosquitto for TLS (embedded = false)")
        if not self.tls and any(f is not None for f in (self.ca_file, self.cert_file, self.key_file)):
            raise MqttConfigError("ca_file, cert_file and key_file need tls = true")
        if (self.cert_file is None) != (self.key_file is None):
            raise MqttConfigError("a TLS client certificate needs both cert_file and key_file")
        if self.password is not None and self.username is None:
            raise MqttConfigError("an MQTT password needs a username")
        if self.keepalive_s < 1 or not self.status_interval_s > 0 or self.max_recorders < 1:
            raise MqttConfigError("keepalive_s, status_interval_s and max_recorders must be positive")


class StationTopics(NamedTuple):
    status: str
    online: str


def station_topics(gateway: str) -> StationTopics:
    return StationTopics(f"{GATEWAYS}/{gateway}/status", f"{GATEWAYS}/{gateway}/online")


@dataclass(frozen=True)
class RecorderSeen:
    """A recorder as its telemetry last showed it; None where nothing (valid) was said."""

    device: str
    online: bool | None = None
    state: str | None = None
    battery_percent: int | None = None
    charging: bool | None = None
    storage_used_bytes: int | None = None
    storage_free_bytes: int | None = None
    chain_seq: int | None = None
    status_ns: int | None = None  # the recorder's time of its latest status
    last_seen_ns: int | None = None  # gateway time a live (not retained) message of it last came
    last_event: str | None = None  # kind of its newest event
    last_event_n: int | None = None


def encode(obj: Mapping[str, Any]) -> bytes:
    """As the recorders' payloads: JSON, sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class StationMqtt:
    def __init__(self, settings: MqttSettings, gateway: str, *, port: int | None = None,
                 clock_ns: Callable[[], int] = time.time_ns,
                 reconnect_delay: tuple[float, float] = (1.0, 30.0)) -> None:
        """`port` overrides settings.port: the embedded broker's, once it chose a free one."""
        if not IDENTIFIER.fullmatch(gateway):
            raise MqttConfigError(f"gateway id {gateway!r} is not a valid id")
        self.settings = settings
        self.gateway = gateway
        self.port = settings.port if port is None else port
        self.topics = station_topics(gateway)
        self.problems = ProblemLog("mqtt", clock_ns)
        self._clock_ns = clock_ns
        self._lock = threading.Lock()  # the recorder table, the last status and the connection state
        self._recorders: dict[str, RecorderSeen] = {}
        self._status: bytes | None = None
        self._connected = threading.Event()
        self._unreachable_reported = False
        self._closing = False
        self._client = self._make_client(reconnect_delay)

    def _make_client(self, reconnect_delay: tuple[float, float]) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"liuhen-gateway-{self.gateway}",
                             clean_session=True, protocol=mqtt.MQTTv311)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls:
            try:
                client.tls_set(ca_certs=_path(s.ca_file), certfile=_path(s.cert_file), keyfile=_path(s.key_file))
            except OSError as exc:  # ssl.SSLError too: a missing file, not PEM, a key that does not match
                raise MqttConfigError(f"MQTT TLS settings: {exc}") from exc
        client.will_set(self.topics.online, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(*reconnect_delay)  # type: ignore[arg-type]  # paho waits floats out fine
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        return client

    # -- lifecycle

    def start(self) -> None:
        """Connect in the background, retrying with backoff while the broker is away."""
        self._client.connect_async(self.settings.host, self.port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()

    async def run(self, status: Callable[[], Awaitable[Mapping[str, Any]]]) -> None:
        """Publish the station's status every status_interval_s until cancelled. A status that cannot be
        made this time is logged and tried again next time: the station stays on the broker meanwhile."""
        while True:
            try:
                self.publish_status(await status())
            except Exception as exc:
                log.exception("station MQTT: the station's status could not be made")
                self.problems.add("station.status", f"the station's status could not be made: {exc!r}")
            await asyncio.sleep(self.settings.status_interval_s)

    def close(self, timeout: float = 2.0) -> None:
        """Say offline (if connected), disconnect and stop paho's thread; blocks up to about `timeout`."""
        self._closing = True
        if self._connected.is_set():
            info = self._client.publish(self.topics.online, OFFLINE, qos=1, retain=True)
            with contextlib.suppress(RuntimeError):  # the connection went as we spoke: the last will says it
                info.wait_for_publish(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    # -- what the station shows and says

    def recorders(self) -> list[RecorderSeen]:
        with self._lock:
            return sorted(self._recorders.values(), key=lambda r: r.device)

    def publish_status(self, status: Mapping[str, Any]) -> None:
        """Replace the station's retained status (sent now if connected, else on connecting)."""
        payload = encode({**status, "gateway": self.gateway, "updated_ns": self._clock_ns()})
        with self._lock:
            self._status = payload
            if self._connected.is_set():
                self._client.publish(self.topics.status, payload, qos=1, retain=True)

    # -- paho callbacks (paho's thread: short, never blocking)

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: mqtt.ConnectFlags, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            self._problem("mqtt.refused", f"the broker at {self._where()} refused the gateway: {reason_code}")
            return
        log.info("station MQTT: connected to %s", self._where())
        self._unreachable_reported = False
        client.subscribe(f"{RECORDERS}/+/+", qos=1)
        client.publish(self.topics.online, ONLINE, qos=1, retain=True)
        with self._lock:
            self._connected.set()
            if self._status is not None:
                client.publish(self.topics.status, self._status, qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: mqtt.DisconnectFlags, reason_code: Any,
                       properties: Any) -> None:
        with self._lock:
            was_connected = self._connected.is_set()
            self._connected.clear()
        if was_connected and not self._closing:
            self._problem("mqtt.disconnected", f"lost the broker at {self._where()} ({reason_code}); reconnecting")

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._unreachable_reported:  # once per outage, not at every retry
            self._unreachable_reported = True
            self._problem("mqtt.unreachable", f"cannot reach the broker at {self._where()}; retrying")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        parts = msg.topic.split("/")
        # Only recorders' topics: amqtt also hands a connecting client the retained messages of every other
        # client's subscriptions, and on a shared broker other topics are someone else's business.
        if len(parts) != 4 or "/".join(parts[:2]) != RECORDERS or not IDENTIFIER.fullmatch(parts[2]):
            return
        device, kind = parts[2], parts[3]
        try:
            self._take(device, kind, bytes(msg.payload), None if msg.retain else self._clock_ns())
        except ValueError as exc:
            self._problem("telemetry.malformed", f"{msg.topic}: {exc}; ignored", device)

    # -- the recorder table

    def _take(self, device: str, kind: str, payload: bytes, live_ns: int | None) -> None:
        if kind == "online":
            if payload not in (ONLINE.encode(), OFFLINE.encode()):
                raise ValueError(f"{payload[:20]!r} is neither {ONLINE!r} nor {OFFLINE!r}")
            changes: dict[str, Any] = {"online": payload == ONLINE.encode()}
        elif kind == "status":
            changes = _status_changes(_payload(payload, device))
        elif kind == "events":
            changes = _event_changes(_payload(payload, device))
        else:
            return  # a topic of a newer recorder: nothing the station shows yet
        if live_ns is not None:
            changes["last_seen_ns"] = live_ns
        self._update(device, changes)

    def _update(self, device: str, changes: dict[str, Any]) -> None:
        with self._lock:
            seen = self._recorders.get(device)
            if seen is not None or len(self._recorders) < self.settings.max_recorders:
                self._recorders[device] = dataclasses.replace(seen or RecorderSeen(device), **changes)
                return
        self._problem("telemetry.too-many-recorders",
                      f"already tracking {self.settings.max_recorders} recorders; ignoring {device}", device)

    def _problem(self, code: str, message: str, device: str | None = None) -> None:
        log.warning("station MQTT: %s", message)
        self.problems.add(code, message, device)

    def _where(self) -> str:
        return f"{self.settings.host}:{self.port}"


def _payload(payload: bytes, device: str) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"{len(payload)} bytes, more than {MAX_PAYLOAD}")
    doc = json.loads(payload)  # a JSONDecodeError or UnicodeDecodeError is a ValueError
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    if doc.get("device") != device:
        raise ValueError(f"names device {doc.get('device')!r}, not its topic's")
    return doc


def _status_changes(doc: dict[str, Any]) -> dict[str, Any]:
    battery, storage, chain = (_object(doc.get(name)) for name in ("battery", "storage", "chain"))
    charging = battery.get("charging")
    return {"state": _text(doc.get("state")), "battery_percent": _int(battery.get("percent")),
            "charging": charging if isinstance(charging, bool) else None,
            "storage_used_bytes": _int(storage.get("used_bytes")),
            "storage_free_bytes": _int(storage.get("free_bytes")),
            "chain_seq": _int(chain.get("seq")), "status_ns": _int(doc.get("updated_ns"))}


def _event_changes(doc: dict[str, Any]) -> dict[str, Any]:
    kind, n = _text(doc.get("kind")), _int(doc.get("n"))
    if kind is None or n is None:
        raise ValueError("an event needs a kind and a number n")
    return {"last_event": kind, "last_event_n": n}


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= _TEXT_MAX else None


def _path(path: Path | None) -> str | None:
    return None if path is None else str(path)
