"""Accounts over the API: administrators manage users; everyone manages their own API tokens.

Every change is written to the audit trail. A disabled user's sessions and tokens stop at once.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from sqlalchemy import Connection, select, update

from server import accounts, api, audit
from server.accounts import API_TOKEN, AccountError, create_user
from server.schema import tokens, users
from server.services import services

routes = api.Routes("accounts")
_DAY_NS = 86400 * 10**9
_TOKEN_ID_HEX = 16  # a token is named by the first 16 hex digits of its SHA-256

_NEW_USER = {"type": "object", "required": ["username", "password", "role"], "additionalProperties": False,
             "properties": {"username": {"type": "string", "maxLength": 64},
                            "password": {"type": "string", "maxLength": 1024},
                            "role": {"enum": list(api.ROLES)},
                            "unit": {"type": "string", "maxLength": 64},
                            "officer_no": {"type": "string", "maxLength": 64},
                            "display_name": {"type": "string", "maxLength": 200}}}
_DISABLE = {"type": "object", "required": ["reason"], "additionalProperties": False,
            "properties": {"reason": {"type": "string", "minLength": 1, "maxLength": 2000}}}
_NEW_TOKEN = {"type": "object", "required": ["name"], "additionalProperties": False,
              "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 200},
                             "days": {"type": "integer", "minimum": 1, "maximum": 366}}}
_USER_FIELDS = ("id", "username", "display_name", "role", "unit", "officer_no", "disabled", "created_ns")


def _user_json(row: Any) -> dict[str, Any]:
    return {k: row[k] for k in _USER_FIELDS}


@routes.add("GET", "/api/users", summary="All user accounts", access=api.ADMINISTRATOR)
async def list_users(request: web.Request) -> web.Response:
    s = services(request)

    def read() -> list[dict[str, Any]]:
        with s.db.read() as conn:
            return [_user_json(r) for r in conn.execute(select(users).order_by(users.c.id)).mappings()]

    return web.json_response({"users": await s.db.run(read)})


@routes.add("POST", "/api/users", summary="Add a user with a role (passwords: at least 12 characters)",
            access=api.ADMINISTRATOR, body=_NEW_USER, responses={201: "created", 400: "bad input",
                                                                 409: "the username or officer number is taken"})
async def add_user(request: web.Request) -> web.Response:
    body = await api.json_body(request, _NEW_USER)
    s = services(request)
    actor = request[api.PRINCIPAL].actor

    def add() -> dict[str, Any]:
        with s.db.write() as conn:
            uid = create_user(conn, s.clock(), body["username"], body["password"], body["role"],
                              unit=body.get("unit"), officer_no=body.get("officer_no"),
                              display_name=body.get("display_name", ""))
            audit.note(conn, s, actor=actor, action="user-add", client=api.client_of(request),
                       target={"user": uid, "role": body["role"], "unit": body.get("unit")})
            return _user_json(conn.execute(select(users).where(users.c.id == uid)).mappings().one())

    try:
        return web.json_response(await s.db.run(add), status=201)
    except AccountError as exc:
        raise api.ApiError(exc.status, "conflict" if exc.status == 409 else "bad_request", str(exc)) from None


@routes.add("POST", "/api/users/{id}/disable", summary="Disable a user: sign-in, sessions and tokens stop",
            access=api.ADMINISTRATOR, body=_DISABLE, responses={404: "no such user"})
async def disable_user(request: web.Request) -> web.Response:
    body = await api.json_body(request, _DISABLE)
    uid = _int_id(request.match_info["id"])
    s = services(request)
    actor = request[api.PRINCIPAL].actor

    def disable() -> bool:
        with s.db.write() as conn:
            if conn.execute(update(users).where(users.c.id == uid).values(disabled=True)).rowcount == 0:
                return False
            _revoke_tokens(conn, tokens.c.user_id == uid, s.clock())
            audit.note(conn, s, actor=actor, action="user-disable", target={"user": uid}, reason=body["reason"],
                       client=api.client_of(request))
            return True

    if not await s.db.run(disable):
        raise api.not_found(f"no user {uid}")
    return web.json_response({"disabled": uid})


@routes.add("GET", "/api/tokens", summary="Your API tokens (never the tokens themselves)", access=api.USERS)
async def list_tokens(request: web.Request) -> web.Response:
    s = services(request)
    uid = request[api.PRINCIPAL].id

    def read() -> list[dict[str, Any]]:
        with s.db.read() as conn:
            rows = conn.execute(select(tokens).where(tokens.c.user_id == uid, tokens.c.kind == API_TOKEN)
                                .order_by(tokens.c.created_ns)).mappings()
            return [{"id": r["sha256"][:_TOKEN_ID_HEX], "name": r["name"], "created_ns": r["created_ns"],
                     "expires_ns": r["expires_ns"], "revoked_ns": r["revoked_ns"]} for r in rows]

    return web.json_response({"tokens": await s.db.run(read)})


@routes.add("POST", "/api/tokens", summary="Make an API token for yourself; it is shown once",
            access=api.USERS, body=_NEW_TOKEN, responses={201: "created"})
async def make_token(request: web.Request) -> web.Response:
    body = await api.json_body(request, _NEW_TOKEN)
    s = services(request)
    principal = request[api.PRINCIPAL]
    expires_ns = s.clock() + body.get("days", 90) * _DAY_NS

    def make() -> str:
        with s.db.write() as conn:
            token = accounts.issue_token(conn, s.clock(), API_TOKEN, user_id=principal.id, name=body["name"],
                                         expires_ns=expires_ns)
            audit.note(conn, s, actor=principal.actor, action="token-add", target={"name": body["name"]},
                       client=api.client_of(request))
            return token

    token = await s.db.run(make)
    return web.json_response({"id": accounts.token_digest(token)[:_TOKEN_ID_HEX], "token": token,
                              "name": body["name"], "expires_ns": expires_ns}, status=201)


@routes.add("DELETE", "/api/tokens/{id}", summary="Revoke one of your API tokens", access=api.USERS,
            responses={404: "no such token of yours"})
async def revoke_token(request: web.Request) -> web.Response:
    token_id = request.match_info["id"]
    if len(token_id) != _TOKEN_ID_HEX or any(c not in "0123456789abcdef" for c in token_id):
        raise api.not_found("no such token of yours")
    s = services(request)
    principal = request[api.PRINCIPAL]

    def revoke() -> int:
        with s.db.write() as conn:
            done = _revoke_tokens(conn, (tokens.c.user_id == principal.id) & (tokens.c.kind == API_TOKEN)
                                  & tokens.c.sha256.startswith(token_id), s.clock())
            if done:
                audit.note(conn, s, actor=principal.actor, action="token-revoke", target={"token": token_id},
                           client=api.client_of(request))
            return done

    if not await s.db.run(revoke):
        raise api.not_found("no such token of yours")
    return web.json_response({"revoked": token_id})


def _revoke_tokens(conn: Connection, where: Any, now: int) -> int:
    return conn.execute(update(tokens).where(where, tokens.c.revoked_ns.is_(None)).values(revoked_ns=now)).rowcount


def _int_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise api.not_found(f"no user {text!r}")
    return int(text)
