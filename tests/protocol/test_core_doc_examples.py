"""The worked examples of docs/protocol.md §3 to §8 are what the code produces."""

from __future__ import annotations

import hashlib
import json

from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol import canonical, errors, manifest, receipts, signatures
from protocol.trust import parse_trust_list
from tests.doc_examples import document_text, example, example_bytes

SEED = bytes(range(32))
DEVICE = "REC-0001"


def example_signer() -> signatures.KeySigner:
    return signatures.KeySigner(ed25519.Ed25519PrivateKey.from_private_bytes(SEED))


def example_manifest() -> manifest.Manifest:
    signer = example_signer()
    t0 = 1_764_000_010_000_000_000
    return manifest.build({
        "device": DEVICE,
        "key": signer.keyid,
        "session": "5f1e0c2a9b7d4e3f8a6b1c0d2e4f6a8b",
        "seq": 1,
        "prev": hashlib.sha256(b"the boot record's payload").hexdigest(),
        "kind": manifest.SEGMENT,
        "time": {"start_ns": t0, "end_ns": t0 + 10_000_000_000, "source": "gnss",
                 "mono_start_ns": 12_500_000_000, "mono_end_ns": 22_500_000_000},
        "media": {"name": "000000000001.mp4", "sha256": hashlib.sha256(b"media").hexdigest(),
                  "size": 7_340_032, "container": "mp4-fragmented", "codecs": ["avc1.64001f", "mp4a.40.2"],
                  "duration_ns": 10_000_000_000, "frames": 300},
        "track": {"points": [{"t_ns": t0, "lat_e7": 399_042_123, "lon_e7": 1_164_074_456, "fix": 1,
                              "hdop_c": 90}], "none_reason": None},
        "markers": [{"t_ns": t0 + 4_000_000_000, "kind": "event"}],
        "assignment": {"officer": "110234", "ref": hashlib.sha256(b"assignment").hexdigest()},
        "firmware": "0.1.0",
        "prerecord": False,
        "detail": {},
    })


def example_dock_receipt() -> dict[str, object]:
    m = example_manifest()
    return {"v": 1, "gateway": "GW-STATION-01", "device": DEVICE, "first_seq": 1, "last_seq": 1,
            "head": m.hash.hex(), "received_ns": 1_764_030_000_000_000_000, "clock_offset_ns": -420_000_000,
            "segments": [{"seq": 1, "manifest": m.hash.hex(), "media_sha256": m.media["sha256"],
                          "result": "ok"}]}


def test_pae() -> None:
    assert signatures.pae("t", b"xy") == example("pae-small").rstrip("\n").encode()


def test_genesis() -> None:
    assert example_bytes("genesis-REC-0001") == manifest.genesis(DEVICE)


def test_example_key() -> None:
    assert bytes.fromhex(example("example-key-seed").strip()) == SEED
    signer = example_signer()
    assert example_bytes("example-key-spki") == signatures.spki_der(signer.public_key())
    assert example("example-keyid").strip() == signer.keyid


def test_manifest_payload_hash_and_envelope() -> None:
    m = example_manifest()
    assert example("manifest-payload").rstrip("\n").encode() == m.payload
    assert manifest.parse(m.payload).fields == m.fields
    assert example_bytes("manifest-hash") == m.hash
    envelope = example("manifest-envelope").rstrip("\n").encode()
    assert envelope == signatures.seal(example_signer(), manifest.TYPE, m.payload)
    assert signatures.open_envelope(envelope, manifest.TYPE).verify_with(example_signer().public_key())


def test_dock_receipt_payload() -> None:
    payload = example("dock-receipt-payload").rstrip("\n").encode()
    assert payload == canonical.encode(example_dock_receipt())
    assert receipts.check_dock(canonical.decode(payload))


def test_trust_file_example_has_the_documented_shape() -> None:
    doc = json.loads(example("trust-file"))
    assert doc["liuhen_trust"] == 1
    assert set(doc["keys"][0]) == {"alg", "keyid", "owner", "revoked", "role", "spki", "valid_from_ns",
                                   "valid_until_ns"}
    real = json.loads(parse_trust_list(b'{"liuhen_trust": 1, "keys": []}').to_bytes())
    assert set(real) == set(doc)


def test_every_finding_code_is_documented() -> None:
    text = document_text()
    for code, description in errors.DESCRIPTIONS.items():
        assert f"| `{code}` |" in text and description in text, code
