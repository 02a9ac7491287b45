"""The recorder process: build the hardware from the configuration and run the recorder.

The same code runs on a Raspberry Pi and against simulated hardware: the GNSS
receiver and the supervisor MCU are reached through serial ports (a UART or a
pty), and the camera driver is named in the configuration as `module:Class`
(picamera2 on a Pi, the simulated camera for testers), so nothing here knows
which it has. While the recorder sits in the dock, its dock client runs in a
thread beside it (`DockRunner`).
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware.config import ConfigError, RecorderConfig
from firmware.dock_client import DockClient, DockSummary
from firmware.recorder import DOCKED, Recorder, RecorderStopped
from firmware.store import RecorderStore
from firmware.telemetry import Telemetry, TlsOptions
from hardware.gnss_serial import SerialGnss
from hardware.keystore import read_private_key
from hardware.media import MediaSource
from hardware.storage import Storage
from hardware.supervisor import Supervisor
from protocol import signatures
from protocol.assignment import Assignment
from protocol.trust import TrustList, parse_trust_list

log = logging.getLogger("liuhen.recorder")

CLOSE_S = 5.0  # how long a stopping recorder waits for its dock client's last step (a request under way)


class SecureElementSigner:
    """A Signer whose ES256 key never leaves the supervisor MCU's secure element."""

    def __init__(self, supervisor: Supervisor) -> None:
        der = supervisor.secure_element_public_key()
        if der is None:
            raise RuntimeError("no key_file configured and the supervisor has no secure element")
        self._supervisor = supervisor
        self._keyid = signatures.key_id(signatures.public_key_from_spki(der))

    @property
    def alg(self) -> str:
        return signatures.ES256

    @property
    def keyid(self) -> str:
        return self._keyid

    def sign(self, message: bytes) -> bytes:
        return self._supervisor.secure_element_sign(message)


def load_driver(spec: str, options: dict[str, Any]) -> Any:
    """Instantiate `module:Class` from the configuration with its options."""
    module_name, _, class_name = spec.partition(":")
    if not class_name:
        raise ValueError(f"driver {spec!r} must be written module:Class")
    return getattr(importlib.import_module(module_name), class_name)(**options)


def _supervisor(config: RecorderConfig) -> Supervisor | None:
    if not config.mcu_port:
        return None
    from hardware.supervisor_serial import SerialSupervisor

    return SerialSupervisor(config.mcu_port)


def _signer(config: RecorderConfig, supervisor: Supervisor | None) -> signatures.Signer:
    if config.key_file is not None:
        return signatures.KeySigner(read_private_key(config.key_file))
    if supervisor is None:
        raise RuntimeError("no key_file configured and no supervisor MCU to sign with")
    return SecureElementSigner(supervisor)


def _gateways(path: Path | None) -> TrustList | None:
    return parse_trust_list(path.read_bytes()) if path else None


def _dock_gateways(gateways: TrustList | None) -> TrustList:
    if gateways is None:
        raise ConfigError("[recorder] needs gateway_trust_file to check the gateway's dock receipts")
    return gateways


def build(config: RecorderConfig) -> Recorder:
    supervisor = _supervisor(config)
    if supervisor is not None:
        supervisor.start()
    gnss = SerialGnss(config.gnss_port, config.gnss_baud) if config.gnss_port else None
    if gnss is not None:
        gnss.start()
    media: MediaSource = load_driver(config.camera_driver, config.camera_options)
    store = RecorderStore(config.store, config.device)
    recorder = Recorder(config, store, _signer(config, supervisor), media, supervisor=supervisor, gnss=gnss,
                        storage=Storage(config.store, config.storage_quota_bytes),
                        gateways=_gateways(config.gateway_trust_file))
    recorder.telemetry = _telemetry(config, recorder)
    return recorder


def _telemetry(config: RecorderConfig, recorder: Recorder) -> Telemetry | None:
    if not config.mqtt_url:
        return None
    tls = TlsOptions(ca_file=config.mqtt_ca_file) if config.mqtt_ca_file else None
    outbox = config.telemetry_outbox or recorder.store.state / "telemetry"
    # Events carry the recorder's disciplined UTC once it has booted.
    telemetry = Telemetry(config.device, config.mqtt_url, outbox, tls=tls,
                          clock=lambda: recorder.clock.utc_ns() if recorder.clock else recorder.wall_ns())
    telemetry.start()
    return telemetry


def run(config: RecorderConfig) -> int:
    recorder = build(config)
    docking = _docking(config, recorder)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    recorder.boot()
    if config.record_at_boot:
        recorder.start_recording(recorder.monotonic_ns())
    log.info("recorder %s up: session %s, head seq %d", config.device, recorder.session, recorder.store.head().seq)
    try:
        recorder.run(stop.is_set)
    finally:
        if docking is not None and not docking.close(recorder.run_calls):
            log.warning("the dock client did not stop within %.0f s: what has no dock receipt stays", CLOSE_S)
        recorder.shutdown()
        for part in (recorder.gnss, recorder.supervisor):
            if part is not None:
                part.stop()
        if isinstance(recorder.telemetry, Telemetry):
            recorder.telemetry.close()
    produced = getattr(recorder.media, "frames_produced", None)
    if produced is not None:
        log.info("camera produced %d video frames", produced)
    log.info("recorder %s stopped cleanly", config.device)
    return 0


def dock_store(config: RecorderConfig, gateway_url: str) -> DockSummary:
    """Dock a recorder that is not running: its store, its key (file or secure element) and the gateways'
    trust list, against the bay at `gateway_url`. No clock-sync record is signed here (a record needs a
    boot session); the recorder follows the gateway's time when it runs docked."""
    gateways = _dock_gateways(_gateways(config.gateway_trust_file))
    supervisor = None if config.key_file is not None else _supervisor(config)
    if supervisor is not None:
        supervisor.start()
    try:
        store = RecorderStore(config.store, config.device)
        return DockClient(store, _signer(config, supervisor), gateways, gateway_url).dock()
    finally:
        if supervisor is not None:
            supervisor.stop()


