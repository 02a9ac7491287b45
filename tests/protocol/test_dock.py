"""The dock link's messages: the device-signed hello and the checks both sides make of the JSON messages."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from protocol import canonical, dock, errors, signatures
from protocol.errors import ProtocolError
from protocol.trust import Revocation, TrustList, trusted_key

NOW = 1_764_030_000_000_000_000
S = 10**9
CHALLENGE = dock.Challenge("REC-0001", "GW-01", "ab" * 16, NOW)


@pytest.fixture
def device() -> signatures.KeySigner:
    return signatures.KeySigner(signatures.generate())


@pytest.fixture
def trust(device: signatures.KeySigner) -> TrustList:
    return TrustList([trusted_key(device.public_key(), "device", "REC-0001")])


def code_of(call: Any, *args: Any) -> str:
    with pytest.raises(ProtocolError) as exc:
        call(*args)
    return exc.value.code


def test_a_hello_answers_its_challenge(device: signatures.KeySigner, trust: TrustList) -> None:
    hello = dock.open_hello(dock.issue_hello(device, CHALLENGE, NOW - 3 * S), trust)
    dock.check_answers(hello, CHALLENGE, NOW + dock.CHALLENGE_TTL_NS)
    assert hello["device_ns"] == NOW - 3 * S


@pytest.mark.parametrize("other", [{"device": "REC-0002"}, {"gateway": "GW-02"}, {"nonce": "cd" * 16},
                                   {"gateway_ns": NOW + 1}])
def test_a_hello_for_another_challenge_is_refused(device: signatures.KeySigner, trust: TrustList,
                                                  other: dict[str, Any]) -> None:
    hello = dock.open_hello(dock.issue_hello(device, CHALLENGE, NOW), trust)
    given = dataclasses.replace(CHALLENGE, **other)  # what the bay actually asked
    assert code_of(dock.check_answers, hello, given, NOW) == errors.DOCK_CHALLENGE_MISMATCH


def test_a_late_hello_is_stale(device: signatures.KeySigner, trust: TrustList) -> None:
    hello = dock.open_hello(dock.issue_hello(device, CHALLENGE, NOW), trust)
    assert code_of(dock.check_answers, hello, CHALLENGE, NOW + dock.CHALLENGE_TTL_NS + 1) == errors.DOCK_STALE


def test_keys_that_may_not_dock(device: signatures.KeySigner, trust: TrustList) -> None:
    raw = dock.issue_hello(device, CHALLENGE, NOW)
    assert code_of(dock.open_hello, raw, TrustList()) == errors.KEY_UNKNOWN
    other_device = TrustList([trusted_key(device.public_key(), "device", "REC-0002")])
    assert code_of(dock.open_hello, raw, other_device) == errors.KEY_WRONG_OWNER
    as_gateway = TrustList([trusted_key(device.public_key(), "gateway", "REC-0001")])
    assert code_of(dock.open_hello, raw, as_gateway) == errors.KEY_WRONG_OWNER
    # Revoked keys are judged at the gateway's time: a recorder cannot dock by setting its clock back.
    trust.revoke(device.keyid, Revocation(at_ns=NOW - S, after_seq=41, reason="lost"))
    backdated = dock.issue_hello(device, CHALLENGE, NOW - 86_400 * S)
    assert code_of(dock.open_hello, backdated, trust) == errors.KEY_REVOKED


def test_a_recorder_whose_clock_is_wrong_may_still_dock(device: signatures.KeySigner) -> None:
    valid = trusted_key(device.public_key(), "device", "REC-0001", valid_from_ns=NOW - 86_400 * S)
    hello = dock.open_hello(dock.issue_hello(device, CHALLENGE, 0), TrustList([valid]))  # its RTC lost power
    assert hello["device_ns"] == 0


def test_malformed_hellos(device: signatures.KeySigner, trust: TrustList) -> None:
    bad = dock.Challenge("REC 0001", "GW-01", "ab" * 16, NOW)
    assert code_of(dock.issue_hello, device, bad, NOW) == errors.DOCK_MALFORMED
    extra = signatures.seal(device, dock.HELLO_TYPE, canonical.encode(
        {"v": 1, "device": "REC-0001", "gateway": "GW-01", "nonce": "ab" * 16, "gateway_ns": NOW, "device_ns": NOW,
         "mood": "fine"}))
    assert code_of(dock.open_hello, extra, trust) == errors.DOCK_MALFORMED
    not_canonical = signatures.seal(device, dock.HELLO_TYPE, b'{"v": 1}')
    assert code_of(dock.open_hello, not_canonical, trust) == errors.DOCK_MALFORMED
    receipt_typed = signatures.seal(device, "application/vnd.liuhen.dock-receipt.v1+json", b"{}")
    assert code_of(dock.open_hello, receipt_typed, trust) == errors.ENVELOPE_WRONG_TYPE


def test_midpoint_offset() -> None:
    assert dock.midpoint_offset(1_000, 0, 10) == 995
    assert dock.midpoint_offset(0, 1_000, 1_001) == -1_000


@pytest.mark.parametrize("body", [
    {}, {"manifests": {}}, {"manifests": [{"envelope": "x"}]}, {"manifests": [{"envelope": "x", "size": -1}]},
    {"manifests": [{"envelope": "x", "size": 1.0}]}, {"manifests": [{"envelope": "é", "size": None}]},
    {"manifests": [{"envelope": "", "size": None}]}, {"manifests": [], "more": 1},
])
def test_malformed_pending_lists(body: object) -> None:
    assert code_of(dock.parse_pending, body) == errors.DOCK_MALFORMED


def test_pending_list_round_trip() -> None:
    offers = [dock.Offer(b'{"a":1}', 12), dock.Offer(b"{}", None)]
    assert dock.parse_pending({"manifests": [o.to_json() for o in offers]}) == offers


@pytest.mark.parametrize("body", [
    {"send": [{"seq": 1, "offset": 5, "size": 4}], "held": [], "refused": []},
    {"send": [{"seq": 1, "offset": 0, "size": 4}], "held": [1], "refused": []},
    {"send": [], "held": [True], "refused": []},
    {"send": [], "held": [], "refused": [{"seq": 1, "code": "", "message": "m"}]},
    {"send": [], "held": []},
])
def test_malformed_plans(body: object) -> None:
    assert code_of(dock.parse_plan, body) == errors.DOCK_MALFORMED


@pytest.mark.parametrize("parse, body", [
    (dock.parse_file_answer, {"seq": 1, "offset": 4, "complete": True, "result": None}),
    (dock.parse_file_answer, {"seq": 1, "offset": 4, "complete": False, "result": "ok"}),
    (dock.parse_receipts_request, {"seqs": ["1"]}),
    (dock.parse_receipts_answer, {"receipts": [7]}),
    (dock.parse_session_answer, {"token": "ab" * 16, "gateway_ns": NOW}),
    (dock.check_hello_request, {"device": "../etc"}),
])
def test_other_malformed_messages(parse: Any, body: object) -> None:
    assert code_of(parse, body) == errors.DOCK_MALFORMED


def test_challenge_and_session_answers_parse() -> None:
    assert dock.parse_challenge(CHALLENGE.to_json(), "REC-0001") == CHALLENGE
    answer = dock.parse_session_answer({"token": "ab" * 16, "gateway_ns": NOW, "clock_offset_ns": -420_000_000})
    assert answer.clock_offset_ns == -420_000_000
