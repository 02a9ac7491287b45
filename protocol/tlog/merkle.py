"""RFC 6962 / RFC 9162 Merkle tree hashes, proofs, and proof verification.

Proofs are generated from a `HashSource`, not from a list, so that a log with
millions of entries whose interior hashes live in tiles or a database answers a
proof with O(log n) look-ups of perfect subtree hashes. `MemoryTree` is the
in-memory source.

Verification raises `ProofError` (a `ProtocolError`) whose `code` says why; it
returns None when the proof holds. Sizes are not authenticated by a proof: the
caller must take the (size, root) pair from one signed checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

from protocol.errors import ProtocolError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

INDEX_OUT_OF_RANGE = "tlog.index_out_of_range"
BAD_TREE_SIZE = "tlog.bad_tree_size"
BAD_HASH_LENGTH = "tlog.bad_hash_length"
BAD_PROOF_LENGTH = "tlog.bad_proof_length"
INCLUSION_MISMATCH = "tlog.inclusion_mismatch"
CONSISTENCY_MISMATCH = "tlog.consistency_mismatch"
NOT_A_SUBTREE = "tlog.not_a_subtree"


class ProofError(ProtocolError):
    """A tree position, size, hash or proof was rejected; `code` is one of the tlog codes above."""


def leaf_hash(entry: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class HashSource(Protocol):
    """Where proof generation reads leaf hashes from: a tree of `size` leaves."""

    @property
    def size(self) -> int: ...

    def leaf(self, index: int) -> bytes:
        """The leaf hash at `index`."""
        ...


class SubtreeSource(HashSource, Protocol):
    """A source that also answers perfect subtree hashes directly (stored nodes or tiles)."""

    def subtree(self, start: int, end: int) -> bytes:
        """MTH of leaves [start, end); end - start is a power of two and divides start."""
        ...


def _split_point(n: int) -> int:
    """The largest power of two smaller than n (n >= 2): where RFC 6962 splits a tree of n leaves."""
    return 1 << ((n - 1).bit_length() - 1)


def check_perfect(start: int, end: int) -> int:
    """Validate that [start, end) is a perfect aligned subtree; return its height."""
    width = end - start
    if start < 0 or width <= 0 or width & (width - 1) or start % width:
        raise ProofError(NOT_A_SUBTREE, f"[{start}, {end}) is not a perfect aligned subtree")
    return width.bit_length() - 1


def merkle_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a list of leaf hashes (RFC 9162 §2.1.1), in one pass with a stack of perfect subtrees."""
    stack: list[tuple[int, bytes]] = []
    for h in leaf_hashes:
        height, node = 0, h
        while stack and stack[-1][0] == height:
            node = node_hash(stack.pop()[1], node)
            height += 1
        stack.append((height, node))
    if not stack:
        return EMPTY_ROOT
    # The leftover perfect subtrees shrink left to right; RFC 6962 joins them from the right.
    root = stack[-1][1]
    for _, node in reversed(stack[:-1]):
        root = node_hash(node, root)
    return root


def subtree_hash(source: HashSource, start: int, end: int) -> bytes:
    """MTH of the perfect aligned subtree [start, end), asking the source directly when it can."""
    check_perfect(start, end)
    return _perfect_reader(source, end)(start, end)


def tree_root(source: HashSource, size: int) -> bytes:
    """Root hash of the first `size` leaves of the source."""
    if size < 0:
        raise ProofError(BAD_TREE_SIZE, f"tree size {size} is negative")
    if size == 0:
        return EMPTY_ROOT
    return _range_hash(_perfect_reader(source, size), 0, size)


PerfectReader = Callable[[int, int], bytes]


def _perfect_reader(source: HashSource, size: int) -> PerfectReader:
    if size > source.size:
        raise ProofError(BAD_TREE_SIZE, f"tree size {size} is beyond the {source.size} leaves held")
    # A SubtreeSource answers perfect subtrees itself. Duck-typed: isinstance against a runtime Protocol
    # costs tens of microseconds, more than a whole proof from stored nodes.
    subtree: PerfectReader | None = getattr(source, "subtree", None)
    if subtree is not None:
        return subtree

    def from_leaves(start: int, end: int) -> bytes:
        return merkle_root([source.leaf(i) for i in range(start, end)])

    return from_leaves


def _range_hash(perfect: PerfectReader, start: int, end: int) -> bytes:
    # Only called on nodes of an RFC 6962 tree: the left part is always perfect and aligned, so at most
    # one perfect look-up per level, O(log n) in all.
    width = end - start
    if width & (width - 1) == 0:
        return perfect(start, end)
    mid = start + _split_point(width)
    return node_hash(perfect(start, mid), _range_hash(perfect, mid, end))


def inclusion_proof(source: HashSource, index: int, size: int) -> list[bytes]:
    """RFC 9162 §2.1.3.1 inclusion path of leaf `index` in the tree of `size` leaves, leaf sibling first."""
    _check_index(index, size)
    perfect = _perfect_reader(source, size)
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split_point(end - start)
        if index < mid:
            path.append(_range_hash(perfect, mid, end))
            end = mid
        else:
            path.append(perfect(start, mid))
            start = mid
    path.reverse()
    return path


