"""The gateway's link to the case server: signing in with the gateway key (a gateway authentication,
docs/protocol.md §8) for a bearer token, signing in again when the server answers 401, the server's trust
list (a pinned file, or the public `/api/trust`), and the requests the uploader makes beside tus.

Failures come out as three kinds, because each asks for a different answer: `ServerAway` (no connection,
a timeout, 5xx: try again later), `SignInRefused` (the server does not accept the gateway's key: a person must
act; the gateway keeps trying meanwhile) and `Refused` (the server turned down one segment for good: keep it
for a person). Safe to use from several upload threads at once.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tusclient.client import TusClient

from gateway.identity import GatewayIdentity
from protocol import gateway_auth
from protocol.fields import HEX64, IDENTIFIER
from protocol.trust import TrustFileError, TrustList, parse_trust_list

log = logging.getLogger("liuhen.gateway.server")

SESSION = "/api/gateway/session"
UPLOADS = "/api/uploads/"
RECEIPTS = "/api/ingest/receipts/"
TRUST = "/api/trust"
RECEIPT_HEADER = "Liuhen-Server-Receipt"
TUS_HEADERS = {"Tus-Resumable": "1.0.0"}


@dataclass(frozen=True)
class LinkConfig:
    """How the gateway reaches the case server (part of the `[gateway]` section)."""

    server_url: str = "http://127.0.0.1:8480"  # the server's base URL (its `[server]` host and port)
    server_id: str = "liuhen-server"  # the server's `[server] name`: sign-in statements and receipts name it
    trust_file: Path | None = None  # a pinned trust list (`liuhen admin trust export`); None: GET /api/trust
    timeout_s: float = 30.0  # for sign-in, receipts and the trust list (tuspy's own requests have none)

    def __post_init__(self) -> None:
        if not self.server_url.startswith(("http://", "https://")):
            raise ValueError(f"server_url {self.server_url!r} must start with http:// or https://")
        if not IDENTIFIER.fullmatch(self.server_id):
            raise ValueError(f"server_id {self.server_id!r} is not a server id (letters, digits, '.', '_', '-')")
        if not self.timeout_s > 0:
            raise ValueError("timeout_s must be positive")

    @property
    def base_url(self) -> str:
        return self.server_url.rstrip("/")


class ServerAway(Exception):
    """The server cannot be reached, or failed (5xx): try again later."""


class SignInRefused(ServerAway):
    """The server does not accept the gateway's key (unknown, revoked, clock far off): a person must act."""


class TokenRejected(Exception):
    """The server no longer accepts the bearer token (401): sign in again."""


class Refused(Exception):
    """The server turned down one segment for good (400, 413, ...): keep it for a person."""


