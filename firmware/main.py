"""The recorder process: build the hardware from the configuration and run the recorder.

The same code runs on a Raspberry Pi and against simulated hardware: the GNSS
receiver and the supervisor MCU are reached through serial ports (a UART or a
pty), and the camera driver is named in the configuration as `module:Class`
(picamera2 on a Pi, the simulated camera for testers), so nothing here knows
which it has.
"""

from __future__ import annotations

import importlib
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from firmware.config import ConfigError, RecorderConfig
from firmware.dock_client import DockClient, DockSummary
from firmware.recorder import Recorder
from firmware.store import RecorderStore
from firmware.telemetry import Telemetry, TlsOptions
from hardware.gnss_serial import SerialGnss
from hardware.keystore import read_private_key
from hardware.media import MediaSource
from hardware.storage import Storage
from hardware.supervisor import Supervisor
from protocol import signatures
from protocol.trust import TrustList, parse_trust_list

log = logging.getLogger("liuhen.recorder")


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
    gateways = _gateways(config.gateway_trust_file)
    if gateways is None:
        raise ConfigError("[recorder] needs gateway_trust_file to check the gateway's dock receipts")
    supervisor = None if config.key_file is not None else _supervisor(config)
    if supervisor is not None:
        supervisor.start()
    try:
        store = RecorderStore(config.store, config.device)
        return DockClient(store, _signer(config, supervisor), gateways, gateway_url).dock()
    finally:
        if supervisor is not None:
            supervisor.stop()
