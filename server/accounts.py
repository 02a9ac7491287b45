"""People and their credentials: argon2 password hashes, browser sessions and API tokens.

A token is 32 random bytes shown once; only its SHA-256 is stored, so a copy of the index does not
let anyone sign in. Gateways get tokens too (server/gateways.py), after proving their enrolled key.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from typing import Any

import argon2
from aiohttp import web
from sqlalchemy import Connection, bindparam, insert, select, update

from server import api
from server.api import ROLES, Principal
from server.schema import tokens, users
from server.services import Services, services

COOKIE = "liuhen_session"
SESSION = "session"
API_TOKEN = "api"
GATEWAY_TOKEN = "gateway"

_hasher = argon2.PasswordHasher()

routes = api.Routes("accounts")


class AccountError(ValueError):
    """A change that cannot be made; `status` is the HTTP status it answers with (409: taken)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_password_rules(password: str) -> None:
    if len(password) < 12:
        raise AccountError("a password has at least 12 characters")


def create_user(conn: Connection, now_ns: int, username: str, password: str, role: str, *, unit: str | None = None,
                officer_no: str | None = None, display_name: str = "") -> int:
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    if not username or len(username) > 64 or not username.isprintable() or " " in username:
        raise AccountError("a username is 1-64 printable characters without spaces")
    check_password_rules(password)
    if conn.execute(select(users.c.id).where(users.c.username == username)).first() is not None:
        raise AccountError(f"user {username!r} exists already", 409)
    if officer_no is not None and conn.execute(
            select(users.c.id).where(users.c.officer_no == officer_no)).first() is not None:
        raise AccountError(f"officer number {officer_no!r} belongs to another user", 409)
    return conn.execute(insert(users).values(
        username=username, display_name=display_name, role=role, unit=unit, officer_no=officer_no,
        password_hash=_hasher.hash(password), disabled=False, created_ns=now_ns)).inserted_primary_key[0]


@functools.cache
def _dummy_hash() -> str:
    # An unknown user costs a verification too, so timing does not tell which usernames exist; made on first
    # use, since hashing at import would slow every `liuhen` command down.
    return _hasher.hash("liuhen-no-such-user")


def check_login(conn: Connection, username: str, password: str) -> dict[str, Any] | None:
    row = conn.execute(select(users).where(users.c.username == username)).mappings().first()
    try:
        _hasher.verify(row["password_hash"] if row else _dummy_hash(), password)
    except argon2.exceptions.VerificationError:
        return None
    if row is None or row["disabled"]:
        return None
    return dict(row)


def issue_token(conn: Connection, now_ns: int, kind: str, *, user_id: int | None = None, gateway: str | None = None,
                name: str = "", expires_ns: int | None = None) -> str:
    token = secrets.token_urlsafe(32)
    conn.execute(insert(tokens).values(sha256=token_digest(token), kind=kind, user_id=user_id, gateway=gateway,
                                       name=name, created_ns=now_ns, expires_ns=expires_ns))
    return token


# Every request with a token runs these: built once, since building a statement costs more than running it.
_TOKEN = select(tokens).where(tokens.c.sha256 == bindparam("sha256"))
_USER = select(users).where(users.c.id == bindparam("user_id"))


def principal_for(conn: Connection, token: str, now_ns: int) -> Principal | None:
    row = conn.execute(_TOKEN, {"sha256": token_digest(token)}).mappings().first()
    if row is None or row["revoked_ns"] is not None or (row["expires_ns"] is not None and row["expires_ns"] <= now_ns):
        return None
    if row["kind"] == GATEWAY_TOKEN:
        return Principal("gateway", row["gateway"], row["gateway"])
    user = conn.execute(_USER, {"user_id": row["user_id"]}).mappings().first()
    if user is None or user["disabled"]:
        return None
    return Principal("user", user["id"], user["username"], user["role"], user["unit"], user["officer_no"])


def _request_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header.removeprefix("Bearer ").strip() or None
    return request.cookies.get(COOKIE) or None


async def authenticate(request: web.Request) -> Principal | None:
    token = _request_token(request)
    if token is None:
        return None
    s = services(request)

    def look_up() -> Principal | None:
        with s.db.read() as conn:
            return principal_for(conn, token, s.clock())

    return await s.db.run(look_up)


def _session_expiry(s: Services) -> int:
    return s.clock() + s.config.session_hours * 3600 * 10**9


_SIGN_IN = {"type": "object", "required": ["username", "password"], "additionalProperties": False,
            "properties": {"username": {"type": "string", "maxLength": 64},
                           "password": {"type": "string", "maxLength": 1024}}}


@routes.add("POST", "/api/session", summary="Sign in with username and password; sets a session cookie and "
            "returns the same token for API use", access=api.PUBLIC, body=_SIGN_IN,
            responses={401: "wrong username or password"})
async def sign_in(request: web.Request) -> web.Response:
    body = await api.json_body(request, _SIGN_IN)
    s = services(request)

    def login() -> tuple[str, dict[str, Any]] | None:
        with s.db.write() as conn:
            user = check_login(conn, body["username"], body["password"])
            if user is None:
                return None
            return issue_token(conn, s.clock(), SESSION, user_id=user["id"], expires_ns=_session_expiry(s)), user

    result = await s.db.run(login)
    if result is None:
        raise api.unauthorized("wrong username or password")
    token, user = result
    response = web.json_response({"token": token, "user": _public_user(user), "expires_ns": _session_expiry(s)})
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", secure=request.secure,
                        max_age=s.config.session_hours * 3600, path="/")
    return response


@routes.add("DELETE", "/api/session", summary="Sign out: the session token stops working", access=api.USERS)
async def sign_out(request: web.Request) -> web.Response:
    s = services(request)
    token = _request_token(request)
    assert token is not None  # the guard let a signed-in caller through

    def revoke() -> None:
        with s.db.write() as conn:
            conn.execute(update(tokens).where(tokens.c.sha256 == token_digest(token), tokens.c.revoked_ns.is_(None))
                         .values(revoked_ns=s.clock()))

    await s.db.run(revoke)
    response = web.json_response({"signed_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


@routes.add("GET", "/api/me", summary="Who the caller is", access=(api.USERS, api.GATEWAY))
async def me(request: web.Request) -> web.Response:
    p = request[api.PRINCIPAL]
    return web.json_response({"kind": p.kind, "id": p.id, "name": p.name, "role": p.role, "unit": p.unit,
                              "officer_no": p.officer_no})


def _public_user(user: dict[str, Any]) -> dict[str, Any]:
    return {k: user[k] for k in ("id", "username", "display_name", "role", "unit", "officer_no")}
