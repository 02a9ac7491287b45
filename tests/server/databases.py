"""Index databases for server tests: a fresh SQLite file, and a fresh PostgreSQL schema when
LIUHEN_TEST_PG_DSN names a server (CI sets it where one is reachable)."""

from __future__ import annotations

import os
import secrets
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy

PG_DSN = os.environ.get("LIUHEN_TEST_PG_DSN", "")
BACKENDS = ["sqlite", "postgresql"] if PG_DSN else ["sqlite"]


def _pg_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+psycopg://", 1) if dsn.startswith("postgresql://") else dsn


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty database that is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'index.sqlite3'}"
        return
    schema = f"t_{secrets.token_hex(6)}"
    admin = sqlalchemy.create_engine(_pg_url(PG_DSN), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in PG_DSN else "?"
    try:
        yield f"{PG_DSN}{sep}options={urllib.parse.quote(f'-csearch_path={schema}')}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()
