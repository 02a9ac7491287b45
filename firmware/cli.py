"""`liuhen recorder run --config FILE`: the recorder process."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from firmware.config import ConfigError, load_config


def register(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser("recorder", help="the body-worn recorder",
                         description="Run the recorder application on real or simulated hardware.")
    rsub = rec.add_subparsers(dest="recorder_command", metavar="ACTION", required=True)
    run = rsub.add_parser("run", help="run the recorder until SIGTERM",
                          description="Run the recorder with the hardware its configuration names "
                                      "(see docs/recorder.md for every setting and its default).")
    run.add_argument("--config", type=Path, required=True, help="recorder TOML configuration")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"liuhen recorder: {exc}", file=sys.stderr)
        return 2
    from firmware.main import run  # the drivers' libraries load only when the recorder really runs

    return run(config)
