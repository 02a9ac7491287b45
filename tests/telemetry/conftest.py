"""Brokers, a subscriber and a severable link for the telemetry tests.

Every test runs against a private Mosquitto (the deployment broker) and the embedded amqtt broker (the
one-machine default). The system Mosquitto on 1883 is never used: each test gets its own broker on a free
port, so tests neither see each other's retained messages nor depend on what runs on the machine.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.embedded_broker import EmbeddedBroker
from firmware.telemetry import topics

DEVICE = "LH-TEST-0001"
WAIT = 10.0  # seconds: the ceiling of every wait on a condition, never a sleep


class Broker(Protocol):
    @property
    def port(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def dead_port() -> Iterator[int]:
    """A port where connections are refused, held so that no other process starts listening there."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


class Mosquitto:
    """A private Mosquitto; restarting keeps its port, as a restarted station broker would."""

    def __init__(self, folder: Path, listener_options: str = "") -> None:
        self.folder = folder
        self.listener_options = listener_options
        self.port = 0
        self.log: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._running = False

    def start(self) -> None:
        if self.port:
            self._run()
            return
        # A free port is only free until someone else binds it: on a busy machine, try another.
        for _ in range(3):
            self.port = free_port()
            with contextlib.suppress(OSError):
                return self._run()
        raise OSError(f"mosquitto found no free port: {self.log[-3:]}")

    def _run(self) -> None:
        conf = self.folder / "mosquitto.conf"
        # Run as root (the tests do); no persistence, like amqtt: a restarted broker forgets retained messages.
        conf.write_text(f"listener {self.port} 127.0.0.1\n{self.listener_options}allow_anonymous true\n"
                        "persistence false\nuser root\nlog_dest stderr\n")
        self.process = subprocess.Popen(["mosquitto", "-c", str(conf)], stderr=subprocess.PIPE, text=True)
        self._running = False
        settled = threading.Event()
        threading.Thread(target=self._read_log, args=(self.process, settled), daemon=True).start()
        # Ready when it says so, failed when it exits first (e.g. the port was taken): no guessing by time.
        assert settled.wait(WAIT), "mosquitto said nothing"
        if not self._running:
            self.process.wait(WAIT)
            self.process = None
            raise OSError(f"mosquitto did not start: {self.log[-3:]}")

    def _read_log(self, process: subprocess.Popen[str], settled: threading.Event) -> None:
        assert process.stderr is not None
        for line in process.stderr:  # drained to the end, or a chatty broker would block on a full pipe
            self.log.append(line.rstrip())
            if line.rstrip().endswith(" running"):
                self._running = True
                settled.set()
        settled.set()  # it exited

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(WAIT)
            self.process = None


def need_mosquitto() -> None:
    if shutil.which("mosquitto") is None:
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (.ci/run does)")


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    if request.param == "mosquitto":
        need_mosquitto()
        b: Broker = Mosquitto(tmp_path)
    else:
        b = EmbeddedBroker("127.0.0.1", 0)
    b.start()
    yield b
    b.stop()


def url(port: int) -> str:
    return f"mqtt://127.0.0.1:{port}"


@dataclass
class Message:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """Everything a device publishes, as a dashboard would see it; returns once subscribed."""

    def __init__(self, port: int, device: str = DEVICE) -> None:
        self.topics = topics(device)
        self.messages: list[Message] = []
        self._changed = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{free_port()}",
                                   protocol=mqtt.MQTTv311)
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]  # close() waits out the delay
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.connect("127.0.0.1", port)
        self._client.loop_start()
        self._client.subscribe(f"{self.topics.status.rsplit('/', 1)[0]}/#", qos=1)
        assert self._subscribed.wait(WAIT), "no SUBACK"

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain)))
            self._changed.notify_all()

    def wait(self, predicate: Callable[[Subscriber], bool], what: str, timeout: float = WAIT) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: predicate(self), timeout), f"timed out waiting for {what}"

    def on(self, topic: str) -> list[Message]:
        with self._changed:
            return [m for m in self.messages if m.topic == topic]

    def events(self) -> list[dict[str, Any]]:
        return [m.json() for m in self.on(self.topics.events)]

    def event_numbers(self) -> set[int]:
        return {e["n"] for e in self.events()}

    def online(self) -> list[str]:
        """The device's online states in the order seen; repeats collapsed (amqtt may send a retained
        message twice to a new subscriber, and QoS 1 allows it)."""
        states = [m.payload.decode() for m in self.on(self.topics.online)]
        return [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def subscribe() -> Iterator[Callable[[int], Subscriber]]:
    made: list[Subscriber] = []

    def make(port: int) -> Subscriber:
        made.append(Subscriber(port))
        return made[-1]

    yield make
    for s in made:
        s.close()


class Link:
    """A TCP relay between the recorder and its broker that the test can cut: out of range, on demand.

    Cut, it refuses connections; so after a broker restart the test decides that the subscriber is back
    before the recorder may reconnect, instead of racing it. Stalled, it keeps the connection open but
    swallows what the recorder sends: messages leave the recorder and are never acknowledged (a radio
    fading out).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: socket.socket | None = None
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._swallowing = threading.Condition()
        self._stalled = False
        self.swallowed = 0  # bytes from the recorder dropped while stalled
        self.restore()

    def stall(self) -> None:
        with self._swallowing:
            self._stalled = True

    def wait_swallowed(self, count: int) -> None:
        with self._swallowing:
            assert self._swallowing.wait_for(lambda: self.swallowed >= count, WAIT), "the recorder sent less"

    def restore(self) -> None:
        with self._swallowing:
            self._stalled = False
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen()
        self.port = server.getsockname()[1]
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def cut(self) -> None:
        if self._server is not None:
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone would not)
            self._server.close()
            self._server = None
        with self._lock:
            for s in self._sockets:
                _shut(s)
            self._sockets.clear()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                near, _ = server.accept()
            except OSError:
                return
            try:
                far = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                near.close()
                continue
            with self._lock:
                self._sockets += [near, far]
            threading.Thread(target=self._pump, args=(near, far, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(far, near, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_recorder: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_recorder and self._swallow(len(data)):
                    continue
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _shut(src)
            _shut(dst)

    def _swallow(self, size: int) -> bool:
        with self._swallowing:
            if self._stalled:
                self.swallowed += size
                self._swallowing.notify_all()
            return self._stalled


def _shut(s: socket.socket) -> None:
    with contextlib.suppress(OSError):  # the other pump got there first
        s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def link(broker: Broker) -> Iterator[Link]:
    relay = Link(broker.port)
    yield relay
    relay.cut()
