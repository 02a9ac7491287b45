"""Watch a case server's public transparency log from outside (`liuhen log monitor`).

Each run reads the log's signed checkpoint and the C2SP tiles and entry bundles
published under one URL, and checks, against what earlier runs verified and
remembered in a state file:

- the log only grew: the tree did not shrink and the old tree is a prefix of the
  new one, so nothing once logged was changed or removed;
- every new entry is in the new tree at its index: the new root is recomputed
  from the entries' own bytes (with the old tree's subtree hashes read from the
  tiles and checked against the old root), and each entry's leaf hash is
  compared with the leaf hash the tiles hold;
- each recorder's manifests: no second, different manifest for a sequence number
  (a fork), and no sequence numbers missing for longer than a grace period
  unless a signed gap, recovery or storage-full record declares them;
- with a trust file, every envelope's signature, learning device and gateway
  keys from the log's enrollment records.

Problems with the log are findings (exit 1). Problems that stop a run from
checking anything (network, state file, arguments) raise MonitorError (exit 2).
When the log itself fails a check the state is not advanced, so the next run
checks the same step again.

The state file is JSON, replaced atomically after each run that advances:

    {"liuhen_log_monitor": 1, "origin": "<log origin>", "vkey": "<log verifier key>",
     "checkpoint": {"size": <int>, "root": "<hex>"},      the last checkpoint accepted
     "signatures": <bool>,                                  whether this state checks signatures
     "enrollments": ["<base64 envelope>", ...],            verified enrollment records, in log order
     "devices": {"<device>": {
         "seen": [[<first>, <last>, "<base64: 8 bytes of each manifest hash>"], ...],
         "declared": [[<first>, <last>], ...],              missing ranges that signed records declare
         "gaps": [[<first>, <last>, <first seen, UTC ns>], ...]}}}   unexplained gaps still open
"""

from __future__ import annotations

import base64
import binascii
import copy
import http.client
import json
import os
import urllib.error
import urllib.request
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from liuhen.timeparse import format_ns
from protocol import errors, log_records, manifest, receipts, signatures
from protocol.chain import Finding
from protocol.errors import ProtocolError
from protocol.manifest import Manifest
from protocol.tlog.checkpoint import NoteError, open_checkpoint, parse_vkey
from protocol.tlog.merkle import (
    BAD_TREE_SIZE,
    CONSISTENCY_MISMATCH,
    EMPTY_ROOT,
    HASH_SIZE,
    leaf_hash,
    merkle_root,
    node_hash,
    tree_root,
)
from protocol.tlog.tiles import (
    ENTRIES_LEVEL,
    ENTRY_BUNDLE_MALFORMED,
    MAX_ENTRY_SIZE,
    TILE_MALFORMED,
    TILE_WIDTH,
    Tile,
    TileError,
    TileHashSource,
    decode_entry_bundle,
)
from protocol.trust import TrustList

STATE_FORMAT = 1
HOUR_NS = 3600 * 1_000_000_000
DEFAULT_GAP_GRACE_NS = 24 * HOUR_NS
# Bytes of each manifest hash remembered per (device, seq). Any second manifest for a seen seq is a finding;
# the prefix only tells a manifest logged twice from a fork, so it need not resist collisions.
HASH_PREFIX = 8
CHECKPOINT_LIMIT = 1 << 20
TILE_LIMIT = TILE_WIDTH * HASH_SIZE
BUNDLE_LIMIT = TILE_WIDTH * (2 + MAX_ENTRY_SIZE)
HTTP_TIMEOUT_S = 30.0

# Reads `path` under the log's URL, at most `limit` + 1 bytes (so a caller can tell an oversized answer).
Fetch = Callable[[str, int], bytes]
Range = tuple[int, int]


class MonitorError(Exception):
    """The run could not check the log: network, state file or arguments. The message says what to do."""


class NotFound(MonitorError):
    """The log answered 404."""


