"""Key and trust files on disk for the command-line tools."""

from __future__ import annotations

import os
from pathlib import Path

from hardware.keystore import KeyFileError
from protocol import signatures
from protocol.trust import TrustFileError, TrustList, parse_trust_list


def write_private_key(path: Path, key: signatures.PrivateKeyObject) -> None:
    """Create a new key file readable by its owner only; never overwrite one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} already exists: refusing to overwrite a key") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(signatures.private_pem(key))
        f.flush()
        os.fsync(f.fileno())


def read_public_key(path: Path) -> signatures.PublicKeyObject:
    try:
        return signatures.load_public_key(path.read_bytes())
    except OSError as exc:
        raise KeyFileError(f"cannot read {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise KeyFileError(f"{path}: {exc}") from exc


def read_trust(path: Path) -> TrustList:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"cannot read trust file {path}: {exc.strerror}") from exc
    try:
        return parse_trust_list(data)
    except TrustFileError as exc:
        raise KeyFileError(f"{path}: {exc}") from exc


def write_trust(path: Path, trust: TrustList) -> None:
    """Replace the trust file atomically so a crash never leaves half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(trust.to_bytes())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