# -- docking while running --------------------------------------------------------------------------------

# Makes the dock client of one docking, given when it is to stop (out of the dock, or the recorder stopping).
ClientFactory = Callable[[Callable[[], bool]], DockClient]


def running_dock_client(recorder: Recorder, gateways: TrustList, url: str, **options: Any) -> DockClient:
    """The dock client of a running recorder. What changes the recorder (its clock, the footage its storage
    holds, the officer a check-out assigns) is done on the recorder's own thread. It tries nothing twice: its
    DockRunner docks again, waiting longer each time."""
    assert recorder.clock is not None, "the recorder docks once it has booted"
    return DockClient(recorder.store, recorder.signer, gateways, url,
                      sync=lambda u, m, g: recorder.call(recorder.dock_sync, u, m, g).result(),
                      free=lambda seqs: recorder.call(recorder.free, seqs).result(),
                      assign=lambda a: recorder.call(_assign_once, recorder, a).result(),
                      utc_ns=recorder.clock.utc_ns, monotonic_ns=recorder.monotonic_ns, retries=0, **options)


def _assign_once(recorder: Recorder, assignment: Assignment) -> None:
    # A check-out whose acknowledgement was lost comes again at the next dock: signed into the chain once.
    if recorder.assignment is None or recorder.assignment.ref != assignment.ref:
        recorder.assign(assignment)


def log_summary(summary: DockSummary) -> None:
    counts = (f"{summary.files_sent} files sent, {len(summary.freed)} freed ({summary.freed_bytes:,} bytes), "
              f"{len(summary.kept)} without a receipt")
    if summary.error is not None:
        log.warning("dock at %s: %s; %s", summary.gateway_url, summary.error, counts)
    elif summary.offered:
        log.info("docked at %s (%s): %s", summary.gateway_url, summary.gateway, counts)


class DockRunner:
    """Docks the running recorder while it is in the dock: the dock client in a thread of its own; again after
    a failure (waiting `backoff_s`, doubling up to `interval_s`: the gateway may be down or its disk full)
    and `interval_s` after a complete dock (what the recorder signed since goes too); stopped at once when
    the recorder leaves the dock or stops, keeping whatever has no receipt."""

    def __init__(self, make_client: ClientFactory, interval_s: float, *, backoff_s: float = 1.0,
                 on_dock: Callable[[DockSummary], None] = log_summary) -> None:
        self.make_client = make_client
        self.interval_s = interval_s
        self.backoff_s = backoff_s
        self.on_dock = on_dock
        self._cond = threading.Condition()
        self._docked = False
        self._docking = 0  # counts dockings: a client serves one, even if an undock went unnoticed
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="dock-client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def state_changed(self, state: str) -> None:
        """The recorder's new state (its `on_state_change`, on its thread): dock while it is DOCKED."""
        with self._cond:
            if state == DOCKED and not self._docked:
                self._docking += 1
            self._docked = state == DOCKED
            self._cond.notify_all()

    def close(self, serve: Callable[[], None]) -> bool:
        """Stop docking because the recorder stops; `serve` does the client's last calls of the recorder
        (`Recorder.run_calls`: its loop has ended). True when the client's thread has ended."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        deadline = time.monotonic() + CLOSE_S
        while self._thread.is_alive() and time.monotonic() < deadline:
            serve()
            self._thread.join(0.02)
        return not self._thread.is_alive()

    def retry_wait_s(self, failures: int) -> float:
        return min(self.interval_s, self.backoff_s * 2 ** (failures - 1))

    def _run(self) -> None:
        while (docking := self._next_docking()) is not None:
            try:
                self._dock(docking)
            except RecorderStopped:
                return

    def _next_docking(self) -> int | None:
        """Wait for the recorder to be docked (the docking's number) or to stop (None)."""
        with self._cond:
            self._cond.wait_for(lambda: self._docked or self._closing)
            return None if self._closing else self._docking

    def _dock(self, docking: int) -> None:
        def leaving() -> bool:
            return self._closing or not self._docked or self._docking != docking

        def wait(seconds: float) -> None:
            with self._cond:
                self._cond.wait_for(leaving, seconds)

        client = self.make_client(leaving)
        failures = 0
        try:
            while not leaving():
                try:
                    summary = client.dock()
                except RecorderStopped:
                    raise
                except Exception:  # one of the recorder's own (a file it cannot read): docking goes on
                    log.exception("docking at %s failed", client.url)
                    failures += 1
                else:
                    self.on_dock(summary)
                    failures = _failures(summary, failures)
                wait(self.retry_wait_s(failures) if failures else self.interval_s)
        finally:
            client.http.close()


def _failures(summary: DockSummary, before: int) -> int:
    """Failed docks in a row after this one; one that moved bytes counts as the first, the link working."""
    if summary.error is None:
        return 0
    return 1 if summary.bytes_sent else before + 1


def _docking(config: RecorderConfig, recorder: Recorder) -> DockRunner | None:
    """The dock runner of a recorder whose configuration names its gateway, told of the recorder's states."""
    if not config.dock_gateway_url:
        return None
    gateways = _dock_gateways(recorder.gateways)
    runner = DockRunner(lambda stopped: running_dock_client(recorder, gateways, config.dock_gateway_url,
                                                            stopped=stopped), config.dock_interval_seconds)
    recorder.on_state_change = runner.state_changed
    runner.start()
    return runner
