"""A real `liuhen gateway run` for end-to-end tests: its config on free ports, start, kill, stop, and its
station API."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests

from gateway.config import load_config
from tests.server.harness import LIUHEN, free_port, liuhen


def write_gateway_config(folder: Path, gateway: str, server_url: str, server_id: str, bays: int, **dock: Any) -> Path:
    """Embedded defaults but for the ports (all free ones), the server, and quick trust refreshes."""
    first_port = _free_run(bays)
    dock_lines = [f"{key} = {value!r}" for key, value in {"reserve_bytes": 0, **dock}.items()]
    path = folder / "gateway.toml"
    path.write_text("\n".join([
        "[gateway]", f'id = "{gateway}"', f'data_dir = "{folder / "data"}"', "trust_refresh_s = 1",
        "[gateway.server]", f'url = "{server_url}"', f'id = "{server_id}"',
        "[gateway.upload]", "idle_poll_s = 0.5", "backoff_min_s = 0.2", "backoff_max_s = 2.0",
        "[gateway.dock]", f"count = {bays}", f"first_port = {first_port}", *dock_lines,
        "[gateway.station]", f"port = {free_port()}",
        "[gateway.mqtt]", "port = 0",
    ]) + "\n", encoding="utf-8")
    return path


def _free_run(count: int) -> int:
    """The first of `count` consecutive ports that are free now."""
    for _ in range(50):
        first = free_port()
        if first + count < 65536 and all(_free(first + i) for i in range(1, count)):
            return first
    raise AssertionError(f"no {count} consecutive free ports")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class GatewayProcess:
    def __init__(self, config: Path) -> None:
        self.config = config
        self.log_path = config.parent / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.settings = load_config(config)

    def init(self) -> Path:
        """Make the key; the public key file to enroll."""
        out = liuhen("gateway", "init", "--config", str(self.config)).stdout
        return Path(out.split("--key ")[1].split()[0])

    def bay_url(self, n: int) -> str:
        host, port = self.settings.bays.listen()[f"bay-{n}"]
        return f"http://{host}:{port}"

    def start(self) -> GatewayProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child process writes it until stopped
        self.proc = subprocess.Popen([*LIUHEN, "gateway", "run", "--config", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            if "gateway ready" in self.log_path.read_text(errors="replace"):
                return self
            time.sleep(0.05)
        raise AssertionError(f"gateway did not start:\n{self.log_path.read_text()}")

    def station(self) -> dict[str, Any]:
        station = self.settings.station
        r = requests.get(f"http://{station.host}:{station.port}/api/station", timeout=10)
        r.raise_for_status()
        return r.json()

    def wait_backlog_empty(self, timeout_s: float = 90.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            doc = self.station()
            if doc["backlog"]["count"] == 0:
                return doc
            time.sleep(0.2)
        raise AssertionError(f"backlog not empty after {timeout_s} s: {self.station()}\n"
                             f"{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
