"""Benchmark of the case server.

Figures:
- `ingest_vs_fsync_write`: footage (10 s segments of 5 MB, signed manifests, one recorder per gateway) uploaded
  by 8 gateways at once over loopback into a real `liuhen server run` (SQLite index): each gateway signs in
  (POST /api/gateway/session) and uploads its recorder's chain over tus with tuspy, one segment per PATCH
  (8 MiB chunks), with its signed dock receipt; the server verifies, stores, logs and signs a receipt for every
  segment. Baseline in the same run: the same bytes written as the same number of files, each fsynced, by
  8 threads, in the server's data folder. Three rounds of new footage, each after a baseline (and one more
  baseline at the end); throughput ratio of the best ingest to the best baseline, target >= 0.6. Every
  receipt is verified and the stored rows counted. Printed for context: the same bodies sent to a process that
  discards them (the cost of moving the bytes), and the CPU seconds of the gateways and of the server's threads.
- `bare_http_store_vs_fsync_write` (context, no target): in each round, the same bodies PATCHed by the same
  8 threads to a bare aiohttp process that only writes each to a file while hashing it and fsyncs it, as a
  ratio to the baseline: the ceiling for any ingest over HTTP in one Python process on this machine, before it
  verifies, indexes, logs or signs anything.
- `search_p95_<backend>`: GET /api/segments over HTTP against a real server whose fresh index holds 1 M
  segments (bench/server_data.py: 400 recorders, 20 units, 183 days, one city), by officers and supervisors,
  a mix of 11 kinds of query (bench/server_queries.py), one request at a time; p95 in ms, target 50. Place
  searches without a time range are in the mix and also reported on their own (`search_place_only_p95_*`).
- `inclusion_proof_p95_<backend>`: TransparencyLog.proof_bundle for 1000 random entries of the same index's
  log (1 M manifests, appended 10 k per transaction with their rows), each with a fresh TransparencyLog (no
  cached tiles: cold) and again with one whose tile cache is warm (`inclusion_proof_warm_p95_*`); ms, target 5.

Usage: python bench/server.py [--quick] [--phases ingest,index] [--backends sqlite,postgresql]
       [--ingest-mb 1040] [--rounds 3] [--rows 1000000] [--per-kind 25] [--pg-dsn URL] [--workdir DIR]
       [--keep] [--profile-server FILE]
--quick: 104 MB of ingest and 100 k segments, for a smoke run. PostgreSQL: a scratch database is made in the
server of --pg-dsn (default postgresql://postgres@127.0.0.1:5432/test, or $LIUHEN_BENCH_PG_DSN) and dropped.
--profile-server FILE runs the ingest server under cProfile in every thread (bench/server_profile.py).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import math
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# This script is named after the package it measures: keep its own folder off the import path so that `server`
# is the package, and put the repository first so that its helpers import as `bench.server_data`.
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import requests  # noqa: E402
import sqlalchemy  # noqa: E402
from sqlalchemy import func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from tusclient import client  # noqa: E402

from bench.server_data import Loader, Shape, build  # noqa: E402
from bench.server_queries import KINDS, PLACE_ONLY, make_queries, p50, p95, run_queries  # noqa: E402
from protocol import gateway_auth, layout, receipts, signatures  # noqa: E402
from protocol.manifest import Manifest  # noqa: E402
from protocol.tlog.proof_bundle import verify_bundle_entry  # noqa: E402
from protocol.trust import TrustList  # noqa: E402
from server.app import open_services  # noqa: E402
from server.config import load_config  # noqa: E402
from server.database import Database  # noqa: E402
from server.enrollment import enroll  # noqa: E402
from server.identity import ServerIdentity, create_key  # noqa: E402
from server.schema import segments  # noqa: E402
from server.services import Services  # noqa: E402
from server.transparency import TransparencyLog  # noqa: E402
from simulators.synthetic import SyntheticDevice  # noqa: E402

INGEST_TARGET = 0.6
SEARCH_TARGET_MS = 50.0
PROOF_TARGET_MS = 5.0
SERVER_NAME = "bench-srv"
GATEWAYS = 8
SEGMENT_BYTES = 5_000_000
TUS_CHUNK = 8 * 1024 * 1024
UPLOADS = "/api/uploads/"
RECEIPT_HEADER = "liuhen-server-receipt"
PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PROOFS = 1000


def say(text: str) -> None:
    print(text, flush=True)


def result_ratio(name: str, ratio: float, target: float) -> str:
    return f"RESULT {name} ratio={ratio:.3f} target={target} {'PASS' if ratio >= target else 'FAIL'}"


def result_ms(name: str, ms: float, target: float) -> str:
    return f"RESULT {name} value={ms:.{1 if ms >= 10 else 2}f} unit=ms target={target:g} " \
           f"{'PASS' if ms < target else 'FAIL'}"


# -- a real server process ---------------------------------------------------------------------------------------


def write_config(folder: Path, *, database: str = "", key_file: Path | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["[server]", f'name = "{SERVER_NAME}"', f'data_dir = "{folder / "data"}"', f'database = "{database}"']
    if key_file is not None:
        lines.append(f'key_file = "{key_file}"')
    path = folder / "server.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerRun:
    """`liuhen server run` on a free port (under bench/server_profile.py when profiling)."""

    def __init__(self, config: Path, profile: Path | None = None) -> None:
        self.config, self.profile = config, profile
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = config.parent / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServerRun:
        prefix = [sys.executable, str(HERE / "server_profile.py"), str(self.profile)] if self.profile else \
            [sys.executable, "-m", "liuhen"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([*prefix, "server", "run", "--config", str(self.config), "--port",
                                          str(self.port)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                requests.get(f"{self.url}/log/checkpoint", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()[-3000:]}")

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) of the server's threads so far, by thread name (pool threads summed)."""
        assert self.proc is not None
        tick = os.sysconf("SC_CLK_TCK")
        out: dict[str, float] = {}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            try:
                name = (task / "comm").read_text().strip()
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # the thread ended
            name = "event loop" if task.name == str(self.proc.pid) else name.rstrip("0123456789").rstrip("_")
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
        return out

    def __exit__(self, *_exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- ingest ------------------------------------------------------------------------------------------------------


@dataclass
class Site:
    """One docking gateway with the recorder docked in it."""

    name: str
    signer: signatures.KeySigner
    dev: SyntheticDevice
    dock: bytes = b""
    empty: Path = Path()
    receipts: list[tuple[Manifest, bytes]] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=lambda: {"sign_in": 0.0, "create": 0.0, "patch": 0.0,
                                                              "head": 0.0})

    def files(self) -> list[Path]:
        return [self.dev.dir / m.media["name"] if m.media else self.empty for m in self.dev.manifests]


