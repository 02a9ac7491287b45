"""The `liuhen` command: one entry point, each part adds its own subcommands.

A part joins by naming a module in COMMAND_MODULES that has
`register(subparsers) -> None`; each subcommand sets `func(args) -> int` as its
handler. Modules are imported only when the command line is parsed, so a part
whose optional libraries are missing does not break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = (
    "liuhen.verify_cmd",
    "liuhen.keys_cmd",
    "liuhen.log_cmd",
    "firmware.cli",
    "simulators.cli",
    "server.cli",
    "server.admin_cli",
    "gateway.cli",
)

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message on stderr."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="liuhen",
        description="Liuhen (留痕): evidence that leaves a trace and cannot be quietly changed.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
