"""C2SP tlog-proof bundles: round trip, offline verification, tampering, malformed bundles."""

from __future__ import annotations

import base64
import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.errors import ProtocolError
from protocol.tlog.checkpoint import (
    CHECKPOINT_WRONG_ORIGIN,
    NOTE_UNVERIFIED,
    Checkpoint,
    NoteSigner,
    sign_checkpoint,
)
from protocol.tlog.merkle import INCLUSION_MISMATCH, MemoryTree, inclusion_proof, leaf_hash, tree_root
from protocol.tlog.proof_bundle import (
    BUNDLE_MALFORMED,
    HEADER,
    BundleError,
    ProofBundle,
    parse_bundle,
    verify_bundle,
    verify_bundle_entry,
)

ORIGIN = "example.com/liuhen-log"
LOG = NoteSigner.from_seed(ORIGIN, bytes(range(32)))
WITNESS = NoteSigner.from_seed("witness.example", bytes(32))
ENTRIES = [b"segment manifest %d" % i for i in range(13)]
TREE = MemoryTree()
for _e in ENTRIES:
    TREE.append(_e)
CHECKPOINT = sign_checkpoint(Checkpoint(ORIGIN, TREE.size, tree_root(TREE, TREE.size)), [LOG, WITNESS])


def _bundle(index: int, extra: bytes = b"") -> ProofBundle:
    return ProofBundle(index, tuple(inclusion_proof(TREE, index, TREE.size)), CHECKPOINT, extra)


def _fails(code: str | None, data: bytes, entry: bytes, origin: str = ORIGIN) -> None:
    with pytest.raises(ProtocolError) as e:
        verify_bundle_entry(data, entry, origin, [LOG.verifier])
    assert code is None or e.value.code == code, e.value


@pytest.mark.parametrize("index", range(len(ENTRIES)))
def test_every_entry_verifies_offline(index: int) -> None:
    data = _bundle(index).encode()
    assert parse_bundle(data) == _bundle(index)
    verified = verify_bundle_entry(data, ENTRIES[index], ORIGIN, [LOG.verifier])
    assert verified.bundle.index == index and verified.checkpoint.size == len(ENTRIES)
    assert [s.name for s in verified.note.unknown] == [WITNESS.name]
    assert verify_bundle(data, leaf_hash(ENTRIES[index]), ORIGIN, [LOG.verifier]) == verified
    _fails(INCLUSION_MISMATCH, data, ENTRIES[(index + 1) % len(ENTRIES)])


def test_layout_follows_the_spec() -> None:
    data = _bundle(3, extra=b"context").encode()
    head, checkpoint = data.split(b"\n\n", 1)
    lines = head.decode().split("\n")
    assert lines[:3] == [HEADER, "extra " + base64.b64encode(b"context").decode(), "index 3"]
    assert [base64.b64decode(x) for x in lines[3:]] == inclusion_proof(TREE, 3, TREE.size)
    assert checkpoint == CHECKPOINT
    assert b"extra" not in _bundle(3).encode()


def test_every_tampered_byte_of_a_bundle_is_rejected() -> None:
    # Signature lines by keys the verifier was not given are ignored (signed-note), so this bundle carries the
    # log's signature only: then every byte but the unauthenticated `extra` is covered.
    log_only = sign_checkpoint(Checkpoint(ORIGIN, TREE.size, tree_root(TREE, TREE.size)), [LOG])
    data = ProofBundle(6, tuple(inclusion_proof(TREE, 6, TREE.size)), log_only).encode()
    for i in range(len(data)):
        for mask in (0x01, 0x20, 0x80):
            tampered = bytearray(data)
            tampered[i] ^= mask
            _fails(None, bytes(tampered), ENTRIES[6])


def test_every_tampered_byte_of_the_entry_is_rejected() -> None:
    data = _bundle(6).encode()
    entry = ENTRIES[6]
    for i in range(len(entry)):
        tampered = bytearray(entry)
        tampered[i] ^= 0x01
        _fails(INCLUSION_MISMATCH, data, bytes(tampered))
    for other in (entry + b"\x00", entry[:-1], b""):
        _fails(INCLUSION_MISMATCH, data, other)


def test_extra_data_is_carried_but_not_authenticated() -> None:
    # tlog-proof: "Applications MUST NOT implicitly trust the extra data"; a changed extra still verifies.
    verified = verify_bundle_entry(_bundle(2, b"one").encode(), ENTRIES[2], ORIGIN, [LOG.verifier])
    assert verified.bundle.extra == b"one"
    assert verify_bundle_entry(_bundle(2, b"two").encode(), ENTRIES[2], ORIGIN, [LOG.verifier]).bundle.extra == b"two"


