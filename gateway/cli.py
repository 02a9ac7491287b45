"""`liuhen gateway init|run|status|checkout`: set up and run the docking gateway, and talk to a running one."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import requests

from gateway.checkout import OFFICER_FIELDS
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.identity import IdentityError, create_key, enroll_command

_CONFIG_HELP = "gateway TOML configuration (default: embedded defaults; docs/gateway.md)"


def register(sub: argparse._SubParsersAction) -> None:
    gw = sub.add_parser("gateway", help="the docking gateway",
                        description="Set up and run the station's docking gateway (see docs/gateway.md).")
    gsub = gw.add_subparsers(dest="gateway_command", metavar="ACTION", required=True)
    init = gsub.add_parser("init", help="make the data folder and the gateway key",
                           description="Create the data folder and a new gateway key (Ed25519, 0600) with its "
                                       "public key beside it, and print the command that enrolls it on the server.")
    init.set_defaults(func=_init)
    run = gsub.add_parser("run", help="run the gateway until SIGTERM/SIGINT",
                          description="Serve the bays, upload to the server, serve the station page and API.")
    run.set_defaults(func=_run)
    status = gsub.add_parser("status", help="what a running gateway is doing",
                             description="Ask the running gateway's station API for its bays, backlog and "
                                         "problems. Exit 0 when it answers, 1 when it does not.")
    status.add_argument("--json", action="store_true", help="print the station API's JSON as it is")
    status.set_defaults(func=_status)
    checkout = gsub.add_parser("checkout", help="assign a recorder to an officer",
                               description="Check a recorder out to an officer: the running gateway signs the "
                                           "assignment and hands it to the recorder when it next docks.")
    checkout.add_argument("--device", required=True, help="the recorder's id")
    for name in OFFICER_FIELDS:
        checkout.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True,
                              help=f"the officer's {name.replace('_', ' ')}")
    checkout.set_defaults(func=_checkout)
    for p in (init, run, status, checkout):
        p.add_argument("--config", type=Path, help=_CONFIG_HELP)


def _config(args: argparse.Namespace) -> GatewayConfig:
    try:
        return load_config(args.config)
    except ConfigError as exc:
        print(f"liuhen: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def _init(args: argparse.Namespace) -> int:
    config = _config(args)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        identity = create_key(config.identity)
    except IdentityError as exc:
        print(f"liuhen gateway init: {exc}", file=sys.stderr)
        return 2
    print(f"data folder: {config.data_dir}")
    print(f"gateway {identity.gateway_id}, key id {identity.keyid}")
    print(f"enroll it on the server: {enroll_command(config.identity)}")
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from gateway.app import serve
    from protocol.trust import TrustFileError

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for chatty in ("amqtt", "transitions"):  # the embedded broker's state machine logs every step
        logging.getLogger(chatty).setLevel(logging.WARNING)
    config = _config(args)
    try:
        asyncio.run(serve(config, ready=lambda _g: print("gateway ready", flush=True)))
    except (IdentityError, TrustFileError, OSError) as exc:
        print(f"liuhen gateway run: {exc}", file=sys.stderr)
        return 2
    return 0


def _station(config: GatewayConfig, method: str, path: str, **kw: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {config.station.token}"} if config.station.token else {}
    url = f"http://{config.station.host}:{config.station.port}{path}"
    return requests.request(method, url, headers=headers, timeout=10, **kw)


def _status(args: argparse.Namespace) -> int:
    config = _config(args)
    try:
        r = _station(config, "GET", "/api/station")
        r.raise_for_status()
    except requests.RequestException as exc:
        print(f"liuhen gateway status: the gateway does not answer on {config.station.host}:"
              f"{config.station.port}: {exc}", file=sys.stderr)
        return 1
    doc = r.json()
    if args.json:
        print(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        _print_status(doc)
    return 0


def _print_status(doc: dict[str, Any]) -> None:
    backlog = doc.get("backlog", {})
    print(f"gateway {doc.get('gateway')}: backlog {backlog.get('count', 0)} segments, "
          f"{backlog.get('media_bytes', 0) / 1e6:.1f} MB ({backlog.get('flagged', 0)} flagged, "
          f"{backlog.get('held_back', 0)} held back for a person)")
    if doc.get("upload_error"):
        print(f"  upload: {doc['upload_error']}")
    for bay in doc.get("bays", []):
        if bay.get("device"):
            print(f"  {bay['bay']}: {bay['device']} {bay['state']}, files {bay['files_done']}/{bay['files_total']},"
                  f" {bay['bytes_done'] / 1e6:.1f}/{bay['bytes_total'] / 1e6:.1f} MB")
    for problem in doc.get("problems", [])[:10]:
        print(f"  problem: {problem.get('code')}: {problem.get('message')}")


def _checkout(args: argparse.Namespace) -> int:
    config = _config(args)
    body = {"device": args.device, "officer": {name: getattr(args, name) for name in OFFICER_FIELDS}}
    try:
        r = _station(config, "POST", "/api/checkouts", json=body)
    except requests.RequestException as exc:
        print(f"liuhen gateway checkout: the gateway does not answer: {exc}", file=sys.stderr)
        return 1
    if r.status_code >= 400:
        print(f"liuhen gateway checkout: refused: {r.text}", file=sys.stderr)
        return 2 if r.status_code < 500 else 1
    print(json.dumps(r.json(), indent=2, ensure_ascii=False))
    return 0
