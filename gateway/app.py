"""The docking gateway as one process: the bays' dock, the spool, the uploader, the device trust list kept
current from the server, check-outs, the station page and API, and the station's MQTT broker link.

Everything runs in one asyncio loop; blocking work (SQLite, fsync, tuspy) runs in the parts' own threads.
The order of starting and stopping is what keeps footage safe: the spool opens first (finishing what a
crash interrupted) and closes last; the bays stop taking files before the uploader stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from gateway.bays import Bays
from gateway.checkout import Checkouts
from gateway.config import GatewayConfig
from gateway.device_trust import DeviceTrust
from gateway.dock import Dock, start_bays, stop_bays
from gateway.durable import atomic_write
from gateway.identity import GatewayIdentity, load_identity
from gateway.problems import Problem, ProblemLog
from gateway.server_link import ServerAway, ServerLink
from gateway.spool import Spool
from gateway.station import start_station
from gateway.station_broker import StationBroker
from gateway.station_mqtt import StationMqtt
from gateway.station_view import StationSources, build_view, station_status
from gateway.uploader import Uploader
from protocol.trust import TrustList

log = logging.getLogger("liuhen.gateway")


class Gateway:
    """The parts of one gateway; `running()` starts them and stops them in a safe order (`serve` runs it until
    SIGTERM or SIGINT)."""

    def __init__(self, config: GatewayConfig, identity: GatewayIdentity) -> None:
        self.config = config
        self.identity = identity
        self.problems = ProblemLog("gateway", time.time_ns)
        self.spool = Spool(config.spool_dir)
        self.link = ServerLink(config.server, identity)
        _first_device_trust(config, self.link)
        self.device_trust = DeviceTrust(config.device_trust_file)
        self.bays = Bays(config.bays.listen(), time.time_ns, time.monotonic_ns)
        self.checkouts = Checkouts(config.data_dir, config.gateway_id, identity.signer)
        self.uploader = Uploader(self.spool, self.link, config.upload)
        self.dock = Dock(config.dock, self.spool, identity.signer, self.device_trust, self.bays,
                         assignments=self.checkouts, on_receipts=self.uploader.wake)

    def _sources(self, mqtt: StationMqtt) -> StationSources:
        def problems() -> list[Problem]:
            # The trust file's state is a condition, not an event: shown while it lasts, not logged per look.
            now = [Problem(time.time_ns(), "trust", "trust.file", self.device_trust.error)] \
                if self.device_trust.error else []
            return self.problems.recent() + mqtt.problems.recent() + now

        return StationSources(
            gateway=self.config.gateway_id, bays=self.bays.snapshot, backlog=self.spool.backlog,
            recorders=mqtt.recorders, checkouts=self.checkouts.list, problems=problems,
            upload_error=lambda: self.uploader.last_error)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        """Start every part; stop them in the safe order on the way out."""
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.spool.close)
            stack.callback(self.checkouts.close)
            mqtt = StationMqtt(self.config.mqtt, self.config.gateway_id, port=await _broker(stack, self.config))
            mqtt.start()
            # In a thread: close waits for the broker to take the "offline" message, and the embedded broker
            # runs in this loop, which a blocking call here would stall for the whole wait.
            stack.push_async_callback(asyncio.to_thread, mqtt.close)
            sources = self._sources(mqtt)
            station = await start_station(sources, self.checkouts, self.config.station)
            stack.push_async_callback(station.cleanup)

            async def status() -> dict[str, Any]:
                return station_status(await build_view(sources))

            _task(stack, self.uploader.run(), "uploader")
            _task(stack, mqtt.run(status), "station status")
            _task(stack, _keep_device_trust(self.config, self.link, self.problems), "device trust")
            runners = await start_bays(self.dock, self.config.bays.listen())
            stack.push_async_callback(stop_bays, self.dock, runners)
            log.info("gateway %s running: %d bays, station page on http://%s:%d/, server %s",
                     self.config.gateway_id, len(runners), self.config.station.host, self.config.station.port,
                     self.config.server.server_url)
            yield self


async def _broker(stack: contextlib.AsyncExitStack, config: GatewayConfig) -> int | None:
    """Start the embedded broker when the station has none (embedded defaults); its port, or None."""
    if not config.mqtt.embedded:
        return None
    broker = StationBroker(config.mqtt.host, config.mqtt.port)
    await broker.start()
    stack.push_async_callback(broker.stop)
    return broker.port


def _task(stack: contextlib.AsyncExitStack, work: Awaitable[None], name: str) -> None:
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: _ended(t, name))

    async def cancel() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(cancel)


def _ended(task: asyncio.Future[None], name: str) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the gateway's %s stopped", name, exc_info=task.exception())


def _first_device_trust(config: GatewayConfig, link: ServerLink) -> None:
    """The dock needs a trust file from its first start: the server's list if it answers, else an empty one,
    which refuses every recorder (as unknown) until the server is reached."""
    path = config.device_trust_file
    if path.exists():
        return
    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        trust = link.refresh_trust()
    except ServerAway as exc:
        log.warning("no device trust list yet (%s): recorders are refused until the server answers", exc)
        trust = TrustList()
    atomic_write(path, trust.to_bytes())


async def _keep_device_trust(config: GatewayConfig, link: ServerLink, problems: ProblemLog) -> None:
    """Fetch the server's trust list every trust_refresh_s; an enrollment or revocation reaches the dock
    within that time, and docking goes on with the last list while the server is away."""
    path = config.device_trust_file
    failing = False
    while True:
        try:
            raw = (await asyncio.to_thread(link.refresh_trust)).to_bytes()
            failing = False
            if raw != await asyncio.to_thread(path.read_bytes):
                await asyncio.to_thread(atomic_write, path, raw)
                log.info("device trust list updated from the server")
        except ServerAway as exc:
            if not failing:  # once per outage, not once per try
                problems.add("trust.refresh", f"device trust list not refreshed (the last one stays in use): {exc}")
            failing = True
        await asyncio.sleep(config.trust_refresh_s)


async def serve(config: GatewayConfig, ready: Callable[[Gateway], None] | None = None) -> None:
    """Run the gateway until SIGTERM or SIGINT."""
    gateway = Gateway(config, load_identity(config.identity))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with gateway.running():
        if ready is not None:
            ready(gateway)
        await stop.wait()
        log.info("gateway %s stopping", config.gateway_id)

