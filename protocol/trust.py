"""Trust lists: which keys belong to which device, gateway or server, and when.

A trust list is a JSON document (written by `liuhen keys`, readable and
editable by people, so pretty-printed rather than canonical):

    {"liuhen_trust": 1,
     "keys": [{"keyid": "<hex>", "alg": "ed25519", "spki": "<base64 DER>",
               "role": "device", "owner": "REC-0001",
               "valid_from_ns": null, "valid_until_ns": null,
               "revoked": {"at_ns": 1700000000000000000, "after_seq": 41, "reason": "lost"}}]}

Revocation keeps earlier signatures verifiable: a key revoked with `after_seq`
rejects device manifests with a higher sequence number (the sequence number is
the device's order and was committed in receipts before the revocation); a key
revoked with only `at_ns` rejects structures claiming a later time.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from dataclasses import dataclass, field

from protocol import errors, signatures
from protocol.errors import ProtocolError

FORMAT_VERSION = 1
ROLES = ("device", "gateway", "server")


class TrustFileError(ValueError):
    """The trust file itself is unusable; the message says where and why."""


@dataclass(frozen=True)
class Revocation:
    at_ns: int
    after_seq: int | None = None
    reason: str = ""

    def to_json(self) -> dict[str, object]:
        return {"at_ns": self.at_ns, "after_seq": self.after_seq, "reason": self.reason}


@dataclass(frozen=True)
class TrustedKey:
    keyid: str
    alg: str
    spki: bytes
    role: str
    owner: str
    public_key: signatures.PublicKeyObject = field(compare=False, repr=False)
    valid_from_ns: int | None = None
    valid_until_ns: int | None = None
    revoked: Revocation | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "keyid": self.keyid,
            "alg": self.alg,
            "spki": base64.b64encode(self.spki).decode("ascii"),
            "role": self.role,
            "owner": self.owner,
            "valid_from_ns": self.valid_from_ns,
            "valid_until_ns": self.valid_until_ns,
            "revoked": self.revoked.to_json() if self.revoked else None,
        }

    def usage_finding(self, time_ns: int | None, seq: int | None = None) -> str | None:
        """The finding code if this key may not have signed at that time/seq, else None."""
        if self.revoked is not None:
            after_seq = self.revoked.after_seq
            if after_seq is not None and seq is not None:
                if seq > after_seq:
                    return errors.KEY_REVOKED
            elif time_ns is None or time_ns >= self.revoked.at_ns:
                return errors.KEY_REVOKED
        if time_ns is not None:
            if self.valid_from_ns is not None and time_ns < self.valid_from_ns:
                return errors.KEY_OUTSIDE_VALIDITY
            if self.valid_until_ns is not None and time_ns > self.valid_until_ns:
                return errors.KEY_OUTSIDE_VALIDITY
        return None


def trusted_key(
    public_key: signatures.PublicKeyObject,
    role: str,
    owner: str,
    valid_from_ns: int | None = None,
    valid_until_ns: int | None = None,
) -> TrustedKey:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not owner:
        raise ValueError("owner (device, gateway or server id) must not be empty")
    return TrustedKey(
        keyid=signatures.key_id(public_key),
        alg=signatures.algorithm_of(public_key),
        spki=signatures.spki_der(public_key),
        role=role,
        owner=owner,
        public_key=public_key,
        valid_from_ns=valid_from_ns,
        valid_until_ns=valid_until_ns,
    )


class TrustList:
    def __init__(self, keys: list[TrustedKey] | None = None) -> None:
        self._keys: dict[str, TrustedKey] = {}
        for key in keys or []:
            self.add(key)

    def add(self, key: TrustedKey) -> None:
        if key.keyid in self._keys:
            raise ValueError(f"key {key.keyid[:16]}… is already in the trust list")
        self._keys[key.keyid] = key

    def get(self, keyid: str) -> TrustedKey | None:
        return self._keys.get(keyid)

    def entries(self) -> list[TrustedKey]:
        return list(self._keys.values())

    def revoke(self, keyid: str, revocation: Revocation) -> None:
        key = self._keys.get(keyid)
        if key is None:
            raise ValueError(f"no key {keyid} in the trust list")
        if key.revoked is not None:
            raise ValueError(f"key {keyid[:16]}… is already revoked")
        self._keys[keyid] = dataclasses.replace(key, revoked=revocation)

    def to_bytes(self) -> bytes:
        doc = {"liuhen_trust": FORMAT_VERSION, "keys": [k.to_json() for k in self._keys.values()]}
        return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")

    def check_envelope(self, envelope: signatures.Envelope, role: str, owner: str | None) -> TrustedKey:
        """Find the envelope's key and check its signature and owner; raise ProtocolError otherwise."""
        key = self._keys.get(envelope.keyid)
        if key is None:
            raise ProtocolError(errors.KEY_UNKNOWN, f"key {envelope.keyid[:16]}… is not in the trust list")
        if not envelope.verify_with(key.public_key):
            raise ProtocolError(errors.SIGNATURE_BAD, f"signature by {key.owner} does not verify")
        if key.role != role or (owner is not None and key.owner != owner):
            raise ProtocolError(
                errors.KEY_WRONG_OWNER,
                f"key belongs to {key.role} {key.owner}, but the structure names {role} {owner}",
            )
        return key


