"""A station for dock tests: recorders with real recorded footage, the keys and trust files that tie them
to a gateway, and the gateway's dock running on real sockets (in a thread of the test process, or as its
own process for the tests that kill it: tests/gateway/dock_proc.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from firmware.config import RecorderConfig
from firmware.dock_client import DockClient
from firmware.recorder import Recorder
from firmware.store import RecorderStore
from gateway.bays import BayProgress, Bays
from gateway.device_trust import DeviceTrust
from gateway.dock import Assignments, Dock, DockSettings, start_bays, stop_bays
from gateway.spool import Spool
from hardware.media import EncodedPacket, StreamInfo
from hardware.storage import Storage
from protocol import signatures
from protocol.trust import Revocation, TrustList, trusted_key
from tests.firmware.media_fixture import make_packets
from tests.firmware.test_recorder import PacketSource
from tests.server.harness import free_port

NS = 1_000_000_000
GATEWAY = "GW-STATION-01"
Media = tuple[list[StreamInfo], list[EncodedPacket]]


def record(root: Path, device: str, signer: signatures.Signer, media: Media, *, until_s: float,
           presses: dict[float, str], segment_seconds: int = 2, wall_ns: int = 1_764_000_000 * NS) -> RecorderStore:
    """A real recorder's store: the recorder application (booted at `wall_ns`), fed real H.264/AAC packets
    in capture order, with record/mark presses at the given seconds, then switched off."""
    now = [0]
    config = RecorderConfig(device=device, store=root, segment_seconds=segment_seconds, prerecord_seconds=0)
    source = PacketSource(media[0], list(media[1]))
    rec = Recorder(config, RecorderStore(root, device), signer, source, storage=Storage(root),
                   monotonic_ns=lambda: now[0], wall_ns=lambda: wall_ns + now[0])
    rec.boot()
    pending = dict(sorted(presses.items()))
    while source.packets and source.packets[0].capture_ns < until_s * NS:
        packet = source.read()
        assert packet is not None
        now[0] = packet.capture_ns
        for at in [t for t in pending if t * NS <= packet.capture_ns]:
            {"record": rec.toggle_recording, "mark": rec.mark}[pending.pop(at)](int(at * NS))
        rec.handle_packet(packet)
    rec.shutdown()
    return rec.store


@dataclass
class Unit:
    """One recorder: its key and its store."""

    device: str
    signer: signatures.KeySigner
    store: RecorderStore

    def pending_seqs(self) -> list[int]:
        return [p.seq for p in self.store.pending()]

    def stored_seqs(self) -> list[int]:
        return self.store.stored_seqs()


class Station:
    """The gateway's key, the device trust file the dock reads, the gateway trust list recorders hold."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        key = signatures.generate()
        self.gateway_signer = signatures.KeySigner(key)
        self.devices = TrustList()
        self.gateways = TrustList([trusted_key(self.gateway_signer.public_key(), "gateway", GATEWAY)])
        self.trust_path = root / "trust.json"
        self.key_path = root / "gateway.key"
        self.key_path.write_bytes(signatures.private_pem(key))
        os.chmod(self.key_path, 0o600)
        self.save_trust()

    def save_trust(self) -> None:
        self.trust_path.write_bytes(self.devices.to_bytes())

    def unit(self, device: str, template: Path, signer: signatures.KeySigner, *, enroll: bool = True) -> Unit:
        """A recorder whose store is a copy of a recording made with `signer`."""
        root = self.root / "recorders" / device
        shutil.copytree(template, root)
        if enroll:
            self.devices.add(trusted_key(signer.public_key(), "device", device))
            self.save_trust()
        return Unit(device, signer, RecorderStore(root, device))

    def revoke(self, unit: Unit) -> None:
        self.devices.revoke(unit.signer.keyid, Revocation(at_ns=1_700_000_000 * NS, reason="lost"))
        self.save_trust()

    def client(self, unit: Unit, url: str, **options: Any) -> DockClient:
        options.setdefault("sleep", lambda _s: None)
        return DockClient(unit.store, unit.signer, self.gateways, url, **options)


class DockThread:
    """The gateway's dock on real sockets (one port per bay on 127.0.0.1), its event loop in a thread."""

    def __init__(self, station: Station, bays: list[str], spool_root: Path, **settings: Any) -> None:
        free_bytes: Callable[[], int] | None = settings.pop("free_bytes", None)
        assignments: Assignments | None = settings.pop("assignments", None)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.spool = Spool(spool_root)
        self.bays = Bays(bays, time.time_ns, time.monotonic_ns)
        self.dock = Dock(DockSettings(GATEWAY, **{"reserve_bytes": 0, **settings}), self.spool,
                         station.gateway_signer, DeviceTrust(station.trust_path), self.bays, free_bytes=free_bytes,
                         assignments=assignments)
        self.ports = {bay: free_port() for bay in bays}
        self.runners = self.call(start_bays(self.dock, {b: ("127.0.0.1", p) for b, p in self.ports.items()}))

    def url(self, bay: str) -> str:
        return f"http://127.0.0.1:{self.ports[bay]}"

    def call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def snapshot(self) -> list[BayProgress]:
        future: Future[list[BayProgress]] = Future()
        self.loop.call_soon_threadsafe(lambda: future.set_result(self.bays.snapshot()))
        return future.result(timeout=10)

    def progress(self, bay: str) -> BayProgress:
        return next(p for p in self.snapshot() if p.bay == bay)

    def stop(self) -> None:
        self.call(stop_bays(self.dock, self.runners))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.spool.close()

    def __enter__(self) -> DockThread:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class DockProcess:
    """The dock as its own process (tests/gateway/dock_proc.py), for the tests that SIGKILL it."""

    def __init__(self, station: Station, spool_root: Path, bay_port: int) -> None:
        self.args = [sys.executable, "-m", "tests.gateway.dock_proc", "--spool", str(spool_root), "--key",
                     str(station.key_path), "--trust", str(station.trust_path), "--gateway", GATEWAY, "--port",
                     str(bay_port)]
        self.url = f"http://127.0.0.1:{bay_port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> DockProcess:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("ready"), f"the dock process said {line!r}"
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


