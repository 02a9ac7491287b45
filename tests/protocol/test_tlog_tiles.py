"""C2SP tlog-tiles: paths, which tiles a tree has, tile contents, entry bundles, proofs served from tiles."""

from __future__ import annotations

import hashlib
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.tlog.merkle import (
    BAD_TREE_SIZE,
    INDEX_OUT_OF_RANGE,
    MemoryTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    subtree_hash,
    tree_root,
)
from protocol.tlog.tiles import (
    ENTRIES_LEVEL,
    ENTRY_BUNDLE_MALFORMED,
    TILE_MALFORMED,
    TILE_PATH_MALFORMED,
    Tile,
    TileError,
    TileHashSource,
    decode_entry_bundle,
    encode_entry_bundle,
    parse_tile_path,
    tile_content,
    tiles_for_size,
)


@pytest.mark.parametrize(
    ("tile", "path"),
    [
        (Tile(0, 1234067), "tile/0/x001/x234/067"),  # the example in c2sp.org/tlog-tiles
        (Tile(0, 0), "tile/0/000"),
        (Tile(3, 999), "tile/3/999"),
        (Tile(1, 1000), "tile/1/x001/000"),
        (Tile(1, 5, 17), "tile/1/005.p/17"),
        (Tile(63, 1, 1), "tile/63/001.p/1"),
        (Tile(0, 1234067, 255), "tile/0/x001/x234/067.p/255"),
        (Tile(ENTRIES_LEVEL, 1234067), "tile/entries/x001/x234/067"),
        (Tile(ENTRIES_LEVEL, 0, 3), "tile/entries/000.p/3"),
    ],
)
def test_tile_paths(tile: Tile, path: str) -> None:
    assert tile.path == path
    assert parse_tile_path(path) == tile


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1234067",
        "tile/0/x001/234/067",
        "tile/0/x000/005",
        "tile/0/x001/x234/x067",
        "tile/0/0000",
        "tile/0/05",
        "tile/00/000",
        "tile/64/000",
        "tile/-1/000",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/0/000.p/017",
        "tile/0/000.p/",
        "tile/0/000.p",
        "tile/0/",
        "tile/0/abc",
        "tiles/0/000",
        "tile/data/000",
        "/tile/0/000",
        "tile/0/000/",
        "tile/0/\u0660\u0660\u0660",
    ],
)
def test_non_canonical_tile_paths_are_rejected(path: str) -> None:
    with pytest.raises(TileError) as e:
        parse_tile_path(path)
    assert e.value.code == TILE_PATH_MALFORMED


def test_impossible_tiles_have_no_path() -> None:
    for tile in (Tile(64, 0), Tile(-2, 0), Tile(0, -1), Tile(0, 0, 0), Tile(0, 0, 257)):
        with pytest.raises(TileError):
            _ = tile.path


def test_tiles_of_the_spec_examples() -> None:
    # c2sp.org/tlog-tiles: "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial
    # level 0 tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and one partial
    # level 2 tile of width 1", and "a tree of size 256 [by] a full level 0 tile and a partial level 1 tile of
    # width 1".
    tiles = tiles_for_size(70_000)
    assert tiles == [
        *(Tile(0, n) for n in range(273)),
        Tile(0, 273, 112),
        Tile(1, 0),
        Tile(1, 1, 17),
        Tile(2, 0, 1),
    ]
    assert tiles_for_size(256) == [Tile(0, 0), Tile(1, 0, 1)]
    assert tiles_for_size(0) == []
    assert tiles_for_size(1) == [Tile(0, 0, 1)]


def test_tiles_since_an_earlier_size_are_the_new_and_grown_ones() -> None:
    rng = random.Random(6962)
    sizes = [0, 1, 255, 256, 257, 511, 512, 65_535, 65_536, 65_537, 70_000, 131_072]
    pairs = [(a, b) for a in sizes for b in sizes if a <= b]
    pairs += [(a, b) for a, b in (sorted((rng.randrange(2**17), rng.randrange(2**17))) for _ in range(30))]
    for since, size in pairs:
        before = set(tiles_for_size(since))
        assert tiles_for_size(size, since) == [t for t in tiles_for_size(size) if t not in before]
    with pytest.raises(ProofError) as e:
        tiles_for_size(5, 6)
    assert e.value.code == BAD_TREE_SIZE


