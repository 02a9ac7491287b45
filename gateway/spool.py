"""The gateway's durable spool: what the dock took off recorders, kept until the server has it.

Layout under the spool root:

    spool.sqlite3                          the index (WAL, synchronous=FULL): one row per manifest
    incoming/<device>/<seq, 12 digits>.part where the dock writes a file while it arrives
    media/<device>/<seq, 12 digits>.<manifest hash>   a spooled media file

A segment's life: the dock writes and fsyncs its file at `incoming_path`, then `arrive` moves it under
media/ (os.replace), fsyncs it and both folders, and only then commits its row; `attach_receipt` records the
dock receipt the recorder was given; the uploader takes it from `to_upload`, keeps its tus upload URL with
`set_upload_url` (so an upload resumes after a restart), and `uploaded` commits the server receipt before it
deletes the file. Bad evidence (an arrival with findings) is kept and uploaded like the rest.

So after a crash at any instant: a row never names a missing file; a media file without a row is one whose
`arrive` did not commit, and opening the spool moves it back to incoming/ for the dock to admit again (the
recorder still holds it: no dock receipt named it); a media file whose row holds a server receipt is one whose
deletion did not happen yet, and opening the spool deletes it. Rows stay after upload (without their file),
so device heads and dock receipts survive the deletion of uploaded footage.

One process owns a spool. Its methods block (fsync); call them from a worker thread in asyncio code. They are
safe to call from several threads at once.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.durable import fsync_dir, fsync_file
from protocol import canonical, errors, receipts, signatures
from protocol.errors import ProtocolError
from protocol.fields import HEX64, IDENTIFIER

log = logging.getLogger("liuhen.gateway.spool")

INDEX = "spool.sqlite3"
INCOMING = "incoming"
MEDIA = "media"
_PART = ".part"
_SEQ_DIGITS = 12
_SCHEMA_VERSION = 1
_IN_CHUNK = 500  # seqs per IN (...) query, well under SQLite's variable limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS dock_receipts (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    envelope BLOB NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS segments (
    manifest_hash TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    seq INTEGER NOT NULL,
    envelope BLOB NOT NULL,
    media_sha256 TEXT,
    media_size INTEGER NOT NULL,
    marked INTEGER NOT NULL,
    findings TEXT NOT NULL,
    arrived_ns INTEGER NOT NULL,
    dock_receipt_id INTEGER REFERENCES dock_receipts (id),
    upload_url TEXT,
    held_back TEXT,
    server_receipt BLOB,
    uploaded_ns INTEGER
);
CREATE INDEX IF NOT EXISTS segments_by_seq ON segments (device, seq);
CREATE INDEX IF NOT EXISTS segments_waiting ON segments (marked DESC, arrived_ns) WHERE server_receipt IS NULL;
CREATE TABLE IF NOT EXISTS heads (
    device TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    manifest_hash TEXT NOT NULL
);
"""

_COLUMNS = ("s.device, s.seq, s.manifest_hash, s.envelope, s.media_sha256, s.media_size, s.marked, s.findings, "
            "s.arrived_ns, d.envelope AS dock_receipt, s.upload_url, s.held_back, s.server_receipt")
_SELECT = f"SELECT {_COLUMNS} FROM segments s LEFT JOIN dock_receipts d ON d.id = s.dock_receipt_id"


class SpoolError(ValueError):
    """Bad input to the spool; the message says what, and nothing was changed."""


@dataclass(frozen=True)
class Arrival:
    """One segment the dock verified (or flagged) and fsynced at `Spool.incoming_path(device, seq)`."""

    device: str
    seq: int
    manifest_hash: str  # hex
    envelope: bytes  # the signed manifest envelope, as received
    media_sha256: str | None  # of the bytes received; None for records without media (then no file)
    media_size: int
    marked: bool  # has officer-marked events: uploaded first
    findings: list[str]  # finding codes; [] = verified


@dataclass(frozen=True)
class Spooled:
    """A segment as the spool holds it."""

    device: str
    seq: int
    manifest_hash: str
    envelope: bytes
    media_sha256: str | None
    media_size: int
    marked: bool
    findings: list[str]
    arrived_ns: int
    path: Path | None  # the media file while it is held; None without media or once uploaded
    dock_receipt: bytes | None  # the dock receipt that names it, once the recorder was given one
    upload_url: str | None  # the tus upload under way, to resume
    held_back: str | None  # why it waits for a person (the server refused it, or its receipt); else None
    server_receipt: bytes | None  # once uploaded


