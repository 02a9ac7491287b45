"""The server's transparency log, kept in the index database as C2SP tiles.

Appending happens inside the caller's write transaction, so an entry and the row that points at it
(a segment's log_index, an audit record's) commit together or not at all. Writers serialize on the
`log_head` row (SELECT ... FOR UPDATE on PostgreSQL; SQLite's BEGIN IMMEDIATE already holds the only
write lock), so several server processes and the admin command can append to one log. Each append
writes the level-0..k tiles it touched and signs a new checkpoint; proofs read O(log n) tiles.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy import Connection, bindparam, insert, select, update

from protocol.tlog import merkle
from protocol.tlog.checkpoint import Checkpoint, sign_checkpoint
from protocol.tlog.proof_bundle import ProofBundle
from protocol.tlog.tiles import ENTRIES_LEVEL, TILE_HEIGHT, TILE_WIDTH, Tile, TileHashSource, encode_entry_bundle
from server.identity import ServerIdentity
from server.schema import log_checkpoints, log_entries, log_head, log_tiles

HASH = merkle.HASH_SIZE
_CACHE_TILES = 2048  # full tiles never change; 2048 of them is 16 MiB


# The statements of every append, built once: building one costs more than running it.
_HEAD = select(log_head.c.size).where(log_head.c.id == 1)
_HEAD_FOR_UPDATE = _HEAD.with_for_update()
_SET_HEAD = update(log_head).where(log_head.c.id == 1).values(size=bindparam("new_size"))
_TILE = select(log_tiles.c.hashes).where(log_tiles.c.level == bindparam("level"), log_tiles.c.idx == bindparam("idx"))
_SET_TILE = (update(log_tiles).where(log_tiles.c.level == bindparam("at_level"), log_tiles.c.idx == bindparam("at_idx"))
             .values(hashes=bindparam("new_hashes")))


class LogError(Exception):
    pass


class TransparencyLog:
    def __init__(self, identity: ServerIdentity) -> None:
        self.identity = identity
        self._full_tiles: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()

    # -- writing ----------------------------------------------------------------------------------------

    def initialize(self, conn: Connection, now_ns: int) -> None:
        """Sign the empty tree's checkpoint once, so /checkpoint answers from the first start."""
        if conn.execute(select(log_checkpoints.c.size).limit(1)).first() is None:
            self._sign(conn, 0, merkle.EMPTY_ROOT, now_ns)

    def append(self, conn: Connection, entries: Sequence[tuple[str, bytes]], now_ns: int) -> int:
        """Append (kind, entry bytes) pairs in order; return the index of the first. `conn` must be in
        a write transaction (server.database.Database.write)."""
        if not entries:
            raise LogError("nothing to append")
        size = conn.execute(_HEAD if conn.dialect.name == "sqlite" else _HEAD_FOR_UPDATE).scalar_one()
        conn.execute(insert(log_entries), [
            {"idx": size + i, "kind": kind, "entry": entry} for i, (kind, entry) in enumerate(entries)
        ])
        new_size = size + len(entries)
        written = self._extend_tiles(conn, size, [merkle.leaf_hash(e) for _, e in entries])
        conn.execute(_SET_HEAD, {"new_size": new_size})

        # The root needs the right edge of the tree, which is the tiles just written: no need to read them back.
        def tile(t: Tile) -> bytes:
            data = written.get((t.level, t.index))
            return data[: t.width * HASH] if data is not None else self.read_tile(conn, t)

        root = merkle.tree_root(TileHashSource(new_size, tile), new_size)
        self._sign(conn, new_size, root, now_ns)
        return size

    def _extend_tiles(self, conn: Connection, size: int, hashes: list[bytes]) -> dict[tuple[int, int], bytes]:
        """Add leaf hashes at level 0; every tile they complete adds its root one level up. Returns the tiles
        written, by (level, index)."""
        written: dict[tuple[int, int], bytes] = {}
        level = 0
        while hashes:
            count = size >> (TILE_HEIGHT * level)
            index, width = divmod(count, TILE_WIDTH)
            row = conn.execute(_TILE, {"level": level, "idx": index}).scalar_one_or_none() if width else None
            current = [row[i : i + HASH] for i in range(0, width * HASH, HASH)] if row else []
            completed: list[bytes] = []
            touched: dict[int, list[bytes]] = {}
            for h in hashes:
                current.append(h)
                touched[index] = current
                if len(current) == TILE_WIDTH:
                    completed.append(merkle.merkle_root(current))
                    index, current = index + 1, []
            partial = count // TILE_WIDTH if width else None
            for idx, tile_hashes in touched.items():
                written[(level, idx)] = data = b"".join(tile_hashes)
                self._put_tile(conn, level, idx, data, existed=idx == partial)
            hashes, level = completed, level + 1
        return written

    @staticmethod
    def _put_tile(conn: Connection, level: int, idx: int, data: bytes, existed: bool) -> None:
        if existed:
            conn.execute(_SET_TILE, {"at_level": level, "at_idx": idx, "new_hashes": data})
        else:
            conn.execute(insert(log_tiles), {"level": level, "idx": idx, "hashes": data})

    def _sign(self, conn: Connection, size: int, root: bytes, now_ns: int) -> None:
        note = sign_checkpoint(Checkpoint(self.identity.origin, size, root), [self.identity.note_signer])
        conn.execute(insert(log_checkpoints), {"size": size, "root": root, "note": note, "signed_ns": now_ns})

    # -- reading ----------------------------------------------------------------------------------------

    def checkpoint(self, conn: Connection) -> tuple[int, bytes]:
        """The newest signed checkpoint: (size, note bytes)."""
        row = conn.execute(select(log_checkpoints.c.size, log_checkpoints.c.note)
                           .order_by(log_checkpoints.c.size.desc()).limit(1)).first()
        if row is None:
            raise LogError("the log has no checkpoint yet: the server was never started")
        return row.size, row.note

    def read_tile(self, conn: Connection, tile: Tile) -> bytes:
        """A hash tile's contents at the tile's width; LogError if the log has not grown that far."""
        key = (tile.level, tile.index)
        with self._lock:
            cached = self._full_tiles.get(key)
            if cached is not None:
                self._full_tiles.move_to_end(key)
                return cached[: tile.width * HASH]
        data = conn.execute(_TILE, {"level": tile.level, "idx": tile.index}).scalar_one_or_none()
        if data is None or len(data) < tile.width * HASH:
            raise LogError(f"{tile.path} is beyond the log")
        if len(data) == TILE_WIDTH * HASH:
            with self._lock:
                self._full_tiles[key] = data
                if len(self._full_tiles) > _CACHE_TILES:
                    self._full_tiles.popitem(last=False)
        return data[: tile.width * HASH]

    def entry_bundle(self, conn: Connection, tile: Tile) -> bytes:
        if tile.level != ENTRIES_LEVEL:
            raise LogError("not an entry bundle")
        first = tile.index * TILE_WIDTH
        rows = conn.execute(select(log_entries.c.entry).where(
            log_entries.c.idx >= first, log_entries.c.idx < first + tile.width).order_by(log_entries.c.idx)).all()
        if len(rows) != tile.width:
            raise LogError(f"{tile.path} is beyond the log")
        return encode_entry_bundle([r.entry for r in rows])

    def entry(self, conn: Connection, index: int) -> bytes:
        data = conn.execute(select(log_entries.c.entry).where(log_entries.c.idx == index)).scalar_one_or_none()
        if data is None:
            raise LogError(f"no entry {index} in the log")
        return data

    def inclusion_proof(self, conn: Connection, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(TileHashSource(size, lambda t: self.read_tile(conn, t)), index, size)

    def consistency_proof(self, conn: Connection, old_size: int, new_size: int) -> list[bytes]:
        return merkle.consistency_proof(TileHashSource(new_size, lambda t: self.read_tile(conn, t)),
                                        old_size, new_size)

    def proof_bundle(self, conn: Connection, index: int, checkpoint: tuple[int, bytes] | None = None) -> bytes:
        """A C2SP tlog-proof bundle for entry `index` against `checkpoint` (size, note), by default the newest.
        Several bundles meant to share one checkpoint must pass it: the log may grow between calls."""
        size, note = checkpoint or self.checkpoint(conn)
        if not 0 <= index < size:
            raise LogError(f"entry {index} is not in the checkpointed tree of size {size}")
        return ProofBundle(index, tuple(self.inclusion_proof(conn, index, size)), note).encode()
