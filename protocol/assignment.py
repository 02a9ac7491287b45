"""Officer assignment: which officer wears which recorder, signed by a gateway at check-out.

The recorder keeps the envelope, shows the officer number in its overlay and
names the assignment in every manifest as `{officer, ref}`, where `ref` is the
SHA-256 of the envelope bytes it holds.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from protocol import canonical, errors, signatures
from protocol.errors import ProtocolError
from protocol.fields import IDENTIFIER, Checker
from protocol.trust import TrustList

TYPE = "application/vnd.liuhen.assignment.v1+json"
VERSION = 1

_c = Checker(errors.ASSIGNMENT_MALFORMED)
_FIELDS = frozenset({"v", "gateway", "device", "officer", "issued_ns"})
# GA/T 947 ZFY_INFO lengths: officer number 6, name 32, unit code 12, unit name 32.
_OFFICER_FIELDS = {"number": 6, "name": 32, "unit_code": 12, "unit_name": 32}


@dataclass(frozen=True)
class Assignment:
    fields: dict[str, Any]
    envelope: bytes

    @property
    def ref(self) -> str:
        return hashlib.sha256(self.envelope).hexdigest()

    @property
    def officer_number(self) -> str:
        return self.fields["officer"]["number"]

    def manifest_field(self) -> dict[str, str]:
        return {"officer": self.officer_number, "ref": self.ref}


def check(f: object) -> dict[str, Any]:
    f = _c.exact(f, _FIELDS, "assignment")
    if f["v"] != VERSION or isinstance(f["v"], bool):
        raise _c.fail(f"unsupported assignment version {f['v']!r}")
    _c.str(f["gateway"], "gateway", IDENTIFIER)
    _c.str(f["device"], "device", IDENTIFIER)
    officer = _c.exact(f["officer"], frozenset(_OFFICER_FIELDS), "officer")
    for name, max_len in _OFFICER_FIELDS.items():
        _c.str(officer[name], f"officer.{name}", max_len=max_len)
    _c.int(f["issued_ns"], "issued_ns")
    return f


def issue(signer: signatures.Signer, fields: dict[str, Any]) -> bytes:
    fields = {"v": VERSION, **fields}
    check(fields)
    return signatures.seal(signer, TYPE, canonical.encode(fields))


def open_assignment(raw: bytes, trust: TrustList, device: str) -> Assignment:
    """Verify an assignment for `device`, signed by an enrolled gateway."""
    env = signatures.open_envelope(raw, TYPE)
    try:
        fields = check(canonical.decode(env.payload))
    except canonical.CanonicalError as exc:
        raise ProtocolError(errors.ASSIGNMENT_MALFORMED, f"assignment payload: {exc}") from exc
    trust.check_envelope(env, "gateway", fields["gateway"])
    if fields["device"] != device:
        raise ProtocolError(errors.ASSIGNMENT_MALFORMED, f"assignment is for {fields['device']}, not {device}")
    return Assignment(fields, raw)
