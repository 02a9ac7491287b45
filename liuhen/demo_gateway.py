"""The station part of `make demo`: a real `liuhen gateway run` on embedded defaults (its own MQTT broker, a
spool under its data folder) with one bay per recorder; each recorder docks with `liuhen recorder dock`, is
freed by the gateway's signed dock receipts, and the gateway uploads everything to the case server."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

LIUHEN = [sys.executable, "-m", "liuhen"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DemoGateway:
    def __init__(self, out: Path, gateway: str, server_url: str, server_name: str, bays: int) -> None:
        self.out = out
        self.gateway = gateway
        self.config = out / "gateway.toml"
        self.bay_ports = [free_port() for _ in range(bays)]
        self.station = f"http://127.0.0.1:{free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None
        out.mkdir(parents=True)
        addresses = ", ".join(f'"127.0.0.1:{p}"' for p in self.bay_ports)
        self.config.write_text("\n".join([
            "[gateway]", f'id = "{gateway}"', 'data_dir = "data"',
            "[gateway.server]", f'url = "{server_url}"', f'id = "{server_name}"',
            "[gateway.upload]", "idle_poll_s = 0.5",
            "[gateway.dock]", f"addresses = [{addresses}]", "reserve_bytes = 0",
            "[gateway.station]", f"port = {self.station.rsplit(':', 1)[1]}",
            "[gateway.mqtt]", "port = 0",
        ]) + "\n", encoding="utf-8")

    def init(self) -> Path:
        """`liuhen gateway init`: the key; returns the public key file an administrator enrolls."""
        done = _liuhen("gateway", "init", "--config", str(self.config))
        print(done.stdout, end="")
        return Path(done.stdout.split("--key ")[1].split()[0])

    def start(self) -> None:
        log = open(self.out / "gateway.log", "wb")  # noqa: SIM115 - the gateway process writes it until stopped
        self.proc = subprocess.Popen([*LIUHEN, "gateway", "run", "--config", str(self.config)], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            if b"gateway ready" in (self.out / "gateway.log").read_bytes():
                print(f"gateway {self.gateway}: {len(self.bay_ports)} bays, station page {self.station}/ "
                      f"(log: {self.out / 'gateway.log'})")
                return
            time.sleep(0.1)
        raise RuntimeError(f"the gateway did not start; see {self.out / 'gateway.log'}")

    def bay(self, n: int) -> str:
        return f"http://127.0.0.1:{self.bay_ports[n]}"

    def status(self) -> dict[str, Any]:
        r = requests.get(f"{self.station}/api/station", timeout=10)
        r.raise_for_status()
        return r.json()

    def wait_uploaded(self, timeout_s: float = 120.0) -> dict[str, Any]:
        """Until the spool's backlog is empty: every segment uploaded and answered with a server receipt."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            doc = self.status()
            if doc["backlog"]["count"] == 0:
                return doc
            time.sleep(0.2)
        raise RuntimeError(f"the gateway's backlog did not empty; see {self.out / 'gateway.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def dock(out: Path, device: str, store: Path, key: Path, gateways: Path, bay_url: str) -> dict[str, Any]:
    """A stopped recorder docked at `bay_url` with `liuhen recorder dock`: its copy of the store (the original
    stays for the verify steps) is freed as the gateway's receipts come back."""
    root = out / device
    shutil.copytree(store, root / device)
    config = out / f"{device}.toml"
    config.write_text(f'[recorder]\ndevice = "{device}"\nstore = "{root}"\nkey_file = "{key.resolve()}"\n'
                      f'gateway_trust_file = "{gateways.resolve()}"\n', encoding="utf-8")
    return json.loads(_liuhen("recorder", "dock", "--config", str(config), "--gateway", bay_url, "--json").stdout)


def _liuhen(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([*LIUHEN, *args], text=True, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"liuhen {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done
