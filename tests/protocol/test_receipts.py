from __future__ import annotations

import pytest

from protocol import errors, receipts, signatures
from protocol.errors import ProtocolError
from protocol.trust import Revocation, TrustList, trusted_key

H = "ab" * 32


@pytest.fixture
def keys() -> tuple[signatures.KeySigner, signatures.KeySigner, TrustList]:
    gw = signatures.KeySigner(signatures.generate())
    srv = signatures.KeySigner(signatures.generate(signatures.ES256))
    trust = TrustList([trusted_key(gw.public_key(), "gateway", "GW-01"),
                       trusted_key(srv.public_key(), "server", "SRV-1")])
    return gw, srv, trust


def dock_fields(**over: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "gateway": "GW-01", "device": "REC-0001", "first_seq": 3, "last_seq": 4, "head": H,
        "received_ns": 1_764_000_000_000_000_000, "clock_offset_ns": -1_250_000,
        "segments": [{"seq": 3, "manifest": H, "media_sha256": H, "result": "ok"},
                     {"seq": 4, "manifest": H, "media_sha256": None, "result": errors.FILE_HASH_MISMATCH}],
    }
    fields.update(over)
    return fields


def server_fields(**over: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "server": "SRV-1", "gateway": "GW-01", "device": "REC-0001", "seq": 3, "manifest": H,
        "media_sha256": H, "received_ns": 1_764_000_000_000_000_000, "log_index": 17, "status": "stored",
        "findings": [],
    }
    fields.update(over)
    return fields


def test_dock_receipt_round_trip(keys) -> None:
    gw, _, trust = keys
    r = receipts.open_receipt(receipts.issue(gw, receipts.DOCK_TYPE, dock_fields()), receipts.DOCK_TYPE, trust)
    assert r["segments"][1]["result"] == errors.FILE_HASH_MISMATCH and r["clock_offset_ns"] == -1_250_000


def test_server_receipt_round_trip(keys) -> None:
    _, srv, trust = keys
    raw = receipts.issue(srv, receipts.SERVER_TYPE, server_fields())
    assert receipts.open_receipt(raw, receipts.SERVER_TYPE, trust)["log_index"] == 17


def test_receipt_types_do_not_cross(keys) -> None:
    gw, _, trust = keys
    raw = receipts.issue(gw, receipts.DOCK_TYPE, dock_fields())
    with pytest.raises(ProtocolError) as exc:
        receipts.open_receipt(raw, receipts.SERVER_TYPE, trust)
    assert exc.value.code == errors.ENVELOPE_WRONG_TYPE


def test_receipt_signed_by_a_device_key_is_refused(keys) -> None:
    _, _, trust = keys
    device = signatures.KeySigner(signatures.generate())
    trust.add(trusted_key(device.public_key(), "device", "GW-01"))
    raw = receipts.issue(device, receipts.DOCK_TYPE, dock_fields())
    with pytest.raises(ProtocolError) as exc:
        receipts.open_receipt(raw, receipts.DOCK_TYPE, trust)
    assert exc.value.code == errors.KEY_WRONG_OWNER


def test_receipt_by_unknown_or_revoked_gateway(keys) -> None:
    gw, _, trust = keys
    raw = receipts.issue(gw, receipts.DOCK_TYPE, dock_fields())
    with pytest.raises(ProtocolError) as exc:
        receipts.open_receipt(raw, receipts.DOCK_TYPE, TrustList())
    assert exc.value.code == errors.KEY_UNKNOWN
    trust.revoke(gw.keyid, Revocation(at_ns=1_700_000_000_000_000_000))
    with pytest.raises(ProtocolError) as exc:
        receipts.open_receipt(raw, receipts.DOCK_TYPE, trust)
    assert exc.value.code == errors.KEY_REVOKED


@pytest.mark.parametrize(
    "over",
    [
        {"first_seq": 5},  # last before first
        {"head": "xyz"},
        {"segments": [{"seq": 9, "manifest": H, "media_sha256": H, "result": "ok"}]},
        {"segments": [{"seq": 3, "manifest": H, "media_sha256": H, "result": "fine"}]},
        {"clock_offset_ns": 1.5},
        {"gateway": ""},
    ],
)
def test_bad_dock_receipts_are_refused_at_issue(keys, over: dict[str, object]) -> None:
    gw, _, _ = keys
    with pytest.raises(ProtocolError) as exc:
        receipts.issue(gw, receipts.DOCK_TYPE, dock_fields(**over))
    assert exc.value.code == errors.RECEIPT_MALFORMED


def test_quarantined_server_receipt_needs_findings(keys) -> None:
    _, srv, _ = keys
    with pytest.raises(ProtocolError):
        receipts.issue(srv, receipts.SERVER_TYPE, server_fields(status="quarantined"))
    raw = receipts.issue(srv, receipts.SERVER_TYPE,
                         server_fields(status="quarantined", findings=[errors.SIGNATURE_BAD]))
    assert raw
