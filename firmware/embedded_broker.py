"""An in-process MQTT 3.1.1 broker (amqtt) for the one-machine defaults, where Mosquitto is absent.

amqtt is asyncio; the recorder, the gateway and the tests are threads. So the
broker gets a thread of its own running its own event loop, and start()/stop()
are plain blocking calls. amqtt keeps nothing on disk: retained messages and
sessions are gone after stop(), as with Mosquitto run with `persistence false`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from types import TracebackType
from typing import Any

from amqtt.broker import Broker

log = logging.getLogger("liuhen.broker")

# Anonymous access only: the embedded broker listens on loopback or a station LAN;
# the authenticating deployment is Mosquitto with its own configuration.
_PLUGINS: dict[str, Any] = {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}


class EmbeddedBroker:
    """amqtt on `host:port` in a background thread; port 0 picks a free port, kept across restarts."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is not 0-65535")
        self.host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Broker | None = None

    @property
    def port(self) -> int:
        """The port listened on: the one chosen by the system after the first start() when 0 was asked."""
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._broker is not None

    def start(self, timeout: float = 10.0) -> None:
        """Listen; returns once clients can connect. A stopped broker starts again on the same port."""
        if self._broker is not None:
            raise RuntimeError("broker already running")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"amqtt-{self.host}:{self._port}", daemon=True)
        thread.start()
        try:
            self._broker = asyncio.run_coroutine_threadsafe(self._start(), loop).result(timeout)
        except BaseException:
            _stop_loop(loop, thread, timeout)
            raise
        self._loop, self._thread = loop, thread
        log.info("embedded MQTT broker listening on %s", self.url)

    async def _start(self) -> Broker:
        # amqtt binds the broker to the running loop at construction: build it inside the loop.
        config = {"listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self._port}"}},
                  "plugins": _PLUGINS}
        broker = Broker(config)
        await broker.start()
        self._port = _bound_port(broker)
        return broker

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection (no DISCONNECT: clients see the broker vanish) and stop listening."""
        if self._broker is None or self._loop is None or self._thread is None:
            return
        broker, loop, thread = self._broker, self._loop, self._thread
        self._broker = self._loop = self._thread = None
        try:
            asyncio.run_coroutine_threadsafe(broker.shutdown(), loop).result(timeout)
        finally:
            _stop_loop(loop, thread, timeout)
        log.info("embedded MQTT broker on %s:%d stopped", self.host, self._port)

    def __enter__(self) -> EmbeddedBroker:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _bound_port(broker: Broker) -> int:
    # amqtt has no public accessor for the listening socket; its server table is
    # the only place that knows the port the system picked for port 0.
    try:
        return int(broker._servers["default"].instance.sockets[0].getsockname()[1])
    except (AttributeError, KeyError, IndexError) as exc:
        raise RuntimeError("cannot read the embedded broker's port (amqtt internals changed?)") from exc


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread, timeout: float) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout)
    if not thread.is_alive():
        loop.close()