SIZE = 70_000
TREE = MemoryTree()
for _i in range(SIZE):
    TREE.append_hash(hashlib.sha256(_i.to_bytes(4, "big")).digest())
# The tiles of the tree sizes tested below, partial ones included.
SIZES = (1, 255, 256, 257, 65_536, 65_537, SIZE)
STORE = {t: tile_content(TREE, t) for t in {t for s in SIZES for t in tiles_for_size(s)}}


def test_tile_content_is_the_hashes_of_the_subtrees_below() -> None:
    assert STORE[Tile(0, 5)] == b"".join(TREE.leaf(i) for i in range(5 * 256, 6 * 256))
    level1 = STORE[Tile(1, 1, 17)]
    assert len(level1) == 17 * 32
    assert level1[32:64] == subtree_hash(TREE, (256 + 1) * 256, (256 + 2) * 256)
    assert STORE[Tile(2, 0, 1)] == subtree_hash(TREE, 0, 65_536)
    with pytest.raises(TileError):
        tile_content(TREE, Tile(ENTRIES_LEVEL, 0))


@pytest.mark.parametrize("size", SIZES)
def test_proofs_from_tiles_equal_proofs_from_the_tree(size: int) -> None:
    source = TileHashSource(size, STORE.__getitem__)
    assert tree_root(source, size) == tree_root(TREE, size)
    rng = random.Random(size)
    for index in {0, size - 1, size // 2, *(rng.randrange(size) for _ in range(20))}:
        assert source.leaf(index) == TREE.leaf(index)
        assert inclusion_proof(source, index, size) == inclusion_proof(TREE, index, size)
        assert consistency_proof(source, index + 1, size) == consistency_proof(TREE, index + 1, size)


def test_proofs_from_tiles_are_fast() -> None:
    source = TileHashSource(SIZE, STORE.__getitem__)
    start = time.perf_counter()
    for index in range(0, SIZE, 1000):
        inclusion_proof(source, index, SIZE)
    assert (time.perf_counter() - start) / 70 < 0.005


def test_tile_source_rejects_bad_tiles_and_positions() -> None:
    source = TileHashSource(300, lambda tile: bytes(31))
    with pytest.raises(TileError) as e:
        source.leaf(0)
    assert e.value.code == TILE_MALFORMED
    source = TileHashSource(300, STORE.__getitem__)
    with pytest.raises(ProofError) as pe:
        source.subtree(256, 512)
    assert pe.value.code == INDEX_OUT_OF_RANGE


def test_entry_bundles() -> None:
    entries = [b"", b"a", bytes(300), bytes(0xFFFF)]
    data = encode_entry_bundle(entries)
    assert data[:5] == bytes.fromhex("0000000161")
    assert decode_entry_bundle(data) == entries
    # Each entry hashes to its hash in the level 0 tile.
    tree = MemoryTree()
    for e in entries:
        tree.append(e)
    assert tile_content(tree, Tile(0, 0, len(entries))) == b"".join(leaf_hash(e) for e in entries)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        [bytes(0x10000)],
        [b"x"] * 257,
    ],
)
def test_entry_bundles_that_cannot_be_written(bad: list[bytes]) -> None:
    with pytest.raises(TileError) as e:
        encode_entry_bundle(bad)
    assert e.value.code == ENTRY_BUNDLE_MALFORMED


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x02a", b"\x00\x01a\x00", b"\x00\x00" * 257])
def test_malformed_entry_bundles_are_rejected(data: bytes) -> None:
    with pytest.raises(TileError) as e:
        decode_entry_bundle(data)
    assert e.value.code == ENTRY_BUNDLE_MALFORMED


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="tile/entrsxp.0123456789", max_size=40))
def test_arbitrary_paths_only_ever_raise_tile_errors(path: str) -> None:
    try:
        tile = parse_tile_path(path)
    except TileError:
        return
    assert tile.path == path


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=70), min_size=1, max_size=256))
def test_entry_bundles_round_trip(entries: list[bytes]) -> None:
    assert decode_entry_bundle(encode_entry_bundle(entries)) == entries
