"""Enrollment: which recorders and gateways the server accepts, with which keys, and revocation.

Every change is written three times in one transaction: the index (`enrolled`, `keys`: what ingest checks
against), the public transparency log (a server-signed enrollment record, so anyone can rebuild the trust
list and see when a key stopped counting), and the private audit trail (who did it and why). The trust
list itself is public (`GET /api/trust`): it is what lets anyone verify manifests and receipts.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from typing import Any

from aiohttp import web
from sqlalchemy import Connection, insert, select, update

from protocol import log_records, signatures
from protocol.fields import IDENTIFIER
from protocol.trust import Revocation, TrustedKey, trusted_key
from server import api, audit
from server.identity import IdentityError
from server.schema import enrolled, keys, tokens
from server.services import Services, services
from server.trust_store import get_key, insert_key, revoke_key

DEVICE, GATEWAY, SERVER = "device", "gateway", "server"
MAX_LABEL = 200
MAX_REASON = 200  # keys.revoked_reason
_KEYID_PREFIX = re.compile(r"[0-9a-f]{8,64}")

routes = api.Routes("enrollment")


class EnrollmentError(ValueError):
    """A change that cannot be made; `status` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def parse_public_key(pem: bytes) -> signatures.PublicKeyObject:
    try:
        return signatures.load_public_key(pem)
    except ValueError as exc:
        raise EnrollmentError(f"the key is not a usable PEM public key (Ed25519 or P-256): {exc}") from None


def _check_text(value: str | None, what: str, limit: int) -> None:
    if value is not None and (len(value) > limit or not value.isprintable()):
        raise EnrollmentError(f"{what} is at most {limit} printable characters")


def enroll(conn: Connection, s: Services, *, role: str, owner: str, public_key: signatures.PublicKeyObject,
           actor: str, unit: str | None = None, label: str | None = None) -> TrustedKey:
    """Enroll a recorder's or gateway's key. A recorder or gateway enrolled before gets one more key (a
    replacement after a revocation); `unit` and `label`, when given, replace the ones it had."""
    if role not in (DEVICE, GATEWAY):
        raise EnrollmentError(f"only devices and gateways are enrolled, not {role!r}")
    if not IDENTIFIER.fullmatch(owner):
        raise EnrollmentError(f"{owner!r} is not an id (1-64 letters, digits, . _ -, starting with a letter or digit)")
    if role == GATEWAY and unit is not None:
        raise EnrollmentError("gateways belong to no unit")
    _check_text(unit, "a unit", 64)
    _check_text(label, "a label", MAX_LABEL)
    key = trusted_key(public_key, role, owner)
    held = get_key(conn, key.keyid)
    if held is not None:
        raise EnrollmentError(f"key {key.keyid} is enrolled already, as {held.role} {held.owner}'s", 409)
    row = conn.execute(select(enrolled).where(enrolled.c.id == owner)).mappings().first()
    now = s.clock()
    if row is None:
        conn.execute(insert(enrolled).values(id=owner, role=role, unit=unit, label=label or "", enrolled_ns=now))
    elif row["role"] != role:
        raise EnrollmentError(f"{owner} is enrolled as a {row['role']}, not a {role}", 409)
    else:
        changes = {k: v for k, v in (("unit", unit), ("label", label)) if v is not None}
        if changes:
            conn.execute(update(enrolled).where(enrolled.c.id == owner).values(**changes))
    insert_key(conn, key, now)
    _record(conn, s, log_records.ENROLL, key, actor, now, reason="", detail={"unit": unit, "label": label})
    return key


def enroll_server_key(conn: Connection, s: Services) -> None:
    """The server's own key belongs in the trust list it publishes (its receipts and records are checked
    against it); enrolled the first time the server opens its index with that key."""
    own = s.identity.trusted_key()
    held = get_key(conn, own.keyid)
    if held is None:
        now = s.clock()
        insert_key(conn, own, now)
        _record(conn, s, log_records.ENROLL, own, "system:startup", now, reason="the server's own key", detail={})
    elif (held.role, held.owner) != (SERVER, s.identity.name):
        raise IdentityError(f"the server key is enrolled as {held.role} {held.owner}'s, but this server is "
                            f"named {s.identity.name!r}: set [server] name back, or give the server a new key")


def resolve_keyid(conn: Connection, text: str) -> str:
    """A key id from itself or a unique prefix of at least 8 hex digits."""
    text = text.lower()
    if not _KEYID_PREFIX.fullmatch(text):
        raise EnrollmentError("a key id is 64 hex digits (a unique prefix of at least 8 will do)")
    found = conn.execute(select(keys.c.keyid).where(keys.c.keyid.startswith(text)).limit(2)).scalars().all()
    if len(found) != 1:
        raise EnrollmentError(f"no enrolled key {text}" if not found else f"several keys start with {text}",
                              404 if not found else 400)
    return found[0]