def http_fetcher(base_url: str, timeout: float = HTTP_TIMEOUT_S) -> Fetch:
    """A Fetch over HTTP(S) for the log published under `base_url`."""
    base = base_url.rstrip("/") + "/"

    def fetch(path: str, limit: int) -> bytes:
        url = base + path
        request = urllib.request.Request(url, headers={"User-Agent": "liuhen-log-monitor"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.read(limit + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"{url}: not found (HTTP 404)") from exc
            raise MonitorError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except urllib.error.URLError as exc:
            raise MonitorError(f"cannot reach {url}: {exc.reason}") from exc
        except (OSError, ValueError, http.client.HTTPException) as exc:  # timeouts, resets, cut-off answers,
            raise MonitorError(f"cannot read {url}: {exc!r}") from exc  # and URLs urllib cannot use

    return fetch


class SeqRuns:
    """The sequence numbers seen for one device, as runs of consecutive numbers, with the first HASH_PREFIX
    bytes of each number's manifest hash: a few bytes per segment, stored as compact ranges."""

    def __init__(self) -> None:
        self._firsts: list[int] = []
        self._hashes: list[bytearray] = []

    def _last(self, i: int) -> int:
        return self._firsts[i] + len(self._hashes[i]) // HASH_PREFIX - 1

    def get(self, seq: int) -> bytes | None:
        """The remembered hash prefix of `seq`, or None if it was not seen."""
        i = bisect_right(self._firsts, seq) - 1
        if i < 0 or seq > self._last(i):
            return None
        offset = (seq - self._firsts[i]) * HASH_PREFIX
        return bytes(self._hashes[i][offset : offset + HASH_PREFIX])

    def add(self, seq: int, manifest_hash: bytes) -> None:
        """Remember a sequence number not seen before."""
        prefix = manifest_hash[:HASH_PREFIX]
        i = bisect_right(self._firsts, seq) - 1
        joins_next = i + 1 < len(self._firsts) and self._firsts[i + 1] == seq + 1
        if i >= 0 and self._last(i) + 1 == seq:
            self._hashes[i] += prefix
            if joins_next:
                self._hashes[i] += self._hashes.pop(i + 1)
                self._firsts.pop(i + 1)
        elif joins_next:
            self._firsts[i + 1] = seq
            self._hashes[i + 1][:0] = prefix
        else:
            self._firsts.insert(i + 1, seq)
            self._hashes.insert(i + 1, bytearray(prefix))

    def count(self) -> int:
        return sum(len(h) for h in self._hashes) // HASH_PREFIX

    def span(self) -> Range | None:
        return (self._firsts[0], self._last(len(self._firsts) - 1)) if self._firsts else None

    def holes(self) -> list[Range]:
        """The sequence numbers missing between seen ones, as inclusive ranges."""
        return [(self._last(i) + 1, self._firsts[i + 1] - 1) for i in range(len(self._firsts) - 1)]

    def to_json(self) -> list[list[object]]:
        return [[first, self._last(i), base64.b64encode(self._hashes[i]).decode("ascii")]
                for i, first in enumerate(self._firsts)]

    @classmethod
    def from_json(cls, value: object) -> SeqRuns:
        runs = cls()
        for run in _list(value, "seen"):
            if not (isinstance(run, list) and len(run) == 3 and isinstance(run[2], str)):
                raise ValueError("seen runs are [first, last, base64 hash prefixes]")
            first, last = _range(run[:2], "seen")
            try:
                prefixes = base64.b64decode(run[2], validate=True)
            except binascii.Error as exc:
                raise ValueError(f"seen run {first}..{last}: {exc}") from exc
            if len(prefixes) != (last - first + 1) * HASH_PREFIX or (runs._firsts and first <= runs._last(-1) + 1):
                raise ValueError(f"seen run {first}..{last} is out of order or has the wrong number of hashes")
            runs._firsts.append(first)
            runs._hashes.append(bytearray(prefixes))
        return runs


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, disjoint, non-adjacent inclusive ranges covering the same numbers."""
    merged: list[Range] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


def subtract_ranges(span: Range, covered: list[Range]) -> list[Range]:
    """The parts of `span` outside the merged ranges `covered`."""
    parts: list[Range] = []
    start, end = span
    for first, last in covered:
        if last < start or first > end:
            continue
        if first > start:
            parts.append((start, first - 1))
        start = max(start, last + 1)
    if start <= end:
        parts.append((start, end))
    return parts


@dataclass
class DeviceState:
    seen: SeqRuns = field(default_factory=SeqRuns)
    # Ranges that the device's gap, recovery and storage-full records declare never signed.
    declared: list[Range] = field(default_factory=list)
    # Unexplained gaps still open: (first, last, when a run first saw the numbers missing).
    gaps: list[tuple[int, int, int]] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {"seen": self.seen.to_json(), "declared": [list(r) for r in self.declared],
                "gaps": [list(g) for g in self.gaps]}

    @classmethod
    def from_json(cls, value: object) -> DeviceState:
        if not isinstance(value, dict):
            raise ValueError("a device entry must be an object")
        gaps = []
        for gap in _list(value.get("gaps"), "gaps"):
            if not (isinstance(gap, list) and len(gap) == 3 and _is_int(gap[2])):
                raise ValueError("gaps are [first, last, first_seen_ns]")
            gaps.append((*_range(gap[:2], "gaps"), gap[2]))
        return cls(SeqRuns.from_json(value.get("seen")),
                   [_range(r, "declared") for r in _list(value.get("declared"), "declared")], gaps)


@dataclass
class State:
    """What earlier runs verified: the log's identity, its last checkpoint, and the device sequences."""

    vkey: str
    size: int = 0
    root: bytes = EMPTY_ROOT
    # Whether this state checks signatures: fixed at the first run, so no stretch of the log goes unchecked.
    signatures: bool = False
    devices: dict[str, DeviceState] = field(default_factory=dict)
    # Verified enrollment records, replayed onto the trust file at every run.
    enrollments: list[bytes] = field(default_factory=list)

    @property
    def origin(self) -> str:
        # Liuhen logs sign their checkpoints with a key named after the origin (docs/protocol.md §9).
        return parse_vkey(self.vkey).name

    def device(self, name: str) -> DeviceState:
        return self.devices.setdefault(name, DeviceState())

    def to_json(self) -> dict[str, object]:
        return {
            "liuhen_log_monitor": STATE_FORMAT,
            "origin": self.origin,
            "vkey": self.vkey,
            "checkpoint": {"size": self.size, "root": self.root.hex()},
            "signatures": self.signatures,
            "enrollments": [base64.b64encode(e).decode("ascii") for e in self.enrollments],
            "devices": {name: self.devices[name].to_json() for name in sorted(self.devices)},
        }

    @classmethod
    def from_json(cls, doc: object) -> State:
        if not isinstance(doc, dict) or doc.get("liuhen_log_monitor") != STATE_FORMAT:
            raise ValueError(f'not a log monitor state (expected "liuhen_log_monitor": {STATE_FORMAT})')
        checkpoint = doc.get("checkpoint")
        if not (isinstance(checkpoint, dict) and _is_int(checkpoint.get("size")) and checkpoint["size"] >= 0
                and isinstance(checkpoint.get("root"), str)):
            raise ValueError("checkpoint must be {size, root}")
        root = bytes.fromhex(checkpoint["root"])
        if len(root) != HASH_SIZE or not isinstance(doc.get("vkey"), str) or not isinstance(doc.get("devices"), dict):
            raise ValueError("needs vkey, devices and a 32-byte checkpoint root")
        try:
            origin = parse_vkey(doc["vkey"]).name
        except NoteError as exc:
            raise ValueError(f"vkey: {exc.message}") from exc
        if doc.get("origin") != origin:
            raise ValueError(f"origin must be {origin!r}, the name of the vkey")
        if not isinstance(doc.get("signatures"), bool):
            raise ValueError("signatures must be true or false")
        enrollments = [base64.b64decode(e, validate=True) for e in _list(doc.get("enrollments"), "enrollments")]
        devices = {str(name): DeviceState.from_json(d) for name, d in doc["devices"].items()}
        return cls(doc["vkey"], checkpoint["size"], root, doc["signatures"], devices, enrollments)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _list(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list")
    return value


def _range(value: object, where: str) -> Range:
    if not (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value)
            and 0 <= value[0] <= value[1]):
        raise ValueError(f"{where}: ranges are [first, last] with 0 <= first <= last")
    return value[0], value[1]


def load_state(path: Path) -> State | None:
    """The state in `path`, or None when there is none yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MonitorError(f"cannot read state file {path}: {exc.strerror}") from exc
    try:
        return State.from_json(json.loads(data))
    except ValueError as exc:  # also bad JSON, UTF-8, hex and base64
        raise MonitorError(f"state file {path} is not usable: {exc}") from exc


def save_state(path: Path, state: State) -> None:
    """Replace the state file atomically, so a crash leaves the old state or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state.to_json(), f, indent=1, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise MonitorError(f"cannot write state file {path}: {exc.strerror}") from exc


def start_state(state: State | None, vkey: str | None, with_keys: bool) -> State:
    """The state to run from: the remembered one, or a new one for the log key given on the first run."""
    if vkey is not None:
        try:
            parse_vkey(vkey)
        except NoteError as exc:
            raise MonitorError(f"--key is not a log verifier key: {exc.message}") from exc
    if state is None:
        if vkey is None:
            raise MonitorError(
                "the first run needs the log's verifier key: pass --key '<origin>+<key id>+<base64 key>', "
                "obtained from the log operator over a channel you trust (not from the log's own server); "
                "it is then remembered in the state file")
        return State(vkey, signatures=with_keys)
    if vkey is not None and vkey != state.vkey:
        raise MonitorError(f"the state file follows the log key {state.vkey}; --key names another one. "
                           "Use a new state file to follow another log or key")
    if with_keys != state.signatures:
        raise MonitorError(
            "this state checks signatures: give --keys" if state.signatures else
            "this state was started without --keys, so earlier entries' signatures were never checked: "
            "use a new state file to check signatures from the start of the log")
    return state


@dataclass(frozen=True)
class PendingGap:
    device: str
    first: int
    last: int
    first_seen_ns: int
    finding_at_ns: int  # when it becomes a finding if still open

    def to_json(self) -> dict[str, object]:
        return {"device": self.device, "first": self.first, "last": self.last, "first_seen_ns": self.first_seen_ns,
                "finding_at_ns": self.finding_at_ns}


@dataclass
class Report:
    origin: str
    old_size: int
    new_size: int | None = None  # None when no checkpoint could be verified
    signatures: bool = False
    entries: int = 0
    kinds: Counter[str] = field(default_factory=Counter)
    new_manifests: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)
    pending: list[PendingGap] = field(default_factory=list)
    state: State | None = None  # the state after the run; None when it must not advance

    @property
    def clean(self) -> bool:
        return not self.findings

    @property
    def advanced(self) -> bool:
        return self.state is not None

    def add(self, code: str, message: str, device: str | None = None, seq: int | None = None,
            index: int | None = None) -> None:
        self.findings.append(Finding(code, device, seq, None if index is None else f"entry {index}", message))

    def device_summaries(self) -> list[dict[str, object]]:
        if self.state is None:
            return []
        summaries = []
        for name in sorted(set(self.new_manifests) | {n for n, d in self.state.devices.items() if d.gaps}):
            dev = self.state.devices[name]
            span = dev.seen.span()
            summaries.append({"device": name, "new_manifests": self.new_manifests[name], "seen": dev.seen.count(),
                              "first_seq": span[0] if span else None, "last_seq": span[1] if span else None,
                              "open_gaps": len(dev.gaps)})
        return summaries

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin, "old_size": self.old_size, "new_size": self.new_size,
            "entries_checked": self.entries, "signatures_checked": self.signatures,
            "kinds": dict(sorted(self.kinds.items())), "devices": self.device_summaries(),
            "pending_gaps": [p.to_json() for p in self.pending], "findings": [f.to_json() for f in self.findings],
            "clean": self.clean, "state_advanced": self.advanced,
        }


