"""Case server configuration, read from TOML (`[server]`); every setting has a documented default
(docs/server.md), so an empty file — or none — runs the embedded defaults: SQLite and a blob folder
under one data directory."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from protocol.fields import IDENTIFIER


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class ServerConfig:
    name: str = "liuhen-server"  # the server id in receipts and log records
    data_dir: Path = Path("liuhen-data")
    database: str = ""  # SQLAlchemy URL; empty: SQLite at <data_dir>/index.sqlite3
    host: str = "127.0.0.1"
    port: int = 8480
    log_origin: str = ""  # C2SP checkpoint origin; empty: "liuhen/<name>"
    key_file: Path | None = None  # Ed25519 PEM (0600); None: <data_dir>/server.key, made by `server init`
    retention_days: int = 183  # footage linked to no case is kept at least this long
    upload_max_bytes: int = 4 * 1024**3
    upload_expiry_hours: int = 72  # incomplete uploads are dropped after this; gateways keep their copy
    session_hours: int = 12
    orphan_grace_seconds: int = 3600  # a blob younger than this may belong to an ingest in flight
    workers: int = 8  # threads for database and disk work
    access_grant_hours: int = 2  # how long one stated reason lets a person fetch (seek in) footage
    export_hours: int = 24  # how long a built export waits under export_dir for its download

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.data_dir / 'index.sqlite3'}"

    @property
    def origin(self) -> str:
        return self.log_origin or f"liuhen/{self.name}"

    @property
    def key_path(self) -> Path:
        return self.key_file or self.data_dir / "server.key"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def upload_dir(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def export_dir(self) -> Path:
        return self.data_dir / "exports"


_PATHS = ("data_dir", "key_file")


def _coerce(name: str, value: Any, base: Path) -> Any:
    if name in _PATHS and value is not None:
        path = Path(value)
        return path if path.is_absolute() else base / path
    return value


def parse_config(doc: dict[str, Any], base: Path, where: str) -> ServerConfig:
    section = doc.get("server", {})
    known = {f.name: f for f in fields(ServerConfig)}
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown settings in [server]: {', '.join(unknown)}")
    for key, value in section.items():
        want = int if key in ("port", "retention_days", "upload_max_bytes", "upload_expiry_hours",
                              "session_hours", "orphan_grace_seconds", "workers", "access_grant_hours",
                              "export_hours") else str
        if not isinstance(value, want) or isinstance(value, bool):
            raise ConfigError(f"{where}: [server] {key} must be {'an integer' if want is int else 'a string'}")
    config = ServerConfig(**{k: _coerce(k, v, base) for k, v in section.items()})
    if "data_dir" not in section:
        config = replace(config, data_dir=base / config.data_dir)
    if not IDENTIFIER.fullmatch(config.name):
        raise ConfigError(f"{where}: [server] name {config.name!r} is not an identifier (letters, digits, . _ -)")
    for key in ("retention_days", "access_grant_hours", "export_hours"):
        if getattr(config, key) < 1:
            raise ConfigError(f"{where}: [server] {key} must be at least 1")
    if not 0 <= config.port < 65536:
        raise ConfigError(f"{where}: [server] port must be 0-65535 (0: any free port)")
    return config


def load_config(path: Path | None) -> ServerConfig:
    """The configuration in `path`, or the embedded defaults (relative to the working folder)."""
    if path is None:
        return parse_config({}, Path.cwd(), "embedded defaults")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return parse_config(doc, path.resolve().parent, str(path))
