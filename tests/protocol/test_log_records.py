"""Server log records: custody events, enrollment changes, tombstones, and naming log entries."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from protocol import canonical, errors, log_records, manifest, receipts, signatures
from protocol.errors import ProtocolError
from protocol.log_records import CUSTODY_TYPE, ENROLLMENT_TYPE, TOMBSTONE_TYPE
from protocol.trust import Revocation, TrustList, trusted_key
from tests.doc_examples import example, example_bytes

H = "ab" * 32
H2 = "cd" * 32
AT = 1_764_100_000_000_000_000
ENROLLED_AT = 1_763_990_000_000_000_000
SERVER = "SRV-01"


@pytest.fixture
def server() -> signatures.KeySigner:
    return signatures.KeySigner(signatures.generate())


@pytest.fixture
def trust(server: signatures.KeySigner) -> TrustList:
    return TrustList([trusted_key(server.public_key(), "server", SERVER)])


def device_key() -> signatures.KeySigner:
    return signatures.KeySigner(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))))


def custody(**over: object) -> dict[str, Any]:
    fields: dict[str, Any] = {"server": SERVER, "action": "export-package", "at_ns": AT, "actor": "user:17",
                              "audit_id": 4711, "reason_sha256": hashlib.sha256(b"court request 2025-118").hexdigest(),
                              "case": "CASE-2025-0042", "subjects": [H, H2]}
    return {**fields, **over}


def enrollment(**over: object) -> dict[str, Any]:
    key = device_key()
    fields: dict[str, Any] = {
        "server": SERVER, "action": "enroll", "at_ns": ENROLLED_AT, "actor": "user:3", "role": "device",
        "owner": "REC-0001", "keyid": key.keyid, "alg": key.alg,
        "public_key": base64.b64encode(signatures.spki_der(key.public_key())).decode("ascii"), "revocation": None,
    }
    return {**fields, **over}


def revocation(after_seq: int | None = 41, **over: object) -> dict[str, Any]:
    return enrollment(action="revoke", revocation={"at_ns": AT - 10, "after_seq": after_seq}, **over)


def tombstone(**over: object) -> dict[str, Any]:
    fields: dict[str, Any] = {"server": SERVER, "at_ns": AT, "actor": "system:retention", "device": "REC-0001",
                              "seq": 1, "manifest": H, "media_sha256": H2, "reason": "retention", "policy_days": 90}
    return {**fields, **over}


BUILDERS = {CUSTODY_TYPE: custody, ENROLLMENT_TYPE: enrollment, TOMBSTONE_TYPE: tombstone}


@pytest.mark.parametrize("type_", list(BUILDERS))
def test_round_trip(type_: str, server: signatures.KeySigner, trust: TrustList) -> None:
    raw = log_records.issue(server, type_, BUILDERS[type_]())
    record = log_records.open_record(raw, type_, trust)
    assert record.fields == {"v": 1, **BUILDERS[type_]()}
    assert record.envelope.raw == raw and record["server"] == SERVER
    assert log_records.entry_kind(raw) == log_records.ENTRY_KINDS[type_]


def test_revocation_and_custody_variants_round_trip(server: signatures.KeySigner, trust: TrustList) -> None:
    many = [f"{i:064x}" for i in range(log_records.MAX_SUBJECTS)]
    for fields in (revocation(), revocation(None), revocation(None, role="gateway", owner="GW-01"),
                   custody(action="view", case=None, subjects=[H]), custody(subjects=many)):
        type_ = ENROLLMENT_TYPE if "role" in fields else CUSTODY_TYPE
        assert log_records.open_record(log_records.issue(server, type_, fields), type_, trust).fields["v"] == 1


MALFORMED = [
    (CUSTODY_TYPE, {"v": 2}),
    (CUSTODY_TYPE, {"v": True}),
    (CUSTODY_TYPE, {"server": "bad id"}),
    (CUSTODY_TYPE, {"action": "delete"}),
    (CUSTODY_TYPE, {"at_ns": -1}),
    (CUSTODY_TYPE, {"at_ns": "1764100000000000000"}),
    (CUSTODY_TYPE, {"actor": "Zhang Wei"}),
    (CUSTODY_TYPE, {"actor": "u" * 65}),
    (CUSTODY_TYPE, {"actor": ""}),
    (CUSTODY_TYPE, {"audit_id": None}),
    (CUSTODY_TYPE, {"audit_id": -5}),
    (CUSTODY_TYPE, {"reason_sha256": "AB" * 32}),
    (CUSTODY_TYPE, {"reason_sha256": "court request"}),
    (CUSTODY_TYPE, {"case": ""}),
    (CUSTODY_TYPE, {"case": "c" * 65}),
    (CUSTODY_TYPE, {"case": 42}),
    (CUSTODY_TYPE, {"action": "case-link", "case": None}),
    (CUSTODY_TYPE, {"action": "case-unlink", "case": None}),
    (CUSTODY_TYPE, {"subjects": []}),
    (CUSTODY_TYPE, {"subjects": [f"{i:064x}" for i in range(257)]}),
    (CUSTODY_TYPE, {"subjects": [H, H]}),
    (CUSTODY_TYPE, {"subjects": ["ab" * 31]}),
    (CUSTODY_TYPE, {"subjects": H}),
    (CUSTODY_TYPE, {"extra": 1}),
    (ENROLLMENT_TYPE, {"action": "suspend"}),
    (ENROLLMENT_TYPE, {"role": "officer"}),
    (ENROLLMENT_TYPE, {"owner": "REC 0001"}),
    (ENROLLMENT_TYPE, {"keyid": H}),
    (ENROLLMENT_TYPE, {"keyid": "nothex"}),
    (ENROLLMENT_TYPE, {"alg": "es256"}),
    (ENROLLMENT_TYPE, {"alg": "Ed25519"}),
    (ENROLLMENT_TYPE, {"public_key": "not base64!"}),
    (ENROLLMENT_TYPE, {"public_key": base64.b64encode(b"not a key").decode()}),
    (ENROLLMENT_TYPE, {"public_key": base64.b64encode(device_key().public_key().public_bytes_raw()).decode()}),
    (ENROLLMENT_TYPE, {"revocation": {"at_ns": AT, "after_seq": None}}),
    (ENROLLMENT_TYPE, {"actor": "user 3"}),
    (ENROLLMENT_TYPE, {"server": None}),
    (TOMBSTONE_TYPE, {"device": "../REC"}),
    (TOMBSTONE_TYPE, {"seq": -1}),
    (TOMBSTONE_TYPE, {"manifest": None}),
    (TOMBSTONE_TYPE, {"media_sha256": None}),
    (TOMBSTONE_TYPE, {"reason": "court-order"}),
    (TOMBSTONE_TYPE, {"policy_days": 0}),
    (TOMBSTONE_TYPE, {"policy_days": 1.5}),
    (TOMBSTONE_TYPE, {"actor": None}),
]


@pytest.mark.parametrize(("type_", "over"), MALFORMED)
def test_malformed_fields_are_refused(type_: str, over: dict[str, object], server: signatures.KeySigner) -> None:
    fields = BUILDERS[type_](**over)
    with pytest.raises(ProtocolError) as exc:
        log_records.issue(server, type_, fields)
    assert exc.value.code == errors.RECORD_MALFORMED


@pytest.mark.parametrize("field", ["server", "at_ns", "actor", "subjects", "audit_id"])
def test_missing_field_is_refused(field: str, server: signatures.KeySigner) -> None:
    fields = custody()
    del fields[field]
    with pytest.raises(ProtocolError) as exc:
        log_records.issue(server, CUSTODY_TYPE, fields)
    assert exc.value.code == errors.RECORD_MALFORMED


@pytest.mark.parametrize(
    "revoked",
    [None, {"at_ns": AT}, {"at_ns": AT, "after_seq": 1, "reason": "lost"}, {"at_ns": -1, "after_seq": None},
     {"at_ns": AT, "after_seq": -1}],
)
def test_malformed_revocations_are_refused(revoked: object, server: signatures.KeySigner) -> None:
    with pytest.raises(ProtocolError) as exc:
        log_records.issue(server, ENROLLMENT_TYPE, enrollment(action="revoke", revocation=revoked))
    assert exc.value.code == errors.RECORD_MALFORMED


def test_after_seq_is_for_device_keys_only(server: signatures.KeySigner) -> None:
    with pytest.raises(ProtocolError) as exc:
        log_records.issue(server, ENROLLMENT_TYPE, revocation(7, role="gateway", owner="GW-01"))
    assert exc.value.code == errors.RECORD_MALFORMED


def signed_payload(signer: signatures.Signer, type_: str, payload: bytes) -> bytes:
    return signatures.seal(signer, type_, payload)


def test_payload_that_is_not_canonical_is_malformed(server: signatures.KeySigner, trust: TrustList) -> None:
    raw = signed_payload(server, TOMBSTONE_TYPE, b'{"v": 1}')
    with pytest.raises(ProtocolError) as exc:
        log_records.open_record(raw, TOMBSTONE_TYPE, trust)
    assert exc.value.code == errors.RECORD_MALFORMED


def test_wrong_type_role_owner_and_unknown_key(server: signatures.KeySigner, trust: TrustList) -> None:
    raw = log_records.issue(server, CUSTODY_TYPE, custody())
    with pytest.raises(ProtocolError) as exc:
        log_records.open_record(raw, TOMBSTONE_TYPE, trust)
    assert exc.value.code == errors.ENVELOPE_WRONG_TYPE
    # Another server's key may not speak for SRV-01.
    with pytest.raises(ProtocolError) as exc:
        log_records.open_record(log_records.issue(server, CUSTODY_TYPE, custody(server="SRV-02")), CUSTODY_TYPE, trust)
    assert exc.value.code == errors.KEY_WRONG_OWNER
    # A gateway key owned by the same id is not a server key.
    gateway = signatures.KeySigner(signatures.generate(signatures.ES256))
    trust.add(trusted_key(gateway.public_key(), "gateway", SERVER))
    with pytest.raises(ProtocolError) as exc:
        log_records.open_record(log_records.issue(gateway, TOMBSTONE_TYPE, tombstone()), TOMBSTONE_TYPE, trust)
    assert exc.value.code == errors.KEY_WRONG_OWNER
    with pytest.raises(ProtocolError) as exc:
        log_records.open_record(raw, CUSTODY_TYPE, TrustList())
    assert exc.value.code == errors.KEY_UNKNOWN


def test_bad_signature_and_revoked_server_key(server: signatures.KeySigner, trust: TrustList) -> None:
    raw = log_records.issue(server, CUSTODY_TYPE, custody())
    env = canonical.decode(raw)
    env["sig"] = base64.b64encode(bytes(64)).decode()
    with pytest.raises(ProtocolError) as exc:
        log_records.open_record(canonical.encode(env), CUSTODY_TYPE, trust)
    assert exc.value.code == errors.SIGNATURE_BAD
    trust.revoke(server.keyid, Revocation(at_ns=AT))
    with pytest.raises(ProtocolError) as exc:
        log_records.open_record(raw, CUSTODY_TYPE, trust)
    assert exc.value.code == errors.KEY_REVOKED


def test_entry_kind_names_every_log_entry(server: signatures.KeySigner) -> None:
    m = manifest.parse(doc_payload("manifest-payload"))
    assert log_records.entry_kind(signatures.seal(device_key(), manifest.TYPE, m.payload)) == "manifest"
    dock = signatures.seal(server, receipts.DOCK_TYPE, b"{}")  # named, not verified
    assert log_records.entry_kind(dock) == "dock-receipt"
    assert log_records.entry_kind(signatures.seal(server, receipts.SERVER_TYPE, b"{}")) == log_records.UNKNOWN
    assert log_records.entry_kind(b"not an envelope") == log_records.UNKNOWN
    assert log_records.entry_kind(b"") == log_records.UNKNOWN


def opened(server: signatures.KeySigner, trust: TrustList, fields: dict[str, Any]) -> log_records.Record:
    return log_records.open_record(log_records.issue(server, ENROLLMENT_TYPE, fields), ENROLLMENT_TYPE, trust)


def test_trust_list_rebuilt_from_enrollments(server: signatures.KeySigner, trust: TrustList) -> None:
    device = device_key()
    m = manifest.parse(doc_payload("manifest-payload"))
    envelope = signatures.open_envelope(signatures.seal(device, manifest.TYPE, m.payload), manifest.TYPE)
    with pytest.raises(ProtocolError):
        trust.check_envelope(envelope, "device", "REC-0001")
    log_records.apply_enrollment(trust, opened(server, trust, enrollment()))
    assert trust.check_envelope(envelope, "device", "REC-0001").keyid == device.keyid
    log_records.apply_enrollment(trust, opened(server, trust, enrollment()))  # replaying is a no-op
    log_records.apply_enrollment(trust, opened(server, trust, revocation(41)))
    key = trust.get(device.keyid)
    assert key is not None and key.revoked is not None and key.revoked.after_seq == 41
    assert key.usage_finding(AT, 42) == errors.KEY_REVOKED and key.usage_finding(AT, 41) is None
    log_records.apply_enrollment(trust, opened(server, trust, revocation(41)))
    log_records.apply_enrollment(trust, opened(server, trust, enrollment()))  # an older enroll, replayed


def test_revocation_of_a_key_never_enrolled_adds_it_revoked(server: signatures.KeySigner, trust: TrustList) -> None:
    log_records.apply_enrollment(trust, opened(server, trust, revocation(None)))
    key = trust.get(device_key().keyid)
    assert key is not None and key.owner == "REC-0001" and key.revoked == Revocation(AT - 10, None)


def test_conflicting_enrollments(server: signatures.KeySigner, trust: TrustList) -> None:
    log_records.apply_enrollment(trust, opened(server, trust, revocation(41)))
    for fields in (revocation(40), enrollment(owner="REC-0002"), enrollment(role="gateway")):
        with pytest.raises(ProtocolError) as exc:
            log_records.apply_enrollment(trust, opened(server, trust, fields))
        assert exc.value.code == errors.ENROLLMENT_CONFLICT
    with pytest.raises(ValueError, match="not an enrollment"):
        log_records.apply_enrollment(trust, log_records.open_record(
            log_records.issue(server, TOMBSTONE_TYPE, tombstone()), TOMBSTONE_TYPE, trust))


# The worked examples of docs/protocol.md §9, "Server records".

def doc_payload(name: str) -> bytes:
    return example(name).rstrip("\n").encode()


def test_custody_example() -> None:
    payload = doc_payload("custody-payload")
    subject = example_bytes("manifest-hash").hex()
    salted = example_bytes("custody-salt") + example("custody-reason").rstrip("\n").encode("utf-8")
    reason = hashlib.sha256(salted).hexdigest()
    assert payload == canonical.encode({"v": 1, **custody(subjects=[subject], reason_sha256=reason)})
    assert log_records.check_custody(canonical.decode(payload))


def test_enrollment_example() -> None:
    payload = doc_payload("enrollment-payload")
    key = device_key()
    assert payload == canonical.encode({"v": 1, **enrollment()})
    fields = log_records.check_enrollment(canonical.decode(payload))
    assert base64.b64decode(fields["public_key"]) == example_bytes("example-key-spki")
    assert fields["keyid"] == example("example-keyid").strip() == key.keyid


def test_tombstone_example() -> None:
    payload = doc_payload("tombstone-payload")
    m = manifest.parse(doc_payload("manifest-payload"))
    fields = tombstone(manifest=m.hash.hex(), media_sha256=m.media["sha256"], at_ns=1_771_776_000_000_000_000)
    assert payload == canonical.encode({"v": 1, **fields})
    assert log_records.check_tombstone(canonical.decode(payload))
