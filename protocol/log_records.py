"""The case server's own log records: custody events, enrollment changes and tombstones.

Each is a server-signed envelope (protocol.signatures) appended to the public
transparency log, so anyone can see who handled which footage, which keys were
enrolled or revoked, and which media was deleted by retention, without trusting
the server's private database. The log is public: records name accounts by
opaque ids and commit to reasons by hash, never by name or text. See
docs/protocol.md §9, "Server records".
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from protocol import errors, manifest, receipts, signatures
from protocol.errors import ProtocolError
from protocol.fields import HEX64, IDENTIFIER, Checker
from protocol.receipts import SignedKind, SignedRecord, check_version
from protocol.trust import ROLES, Revocation, TrustList, trusted_key

CUSTODY_TYPE = "application/vnd.liuhen.custody.v1+json"
ENROLLMENT_TYPE = "application/vnd.liuhen.enrollment.v1+json"
TOMBSTONE_TYPE = "application/vnd.liuhen.tombstone.v1+json"

CUSTODY_ACTIONS = ("case-link", "case-unlink", "hold", "release", "view", "download", "export-package", "export-mp4")
# Actions that are about one case and so must name it.
CASE_ACTIONS = ("case-link", "case-unlink")
ENROLL, REVOKE = "enroll", "revoke"
RETENTION = "retention"
# Every custody event must fit one C2SP entry bundle slot (65535 bytes); the server splits bigger accesses.
MAX_SUBJECTS = 256
MAX_ACTOR = 64
MAX_CASE = 64
# An account id such as "user:17" or "system:retention": no spaces, so no room for a person's name.
ACTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

# What a log entry is, by envelope type; `entry_kind` names anything else UNKNOWN.
ENTRY_KINDS = {
    manifest.TYPE: "manifest",
    receipts.DOCK_TYPE: "dock-receipt",
    CUSTODY_TYPE: "custody",
    ENROLLMENT_TYPE: "enrollment",
    TOMBSTONE_TYPE: "tombstone",
}
UNKNOWN = "unknown"

Record = SignedRecord

_c = Checker(errors.RECORD_MALFORMED)
_COMMON_FIELDS = frozenset({"v", "server", "at_ns", "actor"})
_CUSTODY_FIELDS = _COMMON_FIELDS | {"action", "audit_id", "reason_sha256", "case", "subjects"}
_ENROLLMENT_FIELDS = _COMMON_FIELDS | {"action", "role", "owner", "keyid", "alg", "public_key", "revocation"}
_REVOCATION_FIELDS = frozenset({"at_ns", "after_seq"})
_TOMBSTONE_FIELDS = _COMMON_FIELDS | {"device", "seq", "manifest", "media_sha256", "reason", "policy_days"}


def _check_common(f: object, allowed: frozenset[str], what: str) -> dict[str, Any]:
    f = _c.exact(f, allowed, what)
    check_version(_c, f, what)
    _c.str(f["server"], "server", IDENTIFIER)
    _c.int(f["at_ns"], "at_ns")
    _c.str(f["actor"], "actor", ACTOR, MAX_ACTOR)
    return f


def _check_choice(value: object, where: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _c.fail(f"{where} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def check_custody(f: object) -> dict[str, Any]:
    f = _check_common(f, _CUSTODY_FIELDS, "custody event")
    action = _check_choice(f["action"], "action", CUSTODY_ACTIONS)
    _c.int(f["audit_id"], "audit_id")
    _c.str(f["reason_sha256"], "reason_sha256", HEX64)
    if f["case"] is not None:
        _c.str(f["case"], "case", max_len=MAX_CASE)
    elif action in CASE_ACTIONS:
        raise _c.fail(f"a {action} event must name its case")
    subjects = _c.list(f["subjects"], "subjects", MAX_SUBJECTS)
    if not subjects:
        raise _c.fail("subjects must name at least one manifest")
    for i, subject in enumerate(subjects):
        _c.str(subject, f"subjects[{i}]", HEX64)
    if len(set(subjects)) != len(subjects):
        raise _c.fail("subjects must not repeat a manifest")
    return f


def _public_key(f: dict[str, Any]) -> signatures.PublicKeyObject:
    """The key the record enrolls or revokes, checked against its keyid and alg."""
    text = _c.str(f["public_key"], "public_key", max_len=1024)
    try:
        spki = base64.b64decode(text, validate=True)
        key = signatures.public_key_from_spki(spki)
    except (binascii.Error, ValueError) as exc:
        raise _c.fail(f"public_key is not base64 of a usable DER SubjectPublicKeyInfo: {exc}") from exc
    if base64.b64encode(spki).decode("ascii") != text:
        raise _c.fail("public_key is not canonical base64")
    if signatures.key_id(key) != f["keyid"] or signatures.algorithm_of(key) != f["alg"]:
        raise _c.fail("keyid and alg do not match public_key")
    return key


def check_enrollment(f: object) -> dict[str, Any]:
    f = _check_common(f, _ENROLLMENT_FIELDS, "enrollment change")
    action = _check_choice(f["action"], "action", (ENROLL, REVOKE))
    role = _check_choice(f["role"], "role", ROLES)
    _c.str(f["owner"], "owner", IDENTIFIER)
    _c.str(f["keyid"], "keyid", HEX64)
    _check_choice(f["alg"], "alg", signatures.ALGORITHMS)
    _public_key(f)
    revocation = f["revocation"]
    if action == ENROLL:
        if revocation is not None:
            raise _c.fail("an enroll record has revocation null")
        return f
    revocation = _c.exact(revocation, _REVOCATION_FIELDS, "revocation")
    _c.int(revocation["at_ns"], "revocation.at_ns")
    if revocation["after_seq"] is not None:
        # Only devices number what they sign, so only a device key can be revoked after a sequence number.
        if role != "device":
            raise _c.fail("revocation.after_seq applies to device keys only")
        _c.int(revocation["after_seq"], "revocation.after_seq")
    return f


def check_tombstone(f: object) -> dict[str, Any]:
    f = _check_common(f, _TOMBSTONE_FIELDS, "tombstone")
    _c.str(f["device"], "device", IDENTIFIER)
    _c.int(f["seq"], "seq")
    _c.str(f["manifest"], "manifest", HEX64)
    _c.str(f["media_sha256"], "media_sha256", HEX64)
    _check_choice(f["reason"], "reason", (RETENTION,))
    _c.int(f["policy_days"], "policy_days", 1)
    return f


_KINDS = {
    k.type: k
    for k in (
        SignedKind(CUSTODY_TYPE, check_custody, errors.RECORD_MALFORMED, "server", "server", "at_ns"),
        SignedKind(ENROLLMENT_TYPE, check_enrollment, errors.RECORD_MALFORMED, "server", "server", "at_ns"),
        SignedKind(TOMBSTONE_TYPE, check_tombstone, errors.RECORD_MALFORMED, "server", "server", "at_ns"),
    )
}


def issue(signer: signatures.Signer, type_: str, fields: dict[str, Any]) -> bytes:
    """Validate a server record's fields (`v` is added) and return the signed envelope bytes."""
    return _KINDS[type_].issue(signer, fields)


