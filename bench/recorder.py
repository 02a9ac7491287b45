"""Benchmark of the recorder firmware.

Figures:
- `firmware_vs_fsync_write`: the firmware's own cost beside encoding: the same
  encoded packets go through the recorder (segmenting into fragmented MP4,
  hashing while writing, signing manifests, fsynced fragment by fragment,
  atomic commits) and, as the baseline, are written as plain bytes to a file on
  the same disk with an fsync at the same cadence (every half second of media),
  in the same run. Throughput ratio, target >= 0.8.
- `recorders_realtime`: how many simulated recorders (320x240 camera encoding in
  real time, a real `liuhen recorder run` process each, recording from boot)
  this machine sustains (trying 1, 2, 4, 8, 12, 16, 24, 32, 48): the largest count whose every camera captured its
  frames within 2% of their media time and whose every frame reached a segment.

Usage: python bench/recorder.py [--seconds 60] [--size 1280x720] [--realtime-seconds 20] [--max-recorders 48]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/protocol.py is named after the package it measures: keep this folder off
# the import path so that `protocol` is the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from firmware.config import RecorderConfig  # noqa: E402
from firmware.recorder import Recorder  # noqa: E402
from firmware.segmenter import FRAGMENT_US  # noqa: E402
from firmware.store import RecorderStore  # noqa: E402
from hardware.media import EncodedPacket, StreamInfo  # noqa: E402
from protocol import manifest, signatures  # noqa: E402
from simulators.camera import SimulatedCamera  # noqa: E402

RATIO_TARGET = 0.8
ROOT = Path(__file__).resolve().parent.parent


def result_ratio(name: str, ratio: float, target: float) -> str:
    return f"RESULT {name} ratio={ratio:.3f} target={target} {'PASS' if ratio >= target else 'FAIL'}"


def encode(seconds: int, width: int, height: int) -> tuple[list[StreamInfo], list[EncodedPacket]]:
    camera = SimulatedCamera(width=width, height=height, speed=None, stop_at_frames=seconds * 30, clock=lambda: 0)
    camera.start()
    packets = []
    while (p := camera.read(timeout=30)) is not None:
        info = next(s for s in camera.streams() if s.kind == p.kind)
        packets.append(EncodedPacket(p.kind, p.data, p.pts, p.dts, p.duration, p.keyframe, info.to_ns(p.pts)))
    return camera.streams(), packets


class Replay:
    """A MediaSource over packets already encoded, so only the firmware's work is timed."""

    def __init__(self, streams: list[StreamInfo], packets: list[EncodedPacket]) -> None:
        self._streams, self._packets = streams, packets

    def streams(self) -> list[StreamInfo]:
        return self._streams

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def read(self, timeout: float | None = None) -> EncodedPacket | None:
        return None

    def set_overlay(self, lines: list[str]) -> None: ...


def firmware_pass(folder: Path, streams: list[StreamInfo], packets: list[EncodedPacket]) -> float:
    signer = signatures.KeySigner(signatures.generate())
    config = RecorderConfig(device="BENCH-1", store=folder, prerecord_seconds=0)
    now = [0]
    rec = Recorder(config, RecorderStore(folder, "BENCH-1"), signer, Replay(streams, packets),
                   monotonic_ns=lambda: now[0], wall_ns=lambda: 1_764_000_000_000_000_000 + now[0])
    rec.boot()
    start = time.perf_counter()
    rec.start_recording(0)
    for p in packets:
        now[0] = p.capture_ns
        rec.handle_packet(p)
    rec.shutdown()
    elapsed = time.perf_counter() - start
    assert sum(m.media["frames"] for m in rec.committed if m.kind == manifest.SEGMENT) == \
        sum(p.kind == "video" for p in packets)
    return elapsed


