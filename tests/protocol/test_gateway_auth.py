"""Gateway authentication statements: signed, checked against the trust list, fresh and addressed to us."""

from __future__ import annotations

from typing import Any

import pytest

from protocol import canonical, errors, gateway_auth, receipts, signatures
from protocol.errors import ProtocolError
from protocol.trust import Revocation, TrustList, trusted_key
from tests.doc_examples import example

NOW = 1_764_030_000_000_000_000
MINUTE = 60 * 10**9


@pytest.fixture
def gateway() -> signatures.KeySigner:
    return signatures.KeySigner(signatures.generate())


@pytest.fixture
def trust(gateway: signatures.KeySigner) -> TrustList:
    return TrustList([trusted_key(gateway.public_key(), "gateway", "GW-01")])


def fields(**over: object) -> dict[str, Any]:
    return {"gateway": "GW-01", "server": "SRV-01", "issued_ns": NOW, "nonce": "ab" * 16, **over}


def test_round_trip_and_fresh(gateway: signatures.KeySigner, trust: TrustList) -> None:
    auth = gateway_auth.open_auth(gateway_auth.issue(gateway, fields()), trust)
    assert auth["gateway"] == "GW-01" and auth["nonce"] == "ab" * 16
    for now in (NOW - 5 * MINUTE, NOW, NOW + 5 * MINUTE):
        gateway_auth.check_fresh(auth, "SRV-01", now)


@pytest.mark.parametrize("now", [NOW - 5 * MINUTE - 1, NOW + 5 * MINUTE + 1])
def test_stale(gateway: signatures.KeySigner, trust: TrustList, now: int) -> None:
    auth = gateway_auth.open_auth(gateway_auth.issue(gateway, fields()), trust)
    with pytest.raises(ProtocolError) as exc:
        gateway_auth.check_fresh(auth, "SRV-01", now)
    assert exc.value.code == errors.AUTH_STALE


def test_addressed_to_another_server(gateway: signatures.KeySigner, trust: TrustList) -> None:
    auth = gateway_auth.open_auth(gateway_auth.issue(gateway, fields(server="SRV-02")), trust)
    with pytest.raises(ProtocolError) as exc:
        gateway_auth.check_fresh(auth, "SRV-01", NOW)
    assert exc.value.code == errors.AUTH_WRONG_SERVER


@pytest.mark.parametrize("over", [{"nonce": "AB" * 16}, {"nonce": "ab" * 15}, {"issued_ns": -1},
                                  {"gateway": "GW 01"}, {"server": ""}, {"v": 2}, {"extra": 1}])
def test_malformed_fields_are_refused(gateway: signatures.KeySigner, over: dict[str, object]) -> None:
    with pytest.raises(ProtocolError) as exc:
        gateway_auth.issue(gateway, fields(**over))
    assert exc.value.code == errors.AUTH_MALFORMED


def test_malformed_payload_is_refused_when_opened(gateway: signatures.KeySigner, trust: TrustList) -> None:
    raw = signatures.seal(gateway, gateway_auth.TYPE, canonical.encode({"v": 1, **fields(nonce="zz")}))
    with pytest.raises(ProtocolError) as exc:
        gateway_auth.open_auth(raw, trust)
    assert exc.value.code == errors.AUTH_MALFORMED


def test_keys_that_may_not_authenticate(gateway: signatures.KeySigner, trust: TrustList) -> None:
    raw = gateway_auth.issue(gateway, fields())
    cases: list[tuple[TrustList, str]] = [(TrustList(), errors.KEY_UNKNOWN)]
    device = TrustList([trusted_key(gateway.public_key(), "device", "GW-01")])
    cases.append((device, errors.KEY_WRONG_OWNER))
    other_owner = TrustList([trusted_key(gateway.public_key(), "gateway", "GW-02")])
    cases.append((other_owner, errors.KEY_WRONG_OWNER))
    trust.revoke(gateway.keyid, Revocation(at_ns=NOW - MINUTE, reason="stolen"))
    cases.append((trust, errors.KEY_REVOKED))
    for listed, code in cases:
        with pytest.raises(ProtocolError) as exc:
            gateway_auth.open_auth(raw, listed)
        assert exc.value.code == code


def test_other_envelope_types_are_refused(gateway: signatures.KeySigner, trust: TrustList) -> None:
    other = signatures.seal(gateway, receipts.DOCK_TYPE, canonical.encode({"v": 1, **fields()}))
    with pytest.raises(ProtocolError) as exc:
        gateway_auth.open_auth(other, trust)
    assert exc.value.code == errors.ENVELOPE_WRONG_TYPE


def test_signature_over_other_bytes_is_bad(gateway: signatures.KeySigner, trust: TrustList) -> None:
    env = signatures.open_envelope(gateway_auth.issue(gateway, fields()))
    other = signatures.open_envelope(gateway_auth.issue(gateway, fields(nonce="cd" * 16)))
    spliced = canonical.encode({"alg": env.alg, "keyid": env.keyid, "type": env.type,
                                "payload": canonical.decode(env.raw)["payload"],
                                "sig": canonical.decode(other.raw)["sig"]})
    with pytest.raises(ProtocolError) as exc:
        gateway_auth.open_auth(spliced, trust)
    assert exc.value.code == errors.SIGNATURE_BAD


def test_documented_example_is_a_valid_payload() -> None:
    payload = example("gateway-auth-payload").rstrip("\n").encode()
    decoded = canonical.decode(payload)
    assert canonical.encode(gateway_auth.check_auth(decoded)) == payload
