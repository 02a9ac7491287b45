"""Done means: a real `liuhen server run` is SIGKILLed at random instants while a gateway uploads a shift
with tuspy, resuming after every restart; in the end every segment is stored exactly once with its blob, the
log holds exactly the entries expected and proves every one of them, and no blob is left that no row names."""

from __future__ import annotations

import base64
import hashlib
import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import select
from tusclient.fingerprint.interface import Fingerprint
from tusclient.storage.filestorage import FileStorage

from protocol import manifest, receipts, signatures
from protocol.manifest import Manifest
from protocol.tlog.checkpoint import open_checkpoint, parse_vkey
from protocol.tlog.proof_bundle import verify_bundle_entry
from server.app import open_services
from server.blobs import FileBlobStore
from server.cli import config_or_exit
from server.schema import log_entries, segments
from simulators.synthetic import SyntheticDevice
from tests.server.footage import (
    RECEIPT_HEADER,
    Gateway,
    enroll_keys,
    envelope,
    media_path,
    server_trust,
    tus_client,
    uploader,
)
from tests.server.harness import ServerProcess, write_config

SEGMENTS = 36  # plus 2 boots, a recovery and a storage-full record: 40 manifests
PER_DOCKING = 10  # manifests per dock receipt
CHUNK = 4096
DEADLINE_S = 150


class ByManifest(Fingerprint):
    """tuspy keys its URL storage by a fingerprint of the file; several records share the empty file, so the
    gateway keys by manifest hash instead."""

    def __init__(self, key: str) -> None:
        self.key = key

    def get_fingerprint(self, fs: Any) -> str:
        return self.key


