"""RFC 6962 / RFC 9162 Merkle trees: known answers, exhaustive small trees, random corruptions."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.tlog.merkle import (
    BAD_HASH_LENGTH,
    BAD_PROOF_LENGTH,
    BAD_TREE_SIZE,
    CONSISTENCY_MISMATCH,
    EMPTY_ROOT,
    INCLUSION_MISMATCH,
    INDEX_OUT_OF_RANGE,
    NOT_A_SUBTREE,
    MemoryTree,
    ProofError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    merkle_root,
    node_hash,
    root_from_inclusion_proof,
    subtree_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)

h = bytes.fromhex

# ---------------------------------------------------------------------------------------------------------------
# Known answers. Leaves, roots and node hashes: github.com/transparency-dev/merkle testonly/constants.go (the same
# values as kInputs / kSHA256Roots in github.com/google/certificate-transparency cpp/merkletree/merkle_tree_test.cc).
# Inclusion paths and consistency proofs: kSHA256Paths / kSHA256Proofs in that merkle_tree_test.cc, whose leaf
# numbers are 1-based; the indices below are 0-based.

CT_LEAVES = [h(x) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                            "606162636465666768696a6b6c6d6e6f")]  # fmt: skip

CT_ROOTS = {
    0: h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    1: h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    2: h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    3: h("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    4: h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    5: h("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    6: h("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    7: h("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    8: h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
}

# NodeHashes()[level][k]: the hash of leaves [k * 2**level, (k + 1) * 2**level).
CT_NODES = [
    [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
     h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
     h("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
     h("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
     h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
     h("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
     h("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
     h("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1")],
    [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
     h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
     h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
     h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0")],
    [h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
     h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")],
    [h("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")],
]  # fmt: skip

# (index, tree size, path)
CT_PATHS = [
    (0, 1, []),
    (0, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [h("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]  # fmt: skip

# (old size, new size, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, [h("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [h("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            h("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            h("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [h("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            h("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]  # fmt: skip


def _tree(entries: list[bytes]) -> MemoryTree:
    tree = MemoryTree()
    for e in entries:
        tree.append(e)
    return tree


CT_TREE = _tree(CT_LEAVES)


def test_leaf_and_node_hashes_match_the_published_values() -> None:
    assert [leaf_hash(e) for e in CT_LEAVES] == CT_NODES[0]
    for level in range(1, len(CT_NODES)):
        below = CT_NODES[level - 1]
        assert [node_hash(below[2 * k], below[2 * k + 1]) for k in range(len(below) // 2)] == CT_NODES[level]
        for k, want in enumerate(CT_NODES[level]):
            assert subtree_hash(CT_TREE, k << level, (k + 1) << level) == want


@pytest.mark.parametrize("size", sorted(CT_ROOTS))
def test_roots_match_the_published_values(size: int) -> None:
    assert merkle_root([leaf_hash(e) for e in CT_LEAVES[:size]]) == CT_ROOTS[size]
    assert tree_root(CT_TREE, size) == CT_ROOTS[size]
    assert tree_root(_tree(CT_LEAVES[:size]), size) == CT_ROOTS[size]


@pytest.mark.parametrize(("index", "size", "path"), CT_PATHS)
def test_inclusion_paths_match_the_published_values(index: int, size: int, path: list[bytes]) -> None:
    assert inclusion_proof(CT_TREE, index, size) == path
    verify_inclusion(leaf_hash(CT_LEAVES[index]), index, size, path, CT_ROOTS[size])


@pytest.mark.parametrize(("old", "new", "proof"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_published_values(old: int, new: int, proof: list[bytes]) -> None:
    assert consistency_proof(CT_TREE, old, new) == proof
    verify_consistency(old, new, CT_ROOTS[old], CT_ROOTS[new], proof)


def test_empty_tree() -> None:
    assert merkle_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert tree_root(MemoryTree(), 0) == EMPTY_ROOT
    assert consistency_proof(CT_TREE, 0, 8) == []
    verify_consistency(0, 8, EMPTY_ROOT, CT_ROOTS[8], [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    _fails(CONSISTENCY_MISMATCH, verify_consistency, 0, 8, CT_ROOTS[1], CT_ROOTS[8], [])


# ---------------------------------------------------------------------------------------------------------------
# Reference implementations written straight from the RFC's recursive definitions (RFC 9162 §2.1.1, §2.1.3.1,
# §2.1.4.1), independent of the iterative code under test.


def _ref_split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _ref_mth(leaves: tuple[bytes, ...]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = _ref_split(len(leaves))
    return hashlib.sha256(b"\x01" + _ref_mth(leaves[:k]) + _ref_mth(leaves[k:])).digest()


def _ref_path(m: int, leaves: tuple[bytes, ...]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = _ref_split(len(leaves))
    if m < k:
        return [*_ref_path(m, leaves[:k]), _ref_mth(leaves[k:])]
    return [*_ref_path(m - k, leaves[k:]), _ref_mth(leaves[:k])]


def _ref_subproof(m: int, leaves: tuple[bytes, ...], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [_ref_mth(leaves)]
    k = _ref_split(n)
    if m <= k:
        return [*_ref_subproof(m, leaves[:k], complete), _ref_mth(leaves[k:])]
    return [*_ref_subproof(m - k, leaves[k:], False), _ref_mth(leaves[:k])]


MAX_N = 64
ENTRIES = tuple(b"liuhen entry %d" % i for i in range(MAX_N + 1))
TREE = _tree(list(ENTRIES))


@cache
def _root(n: int) -> bytes:
    return _ref_mth(ENTRIES[:n])


def _flip(value: bytes, bit: int) -> bytes:
    b = bytearray(value)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _fails(code: str | None, fn: Callable[..., object], *args: object) -> None:
    # A bare try is much cheaper than pytest.raises, and the exhaustive tests call this a quarter million times.
    try:
        fn(*args)
    except ProofError as e:
        assert code is None or e.code == code, (e.code, code)
    else:
        pytest.fail(f"{fn.__name__}{args[:2]} accepted what it must reject")


# A flipped bit changes the SHA-256 input of the step that uses that hash, so which bit is flipped matters only
# to SHA-256. Trees of up to 8 leaves get all 256 bits of every proof hash flipped; larger ones get the first and
# last bit and one that moves with the position, which keeps the whole run to a few seconds.
def _bits(n: int, k: int, j: int) -> range | tuple[int, ...]:
    return range(256) if n <= 8 else (0, 255, (n * 7 + k * 37 + j * 101) % 256)


def _other_sizes(n: int) -> set[int]:
    return {s for s in (n - 1, n + 1, 2 * n, n // 2, n + 7) if s >= 1 and s != n}


def _proof_mutants(proof: list[bytes], n: int, k: int) -> list[list[bytes]]:
    """Proofs one edit away from the proof for position k of a tree of n leaves: a flipped bit, a hash
    dropped, added, or swapped with its neighbour."""
    mutants = [[*proof[:j], _flip(p, bit), *proof[j + 1 :]] for j, p in enumerate(proof) for bit in _bits(n, k, j)]
    mutants += [proof[:-1], proof[1:]] if proof else []
    mutants += [[*proof, bytes(32)], [bytes(32), *proof], [*proof, _root(1)]]
    mutants += [[*proof[:j], proof[j + 1], proof[j], *proof[j + 2 :]] for j in range(len(proof) - 1)]
    return [m for m in mutants if m != proof]


@pytest.mark.parametrize("n", range(1, MAX_N + 1))
def test_every_inclusion_proof_verifies_and_every_corruption_fails(n: int) -> None:
    root = _root(n)
    assert tree_root(TREE, n) == root
    for i in range(n):
        leaf = leaf_hash(ENTRIES[i])
        proof = inclusion_proof(TREE, i, n)
        assert proof == _ref_path(i, ENTRIES[:n])
        verify_inclusion(leaf, i, n, proof, root)
        for bad in _proof_mutants(proof, n, i):
            _fails(None, verify_inclusion, leaf, i, n, bad, root)
        for j in {i - 1, i + 1, i ^ 1, i ^ 2, n, n + 1} - {i}:
            if j >= 0:
                _fails(None, verify_inclusion, leaf, j, n, proof, root)
        # A size comes with its own root in a checkpoint; the proof must not fit any other (size, root).
        for s in _other_sizes(n):
            _fails(None, verify_inclusion, leaf, i, s, proof, _root(s) if s <= MAX_N else root)
        _fails(INCLUSION_MISMATCH, verify_inclusion, leaf_hash(b"other"), i, n, proof, root)
        _fails(INCLUSION_MISMATCH, verify_inclusion, leaf, i, n, proof, _flip(root, 0))


@pytest.mark.parametrize("n", range(1, MAX_N + 1))
def test_every_consistency_proof_verifies_and_every_corruption_fails(n: int) -> None:
    new_root = _root(n)
    for m in range(1, n + 1):
        old_root = _root(m)
        proof = consistency_proof(TREE, m, n)
        assert proof == _ref_subproof(m, ENTRIES[:n], True)
        verify_consistency(m, n, old_root, new_root, proof)
        for bad in _proof_mutants(proof, n, m):
            _fails(None, verify_consistency, m, n, old_root, new_root, bad)
        for s in _other_sizes(m):
            if s <= n:
                _fails(None, verify_consistency, s, n, _root(s), new_root, proof)
        for s in _other_sizes(n):
            if s >= m and s <= MAX_N:
                _fails(None, verify_consistency, m, s, old_root, _root(s), proof)
        if m < n:
            _fails(CONSISTENCY_MISMATCH, verify_consistency, m, n, _flip(old_root, 3), new_root, proof)
            _fails(CONSISTENCY_MISMATCH, verify_consistency, m, n, old_root, _flip(new_root, 3), proof)
            _fails(None, verify_consistency, m, n, new_root, old_root, proof)


# ---------------------------------------------------------------------------------------------------------------
# Specific rejections, each with its code.


def test_inclusion_rejections_name_the_reason() -> None:
    leaf, root = leaf_hash(CT_LEAVES[0]), CT_ROOTS[8]
    path = CT_PATHS[1][2]
    _fails(INDEX_OUT_OF_RANGE, verify_inclusion, leaf, 8, 8, path, root)
    _fails(INDEX_OUT_OF_RANGE, verify_inclusion, leaf, -1, 8, path, root)
    _fails(INDEX_OUT_OF_RANGE, verify_inclusion, leaf, 0, 0, [], EMPTY_ROOT)
    _fails(BAD_PROOF_LENGTH, verify_inclusion, leaf, 0, 8, path[:2], root)
    _fails(BAD_PROOF_LENGTH, verify_inclusion, leaf, 0, 8, [*path, path[0]], root)
    _fails(BAD_PROOF_LENGTH, verify_inclusion, leaf, 0, 16, path, root)
    _fails(BAD_HASH_LENGTH, verify_inclusion, leaf, 0, 8, [path[0], path[1], b""], root)
    _fails(BAD_HASH_LENGTH, verify_inclusion, leaf[:31], 0, 8, path, root)
    _fails(BAD_HASH_LENGTH, verify_inclusion, leaf, 0, 8, path, root + b"\x00")
    _fails(INCLUSION_MISMATCH, verify_inclusion, leaf, 0, 8, list(reversed(path)), root)
    assert root_from_inclusion_proof(leaf, 0, 8, path) == root


def test_consistency_rejections_name_the_reason() -> None:
    old_root, new_root = CT_ROOTS[6], CT_ROOTS[8]
    proof = CT_CONSISTENCY[2][2]
    _fails(BAD_TREE_SIZE, verify_consistency, 8, 6, new_root, old_root, proof)
    _fails(BAD_TREE_SIZE, verify_consistency, -1, 6, old_root, new_root, proof)
    _fails(BAD_PROOF_LENGTH, verify_consistency, 6, 8, old_root, new_root, [])
    _fails(BAD_PROOF_LENGTH, verify_consistency, 6, 8, old_root, new_root, proof[:2])
    _fails(BAD_PROOF_LENGTH, verify_consistency, 8, 8, new_root, new_root, proof[:1])
    _fails(BAD_PROOF_LENGTH, verify_consistency, 0, 8, EMPTY_ROOT, new_root, proof[:1])
    _fails(BAD_HASH_LENGTH, verify_consistency, 6, 8, old_root[:1], new_root, proof)
    _fails(CONSISTENCY_MISMATCH, verify_consistency, 8, 8, old_root, new_root, [])
    _fails(BAD_TREE_SIZE, consistency_proof, CT_TREE, 5, 4)
    _fails(INDEX_OUT_OF_RANGE, inclusion_proof, CT_TREE, 4, 4)
    _fails(BAD_TREE_SIZE, inclusion_proof, CT_TREE, 7, 9)
    _fails(BAD_TREE_SIZE, consistency_proof, CT_TREE, 9, 9)
    _fails(BAD_TREE_SIZE, tree_root, CT_TREE, 9)
    _fails(BAD_TREE_SIZE, tree_root, CT_TREE, -1)


def test_memory_tree_rejects_what_it_does_not_hold() -> None:
    tree = _tree(CT_LEAVES[:5])
    _fails(INDEX_OUT_OF_RANGE, tree.leaf, 5)
    _fails(INDEX_OUT_OF_RANGE, tree.subtree, 4, 8)
    _fails(NOT_A_SUBTREE, tree.subtree, 1, 3)
    _fails(NOT_A_SUBTREE, tree.subtree, 0, 3)
    _fails(NOT_A_SUBTREE, tree.subtree, 2, 2)
    _fails(BAD_HASH_LENGTH, tree.append_hash, b"short")
    assert tree.append_hash(leaf_hash(CT_LEAVES[5])) == 5
    assert tree_root(tree, 6) == CT_ROOTS[6]


class _LeavesOnly:
    """A source without stored interior nodes: proofs must then be computed from leaf hashes."""

    def __init__(self, leaves: list[bytes]) -> None:
        self._leaves = [leaf_hash(e) for e in leaves]
        self.size = len(leaves)

    def leaf(self, index: int) -> bytes:
        return self._leaves[index]


def test_a_source_with_only_leaves_gives_the_same_proofs() -> None:
    source = _LeavesOnly(list(ENTRIES[:37]))
    assert tree_root(source, 37) == _root(37)
    assert all(inclusion_proof(source, i, 37) == inclusion_proof(TREE, i, 37) for i in range(37))
    assert all(consistency_proof(source, m, 37) == consistency_proof(TREE, m, 37) for m in range(38))


# ---------------------------------------------------------------------------------------------------------------
# Scale: proofs for a huge tree ask for O(log n) subtree hashes.


class _UniformSource:
    """A tree of any size whose leaves all hash alike, so that every perfect subtree of height k has the same
    hash and the source can answer for trees far larger than memory; it counts the look-ups."""

    def __init__(self) -> None:
        self.size = 2**64
        self.lookups = 0
        self._by_height = [leaf_hash(b"same")]
        for _ in range(64):
            self._by_height.append(node_hash(self._by_height[-1], self._by_height[-1]))

    def leaf(self, index: int) -> bytes:
        return self.subtree(index, index + 1)

    def subtree(self, start: int, end: int) -> bytes:
        self.lookups += 1
        return self._by_height[(end - start).bit_length() - 1]


@pytest.mark.parametrize("size", [1_000_003, 2**20, 2**40 + 12_345, 2**63 + 1])
def test_proofs_in_huge_trees_need_only_logarithmic_lookups(size: int) -> None:
    source = _UniformSource()
    root = tree_root(source, size)
    log_n = size.bit_length()
    source.lookups = 0
    start = time.perf_counter()
    proof = inclusion_proof(source, size // 3, size)
    assert time.perf_counter() - start < 0.005
    assert source.lookups <= 2 * log_n
    verify_inclusion(source.leaf(0), size // 3, size, proof, root)
    source.lookups = 0
    old = size // 2 + 1
    proof = consistency_proof(source, old, size)
    assert source.lookups <= 2 * log_n
    verify_consistency(old, size, tree_root(source, old), root, proof)


def test_memory_tree_proofs_are_fast() -> None:
    tree = MemoryTree()
    for i in range(70_001):
        tree.append_hash(hashlib.sha256(i.to_bytes(4, "big")).digest())
    start = time.perf_counter()
    for i in range(0, 70_001, 701):
        inclusion_proof(tree, i, tree.size)
        consistency_proof(tree, i + 1, tree.size)
    per_proof = (time.perf_counter() - start) / 200
    assert per_proof < 0.001


# ---------------------------------------------------------------------------------------------------------------
# Random trees and random corruptions.

_entries = st.lists(st.binary(max_size=8), min_size=1, max_size=100)


@settings(max_examples=100, deadline=None)
@given(_entries, st.data())
def test_random_inclusion_proofs_verify(entries: list[bytes], data: st.DataObject) -> None:
    tree = _tree(entries)
    n = len(entries)
    i = data.draw(st.integers(0, n - 1))
    verify_inclusion(leaf_hash(entries[i]), i, n, inclusion_proof(tree, i, n), tree_root(tree, n))


@settings(max_examples=100, deadline=None)
@given(_entries, st.data())
def test_random_consistency_proofs_verify(entries: list[bytes], data: st.DataObject) -> None:
    tree = _tree(entries)
    n = len(entries)
    m = data.draw(st.integers(0, n))
    verify_consistency(m, n, tree_root(tree, m), tree_root(tree, n), consistency_proof(tree, m, n))


def _corrupt(proof: list[bytes], data: st.DataObject) -> list[bytes]:
    """A different proof: a flipped bit, a dropped, inserted or replaced hash, or two hashes swapped."""
    kinds = ["insert", *(["flip", "drop", "replace"] if proof else []), *(["swap"] if len(proof) > 1 else [])]
    kind = data.draw(st.sampled_from(kinds))
    at = data.draw(st.integers(0, max(len(proof) - 1, 0)))
    if kind == "flip":
        return [*proof[:at], _flip(proof[at], data.draw(st.integers(0, 255))), *proof[at + 1 :]]
    if kind == "drop":
        return proof[:at] + proof[at + 1 :]
    if kind == "swap":
        at = min(at, len(proof) - 2)
        return [*proof[:at], proof[at + 1], proof[at], *proof[at + 2 :]]
    new = data.draw(st.binary(min_size=32, max_size=32))
    return [*proof[:at], new, *proof[at + (kind == "replace") :]]


# Distinct entries: with repeated leaves two different positions can have equal proofs legitimately.
_distinct_entries = st.lists(st.binary(max_size=8), min_size=1, max_size=100, unique=True)


@settings(max_examples=200, deadline=None)
@given(_distinct_entries, st.data())
def test_random_corruptions_of_inclusion_proofs_fail(entries: list[bytes], data: st.DataObject) -> None:
    n = len(entries)
    # Grown past n so that a wrong size can be paired with the root a log would sign for it.
    tree = _tree([*entries, *(b"padding entry %d" % k for k in range(n + 3))])
    i = data.draw(st.integers(0, n - 1))
    proof = inclusion_proof(tree, i, n)
    leaf = leaf_hash(entries[i])
    if data.draw(st.booleans()):
        bad = _corrupt(proof, data)
        if bad != proof:
            _fails(None, verify_inclusion, leaf, i, n, bad, tree_root(tree, n))
    else:
        j = data.draw(st.integers(0, n + 2))
        s = data.draw(st.integers(1, 2 * n + 3))
        if (j, s) != (i, n):
            _fails(None, verify_inclusion, leaf, j, s, proof, tree_root(tree, s))


@settings(max_examples=200, deadline=None)
@given(_distinct_entries, st.data())
def test_random_corruptions_of_consistency_proofs_fail(entries: list[bytes], data: st.DataObject) -> None:
    tree = _tree(entries)
    n = len(entries)
    m = data.draw(st.integers(1, n))
    proof = consistency_proof(tree, m, n)
    bad = _corrupt(proof, data)
    if bad != proof:
        _fails(None, verify_consistency, m, n, tree_root(tree, m), tree_root(tree, n), bad)
    m2 = data.draw(st.integers(1, n))
    if m2 != m:
        _fails(None, verify_consistency, m2, n, tree_root(tree, m2), tree_root(tree, n), proof)