class _TileReader:
    """Reads each hash tile once per run: a server could answer a second read differently, and every check
    must see the same bytes."""

    def __init__(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._cache: dict[Tile, bytes] = {}

    def __call__(self, tile: Tile) -> bytes:
        if tile not in self._cache:
            data, substitute = _fetch_tile(self._fetch, tile, TILE_LIMIT)
            # A full tile begins with the hashes of the partial one it replaced: the tree only grew.
            self._cache[tile] = data[: tile.width * HASH_SIZE] if substitute else data
        return self._cache[tile]


def _fetch_tile(fetch: Fetch, tile: Tile, limit: int) -> tuple[bytes, bool]:
    """The tile's bytes, and whether they are the full tile standing in for a partial one that is gone
    (C2SP lets a log delete partial tiles once the full tile exists)."""
    try:
        return fetch(tile.path, limit), False
    except NotFound:
        if tile.width == TILE_WIDTH:
            raise
        return fetch(Tile(tile.level, tile.index).path, limit), True


def _read_bundle(fetch: Fetch, tile: Tile) -> list[bytes]:
    data, substitute = _fetch_tile(fetch, tile, BUNDLE_LIMIT)
    if len(data) > BUNDLE_LIMIT:
        raise TileError(ENTRY_BUNDLE_MALFORMED, f"{tile.path} is longer than any entry bundle")
    entries = decode_entry_bundle(data)
    if substitute:
        entries = entries[: tile.width]
    if len(entries) != tile.width:
        raise TileError(ENTRY_BUNDLE_MALFORMED, f"{tile.path} holds {len(entries)} entries, not {tile.width}")
    return entries


def _bottom_tile(level: int, index: int, size: int) -> Tile:
    """Level-0 tile or entry bundle `index` (`level` 0 or ENTRIES_LEVEL) as the tree of `size` leaves has it."""
    return Tile(level, index, min(TILE_WIDTH, size - index * TILE_WIDTH))


class _ExtendedTree:
    """The new tree as the monitor can vouch for it: whole subtrees before the old size are read from the tiles
    (and checked against the old root), everything from the old size on is hashed from the entries themselves.
    A root computed from this source therefore binds the new entries, whatever the tiles say about them."""

    def __init__(self, tiles: TileHashSource, old_size: int, new_leaves: bytearray) -> None:
        self._tiles = tiles
        self._old = old_size
        self._leaves = new_leaves
        self.size = old_size + len(new_leaves) // HASH_SIZE

    def leaf(self, index: int) -> bytes:
        return self.subtree(index, index + 1)

    def subtree(self, start: int, end: int) -> bytes:
        if end <= self._old:
            return self._tiles.subtree(start, end)
        if start >= self._old:
            raw = self._leaves[(start - self._old) * HASH_SIZE : (end - self._old) * HASH_SIZE]
            return merkle_root([bytes(raw[i : i + HASH_SIZE]) for i in range(0, len(raw), HASH_SIZE)])
        middle = (start + end) // 2
        return node_hash(self.subtree(start, middle), self.subtree(middle, end))


class _Run:
    """One run over the new entries, into a working copy of the state. Entry findings are kept apart and
    reported only if the log verifies: entries that the signed root does not bind prove nothing."""

    def __init__(self, fetch: Fetch, state: State, trust: TrustList | None) -> None:
        self.fetch = fetch
        self.state = state
        self.trust = trust
        self.entries = 0
        self.kinds: Counter[str] = Counter()
        self.new_manifests: Counter[str] = Counter()
        self.findings: list[Finding] = []

    def add(self, code: str, message: str, index: int, device: str | None = None, seq: int | None = None) -> None:
        self.findings.append(Finding(code, device, seq, f"entry {index}", message))

    def check_growth(self, report: Report, size: int, root: bytes) -> bool:
        """Fetch and check the entries from the old size to `size`, processing each into the working state;
        True when the new tree verifiably extends the old one with exactly these entries."""
        old = self.state.size
        read_tile = _TileReader(self.fetch)
        tiles = TileHashSource(size, read_tile)
        if old and tree_root(tiles, old) != self.state.root:
            report.add(CONSISTENCY_MISMATCH, f"the tree of size {size} does not extend the tree of size {old} "
                                             "verified before: entries already logged were changed")
            return False
        leaves = bytearray()
        mismatches = 0
        for index in range(old // TILE_WIDTH, (size - 1) // TILE_WIDTH + 1):
            entries = _read_bundle(self.fetch, _bottom_tile(ENTRIES_LEVEL, index, size))
            tile = _bottom_tile(0, index, size)
            held = read_tile(tile)
            if len(held) != tile.width * HASH_SIZE:
                raise TileError(TILE_MALFORMED, f"{tile.path} has {len(held)} bytes, not {tile.width * HASH_SIZE}")
            for offset in range(max(0, old - index * TILE_WIDTH), tile.width):
                position = index * TILE_WIDTH + offset
                leaf = leaf_hash(entries[offset])
                if held[offset * HASH_SIZE : (offset + 1) * HASH_SIZE] != leaf:
                    mismatches += 1
                    report.add(errors.TLOG_ENTRY_MISMATCH, f"the entry hashes to {leaf.hex()[:16]}…, but "
                                                           f"{tile.path} holds another leaf hash", index=position)
                leaves += leaf
                self.entry(position, entries[offset])
        if tree_root(_ExtendedTree(tiles, old, leaves), size) != root:
            report.add(errors.TLOG_ROOT_MISMATCH, f"entries {old}..{size - 1} as served do not lead to the root "
                                                  f"of the signed checkpoint of size {size}")
            return False
        return not mismatches

    def entry(self, index: int, entry: bytes) -> None:
        self.entries += 1
        try:
            env = signatures.open_envelope(entry)
        except ProtocolError as exc:
            self.kinds[log_records.UNKNOWN] += 1
            self.add(exc.code, f"not a signed envelope: {exc.message}", index)
            return
        kind = log_records.ENTRY_KINDS.get(env.type, log_records.UNKNOWN)
        self.kinds[kind] += 1
        if env.type == manifest.TYPE:
            self.manifest(index, env)
        elif self.trust is not None and kind != log_records.UNKNOWN:
            try:
                self.record(env, self.trust)
            except ProtocolError as exc:
                self.add(exc.code, f"{kind}: {exc.message}", index)

    def manifest(self, index: int, env: signatures.Envelope) -> None:
        try:
            m = manifest.parse(env.payload)
        except ProtocolError as exc:
            self.add(exc.code, exc.message, index)
            return
        self.track(index, m)
        if self.trust is None:
            return
        try:
            _verify_manifest_signature(env, m, self.trust)
        except ProtocolError as exc:
            self.add(exc.code, exc.message, index, m.device, m.seq)

    def track(self, index: int, m: Manifest) -> None:
        dev = self.state.device(m.device)
        self.new_manifests[m.device] += 1
        seen = dev.seen.get(m.seq)
        if seen is None:
            dev.seen.add(m.seq, m.hash)
            dev.declared = merge_ranges([*dev.declared, *m.missing_ranges()])
        elif seen == m.hash[:HASH_PREFIX]:
            self.add(errors.CHAIN_DUPLICATE_SEQ, f"seq {m.seq} of {m.device} is logged a second time",
                     index, m.device, m.seq)
        else:
            self.add(errors.CHAIN_FORK, f"a different manifest for seq {m.seq} of {m.device} was logged before "
                                        f"(hash {seen.hex()}…, this one {m.hash.hex()[:16]}…)", index, m.device, m.seq)

    def record(self, env: signatures.Envelope, trust: TrustList) -> None:
        if env.type == receipts.DOCK_TYPE:
            receipts.open_receipt(env.raw, env.type, trust)
            return
        record = log_records.open_record(env.raw, env.type, trust)
        if env.type == log_records.ENROLLMENT_TYPE:
            log_records.apply_enrollment(trust, record)
            self.state.enrollments.append(env.raw)

    def update_gaps(self, report: Report, now_ns: int, grace_ns: int) -> None:
        for name, dev in sorted(self.state.devices.items()):
            still_open = []
            for hole in dev.seen.holes():
                for first, last in subtract_ranges(hole, dev.declared):
                    # Numbers only ever leave a gap (seen late, or declared), so an open gap keeps its age.
                    since = min((t for a, b, t in dev.gaps if a <= last and first <= b), default=now_ns)
                    still_open.append((first, last, since))
                    if now_ns - since >= grace_ns:
                        report.add(errors.CHAIN_GAP_UNEXPLAINED, f"seq {first}..{last} of {name} missing since "
                                   f"{format_ns(since)} and no signed record explains it", name, first)
                    else:
                        report.pending.append(PendingGap(name, first, last, since, since + grace_ns))
            dev.gaps = still_open


def _verify_manifest_signature(env: signatures.Envelope, m: Manifest, trust: TrustList) -> None:
    """Raise ProtocolError unless the manifest is signed by its own device's key, usable at its seq and time."""
    if m.key != env.keyid:
        raise ProtocolError(errors.MANIFEST_KEY_MISMATCH,
                            f"manifest names key {m.key[:16]}… but was signed by {env.keyid[:16]}…")
    key = trust.check_envelope(env, "device", m.device)
    code = key.usage_finding(m.time["start_ns"], m.seq)
    if code is not None:
        raise ProtocolError(code, f"key {key.keyid[:16]}… of {key.owner} may not sign seq {m.seq}")


def _replay_enrollments(state: State, trust: TrustList) -> None:
    """Apply the enrollment records earlier runs verified, so keys enrolled through the log are known."""
    for raw in state.enrollments:
        try:
            log_records.apply_enrollment(trust, log_records.open_record(raw, log_records.ENROLLMENT_TYPE, trust))
        except ProtocolError as exc:
            raise MonitorError(f"the trust file does not verify an enrollment record the state holds ({exc}): "
                               "give the trust file this state was started with") from exc


def monitor(fetch: Fetch, state: State, *, trust: TrustList | None = None, now_ns: int,
            gap_grace_ns: int = DEFAULT_GAP_GRACE_NS) -> Report:
    """Check the log once, starting from `state` (which is not changed). The report's `state` is the advanced
    state to save, or None when the log failed a check that the next run must repeat from the old state.
    Raises MonitorError when the log could not be read."""
    work = copy.deepcopy(state)
    report = Report(state.origin, state.size, signatures=trust is not None)
    if trust is not None:
        trust = TrustList(trust.entries())  # keys enrolled through the log are added to a copy
        _replay_enrollments(work, trust)
    try:
        checkpoint, _ = open_checkpoint(fetch("checkpoint", CHECKPOINT_LIMIT), state.origin, [parse_vkey(state.vkey)])
    except NoteError as exc:
        report.add(exc.code, f"the checkpoint does not verify with the log key: {exc.message}")
        return report
    report.new_size = checkpoint.size
    if checkpoint.size < state.size:
        report.add(BAD_TREE_SIZE, f"the log shrank from {state.size} to {checkpoint.size} entries")
        return report
    if checkpoint.size == state.size and checkpoint.root != state.root:
        report.add(CONSISTENCY_MISMATCH, f"the tree of size {state.size} has another root than before: "
                                         "entries already logged were changed")
        return report
    run = _Run(fetch, work, trust)
    if checkpoint.size > state.size:
        try:
            verified = run.check_growth(report, checkpoint.size, checkpoint.root)
        except ProtocolError as exc:  # a tile or entry bundle the log serves is malformed
            report.add(exc.code, exc.message)
            verified = False
        report.entries = run.entries
        if not verified:
            return report
    report.kinds, report.new_manifests = run.kinds, run.new_manifests
    report.findings += run.findings
    work.size, work.root = checkpoint.size, checkpoint.root
    run.update_gaps(report, now_ns, gap_grace_ns)
    report.state = work
    return report


def render(report: Report) -> str:
    grown = "?" if report.new_size is None else report.new_size
    checked = "signatures checked" if report.signatures else "signatures not checked (no --keys)"
    lines = [f"log {report.origin}: size {report.old_size} -> {grown}, {report.entries} new entries ({checked})"]
    if report.kinds:
        lines.append("  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(report.kinds.items())))
    for d in report.device_summaries():
        span = f"seq {d['first_seq']}..{d['last_seq']}" if d["seen"] else "none"
        lines.append(f"  {d['device']}: {d['new_manifests']} new manifests, {d['seen']} seen ({span}), "
                     f"open gaps: {d['open_gaps']}")
    for p in report.pending:
        lines.append(f"pending: {p.device} seq {p.first}..{p.last} missing since {format_ns(p.first_seen_ns)}, "
                     f"a finding from {format_ns(p.finding_at_ns)}")
    for f in report.findings:
        where = " ".join(x for x in (f.device, None if f.seq is None else f"seq {f.seq}", f.location) if x)
        lines.append(f"finding: {f.code} {where}".rstrip() + f"\n  {f.message}")
    if report.clean:
        lines.append(f"RESULT: clean, state advanced to size {report.new_size}")
    else:
        codes = sorted({f.code for f in report.findings})
        state = f"state advanced to size {report.new_size}" if report.advanced else "state NOT advanced"
        lines.append(f"RESULT: findings ({', '.join(codes)}); {state}")
    return "\n".join(lines)
