from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.databases import BACKENDS, fresh_database


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty index database, once on SQLite and once on PostgreSQL when one is configured."""
    with fresh_database(request.param, tmp_path) as url:
        yield url
