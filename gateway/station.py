"""The station page and its API (aiohttp), for the people at the station and their LAN.

    GET  /                the station page (HTML, reloads itself)
    GET  /checkout        the check-out form;  POST /checkout  its submission (a form; 303 back to /)
    GET  /api/station     the same as the page, as JSON (station_view.view_json)
    GET  /api/checkouts   check-outs, newest first (?device=ID for one recorder)
    POST /api/checkouts   {"device": ID, "officer": {"number", "name", "unit_code", "unit_name"}} -> 201

What protects it: it listens on 127.0.0.1 unless told otherwise. Without a token it answers only requests
addressed to an IP address or `localhost`, so that a web page elsewhere cannot reach it through a DNS name
of its own pointing here (DNS rebinding). With a token (`StationSettings.token`) every request needs it:
`Authorization: Bearer <token>`, or the cookie a browser gets by opening `/?token=<token>` once. A POST
from another site's page is refused (its Origin differs), and the JSON API takes only application/json,
which another site's page cannot send without asking first (CORS), and is not allowed to.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web

from gateway.checkout import OFFICER_FIELDS, CheckoutError, Checkouts, parse_officer
from gateway.station_page import render_checkout_form, render_station
from gateway.station_view import StationSources, build_view, view_json

log = logging.getLogger("liuhen.gateway.station")

COOKIE = "liuhen_station"
MAX_BODY = 64 * 1024
_TOKEN_MIN = 16


class StationConfigError(ValueError):
    pass


@dataclass(frozen=True)
class StationSettings:
    """The station page and API (the `[gateway.station]` section)."""

    host: str = "127.0.0.1"  # the bind address: the station LAN's address opens it to the station's PCs
    port: int = 8490
    token: str | None = None  # when set, every request must carry it (Bearer header or the page's cookie)
    refresh_s: int = 5  # the page reloads itself this often

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise StationConfigError(f"station port {self.port} is not 0-65535")
        if self.token is not None and (len(self.token) < _TOKEN_MIN or not self.token.isascii()
                                       or not self.token.isprintable() or " " in self.token):
            raise StationConfigError(f"the station token must be at least {_TOKEN_MIN} printable ASCII characters "
                                     "without spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe())')")
        if not 1 <= self.refresh_s <= 3600:
            raise StationConfigError(f"refresh_s must be 1-3600, not {self.refresh_s}")


SETTINGS = web.AppKey("settings", StationSettings)
SOURCES = web.AppKey("sources", StationSources)
CHECKOUTS = web.AppKey("checkouts", Checkouts)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_station_app(sources: StationSources, checkouts: Checkouts, settings: StationSettings) -> web.Application:
    app = web.Application(middlewares=[_guard], client_max_size=MAX_BODY)
    app[SETTINGS], app[SOURCES], app[CHECKOUTS] = settings, sources, checkouts
    app.router.add_get("/", _page)
    app.router.add_get("/checkout", _checkout_form)
    app.router.add_post("/checkout", _checkout_submitted)
    app.router.add_get("/api/station", _station_json)
    app.router.add_get("/api/checkouts", _checkouts_json)
    app.router.add_post("/api/checkouts", _checkout_json)
    return app


async def start_station(sources: StationSources, checkouts: Checkouts, settings: StationSettings) -> web.AppRunner:
    """Listen on settings.host:port; the caller ends it with `await runner.cleanup()`."""
    runner = web.AppRunner(make_station_app(sources, checkouts, settings), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.port).start()
    log.info("station page on http://%s:%d/%s", settings.host, settings.port,
             " (token required)" if settings.token else "")
    return runner


# -- pages

async def _page(request: web.Request) -> web.Response:
    view = await build_view(request.app[SOURCES])
    return web.Response(text=render_station(view, request.app[SETTINGS].refresh_s), content_type="text/html")


async def _checkout_form(request: web.Request) -> web.Response:
    return await _form_page(request, {}, None)


async def _checkout_submitted(request: web.Request) -> web.Response:
    form = {name: value for name, value in (await request.post()).items() if isinstance(value, str)}
    try:
        officer = parse_officer({name: form.get(name, "") for name in OFFICER_FIELDS})
        await asyncio.to_thread(request.app[CHECKOUTS].check_out, form.get("device", "").strip(), officer)
    except CheckoutError as exc:
        return await _form_page(request, form, str(exc), status=400)
    raise web.HTTPSeeOther("/")


async def _form_page(request: web.Request, values: Mapping[str, str], error: str | None,
                     status: int = 200) -> web.Response:
    sources = request.app[SOURCES]
    devices = [r.device for r in sources.recorders()] + [b.device for b in sources.bays() if b.device]
    return web.Response(text=render_checkout_form(devices, values, error), content_type="text/html", status=status)


# -- API

async def _station_json(request: web.Request) -> web.Response:
    return web.json_response(view_json(await build_view(request.app[SOURCES])))


async def _checkouts_json(request: web.Request) -> web.Response:
    device = request.query.get("device")
    made = await asyncio.to_thread(request.app[CHECKOUTS].list, device)
    return web.json_response({"checkouts": [c.to_json() for c in made]})


async def _checkout_json(request: web.Request) -> web.Response:
    if request.content_type != "application/json":
        return _refused(415, "checkout.invalid", "send the check-out as application/json")
    try:
        body = json.loads(await request.read())
        if not isinstance(body, dict) or set(body) != {"device", "officer"} or not isinstance(body["device"], str):
            raise CheckoutError('the body must be {"device": "...", "officer": {...}}')
        made = await asyncio.to_thread(request.app[CHECKOUTS].check_out, body["device"],
                                       parse_officer(body["officer"]))
    except (CheckoutError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _refused(400, "checkout.invalid", str(exc))
    return web.json_response(made.to_json(), status=201)


def _refused(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


# -- who may ask

@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS]
    if settings.token is None:
        if not _direct_host(request.host):
            return _denied(request, 403, "open the station page by its IP address or localhost, "
                                         "or give the station a token")
    elif request.method == "GET" and "token" in request.query:
        return _sign_in(request, settings.token)
    elif not _has_token(request, settings.token):
        return _denied(request, 401, "this station needs its token: open /?token=<token> once, "
                                     "or send Authorization: Bearer <token>")
    if request.method == "POST" and not _same_origin(request):
        return _denied(request, 403, "a check-out can only come from the station's own page")
    return await handler(request)


def _sign_in(request: web.Request, token: str) -> web.Response:
    """A browser opened a link with the token: keep it in a cookie, and take it out of the address bar."""
    if not hmac.compare_digest(request.query["token"].encode(), token.encode()):
        return _denied(request, 401, "wrong station token")
    redirect = web.Response(status=303, headers={"Location": request.path})
    redirect.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
    return redirect


def _has_token(request: web.Request, token: str) -> bool:
    auth = request.headers.get("Authorization", "")
    given = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else request.cookies.get(COOKIE, "")
    return hmac.compare_digest(given.encode(), token.encode())


def _direct_host(host: str) -> bool:
    """Host names an IP address or localhost (with or without a port)."""
    try:
        name = urlsplit(f"//{host}").hostname or ""
        return name == "localhost" or ipaddress.ip_address(name) is not None
    except ValueError:  # not an address (ip_address), or a broken one like "[::1" (urlsplit)
        return False


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    return origin is None or origin == f"{request.scheme}://{request.host}"


def _denied(request: web.Request, status: int, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return _refused(status, "station.denied", message)
    return web.Response(status=status, text=message, content_type="text/plain")

