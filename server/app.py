"""The case server's aiohttp application: services, authentication, routes, startup recovery."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from server import (
    accounts,
    api,
    audit_trail,
    cases,
    enrollment,
    exports,
    gateways,
    holds,
    ingest,
    log_http,
    playback,
    retention,
    search,
    users,
)
from server.blobs import FileBlobStore
from server.config import ServerConfig
from server.database import Database, upgrade
from server.identity import load_identity
from server.services import SERVICES, Services
from server.transparency import TransparencyLog

log = logging.getLogger("liuhen.server")
ROUTE_MODULES: list[api.Routes] = [accounts.routes, users.routes, playback.routes, exports.routes, audit_trail.routes,
                                  enrollment.routes, gateways.routes, ingest.routes, log_http.routes,
                                  search.routes, cases.routes, holds.routes, retention.routes]
VERSION = "0.1.0"
# A manifest and a dock receipt travel in tus Upload-Metadata: allow headers well above aiohttp's 8 KiB.
MAX_HEADER_BYTES = 256 * 1024
ENDPOINTS = web.AppKey("endpoints", list)


def open_services(config: ServerConfig, clock: Callable[[], int] = time.time_ns) -> Services:
    """Connect the index (migrating it to the newest schema), the blob store and the server key (enrolled
    in the trust list the first time)."""
    identity = load_identity(config.key_path, config.name, config.origin)
    db = Database(config.database_url, config.workers)
    upgrade(db.engine)
    transparency = TransparencyLog(identity)
    services = Services(config, db, FileBlobStore(config.blob_dir), identity, transparency, clock)
    with db.write() as conn:
        transparency.initialize(conn, clock())
        enrollment.enroll_server_key(conn, services)
    return services


@web.middleware
async def _authenticate(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    request[api.PRINCIPAL] = await accounts.authenticate(request)
    return await handler(request)


@web.middleware
async def _errors(request: web.Request,
                  handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        raise api.ApiError(500, "internal", "the server failed; the error is in its log") from None


async def _openapi(request: web.Request) -> web.Response:
    return web.json_response(api.openapi(request.app[ENDPOINTS], VERSION))


def make_app(services: Services) -> web.Application:
    app = web.Application(middlewares=[_errors, _authenticate], client_max_size=1024**2,
                          handler_args={"max_field_size": MAX_HEADER_BYTES, "max_line_size": MAX_HEADER_BYTES})
    app[SERVICES] = services
    app[ENDPOINTS] = api.install(app, ROUTE_MODULES)
    app[ingest.INGEST] = ingest.Ingest(services)
    app.cleanup_ctx.append(ingest.maintenance)
    app.router.add_get("/api/openapi.json", _openapi)

    async def close(_app: web.Application) -> None:
        services.db.close()

    app.on_cleanup.append(close)
    return app
