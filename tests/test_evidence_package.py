"""Evidence packages: written from real signed inputs, verified offline, and every tampering caught."""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from liuhen.cli import main
from liuhen.verify_package import PackageReport, PackageUnreadable, verify_package
from protocol import errors, layout, log_records, manifest, package, receipts, signatures
from protocol.tlog.checkpoint import Checkpoint, NoteSigner, sign_checkpoint
from protocol.tlog.merkle import MemoryTree, inclusion_proof, tree_root
from protocol.tlog.proof_bundle import ProofBundle
from protocol.trust import TrustList, trusted_key
from server.evidence_package import PackageError, PackageSegment, write_package
from simulators.synthetic import DEFAULT_START_NS, SyntheticDevice, typical_shift
from tests.doc_examples import examples

ROOT = Path(__file__).resolve().parent.parent
ORIGIN = "liuhen.test/log"
DEVICE, GATEWAY, SERVER = "REC-0001", "GW-01", "SRV-1"
RECEIVED_NS = DEFAULT_START_NS + 3600 * 10**9


class Recording:
    """One device's signed chain as the gateway took it in, with the dock receipt the gateway signed."""

    def __init__(self, root: Path, record: Callable[[Path, signatures.Signer], SyntheticDevice]) -> None:
        self.device_key = signatures.KeySigner(signatures.generate())
        self.gateway_key = signatures.KeySigner(signatures.generate())
        dev = record(root, self.device_key)
        self.dir = dev.dir
        self.manifests = {m.seq: m for m in dev.manifests}
        self.envelopes = {s: (dev.dir / layout.manifest_name(s)).read_bytes() for s in self.manifests}
        self.dock = receipts.issue(self.gateway_key, receipts.DOCK_TYPE, {
            "gateway": GATEWAY, "device": DEVICE, "first_seq": min(self.manifests), "last_seq": max(self.manifests),
            "head": dev.manifests[-1].hash.hex(), "received_ns": RECEIVED_NS, "clock_offset_ns": -1_000_000,
            "segments": [{"seq": m.seq, "manifest": m.hash.hex(), "media_sha256": media_sha256(m), "result": "ok"}
                         for m in dev.manifests],
        })


def media_sha256(m: manifest.Manifest) -> str | None:
    return m.media["sha256"] if m.media else None


class Server:
    """The case server's side: one Ed25519 key that signs receipts, tombstones, the package seal and the
    log's checkpoints (the log key IS the server key), a log over the manifests, and the trust list."""

    def __init__(self, rec: Recording, purged: Iterable[int] = (), key: Ed25519PrivateKey | None = None) -> None:
        key = key or Ed25519PrivateKey.generate()
        self.rec = rec
        self.signer = signatures.KeySigner(key)
        self.note = NoteSigner(ORIGIN, key)
        self.trust = TrustList([trusted_key(rec.device_key.public_key(), "device", DEVICE),
                                trusted_key(rec.gateway_key.public_key(), "gateway", GATEWAY),
                                trusted_key(self.signer.public_key(), "server", SERVER)])
        self.tree = MemoryTree()
        self.index = {s: self.tree.append(e) for s, e in rec.envelopes.items()}
        self.dock_index = self.tree.append(rec.dock)
        self.tombstones = {s: self.tombstone(rec.manifests[s]) for s in purged}
        self.tombstone_index = {s: self.tree.append(t) for s, t in self.tombstones.items()}
        self.checkpoint = sign_checkpoint(Checkpoint(ORIGIN, self.tree.size, tree_root(self.tree, self.tree.size)),
                                          [self.note])

    def tombstone(self, m: manifest.Manifest) -> bytes:
        return log_records.issue(self.signer, log_records.TOMBSTONE_TYPE, {
            "server": SERVER, "at_ns": RECEIVED_NS + 1, "actor": "system:retention", "device": DEVICE,
            "seq": m.seq, "manifest": m.hash.hex(), "media_sha256": m.media["sha256"], "reason": "retention",
            "policy_days": 180})

    def proof(self, index: int) -> bytes:
        return ProofBundle(index, tuple(inclusion_proof(self.tree, index, self.tree.size)), self.checkpoint).encode()

    def server_receipt(self, m: manifest.Manifest, **over: object) -> bytes:
        fields = {"server": SERVER, "gateway": GATEWAY, "device": DEVICE, "seq": m.seq, "manifest": m.hash.hex(),
                  "media_sha256": media_sha256(m), "received_ns": RECEIVED_NS, "log_index": self.index[m.seq],
                  "status": "stored", "findings": [], **over}
        return receipts.issue(self.signer, receipts.SERVER_TYPE, fields)

    def segment(self, seq: int, **over: object) -> PackageSegment:
        m = self.rec.manifests[seq]
        purged = seq in self.tombstones
        fields: dict[str, object] = {
            "device": DEVICE, "seq": seq, "manifest": self.rec.envelopes[seq], "proof": self.proof(self.index[seq]),
            "media_path": self.rec.dir / m.media["name"] if m.media and not purged else None,
            "media_name": m.media["name"] if m.media and not purged else None,
            "dock_receipt": self.rec.dock, "dock_proof": self.proof(self.dock_index),
            "server_receipt": self.server_receipt(m),
            "tombstone": self.tombstones.get(seq),
            "tombstone_proof": self.proof(self.tombstone_index[seq]) if purged else None,
        }
        return PackageSegment(**{**fields, **over})  # type: ignore[arg-type]

    def export(self, **over: object) -> dict[str, object]:
        return {"id": "EXP-2025-0001", "created_ns": RECEIVED_NS + 7200 * 10**9, "server": SERVER,
                "actor": "user:17", "reason_sha256": hashlib.sha256(b"court order 17").hexdigest(),
                "case": "CASE-88", "clip": {"devices": [DEVICE], "from_ns": DEFAULT_START_NS,
                                            "to_ns": DEFAULT_START_NS + 3600 * 10**9}, **over}

    def write(self, path: Path, seqs: Iterable[int] | None = None,
              segments: list[PackageSegment] | None = None) -> Path:
        if segments is None:
            segments = [self.segment(s) for s in (seqs if seqs is not None else sorted(self.rec.manifests))]
        write_package(path, segments, self.checkpoint, self.trust.to_bytes(), str(self.note.verifier),
                      self.export(), self.signer)
        return path


