"""Verify recorder stores on disk: find manifests, hash media once, run the chain rules."""

from __future__ import annotations

import hashlib
import multiprocessing
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from protocol import chain, layout
from protocol.chain import FileFacts, Item, Report
from protocol.manifest import Manifest
from protocol.trust import TrustList


def hash_file(path: Path) -> FileFacts | None:
    """Size and SHA-256 of a file read once, or None when there is no such file."""
    try:
        with open(path, "rb") as f:
            digest = hashlib.file_digest(f, "sha256")
            size = f.tell()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return FileFacts(size, digest.digest())


def _device_names(trust: TrustList) -> set[str]:
    return {k.owner for k in trust.entries() if k.role == "device"}


def scan(paths: list[Path], trust: TrustList) -> Iterator[Item]:
    """Every *.manifest under the paths, with what the store layout claims about it.

    A folder named after an enrolled device is that device's folder: manifests
    in it that name another device are flagged as replayed. Elsewhere (a folder
    of copies, say) no device is claimed.
    """
    devices = _device_names(trust)
    seen: set[Path] = set()
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob(f"*{layout.MANIFEST_SUFFIX}"))
        for path in files:
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            folder = path.parent.name
            yield Item(
                location=str(path),
                envelope=path.read_bytes(),
                claimed_device=folder if folder in devices else None,
                claimed_seq=layout.seq_from_manifest_name(path.name),
            )


def media_path(item: Item, m: Manifest) -> Path:
    return Path(item.location).parent / m.media["name"]


def _hash_worker(files: list[Path], conn: Connection) -> None:
    for path in files:
        conn.send((path.resolve(), hash_file(path)))
    conn.close()


class _PrefetchingHasher:
    """Hashes the store's media files in a forked worker process, in store order.

    Parsing manifests and checking signatures in this process then overlaps
    with hashing, and verification runs at hashing speed. A thread would not
    do: between chunks it needs the GIL back and waits behind the manifest
    checks, so the two would take turns instead of running together.
    Only files named like media in the store layout are hashed ahead; anything
    else a manifest names, or asks for twice, is hashed when asked for.
    """

    def __init__(self, paths: list[Path]) -> None:
        files = [p for root in paths if root.is_dir() for p in sorted(root.rglob("*")) if layout.is_media_name(p.name)]
        self._pending = {p.resolve() for p in files}
        self._ready: dict[Path, FileFacts | None] = {}
        context = multiprocessing.get_context("fork")
        self._conn, child_end = context.Pipe(duplex=False)
        self._worker = context.Process(target=_hash_worker, args=(files, child_end), daemon=True)
        self._worker.start()
        child_end.close()

    def __call__(self, item: Item, m: Manifest) -> FileFacts | None:
        path = media_path(item, m).resolve()
        if path not in self._pending:
            return hash_file(path)
        self._pending.discard(path)
        try:
            while path not in self._ready:
                done, facts = self._conn.recv()
                self._ready[done] = facts
        except EOFError:  # the worker died: do the work here rather than report nonsense
            return hash_file(path)
        return self._ready.pop(path)

    def close(self) -> None:
        self._worker.kill()
        self._worker.join()
        self._conn.close()


def verify_paths(paths: list[Path], trust: TrustList, tolerance_ns: int = chain.DEFAULT_TIME_TOLERANCE_NS) -> Report:
    hasher = _PrefetchingHasher(paths)
    try:
        return chain.verify(scan(paths, trust), trust, hasher, tolerance_ns=tolerance_ns)
    finally:
        hasher.close()
