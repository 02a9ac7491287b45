"""Gateway authentication: how a docking gateway proves to the case server that it holds its enrolled key.

The gateway signs a short statement naming itself, the server it is talking to, the time and a random
nonce; the server checks it against its trust list and answers with a bearer token for the upload API.
The statement is good for minutes only and its nonce once, so a copy of it is worth little; the token it
buys is what the gateway then sends with every request. See docs/protocol.md §8, "Gateway
authentication".
"""

from __future__ import annotations

from typing import Any

from protocol import errors, signatures
from protocol.errors import ProtocolError
from protocol.fields import HEX32, IDENTIFIER, Checker
from protocol.receipts import SignedKind, SignedRecord, check_version
from protocol.trust import TrustList

TYPE = "application/vnd.liuhen.gateway-auth.v1+json"
# Gateways keep their clocks on the server's (NTP), so minutes are generous and keep a stolen statement short-lived.
MAX_SKEW_NS = 5 * 60 * 10**9

_c = Checker(errors.AUTH_MALFORMED)
_FIELDS = frozenset({"v", "gateway", "server", "issued_ns", "nonce"})


def check_auth(f: object) -> dict[str, Any]:
    f = _c.exact(f, _FIELDS, "gateway authentication")
    check_version(_c, f, "gateway authentication")
    _c.str(f["gateway"], "gateway", IDENTIFIER)
    _c.str(f["server"], "server", IDENTIFIER)
    _c.int(f["issued_ns"], "issued_ns")
    _c.str(f["nonce"], "nonce", HEX32)
    return f


_KIND = SignedKind(TYPE, check_auth, errors.AUTH_MALFORMED, "gateway", "gateway", "issued_ns")


def issue(signer: signatures.Signer, fields: dict[str, Any]) -> bytes:
    """Validate the fields (`v` is added) and return the signed envelope bytes."""
    return _KIND.issue(signer, fields)


def open_auth(raw: bytes, trust: TrustList) -> SignedRecord:
    """Parse and verify a gateway authentication: signed by a `gateway` key owned by `gateway` and usable at
    `issued_ns`; raise ProtocolError with a finding code. Freshness is `check_fresh`'s."""
    return _KIND.open(raw, trust)


def check_fresh(auth: SignedRecord, server: str, now_ns: int, max_skew_ns: int = MAX_SKEW_NS) -> None:
    """Refuse a verified authentication addressed to another server (`auth.wrong_server`) or issued more
    than `max_skew_ns` before or after `now_ns` (`auth.stale`). Remembering nonces is the server's part."""
    if auth["server"] != server:
        raise ProtocolError(errors.AUTH_WRONG_SERVER, f"addressed to server {auth['server']}, this is {server}")
    skew = auth["issued_ns"] - now_ns
    if abs(skew) > max_skew_ns:
        raise ProtocolError(errors.AUTH_STALE, f"issued {skew / 1e9:+.0f} s from the server's time; "
                                               f"at most ±{max_skew_ns // 10**9} s is accepted: check the clock")
