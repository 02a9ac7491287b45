"""A station of real processes for end-to-end tests: a case server (`liuhen server run`), a docking gateway
(`liuhen gateway run`) enrolled on it, and recorders enrolled on it that dock with `liuhen recorder dock`;
and what a test reads back: what the server holds, its quarantine, its index.

    station = E2EStation(tmp_path, bays=3)
    station.add_rig_recorder("REC-1", recordings)        # or add_sim_recorder: `liuhen sim record`
    with station.running():
        result = station.dock("REC-1", bay=1)
        station.gateway.wait_backlog_empty()
        assert station.on_server("REC-1") == station.recorders["REC-1"].recorded
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select

from firmware.store import RecorderStore
from hardware.keystore import read_private_key
from protocol import signatures
from server.app import open_services
from server.cli import config_or_exit
from server.schema import log_entries, segments
from tests.gateway.dock_rig import Recordings
from tests.gateway.gateway_process import GatewayProcess, write_gateway_config
from tests.server.harness import LIUHEN, ServerProcess, add_user, sign_in, write_config

SERVER = "srv-test"  # tests/server/harness.py names its servers so
GATEWAY = "GW-E2E"
UNIT = "U1"
ADMIN = "admin.li"
SUPERVISOR = "sup.wang"


@dataclass
class Recorder:
    """A stopped recorder as `liuhen recorder dock` sees it: its configuration (device, store, key file, the
    gateways' trust list) and the public half of its key, to enroll."""

    device: str
    config: Path
    store_root: Path
    public_pem: bytes
    recorded: dict[int, str] = field(default_factory=dict)  # seq -> manifest hash, when the station started

    def store(self) -> RecorderStore:
        return RecorderStore(self.store_root, self.device)

    def holds(self) -> dict[int, str]:
        """seq -> manifest hash of what the recorder holds now."""
        store = self.store()
        return {s: store.load(s).manifest.hash.hex() for s in store.stored_seqs()}

    def media_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.store().dir.glob("*.mp4"))


@dataclass(frozen=True)
class Docked:
    """What one `liuhen recorder dock --json` run said."""

    returncode: int
    summary: dict[str, Any] | None  # its JSON summary; None when it printed none (a usage error)
    output: str

    @classmethod
    def of(cls, returncode: int, stdout: str, stderr: str) -> Docked:
        try:
            summary = json.loads(stdout)
        except ValueError:
            summary = None
        return cls(returncode, summary, stdout + stderr)


