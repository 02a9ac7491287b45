"""The `liuhen` command as a user runs it: keys, trust files, verify, exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from hardware.keystore import read_private_key
from protocol import signatures
from simulators.synthetic import typical_shift

ROOT = Path(__file__).resolve().parent.parent


def liuhen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "liuhen", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_keys_trust_record_and_verify_end_to_end(tmp_path: Path) -> None:
    r = liuhen("keys", "gen", "--out", "rec1.key", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE((tmp_path / "rec1.key").stat().st_mode) == 0o600
    assert liuhen("keys", "gen", "--out", "rec1.key", cwd=tmp_path).returncode == 2  # never overwrites
    r = liuhen("keys", "trust-add", "--trust", "trust.json", "--key", "rec1.key.pub",
               "--role", "device", "--owner", "REC-0001", cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    signer = signatures.KeySigner(read_private_key(tmp_path / "rec1.key"))
    typical_shift(tmp_path / "store", "REC-0001", signer)
    r = liuhen("verify", "store", "--keys", "trust.json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "REC-0001: INTACT" in r.stdout and "RESULT: intact" in r.stdout

    r = liuhen("keys", "revoke", "--trust", "trust.json", "--keyid", signer.keyid[:12], "--after-seq", "2",
               "--reason", "lost", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "revoked" in liuhen("keys", "list", "--trust", "trust.json", cwd=tmp_path).stdout
    r = liuhen("verify", "store", "--keys", "trust.json", "--json", cwd=tmp_path)
    assert r.returncode == 1
    report = json.loads(r.stdout)
    assert not report["intact"] and {f["code"] for f in report["devices"][0]["findings"]} >= {"key.revoked"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["verify", "nowhere", "--keys", "trust.json"], "no such file or folder"),
        (["verify", "empty", "--keys", "trust.json"], "no manifests"),
        (["verify", "empty", "--keys", "missing.json"], "cannot read trust file"),
        (["verify", "empty", "--keys", "bad.json"], "not JSON"),
        (["verify", "empty"], "required: --keys"),
        (["keys", "trust-add", "--trust", "t.json", "--key", "bad.json", "--role", "device", "--owner", "X"],
         "not a PEM public key"),
        (["keys", "revoke", "--trust", "trust.json", "--keyid", "abc"], "at least 8 hex digits"),
        (["keys", "trust-add", "--trust", "t.json", "--key", "k.pub", "--role", "device", "--owner", "X",
          "--valid-from", "2026-01-01"], "give a time zone"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.json").write_text("{nope")
    (tmp_path / "trust.json").write_text('{"liuhen_trust": 1, "keys": []}')
    liuhen("keys", "gen", "--out", "k", cwd=tmp_path)
    r = liuhen(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert message in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json", "empty", "k", "k.pub", "trust.json"]


def test_world_readable_key_is_refused(tmp_path: Path) -> None:
    liuhen("keys", "gen", "--out", "k", cwd=tmp_path)
    (tmp_path / "k").chmod(0o644)
    with pytest.raises(ValueError, match="chmod 600"):
        read_private_key(tmp_path / "k")


def test_help_lists_subcommands(tmp_path: Path) -> None:
    r = liuhen("--help", cwd=tmp_path)
    assert r.returncode == 0 and "verify" in r.stdout and "keys" in r.stdout