def test_witness_lines_are_only_checked_with_the_witness_key() -> None:
    data = _bundle(1).encode()
    assert data.endswith(b"=\n") and WITNESS.name.encode() in data.splitlines()[-1]
    # One base64 digit inside the witness's signature (the last line) changed.
    forged = data[:-10] + (b"B" if data[-10:-9] == b"A" else b"A") + data[-9:]
    assert verify_bundle_entry(forged, ENTRIES[1], ORIGIN, [LOG.verifier]).note.unknown
    with pytest.raises(ProtocolError):
        verify_bundle_entry(forged, ENTRIES[1], ORIGIN, [LOG.verifier, WITNESS.verifier])


def test_checkpoint_must_come_from_the_expected_log_and_key() -> None:
    data = _bundle(0).encode()
    _fails(CHECKPOINT_WRONG_ORIGIN, data, ENTRIES[0], origin="example.com/other-log")
    rotated = NoteSigner.from_seed(ORIGIN, bytes([9]) * 32)
    with pytest.raises(ProtocolError) as e:
        verify_bundle_entry(data, ENTRIES[0], ORIGIN, [rotated.verifier])
    assert e.value.code == NOTE_UNVERIFIED


def test_proof_for_an_older_checkpoint_does_not_fit_a_newer_one() -> None:
    old = ProofBundle(4, tuple(inclusion_proof(TREE, 4, 8)), CHECKPOINT)
    _fails(None, old.encode(), ENTRIES[4])


def test_c2sp_example_layout_parses() -> None:
    # The example in c2sp.org/tlog-proof, with its elided signatures; only the bundle layout is checked here.
    example = (
        "c2sp.org/tlog-proof@v1\n"
        "extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\n"
        "index 73894\n"
        "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
        "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
        "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n"
        "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n"
        "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n"
        "\n"
        "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n"
        "\u2014 example.com/fancylog hI2DJw[...]1roloI=\n"
    ).encode()
    bundle = parse_bundle(example)
    assert bundle.index == 73894 and len(bundle.proof) == 5
    assert bundle.extra.startswith(b"age-v1.2.1-darwin-arm64.tar.gz")
    assert bundle.checkpoint.startswith(b"example.com/fancylog\n109482\n")


HASH = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (f"c2sp.org/tlog-proof@v2\nindex 0\n{HASH}\n\ncp\n", "other version"),
        (f"c2sp.org/tlog-proof@v1\r\nindex 0\n{HASH}\n\ncp\n", "CRLF"),
        (f"c2sp.org/tlog-proof@v1\n{HASH}\n\ncp\n", "no index"),
        (f"c2sp.org/tlog-proof@v1\nindex 01\n{HASH}\n\ncp\n", "leading zero"),
        (f"c2sp.org/tlog-proof@v1\nindex -1\n{HASH}\n\ncp\n", "negative index"),
        (f"c2sp.org/tlog-proof@v1\nindex  1\n{HASH}\n\ncp\n", "two spaces"),
        (f"c2sp.org/tlog-proof@v1\nindex {2**64}\n\ncp\n", "index beyond 64 bits"),
        (f"c2sp.org/tlog-proof@v1\nindex 0\n{HASH[:-2]}B=\n\ncp\n", "non-canonical base64"),
        (f"c2sp.org/tlog-proof@v1\nindex 0\n{base64.b64encode(bytes(31)).decode()}\n\ncp\n", "31-byte hash"),
        (f"c2sp.org/tlog-proof@v1\nindex 0\n{HASH} \n\ncp\n", "trailing space"),
        ("c2sp.org/tlog-proof@v1\nextra \nindex 0\n\ncp\n", "empty extra"),
        ("c2sp.org/tlog-proof@v1\nextra !!\nindex 0\n\ncp\n", "bad extra"),
        ("c2sp.org/tlog-proof@v1\nindex 0\nextra AAAA\n\ncp\n", "extra after index"),
        (f"c2sp.org/tlog-proof@v1\nindex 0\n{HASH}\ncp\n", "no empty line"),
        ("c2sp.org/tlog-proof@v1\nindex 0\n\n", "no checkpoint"),
        ("c2sp.org/tlog-proof@v1\nindex 0\n" + f"{HASH}\n" * 65 + "\ncp\n", "65 hashes"),
        ("c2sp.org/tlog-proof@v1\nindex \u0661\n\ncp\n", "non-ASCII digit"),
    ],
)
def test_malformed_bundles_are_rejected(text: str, why: str) -> None:
    with pytest.raises(BundleError) as e:
        parse_bundle(text.encode())
    assert e.value.code == BUNDLE_MALFORMED


def test_bundles_that_cannot_be_written_are_refused() -> None:
    for bad in (
        ProofBundle(-1, (), CHECKPOINT),
        ProofBundle(0, (bytes(31),), CHECKPOINT),
        ProofBundle(0, (bytes(32),) * 65, CHECKPOINT),
        ProofBundle(0, (), b""),
    ):
        with pytest.raises(BundleError):
            bad.encode()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: (HEADER + "\n" + t).encode("utf-8", "replace")))
def test_arbitrary_bytes_only_ever_raise_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        verify_bundle_entry(data, ENTRIES[0], ORIGIN, [LOG.verifier])