def revoke(conn: Connection, s: Services, *, keyid: str, reason: str, actor: str, at_ns: int | None = None,
           after_seq: int | None = None) -> TrustedKey:
    """Revoke a key from `at_ns` (default now), or for a device key after its sequence number `after_seq`;
    what it signed before stays verifiable. A revoked gateway's tokens stop working at once."""
    reason = reason.strip()
    if not reason:
        raise EnrollmentError("state why the key is revoked (lost, stolen, retired ...)")
    _check_text(reason, "a reason", MAX_REASON)
    key = get_key(conn, keyid)
    if key is None:
        raise EnrollmentError(f"no enrolled key {keyid}", 404)
    if key.role == SERVER:
        raise EnrollmentError("the server's own key is not revoked here: it signs every receipt and checkpoint")
    if key.revoked is not None:
        raise EnrollmentError(f"key {keyid} is revoked already", 409)
    if after_seq is not None and (key.role != DEVICE or after_seq < 0):
        raise EnrollmentError("--after-seq / after_seq is a sequence number (>= 0) of a device key")
    now = s.clock()
    revocation = Revocation(now if at_ns is None else at_ns, after_seq, reason)
    if revocation.at_ns < 0:
        raise EnrollmentError("a revocation time is UTC nanoseconds (>= 0)")
    try:
        revoke_key(conn, keyid, revocation)
    except ValueError as exc:  # revoked by another process since we read it
        raise EnrollmentError(str(exc), 409) from None
    if key.role == GATEWAY:
        conn.execute(update(tokens).where(tokens.c.gateway == key.owner, tokens.c.revoked_ns.is_(None))
                     .values(revoked_ns=now))
    _record(conn, s, log_records.REVOKE, key, actor, now, reason=reason, revocation=revocation)
    return key


def _record(conn: Connection, s: Services, action: str, key: TrustedKey, actor: str, now: int, *, reason: str,
            revocation: Revocation | None = None, detail: dict[str, Any] | None = None) -> None:
    entry = log_records.issue(s.identity.signer, log_records.ENROLLMENT_TYPE, {
        "server": s.identity.name, "action": action, "at_ns": now, "actor": actor, "role": key.role,
        "owner": key.owner, "keyid": key.keyid, "alg": key.alg,
        "public_key": base64.b64encode(key.spki).decode("ascii"),
        "revocation": {"at_ns": revocation.at_ns, "after_seq": revocation.after_seq} if revocation else None,
    })
    index = s.log.append(conn, [(log_records.ENTRY_KINDS[log_records.ENROLLMENT_TYPE], entry)], now)
    target = {"role": key.role, "owner": key.owner, "keyid": key.keyid, **(detail or {})}
    if revocation is not None:
        target |= {"at_ns": revocation.at_ns, "after_seq": revocation.after_seq}
    audit.note(conn, s, actor=actor, action=action, target=target, reason=reason, log_index=index)


def enrolled_list(conn: Connection, role: str) -> list[dict[str, Any]]:
    """The devices or gateways, each with its keys (newest last)."""
    rows = conn.execute(select(enrolled).where(enrolled.c.role == role).order_by(enrolled.c.id)).mappings().all()
    held: dict[str, list[dict[str, Any]]] = {}
    for k in conn.execute(select(keys).where(keys.c.role == role).order_by(keys.c.enrolled_ns)).mappings():
        revoked = None if k["revoked_at_ns"] is None else {
            "at_ns": k["revoked_at_ns"], "after_seq": k["revoked_after_seq"], "reason": k["revoked_reason"]}
        held.setdefault(k["owner"], []).append({"keyid": k["keyid"], "alg": k["alg"],
                                                "enrolled_ns": k["enrolled_ns"], "revoked": revoked})
    return [{"id": r["id"], "unit": r["unit"], "label": r["label"], "enrolled_ns": r["enrolled_ns"],
             "keys": held.get(r["id"], [])} for r in rows]


# HTTP

_PEM = {"type": "string", "maxLength": 4096, "description": "the public key, PEM (SubjectPublicKeyInfo)"}
_ENROLL_DEVICE = {"type": "object", "required": ["id", "public_key"], "additionalProperties": False,
                  "properties": {"id": {"type": "string"}, "public_key": _PEM,
                                 "unit": {"type": "string"}, "label": {"type": "string"}}}
