"""Check-out: a recorder assigned to an officer at the station, as a gateway-signed assignment for the dock.

A check-out signs an assignment (protocol/assignment.py) at once and keeps it, pending, until the recorder
docks: the dock asks `pending_for(device)` for the envelope to hand over, and says `delivered(device, ref)`
once the recorder has kept it (`ref` is the SHA-256 of the envelope, as the recorder names it in every
manifest). A newer check-out of the same recorder supersedes a pending one: only the newest is handed over.

The check-outs live in SQLite (`checkouts.sqlite3` in the gateway's data folder, WAL, synchronous=FULL):
each change is one transaction, so after a crash a check-out is either whole or absent, and one that was
answered to the station is on disk. Methods block briefly (fsync): asyncio code calls them in a thread.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import assignment, signatures
from protocol.errors import ProtocolError
from protocol.fields import HEX64, IDENTIFIER

INDEX = "checkouts.sqlite3"
PENDING = "pending"
DELIVERED = "delivered"
SUPERSEDED = "superseded"  # a newer check-out of the recorder came before this one was delivered
OFFICER_FIELDS = ("number", "name", "unit_code", "unit_name")
LIST_LIMIT = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS checkouts (
    ref TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    envelope BLOB NOT NULL,
    officer_number TEXT NOT NULL,
    officer_name TEXT NOT NULL,
    unit_code TEXT NOT NULL,
    unit_name TEXT NOT NULL,
    issued_ns INTEGER NOT NULL,
    superseded_ns INTEGER,
    delivered_ns INTEGER
);
CREATE INDEX IF NOT EXISTS checkouts_by_device ON checkouts (device, issued_ns);
"""
_COLUMNS = ("ref, device, envelope, officer_number, officer_name, unit_code, unit_name, issued_ns, superseded_ns, "
            "delivered_ns")


class CheckoutError(ValueError):
    """A check-out that cannot be made or a delivery that names nothing known; nothing was changed."""


@dataclass(frozen=True)
class Officer:
    """The officer's identity record (GA/T 947 `ZFY_INFO`); protocol/assignment.py limits its lengths."""

    number: str
    name: str
    unit_code: str
    unit_name: str

    def to_json(self) -> dict[str, str]:
        return {"number": self.number, "name": self.name, "unit_code": self.unit_code, "unit_name": self.unit_name}


@dataclass(frozen=True)
class Checkout:
    ref: str  # SHA-256 (hex) of the assignment envelope
    device: str
    officer: Officer
    envelope: bytes  # the gateway-signed assignment, as handed to the recorder
    issued_ns: int
    superseded_ns: int | None
    delivered_ns: int | None

    @property
    def status(self) -> str:
        if self.delivered_ns is not None:
            return DELIVERED
        return SUPERSEDED if self.superseded_ns is not None else PENDING

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "device": self.device, "officer": self.officer.to_json(),
                "issued_ns": self.issued_ns, "status": self.status, "delivered_ns": self.delivered_ns}


def parse_officer(obj: object) -> Officer:
    """An officer from a JSON object or a form: exactly the four fields, strings, surrounding blanks dropped
    (the lengths are checked when the assignment is made)."""
    if not isinstance(obj, Mapping):
        raise CheckoutError("officer must be an object with " + ", ".join(OFFICER_FIELDS))
    unknown = sorted(set(obj) - set(OFFICER_FIELDS))
    missing = [name for name in OFFICER_FIELDS if name not in obj]
    if unknown or missing:
        raise CheckoutError(f"officer: missing {missing}, unknown {unknown}")
    if not all(isinstance(obj[name], str) for name in OFFICER_FIELDS):
        raise CheckoutError("officer fields must be strings")
    return Officer(*(obj[name].strip() for name in OFFICER_FIELDS))


class Checkouts:
    def __init__(self, folder: Path, gateway: str, signer: signatures.Signer, *,
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        """`gateway` is this gateway's enrolled id and `signer` its key: recorders check the assignment
        against the gateways of their trust list."""
        if not IDENTIFIER.fullmatch(gateway):
            raise CheckoutError(f"gateway id {gateway!r} is not a valid id")
        folder.mkdir(parents=True, exist_ok=True)
        self.gateway = gateway
        self._signer = signer
        self._clock_ns = clock_ns
        self._lock = threading.Lock()  # one connection, several threads
        self._db = sqlite3.connect(folder / INDEX, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a check-out the station was told about survives a power cut.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Checkouts:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def check_out(self, device: str, officer: Officer) -> Checkout:
        """Sign an assignment of `device` to `officer` and keep it pending; a pending one before it is
        superseded. Bad fields raise CheckoutError naming the field."""
        fields = {"gateway": self.gateway, "device": device, "officer": officer.to_json(),
                  "issued_ns": self._clock_ns()}
        try:
            envelope = assignment.issue(self._signer, fields)
        except ProtocolError as exc:
            raise CheckoutError(exc.message) from None
        made = Checkout(assignment.Assignment(fields, envelope).ref, device, officer, envelope,
                        fields["issued_ns"], None, None)
        with self._transaction() as db:
            # The same envelope again (same recorder, officer and nanosecond): it is that check-out.
            known = db.execute("SELECT 1 FROM checkouts WHERE ref = ?", (made.ref,)).fetchone() is not None
            if not known:
                db.execute("UPDATE checkouts SET superseded_ns = ? WHERE device = ? AND superseded_ns IS NULL "
                           "AND delivered_ns IS NULL", (made.issued_ns, device))
                db.execute(f"INSERT INTO checkouts ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
                           (made.ref, device, envelope, *(officer.to_json()[f] for f in OFFICER_FIELDS),
                            made.issued_ns))
        if known:
            stored = self.get(made.ref)
            assert stored is not None  # rows are never deleted
            return stored
        return made

    def pending_for(self, device: str) -> bytes | None:
        """The assignment envelope to hand to `device` when it docks, or None."""
        rows = self._select("WHERE device = ? AND superseded_ns IS NULL AND delivered_ns IS NULL", (device,), 1)
        return rows[0].envelope if rows else None

    def delivered(self, device: str, ref: str) -> None:
        """The recorder kept the assignment `ref`; saying it again changes nothing."""
        if not isinstance(ref, str) or not HEX64.fullmatch(ref):
            raise CheckoutError(f"assignment ref {ref!r} is not a SHA-256 in hex")
        with self._transaction() as db:
            row = db.execute("SELECT delivered_ns FROM checkouts WHERE ref = ? AND device = ?",
                             (ref, device)).fetchone()
            if row is None:
                raise CheckoutError(f"no check-out of {device} has assignment {ref}")
            if row[0] is None:
                db.execute("UPDATE checkouts SET delivered_ns = ? WHERE ref = ?", (self._clock_ns(), ref))

    def get(self, ref: str) -> Checkout | None:
        rows = self._select("WHERE ref = ?", (ref,), 1)
        return rows[0] if rows else None

    def list(self, device: str | None = None, limit: int = LIST_LIMIT) -> list[Checkout]:
        """Newest first; of one device, or of all."""
        if device is None:
            return self._select("", (), limit)
        return self._select("WHERE device = ?", (device,), limit)

    def _select(self, where: str, args: tuple[Any, ...], limit: int) -> list[Checkout]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM checkouts {where} "
                                    "ORDER BY issued_ns DESC, rowid DESC LIMIT ?", (*args, limit)).fetchall()
        return [Checkout(r[0], r[1], Officer(*r[3:7]), bytes(r[2]), r[7], r[8], r[9]) for r in rows]

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One immediate transaction under the connection's lock, rolled back when the block raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
