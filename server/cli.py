"""`liuhen server init|run`: set up and run the case server."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from server.config import ConfigError, ServerConfig, load_config
from server.identity import IdentityError


def register(sub: argparse._SubParsersAction) -> None:
    srv = sub.add_parser("server", help="the case server",
                         description="Set up and run the case server (see docs/server.md).")
    ssub = srv.add_subparsers(dest="server_command", metavar="ACTION", required=True)
    init = ssub.add_parser("init", help="make the data folder, the server key and the index",
                           description="Create the data folder, a new server key (Ed25519, 0600) and the index "
                                       "schema. Prints the key id and the log's verifier key to publish.")
    init.add_argument("--config", type=Path, help="server TOML configuration (default: embedded defaults)")
    init.set_defaults(func=_init)
    run = ssub.add_parser("run", help="run the server until SIGTERM/SIGINT",
                          description="Serve the API, the transparency log and uploads.")
    run.add_argument("--config", type=Path, help="server TOML configuration (default: embedded defaults)")
    run.add_argument("--port", type=int, help="listen on this port instead of the configured one")
    run.set_defaults(func=_run)


def config_or_exit(path: Path | None) -> ServerConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"liuhen: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _init(args: argparse.Namespace) -> int:
    from server.app import open_services
    from server.identity import create_key

    config = config_or_exit(args.config)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if not config.key_path.exists():
            create_key(config.key_path)
        services = open_services(config)
    except IdentityError as exc:
        print(f"liuhen server init: {exc}", file=sys.stderr)
        return 2
    services.db.close()
    print(f"data folder: {config.data_dir}")
    print(f"index: {config.database_url}")
    print(f"server key id: {services.identity.keyid}")
    print(f"log verifier key (publish it): {services.identity.vkey}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from aiohttp import web

    from server.app import make_app, open_services

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config = config_or_exit(args.config)
    try:
        services = open_services(config)
    except IdentityError as exc:
        print(f"liuhen server run: {exc}", file=sys.stderr)
        return 2
    port = config.port if args.port is None else args.port
    web.run_app(make_app(services), host=config.host, port=port, print=lambda m: print(m, flush=True))
    return 0
