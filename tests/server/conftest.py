from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.segmenter import SegmentFile
from tests.server.databases import BACKENDS, fresh_database
from tests.server.footage import Site, record_media, server_with_footage


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty index database, once on SQLite and once on PostgreSQL when one is configured."""
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def segment_files(tmp_path_factory: pytest.TempPathFactory) -> list[SegmentFile]:
    """Three real fMP4 segments (tests/server/footage.py), made once for all the tests that store footage."""
    return record_media(tmp_path_factory.mktemp("media"))


@pytest.fixture
def site(db_url: str, tmp_path: Path, segment_files: list[SegmentFile]) -> Iterator[Site]:
    """A running server with one recording in it (tests/server/footage.py, Site)."""
    with server_with_footage(tmp_path, db_url, segment_files) as (server, footage):
        yield Site(server, footage)
