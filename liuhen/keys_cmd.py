"""`liuhen keys`: make signing keys and the trust files that verification reads."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from liuhen.keyfiles import KeyFileError, read_public_key, read_trust, write_private_key, write_trust
from liuhen.timeparse import format_ns, parse_time_ns
from protocol import signatures
from protocol.trust import ROLES, Revocation, TrustList, trusted_key


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="make keys and trust files",
                          description="Make signing keys and trust files for tests and for enrollment.")
    ksub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    gen = ksub.add_parser("gen", help="generate a private key (PEM, mode 0600) and its public key (.pub)")
    gen.add_argument("--out", type=Path, required=True, help="private key file to create")
    gen.add_argument("--alg", choices=signatures.ALGORITHMS, default=signatures.ED25519)
    gen.set_defaults(func=_gen)

    add = ksub.add_parser("trust-add", help="add a key to a trust file (created if missing)")
    add.add_argument("--trust", type=Path, required=True, help="trust file")
    add.add_argument("--key", type=Path, required=True, help="public or private key file (PEM)")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--owner", required=True, help="device, gateway or server id the key belongs to")
    add.add_argument("--valid-from", type=parse_time_ns, metavar="TIME", help="ISO 8601 time")
    add.add_argument("--valid-until", type=parse_time_ns, metavar="TIME", help="ISO 8601 time")
    add.set_defaults(func=_trust_add)

    rev = ksub.add_parser("revoke", help="revoke a key in a trust file; earlier signatures stay valid")
    rev.add_argument("--trust", type=Path, required=True)
    rev.add_argument("--keyid", required=True, help="key id, or a unique prefix of at least 8 hex digits")
    rev.add_argument("--at", type=parse_time_ns, default="now", metavar="TIME", help="when (default now)")
    rev.add_argument("--after-seq", type=int, help="last device sequence number signed before the revocation")
    rev.add_argument("--reason", default="", help="why (lost, stolen, retired ...)")
    rev.set_defaults(func=_revoke)

    show = ksub.add_parser("list", help="list the keys in a trust file")
    show.add_argument("--trust", type=Path, required=True)
    show.set_defaults(func=_list)


def _fail(message: str) -> int:
    print(f"liuhen keys: {message}", file=sys.stderr)
    return 2


def _gen(args: argparse.Namespace) -> int:
    key = signatures.generate(args.alg)
    pub_path = args.out.with_name(args.out.name + ".pub")
    if pub_path.exists():
        return _fail(f"{pub_path} already exists: refusing to overwrite a key")
    try:
        write_private_key(args.out, key)
    except (KeyFileError, OSError) as exc:
        return _fail(str(exc))
    pub_path.write_bytes(signatures.public_pem(key.public_key()))
    print(f"{args.alg} key {signatures.key_id(key.public_key())}")
    print(f"private: {args.out} (mode 0600)\npublic:  {pub_path}")
    return 0


def _load_or_new(path: Path) -> TrustList:
    return read_trust(path) if path.exists() else TrustList()


def _trust_add(args: argparse.Namespace) -> int:
    try:
        trust = _load_or_new(args.trust)
        key = trusted_key(read_public_key(args.key), args.role, args.owner, args.valid_from, args.valid_until)
        trust.add(key)
        write_trust(args.trust, trust)
    except (KeyFileError, ValueError, OSError) as exc:
        return _fail(str(exc))
    print(f"added {key.alg} key {key.keyid} for {key.role} {key.owner} to {args.trust}")
    return 0


def _find(trust: TrustList, prefix: str) -> str:
    if len(prefix) < 8:
        raise ValueError("give at least 8 hex digits of the key id")
    matches = [k.keyid for k in trust.entries() if k.keyid.startswith(prefix.lower())]
    if len(matches) != 1:
        raise ValueError(f"{len(matches)} keys match {prefix!r}; give more digits")
    return matches[0]


def _revoke(args: argparse.Namespace) -> int:
    try:
        trust = read_trust(args.trust)
        keyid = _find(trust, args.keyid)
        trust.revoke(keyid, Revocation(args.at, args.after_seq, args.reason))
        write_trust(args.trust, trust)
    except (KeyFileError, ValueError, OSError) as exc:
        return _fail(str(exc))
    after = f" after seq {args.after_seq}" if args.after_seq is not None else ""
    print(f"revoked {keyid} at {format_ns(args.at)}{after}")
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        trust = read_trust(args.trust)
    except KeyFileError as exc:
        return _fail(str(exc))
    for k in trust.entries():
        state = "valid"
        if k.revoked:
            after = f" after seq {k.revoked.after_seq}" if k.revoked.after_seq is not None else ""
            state = f"revoked {format_ns(k.revoked.at_ns)}{after} {k.revoked.reason}".rstrip()
        print(f"{k.keyid}  {k.alg:7}  {k.role:7}  {k.owner}  {state}")
    return 0
