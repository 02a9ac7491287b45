"""Benchmark of the docking gateway's dock.

Figures:
- `gateway_dock_vs_dd`: 25 recorders docked at once push their footage over loopback into a real
  `liuhen gateway run` (25 bays, one port each, the dock's default settings; no case server answers, so the
  footage stays spooled while the uploader waits). Each recorder is a real DockClient
  (firmware/dock_client.py) over a RecorderStore, in a process of its own: hello, the signed session, its pending
  manifests, then every file PUT in the gateway's order; the gateway verifies each manifest's signature and
  chain, hashes each file as it arrives, fsyncs it into the spool and commits its row, then signs dock receipts,
  which the recorder verifies and keeps before it frees its footage. The footage is a chain per recorder
  (simulators/synthetic.py: real keys, signed manifests, a boot record, one marked segment) of 10 s segments of
  4.5-5.5 MB (a 4 Mbit/s recorder) of random bytes, about 2.1 GB in all; making it is not timed. Timed: from the
  moment all 25 start until the last one has freed its footage. Baseline in the same run, before each round:
  `dd if=SRC of=DST bs=1M conv=fdatasync` of the same bytes, one dd per recorder, 25 at once, into the spool's
  folder (see `dd_baseline` for why). Three rounds, each after a baseline, and one baseline more at the end;
  ratio of the best baseline to the best round, target >= 0.8.
- `gateway_peak_rss`: the gateway process's peak resident memory (VmHWM, read at the end of each round), the
  largest over every round, including one more round in which each recorder holds one 200 MB segment: the dock
  holds at most two chunks per bay, so its memory must not follow file size. Target <= 150 MB.

Printed for context: the same bytes by dd one recorder after another (a single writer); the CPU seconds of the
gateway (by thread) and of the recorders; per-bay fairness (the spread of the recorders' finish times); the
rate of the large-file round against its own dd.

Usage: python bench/gateway.py [--quick] [--mb 2100] [--rounds 3] [--large-mb 200] [--workdir DIR] [--keep]
--quick: about 250 MB a round, 2 rounds, a 40 MB large-file round: a one-minute smoke run.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

# This script is named after the package it measures: keep its own folder off the import path so that `gateway`
# is the package, not this file, and put the repository first so that every package is this tree's.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import requests  # noqa: E402

from firmware.dock_client import DockClient  # noqa: E402
from firmware.store import RecorderStore  # noqa: E402
from gateway.spool import Spool  # noqa: E402
from protocol import signatures  # noqa: E402
from protocol.trust import TrustList, trusted_key  # noqa: E402
from simulators.synthetic import SyntheticDevice  # noqa: E402

RATIO_TARGET = 0.8
RSS_TARGET_MB = 150
RECORDERS = 25
GATEWAY = "GW-BENCH-01"
SEGMENT_BYTES = 5_000_000  # 10 s at 4 Mbit/s
SEGMENT_SPREAD = 500_000  # a variable bit rate: each segment 4.5-5.5 MB
MB = 1_000_000
SEND_BLOCK = 1 << 20  # the recorders' socket writes (see _link)


def say(text: str) -> None:
    print(text, flush=True)


def result_ratio(name: str, ratio: float, target: float) -> str:
    return f"RESULT {name} ratio={ratio:.3f} target={target} {'PASS' if ratio >= target else 'FAIL'}"


def result_mb(name: str, value: float, target: float) -> str:
    return f"RESULT {name} value={value:.1f} unit=MB target={target:g} {'PASS' if value <= target else 'FAIL'}"


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports (held open together so that none is handed out twice)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


# -- footage ------------------------------------------------------------------------------------------------------


@dataclass
class Recording:
    """One recorder's footage, made once and docked in every round from a fresh store of hard links."""

    device: str
    signer: signatures.KeySigner
    template: Path  # a recorder store root: <template>/<device>/<seq>.manifest, <seq>.bin
    source: Path  # all its media bytes in one file: the dd baseline's input
    media_bytes: int
    files: int  # segments with media
    manifests: int  # with the boot record


