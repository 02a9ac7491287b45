"""Orphan blobs: media files in the blob store that no segments row names.

Ingest puts a blob before it commits the row that names it, so a crash in between leaves a blob without a
row (the upload is finalized again after the restart, and then names it; or it never is). The index is the
truth: a blob no row names is nobody's footage, and is deleted.

Only blobs older than `orphan_grace_seconds` are considered. With several processes ingesting, one may be
collecting while another has put a blob and not yet committed its row; the grace period must outlast that
window. Collecting too early would lose nothing (the staged upload stays, and ingest puts the blob back when
it finds it gone after its commit), but a row would name a missing blob for a while.
"""

from __future__ import annotations

from sqlalchemy import select

from server.schema import segments
from server.services import Services

_BATCH = 500


def collect_orphans(s: Services) -> int:
    """Delete blobs past the grace period that no segments row names; return how many."""
    cutoff = s.clock() - s.config.orphan_grace_seconds * 10**9
    removed = 0
    batch: list[str] = []
    for name in s.blobs.older_than(cutoff):
        batch.append(name)
        if len(batch) == _BATCH:
            removed += _collect(s, batch)
            batch = []
    return removed + (_collect(s, batch) if batch else 0)


def _collect(s: Services, names: list[str]) -> int:
    with s.db.read() as conn:
        named = set(conn.execute(select(segments.c.media_sha256).where(segments.c.media_sha256.in_(names))).scalars())
    orphans = [n for n in names if n not in named]
    for name in orphans:
        s.blobs.delete(name)
    return len(orphans)
