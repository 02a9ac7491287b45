"""The blob store: media files, write-once, named by their SHA-256.

The interface is what an object store can honestly do too (the S3-compatible store will implement
it): put a whole finished object, read a byte range, copy out, delete, list what is older than a
moment. No append, no rename, no partial overwrite. Uploads are staged elsewhere (server/tus.py) and
only a complete, verified file becomes a blob.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from server.durable import fsync_dir

CHUNK = 1024 * 1024


class BlobError(Exception):
    pass


class BlobStore(Protocol):
    def put_file(self, src: Path, sha256: str) -> bool:
        """Store the finished file `src` (whose SHA-256 the caller computed) as blob `sha256`; durable
        when this returns. False when the blob was there already (puts are idempotent). `src` may be
        consumed (linked or moved) but is not modified."""

    def exists(self, sha256: str) -> bool: ...

    def size(self, sha256: str) -> int | None: ...

    def read_range(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes [start, end) in chunks; raises BlobError when the blob is gone."""

    def copy_to(self, sha256: str, dst: Path) -> None: ...

    def delete(self, sha256: str) -> None:
        """Remove a blob for good (retention purge, orphan collection); absent blobs are fine."""

    def older_than(self, cutoff_ns: int) -> Iterator[str]:
        """Names of blobs stored before `cutoff_ns` (UTC ns), for orphan collection."""


def _valid(sha256: str) -> bool:
    return len(sha256) == 64 and all(c in "0123456789abcdef" for c in sha256)


def read_file_range(path: Path, start: int, end: int) -> Iterator[bytes]:
    """Bytes [start, end) of a file in chunks; BlobError when it is gone or shorter. The file is opened
    at once, so a missing one fails the call rather than the first read."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the generator
    except FileNotFoundError as exc:
        raise BlobError(f"{path.name} is not in the store") from exc
    return _chunks(f, path.name, start, end)


def _chunks(f: BinaryIO, name: str, start: int, end: int) -> Iterator[bytes]:
    with f:
        f.seek(start)
        left = end - start
        while left > 0:
            chunk = f.read(min(CHUNK, left))
            if not chunk:
                raise BlobError(f"{name} is shorter than {end} bytes")
            left -= len(chunk)
            yield chunk


class FileBlobStore:
    """Blobs as read-only files `<root>/<ab>/<cd>/<sha256>` on a local filesystem."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _valid(sha256):
            raise BlobError(f"{sha256!r} is not a SHA-256 in lower-case hex")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put_file(self, src: Path, sha256: str) -> bool:
        dst = self.path(sha256)
        if dst.exists():
            return False
        # The folders a blob lands in are made on demand; each new one must reach its parent's entries on disk.
        new_folders = [d for d in (dst.parent.parent, dst.parent) if not d.exists()]
        dst.parent.mkdir(parents=True, exist_ok=True)
        # Named by process and thread: two ingests of the same bytes at once must not share a staging file.
        tmp = dst.with_name(f".{sha256}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.unlink(missing_ok=True)  # left by a crash of an earlier process with this id
        try:
            # A hard link costs no second write of the footage; across filesystems, copy.
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        # A blob's time is when it was stored (orphan collection's grace period counts from it), not when the
        # staged file it is linked to was last written.
        os.utime(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o444)
        os.replace(tmp, dst)
        fsync_dir(dst.parent)
        for folder in new_folders:
            fsync_dir(folder.parent)
        return True

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).exists()

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def read_range(self, sha256: str, start: int, end: int) -> Iterator[bytes]:
        return read_file_range(self.path(sha256), start, end)

    def copy_to(self, sha256: str, dst: Path) -> None:
        try:
            shutil.copyfile(self.path(sha256), dst)
        except FileNotFoundError as exc:
            raise BlobError(f"blob {sha256} is not in the store") from exc

    def delete(self, sha256: str) -> None:
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        fsync_dir(path.parent)

    def older_than(self, cutoff_ns: int) -> Iterator[str]:
        for first in sorted(self.root.iterdir()):
            if not first.is_dir():
                continue
            for second in sorted(first.iterdir()):
                for blob in sorted(second.iterdir()):
                    if _valid(blob.name) and blob.stat().st_mtime_ns < cutoff_ns:
                        yield blob.name
