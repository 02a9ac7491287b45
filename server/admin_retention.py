"""`liuhen admin retention run`: purge footage past retention from the command line, or see what a run
would purge (--dry-run), as of now or, for a dry run, any moment."""

from __future__ import annotations

import argparse
import json

from server import retention
from server.admin_cli import add_config, fail, with_services
from server.audit import ReasonError
from server.services import Services
from server.times import parse_time_ns

ACTOR = "admin-cli"  # how audit records and tombstones name this command


def _time(text: str) -> int:
    try:
        return parse_time_ns(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(asub: argparse._SubParsersAction) -> None:
    ret = asub.add_parser("retention", help="purge footage past retention",
                          description="Purge footage past retention (see docs/server.md, Retention).")
    rsub = ret.add_subparsers(dest="retention_command", metavar="ACTION", required=True)
    run = rsub.add_parser("run", help="purge now, or report what would go (--dry-run)",
                          description="Purge media linked to no case, under no hold, not quarantined and older than "
                                      "retention_days: a tombstone in the transparency log for each, then the blob "
                                      "deleted. Prints a JSON report: what goes, bytes freed, what stays and why.")
    add_config(run)
    run.add_argument("--dry-run", action="store_true", help="report only; change nothing")
    run.add_argument("--now", type=_time, metavar="TIME",
                     help="as of this time (ISO 8601 with a zone, or UTC ns; default: now); only a dry run may "
                          "look ahead")
    run.add_argument("--reason", help="why this run (required unless --dry-run); kept in the audit trail")
    run.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if not args.dry_run and not args.reason:
        return fail("--reason is required (it is kept in the audit trail), or use --dry-run")

    def act(s: Services) -> int:
        as_of = s.clock() if args.now is None else args.now
        if args.dry_run:
            with s.db.read() as conn:
                report = retention.plan(conn, s.config.retention_days, as_of).report()
        else:
            try:
                report = retention.run(s, actor=ACTOR, reason=args.reason, as_of_ns=as_of)
            except (retention.RetentionError, ReasonError) as exc:
                return fail(str(exc))
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0

    return with_services(args, act)
