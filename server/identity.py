"""The server's own key: it signs receipts, log records and evidence packages (envelopes) and the
log's checkpoints (C2SP signed notes). One Ed25519 key does both, so one published fingerprint
lets a reader check everything the server ever signed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol import signatures
from protocol.tlog.checkpoint import NoteSigner, VerifierKey
from protocol.trust import TrustedKey, trusted_key
from server.durable import fsync_dir


class IdentityError(Exception):
    pass


@dataclass(frozen=True)
class ServerIdentity:
    name: str
    origin: str
    signer: signatures.KeySigner
    note_signer: NoteSigner

    @property
    def keyid(self) -> str:
        return self.signer.keyid

    @property
    def vkey(self) -> VerifierKey:
        return self.note_signer.verifier

    def trusted_key(self) -> TrustedKey:
        return trusted_key(self.signer.public_key(), "server", self.name)


def create_key(path: Path) -> None:
    """Make a new server key file, readable by its owner only; never replace one."""
    key = ed25519.Ed25519PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise IdentityError(f"{path} already exists: refusing to replace the server key") from exc
    with os.fdopen(fd, "wb") as f:
        f.write(signatures.private_pem(key))
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)


def load_identity(path: Path, name: str, origin: str) -> ServerIdentity:
    try:
        if path.stat().st_mode & 0o077:
            raise IdentityError(f"{path} is readable by others: chmod 600 it")
        key = signatures.load_private_key(path.read_bytes())
    except FileNotFoundError as exc:
        raise IdentityError(f"no server key at {path}: run `liuhen server init` first") from exc
    except (OSError, ValueError) as exc:
        raise IdentityError(f"cannot read the server key {path}: {exc}") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise IdentityError(f"{path}: the server key must be Ed25519 (it also signs C2SP checkpoints)")
    return ServerIdentity(name, origin, signatures.KeySigner(key), NoteSigner(origin, key))
