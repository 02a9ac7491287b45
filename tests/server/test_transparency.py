"""The server's log in the index database agrees with the reference tree at every size, its tiles
are the C2SP tiles of that tree, and its checkpoints and proof bundles verify."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from protocol.tlog import merkle
from protocol.tlog.checkpoint import open_checkpoint
from protocol.tlog.proof_bundle import verify_bundle_entry
from protocol.tlog.tiles import ENTRIES_LEVEL, Tile, decode_entry_bundle, tile_content, tiles_for_size
from server.database import Database, upgrade
from server.identity import create_key, load_identity
from server.transparency import LogError, TransparencyLog


@pytest.fixture
def log_db(db_url: str, tmp_path: Path):
    create_key(tmp_path / "server.key")
    identity = load_identity(tmp_path / "server.key", "srv-test", "liuhen.test/log")
    db = Database(db_url)
    upgrade(db.engine)
    log = TransparencyLog(identity)
    with db.write() as conn:
        log.initialize(conn, 1)
    yield db, log
    db.close()


def test_log_matches_reference_tree_across_batches(log_db) -> None:
    db, log = log_db
    rng = random.Random(7)
    reference = merkle.MemoryTree()
    entries: list[bytes] = []
    # Batches of odd sizes cross tile boundaries at level 0 and level 1 (65536 would be too slow here).
    sizes = [1, 1, 3, 250, 1, 1, 300, 257, 511, 1, 2000, 256 * 3]
    for batch in sizes:
        new = [rng.randbytes(rng.randint(1, 300)) for _ in range(batch)]
        with db.write() as conn:
            first = log.append(conn, [("test", e) for e in new], 2)
        assert first == len(entries)
        entries.extend(new)
        for e in new:
            reference.append(e)
        with db.read() as conn:
            size, note = log.checkpoint(conn)
            checkpoint, _ = open_checkpoint(note, "liuhen.test/log", [log.identity.vkey])
            assert size == checkpoint.size == len(entries)
            assert checkpoint.root == merkle.tree_root(reference, size)
    with db.read() as conn:
        size = len(entries)
        for tile in tiles_for_size(size):
            assert log.read_tile(conn, tile) == tile_content(reference, tile)
        for index in rng.sample(range(size), 40):
            bundle = log.proof_bundle(conn, index)
            verify_bundle_entry(bundle, entries[index], "liuhen.test/log", [log.identity.vkey])
        old = rng.randrange(1, size)
        proof = log.consistency_proof(conn, old, size)
        merkle.verify_consistency(old, size, merkle.tree_root(reference, old), merkle.tree_root(reference, size),
                                  proof)
        bundle = log.entry_bundle(conn, Tile(ENTRIES_LEVEL, 1))
        assert decode_entry_bundle(bundle) == entries[256:512]


def test_reads_beyond_the_log_are_refused(log_db) -> None:
    db, log = log_db
    with db.write() as conn:
        log.append(conn, [("test", b"x")] * 3, 2)
    with db.read() as conn:
        with pytest.raises(LogError):
            log.read_tile(conn, Tile(0, 0, 4))
        with pytest.raises(LogError):
            log.entry_bundle(conn, Tile(ENTRIES_LEVEL, 0, 4))
        with pytest.raises(LogError):
            log.proof_bundle(conn, 3)
        assert log.read_tile(conn, Tile(0, 0, 2)) == merkle.leaf_hash(b"x") * 2


def test_a_failed_transaction_leaves_the_log_as_it_was(log_db) -> None:
    db, log = log_db
    with db.write() as conn:
        log.append(conn, [("test", b"a")], 2)
    with pytest.raises(RuntimeError), db.write() as conn:
        log.append(conn, [("test", b"b")], 3)
        raise RuntimeError("crash before commit")
    with db.read() as conn:
        assert log.checkpoint(conn)[0] == 1
    with db.write() as conn:
        assert log.append(conn, [("test", b"c")], 4) == 1


def test_server_key_must_be_private_and_ed25519(tmp_path: Path) -> None:
    from protocol import signatures
    from server.identity import IdentityError

    path = tmp_path / "k"
    create_key(path)
    with pytest.raises(IdentityError, match="already exists"):
        create_key(path)
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="readable by others"):
        load_identity(path, "s", "o")
    ec = tmp_path / "ec"
    ec.write_bytes(signatures.private_pem(signatures.generate(signatures.ES256)))
    ec.chmod(0o600)
    with pytest.raises(IdentityError, match="Ed25519"):
        load_identity(ec, "s", "o")
    with pytest.raises(IdentityError, match="server init"):
        load_identity(tmp_path / "missing", "s", "o")
