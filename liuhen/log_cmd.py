"""`liuhen log monitor URL --state FILE`: watch a case server's public transparency log.

Exit status: 0 when the log checks out, 1 when there is any finding, 2 when the
log could not be checked (arguments, state or trust file, network).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from liuhen.keyfiles import KeyFileError, read_trust
from liuhen.log_monitor import (
    HOUR_NS,
    MonitorError,
    http_fetcher,
    load_state,
    monitor,
    render,
    save_state,
    start_state,
)

EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def _hours(text: str) -> float:
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not hours >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"not a number of hours: {text!r}")
    return hours


def register(sub: argparse._SubParsersAction) -> None:
    log = sub.add_parser("log", help="watch a case server's public transparency log",
                         description="Tools for the case server's public transparency log.")
    lsub = log.add_subparsers(dest="log_command", metavar="ACTION", required=True)
    mon = lsub.add_parser(
        "monitor",
        help="check that the log only grows and that every recorder's sequence is whole",
        description="Read the log's checkpoint, tiles and entry bundles under URL and check them against the "
        "state of the previous run: the log did not shrink or change, every new entry is under the signed "
        "root, no recorder has two manifests for one sequence number, and no sequence numbers stay missing "
        "unexplained. Exit 0: clean; 1: findings; 2: the log could not be checked.",
    )
    mon.add_argument("url", metavar="URL", help="where the log is published (URL/checkpoint, URL/tile/...)")
    mon.add_argument("--state", type=Path, required=True, metavar="FILE",
                     help="state file: created on the first run, updated when the log checks out")
    mon.add_argument("--key", metavar="VKEY",
                     help="the log's verifier key <origin>+<key id>+<base64>; needed on the first run only")
    mon.add_argument("--keys", type=Path, metavar="TRUSTFILE",
                     help="also verify every entry's signature; the trust file needs at least the server's key "
                     "(keys enrolled through the log are learned). Give it on every run of a state or never")
    mon.add_argument("--gap-grace", type=_hours, default=24.0, metavar="HOURS",
                     help="how long sequence numbers may be missing before it is a finding (default 24)")
    mon.add_argument("--json", action="store_true", help="print the report as JSON")
    mon.set_defaults(func=run_monitor)


def run_monitor(args: argparse.Namespace) -> int:
    try:
        state = start_state(load_state(args.state), args.key, with_keys=args.keys is not None)
        trust = read_trust(args.keys) if args.keys is not None else None
        report = monitor(http_fetcher(args.url), state, trust=trust, now_ns=time.time_ns(),
                         gap_grace_ns=round(args.gap_grace * HOUR_NS))
        if report.state is not None:
            save_state(args.state, report.state)
    except (MonitorError, KeyFileError) as exc:
        print(f"liuhen log monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(render(report))
    return EXIT_CLEAN if report.clean else EXIT_FINDINGS
