from __future__ import annotations

import base64

import pytest

from protocol import canonical, errors, signatures
from protocol.errors import ProtocolError

TYPE = "application/vnd.liuhen.test.v1+json"


@pytest.mark.parametrize("alg", signatures.ALGORITHMS)
def test_seal_and_verify(alg: str) -> None:
    signer = signatures.KeySigner(signatures.generate(alg))
    env = signatures.open_envelope(signatures.seal(signer, TYPE, b'{"a":1}'), TYPE)
    assert (env.alg, env.keyid, env.payload) == (alg, signer.keyid, b'{"a":1}')
    assert len(env.sig) == 64
    assert env.verify_with(signer.public_key())


@pytest.mark.parametrize("alg", signatures.ALGORITHMS)
def test_signature_is_bound_to_type_payload_and_key(alg: str) -> None:
    signer = signatures.KeySigner(signatures.generate(alg))
    other = signatures.KeySigner(signatures.generate(alg))
    env = signatures.open_envelope(signatures.seal(signer, TYPE, b"payload"))
    retyped = signatures.Envelope(env.alg, env.keyid, "application/other", env.payload, env.sig, env.raw)
    changed = signatures.Envelope(env.alg, env.keyid, env.type, b"payloaD", env.sig, env.raw)
    assert not retyped.verify_with(signer.public_key())
    assert not changed.verify_with(signer.public_key())
    assert not env.verify_with(other.public_key())


def test_pae_is_length_prefixed() -> None:
    # Moving bytes between type and payload must change the signed message.
    assert signatures.pae("ab", b"c") != signatures.pae("a", b"bc")
    assert signatures.pae("t", b"xy") == b"LIUHEN-SIG-V1 1 t 2 xy"


def test_es256_signature_is_raw_r_s() -> None:
    signer = signatures.KeySigner(signatures.generate(signatures.ES256))
    sig = signer.sign(b"m")
    assert len(sig) == 64
    assert signatures.verify_raw(signer.public_key(), b"m", sig)
    assert not signatures.verify_raw(signer.public_key(), b"m", sig[:63])


def _envelope(**changes: object) -> bytes:
    signer = signatures.KeySigner(signatures.generate())
    env = canonical.decode(signatures.seal(signer, TYPE, b"x"))
    env.update(changes)
    for k in [k for k, v in changes.items() if v is None]:
        del env[k]
    return canonical.encode(env)


@pytest.mark.parametrize(
    "changes",
    [
        {"alg": "rsa"},
        {"keyid": "ABC"},
        {"payload": "not base64!"},
        {"payload": "eA"},  # unpadded: not canonical base64
        {"sig": 5},
        {"type": ""},
        {"extra": 1},
        {"sig": None},
    ],
)
def test_malformed_envelopes_are_rejected(changes: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as exc:
        signatures.open_envelope(_envelope(**changes))
    assert exc.value.code == errors.ENVELOPE_MALFORMED


def test_non_canonical_envelope_is_rejected() -> None:
    raw = _envelope().replace(b",", b", ", 1)
    with pytest.raises(ProtocolError) as exc:
        signatures.open_envelope(raw)
    assert exc.value.code == errors.ENVELOPE_MALFORMED


def test_wrong_type_is_its_own_error() -> None:
    with pytest.raises(ProtocolError) as exc:
        signatures.open_envelope(_envelope(), "application/vnd.liuhen.manifest.v1+json")
    assert exc.value.code == errors.ENVELOPE_WRONG_TYPE


def test_key_id_is_sha256_of_spki() -> None:
    import hashlib

    key = signatures.generate().public_key()
    assert signatures.key_id(key) == hashlib.sha256(signatures.spki_der(key)).hexdigest()
    assert base64.b64encode(signatures.spki_der(key))  # DER, loadable again:
    assert signatures.key_id(signatures.public_key_from_spki(signatures.spki_der(key))) == signatures.key_id(key)


def test_pem_round_trip_and_public_from_private() -> None:
    key = signatures.generate(signatures.ES256)
    loaded = signatures.load_private_key(signatures.private_pem(key))
    assert signatures.key_id(loaded.public_key()) == signatures.key_id(key.public_key())
    assert signatures.key_id(signatures.load_public_key(signatures.private_pem(key))) == signatures.key_id(
        key.public_key()
    )
    with pytest.raises(ValueError):
        signatures.load_public_key(b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
