"""The station and case server part of `make demo`: a real `liuhen server run` process on embedded defaults
(SQLite and a blob folder) and a real `liuhen gateway run` (liuhen/demo_gateway.py); the recorders dock at the
gateway, which verifies, spools and uploads everything over tus; then the footage is found, played with a Range
request, exported as a sealed evidence package that `liuhen verify` checks offline, and the server's
transparency log checked by `liuhen log monitor`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests

from hardware.keystore import read_private_key
from liuhen.demo_gateway import DemoGateway, dock, free_port
from protocol import signatures

GATEWAY = "GW-DEMO"
VKEY_LINE = "log verifier key (publish it):"
PASSWORD = "demo password, change me"
REASON = "demo: reviewing the patrol before the hearing"

Run = Callable[[list[str]], int]


def _public_key_file(private: Path) -> Path:
    pub = private.with_name(private.name + ".pub")
    pub.write_bytes(signatures.public_pem(read_private_key(private).public_key()))
    return pub


class DemoServer:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.config = out / "server.toml"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.vkey = ""

    def init(self) -> None:
        """`liuhen server init`, keeping the log verifier key it prints (what an operator publishes)."""
        self.out.mkdir(parents=True)
        self.config.write_text('[server]\nname = "demo-server"\ndata_dir = "data"\n', encoding="utf-8")
        self.liuhen_cli("server", "init", "--config", str(self.config))

    def liuhen_cli(self, *args: str, stdin: str | None = None) -> None:
        """A `liuhen` command in its own process (the server's commands set up logging of their own)."""
        done = subprocess.run([sys.executable, "-m", "liuhen", *args], input=stdin, text=True, capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"liuhen {' '.join(args)} failed: {done.stderr.strip()}")
        for line in done.stdout.splitlines():
            print(line)
            if line.startswith(VKEY_LINE):
                self.vkey = line.removeprefix(VKEY_LINE).strip()

    def admin(self, *args: str, stdin: str | None = None) -> None:
        self.liuhen_cli("admin", *args, "--config", str(self.config), stdin=stdin)

    def start(self) -> None:
        log = open(self.out / "server.log", "wb")  # noqa: SIM115 - the server process writes it until stopped
        self.proc = subprocess.Popen([sys.executable, "-m", "liuhen", "server", "run", "--config", str(self.config),
                                      "--port", str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                requests.get(f"{self.url}/api/openapi.json", timeout=1)
                print(f"server listening on {self.url} (log: {self.out / 'server.log'})")
                return
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not start; see {self.out / 'server.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _supervisor(url: str) -> requests.Session:
    session = requests.Session()
    r = session.post(f"{url}/api/session", json={"username": "sup.wang", "password": PASSWORD}, timeout=10)
    r.raise_for_status()
    return session


def retrieve(url: str, out: Path, device: str, vkey: str, liuhen: Run) -> tuple[int, int, int]:
    """Search, play a Range of one segment, export an evidence package and an MP4, verify the package
    offline and a changed copy of it; return the exit codes (package, changed package, log monitor)."""
    sup = _supervisor(url)
    found = sup.get(f"{url}/api/segments", params={"device": device, "order": "oldest"}, timeout=10).json()
    rows = found["segments"]
    print(f"search device={device}: {len(rows)} segments, "
          f"{rows[0]['start_ns']}..{rows[-1]['end_ns']} (UTC ns)")
    grant = sup.post(f"{url}/api/access", json={"action": "view", "segments": [rows[0]["id"]], "reason": REASON},
                     timeout=10).json()
    part = sup.get(url + grant["segments"][0]["url"], headers={"Range": "bytes=0-1023"}, timeout=10)
    print(f"view: audit record {grant['audit_id']} written first, then {part.status_code} "
          f"{part.headers['Content-Range']} ({len(part.content)} bytes)")
    clip = {"device": device, "from_ns": rows[0]["start_ns"], "to_ns": rows[-1]["end_ns"]}
    package = _export(sup, url, out / "evidence-package.zip", {"format": "package", "clip": clip})
    _export(sup, url, out / "clip.mp4", {"format": "mp4", "clip": clip})
    print(f"$ liuhen verify {package}")
    intact = liuhen(["verify", str(package)])
    changed = package.with_name("evidence-package-changed.zip")
    data = bytearray(package.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    print(f"$ liuhen verify {changed}   (one bit flipped)")
    tampered = liuhen(["verify", str(changed)])
    print(f"$ liuhen log monitor {url}/log --state {out / 'monitor.json'} --key {vkey}")
    monitored = liuhen(["log", "monitor", f"{url}/log", "--state", str(out / "monitor.json"), "--key", vkey])
    return intact, tampered, monitored


def _export(sup: requests.Session, url: str, path: Path, body: dict[str, object]) -> Path:
    made = sup.post(f"{url}/api/exports", json={**body, "reason": REASON}, timeout=120)
    made.raise_for_status()
    with sup.get(url + made.json()["url"], timeout=120, stream=True) as r:
        r.raise_for_status()
        with open(path, "wb") as f:
            for chunk in r.iter_content(1024 * 1024):
                f.write(chunk)
    print(f"export {body['format']}: {path} ({path.stat().st_size} bytes, audit record {made.json()['audit_id']})")
    return path


def run(out: Path, stores: dict[str, Path], keys: dict[str, Path], liuhen: Run) -> int:
    """The station and server demo over the recorders' stores (device -> store root, device -> private key)."""
    server = DemoServer(out / "server")
    server.init()
    for device, key in keys.items():
        server.admin("device", "enroll", "--id", device, "--key", str(_public_key_file(key)), "--unit", "U1")
    server.admin("user", "add", "--username", "sup.wang", "--role", "supervisor", "--unit", "U1",
                 "--password-stdin", stdin=PASSWORD + "\n")
    server.start()
    gateway = DemoGateway(out / "gateway", GATEWAY, server.url, "demo-server", len(stores))
    try:
        server.admin("gateway", "enroll", "--id", GATEWAY, "--key", str(gateway.init()))
        gateways = out / "gateways.json"  # what the recorders check dock receipts against
        server.admin("trust", "export", "--out", str(gateways))
        gateway.start()
        for bay, (device, store) in enumerate(stores.items()):
            docked = dock(out / "docked", device, store / device, keys[device], gateways, gateway.bay(bay))
            flagged = sum(r != "ok" for r in docked["results"].values())
            print(f"{device} docked at bay-{bay + 1}: {docked['offered']} manifests offered, "
                  f"{docked['files_sent']} files sent ({docked['bytes_sent']} bytes), {flagged} flagged, "
                  f"{docked['receipts']} signed dock receipts, {len(docked['freed'])} freed on the recorder")
        backlog = gateway.wait_uploaded()["backlog"]
        print(f"gateway backlog: {backlog['count']} segments left; everything uploaded over tus, each answered "
              f"with a signed server receipt the gateway verified before deleting its copy")
        return _summary(*retrieve(server.url, out / "server", "SIM-0001", server.vkey, liuhen))
    finally:
        gateway.stop()
        server.stop()


def _summary(intact: int, tampered: int, monitored: int) -> int:
    print(f"evidence package: exit {intact} (intact); changed copy: exit {tampered}; log monitor: exit {monitored}")
    return 0 if (intact, tampered, monitored) == (0, 1, 0) else 1
