"""Helpers for the station tests: the gateway's event loop in a thread, the station's brokers (a private
Mosquitto, as in production, and the gateway's embedded amqtt), what an MQTT onlooker sees, and a station's
parts filled with real data for its page."""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.bays import Bay, Bays
from gateway.checkout import Checkouts
from gateway.problems import ProblemLog
from gateway.spool import Spool
from gateway.station_broker import StationBroker
from gateway.station_mqtt import RecorderSeen
from gateway.station_view import StationSources
from protocol import errors, signatures
from simulators.synthetic import SyntheticDevice, typical_shift
from tests.gateway.test_spool import dock as spool_dock
from tests.server.footage import Gateway
from tests.telemetry.conftest import WAIT, Broker, Mosquitto, need_mosquitto

T = TypeVar("T")
BROKERS = ["mosquitto", "embedded"]
GATEWAY = "GW-STATION-01"
NS = 1_000_000_000


class LoopThread:
    """An event loop in a thread of its own, as the gateway's; the test drives it from its own thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="gateway-loop", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn: Callable[[], T]) -> T:
        """Call `fn` in the loop's thread (the bays are only touched there)."""
        async def call() -> T:
            return fn()
        return self.call(call())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


class EmbeddedBroker:
    """The gateway's embedded broker (gateway/station_broker.py) in a gateway loop, as the tests' Broker."""

    def __init__(self, loop: LoopThread) -> None:
        self._loop = loop
        self._broker = StationBroker("127.0.0.1", 0)

    @property
    def port(self) -> int:
        return self._broker.port

    def start(self) -> None:
        self._loop.call(self._broker.start())

    def stop(self) -> None:
        self._loop.call(self._broker.stop())


def running_broker(kind: str, folder: Path) -> Iterator[Broker]:
    """A started broker of `kind` (one of BROKERS), stopped afterwards."""
    loop = None
    if kind == "mosquitto":
        need_mosquitto()
        broker: Broker = Mosquitto(folder)
    else:
        loop = LoopThread()
        broker = EmbeddedBroker(loop)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        if loop is not None:
            loop.stop()


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll `predicate` (state that other threads change and that has no event to wait on)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def retained(port: int, topic: str, timeout: float = 2.0) -> bytes | None:
    """The message a new subscriber to `topic` gets at once (the retained one), or None."""
    got: list[bytes] = []
    arrived = threading.Event()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == topic:  # amqtt also sends a new client the retained messages of others' subscriptions
            got.append(bytes(msg.payload))
            arrived.set()

    # QoS 0: amqtt would otherwise wait (5 s) for a PUBACK that this onlooker, gone at once, never sends.
    client = _connected("onlooker", port, on_message=on_message,
                        on_connect=lambda c, *_: c.subscribe(topic, qos=0))
    try:
        arrived.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return got[0] if got else None


def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    """Publish raw messages (QoS 1, not retained) as some client on the station's broker, and wait for them."""
    client = _connected("publisher", port)
    try:
        for info in [client.publish(topic, payload, qos=1) for topic, payload in messages]:
            info.wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


def _connected(name: str, port: int, **callbacks: Any) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{name}-{secrets.token_hex(6)}",
                         protocol=mqtt.MQTTv311)
    for callback, fn in callbacks.items():
        setattr(client, callback, fn)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class Station:
    """A station's parts as the gateway app composes them: real bays, spool and check-outs, and the recorders'
    telemetry as plain data (or a real StationMqtt's table, passed as `recorders`)."""

    def __init__(self, root: Path, recorders: Callable[[], list[RecorderSeen]] | None = None) -> None:
        self.now_ns = 1_764_000_000 * NS
        self.mono_ns = 0
        self.bays = Bays(["bay-1", "bay-2"], lambda: self.now_ns, lambda: self.mono_ns)
        self.spool = Spool(root / "spool", now_ns=lambda: self.now_ns)
        self.gateway = Gateway(GATEWAY)
        self.checkouts = Checkouts(root / "gateway", GATEWAY, self.gateway.signer, clock_ns=lambda: self.now_ns)
        self.seen: list[RecorderSeen] = []
        self.problems = ProblemLog("mqtt", lambda: self.now_ns)
        self.upload_error: str | None = None
        self._recorders = recorders or (lambda: list(self.seen))

    def sources(self) -> StationSources:
        return StationSources(GATEWAY, self.bays.snapshot, self.spool.backlog, self._recorders, self.checkouts.list,
                              self.problems.recent, lambda: self.upload_error, lambda: self.now_ns)

    def spool_a_shift(self, folder: Path, device: str, flagged_seq: int) -> SyntheticDevice:
        """A recorder's shift docked into the spool, one segment flagged: the backlog to the server."""
        dev = typical_shift(folder, device, signatures.KeySigner(signatures.generate()), segments=4, size=250_000)
        segments = [m for m in dev.manifests if m.media is not None]
        spool_dock(self.spool, self.gateway, dev, segments, findings={flagged_seq: [errors.FILE_HASH_MISMATCH]})
        return dev

    def transfer(self, bay: str, device: str, files: int, size: int) -> Bay:
        """A recorder docked at `bay` with `files` files of `size` bytes planned."""
        self.bays[bay].docked(device)
        self.bays[bay].planned(files, files * size, 0)
        return self.bays[bay]

    def received_file(self, bay: str, size: int, seconds: int = 2) -> None:
        """One more whole file arrived at `bay`, taking `seconds`."""
        self.mono_ns += seconds * NS
        self.now_ns += seconds * NS
        self.bays[bay].received(size)
        self.bays[bay].file_done()

    def close(self) -> None:
        self.spool.close()
        self.checkouts.close()
