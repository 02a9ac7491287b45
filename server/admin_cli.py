"""`liuhen admin ...`: administration on the server's index directly, beside a running server
(the first administrator has to come from somewhere). Each area adds its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from server.services import Services

ADMIN_MODULES = ("server.admin_users", "server.admin_enroll", "server.admin_retention")


def register(sub: argparse._SubParsersAction) -> None:
    admin = sub.add_parser("admin", help="administer the case server (users, enrollment, retention)",
                           description="Administer the case server by working on its index directly.")
    asub = admin.add_subparsers(dest="admin_area", metavar="AREA", required=True)
    for name in ADMIN_MODULES:
        importlib.import_module(name).register(asub)


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="server TOML configuration (default: embedded defaults)")


def with_services(args: argparse.Namespace, action: Callable[[Services], int]) -> int:
    """Open the server's services for one command; clear errors exit 2."""
    from server.app import open_services
    from server.cli import config_or_exit
    from server.identity import IdentityError

    config = config_or_exit(args.config)
    try:
        services = open_services(config)
    except IdentityError as exc:
        print(f"liuhen admin: {exc}", file=sys.stderr)
        return 2
    try:
        return action(services)
    finally:
        services.db.close()


def fail(message: str) -> int:
    print(f"liuhen admin: {message}", file=sys.stderr)
    return 2
