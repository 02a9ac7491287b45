"""Signed envelopes: Ed25519 and ES256 (P-256), algorithm named, domain-separated.

An envelope is the canonical encoding of

    {"alg": ..., "keyid": ..., "payload": base64(payload), "sig": base64(sig), "type": ...}

and the signature covers the pre-authentication encoding (PAE) of the type and
the payload bytes, as in DSSE: the type string separates domains, so a signature
made for a manifest can never pass as a receipt's. The payload is kept as the
exact bytes that were signed (invariant 5: never re-serialize to verify).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from protocol import canonical, errors
from protocol.errors import ProtocolError

ED25519 = "ed25519"
ES256 = "es256"
ALGORITHMS = (ED25519, ES256)

PAE_PREFIX = b"LIUHEN-SIG-V1"
_ENVELOPE_KEYS = ("alg", "keyid", "payload", "sig", "type")
_P256_COORD = 32

PublicKeyObject = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKeyObject = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def pae(type_: str, payload: bytes) -> bytes:
    """Pre-authentication encoding: the exact bytes a signature covers."""
    t = type_.encode("utf-8")
    return b"%s %d %s %d %s" % (PAE_PREFIX, len(t), t, len(payload), payload)


def spki_der(key: PublicKeyObject) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: PublicKeyObject) -> str:
    """A key's id: lowercase hex SHA-256 of its DER SubjectPublicKeyInfo."""
    return hashlib.sha256(spki_der(key)).hexdigest()


def algorithm_of(key: PublicKeyObject | PrivateKeyObject) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return ED25519
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) and isinstance(
        key.curve, ec.SECP256R1
    ):
        return ES256
    raise ValueError(f"unsupported key type {type(key).__name__}: use Ed25519 or P-256")


class Signer(Protocol):
    """Anything that signs: a key file here, a secure element behind the MCU elsewhere."""

    @property
    def alg(self) -> str: ...

    @property
    def keyid(self) -> str: ...

    def sign(self, message: bytes) -> bytes:
        """Return the raw signature (Ed25519: 64 bytes; ES256: r||s, 64 bytes)."""
        ...


class KeySigner:
    """A Signer over a private key held in memory."""

    def __init__(self, private_key: PrivateKeyObject) -> None:
        self._key = private_key
        self._alg = algorithm_of(private_key)
        self._keyid = key_id(private_key.public_key())

    @property
    def alg(self) -> str:
        return self._alg

    @property
    def keyid(self) -> str:
        return self._keyid

    def public_key(self) -> PublicKeyObject:
        return self._key.public_key()

    def sign(self, message: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(message)
        r, s = decode_dss_signature(self._key.sign(message, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(_P256_COORD, "big") + s.to_bytes(_P256_COORD, "big")


def generate(alg: str = ED25519) -> PrivateKeyObject:
    if alg == ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if alg == ES256:
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown algorithm {alg!r}: choose one of {', '.join(ALGORITHMS)}")


def verify_raw(key: PublicKeyObject, message: bytes, signature: bytes) -> bool:
    """True when `signature` (raw form) is valid for `message` under `key`."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
            return True
        if len(signature) != 2 * _P256_COORD:
            return False
        r = int.from_bytes(signature[:_P256_COORD], "big")
        s = int.from_bytes(signature[_P256_COORD:], "big")
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, ValueError):
        return False


@dataclass(frozen=True)
class Envelope:
    alg: str
    keyid: str
    type: str
    payload: bytes
    sig: bytes
    raw: bytes

    @property
    def payload_hash(self) -> bytes:
        return hashlib.sha256(self.payload).digest()

    def verify_with(self, key: PublicKeyObject) -> bool:
        """True when the signature is valid under `key` (found by `keyid`, so not compared again)."""
        if algorithm_of(key) != self.alg:
            return False
        return verify_raw(key, pae(self.type, self.payload), self.sig)


def seal(signer: Signer, type_: str, payload: bytes) -> bytes:
    """Sign `payload` as a structure of kind `type_` and return the envelope bytes."""
    sig = signer.sign(pae(type_, payload))
    return canonical.encode(
        {
            "alg": signer.alg,
            "keyid": signer.keyid,
            "payload": base64.b64encode(payload).decode("ascii"),
            "sig": base64.b64encode(sig).decode("ascii"),
            "type": type_,
        }
    )


def _b64(value: object, field: str) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(errors.ENVELOPE_MALFORMED, f"{field} must be a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(errors.ENVELOPE_MALFORMED, f"{field} is not valid base64: {exc}") from exc
    if base64.b64encode(decoded).decode("ascii") != value:
        raise ProtocolError(errors.ENVELOPE_MALFORMED, f"{field} is not canonical base64")
    return decoded


def open_envelope(raw: bytes, expected_type: str | None = None) -> Envelope:
    """Parse envelope bytes strictly. Does not check the signature."""
    try:
        obj = canonical.decode(raw)
    except canonical.CanonicalError as exc:
        raise ProtocolError(errors.ENVELOPE_MALFORMED, f"envelope is not canonical: {exc}") from exc
    if not isinstance(obj, dict) or tuple(sorted(obj)) != _ENVELOPE_KEYS:
        raise ProtocolError(errors.ENVELOPE_MALFORMED, f"envelope must have exactly the fields {_ENVELOPE_KEYS}")
    alg, keyid, type_ = obj["alg"], obj["keyid"], obj["type"]
    if alg not in ALGORITHMS:
        raise ProtocolError(errors.ENVELOPE_MALFORMED, f"unknown algorithm {alg!r}")
    if not isinstance(keyid, str) or len(keyid) != 64 or keyid.strip("0123456789abcdef"):
        raise ProtocolError(errors.ENVELOPE_MALFORMED, "keyid must be 64 lowercase hex digits")
    if not isinstance(type_, str) or not type_:
        raise ProtocolError(errors.ENVELOPE_MALFORMED, "type must be a non-empty string")
    if expected_type is not None and type_ != expected_type:
        raise ProtocolError(errors.ENVELOPE_WRONG_TYPE, f"expected a {expected_type}, got {type_}")
    return Envelope(alg, keyid, type_, _b64(obj["payload"], "payload"), _b64(obj["sig"], "sig"), raw)


def public_key_from_spki(der: bytes) -> PublicKeyObject:
    try:
        key = serialization.load_der_public_key(der)
    except ValueError as exc:
        raise ValueError(f"not a DER SubjectPublicKeyInfo: {exc}") from exc
    algorithm_of(key)  # rejects curves and key types the protocol does not name
    return key  # type: ignore[return-value]


def load_private_key(pem: bytes) -> PrivateKeyObject:
    """Parse a PKCS#8 PEM private key of a supported algorithm."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not an unencrypted PEM private key: {exc}") from exc
    algorithm_of(key)
    return key  # type: ignore[return-value]


def load_public_key(pem: bytes) -> PublicKeyObject:
    """Parse a PEM public key, or take the public half of a PEM private key."""
    if b"PRIVATE KEY" in pem:
        return load_private_key(pem).public_key()
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        raise ValueError(f"not a PEM public key: {exc}") from exc
    algorithm_of(key)
    return key  # type: ignore[return-value]


def private_pem(key: PrivateKeyObject) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_pem(key: PublicKeyObject) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