def shift(folder: Path, signer: signatures.KeySigner, rng: random.Random) -> SyntheticDevice:
    dev = SyntheticDevice(folder, "REC-0001", signer, seed=rng.randrange(1000))
    dev.boot()
    for i in range(SEGMENTS // 2):
        dev.segment(size=rng.randrange(20_000, 100_000), markers=[1] if i % 5 == 0 else ())
    lost = dev.reserve()
    dev.boot(reason="power-loss")
    dev.record(manifest.RECOVERY, {"last_seq": lost.start - 1, "missing": [[lost.start, lost.stop - 1]],
                                   "partial": []})
    for _ in range(SEGMENTS - SEGMENTS // 2):
        dev.segment(size=rng.randrange(20_000, 100_000))
    dev.record(manifest.STORAGE_FULL, {})
    return dev


class ResumingGateway:
    """Uploads manifests one after another, through whatever happens to the server, as a gateway does."""

    def __init__(self, url: str, token: str, storage: Path, dev: SyntheticDevice, docks: dict[int, bytes],
                 empty: Path) -> None:
        self.url, self.token, self.dev, self.docks, self.empty = url, token, dev, docks, empty
        self.storage = FileStorage(str(storage))
        self.receipts: dict[int, bytes] = {}
        self.working_on = -1  # index in the chain of the manifest being uploaded
        self.resumed_mid_file = 0
        self.failures: Counter[str] = Counter()
        self.error: BaseException | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            deadline = time.monotonic() + DEADLINE_S
            for index, m in enumerate(self.dev.manifests):
                self.working_on = index
                while m.seq not in self.receipts:
                    assert time.monotonic() < deadline, f"seq {m.seq} never got a receipt: {self.failures}"
                    try:
                        self.receipts[m.seq] = self.upload(m)
                    except Exception as exc:  # the server died under us: start over from what it holds
                        self.failures[type(exc).__name__] += 1
                        time.sleep(0.05)
        except BaseException as exc:
            self.error = exc
        finally:
            self.storage.close()
            self.done.set()

    def upload(self, m: Manifest) -> bytes:
        path = media_path(self.dev, m, self.empty)
        size = path.stat().st_size
        key = m.hash.hex()
        up = uploader(tus_client(self.url, self.token), path, envelope(self.dev, m), self.docks[m.seq],
                      chunk_size=CHUNK, store_url=True, url_storage=self.storage, fingerprinter=ByManifest(key))
        if 0 < up.offset < size:
            self.resumed_mid_file += 1
        up.upload()
        head = requests.head(up.url, headers={"Tus-Resumable": "1.0.0", "Authorization": f"Bearer {self.token}"},
                             timeout=10)
        if head.status_code in (404, 410):
            self.storage.remove_item(key)  # the upload is gone: make a new one
        if RECEIPT_HEADER not in head.headers:
            raise RuntimeError(f"HEAD answered {head.status_code} without a receipt")
        return base64.b64decode(head.headers[RECEIPT_HEADER])


def test_sigkills_during_uploads_lose_nothing_and_duplicate_nothing(db_url: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("LIUHEN_CRASH_SEED", time.time_ns() % 10**6))
    print(f"crash test seed {seed} (LIUHEN_CRASH_SEED reruns it)")
    rng = random.Random(seed)
    config_path = write_config(tmp_path, db_url, orphan_grace_seconds=0)
    server = ServerProcess(config_path)
    vkey = parse_vkey(server.init().split("log verifier key (publish it): ")[1].strip())
    config = config_or_exit(config_path)
    gateway, signer = Gateway(), signatures.KeySigner(signatures.generate())
    s = open_services(config)
    try:
        enroll_keys(s, devices={"REC-0001": signer}, gateways=[gateway])
    finally:
        s.db.close()
    stray = tmp_path / "stray"
    stray.write_bytes(b"a blob no row will ever name")
    FileBlobStore(config.blob_dir).put_file(stray, hashlib.sha256(stray.read_bytes()).hexdigest())

    dev = shift(tmp_path / "store", signer, rng)
    chain = dev.manifests
    assert len(chain) == 40
    docks = {}
    for i in range(0, len(chain), PER_DOCKING):
        dock = gateway.dock_receipt(dev, chain[i:i + PER_DOCKING])
        docks |= {m.seq: dock for m in chain[i:i + PER_DOCKING]}
    empty = tmp_path / "empty"
    empty.write_bytes(b"")

    server.start()
    try:
        client = ResumingGateway(server.url, gateway.sign_in(server.url, "srv-test", time.time_ns()),
                                 tmp_path / "urls.json", dev, docks, empty)
        thread = threading.Thread(target=client.run, daemon=True)
        thread.start()
        # Each kill waits for the gateway to reach its own manifest, then strikes a random moment later: kills are
        # spread over the whole shift however fast uploads go, and none is wasted on a finished client. The last
        # target leaves ten manifests to go, so even a fast server is still uploading when its kill strikes.
        targets = sorted(rng.sample(range(len(chain) - 10), rng.randint(15, 25)))
        kills = 0
        for target in targets:
            while client.working_on < target and not client.done.wait(0.005):
                pass
            if client.done.wait(rng.uniform(0, 0.1)):
                break
            server.kill()
            kills += 1
            server.start()
        thread.join(DEADLINE_S)
        assert client.error is None, client.error
        print(f"{kills} kills; {client.resumed_mid_file} uploads resumed mid-file; client retries: "
              f"{dict(client.failures)}")
        assert kills >= 15, "the uploads finished before the planned kills"
        assert client.resumed_mid_file > 0

        # One more restart: startup recovery collects what no row names (the grace period is 0 here).
        server.stop()
        server.start()
        trust = server_trust(server.url)
        note = requests.get(f"{server.url}/log/checkpoint", timeout=10).content
        checkpoint, _ = open_checkpoint(note, config.origin, [vkey])
        for m in chain:
            receipt = receipts.open_receipt(client.receipts[m.seq], receipts.SERVER_TYPE, trust)
            assert (receipt["status"], receipt["manifest"]) == ("stored", m.hash.hex()), receipt.fields
            r = requests.get(f"{server.url}/log/proof/{receipt['log_index']}", timeout=10)
            verify_bundle_entry(r.content, envelope(dev, m), config.origin, [vkey])
    finally:
        server.stop()

    s = open_services(config)
    try:
        with s.db.read() as conn:
            rows = conn.execute(select(segments.c.seq, segments.c.manifest, segments.c.media_sha256,
                                       segments.c.status)).all()
            kinds = Counter(conn.execute(select(log_entries.c.kind)).scalars())
            manifests_logged = Counter(conn.execute(select(log_entries.c.entry)
                                                    .where(log_entries.c.kind == "manifest")).scalars())
    finally:
        s.db.close()
    assert sorted(r.seq for r in rows) == [m.seq for m in chain]  # each exactly once
    assert {r.manifest for r in rows} == {m.hash.hex() for m in chain} and {r.status for r in rows} == {"stored"}
    blobs = FileBlobStore(config.blob_dir)
    named = {r.media_sha256 for r in rows if r.media_sha256}
    assert named == {m.media["sha256"] for m in chain if m.media}
    for sha in named:
        assert hashlib.sha256(b"".join(blobs.read_range(sha, 0, blobs.size(sha) or 0))).hexdigest() == sha
    assert set(blobs.older_than(time.time_ns() + 10**12)) == named  # no orphan left, the stray one collected
    expected = {"enrollment": 3, "dock-receipt": len(chain) // PER_DOCKING, "manifest": len(chain)}
    assert dict(kinds) == expected and checkpoint.size == sum(expected.values())
    assert set(manifests_logged.values()) == {1}