class Recordings:
    """Recordings made once per test session and device, copied into each test's recorders."""

    _shared: Recordings | None = None

    def __init__(self, root: Path, media: Media) -> None:
        self.root = root
        self.media = media
        self._made: dict[tuple[str, float], tuple[Path, signatures.KeySigner]] = {}
        self._keys: dict[str, signatures.PrivateKeyObject] = {}

    @classmethod
    def shared(cls, tmp_path_factory: pytest.TempPathFactory) -> Recordings:
        """One set for every dock test module of the session (12 s of simulated camera, encoded once)."""
        if cls._shared is None:
            cls._shared = cls(tmp_path_factory.mktemp("recordings"), make_packets(12.0))
        return cls._shared

    def get(self, device: str, until_s: float = 11.5) -> tuple[Path, signatures.KeySigner]:
        """A store of `device`: boot, recording from 0.5 s (a mark at 5 s) to `until_s` - 0.5 s, 2-s segments."""
        key = (device, until_s)
        if key not in self._made:
            signer = signatures.KeySigner(self._keys.setdefault(device, signatures.generate()))
            root = self.root / f"{device}-{until_s}"
            record(root, device, signer, self.media, until_s=until_s,
                   presses={0.5: "record", 5.0: "mark", until_s - 0.5: "record"})
            self._made[key] = (root, signer)
        return self._made[key]

    def private_pem(self, device: str) -> bytes:
        return signatures.private_pem(self._keys[device])


class _CutBody:
    """A file's bytes as requests reads them, until `after` bytes: then `cut()` runs and the link drops."""

    def __init__(self, inner: Any, length: int, after: int, cut: Callable[[], None]) -> None:
        self.inner, self.length, self.after, self.cut, self.sent = inner, length, after, cut, 0

    def __len__(self) -> int:
        return self.length

    def read(self, n: int = -1) -> bytes:
        if self.sent >= self.after:
            self.cut()
            raise ConnectionResetError("the dock link dropped")
        data = self.inner.read(min(n, self.after - self.sent) if n > 0 else self.after - self.sent)
        self.sent += len(data)
        return data


class CuttingSession(requests.Session):
    """An HTTP session whose link drops in the middle of files: `cuts` maps the number of a PUT (1 for the
    first one sent, retries counted) to the bytes after which it drops, and `cut(n)` runs at that instant
    (the test's chance to kill the gateway). `before` names requests (method and path start, e.g.
    "POST /dock/receipts") before whose first occurrence `cut(0)` runs."""

    def __init__(self, cuts: dict[int, int], cut: Callable[[int], None] = lambda _n: None,
                 before: Iterable[str] = ()) -> None:
        super().__init__()
        self.cuts, self.cut, self.before, self.puts = dict(cuts), cut, set(before), 0

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        path = urlsplit(str(url)).path
        step = next((b for b in self.before if f"{method} {path}".startswith(b)), None)
        if step is not None:
            self.before.discard(step)
            self.cut(0)
        if method == "PUT":
            self.puts += 1
            after = self.cuts.pop(self.puts, None)
            if after is not None:
                length = int(kwargs["headers"]["Content-Length"])
                kwargs["data"] = _CutBody(kwargs["data"], length, min(after, length), lambda: self.cut(after))
        return super().request(method, url, *args, **kwargs)


def partial_reaches(spool_root: Path, device: str, size: int, timeout_s: float = 30.0) -> Callable[[], None]:
    """Waits until the gateway has written `size` bytes of some file of `device` (bytes the gateway has not
    read off the link yet are lost when it drops: aiohttp discards them)."""

    def wait() -> None:
        deadline = time.monotonic() + timeout_s
        folder = spool_root / "incoming" / device
        while not any(p.stat().st_size >= size for p in folder.glob("*.part")):
            assert time.monotonic() < deadline, f"the gateway never held {size} bytes of a file"
            time.sleep(0.01)

    return wait


# Fixtures the dock tests share; a test module takes them with `recordings = dock_rig.recordings`.
@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Recordings:
    return Recordings.shared(tmp_path_factory)


@pytest.fixture
def station(tmp_path: Path) -> Station:
    return Station(tmp_path / "station")
