"""Run `liuhen ARGS...` with every thread under cProfile (the event loop, the index worker threads, asyncio's
to_thread pool), counting each thread's CPU time (time.thread_time), so waiting for a lock or a queue
costs nothing, and write the merged statistics to FILE when it exits (SIGTERM stops the server cleanly), and
the main thread's (the event loop's) alone to FILE.main.

Usage: python bench/server_profile.py FILE server run --config server.toml --port N
(bench/server.py --profile-server FILE starts the ingest server this way.)
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(profile)
    profile.enable()
    try:
        _run(self)
    finally:
        profile.disable()


def main() -> int:
    out = Path(sys.argv[1])
    sys.argv = ["liuhen", *sys.argv[2:]]
    threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    from liuhen.cli import main as liuhen_main

    main_profile = cProfile.Profile(time.thread_time)
    main_profile.enable()
    try:
        return liuhen_main()
    finally:
        main_profile.disable()
        with _lock:
            stats = pstats.Stats(main_profile)
            for profile in _profiles:
                stats.add(profile)
        stats.dump_stats(str(out))
        pstats.Stats(main_profile).dump_stats(f"{out}.main")  # the event loop's thread alone


if __name__ == "__main__":
    sys.exit(main())