def _reject_float(text: str) -> int:
    raise TrustFileError(f"numbers in a trust file are integers, found {text}")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for k, v in pairs:
        if k in obj:
            raise TrustFileError(f"duplicate field {k!r}")
        obj[k] = v
    return obj


def _opt_int(entry: dict[str, object], name: str, where: str) -> int | None:
    value = entry.get(name)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise TrustFileError(f"{where}: {name} must be an integer or null")
    return value  # type: ignore[return-value]


def _parse_revocation(value: object, where: str) -> Revocation | None:
    if value is None:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("at_ns"), int):
        raise TrustFileError(f"{where}: revoked must be null or an object with an integer at_ns")
    return Revocation(
        at_ns=value["at_ns"],
        after_seq=_opt_int(value, "after_seq", where),
        reason=str(value.get("reason", "")),
    )


def _parse_key(entry: object, index: int) -> TrustedKey:
    where = f"keys[{index}]"
    if not isinstance(entry, dict):
        raise TrustFileError(f"{where} must be an object")
    for name in ("keyid", "alg", "spki", "role", "owner"):
        if not isinstance(entry.get(name), str):
            raise TrustFileError(f"{where}: {name} must be a string")
    try:
        spki = base64.b64decode(entry["spki"], validate=True)
        public_key = signatures.public_key_from_spki(spki)
    except (binascii.Error, ValueError) as exc:
        raise TrustFileError(f"{where}: spki is not a usable public key: {exc}") from exc
    key = trusted_key(
        public_key,
        entry["role"],
        entry["owner"],
        _opt_int(entry, "valid_from_ns", where),
        _opt_int(entry, "valid_until_ns", where),
    )
    if key.keyid != entry["keyid"] or key.alg != entry["alg"]:
        raise TrustFileError(f"{where}: keyid/alg do not match the public key (expected {key.keyid}, {key.alg})")
    revoked = _parse_revocation(entry.get("revoked"), where)
    return dataclasses.replace(key, revoked=revoked)


def parse_trust_list(data: bytes) -> TrustList:
    """Parse a trust file's bytes; raise TrustFileError with a clear message on any problem."""
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_float=_reject_float)
    except UnicodeDecodeError as exc:
        raise TrustFileError(f"trust file is not UTF-8: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise TrustFileError(f"trust file is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("liuhen_trust") != FORMAT_VERSION:
        raise TrustFileError(f'not a Liuhen trust file (expected "liuhen_trust": {FORMAT_VERSION})')
    entries = doc.get("keys")
    if not isinstance(entries, list):
        raise TrustFileError("keys must be a list")
    trust = TrustList()
    for i, entry in enumerate(entries):
        try:
            trust.add(_parse_key(entry, i))
        except ValueError as exc:
            raise TrustFileError(str(exc)) from exc
    return trust
