"""End to end with real processes: simulated recorders record (`liuhen sim record`), dock at a real gateway
(`liuhen recorder dock` against `liuhen gateway run`), and everything reaches a real case server
(`liuhen server run`) with receipts; the recorders are freed, the spool ends empty, and an evidence package of
the server's copy verifies (`liuhen verify`)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from firmware.store import RecorderStore
from hardware.keystore import read_private_key
from protocol import signatures
from tests.gateway.gateway_process import GatewayProcess, write_gateway_config
from tests.server.harness import LIUHEN, ServerProcess, add_user, liuhen, sign_in, write_config

DEVICES = ("REC-E2E-1", "REC-E2E-2", "REC-E2E-3")
GATEWAY = "GW-E2E"
SERVER = "srv-test"  # tests/server/harness.py names its servers so
REASON = "end-to-end check of the evidence chain"


@dataclass
class Station:
    root: Path
    server: ServerProcess
    server_config: Path
    gateway: GatewayProcess
    gateway_trust: Path  # the recorders' list of gateways (and the server's trust list for `liuhen verify`)

    def store(self, device: str) -> RecorderStore:
        return RecorderStore(self.root / device / "store", device)

    def recorded(self, device: str) -> dict[int, str]:
        """seq -> manifest hash of what the recorder holds."""
        store = self.store(device)
        return {s: store.load(s).manifest.hash.hex() for s in store.stored_seqs()}

    def dock(self, device: str, bay: int) -> subprocess.CompletedProcess[str]:
        config = self.root / device / "dock.toml"
        sim = (self.root / device / "recorder.toml").read_text(encoding="utf-8")
        config.write_text(sim + f'gateway_trust_file = "{self.gateway_trust}"\n', encoding="utf-8")
        return subprocess.run([*LIUHEN, "recorder", "dock", "--config", str(config), "--gateway",
                               self.gateway.bay_url(bay), "--json"], capture_output=True, text=True, timeout=180)


def _record(root: Path, device: str) -> None:
    subprocess.run([*LIUHEN, "sim", "record", "--device", device, "--seconds", "14", "--out", str(root / device),
                    "--prerecord-seconds", "0"], check=True, capture_output=True, timeout=180)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    with ThreadPoolExecutor(len(DEVICES)) as pool:
        list(pool.map(lambda d: _record(tmp_path, d), DEVICES))
    (tmp_path / "server").mkdir()
    server_config = write_config(tmp_path / "server", f"sqlite:///{tmp_path / 'server' / 'index.sqlite3'}")
    server = ServerProcess(server_config)
    server.init()
    for device in DEVICES:
        key = read_private_key(tmp_path / device / "keys" / f"{device}.key")
        pub = tmp_path / device / "keys" / f"{device}.pub"
        pub.write_bytes(signatures.public_pem(key.public_key()))
        liuhen("admin", "device", "enroll", "--config", str(server_config), "--id", device, "--key", str(pub),
               "--unit", "U1")
    (tmp_path / "gateway").mkdir()
    gateway = GatewayProcess(write_gateway_config(tmp_path / "gateway", GATEWAY, server.url, SERVER, len(DEVICES)))
    liuhen("admin", "gateway", "enroll", "--config", str(server_config), "--id", GATEWAY, "--key",
           str(gateway.init()))
    trust = tmp_path / "trust.json"
    liuhen("admin", "trust", "export", "--config", str(server_config), "--out", str(trust))
    add_user(server_config, "sup.wang", "supervisor", unit="U1")
    with server.start(), gateway.start():
        yield Station(tmp_path, server, server_config, gateway, trust)


def test_three_recorders_record_dock_and_reach_the_server(station: Station, tmp_path: Path) -> None:
    recorded = {d: station.recorded(d) for d in DEVICES}
    assert all(len(r) >= 2 for r in recorded.values()), recorded  # a boot record and footage, at least

    with ThreadPoolExecutor(len(DEVICES)) as pool:
        docked = list(pool.map(station.dock, DEVICES, range(1, len(DEVICES) + 1)))
    for device, result in zip(DEVICES, docked, strict=True):
        assert result.returncode == 0, result.stdout + result.stderr
        summary = json.loads(result.stdout)
        assert summary["gateway"] == GATEWAY and sorted(summary["freed"]) == sorted(recorded[device]), summary
        assert station.recorded(device) == {}  # the recorder is freed

    status = station.gateway.wait_backlog_empty()
    assert status["backlog"] == {**status["backlog"], "count": 0, "media_bytes": 0, "flagged": 0, "held_back": 0}
    spool = station.gateway.settings.spool_dir
    assert [p for p in (spool / "media").rglob("*") if p.is_file()] == []
    assert [p for p in (spool / "incoming").rglob("*") if p.is_file()] == []

    supervisor = sign_in(station.server.url, "sup.wang")
    ids = []
    for device in DEVICES:
        r = supervisor.get(f"{station.server.url}/api/segments", timeout=30,
                           params={"device": device, "limit": 500, "include_records": "true"})
        r.raise_for_status()
        rows = r.json()["segments"]
        assert {row["seq"]: row["manifest"] for row in rows} == recorded[device]
        assert {row["status"] for row in rows} == {"stored"}
        ids += [row["id"] for row in rows]

    made = supervisor.post(f"{station.server.url}/api/exports",
                           json={"format": "package", "reason": REASON, "segments": ids}, timeout=120)
    assert made.status_code == 201, made.text
    package = tmp_path / "package.zip"
    _download(supervisor, station.server.url + made.json()["url"], package)
    verified = liuhen("verify", str(package), "--keys", str(station.gateway_trust), check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _download(session: requests.Session, url: str, path: Path) -> None:
    with session.get(url, stream=True, timeout=120) as r:
        r.raise_for_status()
        with open(path, "wb") as f:
            for chunk in r.iter_content(1 << 20):
                f.write(chunk)
