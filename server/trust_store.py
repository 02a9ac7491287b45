"""The server's trust list (docs/protocol.md §4) as rows of the `keys` table, and back.

Ingest checks every manifest and dock receipt against it, so it is cached; several processes change
it (server processes, `liuhen admin` beside them), so the cache is checked on every use. Keys are only
ever added and revoked once, never otherwise changed or deleted, so the pair (keys, revoked keys) grows
with every change: counting both is an exact version of the table, and costs one small query.
"""

from __future__ import annotations

from sqlalchemy import Connection, RowMapping, func, insert, select, update

from protocol import signatures
from protocol.trust import Revocation, TrustedKey, TrustList
from server.schema import keys


def _key(r: RowMapping) -> TrustedKey:
    public_key = signatures.public_key_from_spki(r["spki"])
    revoked = None
    if r["revoked_at_ns"] is not None:
        revoked = Revocation(r["revoked_at_ns"], r["revoked_after_seq"], r["revoked_reason"] or "")
    return TrustedKey(keyid=r["keyid"], alg=r["alg"], spki=r["spki"], role=r["role"], owner=r["owner"],
                      public_key=public_key, valid_from_ns=r["valid_from_ns"], valid_until_ns=r["valid_until_ns"],
                      revoked=revoked)


def load(conn: Connection) -> TrustList:
    rows = conn.execute(select(keys).order_by(keys.c.enrolled_ns, keys.c.keyid)).mappings()
    return TrustList([_key(r) for r in rows])


def get_key(conn: Connection, keyid: str) -> TrustedKey | None:
    row = conn.execute(select(keys).where(keys.c.keyid == keyid)).mappings().first()
    return _key(row) if row is not None else None


def insert_key(conn: Connection, key: TrustedKey, now_ns: int) -> None:
    conn.execute(insert(keys).values(
        keyid=key.keyid, role=key.role, owner=key.owner, alg=key.alg, spki=key.spki,
        valid_from_ns=key.valid_from_ns, valid_until_ns=key.valid_until_ns, enrolled_ns=now_ns))


def revoke_key(conn: Connection, keyid: str, revocation: Revocation) -> None:
    done = conn.execute(update(keys).where(keys.c.keyid == keyid, keys.c.revoked_at_ns.is_(None)).values(
        revoked_at_ns=revocation.at_ns, revoked_after_seq=revocation.after_seq, revoked_reason=revocation.reason))
    if done.rowcount != 1:
        raise ValueError(f"key {keyid} is not enrolled, or is revoked already")


_VERSION = select(func.count(), func.count(keys.c.revoked_at_ns)).select_from(keys)


class TrustStore:
    """The trust list as of the newest committed change, cached per process."""

    def __init__(self) -> None:
        self._cached: tuple[tuple[int, int], TrustList] | None = None

    def trust(self, conn: Connection) -> TrustList:
        """A fresh TrustList the caller may change."""
        return self.versioned(conn)[1]

    def versioned(self, conn: Connection) -> tuple[tuple[int, int], TrustList]:
        """The trust list's version and a fresh copy of it; what was verified against one version holds for as
        long as the version stays. The version is read before the rows, so a cached list is never older than
        the version it is filed under (at worst newer, and then reloaded once more)."""
        version = tuple(conn.execute(_VERSION).one())
        cached = self._cached
        if cached is None or cached[0] != version:
            cached = (version, load(conn))
            self._cached = cached
        return cached[0], TrustList(cached[1].entries())
