"""`liuhen verify PATH...`: check recorder stores, or one evidence package, offline and report per device.

Exit status: 0 when everything is intact, 1 when there is any finding, 2 on
usage errors (bad arguments, unreadable trust file, nothing to verify, a
package that is not a zip file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from liuhen.keyfiles import KeyFileError, read_trust
from liuhen.timeparse import format_ns
from liuhen.verify_folder import verify_paths
from liuhen.verify_package import PackageReport, PackageUnreadable, verify_package
from protocol import errors
from protocol.chain import DeviceReport, Finding, Report

EXIT_INTACT, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="verify recorder stores (segments and manifests) or an evidence package offline",
        description="Verify signatures, media hashes and each device's hash chain; for an evidence package "
        "(a .zip exported by the case server) also its seal, index, receipts and log proofs. "
        "Exit 0: intact; 1: findings; 2: usage error.",
    )
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="a store, a device folder or a manifest; or one evidence package (.zip)")
    p.add_argument("--keys", type=Path, metavar="FILE",
                   help="trust file (see `liuhen keys`); required for stores; for a package, the server keys "
                   "you trust (without it the package's own keys are used and shown for you to compare)")
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
    if any(p.is_file() and p.suffix.lower() == ".zip" for p in args.paths):
        if len(args.paths) != 1:
            return _usage("verify one evidence package (.zip) at a time, without other paths")
        return _run_package(args, args.paths[0])
    if args.keys is None:
        return _usage("the following arguments are required: --keys (only an evidence package carries its own)")
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


def _run_package(args: argparse.Namespace, path: Path) -> int:
    try:
        keys = read_trust(args.keys) if args.keys is not None else None
        result = verify_package(path, keys, args.time_tolerance_ms * 1_000_000)
    except (KeyFileError, PackageUnreadable) as exc:
        return _usage(str(exc))
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
    else:
        print(render_package(result, args.keys))
    return EXIT_INTACT if result.intact else EXIT_FINDINGS


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


def render(report: Report, unattributed: str = "Not attributable to a device:") -> str:
    lines: list[str] = []
    for name in sorted(report.devices):
        lines += _device_block(report.devices[name])
    if report.unattributed:
        lines.append(unattributed)
        lines += [_finding_line(f) for f in report.unattributed]
    codes = sorted({f.code for f in report.findings() if not f.informational})
    if report.intact:
        lines.append(f"RESULT: intact ({len(report.devices)} devices)")
    else:
        lines.append("RESULT: findings: " + ", ".join(f"{c} ({errors.DESCRIPTIONS[c]})" for c in codes))
    return "\n".join(lines)


def render_package(result: PackageReport, keys_file: Path | None) -> str:
    """The package summary, the keys the reader must compare (prominently), then the usual report."""
    lines = [f"Evidence package {result.path}"]
    e = result.export
    if e is not None:
        clip = e["clip"]
        lines += [f"  export {e['id']}, created {format_ns(e['created_ns'])} on server {e['server']} by "
                  f"{e['actor']}, case {e['case'] or '-'}",
                  f"  clip {', '.join(clip['devices'])} from {format_ns(clip['from_ns'])} "
                  f"to {format_ns(clip['to_ns'])}"]
    cp = result.checkpoint
    log = f"; log {cp.origin} at size {cp.size}" if cp else ""
    unverified = "" if result.server_key else " (the seal does NOT verify)"
    lines += [f"  {result.members} files read, {result.member_bytes / 1e6:.1f} MB{log}", "",
              f"  SERVER KEY  {result.sealed_by or '(no readable seal)'}{unverified}",
              f"  LOG KEY     {result.log_vkey or '(none readable)'}"]
    if result.log_key_is_server_key:
        lines.append("              (the log key is the server key)")
    if result.keys_file_trusted:
        lines.append(f"  The package is sealed by a server key from your trust file {keys_file}.")
    else:
        lines += ["  WARNING: these keys come from the package itself, which proves only that whoever holds",
                  "  this server key made it. Compare both with the keys your agency publishes, or verify",
                  "  again with --keys FILE holding the published server key.",
                  "  警告：以上密钥取自证据包本身。请与执法机关公布的密钥核对，或使用 --keys 指定公布的密钥文件。"]  # noqa: RUF001
    lines.append("")
    return "\n".join(lines) + "\n" + render(result.report, "Package:")