def baseline_pass(folder: Path, packets: list[EncodedPacket]) -> float:
    """The same bytes, written and fsynced every half second of media, to a file on the same disk."""
    start = time.perf_counter()
    fd = os.open(folder / "baseline.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        next_sync = FRAGMENT_US * 1000
        for p in packets:
            os.write(fd, p.data)
            if p.capture_ns >= next_sync:
                os.fsync(fd)
                next_sync += FRAGMENT_US * 1000
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def firmware_ratio(seconds: int, width: int, height: int, rounds: int) -> float:
    streams, packets = encode(seconds, width, height)
    total = sum(len(p.data) for p in packets)
    best_fw = best_base = float("inf")
    for i in range(rounds):
        with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
            best_base = min(best_base, baseline_pass(Path(tmp), packets))
        with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
            best_fw = min(best_fw, firmware_pass(Path(tmp), streams, packets))
        print(f"round {i + 1}: {total / 1e6:.1f} MB; fsync write {total / best_base / 1e6:.1f} MB/s, "
              f"firmware {total / best_fw / 1e6:.1f} MB/s", flush=True)
    return best_base / best_fw


def _recorder_config(folder: Path, n: int) -> Path:
    key = folder / f"rec{n}.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signatures.private_pem(signatures.generate()))
    config = folder / f"rec{n}.toml"
    config.write_text(f"""[recorder]
device = "BENCH-{n:02d}"
store = "{folder / f'store{n}'}"
key_file = "{key}"
camera_driver = "simulators.camera:SimulatedCamera"
camera_options = {{ width = 320, height = 240 }}
gnss_port = ""
mcu_port = ""
record_at_boot = true
""")
    return config


def sustains(count: int, seconds: float) -> bool:
    """Run `count` recorder processes for `seconds`; True when every one kept real time."""
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        folder = Path(tmp)
        procs = []
        for n in range(count):
            log = open(folder / f"rec{n}.log", "wb")  # noqa: SIM115 - handed to the child
            procs.append(subprocess.Popen([sys.executable, "-m", "liuhen", "recorder", "run", "--config",
                                           str(_recorder_config(folder, n))], stdout=log, stderr=log, cwd=ROOT))
            log.close()
        time.sleep(seconds)
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        ok = True
        for n in range(count):
            text = (folder / f"rec{n}.log").read_text()
            produced = [int(x) for x in re.findall(r"camera produced (\d+) video frames", text)]
            chain = [manifest.parse(signatures.open_envelope(p.read_bytes()).payload)
                     for p in (folder / f"store{n}" / f"BENCH-{n:02d}").glob("*.manifest")]
            segments = sorted((m for m in chain if m.kind == manifest.SEGMENT), key=lambda m: m.seq)
            recorded = sum(m.media["frames"] for m in segments)
            media_ns = sum(m.media["duration_ns"] for m in segments)
            # A camera that falls behind captures its frames later than their media time: the
            # capture span then outgrows the media it holds.
            span_ns = segments[-1].time["mono_end_ns"] - segments[0].time["mono_start_ns"] if segments else 0
            kept_up = bool(produced) and recorded == produced[0] and media_ns > 0 and span_ns <= media_ns * 1.02
            print(f"  {count} recorders: #{n} {recorded} frames in segments of {produced[0] if produced else 0} "
                  f"produced; captured over {span_ns / 1e9:.2f} s for {media_ns / 1e9:.2f} s of media", flush=True)
            ok = ok and kept_up
        return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="media encoded for the ratio (default 60)")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--realtime-seconds", type=float, default=20.0)
    parser.add_argument("--max-recorders", type=int, default=48)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    ratio = firmware_ratio(args.seconds, width, height, args.rounds)
    best = 0
    for count in (c for c in (1, 2, 4, 8, 12, 16, 24, 32, 48) if c <= args.max_recorders):
        if not sustains(count, args.realtime_seconds):
            break
        best = count
    print(result_ratio("firmware_vs_fsync_write", ratio, RATIO_TARGET))
    print(f"RESULT recorders_realtime value={best} unit=recorders")


if __name__ == "__main__":
    main()
