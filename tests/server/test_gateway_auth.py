"""Gateways sign in with a signed statement and get an hour's token; stale, replayed, foreign and malformed
statements are refused with the code that says why."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from protocol import canonical, errors, gateway_auth, signatures
from server.enrollment import revoke
from tests.server.footage import Gateway, enroll_keys
from tests.server.harness import InProcessServer

SERVER = "srv-test"
MINUTE = 60 * 10**9
AUTH = {"Content-Type": gateway_auth.TYPE}


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[InProcessServer]:
    with InProcessServer(tmp_path, db_url) as running:
        yield running


def post(server: InProcessServer, statement: bytes) -> requests.Response:
    return requests.post(f"{server.url}/api/gateway/session", data=statement, headers=AUTH, timeout=10)


def me(server: InProcessServer, token: str) -> requests.Response:
    return requests.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_a_signed_statement_buys_an_hours_token(server: InProcessServer) -> None:
    gw = Gateway("GW-1")
    enroll_keys(server.services, devices={}, gateways=[gw])
    now = server.services.clock()
    r = post(server, gw.statement(SERVER, now))
    assert r.status_code == 200 and r.json()["gateway"] == "GW-1"
    token = r.json()["token"]
    assert r.json()["expires_ns"] == pytest.approx(now + 60 * MINUTE, abs=MINUTE)
    assert me(server, token).json() == {"kind": "gateway", "id": "GW-1", "name": "GW-1", "role": None,
                                        "unit": None, "officer_no": None}
    as_json = requests.post(f"{server.url}/api/gateway/session", timeout=10,
                            json={"auth": base64.b64encode(gw.statement(SERVER, now)).decode()})
    assert as_json.status_code == 200
    later = r.json()["expires_ns"] + 1
    server.services.clock = lambda: later
    assert me(server, token).status_code == 401


def test_stale_replayed_and_misaddressed_statements_are_refused(server: InProcessServer) -> None:
    gw = Gateway("GW-1")
    enroll_keys(server.services, devices={}, gateways=[gw])
    now = server.services.clock()
    statement = gw.statement(SERVER, now)
    assert post(server, statement).status_code == 200
    refused = {
        errors.AUTH_REPLAYED: statement,
        errors.AUTH_STALE: gw.statement(SERVER, now - 6 * MINUTE),
        f"{errors.AUTH_STALE} (future)": gw.statement(SERVER, now + 6 * MINUTE),
        errors.AUTH_WRONG_SERVER: gw.statement("srv-other", now),
    }
    for code, sent in refused.items():
        r = post(server, sent)
        assert (r.status_code, r.json()["error"]) == (401, code.split()[0]), code
        assert r.json()["message"]


def test_foreign_unknown_and_revoked_keys_are_refused(server: InProcessServer) -> None:
    s = server.services
    gw1, gw2, stranger = Gateway("GW-1"), Gateway("GW-2"), Gateway("GW-3")
    device = signatures.KeySigner(signatures.generate())
    enroll_keys(s, devices={"REC-0001": device}, gateways=[gw1, gw2])
    now = s.clock()
    token = gw1.sign_in(server.url, SERVER, now)

    posing = Gateway("GW-1")
    posing.signer = gw2.signer  # GW-2's key, naming GW-1
    as_device = Gateway("REC-0001")
    as_device.signer = device  # a recorder's key cannot sign a gateway in
    cases = [(stranger, 401, errors.KEY_UNKNOWN), (posing, 403, errors.KEY_WRONG_OWNER),
             (as_device, 403, errors.KEY_WRONG_OWNER)]
    for gw, status, code in cases:
        r = post(server, gw.statement(SERVER, now))
        assert (r.status_code, r.json()["error"]) == (status, code), gw.name

    with s.db.write() as conn:
        revoke(conn, s, keyid=gw1.signer.keyid, reason="stolen", actor="test")
    assert me(server, token).status_code == 401  # its tokens stop at once
    r = post(server, gw1.statement(SERVER, s.clock()))
    assert (r.status_code, r.json()["error"]) == (403, errors.KEY_REVOKED)


def test_malformed_statements_are_refused(server: InProcessServer) -> None:
    gw = Gateway("GW-1")
    enroll_keys(server.services, devices={}, gateways=[gw])
    url = f"{server.url}/api/gateway/session"
    garbage = post(server, b"hello")
    assert (garbage.status_code, garbage.json()["error"]) == (400, errors.ENVELOPE_MALFORMED)
    other = signatures.seal(gw.signer, "application/vnd.liuhen.other.v1+json", b"{}")
    assert post(server, other).json()["error"] == errors.ENVELOPE_WRONG_TYPE
    fields = signatures.seal(gw.signer, gateway_auth.TYPE, canonical.encode({"v": 1, "gateway": "GW-1"}))
    assert (post(server, fields).status_code, post(server, fields).json()["error"]) == (400, errors.AUTH_MALFORMED)
    assert requests.post(url, json={"auth": "not base64!"}, timeout=10).status_code == 400
    assert requests.post(url, json={"token": "x"}, timeout=10).status_code == 400
    assert requests.post(url, data=b"x", headers={"Content-Type": "text/plain"}, timeout=10).status_code == 415
    assert post(server, b"x" * 5000).status_code == 413
