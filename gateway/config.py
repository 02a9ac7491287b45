"""Gateway configuration, read from TOML: `[gateway]` and its sub-sections `[gateway.server]`,
`[gateway.upload]`, `[gateway.dock]`, `[gateway.station]` and `[gateway.mqtt]`. Every setting has a documented
default (docs/gateway.md, "Configuration"), so an empty file — or none — runs the embedded defaults: a data
folder beside the file, 8 bays on 127.0.0.1, the server on 127.0.0.1:8480 and the embedded MQTT broker.

Each sub-section fills the settings class of the part it configures (the classes validate their values);
this module only reads the file, checks each value's type against the class and makes paths relative to the
file's folder, so a setting is declared once, where it is used.
"""

from __future__ import annotations

import tomllib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from gateway.dock import DockSettings
from gateway.identity import IdentityConfig, IdentityError
from gateway.server_link import LinkConfig
from gateway.station import StationConfigError, StationSettings
from gateway.station_mqtt import MqttConfigError, MqttSettings
from gateway.uploader import UploadConfig
from protocol.fields import IDENTIFIER

MAX_BAYS = 64


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class BaySettings:
    """The docking bays (`[gateway.dock]`, with the dock's own settings): bay N listens on host:first_port+N-1.
    In production each bay is its USB-Ethernet link's address; give `addresses` then, one "host:port" a bay."""

    count: int = 8
    host: str = "127.0.0.1"
    first_port: int = 8501
    addresses: tuple[str, ...] = ()

    def listen(self) -> dict[str, tuple[str, int]]:
        """Bay name -> (host, port)."""
        if self.addresses:
            return {f"bay-{i + 1}": _host_port(a) for i, a in enumerate(self.addresses)}
        return {f"bay-{i + 1}": (self.host, self.first_port + i) for i in range(self.count)}


@dataclass(frozen=True)
class GatewayConfig:
    gateway_id: str
    data_dir: Path
    key_file: Path
    trust_refresh_s: float  # how often the device trust list is fetched from the server
    server: LinkConfig
    upload: UploadConfig
    dock: DockSettings
    bays: BaySettings
    station: StationSettings
    mqtt: MqttSettings

    @property
    def identity(self) -> IdentityConfig:
        return IdentityConfig(self.gateway_id, self.key_file)

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def device_trust_file(self) -> Path:
        return self.data_dir / "device-trust.json"


# [gateway] itself; the sub-sections are the part's settings classes.
_TOP = {"id": str, "data_dir": Path, "key_file": Path, "trust_refresh_s": float}
_DEFAULTS: dict[str, Any] = {"id": "liuhen-gateway", "data_dir": Path("liuhen-gateway-data"), "key_file": None,
                             "trust_refresh_s": 300.0}
_SECTIONS = ("server", "upload", "dock", "station", "mqtt")
# [gateway.server] names its keys for the server, not for the link class.
_SERVER_KEYS = {"url": "server_url", "id": "server_id", "trust_file": "trust_file", "timeout_s": "timeout_s"}
_BAY_KEYS = frozenset(f.name for f in fields(BaySettings))


def parse_config(doc: dict[str, Any], base: Path, where: str) -> GatewayConfig:
    top = _table(doc, "gateway", where)
    _no_unknown(top, set(_TOP) | set(_SECTIONS), "[gateway]", where)
    values = {**_DEFAULTS, **{k: _typed(v, _TOP[k], f"[gateway] {k}", base, where) for k, v in top.items()
                              if k in _TOP}}
    if not IDENTIFIER.fullmatch(values["id"]):
        raise ConfigError(f"{where}: [gateway] id {values['id']!r} is not an identifier (letters, digits, . _ -)")
    if not values["trust_refresh_s"] > 0:
        raise ConfigError(f"{where}: [gateway] trust_refresh_s must be positive")
    data_dir = values["data_dir"] if values["data_dir"].is_absolute() else base / values["data_dir"]
    sub = {name: _table(top, name, where, f"[gateway.{name}]") for name in _SECTIONS}
    server = {_SERVER_KEYS.get(k, k): v for k, v in sub["server"].items()}
    _no_unknown(sub["server"], set(_SERVER_KEYS), "[gateway.server]", where)
    dock = {k: v for k, v in sub["dock"].items() if k not in _BAY_KEYS}
    bays = {k: v for k, v in sub["dock"].items() if k in _BAY_KEYS}
    try:
        config = GatewayConfig(
            gateway_id=values["id"], data_dir=data_dir, key_file=values["key_file"] or data_dir / "gateway.key",
            trust_refresh_s=values["trust_refresh_s"],
            server=_build(LinkConfig, server, "[gateway.server]", base, where),
            upload=_build(UploadConfig, sub["upload"], "[gateway.upload]", base, where),
            dock=_build(DockSettings, {**dock, "gateway": values["id"]}, "[gateway.dock]", base, where),
            bays=_build(BaySettings, bays, "[gateway.dock]", base, where),
            station=_build(StationSettings, sub["station"], "[gateway.station]", base, where),
            mqtt=_build(MqttSettings, sub["mqtt"], "[gateway.mqtt]", base, where))
    except (ValueError, IdentityError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    _check_bays(config.bays, where)
    return config


def load_config(path: Path | None) -> GatewayConfig:
    """The configuration in `path`, or the embedded defaults (relative to the working folder)."""
    if path is None:
        return parse_config({}, Path.cwd(), "embedded defaults")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(doc, path.resolve().parent, str(path))


def _table(doc: dict[str, Any], name: str, where: str, label: str | None = None) -> dict[str, Any]:
    table = doc.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: {label or name} must be a table")
    return table


def _no_unknown(table: dict[str, Any], known: set[str], label: str, where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown settings in {label}: {', '.join(unknown)}")


def _build(cls: type[Any], table: dict[str, Any], label: str, base: Path, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    _no_unknown(table, set(hints), label, where)
    try:
        return cls(**{k: _typed(v, hints[k], f"{label} {k}", base, where) for k, v in table.items()})
    except (ValueError, StationConfigError, MqttConfigError) as exc:
        raise ConfigError(f"{where}: {label}: {exc}") from None


def _typed(value: Any, hint: Any, label: str, base: Path, where: str) -> Any:
    """`value` as the settings class declares it (`hint`), or a ConfigError naming the setting."""
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for option in options:
        if option is type(None):
            continue
        if option is Path and isinstance(value, str):
            return Path(value) if Path(value).is_absolute() else base / value
        if option is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if typing.get_origin(option) is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        if option in (int, str, bool) and type(value) is option:
            return value
    names = " or ".join(_type_name(o) for o in options if o is not type(None))
    raise ConfigError(f"{where}: {label} must be {names}")


def _type_name(option: Any) -> str:
    if typing.get_origin(option) is tuple:
        return "a list of strings"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false",
            Path: "a path (string)"}.get(option, str(option))


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bay address {text!r} must be host:port")
    return host, int(port)


def _check_bays(bays: BaySettings, where: str) -> None:
    try:
        listen = bays.listen()
    except ValueError as exc:
        raise ConfigError(f"{where}: [gateway.dock] {exc}") from None
    if not 1 <= len(listen) <= MAX_BAYS:
        raise ConfigError(f"{where}: [gateway.dock] a gateway has 1-{MAX_BAYS} bays, not {len(listen)}")
    if any(not 0 < port < 65536 for _, port in listen.values()):
        raise ConfigError(f"{where}: [gateway.dock] bay ports must be 1-65535 (first_port + count - 1 included)")
    if len(set(listen.values())) != len(listen):
        raise ConfigError(f"{where}: [gateway.dock] two bays share an address")