def chain_of(segments: int) -> Callable[[Path, signatures.Signer], SyntheticDevice]:
    """A boot and `segments` one-second segments of 16 bytes: packages of a few KB."""
    def record(root: Path, signer: signatures.Signer) -> SyntheticDevice:
        dev = SyntheticDevice(root, DEVICE, signer)
        dev.boot()
        for _ in range(segments):
            dev.segment(seconds=1, size=16)
        return dev
    return record


@pytest.fixture
def small(tmp_path: Path) -> Server:
    return Server(Recording(tmp_path / "store", chain_of(2)))


def codes(report: PackageReport) -> set[str]:
    return {f.code for f in report.report.findings()} - errors.INFORMATIONAL


def members(data: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def rezip(entries: list[tuple[str, bytes]], comment: bytes, compress: int = zipfile.ZIP_STORED) -> bytes:
    """A new archive of these members, carrying the comment (seal) of the original."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compress) as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate names some tamperings add on purpose
        for name, data in entries:
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data, compress_type=compress)
        zf.comment = comment
    return out.getvalue()


def reseal(entries: list[tuple[str, bytes]], signer: signatures.Signer, export: dict[str, object]) -> bytes:
    """Seal members as docs/evidence-package.md says, written independently of the writer: an index of
    every member, then SHA-256 of all bytes up to the comment, comment-length field included."""
    entries = sorted(entries, key=lambda e: e[0].encode())
    index = package.encode_index(export, [package.IndexEntry(n, hashlib.sha256(d).hexdigest(), len(d))
                                          for n, d in entries])
    length = package.seal_length(signer.keyid, str(export["id"]))
    unsealed = rezip([*entries, (package.INDEX, index)], bytes(length))
    covered = unsealed[:-length]
    return covered + package.make_seal(signer, hashlib.sha256(covered).digest(), str(export["id"]))


def test_cli_verifies_a_package_offline(tmp_path: Path) -> None:
    rec = Recording(tmp_path / "store", lambda root, signer: typical_shift(root, DEVICE, signer, size=64))
    server = Server(rec)
    pkg = server.write(tmp_path / "pkg.zip")
    r = subprocess.run([str(ROOT / ".venv" / "bin" / "liuhen"), "verify", str(pkg)], capture_output=True,
                       text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SERVER KEY  {server.signer.keyid}" in r.stdout
    assert f"LOG KEY     {server.note.verifier}" in r.stdout and "the log key is the server key" in r.stdout
    assert "WARNING" in r.stdout and "RESULT: intact" in r.stdout
    assert "chain.gap_explained" in r.stdout  # typical_shift loses a seq in a crash and signs a recovery


def test_layout_index_and_seal(small: Server, tmp_path: Path) -> None:
    data = small.write(tmp_path / "a.zip").read_bytes()
    entries = members(data)
    names = [n for n, _ in entries]
    assert names[0] == package.README and names[-1] == package.INDEX
    assert set(names) >= {"checkpoint", "log.vkey", "trust.json", "segments/REC-0001/000000000001.manifest",
                          "segments/REC-0001/000000000001.bin", "receipts/REC-0001/000000000001.dock",
                          "receipts/REC-0001/000000000001.server", "proofs/REC-0001/000000000001.tlog-proof",
                          "proofs/REC-0001/000000000001.dock.tlog-proof"}
    fields, index = package.parse_index(entries[-1][1])
    assert [e.name for e in index] == names[:-1] and fields["server"] == SERVER
    assert [(e.sha256, e.size) for e in index] == [(hashlib.sha256(d).hexdigest(), len(d)) for _, d in entries[:-1]]
    seal_len = package.seal_length(small.signer.keyid, "EXP-2025-0001")
    seal = package.open_seal(data[-seal_len:])
    assert seal.sha256 == hashlib.sha256(data[:-seal_len]).digest() and seal.export == "EXP-2025-0001"
    assert int.from_bytes(data[-seal_len - 2 : -seal_len], "little") == seal_len  # the covered length field
    # Fixed timestamps and deterministic signatures: the same inputs give the same bytes.
    assert small.write(tmp_path / "b.zip").read_bytes() == data
    report = verify_package(tmp_path / "a.zip")
    assert report.intact and report.log_key_is_server_key and report.members == len(entries)


def _structure_positions(data: bytes) -> tuple[list[int], list[int]]:
    """Byte positions in zip headers, central directory and seal, and positions inside member data."""
    in_data = set()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            header = data[info.header_offset : info.header_offset + 30]
            start = info.header_offset + 30 + int.from_bytes(header[26:28], "little") + \
                int.from_bytes(header[28:30], "little")
            in_data.update(range(start, start + info.compress_size))
    outside = [i for i in range(len(data)) if i not in in_data]
    return outside, sorted(in_data)


def test_any_changed_byte_fails(small: Server, tmp_path: Path) -> None:
    data = small.write(tmp_path / "pkg.zip").read_bytes()
    structure, content = _structure_positions(data)
    positions = structure + random.Random(7).sample(content, 300)
    assert len(structure) > 2000
    bad = tmp_path / "bad.zip"
    survivors = []
    for pos in positions:
        bad.write_bytes(data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :])
        try:
            intact = verify_package(bad).intact
        except PackageUnreadable:
            intact = False
        if intact:
            survivors.append(pos)
    assert survivors == []


def _swap_segments(entries: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    contents = dict(entries)
    swap = {f"segments/{DEVICE}/000000000001.{ext}": f"segments/{DEVICE}/000000000002.{ext}"
            for ext in ("manifest", "bin")}
    swap |= {b: a for a, b in swap.items()}
    return [(n, contents[swap.get(n, n)]) for n, _ in entries]


MEDIA = f"segments/{DEVICE}/000000000001.bin"
TAMPERING: dict[str, tuple[Callable[[bytes], bytes], set[str]]] = {
    "truncated": (lambda d: d[:-1], {errors.PACKAGE_SEAL_BAD}),
    "cut in half": (lambda d: d[: len(d) // 2], {errors.PACKAGE_SEAL_BAD, errors.PACKAGE_MALFORMED}),
    "appended": (lambda d: d + b"\0", {errors.PACKAGE_SEAL_BAD}),
    "prepended": (lambda d: b"PK\x03\x04" + d, {errors.PACKAGE_SEAL_BAD}),
    "member replaced": (lambda d: rezip([(n, b"x" * 16 if n == MEDIA else c) for n, c in members(d)],
                                        zipfile.ZipFile(io.BytesIO(d)).comment),
                        {errors.PACKAGE_SEAL_BAD, errors.PACKAGE_INDEX_MISMATCH, errors.FILE_HASH_MISMATCH}),
    "member added": (lambda d: rezip([*members(d), ("segments/REC-0001/000000000009.bin", b"new")],
                                     zipfile.ZipFile(io.BytesIO(d)).comment),
                     {errors.PACKAGE_SEAL_BAD, errors.PACKAGE_FILE_EXTRA}),
    "member removed": (lambda d: rezip([(n, c) for n, c in members(d) if n != MEDIA],
                                       zipfile.ZipFile(io.BytesIO(d)).comment),
                       {errors.PACKAGE_SEAL_BAD, errors.PACKAGE_FILE_MISSING, errors.FILE_MISSING}),
    "member repeated": (lambda d: rezip([*members(d), (MEDIA, b"y" * 16)], zipfile.ZipFile(io.BytesIO(d)).comment),
                        {errors.PACKAGE_SEAL_BAD, errors.PACKAGE_FILE_DUPLICATE, errors.FILE_MISSING}),
    "segments swapped": (lambda d: rezip(_swap_segments(members(d)), zipfile.ZipFile(io.BytesIO(d)).comment),
                         {errors.PACKAGE_SEAL_BAD, errors.PACKAGE_INDEX_MISMATCH, errors.CHAIN_REORDERED,
                          errors.FILE_HASH_MISMATCH}),
    "compressed": (lambda d: rezip(members(d), zipfile.ZipFile(io.BytesIO(d)).comment, zipfile.ZIP_DEFLATED),
                   {errors.PACKAGE_SEAL_BAD, errors.PACKAGE_MALFORMED}),
    "seal removed": (lambda d: rezip(members(d), b""), {errors.PACKAGE_SEAL_BAD}),
}


@pytest.mark.parametrize("name", TAMPERING)
def test_tampering_is_found_and_named(small: Server, tmp_path: Path, name: str) -> None:
    change, expected = TAMPERING[name]
    bad = tmp_path / "bad.zip"
    bad.write_bytes(change(small.write(tmp_path / "pkg.zip").read_bytes()))
    report = verify_package(bad)
    assert not report.intact
    assert codes(report) >= expected, report.to_json()


def test_a_package_sealed_by_another_key(small: Server, tmp_path: Path) -> None:
    """A forger who re-signs everything the server signs makes a self-consistent package: only the key
    shows it, so without --keys the report names a different key, and with --keys it fails."""
    genuine = small.write(tmp_path / "genuine.zip")
    forged = Server(small.rec).write(tmp_path / "forged.zip")
    keys = tmp_path / "published.json"
    keys.write_bytes(TrustList([trusted_key(small.signer.public_key(), "server", SERVER)]).to_bytes())
    report = verify_package(forged)
    assert report.intact and report.sealed_by != small.signer.keyid and not report.keys_file_trusted
    assert main(["verify", str(forged), "--keys", str(keys)]) == 1
    assert codes(verify_package(forged, small.trust)) == {errors.PACKAGE_SEAL_UNTRUSTED}
    trusted = verify_package(genuine, small.trust)
    assert trusted.intact and trusted.keys_file_trusted and trusted.sealed_by == small.signer.keyid


def test_clip_may_start_inside_the_chain_but_not_skip(tmp_path: Path) -> None:
    server = Server(Recording(tmp_path / "store", chain_of(9)))
    report = verify_package(server.write(tmp_path / "clip.zip", seqs=range(5, 10)))
    assert report.intact, report.to_json()
    assert (report.report.devices[DEVICE].first_seq, report.report.devices[DEVICE].last_seq) == (5, 9)
    report = verify_package(server.write(tmp_path / "gap.zip", seqs=[5, 6, 8, 9]))
    assert codes(report) == {errors.CHAIN_GAP_UNEXPLAINED}
    assert [f.seq for f in report.report.findings()] == [8]


def test_evidence_is_checked_beyond_the_seal(small: Server, tmp_path: Path) -> None:
    """The server's seal vouches for the bytes, not for the evidence: wrong proofs and receipts are findings."""
    m1 = small.rec.manifests[1]
    cases = {
        errors.PROOF_BAD: small.segment(1, proof=small.proof(small.index[2])),
        errors.RECEIPT_MISMATCH: small.segment(1, server_receipt=small.server_receipt(m1, log_index=7)),
        errors.RECEIPT_QUARANTINED: small.segment(1, server_receipt=small.server_receipt(
            m1, status="quarantined", findings=[errors.TIME_BACKWARDS])),
        errors.KEY_UNKNOWN: small.segment(1, server_receipt=receipts.issue(
            signatures.KeySigner(signatures.generate()), receipts.SERVER_TYPE,
            receipts.open_receipt(small.server_receipt(m1), receipts.SERVER_TYPE, small.trust).fields)),
    }
    for i, (code, segment) in enumerate(cases.items()):
        report = verify_package(small.write(tmp_path / f"{i}.zip", segments=[small.segment(0), segment]))
        assert codes(report) == {code}, (code, report.to_json())
    bare = small.segment(1, dock_receipt=None, dock_proof=None, server_receipt=None)
    assert verify_package(small.write(tmp_path / "bare.zip", segments=[small.segment(0), bare])).intact


def test_purged_media_is_accounted_for_by_its_tombstone(tmp_path: Path) -> None:
    rec = Recording(tmp_path / "store", chain_of(2))
    server = Server(rec, purged=[1])
    report = verify_package(server.write(tmp_path / "purged.zip"))
    assert report.intact and {f.code for f in report.report.findings()} == {errors.FILE_PURGED}
    wrong = server.segment(2, media_path=None, media_name=None, tombstone=server.tombstones[1],
                           tombstone_proof=server.proof(server.tombstone_index[1]))
    report = verify_package(server.write(tmp_path / "wrong.zip", segments=[server.segment(1), wrong]))
    assert codes(report) == {errors.TOMBSTONE_BAD, errors.FILE_MISSING}


def test_layout_refuses_unexpected_names(small: Server, tmp_path: Path) -> None:
    for name in ("../x", "/etc/passwd", "segments/REC-0001/../../x", "segments\\REC-0001\\000000000001.manifest",
                 "segments/REC-0001/sub/000000000001.bin", "notes.txt", "proofs/REC-0001/1.tlog-proof",
                 "segments/.hidden/000000000001.manifest", "receipts/REC-0001/000000000001.gateway"):
        assert package.classify(name) is None, name
    assert package.classify("proofs/REC-0001/000000000007.dock.tlog-proof") == package.Member(
        package.DOCK_PROOF, DEVICE, 7)
    # Sealed by the genuine server key, so only the layout rules can object.
    entries = [*members(small.write(tmp_path / "pkg.zip").read_bytes())[:-1], ("segments/REC-0001/../../x", b"!"),
               ("segments/REC-0001/000000000077.bin", b"orphan")]
    bad = tmp_path / "names.zip"
    bad.write_bytes(reseal(entries, small.signer, small.export()))
    report = verify_package(bad)
    assert codes(report) == {errors.PACKAGE_BAD_NAME}
    assert {f.location for f in report.report.findings()} == {"segments/REC-0001/../../x",
                                                              "segments/REC-0001/000000000077.bin"}


def test_not_a_zip_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.zip").write_text("this is not a zip file\n")
    assert main(["verify", str(tmp_path / "notes.zip")]) == 2
    assert "not a zip file" in capsys.readouterr().err
    (tmp_path / "store").mkdir()
    assert main(["verify", str(tmp_path / "notes.zip"), str(tmp_path / "store")]) == 2
    assert "one evidence package" in capsys.readouterr().err


def test_writer_refuses_inputs_that_cannot_verify(small: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    segments = [small.segment(0)]
    args = (small.checkpoint, small.trust.to_bytes(), str(small.note.verifier), small.export())
    es256 = signatures.KeySigner(signatures.generate(signatures.ES256))
    with pytest.raises(PackageError, match="ed25519"):
        write_package(out / "p.zip", segments, *args, es256)
    with pytest.raises(PackageError, match="trust list must hold the signing key"):
        write_package(out / "p.zip", segments, *args, signatures.KeySigner(Ed25519PrivateKey.generate()))
    other = Server(small.rec, key=Ed25519PrivateKey.generate())
    with pytest.raises(PackageError, match="not against the package checkpoint"):
        write_package(out / "p.zip", [other.segment(0)], *args, small.signer)
    with pytest.raises(PackageError, match="reason_sha256"):
        write_package(out / "p.zip", segments, *args[:3], small.export(reason_sha256="nope"), small.signer)
    with pytest.raises(PackageError, match="twice"):
        write_package(out / "p.zip", segments * 2, *args, small.signer)
    assert os.listdir(out) == []


def test_the_documented_manual_seal_check_works(small: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """docs/evidence-package.md tells a reader with only the zip how to check the seal: run exactly that."""
    code = examples(ROOT / "docs" / "evidence-package.md")["manual-seal-check"][1]
    monkeypatch.chdir(tmp_path)
    pkg = small.write(tmp_path / "package.zip")
    (tmp_path / "server.pem").write_bytes(signatures.public_pem(small.signer.public_key()))
    exec(code, {})
    assert "seal OK for export EXP-2025-0001" in capsys.readouterr().out
    data = pkg.read_bytes()
    pkg.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    with pytest.raises(AssertionError, match="changed after sealing"):
        exec(code, {})
