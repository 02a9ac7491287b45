"""An in-process MQTT 3.1.1 broker (amqtt) for the one-machine defaults, where Mosquitto is absent.

amqtt is asyncio; the recorder, the gateway and the tests are threads. So the
broker gets a thread of its own running its own event loop, and start()/stop()
are plain blocking calls. amqtt keeps nothing on disk: retained messages and
sessions are gone after stop(), as with Mosquitto run with `persistence false`.

We listen ourselves and hand each connection to amqtt (its "external"
listener) rather than letting amqtt listen, for two reasons: we learn the port
the system picked for port 0 without reaching into amqtt, and stop() can drop
every connection before amqtt shuts down. amqtt's own shutdown cancels each
connection's reader, and on Python 3.11 a cancel that meets arriving data is
swallowed (asyncio.wait_for), which hangs the shutdown forever.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker

log = logging.getLogger("liuhen.broker")

_LISTENER = "default"
_CONFIG: dict[str, Any] = {
    "listeners": {_LISTENER: {"type": "external"}},
    # Anonymous access only: the embedded broker listens on loopback or a station LAN;
    # a deployment that authenticates runs Mosquitto with its own configuration.
    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
}


class _Running:
    """What exists only while the broker runs: its loop and thread, amqtt, the listening socket."""

    def __init__(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        self.loop = loop
        self.thread = thread
        self.broker: Broker | None = None
        self.server: asyncio.Server | None = None
        self.connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def open(self, host: str, port: int) -> int:
        # amqtt binds itself to the running loop at construction: build it inside the loop.
        self.broker = Broker(_CONFIG)
        await self.broker.start()
        self.server = await asyncio.start_server(self._connected, host, port, reuse_address=True)
        return int(self.server.sockets[0].getsockname()[1])

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self.broker is not None
        task = asyncio.current_task()
        assert task is not None
        self.connections[task] = writer
        try:
            await self.broker.external_connected(StreamReaderAdapter(reader), StreamWriterAdapter(writer), _LISTENER)
        finally:
            del self.connections[task]

    async def close(self, timeout: float) -> None:
        if self.server is not None:
            self.server.close()
        # Reset every connection, as a broker that dies would: each session then ends on its own (EOF),
        # sends its client's last will, and leaves amqtt nothing to cancel.
        for writer in self.connections.values():
            writer.transport.abort()
        if self.connections:
            await asyncio.wait(list(self.connections), timeout=timeout)
        if self.broker is not None:
            await self.broker.shutdown()

    def stop_loop(self, timeout: float) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
        if not self.thread.is_alive():
            self.loop.close()


class EmbeddedBroker:
    """amqtt on `host:port` in a background thread; port 0 picks a free port, kept across restarts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is not 0-65535")
        self.host = host
        self._port = port
        self._running: _Running | None = None

    @property
    def port(self) -> int:
        """The port listened on: after the first start() the one the system chose if 0 was asked."""
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._running is not None

    def start(self, timeout: float = 10.0) -> None:
        """Listen; returns once clients can connect. A stopped broker starts again on the same port."""
        if self._running is not None:
            raise RuntimeError("broker already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"amqtt-{self.host}:{self._port}", daemon=True)
        thread.start()
        running = _Running(loop, thread)
        try:
            self._port = asyncio.run_coroutine_threadsafe(running.open(self.host, self._port), loop).result(timeout)
        except BaseException:
            asyncio.run_coroutine_threadsafe(running.close(timeout), loop).result(timeout)
            running.stop_loop(timeout)
            raise
        self._running = running
        log.info("embedded MQTT broker listening on %s", self.url)

    def stop(self, timeout: float = 10.0) -> None:
        """Drop every connection (clients see the broker vanish, not a goodbye) and stop listening."""
        running, self._running = self._running, None
        if running is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(running.close(timeout), running.loop).result(timeout)
        finally:
            running.stop_loop(timeout)
        log.info("embedded MQTT broker on %s:%d stopped", self.host, self._port)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
