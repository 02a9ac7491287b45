"""Receipts: the signed promises that let a holder free space.

A *dock receipt* is signed by a gateway when segments are safely in its spool;
only then may the recorder delete them. A *server receipt* is signed by the
server when a segment is stored and appended to the transparency log; only then
may the gateway delete its copy. Both are signed envelopes (protocol.signatures)
with their own type strings, so neither can pass for the other. `SignedKind` is
the issue/verify pattern they share with the server's log records
(protocol.log_records).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol import canonical, errors, signatures
from protocol.errors import ProtocolError
from protocol.fields import HEX64, IDENTIFIER, INT64_MAX, Checker
from protocol.trust import TrustList

DOCK_TYPE = "application/vnd.liuhen.dock-receipt.v1+json"
SERVER_TYPE = "application/vnd.liuhen.server-receipt.v1+json"
VERSION = 1
RESULT_OK = "ok"
STORED = "stored"
QUARANTINED = "quarantined"

_c = Checker(errors.RECEIPT_MALFORMED)
_DOCK_FIELDS = frozenset(
    {"v", "gateway", "device", "first_seq", "last_seq", "head", "received_ns", "clock_offset_ns", "segments"}
)
_SEGMENT_FIELDS = frozenset({"seq", "manifest", "media_sha256", "result"})
_SERVER_FIELDS = frozenset(
    {"v", "server", "gateway", "device", "seq", "manifest", "media_sha256", "received_ns", "log_index",
     "status", "findings"}
)


@dataclass(frozen=True)
class SignedRecord:
    """A verified receipt or server record: its fields and the envelope it came in."""

    fields: dict[str, Any]
    envelope: signatures.Envelope

    def __getitem__(self, name: str) -> Any:
        return self.fields[name]


Receipt = SignedRecord


@dataclass(frozen=True)
class SignedKind:
    """One type of gateway- or server-signed structure: how its fields are checked, which field names the
    signer (of `role`), and at which field's time the signing key must have been usable."""

    type: str
    check: Callable[[object], dict[str, Any]]
    malformed: str
    role: str
    owner_field: str
    time_field: str

    def issue(self, signer: signatures.Signer, fields: dict[str, Any]) -> bytes:
        """Validate the fields (with `v` added) and return the signed envelope bytes."""
        fields = {"v": VERSION, **fields}
        self.check(fields)
        return signatures.seal(signer, self.type, canonical.encode(fields))

    def open(self, raw: bytes, trust: TrustList) -> SignedRecord:
        """Parse and verify an envelope of this type; raise ProtocolError with a finding code."""
        env = signatures.open_envelope(raw, self.type)
        try:
            fields = canonical.decode(env.payload)
        except canonical.CanonicalError as exc:
            raise ProtocolError(self.malformed, f"{self.type} payload: {exc}") from exc
        fields = self.check(fields)
        key = trust.check_envelope(env, self.role, fields[self.owner_field])
        code = key.usage_finding(fields[self.time_field])
        if code is not None:
            raise ProtocolError(code, f"key of {key.owner} may not sign at {fields[self.time_field]}")
        return SignedRecord(fields, env)


def check_version(c: Checker, f: dict[str, Any], what: str) -> None:
    if f["v"] != VERSION or isinstance(f["v"], bool):
        raise c.fail(f"unsupported {what} version {f['v']!r}")


def _optional_hash(value: object, where: str) -> None:
    if value is not None:
        _c.str(value, where, HEX64)


def _check_result(value: object, where: str) -> None:
    if value != RESULT_OK and value not in errors.DESCRIPTIONS:
        raise _c.fail(f"{where} must be {RESULT_OK!r} or a finding code, not {value!r}")


def check_dock(f: object) -> dict[str, Any]:
    f = _c.exact(f, _DOCK_FIELDS, "dock receipt")
    check_version(_c, f, "receipt")
    _c.str(f["gateway"], "gateway", IDENTIFIER)
    _c.str(f["device"], "device", IDENTIFIER)
    first, last = _c.int(f["first_seq"], "first_seq"), _c.int(f["last_seq"], "last_seq")
    if last < first:
        raise _c.fail("last_seq is before first_seq")
    _c.str(f["head"], "head", HEX64)
    _c.int(f["received_ns"], "received_ns")
    _c.int(f["clock_offset_ns"], "clock_offset_ns", -INT64_MAX, INT64_MAX)
    segments = _c.list(f["segments"], "segments")
    for i, s in enumerate(segments):
        s = _c.exact(s, _SEGMENT_FIELDS, f"segments[{i}]")
        seq = _c.int(s["seq"], f"segments[{i}].seq")
        if not first <= seq <= last:
            raise _c.fail(f"segments[{i}].seq {seq} is outside first_seq..last_seq")
        _c.str(s["manifest"], f"segments[{i}].manifest", HEX64)
        _optional_hash(s["media_sha256"], f"segments[{i}].media_sha256")
        _check_result(s["result"], f"segments[{i}].result")
    return f


def check_server(f: object) -> dict[str, Any]:
    f = _c.exact(f, _SERVER_FIELDS, "server receipt")
    check_version(_c, f, "receipt")
    _c.str(f["server"], "server", IDENTIFIER)
    _c.str(f["gateway"], "gateway", IDENTIFIER)
    _c.str(f["device"], "device", IDENTIFIER)
    _c.int(f["seq"], "seq")
    _c.str(f["manifest"], "manifest", HEX64)
    _optional_hash(f["media_sha256"], "media_sha256")
    _c.int(f["received_ns"], "received_ns")
    _c.int(f["log_index"], "log_index")
    if f["status"] not in (STORED, QUARANTINED):
        raise _c.fail(f"status must be {STORED!r} or {QUARANTINED!r}")
    for i, code in enumerate(_c.list(f["findings"], "findings", 100)):
        _check_result(code, f"findings[{i}]")
    if (f["status"] == STORED) != (not f["findings"]):
        raise _c.fail("a stored segment has no findings; a quarantined one has at least one")
    return f


_KINDS = {
    k.type: k
    for k in (
        SignedKind(DOCK_TYPE, check_dock, errors.RECEIPT_MALFORMED, "gateway", "gateway", "received_ns"),
        SignedKind(SERVER_TYPE, check_server, errors.RECEIPT_MALFORMED, "server", "server", "received_ns"),
    )
}


def issue(signer: signatures.Signer, type_: str, fields: dict[str, Any]) -> bytes:
    """Validate receipt fields and return the signed envelope bytes."""
    return _KINDS[type_].issue(signer, fields)


def open_receipt(raw: bytes, type_: str, trust: TrustList) -> Receipt:
    """Parse and verify a receipt of the given type; raise ProtocolError with a finding code."""
    return _KINDS[type_].open(raw, trust)