_ENROLL_GATEWAY = {"type": "object", "required": ["id", "public_key"], "additionalProperties": False,
                   "properties": {"id": {"type": "string"}, "public_key": _PEM, "label": {"type": "string"}}}
_REVOKE = {"type": "object", "required": ["reason"], "additionalProperties": False,
           "properties": {"reason": {"type": "string"}, "at_ns": {"type": "integer", "minimum": 0},
                          "after_seq": {"type": "integer", "minimum": 0}}}
_CHANGED = {400: "bad input", 409: "conflicts with what is enrolled"}


async def _change(request: web.Request, change: Callable[[Connection, Services, str], TrustedKey]) -> TrustedKey:
    """Run `change(conn, services, actor)` in a write transaction; enrollment errors become API errors."""
    s = services(request)
    actor = request[api.PRINCIPAL].actor

    def run() -> TrustedKey:
        with s.db.write() as conn:
            return change(conn, s, actor)

    try:
        return await s.db.run(run)
    except EnrollmentError as exc:
        code = {404: "not_found", 409: "conflict"}.get(exc.status, "bad_request")
        raise api.ApiError(exc.status, code, str(exc)) from None


def _key_json(key: TrustedKey) -> dict[str, Any]:
    return {"keyid": key.keyid, "alg": key.alg, "role": key.role, "owner": key.owner}


async def _enroll(request: web.Request, role: str, schema: dict[str, Any]) -> web.Response:
    body = await api.json_body(request, schema)

    def change(conn: Connection, s: Services, actor: str) -> TrustedKey:
        return enroll(conn, s, role=role, owner=body["id"], public_key=parse_public_key(body["public_key"].encode()),
                      actor=actor, unit=body.get("unit"), label=body.get("label"))

    return web.json_response(_key_json(await _change(request, change)), status=201)


@routes.add("GET", "/api/devices", summary="Enrolled recorders with their keys", access=api.ADMINISTRATOR)
async def list_devices(request: web.Request) -> web.Response:
    return await _list(request, DEVICE)


@routes.add("GET", "/api/gateways", summary="Enrolled gateways with their keys", access=api.ADMINISTRATOR)
async def list_gateways(request: web.Request) -> web.Response:
    return await _list(request, GATEWAY)


async def _list(request: web.Request, role: str) -> web.Response:
    s = services(request)

    def read() -> list[dict[str, Any]]:
        with s.db.read() as conn:
            return enrolled_list(conn, role)

    return web.json_response({f"{role}s": await s.db.run(read)})


@routes.add("POST", "/api/devices", summary="Enroll a recorder's public key (logged as an enrollment record)",
            access=api.ADMINISTRATOR, body=_ENROLL_DEVICE, responses={201: "enrolled", **_CHANGED})
async def enroll_device(request: web.Request) -> web.Response:
    return await _enroll(request, DEVICE, _ENROLL_DEVICE)


@routes.add("POST", "/api/gateways", summary="Enroll a gateway's public key (logged as an enrollment record)",
            access=api.ADMINISTRATOR, body=_ENROLL_GATEWAY, responses={201: "enrolled", **_CHANGED})
async def enroll_gateway(request: web.Request) -> web.Response:
    return await _enroll(request, GATEWAY, _ENROLL_GATEWAY)


@routes.add("POST", "/api/keys/{keyid}/revoke", summary="Revoke a key from a time, or a device key after a "
            "sequence number (logged as an enrollment record)", access=api.ADMINISTRATOR, body=_REVOKE,
            responses={404: "no such key", **_CHANGED})
async def revoke_key_endpoint(request: web.Request) -> web.Response:
    body = await api.json_body(request, _REVOKE)
    keyid = request.match_info["keyid"]

    def change(conn: Connection, s: Services, actor: str) -> TrustedKey:
        return revoke(conn, s, keyid=resolve_keyid(conn, keyid), reason=body["reason"], actor=actor,
                      at_ns=body.get("at_ns"), after_seq=body.get("after_seq"))

    key = await _change(request, change)
    return web.json_response(_key_json(key))


@routes.add("GET", "/api/trust", summary="The trust list (docs/protocol.md §4): every enrolled key, with "
            "revocations, to verify manifests and receipts", access=api.PUBLIC)
async def trust_list(request: web.Request) -> web.Response:
    s = services(request)

    def read() -> bytes:
        with s.db.read() as conn:
            return s.trust.trust(conn).to_bytes()

    return web.Response(body=await s.db.run(read), content_type="application/json",
                        headers={"Cache-Control": "no-cache"})
