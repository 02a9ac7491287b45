"""`liuhen recorder run --config FILE`: the recorder process; `liuhen recorder dock`: dock a store and exit."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.config import ConfigError, load_config

if TYPE_CHECKING:
    from firmware.dock_client import DockSummary


def register(sub: argparse._SubParsersAction) -> None:
    rec = sub.add_parser("recorder", help="the body-worn recorder",
                         description="Run the recorder application on real or simulated hardware.")
    rsub = rec.add_subparsers(dest="recorder_command", metavar="ACTION", required=True)
    run = rsub.add_parser("run", help="run the recorder until SIGTERM",
                          description="Run the recorder with the hardware its configuration names "
                                      "(see docs/recorder.md for every setting and its default).")
    run.add_argument("--config", type=Path, required=True, help="recorder TOML configuration")
    run.set_defaults(func=_run)
    dock = rsub.add_parser("dock", help="dock a recorder's store at a gateway, then exit",
                           description="Dock a recorder that is not running: prove its identity to the gateway, "
                                       "send what it holds without a dock receipt, keep the receipts and free "
                                       "what they name. Exit 0 when nothing is left pending, 1 when something "
                                       "is (the gateway refused, or the link failed), 2 on a usage error.")
    dock.add_argument("--config", type=Path, required=True, help="recorder TOML configuration (device, store, "
                                                                   "key_file, gateway_trust_file)")
    dock.add_argument("--gateway", required=True, metavar="URL", help="the bay's address, e.g. http://10.0.7.1:8701")
    dock.add_argument("--json", action="store_true", help="print the summary as JSON")
    dock.set_defaults(func=_dock)


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"liuhen recorder: {exc}", file=sys.stderr)
        return 2
    from firmware.main import run  # the drivers' libraries load only when the recorder really runs

    return run(config)


def _dock(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    from firmware.main import dock_store  # like `run`: the drivers' libraries load only when needed

    try:
        summary = dock_store(load_config(args.config), args.gateway)
    except (ConfigError, OSError, ValueError) as exc:
        print(f"liuhen recorder dock: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary.to_json(), indent=2) if args.json else _describe(summary))
    return 0 if summary.error is None and not summary.kept else 1


def _describe(s: DockSummary) -> str:
    lines = [f"{s.device} at {s.gateway or '?'} ({s.gateway_url})"]
    if s.clock_offset_ns is not None:
        lines.append(f"  clock: the gateway is {s.clock_offset_ns / 1e9:+.3f} s from this recorder"
                     " (set when the recorder runs docked)")
    if s.offered:
        resumed = f", {len(s.resumed)} resumed" if s.resumed else ""
        lines.append(f"  offered {s.offered}: {s.files_sent} files sent ({s.bytes_sent:,} bytes{resumed}), "
                     f"{s.held} taken without a file or held already, {len(s.refused)} refused")
        lines.extend(f"  seq {seq} arrived flagged: {result}" for seq, result in s.results.items() if result != "ok")
        lines.extend(f"  refused seq {r.seq}: {r.code}: {r.message}" for r in s.refused)
        lines.append(f"  {s.receipts} receipts: {len(s.freed)} freed ({s.freed_bytes:,} bytes), "
                     f"{len(s.kept)} still pending")
    elif s.error is None:
        lines.append("  nothing pending")
    if s.error is not None:
        lines.append(f"  error: {s.error}")
    return "\n".join(lines)
