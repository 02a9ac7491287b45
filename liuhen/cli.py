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

# command -> the module that registers it. Only the named command's module is imported (`liuhen --help`
# imports them all), so a command starts without loading every part: `liuhen gateway run` never pays for the
# server's database libraries.
COMMAND_MODULES = {
    "verify": "liuhen.verify_cmd",
    "keys": "liuhen.keys_cmd",
    "log": "liuhen.log_cmd",
    "recorder": "firmware.cli",
    "sim": "simulators.cli",
    "server": "server.cli",
    "admin": "server.admin_cli",
    "gateway": "gateway.cli",
}

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors already; keep its message on stderr."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or only of `command` when it is one."""
    parser = _Parser(
        prog="liuhen",
        description="Liuhen (留痕): evidence that leaves a trace and cannot be quietly changed.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
