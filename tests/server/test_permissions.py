"""Every endpoint, for every role, for a gateway and for nobody signed in: 401 without a sign-in, 403 for a
role the endpoint is not open to, never 401/403 for one it is open to (except a grant or export that is
someone else's: 403 by design). And across all of it, no response carries a byte of footage unless its
caller has an audit record of viewing, downloading or exporting that segment, written before."""

from __future__ import annotations

import json
import re
from typing import Any

import requests
from sqlalchemy import select

from server.api import ROLES, Endpoint, Principal, openapi_path
from server.app import ENDPOINTS, ROUTE_MODULES, make_app
from server.schema import audit, audit_segments, keys
from tests.server.footage import Site

FOOTAGE_ACTIONS = ("view", "download", "export-package", "export-mp4")
# A signed-in caller may be refused by the handler, not the guard, only where the thing named is someone else's.
OWNED = {("GET", "/api/media/{grant}/{segment_id}"), ("GET", "/api/exports/{export_id}")}
# Routes outside the declared endpoints: the API description itself.
UNDECLARED = {("GET", "/api/openapi.json"), ("HEAD", "/api/openapi.json")}


def _walk_order(e: Endpoint) -> tuple[bool, str, str]:
    return (e.method, e.path) == ("DELETE", "/api/session"), e.path, e.method  # signing out goes last


def _fill(path: str, values: dict[str, str]) -> str:
    """The path with real values; `{id}` means the id of whatever the path is about."""
    about = path.split("/")[2] if path.startswith("/api/") else ""
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: values[f"{about}.id" if m.group(1) == "id" else m.group(1)],
                  path)


def _request(url: str, e: Endpoint, token: str | None, values: dict[str, str]) -> requests.Response:
    headers = {"Tus-Resumable": "1.0.0"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data: bytes | None = None
    if e.method == "PATCH":
        headers["Content-Type"] = "application/offset+octet-stream"
        headers["Upload-Offset"] = "0"
        data = b""
    elif e.method in ("POST", "DELETE") and not e.raw:
        headers["Content-Type"] = "application/json"
        data = b"{}"
    elif e.method == "POST":
        headers["Upload-Length"] = "0"
    return requests.request(e.method, url + _fill(e.path, values), headers=headers, data=data, timeout=60)


def _served_footage(site: Site, body: bytes) -> set[int]:
    """The segments whose media bytes appear in a response body (a 4 KiB sample from each file's middle)."""
    found = set()
    for segment_id, media in site.rec.media.items():
        middle = len(media) // 2
        if media[middle : middle + 4096] in body:
            found.add(segment_id)
    return found


def _audited(site: Site, actor: str, segment_id: int) -> bool:
    with site.server.services.db.read() as conn:
        return conn.execute(
            select(audit.c.id).join(audit_segments, audit_segments.c.audit_id == audit.c.id)
            .where(audit.c.actor == actor, audit_segments.c.segment_id == segment_id,
                   audit.c.action.in_(FOOTAGE_ACTIONS))).first() is not None


def _callers(site: Site) -> dict[str, tuple[Principal | None, str | None]]:
    """Who walks the API: each role (signed in), a gateway, and nobody."""
    server = site.server
    callers: dict[str, tuple[Principal | None, str | None]] = {"nobody": (None, None)}
    for role in ROLES:
        session = site.officer if role == "officer" else server.user(f"walk.{role}", role, unit="U1")
        me = session.get(f"{site.url}/api/me", timeout=10).json()
        token = session.headers["Authorization"].removeprefix("Bearer ")
        callers[role] = (Principal("user", me["id"], me["name"], role, me["unit"], me["officer_no"]), token)
    gateway_token = site.footage.gateway.sign_in(site.url, server.services.identity.name, server.services.clock())
    callers["gateway"] = (Principal("gateway", "GW-1", "GW-1"), gateway_token)
    return callers


def _values(site: Site, callers: dict[str, Any]) -> dict[str, str]:
    """A real value for every path parameter, so that permitted calls reach their handlers' real work."""
    officer, supervisor = site.officer, site.server.user("walk.owner", "supervisor", unit="U1")
    segment = site.rec.ids[1]
    grant = site.grant(segments=[segment])
    export = site.export(format="mp4", segments=[segment])
    assert export.status_code == 201, export.text
    case = supervisor.post(f"{site.url}/api/cases", json={"number": "WALK-1", "title": "walk", "unit": "U1"},
                           timeout=10).json()
    hold = supervisor.post(f"{site.url}/api/holds", json={"segments": [segment], "reason": "walk"}, timeout=10)
    assert hold.status_code in (200, 201), hold.text
    with site.server.services.db.read() as conn:
        keyid = conn.execute(select(keys.c.keyid).where(keys.c.role == "device")).scalars().first()
    me = officer.get(f"{site.url}/api/me", timeout=10).json()
    token = officer.post(f"{site.url}/api/tokens", json={"name": "walk"}, timeout=10).json()
    return {"grant": grant["grant"], "segment_id": str(segment), "export_id": export.json()["id"],
            "keyid": keyid, "manifest": site.rec.manifests[1].hash.hex(), "index": "0", "path": "0/000.p/1",
            "upload_id": "0" * 32, "cases.id": str(case["id"]), "segments.id": str(segment),
            "holds.id": str(hold.json()["holds"][0]["id"]), "users.id": str(me["id"]), "tokens.id": token["id"]}


def test_every_endpoint_for_every_caller(site: Site) -> None:
    endpoints: list[Endpoint] = [e for r in ROUTE_MODULES for e in r.endpoints]
    callers = _callers(site)
    values = _values(site, callers)
    checked = 0
    for e in sorted(endpoints, key=_walk_order):
        for name, (principal, token) in callers.items():
            r = _request(site.url, e, token, values)
            where = f"{e.method} {e.path} as {name}: {r.status_code} {r.text[:200]}"
            allowed = e.allows(principal)
            if allowed is None:
                assert r.status_code == 401, where
            elif allowed is False:
                assert r.status_code == 403, where
            else:
                assert r.status_code != 401, where
                assert r.status_code != 403 or (e.method, e.path) in OWNED, where
            for segment_id in _served_footage(site, r.content):
                assert principal is not None and _audited(site, principal.actor, segment_id), where
            checked += 1
    assert checked == len(endpoints) * len(callers)


def test_the_api_description_lists_every_route_and_nothing_else(site: Site) -> None:
    app = make_app(site.server.services)
    declared = {(e.method, openapi_path(e.path)) for e in app[ENDPOINTS]}
    routed = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    gets = {("HEAD", path) for method, path in declared if method == "GET"}  # aiohttp answers HEAD for GET
    assert routed - declared - gets - UNDECLARED == set()
    spec = requests.get(f"{site.url}/api/openapi.json", timeout=10).json()
    described = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert described == declared
    for ops in spec["paths"].values():
        for op in ops.values():
            assert op["summary"] and op["x-liuhen-access"], json.dumps(op)
