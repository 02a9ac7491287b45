"""Recorder configuration, read from TOML; every field has a documented default."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class RecorderConfig:
    device: str
    store: Path
    key_file: Path | None = None  # Ed25519/ES256 PEM, mode 0600; None: sign with the MCU's secure element
    segment_seconds: int = 10
    prerecord_seconds: float = 30.0  # 0-120 (Axon and Chinese recorders offer the same range)
    postrecord_seconds: float = 0.0
    haptic_reminder_seconds: int = 20  # 0 turns the reminder off
    storage_reserve_bytes: int = 64 * 1024 * 1024  # stop before the card is completely full
    storage_warn_fractions: tuple[float, ...] = (0.8, 0.9, 0.95)
    storage_quota_bytes: int | None = None
    low_battery_percent: int = 5
    record_at_boot: bool = False  # start recording by itself after boot (vehicle mounts, fixed posts)
    camera_driver: str = "hardware.camera_picamera2:Picamera2Camera"
    camera_options: dict[str, Any] = field(default_factory=dict)
    gnss_port: str | None = "/dev/serial0"
    gnss_baud: int = 9600
    mcu_port: str | None = "/dev/ttyAMA1"
    gateway_trust_file: Path | None = None  # trust list of the station gateways (receipts, assignments)
    dock_gateway_url: str = ""  # the bay's gateway, e.g. http://10.0.7.1:8701; empty: no docking while running
    dock_interval_seconds: float = 60.0  # the longest wait between two docks while docked
    mqtt_url: str = ""  # telemetry broker, mqtt://host:port or mqtts://...; empty: no telemetry
    mqtt_ca_file: Path | None = None  # CA for mqtts:// brokers
    telemetry_outbox: Path | None = None  # None: <store>/.state/telemetry
    firmware_version: str = "0.1.0"


def _coerce(name: str, value: Any) -> Any:
    if name in ("store", "key_file", "gateway_trust_file", "mqtt_ca_file", "telemetry_outbox") and value is not None:
        return Path(value)
    if name == "storage_warn_fractions":
        return tuple(value)
    return value


def load_config(path: Path) -> RecorderConfig:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    section = doc.get("recorder", {})
    known = {f.name for f in fields(RecorderConfig)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown settings in [recorder]: {', '.join(unknown)}")
    missing = [n for n in ("device", "store") if n not in section]
    if missing:
        raise ConfigError(f"{path}: [recorder] needs {', '.join(missing)}")
    config = RecorderConfig(**{k: _coerce(k, v) for k, v in section.items()})
    if not 0 <= config.prerecord_seconds <= 120:
        raise ConfigError(f"{path}: prerecord_seconds must be 0-120")
    if config.segment_seconds < 1:
        raise ConfigError(f"{path}: segment_seconds must be at least 1")
    if config.dock_gateway_url and config.gateway_trust_file is None:
        raise ConfigError(f"{path}: dock_gateway_url needs gateway_trust_file, to check the gateway's dock receipts")
    if config.dock_interval_seconds < 1:
        raise ConfigError(f"{path}: dock_interval_seconds must be at least 1")
    return config
