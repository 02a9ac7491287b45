"""Gateways sign in with their enrolled key: a signed gateway authentication (protocol/gateway_auth.py)
buys a bearer token for the upload API, valid for an hour.

Nonces are remembered in this process's memory for as long as a statement can be fresh. With several server
processes, a statement replayed to another process within its few minutes would be accepted there once
more; a replay needs a copy of a statement sent over TLS, and buys only what the gateway could do anyway
for the hour, so the index is not burdened with nonces.
"""

from __future__ import annotations

import base64
import binascii
import threading

from aiohttp import web

from protocol import errors, gateway_auth
from protocol.errors import ProtocolError
from server import api
from server.accounts import GATEWAY_TOKEN, issue_token
from server.services import services

TOKEN_NS = 3600 * 10**9
MAX_AUTH_BYTES = 4096
# A refused statement's code says whether the gateway failed to prove who it is (401, the default), proved
# it but may not sign in (403), or sent something that is no statement at all (400).
_STATUS = {
    errors.ENVELOPE_MALFORMED: 400, errors.ENVELOPE_WRONG_TYPE: 400, errors.AUTH_MALFORMED: 400,
    errors.KEY_REVOKED: 403, errors.KEY_OUTSIDE_VALIDITY: 403, errors.KEY_WRONG_OWNER: 403,
}
_JSON_BODY = {"type": "object", "required": ["auth"], "additionalProperties": False,
              "properties": {"auth": {"type": "string", "maxLength": MAX_AUTH_BYTES * 2,
                                      "description": "the gateway-auth envelope, base64"}}}

routes = api.Routes("gateways")


class NonceMemory:
    """Nonces of accepted statements, each kept until its statement could no longer be fresh."""

    def __init__(self) -> None:
        self._until: dict[str, int] = {}
        self._lock = threading.Lock()

    def first_use(self, nonce: str, issued_ns: int, now_ns: int) -> bool:
        with self._lock:
            for seen in [n for n, until in self._until.items() if until < now_ns]:
                del self._until[seen]
            if nonce in self._until:
                return False
            self._until[nonce] = issued_ns + gateway_auth.MAX_SKEW_NS
            return True


_nonces = NonceMemory()


async def _statement(request: web.Request) -> bytes:
    if request.content_type == gateway_auth.TYPE:
        raw = await request.read()
    elif request.content_type == "application/json":
        body = await api.json_body(request, _JSON_BODY)
        try:
            raw = base64.b64decode(body["auth"], validate=True)
        except (binascii.Error, ValueError):
            raise api.bad_request("auth is not base64") from None
    else:
        raise api.ApiError(415, "unsupported_media_type",
                           f"send the statement as {gateway_auth.TYPE}, or as JSON {{\"auth\": base64}}")
    if len(raw) > MAX_AUTH_BYTES:
        raise api.ApiError(413, "too_large", f"a gateway authentication is at most {MAX_AUTH_BYTES} bytes")
    return raw


@routes.add("POST", "/api/gateway/session", summary="A gateway signs in with a signed gateway authentication "
            "(docs/protocol.md §8) and gets a bearer token for uploads, valid for an hour", access=api.PUBLIC,
            raw=True, responses={400: "not a gateway authentication", 401: "not proven: unknown key, bad "
                                 "signature, stale, replayed or for another server", 403: "the key may not sign in "
                                 "(revoked, or not this gateway's)", 415: "wrong content type"})
async def gateway_session(request: web.Request) -> web.Response:
    raw = await _statement(request)
    s = services(request)

    def sign_in() -> tuple[str, str, int]:
        now = s.clock()
        with s.db.read() as conn:
            trust = s.trust.trust(conn)
        auth = gateway_auth.open_auth(raw, trust)
        gateway_auth.check_fresh(auth, s.identity.name, now)
        if not _nonces.first_use(auth["nonce"], auth["issued_ns"], now):
            raise ProtocolError(errors.AUTH_REPLAYED, "this statement was used before: sign a new one")
        with s.db.write() as conn:
            token = issue_token(conn, now, GATEWAY_TOKEN, gateway=auth["gateway"], name="gateway session",
                                expires_ns=now + TOKEN_NS)
        return token, auth["gateway"], now + TOKEN_NS

    try:
        token, gateway, expires_ns = await s.db.run(sign_in)
    except ProtocolError as exc:
        raise api.ApiError(_STATUS.get(exc.code, 401), exc.code, exc.message) from None
    return web.json_response({"token": token, "gateway": gateway, "expires_ns": expires_ns})
