from __future__ import annotations

import json

import pytest

from protocol import errors, signatures
from protocol.trust import Revocation, TrustFileError, TrustList, parse_trust_list, trusted_key


def _trust() -> tuple[TrustList, signatures.KeySigner]:
    signer = signatures.KeySigner(signatures.generate())
    return TrustList([trusted_key(signer.public_key(), "device", "REC-1", 100, 10_000)]), signer


def test_round_trip_keeps_everything() -> None:
    trust, signer = _trust()
    trust.revoke(signer.keyid, Revocation(at_ns=5000, after_seq=7, reason="lost"))
    again = parse_trust_list(trust.to_bytes())
    assert again.entries() == trust.entries()


def test_usage_rules() -> None:
    trust, signer = _trust()
    key = trust.get(signer.keyid)
    assert key is not None
    assert key.usage_finding(50) == errors.KEY_OUTSIDE_VALIDITY
    assert key.usage_finding(20_000) == errors.KEY_OUTSIDE_VALIDITY
    assert key.usage_finding(500, seq=9) is None
    trust.revoke(signer.keyid, Revocation(at_ns=5000))
    key = trust.get(signer.keyid)
    assert key.usage_finding(4999) is None
    assert key.usage_finding(5000) == errors.KEY_REVOKED
    assert key.usage_finding(None) == errors.KEY_REVOKED


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(liuhen_trust=2), "not a Liuhen trust file"),
        (lambda d: d["keys"][0].update(keyid="00" * 32), "do not match"),
        (lambda d: d["keys"][0].update(spki="AAAA"), "not a usable public key"),
        (lambda d: d["keys"][0].update(role="king"), "role must be one of"),
        (lambda d: d["keys"][0].update(valid_from_ns="soon"), "must be an integer"),
        (lambda d: d["keys"].append(d["keys"][0]), "already in the trust list"),
        (lambda d: d["keys"][0].update(revoked={"when": 1}), "integer at_ns"),
    ],
)
def test_bad_trust_files_are_refused(mutate, message: str) -> None:
    trust, _ = _trust()
    doc = json.loads(trust.to_bytes())
    mutate(doc)
    with pytest.raises(TrustFileError, match=message):
        parse_trust_list(json.dumps(doc).encode())


def test_floats_and_duplicate_fields_are_refused() -> None:
    with pytest.raises(TrustFileError, match="integers"):
        parse_trust_list(b'{"liuhen_trust": 1.0, "keys": []}')
    with pytest.raises(TrustFileError, match="duplicate"):
        parse_trust_list(b'{"liuhen_trust": 1, "keys": [], "keys": []}')
