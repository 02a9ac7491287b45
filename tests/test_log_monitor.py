"""`liuhen log monitor`: a transparency log built here, checked by the library and, over HTTP, by the command."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from liuhen import cli
from liuhen.log_monitor import (
    HASH_PREFIX,
    HOUR_NS,
    Fetch,
    MonitorError,
    NotFound,
    Report,
    SeqRuns,
    State,
    load_state,
    merge_ranges,
    monitor,
    save_state,
    start_state,
    subtract_ranges,
)
from protocol import canonical, errors, log_records, manifest, receipts, signatures
from protocol.manifest import Manifest
from protocol.tlog.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from protocol.tlog.merkle import BAD_TREE_SIZE, CONSISTENCY_MISMATCH, MemoryTree, tree_root
from protocol.tlog.tiles import ENTRIES_LEVEL, TILE_WIDTH, Tile, encode_entry_bundle, tile_content, tiles_for_size
from protocol.trust import TrustList, trusted_key
from simulators.synthetic import SyntheticDevice, typical_shift

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "example.com/liuhen-test-log"
SERVER = "SRV-01"
NOW = 1_764_200_000_000_000_000


class Log:
    """A log's entries and the static files (checkpoint, tiles, entry bundles) it publishes for any size."""

    def __init__(self, seed: bytes = bytes(range(32))) -> None:
        self.signer = NoteSigner.from_seed(ORIGIN, seed)
        self.entries: list[bytes] = []

    @property
    def vkey(self) -> str:
        return str(self.signer.verifier)

    def files(self, size: int | None = None) -> dict[str, bytes]:
        size = len(self.entries) if size is None else size
        tree = MemoryTree()
        for entry in self.entries[:size]:
            tree.append(entry)
        files = {"checkpoint": sign_checkpoint(Checkpoint(ORIGIN, size, tree_root(tree, size)), [self.signer])}
        for tile in tiles_for_size(size):
            files[tile.path] = tile_content(tree, tile)
        for index in range(-(-size // TILE_WIDTH)):
            bundle = self.entries[index * TILE_WIDTH : min(size, (index + 1) * TILE_WIDTH)]
            files[Tile(ENTRIES_LEVEL, index, len(bundle)).path] = encode_entry_bundle(bundle)
        return files


def fetcher(files: dict[str, bytes]) -> Fetch:
    def fetch(path: str, limit: int) -> bytes:
        if path not in files:
            raise NotFound(f"{path}: not found")
        return files[path][: limit + 1]

    return fetch


class World:
    """A server with its key, recorders enrolled through the log, and the log."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.server = signatures.KeySigner(signatures.generate())
        self.trust = TrustList([trusted_key(self.server.public_key(), "server", SERVER)])
        self.log = Log()

    def record(self, type_: str, **fields: Any) -> bytes:
        raw = log_records.issue(self.server, type_, {"server": SERVER, "at_ns": NOW - HOUR_NS, **fields})
        self.log.entries.append(raw)
        return raw

    def enroll(self, signer: signatures.KeySigner, owner: str, role: str = "device") -> None:
        self.record(log_records.ENROLLMENT_TYPE, action="enroll", actor="user:3", role=role, owner=owner,
                    keyid=signer.keyid, alg=signer.alg, revocation=None,
                    public_key=base64.b64encode(signatures.spki_der(signer.public_key())).decode())

    def device(self, name: str = "REC-0001") -> SyntheticDevice:
        signer = signatures.KeySigner(signatures.generate())
        self.enroll(signer, name)
        return SyntheticDevice(self.root / "store", name, signer)

    def put(self, dev: SyntheticDevice, *manifests: Manifest) -> None:
        for m in manifests:
            self.log.entries.append(signatures.seal(dev.signer, manifest.TYPE, m.payload))

    def put_all(self, dev: SyntheticDevice) -> None:
        self.put(dev, *dev.manifests)

    def state(self, keys: bool = True) -> State:
        return start_state(None, self.log.vkey, with_keys=keys)

    def check(self, state: State, files: dict[str, bytes] | None = None, keys: bool = True, now_ns: int = NOW,
              grace_ns: int = 24 * HOUR_NS) -> Report:
        return monitor(fetcher(self.log.files() if files is None else files), state,
                       trust=self.trust if keys else None, now_ns=now_ns, gap_grace_ns=grace_ns)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def codes(report: Report) -> set[str]:
    return {f.code for f in report.findings}


def markers(dev: SyntheticDevice, count: int) -> list[Manifest]:
    return [dev.record(manifest.MARKER, {}) for _ in range(count)]


def test_first_run_reads_every_kind_of_entry(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put(dev, dev.manifests[0], dev.segment(), dev.segment())
    gateway = signatures.KeySigner(signatures.generate(signatures.ES256))
    world.enroll(gateway, "GW-01", "gateway")
    head = dev.manifests[-1]
    world.log.entries.append(receipts.issue(gateway, receipts.DOCK_TYPE, {
        "gateway": "GW-01", "device": dev.device, "first_seq": 0, "last_seq": 2, "head": head.hash.hex(),
        "received_ns": NOW - HOUR_NS, "clock_offset_ns": 0,
        "segments": [{"seq": m.seq, "manifest": m.hash.hex(), "media_sha256": None, "result": "ok"}
                     for m in dev.manifests]}))
    world.record(log_records.CUSTODY_TYPE, action="view", actor="user:17", audit_id=1, case=None,
                 reason_sha256=hashlib.sha256(b"review").hexdigest(), subjects=[head.hash.hex()])
    world.record(log_records.TOMBSTONE_TYPE, actor="system:retention", device=dev.device, seq=1,
                 manifest=dev.manifests[1].hash.hex(), media_sha256=dev.manifests[1].media["sha256"],
                 reason="retention", policy_days=90)
    world.log.entries.append(signatures.seal(world.server, "application/vnd.example.future+json", b"{}"))

    report = world.check(world.state())
    assert report.clean, report.findings
    assert (report.old_size, report.new_size, report.entries) == (0, 9, 9)
    assert report.kinds == {"enrollment": 2, "manifest": 3, "dock-receipt": 1, "custody": 1, "tombstone": 1,
                            "unknown": 1}
    assert report.state is not None and report.advanced
    assert report.state.size == 9 and len(report.state.enrollments) == 2
    assert report.device_summaries() == [{"device": "REC-0001", "new_manifests": 3, "seen": 3, "first_seq": 0,
                                          "last_seq": 2, "open_gaps": 0}]


def test_growth_across_tiles_is_checked_against_the_old_root(world: World) -> None:
    dev = world.device()
    dev.boot()
    markers(dev, 299)
    world.put_all(dev)  # 301 entries: one full tile and a partial one
    first = world.check(world.state())
    assert first.clean and first.state is not None
    markers(dev, 300)
    world.put(dev, *dev.manifests[300:])
    second = world.check(first.state)
    assert second.clean, second.findings
    assert (second.old_size, second.new_size, second.entries) == (301, 601, 300)
    assert second.state is not None and second.state.devices["REC-0001"].seen.span() == (0, 599)
    same = world.check(second.state)  # nothing new
    assert same.clean and same.entries == 0 and same.state is not None and same.state.size == 601


def test_partial_tiles_that_are_gone_are_read_from_full_ones(world: World) -> None:
    dev = world.device()
    dev.boot()
    markers(dev, 600)
    world.put_all(dev)
    # The log has grown to 602 and dropped its partial tiles; the checkpoint still says 301.
    files = {path: data for path, data in world.log.files().items() if ".p/" not in path}
    files["checkpoint"] = world.log.files(301)["checkpoint"]
    report = world.check(world.state(), files)
    assert report.clean, report.findings
    assert report.new_size == 301 and report.entries == 301


def test_a_shrunk_log_is_a_finding_and_the_state_stays(world: World) -> None:
    dev = world.device()
    dev.boot()
    markers(dev, 4)
    world.put_all(dev)
    state = world.check(world.state()).state
    assert state is not None
    report = world.check(state, world.log.files(3))
    assert codes(report) == {BAD_TREE_SIZE} and report.state is None and not report.advanced


def test_a_rewritten_log_of_the_same_size_is_a_finding(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put(dev, dev.manifests[0], *markers(dev, 3))
    state = world.check(world.state()).state
    assert state is not None
    world.log.entries[2] = world.log.entries[3]
    report = world.check(state)
    assert codes(report) == {CONSISTENCY_MISMATCH} and report.state is None


def test_a_rewritten_history_under_new_entries_is_a_finding(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put(dev, dev.manifests[0], *markers(dev, 3))
    state = world.check(world.state()).state
    assert state is not None
    world.put(dev, *markers(dev, 3))
    del world.log.entries[3]  # a logged manifest removed, the tree rebuilt and re-signed
    report = world.check(state)
    assert codes(report) == {CONSISTENCY_MISMATCH} and report.state is None and report.entries == 0


def test_a_tampered_entry_bundle_is_a_finding(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put(dev, dev.manifests[0], *markers(dev, 3))
    files = world.log.files()
    bundle = world.log.entries[:]
    bundle[2] = signatures.seal(dev.signer, manifest.TYPE, dev.record(manifest.MARKER, {}).payload)
    files[Tile(ENTRIES_LEVEL, 0, 5).path] = encode_entry_bundle(bundle)
    report = world.check(world.state(), files)
    assert codes(report) == {errors.TLOG_ENTRY_MISMATCH, errors.TLOG_ROOT_MISMATCH}
    assert [f.location for f in report.findings if f.code == errors.TLOG_ENTRY_MISMATCH] == ["entry 2"]
    assert report.state is None and not report.kinds  # nothing from unverified entries is reported


def test_tiles_that_lie_with_the_entries_do_not_pass(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put(dev, dev.manifests[0], *markers(dev, 3))
    signed = world.log.files()
    world.log.entries[2] = signatures.seal(dev.signer, manifest.TYPE, dev.record(manifest.MARKER, {}).payload)
    forged = world.log.files()
    forged["checkpoint"] = signed["checkpoint"]  # new bundle and tiles, the old signed root
    report = world.check(world.state(), forged)
    assert codes(report) == {errors.TLOG_ROOT_MISMATCH} and report.state is None


def test_malformed_tiles_and_bundles_are_findings(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put_all(dev)
    for path, data in ((Tile(0, 0, 2).path, b"short"), (Tile(ENTRIES_LEVEL, 0, 2).path, b"\x00"),
                       (Tile(ENTRIES_LEVEL, 0, 2).path, encode_entry_bundle(world.log.entries[:1]))):
        report = world.check(world.state(), {**world.log.files(), path: data})
        assert len(report.findings) == 1 and report.state is None
        assert report.findings[0].code in {"tlog.tile_malformed", "tlog.entry_bundle_malformed"}


def test_a_checkpoint_by_another_key_is_a_finding(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put_all(dev)
    files = world.log.files()
    files["checkpoint"] = Log(bytes(32)).files(0)["checkpoint"]
    report = world.check(world.state(), files)
    assert codes(report) == {"tlog.note_unverified"} and report.new_size is None and report.state is None


def test_a_forked_device_sequence_is_a_finding(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put(dev, dev.manifests[0], *markers(dev, 3))
    state = world.check(world.state()).state
    assert state is not None
    # The device key signs a second, different seq 2, and the seq-1 manifest is logged again.
    other = manifest.build({**dev.manifests[2].fields, "detail": {"note": "rewritten"}})
    world.put(dev, other, dev.manifests[1])
    report = world.check(state)
    assert codes(report) == {errors.CHAIN_FORK, errors.CHAIN_DUPLICATE_SEQ}
    fork = next(f for f in report.findings if f.code == errors.CHAIN_FORK)
    assert (fork.device, fork.seq, fork.location) == ("REC-0001", 2, "entry 5")
    assert report.advanced  # the log itself is sound; the fork is in it for good


def test_a_young_gap_is_pending_and_an_old_one_a_finding(world: World) -> None:
    dev = world.device()
    dev.boot()
    dev.segment()
    dev.reserve(2)  # seq 2 and 3 never signed, and nothing says so
    dev.segment()
    world.put_all(dev)
    first = world.check(world.state())
    assert first.clean and [(p.device, p.first, p.last, p.first_seen_ns, p.finding_at_ns) for p in first.pending] == [
        ("REC-0001", 2, 3, NOW, NOW + 24 * HOUR_NS)]
    assert first.state is not None
    later = world.check(first.state, now_ns=NOW + 23 * HOUR_NS)
    assert later.clean and later.pending[0].first_seen_ns == NOW  # the gap keeps its age
    assert later.state is not None
    late = world.check(later.state, now_ns=NOW + 25 * HOUR_NS)
    assert codes(late) == {errors.CHAIN_GAP_UNEXPLAINED} and late.advanced and not late.pending
    gap = late.findings[0]
    assert (gap.device, gap.seq) == ("REC-0001", 2)


def test_a_gap_closes_when_the_footage_arrives(world: World) -> None:
    dev = world.device()
    dev.boot()
    segments = [dev.segment() for _ in range(4)]
    world.put(dev, dev.manifests[0], segments[0], segments[3])
    first = world.check(world.state())
    assert [(p.first, p.last) for p in first.pending] == [(2, 3)]
    assert first.state is not None
    world.put(dev, segments[2], segments[1])  # uploaded late, and out of order
    second = world.check(first.state, now_ns=NOW + 48 * HOUR_NS)
    assert second.clean and not second.pending and second.state is not None
    assert second.state.devices["REC-0001"].gaps == []


def test_an_explained_gap_is_clean(world: World) -> None:
    signer = signatures.KeySigner(signatures.generate())
    world.enroll(signer, "REC-0002")
    dev = typical_shift(world.root / "store", "REC-0002", signer)
    world.put_all(dev)
    report = world.check(world.state(), now_ns=NOW + 100 * HOUR_NS)
    assert report.clean and not report.pending, report.findings
    assert report.state is not None and report.state.devices["REC-0002"].gaps == []


def test_signatures_are_checked_with_a_trust_file(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put_all(dev)
    stranger = SyntheticDevice(world.root / "store", "REC-0009", signatures.KeySigner(signatures.generate()))
    stranger.boot()
    world.put_all(stranger)  # never enrolled
    forged = canonical.decode(signatures.seal(dev.signer, manifest.TYPE, dev.segment().payload))
    forged["sig"] = base64.b64encode(bytes(64)).decode()
    world.log.entries.append(canonical.encode(forged))
    world.record(log_records.CUSTODY_TYPE, action="view", actor="user:17", audit_id=1, case=None, server="SRV-02",
                 reason_sha256="00" * 32, subjects=["11" * 32])
    report = world.check(world.state())
    found = {(f.code, f.location) for f in report.findings}
    assert found == {(errors.KEY_UNKNOWN, "entry 2"), (errors.SIGNATURE_BAD, "entry 3"),
                     (errors.KEY_WRONG_OWNER, "entry 4")}
    assert report.advanced
    unchecked = world.check(world.state(keys=False), keys=False)
    assert unchecked.clean and unchecked.kinds["manifest"] == 3


def test_keys_enrolled_in_earlier_runs_are_remembered(world: World) -> None:
    dev = world.device()
    dev.boot()
    world.put_all(dev)
    state = world.check(world.state()).state
    assert state is not None
    world.put(dev, dev.segment())
    report = world.check(state)
    assert report.clean, report.findings
    world.trust = TrustList()  # a trust file without the server key cannot replay the enrollment
    with pytest.raises(MonitorError, match="enrollment record"):
        world.check(state)


def test_entries_that_are_not_envelopes_or_manifests_are_findings(world: World) -> None:
    world.log.entries += [b"garbage", signatures.seal(world.server, manifest.TYPE, b'{"v":1}')]
    report = world.check(world.state(keys=False), keys=False)
    assert codes(report) == {errors.ENVELOPE_MALFORMED, errors.MANIFEST_MALFORMED}
    assert report.kinds == {"unknown": 1, "manifest": 1}


def test_missing_files_stop_the_run(world: World) -> None:
    with pytest.raises(NotFound):
        world.check(world.state(), {})
    dev = world.device()
    dev.boot()
    world.put_all(dev)
    files = world.log.files()
    del files[Tile(ENTRIES_LEVEL, 0, 2).path]
    with pytest.raises(NotFound):
        world.check(world.state(), files)


def test_seq_runs_are_compact_ranges_with_hash_prefixes() -> None:
    runs = SeqRuns()
    for seq in (5, 7, 3, 6, 10, 4, 0):
        runs.add(seq, hashlib.sha256(str(seq).encode()).digest())
    assert runs.to_json()[0][:2] == [0, 0] and [r[:2] for r in runs.to_json()] == [[0, 0], [3, 7], [10, 10]]
    assert runs.holes() == [(1, 2), (8, 9)] and runs.count() == 7 and runs.span() == (0, 10)
    assert runs.get(6) == hashlib.sha256(b"6").digest()[:HASH_PREFIX] and runs.get(8) is None
    again = SeqRuns.from_json(json.loads(json.dumps(runs.to_json())))
    assert again.to_json() == runs.to_json()
    eight = base64.b64encode(bytes(HASH_PREFIX)).decode()
    for bad in ([[3, 1, ""]], [[0, 0, "AAAA"]], [[0, 0, eight], [1, 1, eight]], [[0, 0]], [[0, 0, "!"]]):
        with pytest.raises(ValueError):
            SeqRuns.from_json(bad)


def test_range_helpers() -> None:
    assert merge_ranges([(5, 6), (0, 1), (2, 3), (8, 9), (9, 12)]) == [(0, 3), (5, 6), (8, 12)]
    assert subtract_ranges((0, 10), [(2, 3), (5, 5), (9, 20)]) == [(0, 1), (4, 4), (6, 8)]
    assert subtract_ranges((4, 6), [(0, 10)]) == []


def test_state_round_trip_and_bad_state_files(world: World, tmp_path: Path) -> None:
    dev = world.device()
    dev.boot()
    dev.reserve()
    dev.record(manifest.GAP, {"missing": [[1, 1]]})
    dev.reserve()
    dev.segment()
    world.put_all(dev)
    state = world.check(world.state()).state
    assert state is not None and state.devices["REC-0001"].gaps == [(3, 3, NOW)]
    path = tmp_path / "state.json"
    save_state(path, state)
    loaded = load_state(path)
    assert loaded is not None and loaded.to_json() == state.to_json()
    assert json.loads(path.read_text())["origin"] == ORIGIN
    assert load_state(tmp_path / "none.json") is None
    for text in ("{", "[]", '{"liuhen_log_monitor": 1}', path.read_text().replace('"vkey": "', '"vkey": "x')):
        path.write_text(text)
        with pytest.raises(MonitorError, match="not usable"):
            load_state(path)


def test_start_state_rules(world: World) -> None:
    with pytest.raises(MonitorError, match="first run needs the log's verifier key"):
        start_state(None, None, with_keys=False)
    with pytest.raises(MonitorError, match="not a log verifier key"):
        start_state(None, "example.com+00000000+AQ==", with_keys=False)
    state = world.state()
    assert start_state(state, None, with_keys=True) is state
    with pytest.raises(MonitorError, match="another one"):
        start_state(state, Log(bytes(32)).vkey, with_keys=True)
    with pytest.raises(MonitorError, match="give --keys"):
        start_state(state, None, with_keys=False)
    with pytest.raises(MonitorError, match="new state file"):
        start_state(world.state(keys=False), None, with_keys=True)


# The command over HTTP.

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server for the files under a folder: (URL, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/log", folder / "log"
    server.shutdown()
    server.server_close()


def publish(files: dict[str, bytes], folder: Path) -> None:
    for path, data in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)


def liuhen(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "liuhen", "log", "monitor", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


def test_command_first_run_growth_and_shrink(world: World, served: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = served
    (tmp_path / "trust.json").write_bytes(world.trust.to_bytes())
    dev = world.device()
    dev.boot()
    dev.segment()
    world.put_all(dev)
    publish(world.log.files(), folder)
    r = liuhen(url, "--state", "s.json", "--key", world.log.vkey, "--keys", "trust.json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "size 0 -> 3" in r.stdout and "RESULT: clean" in r.stdout
    world.put(dev, dev.segment())
    publish(world.log.files(), folder)
    r = liuhen(url + "/", "--state", "s.json", "--keys", "trust.json", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert (report["old_size"], report["new_size"], report["entries_checked"]) == (3, 4, 1)
    assert report["clean"] and report["state_advanced"] and report["kinds"] == {"manifest": 1}
    publish({"checkpoint": world.log.files(2)["checkpoint"]}, folder)
    r = liuhen(url, "--state", "s.json", "--keys", "trust.json", cwd=tmp_path)
    assert r.returncode == 1 and "tlog.bad_tree_size" in r.stdout and "state NOT advanced" in r.stdout
    assert json.loads((tmp_path / "s.json").read_text())["checkpoint"]["size"] == 4


def test_command_old_gap_is_a_finding(world: World, served: tuple[str, Path], tmp_path: Path) -> None:
    url, folder = served
    dev = world.device()
    dev.boot()
    dev.reserve()
    dev.segment()
    world.put_all(dev)
    publish(world.log.files(), folder)
    r = liuhen(url, "--state", "s.json", "--key", world.log.vkey, "--gap-grace", "0", cwd=tmp_path)
    assert r.returncode == 1 and "chain.gap_unexplained REC-0001 seq 1" in r.stdout, r.stdout + r.stderr
    r = liuhen(url, "--state", "s2.json", "--key", world.log.vkey, cwd=tmp_path)
    assert r.returncode == 0 and "pending: REC-0001 seq 1..1" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--key", "not-a-key"], "not a log verifier key"),
        ([], "first run needs the log's verifier key"),
        (["--key", "KEY", "--keys", "missing.json"], "cannot read trust file"),
        (["--key", "KEY", "--gap-grace", "-1"], "not a number of hours"),
    ],
)
def test_command_usage_errors(args: list[str], message: str, world: World, served: tuple[str, Path],
                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, folder = served
    publish(world.log.files(), folder)
    state = tmp_path / "s.json"
    args = [world.log.vkey if a == "KEY" else str(tmp_path / a) if a.endswith(".json") else a for a in args]
    try:  # in-process: argparse exits, the command returns
        code = cli.main(["log", "monitor", url, "--state", str(state), *args])
    except SystemExit as exc:
        code = exc.code
    assert code == 2 and message in capsys.readouterr().err
    assert not state.exists()


def test_command_network_and_state_errors(world: World, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = liuhen(f"http://127.0.0.1:{port}/log", "--state", "s.json", "--key", world.log.vkey, cwd=tmp_path)
    assert r.returncode == 2 and "cannot reach" in r.stderr, r.stderr
    (tmp_path / "bad.json").write_text("{nope")
    r = liuhen(f"http://127.0.0.1:{port}/log", "--state", "bad.json", cwd=tmp_path)
    assert r.returncode == 2 and "state file bad.json is not usable" in r.stderr, r.stderr
