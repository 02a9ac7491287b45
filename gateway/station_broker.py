"""The station's embedded MQTT 3.1.1 broker (amqtt), for a gateway started with embedded defaults.

Not shared with firmware/embedded_broker.py: the gateway may not import firmware, and that one wraps amqtt in
a thread with its own event loop for the threaded recorder, whereas the gateway is asyncio itself, so here
amqtt runs in the gateway's loop with plain async start() and stop(). Two amqtt pitfalls that file documents
hold here too: amqtt binds itself to the running loop when constructed (so it is built in start()), and its
shutdown cancels each connection's reader, which on Python 3.11 can be swallowed when data arrives at that
moment and then hangs forever. So we accept connections ourselves, hand each to amqtt (an "external"
listener), and reset them all before amqtt shuts down: each session then ends on its own, with its client's
last will. amqtt keeps nothing on disk: retained messages are gone after stop(). And amqtt hands a connecting
client the retained messages matching every other client's subscriptions as well as its own: clients here
look at the topic of what they receive (gateway/station_mqtt.py does).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from amqtt.adapters import StreamReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker

log = logging.getLogger("liuhen.gateway.broker")

_LISTENER = "default"  # amqtt requires a listener of this name
# Anonymous: the embedded broker is for one machine or a closed station LAN; a station that authenticates
# its recorders runs Mosquitto.
_CONFIG: dict[str, Any] = {
    "listeners": {_LISTENER: {"type": "external"}},
    "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
}


class StationBroker:
    """amqtt on `host:port` in the running event loop; port 0 picks a free port (then `port` tells which)."""

    def __init__(self, host: str, port: int) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"embedded broker port {port} is not 0-65535")
        self.host = host
        self.port = port
        self._broker: Broker | None = None
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}

    async def start(self) -> None:
        """Listen; returns once clients can connect. A taken port is an OSError and leaves nothing running."""
        if self._broker is not None:
            raise RuntimeError("the embedded broker is running already")
        broker = Broker(_CONFIG)
        await broker.start()
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, reuse_address=True)
        except BaseException:
            await broker.shutdown()
            raise
        self._broker = broker
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None and self._broker is not None
        self._clients[task] = writer
        try:
            await self._broker.external_connected(StreamReaderAdapter(reader), StreamWriterAdapter(writer),
                                                  _LISTENER)
        finally:
            del self._clients[task]

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop listening and drop every client as a vanished broker would (their last wills go out)."""
        broker, self._broker = self._broker, None
        if broker is None:
            return
        assert self._server is not None
        self._server.close()
        for writer in self._clients.values():
            writer.transport.abort()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=timeout)
        await broker.shutdown()
        log.info("embedded MQTT broker on %s:%d stopped", self.host, self.port)
