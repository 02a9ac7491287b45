"""`liuhen admin device|gateway|key|trust ...`: enrollment from the command line (server/enrollment.py)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection

from protocol.trust import TrustedKey
from server.admin_cli import add_config, fail, with_services
from server.durable import atomic_write
from server.enrollment import (
    DEVICE,
    GATEWAY,
    EnrollmentError,
    enroll,
    enrolled_list,
    parse_public_key,
    resolve_keyid,
    revoke,
)
from server.services import Services

ACTOR = "admin-cli"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def time_ns(text: str) -> int:
    """UTC nanoseconds, or an ISO 8601 time with its zone (the server does not import the `liuhen` tools)."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time or UTC nanoseconds: {text!r}") from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone, e.g. {text}+08:00 or {text}Z")
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


def register(asub: argparse._SubParsersAction) -> None:
    device = asub.add_parser("device", help="recorders the server accepts footage from",
                             description="Enroll and list recorders (body-worn devices).")
    dsub = device.add_subparsers(dest="device_command", metavar="ACTION", required=True)
    _enroll_parser(dsub, DEVICE, "a recorder", unit=True)
    _list_parser(dsub, DEVICE, "recorders")

    gateway = asub.add_parser("gateway", help="docking gateways that upload footage",
                              description="Enroll and list docking gateways.")
    gsub = gateway.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    _enroll_parser(gsub, GATEWAY, "a gateway", unit=False)
    _list_parser(gsub, GATEWAY, "gateways")

    key = asub.add_parser("key", help="enrolled keys", description="Revoke enrolled keys.")
    ksub = key.add_subparsers(dest="key_command", metavar="ACTION", required=True)
    rev = ksub.add_parser("revoke", help="revoke a key; what it signed before stays verifiable",
                          description="Revoke a recorder's or gateway's key from a time, or a recorder's key after "
                                      "its last good sequence number. The change is logged publicly.")
    add_config(rev)
    rev.add_argument("--keyid", required=True, help="key id, or a unique prefix of at least 8 hex digits")
    rev.add_argument("--at", type=time_ns, metavar="TIME",
                     help="from when: ISO 8601 with a zone, or UTC ns (default: now)")
    rev.add_argument("--after-seq", type=int, metavar="N",
                     help="recorder keys: manifests with a larger sequence number are refused")
    rev.add_argument("--reason", required=True, help="why (lost, stolen, retired ...); kept in the audit trail")
    rev.set_defaults(func=_revoke)

    trust = asub.add_parser("trust", help="the trust list", description="Export the server's trust list.")
    tsub = trust.add_subparsers(dest="trust_command", metavar="ACTION", required=True)
    export = tsub.add_parser("export", help="write the trust list JSON for gateways and `liuhen verify`",
                             description="Write every enrolled key (recorders, gateways, this server) with its "
                                         "revocation as a trust file (docs/protocol.md §4).")
    add_config(export)
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    export.set_defaults(func=_export)


def _enroll_parser(sub: argparse._SubParsersAction, role: str, what: str, *, unit: bool) -> None:
    p = sub.add_parser("enroll", help=f"enroll {what} with its public key",
                       description=f"Enroll {what}'s public key (PEM, e.g. the .pub of `liuhen keys gen`). "
                                   f"Enrolling again with a new key adds that key. The change is logged publicly.")
    add_config(p)
    p.add_argument("--id", required=True, help=f"the id {what} signs with")
    p.add_argument("--key", required=True, type=Path, help="public key file (PEM)")
    if unit:
        p.add_argument("--unit", help="the unit the recorder belongs to (its supervisors see its footage)")
    p.add_argument("--label", help="a note for people, e.g. where it is")
    p.set_defaults(func=_enroll, role=role)


def _list_parser(sub: argparse._SubParsersAction, role: str, what: str) -> None:
    p = sub.add_parser("list", help=f"list {what} and their keys", description=f"List {what} as JSON lines.")
    add_config(p)
    p.set_defaults(func=_list, role=role)


def _change(args: argparse.Namespace, done: str, change: Callable[[Connection, Services], TrustedKey]) -> int:
    def run(s: Services) -> int:
        try:
            with s.db.write() as conn:
                key = change(conn, s)
        except EnrollmentError as exc:
            return fail(str(exc))
        print(f"{done} {key.role} {key.owner} key {key.keyid}")
        return 0

    return with_services(args, run)


def _enroll(args: argparse.Namespace) -> int:
    try:
        public_key = parse_public_key(args.key.read_bytes())
    except OSError as exc:
        return fail(f"cannot read {args.key}: {exc.strerror}")
    except EnrollmentError as exc:
        return fail(f"{args.key}: {exc}")
    unit = getattr(args, "unit", None)
    return _change(args, "enrolled", lambda conn, s: enroll(conn, s, role=args.role, owner=args.id,
                                                            public_key=public_key, actor=ACTOR, unit=unit,
                                                            label=args.label))


def _revoke(args: argparse.Namespace) -> int:
    return _change(args, "revoked", lambda conn, s: revoke(conn, s, keyid=resolve_keyid(conn, args.keyid),
                                                            reason=args.reason, actor=ACTOR, at_ns=args.at,
                                                            after_seq=args.after_seq))


def _list(args: argparse.Namespace) -> int:
    def show(s: Services) -> int:
        with s.db.read() as conn:
            for item in enrolled_list(conn, args.role):
                print(json.dumps(item, ensure_ascii=False))
        return 0

    return with_services(args, show)


def _export(args: argparse.Namespace) -> int:
    def export(s: Services) -> int:
        with s.db.read() as conn:
            trust = s.trust.trust(conn)
        data = trust.to_bytes()
        if args.out is None:
            sys.stdout.write(data.decode("utf-8"))
            return 0
        try:
            atomic_write(args.out, data)
        except OSError as exc:
            return fail(f"cannot write {args.out}: {exc.strerror}")
        print(f"trust list with {len(trust.entries())} keys written to {args.out}", file=sys.stderr)
        return 0

    return with_services(args, export)