def dock_receipt(site: Site) -> bytes:
    chain = site.dev.manifests
    return receipts.issue(site.signer, receipts.DOCK_TYPE, {
        "gateway": site.name, "device": site.dev.device, "first_seq": chain[0].seq, "last_seq": chain[-1].seq,
        "head": chain[-1].hash.hex(), "received_ns": time.time_ns(), "clock_offset_ns": 0,
        "segments": [{"seq": m.seq, "manifest": m.hash.hex(), "media_sha256": m.media["sha256"] if m.media else None,
                      "result": receipts.RESULT_OK} for m in chain]})


def gateway_upload(url: str, site: Site) -> None:
    """What a gateway does with a docked recorder: sign in, upload every manifest with its media, keep receipts."""
    t0 = time.perf_counter()
    auth = gateway_auth.issue(site.signer, {"gateway": site.name, "server": SERVER_NAME, "issued_ns": time.time_ns(),
                                            "nonce": secrets.token_hex(16)})
    r = requests.post(f"{url}/api/gateway/session", data=auth, headers={"Content-Type": gateway_auth.TYPE}, timeout=30)
    r.raise_for_status()
    token = r.json()["token"]
    tus = client.TusClient(url + UPLOADS, headers={"Authorization": f"Bearer {token}"})
    site.times["sign_in"] += time.perf_counter() - t0
    dock = site.dock.decode("ascii")
    for m, path in zip(site.dev.manifests, site.files(), strict=True):
        envelope = (site.dev.dir / layout.manifest_name(m.seq)).read_text("ascii")
        up = tus.uploader(file_path=str(path), metadata={"manifest": envelope, "dock_receipt": dock},
                          chunk_size=TUS_CHUNK)
        t0 = time.perf_counter()
        up.set_url(up.create_url())
        up.offset = 0
        t1 = time.perf_counter()
        while up.offset < up.get_file_size():
            up.upload_chunk()
        t2 = time.perf_counter()
        receipt = up.request.response_headers.get(RECEIPT_HEADER) if up.request is not None else None
        if receipt is None:  # no PATCH (a record without media): the receipt came with the POST; HEAD gives it
            head = requests.head(up.url, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {token}"},
                                 timeout=60)
            head.raise_for_status()
            receipt = head.headers["Liuhen-Server-Receipt"]
        t3 = time.perf_counter()
        site.times["create"] += t1 - t0
        site.times["patch"] += t2 - t1
        site.times["head"] += t3 - t2
        site.receipts.append((m, base64.b64decode(receipt)))


