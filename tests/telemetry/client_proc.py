"""A recorder's telemetry in a process of its own, for the tests that kill it.

    python -m tests.telemetry.client_proc DEVICE URL OUTBOX --events N [--wait-online]

Publishes N events, prints "queued <last n>", then (with --wait-online) waits for the connection and
prints "online"; then blocks until killed. Each line is flushed so the test can act on it at once.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from firmware.telemetry import MARKER, Telemetry


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("device")
    parser.add_argument("url")
    parser.add_argument("outbox", type=Path)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--wait-online", action="store_true")
    args = parser.parse_args()
    telemetry = Telemetry(args.device, args.url, args.outbox, reconnect_delay=(0.05, 0.2))
    telemetry.start()
    last = 0
    for i in range(args.events):
        last = telemetry.publish_event(MARKER, index=i)
    print(f"queued {last}", flush=True)
    if args.wait_online:
        if not telemetry.wait_connected(10.0):
            return 1
        print("online", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
