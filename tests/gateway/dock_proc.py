"""The gateway's dock in a process of its own, for the tests that kill it (SIGKILL) mid-transfer.

    python -m tests.gateway.dock_proc --spool DIR --key KEY --trust TRUST --gateway ID --port PORT

Serves one bay on 127.0.0.1:PORT, prints "ready" (flushed) once it listens, and runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from gateway.bays import Bays
from gateway.device_trust import DeviceTrust
from gateway.dock import Dock, DockSettings, start_bays
from gateway.spool import Spool
from hardware.keystore import read_private_key
from protocol import signatures


async def serve(args: argparse.Namespace) -> None:
    bays = Bays(["bay-1"], time.time_ns, time.monotonic_ns)
    dock = Dock(DockSettings(args.gateway, reserve_bytes=0, chunk_bytes=4096), Spool(args.spool),
                signatures.KeySigner(read_private_key(args.key)), DeviceTrust(args.trust), bays)
    await start_bays(dock, {"bay-1": ("127.0.0.1", args.port)})
    print("ready", flush=True)
    await asyncio.Event().wait()


def main() -> int:
    parser = argparse.ArgumentParser()
    for name in ("spool", "key", "trust"):
        parser.add_argument(f"--{name}", type=Path, required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
