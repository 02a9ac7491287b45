"""The worked examples of the transparency-log section of the protocol document, checked against the code."""

from __future__ import annotations

from protocol.tlog.checkpoint import Checkpoint, NoteSigner, open_checkpoint, parse_vkey, sign_checkpoint
from protocol.tlog.merkle import (
    MemoryTree,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)
from protocol.tlog.proof_bundle import ProofBundle, verify_bundle_entry
from protocol.tlog.tiles import ENTRIES_LEVEL, Tile, parse_tile_path
from tests.doc_examples import example, example_bytes

# The first five Certificate Transparency test leaves, as the document names them.
ENTRIES = [bytes.fromhex(x) for x in ("", "00", "10", "2021", "3031")]
ORIGIN = "example.com/liuhen-test-log"


def _tree() -> MemoryTree:
    tree = MemoryTree()
    for e in ENTRIES:
        tree.append(e)
    return tree


def _hashes(name: str) -> list[bytes]:
    return [bytes.fromhex(line) for line in example(name).split()]


def _signer() -> NoteSigner:
    return NoteSigner.from_seed(ORIGIN, example_bytes("tlog-test-key-seed"))


def test_tree_hash_examples() -> None:
    tree = _tree()
    assert _hashes("tlog-leaf-hashes") == [leaf_hash(e) for e in ENTRIES[:3]]
    assert example_bytes("tlog-root-3") == tree_root(tree, 3)
    assert example_bytes("tlog-root-5") == tree_root(tree, 5)


def test_proof_examples() -> None:
    tree = _tree()
    root_2, root_5 = tree_root(tree, 2), example_bytes("tlog-root-5")
    proof = _hashes("tlog-inclusion-1-of-5")
    assert proof == inclusion_proof(tree, 1, 5)
    verify_inclusion(leaf_hash(ENTRIES[1]), 1, 5, proof, root_5)
    proof = _hashes("tlog-consistency-2-to-5")
    assert proof == consistency_proof(tree, 2, 5)
    verify_consistency(2, 5, root_2, root_5, proof)


def test_key_and_checkpoint_examples() -> None:
    signer = _signer()
    vkey = example("tlog-vkey").strip()
    assert str(signer.verifier) == vkey
    signed = example("tlog-checkpoint").encode()
    assert signed == sign_checkpoint(Checkpoint(ORIGIN, 5, example_bytes("tlog-root-5")), [signer])
    checkpoint, _ = open_checkpoint(signed, ORIGIN, [parse_vkey(vkey)])
    assert checkpoint.size == 5


def test_proof_bundle_example() -> None:
    data = example("tlog-proof-bundle").encode()
    bundle = ProofBundle(1, tuple(_hashes("tlog-inclusion-1-of-5")), example("tlog-checkpoint").encode())
    assert data == bundle.encode()
    verify_bundle_entry(data, ENTRIES[1], ORIGIN, [parse_vkey(example("tlog-vkey").strip())])


def test_tile_path_examples() -> None:
    for line in example("tlog-tile-paths").splitlines():
        level, index, width, path = line.split()
        tile = Tile(ENTRIES_LEVEL if level == "entries" else int(level), int(index), int(width))
        assert tile.path == path
        assert parse_tile_path(path) == tile
