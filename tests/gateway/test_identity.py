"""The gateway's key: made private (0600) and never replaced, loaded only when private, and its public half is
exactly what `liuhen admin gateway enroll` takes, after which the gateway signs in to the server with it."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from gateway.identity import IdentityConfig, IdentityError, create_key, enroll_command, load_identity
from gateway.server_link import LinkConfig, ServerLink, SignInRefused
from protocol import signatures
from tests.server.harness import InProcessServer, liuhen


def test_a_new_key_is_private_and_loads_again(tmp_path: Path) -> None:
    config = IdentityConfig("GW-7", tmp_path / "gw7.key")
    made = create_key(config)
    assert stat.S_IMODE(config.key_file.stat().st_mode) == 0o600
    assert config.public_key_file == tmp_path / "gw7.key.pub"
    public = signatures.load_public_key(config.public_key_file.read_bytes())
    assert signatures.key_id(public) == made.keyid and made.public_pem == config.public_key_file.read_bytes()
    assert signatures.algorithm_of(public) == signatures.ED25519
    loaded = load_identity(config)
    assert (loaded.gateway_id, loaded.keyid) == ("GW-7", made.keyid)
    assert enroll_command(config).endswith(f"--id GW-7 --key {config.public_key_file}")


def test_a_key_is_never_replaced(tmp_path: Path) -> None:
    config = IdentityConfig("GW-7", tmp_path / "gw7.key")
    first = create_key(config)
    with pytest.raises(IdentityError, match="refusing to replace"):
        create_key(config)
    config.public_key_file.unlink()
    with pytest.raises(IdentityError, match="refusing to replace"):
        create_key(config)
    assert load_identity(config).keyid == first.keyid


@pytest.mark.parametrize(("content", "mode", "message"), [
    (None, 0o600, "no gateway key at"),
    (b"not a key", 0o600, "not an unencrypted PEM private key"),
    (signatures.private_pem(signatures.generate()), 0o644, "chmod 600"),
])
def test_an_unusable_key_file_is_refused_clearly(tmp_path: Path, content: bytes | None, mode: int,
                                                  message: str) -> None:
    path = tmp_path / "gw.key"
    if content is not None:
        path.write_bytes(content)
        path.chmod(mode)
    with pytest.raises(IdentityError, match=message):
        load_identity(IdentityConfig("GW-7", path))


def test_a_gateway_id_must_be_an_id() -> None:
    with pytest.raises(IdentityError, match="gateway id"):
        IdentityConfig("GW 7/../x")


def test_the_public_key_enrolls_with_the_admin_command_and_then_signs_in(tmp_path: Path) -> None:
    config = IdentityConfig("GW-7", tmp_path / "gw7.key")
    identity = create_key(config)
    with InProcessServer(tmp_path, f"sqlite:///{tmp_path / 'index.sqlite3'}") as server:
        link = ServerLink(LinkConfig(server_url=server.url, server_id="srv-test"), identity)
        with pytest.raises(SignInRefused, match=r"key\.unknown.*liuhen admin gateway enroll"):
            link.token()
        liuhen("admin", "gateway", "enroll", "--config", str(server.config_path), "--id", "GW-7", "--key",
               str(config.public_key_file))
        assert link.token()
        other = ServerLink(LinkConfig(server_url=server.url, server_id="another-server"), identity)
        with pytest.raises(SignInRefused, match=r"auth\.wrong_server"):
            other.token()
