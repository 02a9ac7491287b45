"""`liuhen verify PATH...`: check recorder stores offline and report per device.

Exit status: 0 when everything is intact, 1 when there is any finding, 2 on
usage errors (bad arguments, unreadable trust file, nothing to verify).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from liuhen.keyfiles import KeyFileError, read_trust
from liuhen.verify_folder import verify_paths
from protocol import errors
from protocol.chain import DeviceReport, Finding, Report

EXIT_INTACT, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="verify recorder stores (segments and manifests) offline",
        description="Verify signatures, media hashes and each device's hash chain. "
        "Exit 0: intact; 1: findings; 2: usage error.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="a store, a device folder or a manifest")
    p.add_argument("--keys", type=Path, required=True, metavar="FILE", help="trust file (see `liuhen keys`)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--time-tolerance-ms", type=int, default=2000, metavar="MS",
                   help="how far time may step back between manifests (default 2000)")
    p.set_defaults(func=run)


def _usage(message: str) -> int:
    print(f"liuhen verify: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        return _usage(f"no such file or folder: {', '.join(missing)}")
    zips = [str(p) for p in args.paths if p.is_file() and p.suffix == ".zip"]
    if zips:
        return _usage(f"evidence packages are verified by the case server's tools, not yet here: {', '.join(zips)}")
    try:
        trust = read_trust(args.keys)
    except KeyFileError as exc:
        return _usage(str(exc))
    report = verify_paths(args.paths, trust, args.time_tolerance_ms * 1_000_000)
    if not report.devices and not report.unattributed:
        return _usage(f"no manifests (*.manifest) found under {', '.join(map(str, args.paths))}")
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(render(report))
    return EXIT_INTACT if report.intact else EXIT_FINDINGS


def _finding_line(f: Finding) -> str:
    seq = f"seq {f.seq}" if f.seq is not None else "seq ?"
    return f"  {f.code:24} {seq:10} {f.location or ''}\n  {'':24} {f.message}"


def _device_block(d: DeviceReport) -> list[str]:
    status = "INTACT" if d.intact else f"FINDINGS ({sum(not f.informational for f in d.findings)})"
    span = f"seq {d.first_seq}..{d.last_seq}" if d.manifests else "no valid manifests"
    head = f", head {d.head.hex()[:16]}…" if d.head else ""
    lines = [f"{d.device}: {status}",
             f"  {d.manifests} manifests ({span}), {d.sessions} boot sessions, "
             f"{d.media_files} media files, {d.media_bytes / 1e6:.1f} MB{head}"]
    problems = [f for f in d.findings if not f.informational]
    notes = [f for f in d.findings if f.informational]
    lines += [_finding_line(f) for f in problems]
    lines += [f"  note: {f.code} at seq {f.seq}: {f.message}" for f in notes]
    return lines


def render(report: Report) -> str:
    lines: list[str] = []
    for name in sorted(report.devices):
        lines += _device_block(report.devices[name])
    if report.unattributed:
        lines.append("Not attributable to a device:")
        lines += [_finding_line(f) for f in report.unattributed]
    codes = sorted({f.code for f in report.findings() if not f.informational})
    if report.intact:
        lines.append(f"RESULT: intact ({len(report.devices)} devices)")
    else:
        lines.append("RESULT: findings: " + ", ".join(f"{c} ({errors.DESCRIPTIONS[c]})" for c in codes))
    return "\n".join(lines)