class E2EStation:
    """The server, the gateway and the recorders of one test, all under `root`."""

    def __init__(self, root: Path, bays: int, **dock: Any) -> None:
        self.root = root
        self.gateway_trust = root / "trust.json"  # every enrolled key: the recorders' gateways, `liuhen verify`'s
        self.recorders: dict[str, Recorder] = {}
        (root / "server").mkdir(parents=True)
        self.server_config = write_config(root / "server", f"sqlite:///{root / 'server' / 'index.sqlite3'}")
        self.server = ServerProcess(self.server_config)
        (root / "gateway").mkdir()
        self.gateway = GatewayProcess(write_gateway_config(root / "gateway", GATEWAY, self.server.url, SERVER, bays,
                                                           **dock))
        self._sessions: dict[str, requests.Session] = {}

    # -- recorders --------------------------------------------------------------------------------------

    def add_sim_recorder(self, device: str, seconds: int = 14) -> Recorder:
        """A recorder that `liuhen sim record` ran for `seconds` (a real recorder process, simulated hardware)."""
        out = self.root / device
        subprocess.run([*LIUHEN, "sim", "record", "--device", device, "--seconds", str(seconds), "--out", str(out),
                        "--prerecord-seconds", "0"], check=True, capture_output=True, timeout=180)
        config = out / "dock.toml"
        sim = (out / "recorder.toml").read_text(encoding="utf-8")
        config.write_text(sim + f'gateway_trust_file = "{self.gateway_trust}"\n', encoding="utf-8")
        key = read_private_key(out / "keys" / f"{device}.key")
        return self._add(Recorder(device, config, out / "store", signatures.public_pem(key.public_key())))

    def add_rig_recorder(self, device: str, recordings: Recordings, until_s: float = 11.5) -> Recorder:
        """A recorder holding a copy of dock_rig's recording of `device` (fast: recorded once per session)."""
        template, signer = recordings.get(device, until_s)
        folder = self.root / device
        shutil.copytree(template, folder / "store")
        key = folder / f"{device}.key"
        with open(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as f:
            f.write(recordings.private_pem(device))
        config = folder / "recorder.toml"
        config.write_text("\n".join([
            "[recorder]", f'device = "{device}"', f'store = "{folder / "store"}"', f'key_file = "{key}"',
            f'gateway_trust_file = "{self.gateway_trust}"']) + "\n", encoding="utf-8")
        return self._add(Recorder(device, config, folder / "store", signatures.public_pem(signer.public_key())))

    def _add(self, recorder: Recorder) -> Recorder:
        self.recorders[recorder.device] = recorder
        return recorder

    # -- the processes ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[E2EStation]:
        """Set up and start the server, enroll the gateway, the recorders and the people, start the gateway;
        stop both on the way out."""
        with ThreadPoolExecutor(2) as pool:
            server_init = pool.submit(self.server.init)
            gateway_key = self.gateway.init()
            server_init.result()
        add_user(self.server_config, ADMIN, "administrator")
        with self.server.start():
            admin = self.session(ADMIN)
            _created(admin.post(f"{self.server.url}/api/gateways", timeout=30,
                                json={"id": GATEWAY, "public_key": gateway_key.read_text(encoding="ascii")}))
            for r in self.recorders.values():
                _created(admin.post(f"{self.server.url}/api/devices", timeout=30,
                                    json={"id": r.device, "public_key": r.public_pem.decode("ascii"), "unit": UNIT}))
                r.recorded = r.holds()
            _created(admin.post(f"{self.server.url}/api/users", timeout=30,
                                json={"username": SUPERVISOR, "password": "correct horse battery",
                                      "role": "supervisor", "unit": UNIT}))
            trust = requests.get(f"{self.server.url}/api/trust", timeout=30)
            trust.raise_for_status()
            self.gateway_trust.write_bytes(trust.content)
            with self.gateway.start():
                yield self

    def session(self, username: str) -> requests.Session:
        """Signed in as `username`, once: tokens are kept in the server's index, so they outlast a restart."""
        if username not in self._sessions:
            self._sessions[username] = sign_in(self.server.url, username)
        return self._sessions[username]

    # -- docking ----------------------------------------------------------------------------------------

    def dock_command(self, device: str, bay: int) -> list[str]:
        return [*LIUHEN, "recorder", "dock", "--config", str(self.recorders[device].config), "--gateway",
                self.gateway.bay_url(bay), "--json"]

    def dock(self, device: str, bay: int) -> Docked:
        """`liuhen recorder dock` of the recorder at bay `bay`, to its end."""
        r = subprocess.run(self.dock_command(device, bay), capture_output=True, text=True, timeout=180)
        return Docked.of(r.returncode, r.stdout, r.stderr)

    def dock_all(self, devices: list[str]) -> list[Docked]:
        """Every recorder at once, the n-th at bay n."""
        with ThreadPoolExecutor(len(devices)) as pool:
            return list(pool.map(self.dock, devices, range(1, len(devices) + 1)))

    def spool_leftovers(self) -> list[Path]:
        """Files left in the gateway's spool, media or partly received; none once everything is uploaded."""
        spool = self.gateway.settings.spool_dir
        return [p for folder in ("media", "incoming") for p in (spool / folder).rglob("*") if p.is_file()]

    # -- what reached the server ------------------------------------------------------------------------

    def on_server(self, device: str) -> dict[int, str]:
        """seq -> manifest hash of everything the server holds of `device`, stored or quarantined."""
        return {row["seq"]: row["manifest"] for row in self.server_rows(device)}

    def server_rows(self, device: str) -> list[dict[str, Any]]:
        """The server's search results for `device`, records included, as a supervisor of its unit sees them."""
        rows: list[dict[str, Any]] = []
        params: dict[str, Any] = {"device": device, "limit": 500, "include_records": "true", "order": "oldest"}
        while True:
            r = self.session(SUPERVISOR).get(f"{self.server.url}/api/segments", params=params, timeout=30)
            r.raise_for_status()
            page = r.json()
            rows += page["segments"]
            if not page["next"]:
                return rows
            params["next"] = page["next"]

    def quarantine(self) -> list[dict[str, Any]]:
        r = self.session(SUPERVISOR).get(f"{self.server.url}/api/quarantine", params={"limit": 1000}, timeout=30)
        r.raise_for_status()
        quarantined: list[dict[str, Any]] = r.json()["segments"]
        return quarantined

    def index_counts(self) -> tuple[Counter[str], Counter[bytes]]:
        """From the server's own index, read as its admin commands do (once the server stopped): how many
        segment rows name each manifest hash, and how many log entries hold each manifest envelope."""
        services = open_services(config_or_exit(self.server_config))
        try:
            with services.db.read() as conn:
                rows = Counter(conn.execute(select(segments.c.manifest)).scalars())
                logged = Counter(conn.execute(select(log_entries.c.entry)
                                              .where(log_entries.c.kind == "manifest")).scalars())
        finally:
            services.db.close()
        return rows, logged


def _created(r: requests.Response) -> None:
    assert r.status_code == 201, f"{r.request.method} {r.url}: {r.status_code} {r.text}"
