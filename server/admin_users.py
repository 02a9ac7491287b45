"""`liuhen admin user add|list|disable|token`: accounts from the command line."""

from __future__ import annotations

import argparse
import getpass
import json
import sys

from sqlalchemy import select, update

from server.accounts import API_TOKEN, AccountError, create_user, issue_token
from server.admin_cli import add_config, fail, with_services
from server.api import ROLES
from server.schema import users
from server.services import Services


def register(asub: argparse._SubParsersAction) -> None:
    user = asub.add_parser("user", help="people who sign in", description="Manage user accounts.")
    usub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    add = usub.add_parser("add", help="add a user", description="Add a user with a role.")
    add_config(add)
    add.add_argument("--username", required=True)
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--unit", help="the unit (supervisors see their unit's footage)")
    add.add_argument("--officer-no", help="officer number (officers see footage recorded under it)")
    add.add_argument("--display-name", default="")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (else prompt)")
    add.set_defaults(func=_add)
    lst = usub.add_parser("list", help="list users", description="List users as JSON lines.")
    add_config(lst)
    lst.set_defaults(func=_list)
    dis = usub.add_parser("disable", help="disable a user", description="Disable a user: sign-in and tokens stop.")
    add_config(dis)
    dis.add_argument("--username", required=True)
    dis.set_defaults(func=_disable)
    tok = usub.add_parser("token", help="make an API token", description="Make an API token for a user; "
                          "it is printed once and only its hash is kept.")
    add_config(tok)
    tok.add_argument("--username", required=True)
    tok.add_argument("--name", required=True, help="what the token is for")
    tok.add_argument("--days", type=int, default=90, help="valid for this many days (default 90)")
    tok.set_defaults(func=_token)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass("password: ")


def _add(args: argparse.Namespace) -> int:
    password = _password(args)

    def add(s: Services) -> int:
        try:
            with s.db.write() as conn:
                uid = create_user(conn, s.clock(), args.username, password, args.role, unit=args.unit,
                                  officer_no=args.officer_no, display_name=args.display_name)
        except AccountError as exc:
            return fail(str(exc))
        print(f"user {args.username} (id {uid}, {args.role}) added")
        return 0

    return with_services(args, add)


def _list(args: argparse.Namespace) -> int:
    def show(s: Services) -> int:
        with s.db.read() as conn:
            for row in conn.execute(select(users).order_by(users.c.id)).mappings():
                print(json.dumps({k: row[k] for k in ("id", "username", "role", "unit", "officer_no", "disabled")},
                                 ensure_ascii=False))
        return 0

    return with_services(args, show)


def _disable(args: argparse.Namespace) -> int:
    def disable(s: Services) -> int:
        with s.db.write() as conn:
            done = conn.execute(update(users).where(users.c.username == args.username).values(disabled=True))
        if done.rowcount == 0:
            return fail(f"no user {args.username!r}")
        print(f"user {args.username} disabled")
        return 0

    return with_services(args, disable)


def _token(args: argparse.Namespace) -> int:
    if args.days < 1:
        return fail("--days must be at least 1")

    def make(s: Services) -> int:
        with s.db.write() as conn:
            uid = conn.execute(select(users.c.id).where(users.c.username == args.username,
                                                        users.c.disabled.is_(False))).scalar_one_or_none()
            if uid is None:
                return fail(f"no active user {args.username!r}")
            print(issue_token(conn, s.clock(), API_TOKEN, user_id=uid, name=args.name,
                              expires_ns=s.clock() + args.days * 86400 * 10**9))
        return 0

    return with_services(args, make)