class ServerLink:
    def __init__(self, config: LinkConfig, identity: GatewayIdentity, *,
                 now_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.identity = identity
        self._now_ns = now_ns
        self._lock = threading.Lock()
        self._token: str | None = None
        self._trust: TrustList | None = None

    # Sign-in

    def token(self) -> str:
        """The bearer token, signing in first if there is none."""
        with self._lock:
            if self._token is None:
                self._token = self._sign_in()
            return self._token

    def drop_token(self, token: str) -> None:
        """Forget a token the server rejected, unless another thread has signed in again meanwhile."""
        with self._lock:
            if self._token == token:
                self._token = None

    def _sign_in(self) -> str:
        statement = gateway_auth.issue(self.identity.signer, {
            "gateway": self.identity.gateway_id, "server": self.config.server_id, "issued_ns": self._now_ns(),
            "nonce": secrets.token_hex(16)})
        r = self._send("POST", self.config.base_url + SESSION, data=statement,
                       headers={"Content-Type": gateway_auth.TYPE})
        if r.status_code != 200:
            raise SignInRefused(f"the server refused the sign-in of gateway {self.identity.gateway_id} "
                                f"(key {self.identity.keyid[:16]}): {said(r)}; is this key enrolled "
                                "(liuhen admin gateway enroll) and the clock right?")
        log.info("signed in to %s as gateway %s", self.config.base_url, self.identity.gateway_id)
        return str(r.json()["token"])

    # Uploads

    def tus_client(self, token: str) -> TusClient:
        return TusClient(self.config.base_url + UPLOADS, headers={"Authorization": f"Bearer {token}"})

    def upload_receipt(self, url: str, token: str) -> bytes | None:
        """The server receipt of a complete upload, from HEAD on it (which also finishes one whose completion a
        server crash interrupted); None if the upload is gone (expired, or swept)."""
        r = self._send("HEAD", url, headers={**TUS_HEADERS, **_bearer(token)})
        if r.status_code in (404, 410):
            return None
        if r.status_code != 200 or RECEIPT_HEADER not in r.headers:
            raise ServerAway(f"HEAD {url} answered {r.status_code} without a server receipt")
        return receipt_from_header(r.headers[RECEIPT_HEADER])

    def stored_receipt(self, manifest_hash: str, token: str) -> bytes | None:
        """The server receipt of a manifest the server stored, or None if it holds no such manifest."""
        if not HEX64.fullmatch(manifest_hash):
            raise ValueError(f"{manifest_hash!r} is not a manifest hash")
        r = self._send("GET", self.config.base_url + RECEIPTS + manifest_hash, headers=_bearer(token))
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise ServerAway(f"GET {RECEIPTS}{manifest_hash[:16]}… answered {said(r)}")
        return r.content

    # The server's keys

    def trust(self) -> TrustList:
        """The trust list receipts are checked against, read once from its source."""
        with self._lock:
            if self._trust is None:
                self._trust = self._read_trust()
            return self._trust

    def refresh_trust(self) -> TrustList:
        """Read the trust list again (the server may have a new key since)."""
        fresh = self._read_trust()
        with self._lock:
            self._trust = fresh
        return fresh

    def _read_trust(self) -> TrustList:
        if self.config.trust_file is not None:
            try:
                return parse_trust_list(self.config.trust_file.read_bytes())
            except OSError as exc:
                raise ServerAway(f"cannot read the trust file {self.config.trust_file}: {exc.strerror}") from None
            except TrustFileError as exc:
                raise ServerAway(f"{self.config.trust_file}: {exc}") from None
        r = self._send("GET", self.config.base_url + TRUST)
        if r.status_code != 200:
            raise ServerAway(f"GET {TRUST} answered {said(r)}")
        try:
            return parse_trust_list(r.content)
        except TrustFileError as exc:
            raise ServerAway(f"the server's trust list is unusable: {exc}") from None

    def _send(self, method: str, url: str, **options: Any) -> requests.Response:
        """One request; ServerAway for no answer or a 5xx, TokenRejected for a 401 to a bearer token."""
        try:
            r = requests.request(method, url, timeout=self.config.timeout_s, **options)
        except requests.RequestException as exc:
            raise ServerAway(f"{method} {url}: {exc}") from None
        if r.status_code >= 500:
            raise ServerAway(f"{method} {url} answered {said(r)}")
        if r.status_code == 401 and "Authorization" in options.get("headers", {}):
            raise TokenRejected(f"{method} {url} answered {said(r)}")
        return r


def said(r: requests.Response) -> str:
    return describe(r.status_code, r.content)


def describe(status: int, content: bytes) -> str:
    """An answer's status and what it says, short, for a log line or a held-back reason."""
    try:
        body = json.loads(content)
        text = f"{body['error']}: {body['message']}"
    except (ValueError, TypeError, KeyError):
        text = content.decode("utf-8", "replace").strip()
    return f"{status} {text[:300]}".rstrip()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def receipt_from_header(value: str) -> bytes:
    """The server receipt a tus answer carries in its Liuhen-Server-Receipt header (base64)."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ServerAway(f"the {RECEIPT_HEADER} header is not base64") from None
