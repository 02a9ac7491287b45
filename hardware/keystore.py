"""Private keys in files: the software stand-in for a secure element."""

from __future__ import annotations

import stat
from pathlib import Path

from protocol import signatures


class KeyFileError(ValueError):
    pass


def read_private_key(path: Path) -> signatures.PrivateKeyObject:
    """Load a private key, refusing one that others may read (as ssh does)."""
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"key file {path} is accessible to others (mode {stat.filemode(mode)}); chmod 600 it")
    try:
        return signatures.load_private_key(data)
    except ValueError as exc:
        raise KeyFileError(f"{path}: {exc}") from exc
