"""The Alembic migrations build exactly the schema server/schema.py declares, on every backend."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.database import Database, upgrade
from server.schema import metadata


def test_migrations_match_the_declared_schema(db_url: str) -> None:
    db = Database(db_url)
    try:
        upgrade(db.engine)
        upgrade(db.engine)  # a second run is a no-op
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
        assert diff == [], f"schema.py and the migrations differ: {diff}"
    finally:
        db.close()
