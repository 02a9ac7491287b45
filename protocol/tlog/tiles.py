"""C2SP tlog-tiles (c2sp.org/tlog-tiles): tile paths, which tiles a tree has, tile contents, entry
bundles, and a HashSource that reads a tree's hashes back from its tiles.

Hash `i` of tile `n` at level `L` is the MTH of leaves [(n*256 + i) * 256**L, (n*256 + i + 1) * 256**L).
A tile of fewer than 256 hashes is partial and its path ends in `.p/<width>`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.tlog.merkle import (
    BAD_TREE_SIZE,
    HASH_SIZE,
    INDEX_OUT_OF_RANGE,
    HashSource,
    ProofError,
    check_perfect,
    merkle_root,
    subtree_hash,
)

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_LEVEL = 63
# Entry bundles share level 0's index space; the Go reference (x/mod/sumdb/tlog) also marks them as -1.
ENTRIES_LEVEL = -1
MAX_ENTRY_SIZE = 0xFFFF

TILE_PATH_MALFORMED = "tlog.tile_path_malformed"
TILE_MALFORMED = "tlog.tile_malformed"
ENTRY_BUNDLE_MALFORMED = "tlog.entry_bundle_malformed"


class TileError(ProtocolError):
    """A tile path, tile or entry bundle was rejected; `code` is one of the codes above."""


@dataclass(frozen=True, order=True)
class Tile:
    """Tile `index` at `level` (ENTRIES_LEVEL for an entry bundle) holding `width` hashes or entries."""

    level: int
    index: int
    width: int = TILE_WIDTH

    @property
    def path(self) -> str:
        """`tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`."""
        if not (ENTRIES_LEVEL <= self.level <= MAX_LEVEL and self.index >= 0 and 0 < self.width <= TILE_WIDTH):
            raise TileError(TILE_PATH_MALFORMED, f"no tile is {self!r}")
        level = "entries" if self.level == ENTRIES_LEVEL else str(self.level)
        partial = f".p/{self.width}" if self.width < TILE_WIDTH else ""
        return f"tile/{level}/{_index_path(self.index)}{partial}"


def _index_path(index: int) -> str:
    digits = str(index)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def parse_tile_path(path: str) -> Tile:
    """The tile named by a path; only the canonical spelling of each tile is accepted."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError(TILE_PATH_MALFORMED, f"{path!r} is not a tile path")
    level = ENTRIES_LEVEL if parts[1] == "entries" else _small_decimal(parts[1])
    elements, width = parts[2:], TILE_WIDTH
    if len(elements) >= 2 and elements[-2].endswith(".p"):
        width = _small_decimal(elements[-1])
        elements = [*elements[:-2], elements[-2].removesuffix(".p")]
    digits = "".join(e.removeprefix("x") for e in elements)
    tile = Tile(level, _small_decimal(digits.lstrip("0") or "0"), width)
    # Re-encoding catches every non-canonical form at once: missing 'x', extra zero groups, '.p/256'.
    if tile.path != path:
        raise TileError(TILE_PATH_MALFORMED, f"{path!r} is not the canonical path of a tile")
    return tile


def _small_decimal(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise TileError(TILE_PATH_MALFORMED, f"{text!r} is not a decimal")
    return int(text)


def tiles_for_size(size: int, since: int = 0) -> list[Tile]:
    """The hash tiles of a tree of `size` leaves that a tree of `since` leaves did not have (all of them
    when since is 0), level by level: full tiles first, then the partial tile, if any."""
    if not 0 <= since <= size:
        raise ProofError(BAD_TREE_SIZE, f"tree size {since} cannot precede tree size {size}")
    tiles: list[Tile] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        count = size >> (TILE_HEIGHT * level)
        old_count = since >> (TILE_HEIGHT * level)
        full, width = divmod(count, TILE_WIDTH)
        tiles.extend(Tile(level, n) for n in range(old_count // TILE_WIDTH, full))
        if width and count != old_count:
            tiles.append(Tile(level, full, width))
        level += 1
    return tiles


def tile_content(source: HashSource, tile: Tile) -> bytes:
    """The concatenated hashes of a hash tile, computed from the tree's hashes."""
    if tile.level == ENTRIES_LEVEL:
        raise TileError(TILE_MALFORMED, "an entry bundle holds entries, not hashes")
    span = TILE_WIDTH**tile.level
    first = tile.index * TILE_WIDTH
    return b"".join(subtree_hash(source, (first + i) * span, (first + i + 1) * span) for i in range(tile.width))


class TileHashSource:
    """The hashes of a tree of `size` leaves, read from its tiles through `read_tile`.

    Each perfect subtree costs one tile read and at most 127 node hashes, so a proof costs O(log n)
    tile reads; `read_tile` may cache. A tile of the wrong length raises TileError.
    """

    def __init__(self, size: int, read_tile: Callable[[Tile], bytes]) -> None:
        self.size = size
        self._read_tile = read_tile

    def leaf(self, index: int) -> bytes:
        return self.subtree(index, index + 1)

    def subtree(self, start: int, end: int) -> bytes:
        height = check_perfect(start, end)
        if end > self.size:
            raise ProofError(INDEX_OUT_OF_RANGE, f"subtree [{start}, {end}) is beyond size {self.size}")
        level, below = divmod(height, TILE_HEIGHT)
        # The subtree's hashes at this tile level are 2**below consecutive hashes inside one tile.
        first = start >> (TILE_HEIGHT * level)
        tile = self._tile(level, first // TILE_WIDTH)
        data = self._read_tile(tile)
        if len(data) != tile.width * HASH_SIZE:
            raise TileError(TILE_MALFORMED, f"{tile.path} has {len(data)} bytes, not {tile.width * HASH_SIZE}")
        offset = first % TILE_WIDTH
        hashes = [data[i * HASH_SIZE : (i + 1) * HASH_SIZE] for i in range(offset, offset + (1 << below))]
        return merkle_root(hashes)

    def _tile(self, level: int, index: int) -> Tile:
        count = self.size >> (TILE_HEIGHT * level)
        if (index + 1) * TILE_WIDTH <= count:
            return Tile(level, index)
        return Tile(level, index, count % TILE_WIDTH)


def encode_entry_bundle(entries: Sequence[bytes]) -> bytes:
    """Entries, each prefixed by its length as a big-endian uint16."""
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise TileError(ENTRY_BUNDLE_MALFORMED, f"an entry bundle holds 1 to {TILE_WIDTH} entries")
    if any(len(e) > MAX_ENTRY_SIZE for e in entries):
        raise TileError(ENTRY_BUNDLE_MALFORMED, f"an entry in a bundle is at most {MAX_ENTRY_SIZE} bytes")
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


def decode_entry_bundle(data: bytes) -> list[bytes]:
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TileError(ENTRY_BUNDLE_MALFORMED, "the bundle ends inside a length prefix")
        length = int.from_bytes(data[pos : pos + 2], "big")
        pos += 2
        if pos + length > len(data):
            raise TileError(ENTRY_BUNDLE_MALFORMED, "the bundle ends inside an entry")
        entries.append(data[pos : pos + length])
        pos += length
    if not 1 <= len(entries) <= TILE_WIDTH:
        raise TileError(ENTRY_BUNDLE_MALFORMED, f"an entry bundle holds 1 to {TILE_WIDTH} entries")
    return entries
