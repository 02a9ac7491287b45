"""`liuhen sim ...`: run Liuhen against simulated hardware, as a tester would."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    sim = sub.add_parser("sim", help="simulated hardware for testers",
                         description="Run real Liuhen processes against simulated hardware.")
    ssub = sim.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    rec = ssub.add_parser(
        "record", help="run a real recorder process against a simulated camera, GNSS and MCU",
        description="Start `liuhen recorder run` against simulated hardware, press record, wait, press stop. "
                    "The store lands in OUT/store, the device key in OUT/keys, its trust file in OUT/trust.json: "
                    "check it with `liuhen verify OUT --keys OUT/trust.json`.")
    rec.add_argument("--device", default="SIM-0001", help="device id (default SIM-0001)")
    rec.add_argument("--seconds", type=float, required=True, help="how long to record")
    rec.add_argument("--out", type=Path, required=True, help="output folder")
    rec.add_argument("--scenario", type=Path, help="scenario TOML: [gnss] route and faults, [mcu] settings and events")
    rec.add_argument("--faults", nargs="*", default=[], metavar="FAULT",
                     help="power-cut[=N] (kill the recorder N times at random), rtc-reset, storage-full[=BYTES]")
    rec.add_argument("--size", default="320x240", help="video size WxH (default 320x240)")
    rec.add_argument("--segment-seconds", type=int, default=10)
    rec.add_argument("--prerecord-seconds", type=float, default=30.0)
    rec.add_argument("--seed", type=int, help="seed for the random instants of faults")
    rec.add_argument("--gateway", default="", metavar="URL",
                     help="the gateway bay the recorder docks at when the scenario docks it (an [mcu] dock event)")
    rec.add_argument("--gateway-trust", type=Path, metavar="FILE", help="the gateways' trust list (with --gateway)")
    rec.set_defaults(func=_record)


def _record(args: argparse.Namespace) -> int:
    from simulators.record import Faults, SimError, SimRun, record

    try:
        width, height = (int(v) for v in args.size.split("x"))
        run = SimRun(args.device, args.out, args.seconds, args.scenario, Faults.parse(args.faults), width, height,
                     args.segment_seconds, args.prerecord_seconds, args.seed, gateway_url=args.gateway,
                     gateway_trust=args.gateway_trust)
        summary = record(run)
    except (SimError, ValueError, OSError) as exc:
        print(f"liuhen sim record: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    print(f"verify with: liuhen verify {args.out} --keys {run.trust_path}")
    return 0
