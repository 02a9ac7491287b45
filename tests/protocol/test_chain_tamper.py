"""Every tamper class makes `liuhen verify` exit 1 with its own finding code."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from liuhen.cli import main
from protocol import canonical, errors, layout, manifest, signatures
from protocol.trust import Revocation
from simulators.synthetic import SECOND_NS

from .conftest import Fleet


def verify(fleet: Fleet, capsys: pytest.CaptureFixture[str], *paths: Path) -> tuple[int, set[str]]:
    code = main(["verify", *(str(p) for p in paths or (fleet.root,)), "--keys", str(fleet.trust_file()), "--json"])
    report = json.loads(capsys.readouterr().out)
    found = {f["code"] for d in report["devices"] for f in d["findings"]}
    found |= {f["code"] for f in report["unattributed"]}
    return code, found - errors.INFORMATIONAL


def mpath(fleet: Fleet, device: str, seq: int) -> Path:
    return fleet.root / device / layout.manifest_name(seq)


def media(fleet: Fleet, device: str, seq: int) -> Path:
    return fleet.root / device / layout.media_name(seq, "bin")


def test_clean_recording_is_intact(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    fleet.shift("REC-0002", seed=2)
    assert verify(fleet, capsys) == (0, set())


def test_es256_device_is_intact(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.signer("REC-0003", signatures.ES256)
    fleet.shift("REC-0003")
    assert verify(fleet, capsys) == (0, set())


def test_explained_gap_is_reported_but_intact(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    assert main(["verify", str(fleet.root), "--keys", str(fleet.trust_file())]) == 0
    out = capsys.readouterr().out
    assert errors.CHAIN_GAP_EXPLAINED in out and "RESULT: intact" in out


def _reseal(path: Path, change_payload=None, change_sig=None) -> None:
    env = canonical.decode(path.read_bytes())
    if change_payload:
        env["payload"] = base64.b64encode(change_payload(base64.b64decode(env["payload"]))).decode()
    if change_sig:
        env["sig"] = base64.b64encode(change_sig(base64.b64decode(env["sig"]))).decode()
    path.write_bytes(canonical.encode(env))


def _flip_first(data: bytes) -> bytes:
    return bytes([data[0] ^ 1]) + data[1:]


def test_bad_signature(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    _reseal(mpath(fleet, "REC-0001", 2), change_sig=_flip_first)
    assert verify(fleet, capsys) == (1, {errors.SIGNATURE_BAD})


def test_altered_manifest_breaks_signature_and_link(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    _reseal(mpath(fleet, "REC-0001", 2), change_payload=lambda p: p.replace(b'"frames":300', b'"frames":301'))
    assert verify(fleet, capsys) == (1, {errors.SIGNATURE_BAD, errors.CHAIN_BROKEN_LINK})


def test_unknown_key(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    dev.signer = signatures.KeySigner(signatures.generate())
    dev.segment()
    assert verify(fleet, capsys) == (1, {errors.KEY_UNKNOWN})


def test_key_used_after_revocation(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    fleet.trust.revoke(dev.signer.keyid, Revocation(at_ns=1, after_seq=4, reason="stolen"))
    code, found = verify(fleet, capsys)
    assert (code, found) == (1, {errors.KEY_REVOKED})
    # Earlier signatures stay verifiable: only the later sequence numbers are flagged.
    report = json.loads(_json_report(fleet, capsys))
    flagged = {f["seq"] for f in report["devices"][0]["findings"] if f["code"] == errors.KEY_REVOKED}
    assert flagged and min(flagged) == 5


def _json_report(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> str:
    main(["verify", str(fleet.root), "--keys", str(fleet.trust_file()), "--json"])
    return capsys.readouterr().out


def test_key_of_another_device(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    dev.signer = fleet.signer("REC-0002")
    dev.segment()
    assert verify(fleet, capsys) == (1, {errors.KEY_WRONG_OWNER})


def test_file_hash_mismatch(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    path = media(fleet, "REC-0001", 2)
    path.write_bytes(_flip_first(path.read_bytes()))
    assert verify(fleet, capsys) == (1, {errors.FILE_HASH_MISMATCH})


def test_size_mismatch(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    with open(media(fleet, "REC-0001", 2), "ab") as f:
        f.write(b"\0")
    assert verify(fleet, capsys) == (1, {errors.FILE_SIZE_MISMATCH})


def test_truncated_file(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    path = media(fleet, "REC-0001", 2)
    path.write_bytes(path.read_bytes()[:-100])
    assert verify(fleet, capsys) == (1, {errors.FILE_TRUNCATED})


def test_missing_file(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    media(fleet, "REC-0001", 2).unlink()
    assert verify(fleet, capsys) == (1, {errors.FILE_MISSING})


def test_broken_prev_link(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    dev.prev = b"\x11" * 32
    dev.segment()
    assert verify(fleet, capsys) == (1, {errors.CHAIN_BROKEN_LINK})


def test_unexplained_gap(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    dev.reserve(3)
    dev.segment()
    assert verify(fleet, capsys) == (1, {errors.CHAIN_GAP_UNEXPLAINED})


def test_removed_manifest_is_an_unexplained_gap(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    mpath(fleet, "REC-0001", 2).unlink()
    media(fleet, "REC-0001", 2).unlink()
    assert verify(fleet, capsys) == (1, {errors.CHAIN_GAP_UNEXPLAINED})


def test_duplicate_sequence(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    copy = fleet.root / "REC-0001" / "copy"
    copy.mkdir()
    shutil.copy(mpath(fleet, "REC-0001", 2), copy / layout.manifest_name(2))
    shutil.copy(media(fleet, "REC-0001", 2), copy / layout.media_name(2, "bin"))
    assert verify(fleet, capsys) == (1, {errors.CHAIN_DUPLICATE_SEQ})


def test_fork(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.device("REC-0001")
    dev.boot()
    dev.segment()
    seq, prev, now = dev.seq, dev.prev, dev.now_ns
    dev.segment()
    first = mpath(fleet, "REC-0001", seq).read_bytes()
    dev.seq, dev.prev, dev.now_ns = seq, prev, now
    dev.segment(markers=[1])  # a second, different manifest for the same seq
    fork = fleet.root / "REC-0001" / "fork"
    fork.mkdir()
    (fork / layout.manifest_name(seq)).write_bytes(mpath(fleet, "REC-0001", seq).read_bytes())
    shutil.copy(media(fleet, "REC-0001", seq), fork / layout.media_name(seq, "bin"))
    mpath(fleet, "REC-0001", seq).write_bytes(first)
    code, found = verify(fleet, capsys)
    assert code == 1 and errors.CHAIN_FORK in found


def test_reordering(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    a, b = mpath(fleet, "REC-0001", 1), mpath(fleet, "REC-0001", 2)
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    assert verify(fleet, capsys) == (1, {errors.CHAIN_REORDERED})


def test_segment_replayed_from_another_device(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    fleet.shift("REC-0002", seed=2)
    victim = fleet.root / "REC-0001"
    shutil.copy(mpath(fleet, "REC-0002", 7), victim / layout.manifest_name(7))
    shutil.copy(media(fleet, "REC-0002", 7), victim / layout.media_name(7, "bin"))
    code, found = verify(fleet, capsys)
    assert code == 1 and errors.DEVICE_REPLAYED in found


def test_time_going_backwards(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    dev.now_ns -= 3600 * SECOND_NS
    dev.segment()
    assert verify(fleet, capsys) == (1, {errors.TIME_BACKWARDS})


def test_small_clock_step_within_tolerance_is_fine(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    dev.now_ns -= SECOND_NS
    dev.segment()
    assert verify(fleet, capsys) == (0, set())


def _sign_payload(fleet: Fleet, device: str, seq: int, payload: bytes) -> None:
    env = signatures.seal(fleet.signer(device), manifest.TYPE, payload)
    mpath(fleet, device, seq).write_bytes(env)


def test_malformed_manifest(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    fields = dict(dev.manifests[-1].fields)
    del fields["firmware"]
    _sign_payload(fleet, "REC-0001", dev.seq, canonical.encode(fields))
    assert verify(fleet, capsys) == (1, {errors.MANIFEST_MALFORMED})


def test_non_canonical_manifest(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    fields = {**dev.manifests[-1].fields, "seq": dev.seq, "prev": dev.prev.hex()}
    pretty = json.dumps(fields, indent=1, sort_keys=True).encode()
    _sign_payload(fleet, "REC-0001", dev.seq, pretty)
    assert verify(fleet, capsys) == (1, {errors.MANIFEST_NON_CANONICAL})


def test_garbage_envelope(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    fleet.shift("REC-0001")
    mpath(fleet, "REC-0001", 3).write_bytes(b"\x00not an envelope")
    code, found = verify(fleet, capsys)
    assert code == 1 and errors.ENVELOPE_MALFORMED in found


def test_session_spliced_in_without_boot(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.shift("REC-0001")
    dev.session = "ab" * 16
    dev.segment()
    assert verify(fleet, capsys) == (1, {errors.CHAIN_SESSION_SPLICE})


def test_earlier_session_resumed(fleet: Fleet, capsys: pytest.CaptureFixture[str]) -> None:
    dev = fleet.device("REC-0001")
    dev.boot()
    first = dev.session
    dev.segment()
    dev.boot()
    dev.segment()
    dev.session = first
    dev.segment()
    assert verify(fleet, capsys) == (1, {errors.CHAIN_SESSION_SPLICE})


def test_every_tamper_code_has_a_description() -> None:
    codes = {v for k, v in vars(errors).items() if k.isupper() and isinstance(v, str)}
    assert codes <= set(errors.DESCRIPTIONS)