@dataclass
class Footage:
    name: str
    recordings: list[Recording]

    @property
    def media_bytes(self) -> int:
        return sum(r.media_bytes for r in self.recordings)

    @property
    def files(self) -> int:
        return sum(r.files for r in self.recordings)


def _dd_source(dev: SyntheticDevice, path: Path) -> None:
    """All of a recorder's media bytes in one file at `path` (its one file itself, if it has one)."""
    names = [m.media["name"] for m in dev.manifests if m.media]
    if len(names) == 1:
        os.link(dev.dir / names[0], path)
        return
    with open(path, "wb") as out:
        for name in names:
            with open(dev.dir / name, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)


def make_footage(folder: Path, name: str, sizes: Callable[[random.Random], list[int]], seed: int) -> Footage:
    """One recorder's chain per bay: a boot record, then segments of `sizes`, the middle one marked."""
    recordings = []
    for i in range(RECORDERS):
        device = f"REC-{name.upper()}-{i + 1:02d}"
        signer = signatures.KeySigner(signatures.generate())
        template = folder / name / device
        dev = SyntheticDevice(template, device, signer, seed=seed + i)
        dev.boot()
        segment_sizes = sizes(random.Random(seed + i))
        for k, size in enumerate(segment_sizes):
            dev.segment(size=size, markers=[3] if k == len(segment_sizes) // 2 else ())
        source = folder / name / f"{device}.src"
        _dd_source(dev, source)
        recordings.append(Recording(device, signer, template, source, sum(segment_sizes), len(segment_sizes),
                                    len(dev.manifests)))
    return Footage(name, recordings)


def stage(footage: Footage, folder: Path) -> list[Path]:
    """Fresh recorder stores for a round: hard links to the footage, which the recorders free as they dock."""
    roots = []
    for r in footage.recordings:
        root = folder / r.device
        shutil.copytree(r.template, root, copy_function=os.link)
        roots.append(root)
    return roots


# -- the baselines ------------------------------------------------------------------------------------------------


def _dd(src: Path, dst: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["dd", f"if={src}", f"of={dst}", "bs=1M", "conv=fdatasync"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dd_baseline(footage: Footage, dest: Path, *, together: bool = True) -> float:
    """dd of each recorder's bytes into the spool's folder: 25 at once (`together`), or one after another.

    25 at once is what matches the dock best: the same bytes arrive as 25 concurrent streams from 25 bays into
    the same folder of the same disk, and a single dd cannot overlap copying the bytes with flushing them, nor
    spread the copying over the machine's cores, as 25 writers do (on this machine a single dd of the same
    total is 1.5-3 times slower). Each dd flushes once, at its end; the dock fsyncs every file, which is its
    own cost: durability per segment is what it promises. One after another is printed for context."""
    dest.mkdir(parents=True)
    try:
        t0 = time.perf_counter()
        procs: list[subprocess.Popen[bytes]] = []
        for r in footage.recordings:
            procs.append(_dd(r.source, dest / r.device))
            if not together:
                procs[-1].wait()
        codes = [p.wait() for p in procs]
        elapsed = time.perf_counter() - t0
        assert codes == [0] * len(procs), f"dd failed: {codes}"
        return elapsed
    finally:
        shutil.rmtree(dest)
        os.sync()


# -- the gateway and the station ----------------------------------------------------------------------------------


class Station:
    """The gateway's key and device trust file, and the gateway trust list the recorders check receipts with."""

    def __init__(self, folder: Path, footage: list[Footage]) -> None:
        folder.mkdir(parents=True)
        key = signatures.generate()
        signer = signatures.KeySigner(key)
        self.key_path = folder / "gateway.key"
        fd = os.open(self.key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(signatures.private_pem(key))
        devices = TrustList([trusted_key(r.signer.public_key(), "device", r.device)
                             for f in footage for r in f.recordings])
        self.trust_path = folder / "trust.json"
        self.trust_path.write_bytes(devices.to_bytes())
        self.gateways = TrustList([trusted_key(signer.public_key(), "gateway", GATEWAY)])


def gateway_command(station: Station, data_dir: Path, ports: list[int]) -> list[str]:
    """`liuhen gateway run` with one bay per port, its spool under `data_dir` (data_dir/spool), the station's
    key and device trust list, the embedded MQTT broker and the station page on free ports. No case server
    answers: the uploader waits (backing off) and the footage stays spooled, which is what is measured."""
    data_dir.mkdir(exist_ok=True)
    shutil.copyfile(station.trust_path, data_dir / "device-trust.json")
    addresses = ", ".join(f'"127.0.0.1:{p}"' for p in ports)
    config = data_dir / "gateway.toml"
    config.write_text("\n".join([
        "[gateway]", f'id = "{GATEWAY}"', f'data_dir = "{data_dir}"', f'key_file = "{station.key_path}"',
        "[gateway.server]", f'url = "http://127.0.0.1:{free_ports(1)[0]}"',
        "[gateway.dock]", f"addresses = [{addresses}]", "reserve_bytes = 0",
        "[gateway.station]", f"port = {free_ports(1)[0]}",
        "[gateway.mqtt]", "port = 0",
    ]) + "\n", encoding="utf-8")
    return [sys.executable, "-m", "liuhen", "gateway", "run", "--config", str(config)]


class GatewayRun:
    """A real gateway dock process with one bay per port on 127.0.0.1."""

    def __init__(self, station: Station, spool: Path, log_path: Path) -> None:
        self.ports = free_ports(RECORDERS)
        self.args = gateway_command(station, spool, self.ports)
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None

    def url(self, bay: int) -> str:
        return f"http://127.0.0.1:{self.ports[bay]}"

    def __enter__(self) -> GatewayRun:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "gateway ready":
            raise RuntimeError(f"the gateway said {line!r}:\n{self.log_path.read_text()[-3000:]}")
        return self

    def _proc_file(self, *parts: str) -> Path:
        assert self.proc is not None
        return Path("/proc", str(self.proc.pid), *parts)

    def cpu(self) -> dict[str, float]:
        """CPU seconds of the gateway's threads so far: its event loop, and the worker threads (the dock's disk
        workers, asyncio.to_thread's spool calls). From schedstat: nanoseconds on a CPU, per thread."""
        out: dict[str, float] = {}
        main = self._proc_file().name
        for task in self._proc_file("task").iterdir():
            try:
                on_cpu_ns = int((task / "schedstat").read_text().split()[0])
            except OSError:
                continue  # the thread ended
            kind = "event loop" if task.name == main else "worker threads"
            out[kind] = out.get(kind, 0.0) + on_cpu_ns / 1e9
        return out

    def peak_rss_mb(self) -> float:
        for line in self._proc_file("status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / 2**20
        raise RuntimeError("no VmHWM in /proc/PID/status")

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the recorders ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Docked:
    """What one recorder process reports: its summary's essentials, when it finished, its CPU seconds."""

    device: str
    finished_s: float  # since the common start
    cpu_s: float
    error: str | None
    files_sent: int
    bytes_sent: int
    results: dict[int, str]
    freed: int
    kept: int


class _LargeBlocks(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, blocksize=SEND_BLOCK, **kwargs)


def _link() -> requests.Session:
    """The recorder's HTTP session. urllib3 sends a file 16 KiB at a time, a Python loop turn each, which on
    the bench's two cores takes CPU from the gateway it is measured against (a real recorder has its own CPU):
    the recorders here send 1 MiB at a time. The gateway sees the same requests and bytes."""
    session = requests.Session()
    session.mount("http://", _LargeBlocks())
    return session


def _dock(recording: Recording, root: Path, url: str, gateways: TrustList, start: Barrier,
          out: multiprocessing.Queue[Docked]) -> None:
    """One recorder process: ready, wait for every other, dock once, report."""
    client = DockClient(RecorderStore(root, recording.device), recording.signer, gateways, url, http=_link())
    start.wait()
    t0, cpu0 = time.monotonic(), os.times()
    summary = client.dock()
    t1, cpu1 = time.monotonic(), os.times()
    out.put(Docked(recording.device, t1 - t0, cpu1.user + cpu1.system - cpu0.user - cpu0.system, summary.error,
                   summary.files_sent, summary.bytes_sent, summary.results, len(summary.freed), len(summary.kept)))


def dock_all(footage: Footage, roots: list[Path], gateway: GatewayRun, gateways: TrustList) -> tuple[float,
                                                                                                     list[Docked]]:
    """Every recorder docks at once, each in its own process; the time until the last one is done."""
    ctx = multiprocessing.get_context("fork")  # the recorders inherit their keys; nothing is pickled but results
    start = ctx.Barrier(len(roots) + 1)
    out: multiprocessing.Queue[Docked] = ctx.Queue()
    procs = [ctx.Process(target=_dock, args=(r, root, gateway.url(i), gateways, start, out))
             for i, (r, root) in enumerate(zip(footage.recordings, roots, strict=True))]
    for p in procs:
        p.start()
    start.wait()
    t0 = time.monotonic()
    docked = [out.get(timeout=600) for _ in procs]
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join()
    return elapsed, sorted(docked, key=lambda d: d.device)


# -- checks -------------------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_round(footage: Footage, docked: list[Docked], spool_root: Path) -> None:
    """Honesty: every recorder docked cleanly and freed everything; the spool holds every manifest, receipted,
    with media files whose bytes hash as the gateway recorded."""
    for r, d in zip(footage.recordings, docked, strict=True):
        assert d.error is None, f"{d.device}: {d.error}"
        assert (d.files_sent, d.bytes_sent, d.freed, d.kept) == (r.files, r.media_bytes, r.manifests, 0), d
        assert set(d.results.values()) == {"ok"}, d.results
    with Spool(spool_root) as spool:
        backlog = spool.backlog()
        assert (backlog.count, backlog.media_bytes, backlog.flagged) == \
               (sum(r.manifests for r in footage.recordings), footage.media_bytes, 0), backlog
        held = [s for s in spool.to_upload(backlog.count + 1) if s.path is not None]
        assert not any(spool.unreceipted(r.device) for r in footage.recordings)
    assert len(held) == footage.files
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        digests = list(pool.map(lambda s: _sha256(s.path), held))
    assert digests == [s.media_sha256 for s in held], "a spooled file differs from the hash the gateway recorded"


# -- rounds -------------------------------------------------------------------------------------------------------


@dataclass
class Round:
    dd_s: float
    dock_s: float
    peak_rss_mb: float


@contextmanager
def work_folders(work: Path, name: str) -> Iterator[tuple[Path, Path]]:
    """The round's recorder stores and the gateway's spool; removed (and the disk synced) afterwards."""
    stores, spool = work / f"{name}-recorders", work / f"{name}-spool"
    stores.mkdir()
    spool.mkdir()
    try:
        yield stores, spool
    finally:
        shutil.rmtree(stores)
        shutil.rmtree(spool)
        os.sync()


def one_round(work: Path, name: str, footage: Footage, station: Station) -> Round:
    with work_folders(work, name) as (stores, spool):
        roots = stage(footage, stores)
        dd_s = dd_baseline(footage, spool / "dd")
        mb = footage.media_bytes / MB
        say(f"{name}: dd per recorder, 25 at once: {dd_s:.2f} s, {mb / dd_s:.0f} MB/s")
        with GatewayRun(station, spool, work / "gateway.log") as gw:
            cpu0 = gw.cpu()
            elapsed, docked = dock_all(footage, roots, gw, station.gateways)
            cpu1 = gw.cpu()
            rss = gw.peak_rss_mb()
        check_round(footage, docked, spool / "spool")
    finish = sorted(d.finished_s for d in docked)
    gateway_cpu = {k: v - cpu0.get(k, 0.0) for k, v in cpu1.items()}
    say(f"{name}: gateway {elapsed:.2f} s, {mb / elapsed:.0f} MB/s, {footage.files / elapsed:.0f} files/s "
        f"(ratio to dd {dd_s / elapsed:.3f}); peak RSS {rss:.1f} MB")
    say(f"{name}:   CPU seconds ({os.cpu_count()} cores: {elapsed * (os.cpu_count() or 1):.2f} available): gateway "
        f"{sum(gateway_cpu.values()):.2f} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(gateway_cpu.items(), key=lambda kv: -kv[1]) if v >= 0.01)
        + f"), recorders {sum(d.cpu_s for d in docked):.2f}")
    say(f"{name}:   finish times of the {len(docked)} bays: first {finish[0]:.2f} s, median "
        f"{statistics.median(finish):.2f} s, last {finish[-1]:.2f} s (spread {finish[-1] - finish[0]:.2f} s, "
        f"{(finish[-1] - finish[0]) / finish[-1]:.0%} of the last)")
    return Round(dd_s, elapsed, rss)


def segment_sizes(count: int) -> Callable[[random.Random], list[int]]:
    return lambda rng: [rng.randrange(SEGMENT_BYTES - SEGMENT_SPREAD, SEGMENT_BYTES + SEGMENT_SPREAD + 1)
                        for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 250 MB a round, 2 rounds: a smoke run")
    parser.add_argument("--mb", type=int, help="footage per round, MB (default 2100; quick 250)")
    parser.add_argument("--rounds", type=int, help="rounds, each after a baseline; best of (default 3; quick 2)")
    parser.add_argument("--large-mb", type=int, help="the large-file round's segment, MB (default 200; quick 40)")
    parser.add_argument("--workdir", type=Path, help="where the footage and the spool go (default: a temporary "
                                                     "folder); the disk measured")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    total_mb = args.mb or (250 if args.quick else 2100)
    rounds = args.rounds or (2 if args.quick else 3)
    large_mb = args.large_mb or (40 if args.quick else 200)
    work = Path(tempfile.mkdtemp(prefix="liuhen-bench-gateway-", dir=args.workdir))
    say(f"work folder: {work}")
    started = time.perf_counter()
    try:
        t0 = time.perf_counter()
        per_recorder = math.ceil(total_mb * MB / SEGMENT_BYTES / RECORDERS)
        regular = make_footage(work / "footage", "regular", segment_sizes(per_recorder), args.seed)
        large = make_footage(work / "footage", "large", lambda _rng: [large_mb * MB], args.seed + 1000)
        station = Station(work / "station", [regular, large])
        os.sync()
        say(f"footage: {RECORDERS} recorders x {per_recorder} segments of 4.5-5.5 MB and a boot record, "
            f"{regular.media_bytes / MB:.0f} MB in {regular.files} files; large: {RECORDERS} x one {large_mb} MB "
            f"segment; made in {time.perf_counter() - t0:.1f} s")
        done = [one_round(work, f"round {r + 1}", regular, station) for r in range(rounds)]
        last_dd = dd_baseline(regular, work / "dd")
        say(f"dd per recorder, 25 at once, once more: {last_dd:.2f} s, {regular.media_bytes / MB / last_dd:.0f} MB/s")
        serial = dd_baseline(regular, work / "dd", together=False)
        say(f"context: dd one recorder after another (a single writer): {serial:.2f} s, "
            f"{regular.media_bytes / MB / serial:.0f} MB/s")
        big = one_round(work, "large files", large, station)
        best_dd, best_dock = min([r.dd_s for r in done] + [last_dd]), min(r.dock_s for r in done)
        peak = max(r.peak_rss_mb for r in [*done, big])
        say(f"best of {rounds}: dd {best_dd:.2f} s, gateway {best_dock:.2f} s (against dd one recorder after another: "
            f"{serial / best_dock:.3f}); peak RSS {peak:.1f} MB "
            f"({max(r.peak_rss_mb for r in done):.1f} MB with 5 MB files, {big.peak_rss_mb:.1f} MB with "
            f"{large_mb} MB files)")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    say(f"total: {time.perf_counter() - started:.0f} s")
    say(result_ratio("gateway_dock_vs_dd", best_dd / best_dock, RATIO_TARGET))
    say(result_mb("gateway_peak_rss", peak, RSS_TARGET_MB))


if __name__ == "__main__":
    main()