@dataclass(frozen=True)
class Backlog:
    """What waits for the server, for the station page."""

    count: int  # segments held (not uploaded)
    media_bytes: int  # their media files' bytes
    oldest_ns: int | None  # arrival time of the oldest, None when empty
    flagged: int  # of them, arrived with findings
    held_back: int  # of them, waiting for a person


class Spool:
    def __init__(self, root: Path, *, now_ns: Callable[[], int] = time.time_ns) -> None:
        self.root = root
        self._now_ns = now_ns
        for folder in (root, root / INCOMING, root / MEDIA):
            folder.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(root / INDEX, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()  # one connection, several threads
        self._device_locks: dict[str, threading.Lock] = {}
        self._device_locks_lock = threading.Lock()  # not self._lock: finding a device's lock waits for no commit
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed row survives a power cut, which is what lets the dock hand out receipts.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()
        fsync_dir(root)
        self._recover()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # The dock's side

    def incoming_path(self, device: str, seq: int) -> Path:
        """Where the dock writes the file of `seq` while it arrives (its folder exists)."""
        _check_device(device)
        _check_seq(seq)
        folder = self.root / INCOMING / device
        folder.mkdir(exist_ok=True)
        return folder / f"{seq:0{_SEQ_DIGITS}d}{_PART}"

    def arrive(self, arrival: Arrival) -> None:
        """Admit a segment: move its file in from `incoming_path`, make it durable, then commit its row. Again
        for a manifest already held it changes nothing (a duplicate file at the incoming path is dropped)."""
        _check_arrival(arrival)
        source = self.incoming_path(arrival.device, arrival.seq)
        with self._device_lock(arrival.device):
            known = self.get(arrival.manifest_hash)
            if known is not None:
                self._arrived_again(arrival, known, source)
                return
            target = self._media_path(arrival.device, arrival.seq, arrival.manifest_hash)
            if arrival.media_sha256 is not None:
                self._move_in(arrival, source, target)
            try:
                self._insert(arrival)
            except BaseException:
                if arrival.media_sha256 is not None:
                    os.replace(target, source)  # no row: the file goes back to where the dock left it
                raise

    def arrived(self, device: str, seqs: Iterable[int]) -> dict[int, str]:
        """seq -> manifest hash, for the seqs of `device` held or uploaded (the first admitted, for a seq that
        two manifests claimed)."""
        found: dict[int, str] = {}
        for chunk in _chunks(seqs):
            rows = self._query(f"SELECT seq, manifest_hash FROM segments WHERE device = ? AND seq IN "
                               f"({_marks(chunk)}) ORDER BY rowid", (device, *chunk))
            for seq, manifest_hash in rows:
                found.setdefault(seq, manifest_hash)
        return found

    def unreceipted(self, device: str) -> list[Spooled]:
        """What arrived of `device` without a dock receipt yet, by seq."""
        return self._spooled(f"{_SELECT} WHERE s.device = ? AND s.dock_receipt_id IS NULL ORDER BY s.seq, s.rowid",
                             (device,))

    def attach_receipt(self, device: str, seqs: list[int], dock_receipt: bytes) -> None:
        """Record the dock receipt given for `seqs` of `device`, all or none. It must name every unreceipted
        manifest at those seqs with its media hash; again for seqs that already hold it, it changes nothing."""
        _check_device(device)
        if not seqs:
            raise SpoolError("a dock receipt is attached to at least one seq")
        listed = _dock_receipt_segments(dock_receipt, device)
        with self._lock, self._transaction():
            self._db.execute("INSERT OR IGNORE INTO dock_receipts (device, envelope) VALUES (?, ?)",
                             (device, dock_receipt))
            receipt_id = self._db.execute("SELECT id FROM dock_receipts WHERE envelope = ?",
                                          (dock_receipt,)).fetchone()[0]
            for seq in sorted(set(seqs)):
                self._attach_one(device, seq, receipt_id, listed)

    def dock_receipts(self, device: str, seqs: Iterable[int]) -> list[bytes]:
        """The dock receipts already issued that name any of `seqs` of `device`, oldest first."""
        found: dict[int, bytes] = {}
        for chunk in _chunks(seqs):
            rows = self._query(f"SELECT DISTINCT d.id, d.envelope FROM dock_receipts d JOIN segments s ON "
                               f"s.dock_receipt_id = d.id WHERE s.device = ? AND s.seq IN ({_marks(chunk)})",
                               (device, *chunk))
            found.update(rows)
        return [found[i] for i in sorted(found)]

    def head(self, device: str) -> tuple[int, str] | None:
        """The newest (seq, manifest hash) ever admitted for `device`, flagged or not; kept after upload."""
        rows = self._query("SELECT seq, manifest_hash FROM heads WHERE device = ?", (device,))
        return (rows[0][0], rows[0][1]) if rows else None

    # The uploader's side

    def to_upload(self, limit: int) -> list[Spooled]:
        """Receipted, not uploaded, not held back: marked first, then oldest arrival first."""
        return self._spooled(f"{_SELECT} WHERE s.server_receipt IS NULL AND s.dock_receipt_id IS NOT NULL AND "
                             "s.held_back IS NULL ORDER BY s.marked DESC, s.arrived_ns, s.device, s.seq LIMIT ?",
                             (limit,))

    def get(self, manifest_hash: str) -> Spooled | None:
        found = self._spooled(f"{_SELECT} WHERE s.manifest_hash = ?", (manifest_hash,))
        return found[0] if found else None

    def upload_url(self, manifest_hash: str) -> str | None:
        return self._waiting(manifest_hash).upload_url

    def set_upload_url(self, manifest_hash: str, url: str | None) -> None:
        """Keep (or forget, with None) the tus upload of a waiting segment, so it resumes after a restart."""
        self._update_waiting(manifest_hash, "upload_url = ?", (url,))

    def hold_back(self, manifest_hash: str, reason: str) -> None:
        """Stop uploading a segment until a person looks (`release`): the server refused it, or its receipt.
        Nothing is deleted."""
        if not reason:
            raise SpoolError("say why the segment is held back")
        self._update_waiting(manifest_hash, "held_back = ?", (reason,))

    def release(self, manifest_hash: str) -> None:
        """Let a held-back segment be uploaded again."""
        self._update_waiting(manifest_hash, "held_back = NULL", ())

    def held_back(self) -> list[Spooled]:
        return self._spooled(f"{_SELECT} WHERE s.server_receipt IS NULL AND s.held_back IS NOT NULL "
                             "ORDER BY s.arrived_ns, s.device, s.seq", ())

    def uploaded(self, manifest_hash: str, server_receipt: bytes) -> None:
        """Commit the server receipt, then delete the media file. The receipt must be a well-formed server
        receipt naming this manifest; verifying its signature is the uploader's part, before calling this."""
        row = self.get(manifest_hash)
        if row is None:
            raise SpoolError(f"no segment {manifest_hash} in the spool")
        _check_server_receipt(server_receipt, row)
        if row.server_receipt is None:
            with self._lock, self._transaction():
                self._db.execute("UPDATE segments SET server_receipt = ?, uploaded_ns = ?, upload_url = NULL, "
                                 "held_back = NULL WHERE manifest_hash = ?",
                                 (server_receipt, self._now_ns(), manifest_hash))
        elif row.server_receipt != server_receipt:
            raise SpoolError(f"{row.device} seq {row.seq} holds another server receipt already")
        if row.media_sha256 is not None:
            self._delete_media(self._media_path(row.device, row.seq, manifest_hash))

    def backlog(self) -> Backlog:
        [(count, media_bytes, oldest, flagged, held)] = self._query(
            "SELECT count(*), coalesce(sum(media_size), 0), min(arrived_ns), "
            "coalesce(sum(findings != '[]'), 0), count(held_back) FROM segments WHERE server_receipt IS NULL", ())
        return Backlog(count, media_bytes, oldest, flagged, held)

    # Steps

    def _migrate(self) -> None:
        with self._lock:
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > _SCHEMA_VERSION:
                raise SpoolError(f"{self.root / INDEX} is from a newer gateway (schema {version}); "
                                 "run that version, or a newer one")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _recover(self) -> None:
        """Finish what a crash interrupted (see the module docstring)."""
        status = {h: receipt is not None for h, receipt in
                  self._query("SELECT manifest_hash, server_receipt FROM segments WHERE media_sha256 IS NOT NULL",
                              ())}
        returned = collected = 0
        for folder in sorted(p for p in (self.root / MEDIA).iterdir() if p.is_dir()):
            for path in sorted(folder.iterdir()):
                parsed = _parse_media_name(folder.name, path.name)
                if parsed is None:
                    log.warning("%s is not a spooled media file; left alone", path)
                elif parsed[1] not in status:
                    if self._return_to_incoming(path, folder.name, parsed[0]):
                        returned += 1
                    else:
                        collected += 1
                elif status[parsed[1]]:
                    path.unlink()
                    collected += 1
            fsync_dir(folder)
        missing = [s for s in self._spooled(f"{_SELECT} WHERE s.server_receipt IS NULL AND "
                                            "s.media_sha256 IS NOT NULL", ()) if s.path and not s.path.exists()]
        for s in missing:
            log.error("the media file of %s seq %d (%s) is missing from the spool: held back for a person",
                      s.device, s.seq, s.manifest_hash)
            self.hold_back(s.manifest_hash, f"its media file {s.path} is missing from the spool")
        if returned or collected:
            log.info("spool recovery: %d files back to incoming/ for the dock, %d removed", returned, collected)

    def _return_to_incoming(self, path: Path, device: str, seq: int) -> bool:
        """An arrival that did not commit goes back to the incoming path (True), unless the dock has begun the
        file again there: then this copy goes (the recorder still holds the segment, no dock receipt named it)."""
        incoming = self.incoming_path(device, seq)
        if incoming.exists():
            path.unlink()
            return False
        os.replace(path, incoming)
        fsync_dir(incoming.parent)
        return True

    def _arrived_again(self, arrival: Arrival, known: Spooled, source: Path) -> None:
        same = (known.device, known.seq, known.media_sha256) == (arrival.device, arrival.seq, arrival.media_sha256)
        if not same:
            raise SpoolError(f"{arrival.manifest_hash} is held already as {known.device} seq {known.seq} with media "
                             f"{known.media_sha256}; this arrival says {arrival.device} seq {arrival.seq}, media "
                             f"{arrival.media_sha256}")
        if arrival.media_sha256 is not None and source.exists():
            # A second copy of bytes held (the same hash) or stored on the server with a receipt already.
            source.unlink()

    def _move_in(self, arrival: Arrival, source: Path, target: Path) -> None:
        try:
            size = source.stat().st_size
        except FileNotFoundError:
            raise SpoolError(f"{arrival.device} seq {arrival.seq}: no file at {source}") from None
        if size != arrival.media_size:
            raise SpoolError(f"{arrival.device} seq {arrival.seq}: {source} holds {size} bytes, the arrival says "
                             f"{arrival.media_size}")
        if not target.parent.exists():
            target.parent.mkdir()
            fsync_dir(target.parent.parent)
        os.replace(source, target)
        fsync_file(target)
        fsync_dir(target.parent)
        fsync_dir(source.parent)

    def _insert(self, a: Arrival) -> None:
        with self._lock, self._transaction():
            self._db.execute(
                "INSERT INTO segments (manifest_hash, device, seq, envelope, media_sha256, media_size, marked, "
                "findings, arrived_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (a.manifest_hash, a.device, a.seq, a.envelope, a.media_sha256, a.media_size, a.marked,
                 json.dumps(a.findings), self._now_ns()))
            self._db.execute(
                "INSERT INTO heads (device, seq, manifest_hash) VALUES (?, ?, ?) ON CONFLICT (device) DO UPDATE "
                "SET seq = excluded.seq, manifest_hash = excluded.manifest_hash WHERE excluded.seq > heads.seq",
                (a.device, a.seq, a.manifest_hash))

    def _attach_one(self, device: str, seq: int, receipt_id: int, listed: dict[tuple[int, str], str | None]) -> None:
        rows = self._db.execute("SELECT manifest_hash, media_sha256, dock_receipt_id FROM segments "
                                "WHERE device = ? AND seq = ?", (device, seq)).fetchall()
        waiting = [(h, media) for h, media, receipt in rows if receipt is None]
        if not waiting and all(receipt != receipt_id for _, _, receipt in rows):
            raise SpoolError(f"{device} seq {seq} is not in the spool waiting for a dock receipt")
        for manifest_hash, media in waiting:
            if listed.get((seq, manifest_hash), "absent") != media:
                raise SpoolError(f"the dock receipt does not name {device} seq {seq} as {manifest_hash} with media "
                                 f"{media}")
            self._db.execute("UPDATE segments SET dock_receipt_id = ? WHERE manifest_hash = ?",
                             (receipt_id, manifest_hash))

    def _waiting(self, manifest_hash: str) -> Spooled:
        row = self.get(manifest_hash)
        if row is None or row.server_receipt is not None:
            raise SpoolError(f"no segment {manifest_hash} waits for upload in the spool")
        return row

    def _update_waiting(self, manifest_hash: str, assignment: str, values: tuple[Any, ...]) -> None:
        with self._lock, self._transaction():
            done = self._db.execute(f"UPDATE segments SET {assignment} WHERE manifest_hash = ? AND "
                                    "server_receipt IS NULL", (*values, manifest_hash)).rowcount
        if done != 1:
            raise SpoolError(f"no segment {manifest_hash} waits for upload in the spool")

    def _delete_media(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            fsync_dir(path.parent)

    def _media_path(self, device: str, seq: int, manifest_hash: str) -> Path:
        return self.root / MEDIA / device / f"{seq:0{_SEQ_DIGITS}d}.{manifest_hash}"

    def _device_lock(self, device: str) -> threading.Lock:
        with self._device_locks_lock:
            return self._device_locks.setdefault(device, threading.Lock())

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """A write transaction; the caller holds self._lock."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _spooled(self, sql: str, args: tuple[Any, ...]) -> list[Spooled]:
        return [self._row(r) for r in self._query(sql, args)]

    def _row(self, r: tuple[Any, ...]) -> Spooled:
        (device, seq, manifest_hash, envelope, media_sha256, media_size, marked, findings, arrived_ns, dock,
         upload_url, held_back, server_receipt) = r
        held = media_sha256 is not None and server_receipt is None
        return Spooled(device, seq, manifest_hash, envelope, media_sha256, media_size, bool(marked),
                       json.loads(findings), arrived_ns,
                       self._media_path(device, seq, manifest_hash) if held else None, dock, upload_url, held_back,
                       server_receipt)


# Checks of what the dock and the uploader hand in

def _check_device(device: object) -> None:
    if not isinstance(device, str) or not IDENTIFIER.fullmatch(device):
        raise SpoolError(f"device {device!r} is not a device id (letters, digits, '.', '_', '-')")


def _check_seq(seq: object) -> None:
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise SpoolError(f"seq {seq!r} is not a non-negative integer")


def _check_hash(value: object, what: str) -> None:
    if not isinstance(value, str) or not HEX64.fullmatch(value):
        raise SpoolError(f"{what} {value!r} is not 64 lower-case hex digits")


def _check_arrival(a: Arrival) -> None:
    _check_device(a.device)
    _check_seq(a.seq)
    _check_hash(a.manifest_hash, "manifest_hash")
    if not isinstance(a.envelope, bytes) or not a.envelope:
        raise SpoolError("envelope must be the manifest envelope's bytes")
    if a.media_sha256 is not None:
        _check_hash(a.media_sha256, "media_sha256")
    if not isinstance(a.media_size, int) or isinstance(a.media_size, bool) or a.media_size < 0:
        raise SpoolError(f"media_size {a.media_size!r} is not a non-negative integer")
    if a.media_sha256 is None and a.media_size:
        raise SpoolError("an arrival without media has media_size 0")
    if not isinstance(a.marked, bool):
        raise SpoolError("marked must be True or False")
    if not isinstance(a.findings, list) or any(code not in errors.DESCRIPTIONS for code in a.findings):
        raise SpoolError(f"findings must be a list of finding codes (protocol/errors.py), not {a.findings!r}")


def _payload(raw: bytes, type_: str, check: Callable[[object], dict[str, Any]]) -> dict[str, Any]:
    """The fields of a signed structure, checked for form (the signature is not checked here)."""
    try:
        return check(canonical.decode(signatures.open_envelope(raw, type_).payload))
    except (ProtocolError, canonical.CanonicalError) as exc:
        raise SpoolError(f"not a well-formed {type_}: {exc}") from None


def _dock_receipt_segments(raw: bytes, device: str) -> dict[tuple[int, str], str | None]:
    """(seq, manifest hash) -> media hash, for what a dock receipt of `device` names."""
    f = _payload(raw, receipts.DOCK_TYPE, receipts.check_dock)
    if f["device"] != device:
        raise SpoolError(f"the dock receipt is for {f['device']}, not {device}")
    return {(s["seq"], s["manifest"]): s["media_sha256"] for s in f["segments"]}


def _check_server_receipt(raw: bytes, row: Spooled) -> None:
    f = _payload(raw, receipts.SERVER_TYPE, receipts.check_server)
    if (f["device"], f["seq"], f["manifest"]) != (row.device, row.seq, row.manifest_hash):
        raise SpoolError(f"the server receipt names {f['device']} seq {f['seq']} ({f['manifest']}), not "
                         f"{row.device} seq {row.seq} ({row.manifest_hash})")


def _parse_media_name(device: str, name: str) -> tuple[int, str] | None:
    """(seq, manifest hash) from a media file's name, or None for a name the spool does not make."""
    seq, dot, manifest_hash = name.partition(".")
    if len(seq) == _SEQ_DIGITS and seq.isdigit() and seq.isascii() and dot and HEX64.fullmatch(manifest_hash) \
            and IDENTIFIER.fullmatch(device):
        return int(seq), manifest_hash
    return None


def _chunks(seqs: Iterable[int]) -> Iterator[tuple[int, ...]]:
    items = tuple(seqs)
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start:start + _IN_CHUNK]


def _marks(chunk: tuple[int, ...]) -> str:
    return ", ".join("?" * len(chunk))
