"""The public transparency log over HTTP (docs/protocol.md §9): `/log/checkpoint`, the C2SP tlog-tiles
`/log/tile/...` (hash tiles and entry bundles), and `/log/proof/<index>`, a C2SP tlog-proof bundle of one
entry against the newest checkpoint. `liuhen log monitor http://host:port/log` reads the first two.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from sqlalchemy import Connection

from protocol.errors import ProtocolError
from protocol.tlog.checkpoint import parse_decimal
from protocol.tlog.tiles import ENTRIES_LEVEL, TILE_WIDTH, parse_tile_path
from server import api
from server.services import services
from server.transparency import LogError

# A full tile never changes. A partial one is replaced by a wider one as the log grows, and clients are told
# to fall back to the full tile once it is gone, so it is not kept.
_FULL = "public, max-age=31536000, immutable"
_PARTIAL = "no-store"

routes = api.Routes("transparency log")


async def _read(request: web.Request, read: Callable[[Connection], bytes]) -> bytes:
    s = services(request)

    def run() -> bytes:
        with s.db.read() as conn:
            return read(conn)

    try:
        return await s.db.run(run)
    except LogError as exc:
        raise api.not_found(str(exc)) from None


@routes.add("GET", "/log/checkpoint", summary="The newest signed checkpoint (C2SP tlog-checkpoint)",
            access=api.PUBLIC)
async def checkpoint(request: web.Request) -> web.Response:
    log = services(request).log
    note = await _read(request, lambda conn: log.checkpoint(conn)[1])
    return web.Response(body=note, content_type="text/plain", charset="utf-8", headers={"Cache-Control": "no-cache"})


@routes.add("GET", "/log/tile/{path:.+}", summary="A hash tile tile/<L>/<N>[.p/<W>] or an entry bundle "
            "tile/entries/<N>[.p/<W>] (C2SP tlog-tiles)", access=api.PUBLIC,
            responses={400: "not the canonical path of a tile", 404: "beyond the log"})
async def tile(request: web.Request) -> web.Response:
    try:
        wanted = parse_tile_path("tile/" + request.match_info["path"])
    except ProtocolError as exc:
        raise api.bad_request(exc.message, exc.code) from None
    log = services(request).log
    read = log.entry_bundle if wanted.level == ENTRIES_LEVEL else log.read_tile
    data = await _read(request, lambda conn: read(conn, wanted))
    cache = _FULL if wanted.width == TILE_WIDTH else _PARTIAL
    return web.Response(body=data, content_type="application/octet-stream", headers={"Cache-Control": cache})


@routes.add("GET", "/log/proof/{index}", summary="A C2SP tlog-proof bundle: entry <index> is in the log as of "
            "the newest checkpoint", access=api.PUBLIC,
            responses={400: "not an index", 404: "not in the checkpointed log"})
async def proof(request: web.Request) -> web.Response:
    index = parse_decimal(request.match_info["index"])
    if index is None:
        raise api.bad_request("an entry index is a decimal without leading zeros")
    log = services(request).log
    bundle = await _read(request, lambda conn: log.proof_bundle(conn, index))
    return web.Response(body=bundle, content_type="text/plain", charset="utf-8", headers={"Cache-Control": "no-cache"})