class Probe:
    """GETs a cheap URL every 50 ms from a thread, timing each: how the server answers others during ingest."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ms: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with requests.Session() as session:
            while not self._stop.wait(0.05):
                t0 = time.perf_counter()
                session.get(self.url, timeout=60).raise_for_status()
                self.ms.append((time.perf_counter() - t0) * 1000)

    def __enter__(self) -> Probe:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_threads(fn: Callable[[int], None], count: int) -> float:
    errors: list[BaseException] = []

    def guarded(i: int) -> None:
        try:
            fn(i)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return elapsed


def fsync_baseline(sites: list[Site], dest: Path) -> float:
    """The same bytes as the same number of files, each written and fsynced, one thread per gateway."""
    dest.mkdir(parents=True)

    def one(g: int) -> None:
        for i, src in enumerate(sites[g].files()):
            data = src.read_bytes()
            with open(dest / f"{g}-{i}", "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

    try:
        return run_threads(one, len(sites))
    finally:
        shutil.rmtree(dest)
        os.sync()


_SINK = """
import asyncio, hashlib, itertools, os, sys
from aiohttp import web

folder = sys.argv[2] if len(sys.argv) > 2 else None
names = itertools.count()

async def discard(request):
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
    return web.Response(text=str(size))

async def store(request):
    digest = hashlib.sha256()
    with open(os.path.join(folder, str(next(names))), "wb") as f:
        while chunk := await request.content.read(1 << 20):
            f.write(chunk)
            digest.update(chunk)
        await asyncio.to_thread(os.fsync, f.fileno())
    return web.Response(text=digest.hexdigest())

app = web.Application()
app.router.add_route("PATCH", "/", store if folder else discard)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=lambda *_: print("ready", flush=True),
            access_log=None)