def open_record(raw: bytes, type_: str, trust: TrustList) -> Record:
    """Parse and verify a server record of the given type: signed by a `server` key owned by `server` and
    usable at `at_ns`; raise ProtocolError with a finding code."""
    return _KINDS[type_].open(raw, trust)


def entry_kind(entry: bytes) -> str:
    """What a log entry is (a name from ENTRY_KINDS, or UNKNOWN), from its envelope type; nothing is verified."""
    try:
        env = signatures.open_envelope(entry)
    except ProtocolError:
        return UNKNOWN
    return ENTRY_KINDS.get(env.type, UNKNOWN)


def apply_enrollment(trust: TrustList, record: Record) -> None:
    """Bring `trust` up to date with a verified enrollment change, so that a monitor replaying the log's
    enrollment records in order rebuilds the server's trust list.

    Replaying a change the list already holds is a no-op, so the list may start from a trust file that
    already has some of the keys. A revocation of a key never enrolled adds the key, revoked: the record
    carries the key. Raises ProtocolError (ENROLLMENT_CONFLICT) when the change contradicts the list.
    """
    if record.envelope.type != ENROLLMENT_TYPE:
        raise ValueError(f"not an enrollment record: {record.envelope.type}")
    f = record.fields
    wanted = trusted_key(_public_key(f), f["role"], f["owner"])
    held = trust.get(f["keyid"])
    if held is None:
        trust.add(wanted)
        held = wanted
    elif (held.role, held.owner) != (wanted.role, wanted.owner):
        raise ProtocolError(errors.ENROLLMENT_CONFLICT,
                            f"key {f['keyid'][:16]}… is {held.role} {held.owner}'s, not {f['role']} {f['owner']}'s")
    if f["action"] == ENROLL:
        return
    revocation = Revocation(f["revocation"]["at_ns"], f["revocation"]["after_seq"])
    if held.revoked is None:
        trust.revoke(f["keyid"], revocation)
    elif (held.revoked.at_ns, held.revoked.after_seq) != (revocation.at_ns, revocation.after_seq):
        raise ProtocolError(errors.ENROLLMENT_CONFLICT, f"key {f['keyid'][:16]}… is already revoked differently")
