"""The gateway's own identity: its id and its key, which signs dock receipts and assignments and proves the
gateway to the case server (docs/protocol.md §8, gateway authentication).

`create_key` makes an Ed25519 key file readable by its owner only, and its public half beside it
(`<key file>.pub`, PEM), which an administrator enrolls on the server:

    liuhen admin gateway enroll --config server.toml --id GW-1 --key gateway.key.pub
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gateway.durable import atomic_write, create_private
from protocol import signatures
from protocol.fields import IDENTIFIER

PUBLIC_SUFFIX = ".pub"


class IdentityError(ValueError):
    """The gateway's key cannot be made or used; the message says why and what to do."""


@dataclass(frozen=True)
class IdentityConfig:
    """Settings of the gateway's identity (the `[gateway]` section's `id` and `key_file`)."""

    gateway_id: str = "liuhen-gateway"  # the id it is enrolled under (letters, digits, '.', '_', '-')
    key_file: Path = Path("gateway.key")  # private key, PEM, mode 0600; the public key is <key_file>.pub

    def __post_init__(self) -> None:
        if not IDENTIFIER.fullmatch(self.gateway_id):
            raise IdentityError(f"gateway id {self.gateway_id!r} must be 1-64 letters, digits, '.', '_' or '-', "
                                "starting with a letter or digit")

    @property
    def public_key_file(self) -> Path:
        return self.key_file.with_name(self.key_file.name + PUBLIC_SUFFIX)


@dataclass(frozen=True)
class GatewayIdentity:
    gateway_id: str
    signer: signatures.KeySigner

    @property
    def keyid(self) -> str:
        return self.signer.keyid

    @property
    def public_pem(self) -> bytes:
        return signatures.public_pem(self.signer.public_key())


def enroll_command(config: IdentityConfig) -> str:
    """What an administrator runs on the server to enroll this gateway's key."""
    return (f"liuhen admin gateway enroll --config server.toml --id {config.gateway_id} "
            f"--key {config.public_key_file}")


def create_key(config: IdentityConfig) -> GatewayIdentity:
    """Make a new Ed25519 key (mode 0600) and its public PEM beside it; never replace a key."""
    if config.public_key_file.exists():
        raise IdentityError(f"{config.public_key_file} already exists: refusing to replace a gateway key")
    key = signatures.generate(signatures.ED25519)
    try:
        create_private(config.key_file, signatures.private_pem(key))
    except FileExistsError:
        raise IdentityError(f"{config.key_file} already exists: refusing to replace a gateway key") from None
    except OSError as exc:
        raise IdentityError(f"cannot create {config.key_file}: {exc.strerror}") from None
    atomic_write(config.public_key_file, signatures.public_pem(key.public_key()))
    return GatewayIdentity(config.gateway_id, signatures.KeySigner(key))


def load_identity(config: IdentityConfig) -> GatewayIdentity:
    """The gateway's identity from its key file, which must be readable by its owner only."""
    path = config.key_file
    try:
        mode = path.stat().st_mode
        pem = path.read_bytes()
    except FileNotFoundError:
        raise IdentityError(f"no gateway key at {path}: make one first (it is made with mode 0600, and "
                            f"{config.public_key_file} beside it to enroll)") from None
    except OSError as exc:
        raise IdentityError(f"cannot read the gateway key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise IdentityError(f"{path} is readable by others: chmod 600 {path}")
    try:
        key = signatures.load_private_key(pem)
    except ValueError as exc:
        raise IdentityError(f"{path}: {exc}") from None
    return GatewayIdentity(config.gateway_id, signatures.KeySigner(key))
