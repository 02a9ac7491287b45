"""The public log over HTTP: checkpoint, C2SP tiles and entry bundles equal to the reference tree's, proof
bundles that verify, clear refusals, and `liuhen log monitor` reading it all."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from liuhen.cli import main
from protocol import signatures
from protocol.tlog import merkle
from protocol.tlog.checkpoint import open_checkpoint
from protocol.tlog.proof_bundle import verify_bundle_entry
from protocol.tlog.tiles import ENTRIES_LEVEL, Tile, encode_entry_bundle, tile_content, tiles_for_size
from protocol.trust import TrustList
from server.schema import log_entries
from simulators.synthetic import SyntheticDevice
from tests.server.footage import Gateway, enroll_keys, envelope, media_path, tus_client, uploader
from tests.server.harness import InProcessServer

SIZE = 300  # one full level-0 tile and a partial one; a partial level-1 tile


def test_tiles_bundles_checkpoint_and_proofs_match_the_reference_tree(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s, url = server.services, server.url + "/log"
        rng = random.Random(3)
        with s.db.write() as conn:
            s.log.append(conn, [("test", rng.randbytes(rng.randint(1, 200))) for _ in range(SIZE - 1)], s.clock())
            entries = conn.execute(select(log_entries.c.entry).order_by(log_entries.c.idx)).scalars().all()
        assert len(entries) == SIZE  # the server key's enrollment came first
        reference = merkle.MemoryTree()
        for entry in entries:
            reference.append(entry)

        checkpoint = requests.get(f"{url}/checkpoint", timeout=10)
        assert checkpoint.headers["Content-Type"].startswith("text/plain")
        opened, _ = open_checkpoint(checkpoint.content, s.identity.origin, [s.identity.vkey])
        assert (opened.size, opened.root) == (SIZE, merkle.tree_root(reference, SIZE))

        wanted = tiles_for_size(SIZE)
        assert [t.path for t in wanted] == ["tile/0/000", "tile/0/001.p/44", "tile/1/000.p/1"]
        bundles = [Tile(ENTRIES_LEVEL, 0), Tile(ENTRIES_LEVEL, 1, 44), Tile(ENTRIES_LEVEL, 1, 10)]
        for tile in [*wanted, Tile(0, 1, 10), *bundles]:  # and partial tiles of an older size
            r = requests.get(f"{url}/{tile.path}", timeout=10)
            assert r.status_code == 200, tile.path
            if tile.level == ENTRIES_LEVEL:
                first = tile.index * 256
                assert r.content == encode_entry_bundle(entries[first:first + tile.width]), tile.path
            else:
                assert r.content == tile_content(reference, tile), tile.path
            full = tile.width == 256
            assert r.headers["Cache-Control"] == ("public, max-age=31536000, immutable" if full else "no-store")

        for path, status in [("tile/0/001", 404), ("tile/0/002.p/1", 404), ("tile/entries/002.p/1", 404),
                             ("tile/1/000", 404), ("tile/0/001.p/45", 404), ("tile/0/1", 400),
                             ("tile/0/000.p/256", 400), ("tile/x/000", 400), ("tile/0/x000", 400)]:
            r = requests.get(f"{url}/{path}", timeout=10)
            assert r.status_code == status, path
            if status == 400:
                assert r.json()["error"] == "tlog.tile_path_malformed"

        for index in [0, 1, 255, 256, SIZE - 1]:
            r = requests.get(f"{url}/proof/{index}", timeout=10)
            assert r.status_code == 200
            verify_bundle_entry(r.content, entries[index], s.identity.origin, [s.identity.vkey])
        for index, status in [(str(SIZE), 404), ("01", 400), ("-1", 400), ("x", 400)]:
            assert requests.get(f"{url}/proof/{index}", timeout=10).status_code == status, index


def test_the_log_monitor_reads_the_published_log(db_url: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        s = server.services
        gateway, signer = Gateway(), signatures.KeySigner(signatures.generate())
        enroll_keys(s, devices={"REC-0001": signer}, gateways=[gateway])
        token = gateway.sign_in(server.url, "srv-test", s.clock())
        dev = SyntheticDevice(tmp_path / "store", "REC-0001", signer)
        dev.boot()
        dev.segment()
        dev.segment(markers=[2])
        empty = tmp_path / "empty"
        empty.write_bytes(b"")
        trust = tmp_path / "trust.json"
        trust.write_bytes(TrustList([s.identity.trusted_key()]).to_bytes())
        args = ["log", "monitor", f"{server.url}/log", "--state", str(tmp_path / "state.json"), "--keys", str(trust)]
        dock = gateway.dock_receipt(dev, dev.manifests)
        for round_, manifests in enumerate([dev.manifests[:2], dev.manifests[2:]]):
            for m in manifests:
                uploader(tus_client(server.url, token), media_path(dev, m, empty), envelope(dev, m), dock).upload()
            key = ["--key", str(s.identity.vkey)] if round_ == 0 else []
            code = main([*args, *key])
            out = capsys.readouterr().out
            assert code == 0, out