"""


def http_floor(sites: list[Site], store_in: Path | None = None) -> float:
    """The same bodies PATCHed by 8 threads over loopback to an aiohttp process that reads and discards them
    (what moving the bytes costs on this machine), or that writes each to a file in `store_in` while hashing it
    and fsyncs it (the least any ingest over HTTP in Python can do here, before verifying, indexing or logging)."""
    port = free_port()
    if store_in is not None:
        store_in.mkdir(parents=True)
    proc = subprocess.Popen([sys.executable, "-c", _SINK, str(port), *([str(store_in)] if store_in else [])],
                            stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"

        def one(g: int) -> None:
            with requests.Session() as session:
                for path in sites[g].files():
                    session.patch(f"http://127.0.0.1:{port}/", data=path.read_bytes(), timeout=60).raise_for_status()

        return run_threads(one, len(sites))
    finally:
        proc.terminate()
        proc.wait()
        if store_in is not None:
            shutil.rmtree(store_in)
            os.sync()


def make_footage(folder: Path, s: Services, rounds: int, per_gateway: int) -> list[list[Site]]:
    """Per round, one new recorder docked in each of the 8 gateways, with its chain and dock receipt; every key
    enrolled."""
    gateway_keys = [signatures.KeySigner(signatures.generate()) for _ in range(GATEWAYS)]
    empty = folder / "empty"
    empty.write_bytes(b"")
    out = []
    with s.db.write() as conn:
        for g, key in enumerate(gateway_keys):
            enroll(conn, s, role="gateway", owner=f"GW-{g + 1}", public_key=key.public_key(), actor="bench")
        for r in range(rounds):
            sites = []
            for g, key in enumerate(gateway_keys):
                dev_signer = signatures.KeySigner(signatures.generate())
                name = f"REC-{r + 1}{g + 1:03d}"
                dev = SyntheticDevice(folder / "gateways" / f"GW-{g + 1}", name, dev_signer, seed=r * 100 + g)
                dev.boot()
                for _ in range(per_gateway):
                    dev.segment(size=SEGMENT_BYTES)
                site = Site(f"GW-{g + 1}", key, dev, empty=empty)
                site.dock = dock_receipt(site)
                sites.append(site)
                enroll(conn, s, role="device", owner=name, public_key=dev_signer.public_key(), actor="bench",
                       unit="U1")
            out.append(sites)
    return out


def ingest_phase(work: Path, total_mb: int, rounds: int, profile: Path | None) -> list[str]:
    folder = work / "ingest"
    config_path = write_config(folder)
    config = load_config(config_path)
    config.data_dir.mkdir(parents=True)
    create_key(config.key_path)
    s = open_services(config)
    per_gateway = math.ceil(total_mb * 1_000_000 / SEGMENT_BYTES / GATEWAYS)
    say(f"ingest: making {rounds} rounds of {GATEWAYS} recorders x {per_gateway} segments of "
        f"{SEGMENT_BYTES / 1e6:.0f} MB ...")
    t0 = time.perf_counter()
    footage = make_footage(folder, s, rounds, per_gateway)
    s.db.close()
    identity = s.identity
    os.sync()
    total = sum(p.stat().st_size for site in footage[0] for p in site.files())
    count = sum(len(site.dev.manifests) for site in footage[0])
    media = sum(1 for site in footage[0] for m in site.dev.manifests if m.media)
    say(f"ingest: each round {total / 1e6:.0f} MB in {media} segments (+{count - media} boot records) from 8 gateways; "
        f"made in {time.perf_counter() - t0:.1f} s")

    floor = http_floor(footage[0])
    say(f"ingest: context: the same bodies PATCHed to a discarding aiohttp process (no tus, no storage): "
        f"{floor:.2f} s, "
        f"{total / floor / 1e6:.0f} MB/s")
    baselines, floors, ingests, probes = [], [], [], []
    with ServerRun(config_path, profile) as srv:
        for r, sites in enumerate(footage):
            base = fsync_baseline(sites, config.data_dir / "baseline")
            baselines.append(base)
            floors.append(http_floor(sites, config.data_dir / "floor"))
            cpu0, client0 = srv.cpu(), os.times()
            with Probe(f"{srv.url}/log/checkpoint") as probe:
                elapsed = run_threads(lambda g, sites=sites: gateway_upload(srv.url, sites[g]), GATEWAYS)
            cpu1, client1 = srv.cpu(), os.times()
            ingests.append(elapsed)
            probes += probe.ms
            os.sync()
            server_cpu = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
            say(f"ingest: round {r + 1}: baseline (8 threads, write + fsync per file) {base:.2f} s, "
                f"{total / base / 1e6:.0f} MB/s; bare HTTP store {floors[-1]:.2f} s; "
                f"ingest {elapsed:.2f} s, {total / elapsed / 1e6:.0f} MB/s, "
                f"{count / elapsed:.1f} segments/s")
            say(f"ingest:   CPU seconds during the upload (2 cores: {2 * elapsed:.2f} available): gateways "
                f"{client1.user + client1.system - client0.user - client0.system:.2f}, server "
                f"{sum(server_cpu.values()):.2f} ("
                + ", ".join(f"{k} {v:.2f}" for k, v in sorted(server_cpu.items(), key=lambda kv: -kv[1]) if v >= 0.01)
                + ")")
    base = fsync_baseline(footage[-1], config.data_dir / "baseline")
    baselines.append(base)
    say(f"ingest: baseline once more {base:.2f} s, {total / base / 1e6:.0f} MB/s")
    sites_all = [site for sites in footage for site in sites]
    n = sum(len(site.receipts) for site in sites_all)
    sums = {k: sum(site.times[k] for site in sites_all) for k in ("sign_in", "create", "patch", "head")}
    say(f"ingest: per upload, gateway side (mean of {n}): POST {sums['create'] / n * 1000:.1f} ms, "
        f"PATCH (5 MB body, then verification, storing, logging, receipt) {sums['patch'] / (media * rounds) * 1000:.1f}"
        f" ms per segment; sign-in {sums['sign_in'] / len(sites_all) * 1000:.0f} ms")
    say(f"ingest: best of {rounds}: baseline {min(baselines):.2f} s, bare HTTP store {min(floors):.2f} s "
        f"(ratio {min(baselines) / min(floors):.2f}: the ceiling of any Python ingest on this machine), "
        f"ingest {min(ingests):.2f} s ({min(floors) / min(ingests):.2f} of the bare store)")
    say(f"ingest: meanwhile GET /log/checkpoint every 50 ms ({len(probes)} requests): p50 {p50(probes):.1f} ms, "
        f"p95 {p95(probes):.1f} ms, max {max(probes):.1f} ms")

    # Honesty: every upload got a receipt that verifies, for its manifest, stored; and the index has every row.
    trust = TrustList([identity.trusted_key()])
    for site in sites_all:
        for m, raw in site.receipts:
            rec = receipts.open_receipt(raw, receipts.SERVER_TYPE, trust)
            assert rec["manifest"] == m.hash.hex() and rec["status"] == receipts.STORED, rec
    db = Database(config.database_url, 1)
    hashes = [m.hash.hex() for site in sites_all for m in site.dev.manifests]
    with db.read() as conn:
        stored = conn.execute(select(func.count()).select_from(segments).where(
            segments.c.manifest.in_(hashes), segments.c.status == receipts.STORED,
            func.length(segments.c.server_receipt) > 0)).scalar_one()
        stored_bytes = conn.execute(select(func.sum(segments.c.media_size))).scalar_one()
    db.close()
    assert stored == count * rounds == n, f"{stored} rows stored, {n} receipts, {count * rounds} manifests uploaded"
    assert stored_bytes == total * rounds
    say(f"ingest: verified {n} server receipts; {stored} segments rows stored with receipts, "
        f"{stored_bytes / 1e6:.0f} MB")
    if profile is not None and profile.exists():
        import pstats

        say(f"ingest: server profile (CPU time of every thread, cumulative) in {profile}:")
        pstats.Stats(str(profile)).sort_stats("cumulative").print_stats(45)
        pstats.Stats(str(profile)).sort_stats("tottime").print_stats(30)
    return [result_ratio("ingest_vs_fsync_write", min(baselines) / min(ingests), INGEST_TARGET),
            f"RESULT bare_http_store_vs_fsync_write value={min(baselines) / min(floors):.3f} unit=ratio"]


# -- the index: search and log proofs -----------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    url: str
    config: Path
    drop: Callable[[], None] = lambda: None


def make_backends(work: Path, names: list[str], pg_dsn: str, key_file: Path) -> list[Backend]:
    out = []
    for name in names:
        folder = work / f"index-{name}"
        if name == "sqlite":
            url = f"sqlite:///{folder / 'data' / 'index.sqlite3'}"
            out.append(Backend(name, url, write_config(folder, database=url, key_file=key_file)))
            continue
        dbname = f"liuhen_bench_{secrets.token_hex(4)}"
        admin = sqlalchemy.create_engine(make_url(pg_dsn).set(drivername="postgresql+psycopg"),
                                         isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {dbname}")
        url = make_url(pg_dsn).set(database=dbname).render_as_string(hide_password=False)

        def drop(admin: sqlalchemy.Engine = admin, dbname: str = dbname) -> None:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            admin.dispose()

        out.append(Backend(name, url, write_config(folder, database=url, key_file=key_file), drop))
    return out


def proof_times(url: str, identity: ServerIdentity, seed: int) -> tuple[list[float], list[float], int]:
    """proof_bundle of PROOFS random entries: with a fresh TransparencyLog each (cold), then again with one
    shared log whose tile cache the first pass warmed."""
    db = Database(url, 1)
    try:
        with db.read() as conn:
            size, _ = TransparencyLog(identity).checkpoint(conn)
        indices = random.Random(seed).sample(range(size), PROOFS)
        cold, warm = [], []
        with db.read() as conn:
            for i in indices:
                log = TransparencyLog(identity)
                t0 = time.perf_counter()
                log.proof_bundle(conn, i)
                cold.append((time.perf_counter() - t0) * 1000)
            log = TransparencyLog(identity)
            for i in indices:
                log.proof_bundle(conn, i)
            for i in indices:
                t0 = time.perf_counter()
                log.proof_bundle(conn, i)
                warm.append((time.perf_counter() - t0) * 1000)
            for i in indices[:50]:
                verify_bundle_entry(log.proof_bundle(conn, i), log.entry(conn, i), identity.origin, [identity.vkey])
    finally:
        db.close()
    return cold, warm, size


def sha256_context() -> str:
    buf = os.urandom(64 * 1024 * 1024)
    t0 = time.perf_counter()
    hashlib.sha256(buf).digest()
    mb_s = len(buf) / (time.perf_counter() - t0) / 1e6
    node = b"\x01" + os.urandom(64)
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        hashlib.sha256(node).digest()
    per = (time.perf_counter() - t0) / n
    return (f"this machine's SHA-256: {mb_s:.0f} MB/s on large buffers, {1 / per / 1e6:.2f} M Merkle node hashes/s "
            f"({per * 1e6:.2f} us each; a proof at 1 M entries has 20 hashes: {20 * per * 1e3:.3f} ms)")


def index_phase(work: Path, rows: int, names: list[str], pg_dsn: str, per_kind: int, seed: int) -> list[str]:
    shape = Shape.for_rows(rows)
    key_file = work / "index-server.key"
    create_key(key_file)
    backends = make_backends(work, names, pg_dsn, key_file)
    lines: list[str] = []
    try:
        loaders = []
        for b in backends:
            config = load_config(b.config)
            config.data_dir.mkdir(parents=True, exist_ok=True)
            loaders.append(Loader(b.name, open_services(config)))
        say(f"index: {rows:,} segments of {shape.devices} recorders in {shape.units} units over {shape.days} days "
            f"into {', '.join(names)} (10 k rows and their log entries per transaction) ...")
        t0 = time.perf_counter()
        samples = build(shape, seed, loaders, workers=max(1, min(2, os.cpu_count() or 1)), progress=say)
        built = time.perf_counter() - t0
        for lo in loaders:
            extra = lo.finish()
            say(f"index: {lo.name}: {lo.entries:,} rows in {built:.0f} s overall; its share: log appends "
                f"{lo.log_s:.0f} s ({lo.entries / max(lo.log_s, 1e-9):,.0f} entries/s), row inserts {lo.rows_s:.0f} s"
                + (f", VACUUM ANALYZE {extra:.0f} s" if extra > 1 else "")
                + f"; log size {lo.log_size():,}; {lo.disk_bytes() / 1e9:.1f} GB on disk")
            assert lo.count() == rows, lo.count()
            identity = lo.s.identity
            lo.s.db.close()
        queries = make_queries(samples, per_kind, seed)
        warmup = make_queries(samples, 2, seed + 1)
        say(f"search: {len(queries)} queries ({per_kind} of each of {len(KINDS)} kinds) after {len(warmup)} warm-up:")
        for kind, what in KINDS.items():
            say(f"  {kind:15} {what}")
        for b in backends:
            with ServerRun(b.config) as srv:
                timings = run_queries(srv.url, queries, warmup)
                proof_ms = []
                for i in random.Random(seed).sample(range(rows), 200):
                    t0 = time.perf_counter()
                    r = requests.get(f"{srv.url}/log/proof/{i}", timeout=30)
                    proof_ms.append((time.perf_counter() - t0) * 1000)
                    r.raise_for_status()
            say(f"search on {b.name} (ms; found = mean results on the first page, of 50; 'more' = answers with a "
                f"next cursor):")
            for kind in KINDS:
                ms = timings.ms[kind]
                say(f"  {kind:15} p50 {p50(ms):6.1f}  p95 {p95(ms):6.1f}  max {max(ms):6.1f}  found "
                    f"{sum(timings.found[kind]) / len(ms):5.1f}  more {timings.more[kind]}/{len(ms)}")
            every = [v for k in KINDS for v in timings.ms[k]]
            timed = [v for k in KINDS if k not in PLACE_ONLY for v in timings.ms[k]]
            place_only = [v for k in PLACE_ONLY for v in timings.ms[k]]
            say(f"  all {len(every)}: p50 {p50(every):.1f}, p95 {p95(every):.1f}; without place-only: p95 "
                f"{p95(timed):.1f}; place-only ({len(place_only)}): p95 {p95(place_only):.1f}")
            say(f"  GET /log/proof/<i> over HTTP (200 random entries): p50 {p50(proof_ms):.2f} ms, "
                f"p95 {p95(proof_ms):.2f} ms")
            cold, warm, size = proof_times(b.url, identity, seed)
            say(f"proofs on {b.name}: log of {size:,} entries, proof_bundle of {PROOFS} random entries: cold (fresh "
                f"TransparencyLog each) p50 {p50(cold):.2f} p95 {p95(cold):.2f} ms; warm tile cache p50 "
                f"{p50(warm):.2f} p95 {p95(warm):.2f} ms")
            lines += [result_ms(f"search_p95_{b.name}", p95(every), SEARCH_TARGET_MS),
                      result_ms(f"search_place_only_p95_{b.name}", p95(place_only), SEARCH_TARGET_MS),
                      result_ms(f"inclusion_proof_p95_{b.name}", p95(cold), PROOF_TARGET_MS),
                      result_ms(f"inclusion_proof_warm_p95_{b.name}", p95(warm), PROOF_TARGET_MS)]
        say(sha256_context())
    finally:
        for b in backends:
            b.drop()
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="104 MB of ingest and 100 k segments: a smoke run")
    parser.add_argument("--phases", default="ingest,index", help="ingest, index (search and log proofs)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--ingest-mb", type=int, help="footage to ingest, MB (default 1040; quick 104)")
    parser.add_argument("--rows", type=int, help="segments in the index (default 1000000; quick 100000)")
    parser.add_argument("--rounds", type=int, default=3, help="ingest rounds, alternating with the baseline (best of)")
    parser.add_argument("--per-kind", type=int, default=25, help="queries of each kind (default 25)")
    parser.add_argument("--pg-dsn", default=os.environ.get("LIUHEN_BENCH_PG_DSN", PG_DSN),
                        help=f"PostgreSQL to make a scratch database in (default {PG_DSN})")
    parser.add_argument("--workdir", type=Path, help="where the data folders go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--profile-server", type=Path, help="profile the ingest server (every thread) into FILE")
    parser.add_argument("--seed", type=int, default=2025)
    args = parser.parse_args()
    ingest_mb = args.ingest_mb or (104 if args.quick else 1040)
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    phases = set(args.phases.split(","))
    work = Path(tempfile.mkdtemp(prefix="liuhen-bench-server-", dir=args.workdir))
    say(f"work folder: {work}")
    lines = []
    started = time.perf_counter()
    try:
        if "ingest" in phases:
            t0 = time.perf_counter()
            lines += ingest_phase(work, ingest_mb, args.rounds, args.profile_server)
            say(f"ingest phase: {time.perf_counter() - t0:.0f} s")
        if "index" in phases:
            t0 = time.perf_counter()
            lines += index_phase(work, rows, args.backends.split(","), args.pg_dsn, args.per_kind, args.seed)
            say(f"index phase: {time.perf_counter() - t0:.0f} s")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    say(f"total: {time.perf_counter() - started:.0f} s")
    say("\n".join(lines))


if __name__ == "__main__":
    main()
