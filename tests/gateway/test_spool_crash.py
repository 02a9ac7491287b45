"""The spool under SIGKILL: a child process admits a recorder's segments as the dock does (writes each file at
the incoming path, `arrive`, `attach_receipt`) and marks them uploaded as the uploader does, and is killed at
random instants again and again. After every kill the spool is reopened and must hold no row without its
file, no file without its row, and every step the child saw return; in the end nothing is lost."""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from gateway.spool import Arrival, Spool

SEGMENTS = 24
KEEP = 3  # the last segments stay held (not uploaded), so the final spool holds files too
KILLS = 25
# The child imports this module: it must stay light (no server or test helpers at import).
CHILD = "import sys; from tests.gateway.test_spool_crash import child; child(sys.argv[1], sys.argv[2])"


@dataclass(frozen=True)
class Step:
    """One segment: its arrival, where the dock takes its bytes from, and the receipts it is given."""

    arrival: Arrival
    source: Path | None
    dock_receipt: bytes
    server_receipt: bytes


@dataclass
class Seen:
    """What the child reported done (each line is printed after the call returned)."""

    arrived: set[int] = field(default_factory=set)
    receipted: set[int] = field(default_factory=set)
    uploaded: set[int] = field(default_factory=set)

    def take(self, line: str) -> None:
        what, _, seq = line.partition(" ")
        if what in ("arrived", "receipted", "uploaded"):
            getattr(self, what).add(int(seq))


def child(root: str, plan_path: str) -> None:
    """The dock and the uploader in one process, resuming from whatever the spool holds."""
    plan: list[Step] = pickle.loads(Path(plan_path).read_bytes())
    spool = Spool(Path(root))
    print("ready", flush=True)
    for i, step in enumerate(plan):
        a = step.arrival
        if not spool.arrived(a.device, [a.seq]):
            _dock_writes(spool, step)
            spool.arrive(a)
            print(f"arrived {a.seq}", flush=True)
        if any(r.seq == a.seq for r in spool.unreceipted(a.device)):
            spool.attach_receipt(a.device, [a.seq], step.dock_receipt)
            print(f"receipted {a.seq}", flush=True)
        if i >= KEEP:
            earlier = plan[i - KEEP]
            row = spool.get(earlier.arrival.manifest_hash)
            if row is not None and row.server_receipt is None:
                spool.uploaded(earlier.arrival.manifest_hash, earlier.server_receipt)
                print(f"uploaded {earlier.arrival.seq}", flush=True)
    print("done", flush=True)


def _dock_writes(spool: Spool, step: Step) -> None:
    """Write the file at the incoming path and fsync it, unless it is there whole (spool recovery returned it)."""
    a = step.arrival
    if step.source is None:
        return
    incoming = spool.incoming_path(a.device, a.seq)
    if incoming.exists() and incoming.stat().st_size == a.media_size:
        return
    with open(incoming, "wb") as f:
        f.write(step.source.read_bytes())
        os.fsync(f.fileno())


def _plan(folder: Path, rng: random.Random) -> list[Step]:
    # Imported here, not at the top: the child imports this module and must start fast.
    from protocol import signatures
    from simulators.synthetic import SyntheticDevice
    from tests.gateway.test_spool import dock_receipt, server_receipt
    from tests.server.footage import Gateway, envelope

    dev = SyntheticDevice(folder / "store", "REC-0001", signatures.KeySigner(signatures.generate()))
    dev.boot()
    for i in range(SEGMENTS - 1):
        dev.segment(size=rng.randrange(50_000, 250_000), markers=[1] if i % 7 == 3 else ())
    gateway, server = Gateway(), signatures.KeySigner(signatures.generate())
    steps = []
    for m in dev.manifests:
        media = m.media
        arrival = Arrival(dev.device, m.seq, m.hash.hex(), envelope(dev, m), media["sha256"] if media else None,
                          media["size"] if media else 0, bool(m.fields["markers"]), [])
        steps.append(Step(arrival, dev.dir / media["name"] if media else None,
                          dock_receipt(gateway, [arrival], dev.now_ns), server_receipt(server, arrival)))
    return steps


def _check(root: Path, plan: list[Step], seen: Seen) -> None:
    """Reopen the spool (recovery runs) and check it against what the child saw done."""
    with Spool(root) as spool:
        held = set()
        for step in plan:
            a = step.arrival
            row = spool.get(a.manifest_hash)
            if row is None:
                assert a.seq not in seen.arrived, f"seq {a.seq} arrived, then vanished"
                continue
            if row.server_receipt is None and a.media_sha256 is not None:
                assert row.path is not None and row.path.exists(), f"seq {a.seq}: a row without its file"
                assert hashlib.sha256(row.path.read_bytes()).hexdigest() == a.media_sha256
                held.add(row.path)
            if a.seq in seen.receipted:
                assert row.dock_receipt == step.dock_receipt
            if a.seq in seen.uploaded:
                assert row.server_receipt == step.server_receipt and row.path is None
        on_disk = {p for p in (root / "media").rglob("*") if p.is_file()}
        assert on_disk == held, f"files without rows: {on_disk - held}"


def test_sigkills_during_arrive_and_uploaded_lose_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "liuhen.gateway.spool")
    seed = int(os.environ.get("LIUHEN_CRASH_SEED", time.time_ns() % 10**6))
    print(f"spool crash test seed {seed} (LIUHEN_CRASH_SEED reruns it)")
    rng = random.Random(seed)
    plan = _plan(tmp_path, rng)
    plan_path = tmp_path / "plan.pickle"
    plan_path.write_bytes(pickle.dumps(plan))
    root = tmp_path / "spool"
    seen, kills, finished = Seen(), 0, False
    command = [sys.executable, "-c", CHILD, str(root), str(plan_path)]
    while not finished:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        # Let it get a few steps further, then strike a moment later: kills spread over the whole run.
        steps = rng.randint(1, 4) if kills < KILLS else 10**9
        line = ""
        while steps and (line := proc.stdout.readline()) not in ("", "done\n"):
            seen.take(line.strip())
            steps -= 1
        finished = line == "done\n"
        if not finished:
            time.sleep(rng.uniform(0, 0.004))
            proc.kill()
            kills += 1
        for rest in proc.stdout.read().splitlines():
            seen.take(rest)
            finished = finished or rest == "done"
        proc.stdout.close()
        proc.wait(30)
        _check(root, plan, seen)
    recoveries = [r.getMessage() for r in caplog.records if "spool recovery" in r.getMessage()]
    print(f"{kills} kills; {len(recoveries)} reopenings finished an interrupted step: {recoveries}")
    assert kills >= KILLS // 2, "the child finished before most planned kills"
    with Spool(root) as spool:
        for i, step in enumerate(plan):
            row = spool.get(step.arrival.manifest_hash)
            assert row is not None and row.dock_receipt == step.dock_receipt
            assert (row.server_receipt is not None) == (i < len(plan) - KEEP)
        assert spool.backlog().count == KEEP
        assert spool.head("REC-0001") == (plan[-1].arrival.seq, plan[-1].arrival.manifest_hash)