def consistency_proof(source: HashSource, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 §2.1.4.1 consistency proof (SUBPROOF) from tree size `old_size` to `new_size`."""
    _check_sizes(old_size, new_size)
    perfect = _perfect_reader(source, new_size)
    if old_size in (0, new_size):
        return []
    proof: list[bytes] = []
    start, end = 0, new_size
    old_root_is_node = True
    while end != old_size:
        mid = start + _split_point(end - start)
        if old_size <= mid:
            proof.append(_range_hash(perfect, mid, end))
            end = mid
        else:
            proof.append(perfect(start, mid))
            start = mid
            old_root_is_node = False
    # The verifier already has the old root; any other subtree ending at old_size must be sent.
    if not old_root_is_node:
        proof.append(perfect(start, end))
    proof.reverse()
    return proof


def inclusion_proof_length(index: int, size: int) -> int:
    """How many hashes the inclusion proof of `index` in a tree of `size` leaves has."""
    _check_index(index, size)
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(old_size: int, new_size: int) -> int:
    """How many hashes the consistency proof from `old_size` to `new_size` has."""
    _check_sizes(old_size, new_size)
    if old_size in (0, new_size):
        return 0
    inner = ((old_size - 1) ^ (new_size - 1)).bit_length()
    border = ((old_size - 1) >> inner).bit_count()
    shift = (old_size & -old_size).bit_length() - 1
    old_is_perfect = old_size == 1 << shift
    return inner + border - shift + (0 if old_is_perfect else 1)


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` binds leaf hash `leaf` at `index` to (RFC 9162 §2.1.3.2 steps 1-4)."""
    _check_hashes(leaf, *proof)
    _check_length(len(proof), inclusion_proof_length(index, size))
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # On the right edge of the tree a node may have no sibling at several levels: skip them.
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless `proof` shows leaf hash `leaf` at `index` in the tree (`size`, `root`)."""
    _check_hashes(root)
    if root_from_inclusion_proof(leaf, index, size, proof) != root:
        raise ProofError(INCLUSION_MISMATCH, f"proof of leaf {index} does not lead to the root of size {size}")


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Raise ProofError unless `proof` shows tree (old_size, old_root) is a prefix of (new_size, new_root)."""
    _check_hashes(old_root, new_root, *proof)
    _check_length(len(proof), consistency_proof_length(old_size, new_size))
    if old_size == 0 and old_root != EMPTY_ROOT:
        raise ProofError(CONSISTENCY_MISMATCH, "an empty tree's root must be SHA-256 of nothing")
    if old_size in (0, new_size):
        if old_size == new_size and old_root != new_root:
            raise ProofError(CONSISTENCY_MISMATCH, f"two different roots for tree size {old_size}")
        return
    fr, sr = _roots_from_consistency_proof(old_size, new_size, old_root, proof)
    if fr != old_root or sr != new_root:
        raise ProofError(CONSISTENCY_MISMATCH, f"tree of size {old_size} is not a prefix of size {new_size}")


def _roots_from_consistency_proof(
    old_size: int, new_size: int, old_root: bytes, proof: Sequence[bytes]
) -> tuple[bytes, bytes]:
    # RFC 9162 §2.1.4.2 steps 2-6, for 0 < old_size < new_size and a proof of the right length.
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr, sr


def _check_index(index: int, size: int) -> None:
    if not 0 <= index < size:
        raise ProofError(INDEX_OUT_OF_RANGE, f"leaf index {index} is outside a tree of size {size}")


def _check_sizes(old_size: int, new_size: int) -> None:
    if not 0 <= old_size <= new_size:
        raise ProofError(BAD_TREE_SIZE, f"tree size {old_size} cannot precede tree size {new_size}")


def _check_hashes(*hashes: bytes) -> None:
    for h in hashes:
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            raise ProofError(BAD_HASH_LENGTH, f"a hash must be {HASH_SIZE} bytes")


def _check_length(got: int, want: int) -> None:
    # The RFC algorithm would reject a wrong length too, but only as a root mismatch; name it instead.
    if got != want:
        raise ProofError(BAD_PROOF_LENGTH, f"proof has {got} hashes, the tree shape needs {want}")


class MemoryTree:
    """An append-only tree in memory that keeps every complete aligned subtree hash.

    Appending costs O(1) amortized (O(log n) at worst) and every perfect subtree is one list look-up,
    so proofs for any earlier size are O(log n).
    """

    def __init__(self) -> None:
        # _levels[h][k] is the hash of leaves [k * 2**h, (k + 1) * 2**h).
        self._levels: list[list[bytes]] = [[]]

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, entry: bytes) -> int:
        """Log an entry; return its index."""
        return self.append_hash(leaf_hash(entry))

    def append_hash(self, leaf: bytes) -> int:
        """Log an already computed leaf hash; return its index."""
        _check_hashes(leaf)
        index = self.size
        self._levels[0].append(leaf)
        height, count = 0, index + 1
        while count % 2 == 0:
            row = self._levels[height]
            if height + 1 == len(self._levels):
                self._levels.append([])
            self._levels[height + 1].append(node_hash(row[-2], row[-1]))
            height, count = height + 1, count // 2
        return index

    def leaf(self, index: int) -> bytes:
        _check_index(index, self.size)
        return self._levels[0][index]

    def subtree(self, start: int, end: int) -> bytes:
        height = check_perfect(start, end)
        if end > self.size:
            raise ProofError(INDEX_OUT_OF_RANGE, f"subtree [{start}, {end}) is beyond size {self.size}")
        return self._levels[height][start >> height]
