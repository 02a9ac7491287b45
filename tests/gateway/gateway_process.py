"""A real `liuhen gateway run` for end-to-end tests: its config on free ports, start, kill, stop, and its
station API."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from gateway.config import load_config
from tests.server.harness import LIUHEN, ChildProcess, liuhen


def write_gateway_config(folder: Path, gateway: str, server_url: str, server_id: str, bays: int, **dock: Any) -> Path:
    """Embedded defaults but for the ports, the server, and quick trust refreshes. The bays, the station and the
    broker take one run of free ports (`_free_run`): fixed, so a restarted gateway listens where it did, and
    distinct, so the broker never takes a bay's port (as its port 0 might while a killed gateway's bays are down)."""
    first_port = _free_run(bays + 2)
    dock_lines = [f"{key} = {value!r}" for key, value in {"reserve_bytes": 0, **dock}.items()]
    path = folder / "gateway.toml"
    path.write_text("\n".join([
        "[gateway]", f'id = "{gateway}"', f'data_dir = "{folder / "data"}"', "trust_refresh_s = 1",
        "[gateway.server]", f'url = "{server_url}"', f'id = "{server_id}"',
        "[gateway.upload]", "idle_poll_s = 0.5", "backoff_min_s = 0.2", "backoff_max_s = 2.0",
        "[gateway.dock]", f"count = {bays}", f"first_port = {first_port}", *dock_lines,
        "[gateway.station]", f"port = {first_port + bays}",
        "[gateway.mqtt]", f"port = {first_port + bays + 1}",
    ]) + "\n", encoding="utf-8")
    return path


def _free_run(count: int) -> int:
    """The first of `count` consecutive ports that are free now, below the range the system picks the local
    ports of outgoing connections from: while a gateway is down between a kill and its restart, a connection
    the test makes meanwhile could otherwise take one of its ports."""
    below = _outgoing_ports_start()
    for _ in range(100):
        first = random.randrange(10_000, below - count)
        if all(_free(first + i) for i in range(count)):
            return first
    raise AssertionError(f"no {count} consecutive free ports below {below}")


def _outgoing_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class GatewayProcess(ChildProcess):
    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.parent / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._run_starts_at = 0
        self.settings = load_config(config)

    def init(self) -> Path:
        """Make the key; the public key file to enroll."""
        out = liuhen("gateway", "init", "--config", str(self.config)).stdout
        return Path(out.split("--key ")[1].split()[0])

    def set_dock(self, **dock: Any) -> None:
        """Change `[gateway.dock]` settings that the config names already; they hold from the next start."""
        lines = self.config.read_text(encoding="utf-8").splitlines()
        for key, value in dock.items():
            at = next(i for i, line in enumerate(lines) if line.startswith(f"{key} = "))
            lines[at] = f"{key} = {value!r}"
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        self.settings = load_config(self.config)

    def bay_url(self, n: int) -> str:
        host, port = self.settings.bays.listen()[f"bay-{n}"]
        return f"http://{host}:{port}"

    def start(self) -> GatewayProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process writes it until stopped
        self._run_starts_at = log.tell()  # the log is appended to across restarts: only this run's lines count
        self.proc = subprocess.Popen([*LIUHEN, "gateway", "run", "--config", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}:\n{self.run_log()}")
            if "gateway ready" in self.run_log():
                return self
            time.sleep(0.05)
        raise AssertionError(f"gateway did not start:\n{self.run_log()}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def run_log(self) -> str:
        """What the current (or last) run wrote to the log."""
        with open(self.log_path, "rb") as f:
            f.seek(self._run_starts_at)
            return f.read().decode(errors="replace")

    def station(self) -> dict[str, Any]:
        station = self.settings.station
        r = requests.get(f"http://{station.host}:{station.port}/api/station", timeout=10)
        r.raise_for_status()
        return r.json()

    def wait_station(self, condition: Callable[[dict[str, Any]], bool], timeout_s: float = 30.0) -> dict[str, Any]:
        """The station API's answer once `condition` holds for it."""
        deadline = time.monotonic() + timeout_s
        while not condition(doc := self.station()):
            if time.monotonic() > deadline:
                raise AssertionError(f"the station never showed it in {timeout_s} s: {doc}\n"
                                     f"{self.log_path.read_text()[-4000:]}")
            time.sleep(0.2)
        return doc

    def wait_backlog_empty(self, timeout_s: float = 90.0) -> dict[str, Any]:
        return self.wait_station(lambda doc: doc["backlog"]["count"] == 0, timeout_s)

