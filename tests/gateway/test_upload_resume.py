"""Uploads resume across gateway restarts: a real gateway process uploading its spool is SIGKILLed in the
middle of uploads, again and again; each new process resumes the upload under way at the server's offset
(HEAD on the URL the spool kept) instead of starting over, and in the end the server holds every segment
once, the spool none."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from gateway.identity import IdentityConfig, load_identity
from gateway.server_link import LinkConfig, ServerLink
from gateway.spool import Spool
from gateway.uploader import UploadConfig, Uploader

SERVER = "srv-test"
CHUNK = 64 * 1024
KILLS = 4
# The child imports this module: it must stay light (no server or test helpers at import).
CHILD = "import sys; from tests.gateway.test_upload_resume import child; child(*sys.argv[1:])"


def child(spool_root: str, key_file: str, server_url: str) -> None:
    """A gateway process that uploads its spool, one segment at a time in small chunks, then ends."""
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    identity = load_identity(IdentityConfig("GW-1", Path(key_file)))
    with Spool(Path(spool_root)) as spool:
        link = ServerLink(LinkConfig(server_url=server_url, server_id=SERVER), identity)
        uploader = Uploader(spool, link, UploadConfig(concurrency=1, chunk_size=CHUNK))
        asyncio.run(uploader.run(until_empty=True))


def _uploads(upload_dir: Path) -> list[tuple[int, int]]:
    """(bytes received, length) of each upload the server holds."""
    found = []
    for info in upload_dir.glob("*.info"):
        part = info.with_suffix(".part")
        found.append((part.stat().st_size if part.exists() else 0, json.loads(info.read_text())["length"]))
    return found


def _under_way(upload_dir: Path, baseline: int) -> bool:
    """Whether bytes arrived since `baseline` and an upload has some of its bytes, not all."""
    uploads = _uploads(upload_dir)
    return sum(got for got, _ in uploads) > baseline and any(0 < got < length for got, length in uploads)


def test_a_gateway_killed_mid_upload_resumes_and_loses_nothing(tmp_path: Path) -> None:
    # Imported here, not at the top: the child imports this module and must start fast.
    from tests.gateway.test_spool import dock
    from tests.gateway.test_upload import open_station

    seed = int(os.environ.get("LIUHEN_CRASH_SEED", time.time_ns() % 10**6))
    print(f"upload kill test seed {seed} (LIUHEN_CRASH_SEED reruns it)")
    rng = random.Random(seed)
    with open_station(tmp_path) as station:
        rec = station.recorder("REC-0001", segments=4, size=1_500_000)
        dock(station.spool, station.gateway, rec, rec.manifests)
        station.spool.close()
        upload_dir = station.server.services.config.upload_dir
        command = [sys.executable, "-c", CHILD, str(station.spool.root), str(station.folder / "gateway.key"),
                   station.server.url]
        logs, kills = [], 0
        while kills < KILLS:
            baseline = sum(got for got, _ in _uploads(upload_dir))
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            # Strike while an upload is part way, once this process has sent some bytes, a random moment later.
            deadline = time.monotonic() + 60
            while not _under_way(upload_dir, baseline) and proc.poll() is None:
                assert time.monotonic() < deadline, "no upload got under way"
                time.sleep(0.002)
            time.sleep(rng.uniform(0, 0.05))
            ended = proc.poll() is not None
            proc.kill()
            out, _ = proc.communicate(timeout=30)
            logs.append(out)
            assert not ended, f"the gateway ended before it was killed:\n{out}"
            kills += 1
        last = subprocess.run(command, capture_output=True, text=True, timeout=120)
        logs.append(last.stdout + last.stderr)
        assert last.returncode == 0, logs[-1]

        resumed = [line for out in logs for line in out.splitlines() if "resuming its upload at byte" in line]
        print(f"{kills} kills; resumed: {resumed}")
        assert resumed, "no upload resumed:\n" + "\n".join(logs)
        # No upload was started over: each manifest has one complete upload, and any other upload is one a
        # kill left before its first byte (between its creation and the spool keeping its URL).
        uploads = _uploads(upload_dir)
        assert sum(got == length for got, length in uploads) == len(rec.manifests)
        assert all(got in (0, length) for got, length in uploads), uploads
        rows = station.stored()
        assert sorted(r["manifest"] for r in rows) == sorted(m.hash.hex() for m in rec.manifests)
        assert {r["status"] for r in rows} == {"stored"}
        blobs = station.server.services.blobs
        for m in rec.manifests:
            if m.media:
                data = b"".join(blobs.read_range(m.media["sha256"], 0, m.media["size"]))
                assert hashlib.sha256(data).hexdigest() == m.media["sha256"]
        with Spool(station.spool.root) as spool:
            assert spool.backlog().count == 0 and not any((spool.root / "media").rglob("*.*"))
