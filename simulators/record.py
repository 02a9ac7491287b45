"""`liuhen sim record`: a real recorder process against simulated hardware.

The recorder runs as its own process (`liuhen recorder run`), unchanged: it
opens the simulated GNSS receiver and supervisor MCU on ptys with its real
serial drivers, and its configuration names the simulated camera as its camera
driver. This module plays the officer: it presses record on the MCU, waits,
and switches the recorder off while it records (SIGTERM: the open segment is
closed and signed); with power-cut faults it kills the recorder process
(SIGKILL, as a pulled battery would) at random instants and starts it again,
pressing record each time. Given a gateway, the recorder docks there whenever
the scenario puts it in the dock (the MCU's `dock` action: external power).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hardware.keystore import read_private_key
from protocol import layout, manifest, signatures
from protocol.manifest import Manifest
from protocol.trust import TrustList, parse_trust_list, trusted_key
from simulators.gnss import PATROL, SimulatedGnss, load_scenario
from simulators.mcu import SimulatedMcu

READY_MARK = "up: session"
STOPPED_MARK = "stopped cleanly"


class SimError(RuntimeError):
    pass


@dataclass
class Faults:
    power_cuts: int = 0
    rtc_reset: bool = False
    storage_quota_bytes: int | None = None

    @classmethod
    def parse(cls, specs: list[str]) -> Faults:
        faults = cls()
        for spec in specs:
            name, _, value = spec.partition("=")
            if name == "power-cut":
                faults.power_cuts = int(value or 1)
            elif name == "rtc-reset":
                faults.rtc_reset = True
            elif name == "storage-full":
                faults.storage_quota_bytes = int(value or 8_000_000)
            else:
                raise SimError(f"unknown fault {spec!r}: use power-cut[=N], rtc-reset, storage-full[=BYTES]")
        return faults


@dataclass
class SimRun:
    device: str
    out: Path
    seconds: float
    scenario: Path | None = None
    faults: Faults = field(default_factory=Faults)
    width: int = 320
    height: int = 240
    segment_seconds: int = 10
    prerecord_seconds: float = 30.0
    seed: int | None = None
    press_delay_s: float = 0.0  # how long after the recorder is up the officer presses record
    marks_at_s: list[float] = field(default_factory=list)  # mark presses, seconds into the recording
    kills: list[float] = field(default_factory=list)  # seconds into the recording of each power cut
    kill_mono_ns: list[int] = field(default_factory=list)  # the same instants on CLOCK_MONOTONIC
    gateway_url: str = ""  # the dock's gateway bay; empty: the recorder does not dock
    gateway_trust: Path | None = None  # the gateways' trust list, to check their dock receipts

    def __post_init__(self) -> None:
        if self.gateway_url and self.gateway_trust is None:
            raise SimError("a gateway needs its trust list (--gateway-trust), to check its dock receipts")

    @property
    def store(self) -> Path:
        return self.out / "store"

    @property
    def trust_path(self) -> Path:
        return self.out / "trust.json"


def _ensure_key(run: SimRun) -> signatures.KeySigner:
    """The device's key (made once, mode 0600) and its entry in the trust file next to the store."""
    path = run.out / "keys" / f"{run.device}.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(signatures.private_pem(signatures.generate()))
    signer = signatures.KeySigner(read_private_key(path))
    trust = parse_trust_list(run.trust_path.read_bytes()) if run.trust_path.exists() else TrustList()
    if trust.get(signer.keyid) is None:
        trust.add(trusted_key(signer.public_key(), "device", run.device))
        run.trust_path.write_bytes(trust.to_bytes())
    return signer


def _config(run: SimRun, gnss: SimulatedGnss, mcu: SimulatedMcu) -> Path:
    key = run.out / "keys" / f"{run.device}.key"
    lines = [
        "[recorder]",
        f"device = {json.dumps(run.device)}",
        f"store = {json.dumps(str(run.store))}",
        f"key_file = {json.dumps(str(key))}",
        f"segment_seconds = {run.segment_seconds}",
        f"prerecord_seconds = {run.prerecord_seconds}",
        'camera_driver = "simulators.camera:SimulatedCamera"',
        f"camera_options = {{ width = {run.width}, height = {run.height} }}",
        f"gnss_port = {json.dumps(gnss.port)}",
        f"mcu_port = {json.dumps(mcu.port)}",
    ]
    if run.faults.storage_quota_bytes is not None:
        lines += [f"storage_quota_bytes = {run.faults.storage_quota_bytes}", "storage_reserve_bytes = 1000000"]
    if run.gateway_url and run.gateway_trust is not None:
        lines += [f"dock_gateway_url = {json.dumps(run.gateway_url)}",
                  f"gateway_trust_file = {json.dumps(str(run.gateway_trust.resolve()))}"]
    path = run.out / "recorder.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class RecorderProcess:
    """`liuhen recorder run` as a child process, with its log in <out>/logs/."""

    def __init__(self, config: Path, log_dir: Path) -> None:
        self.config = config
        self.log_dir = log_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.starts = 0

    def start(self, timeout: float = 30.0) -> None:
        self.starts += 1
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.log_dir / f"recorder-{self.starts:03d}.log"
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child writes it; closed when it ends
        self.proc = subprocess.Popen([sys.executable, "-m", "liuhen", "recorder", "run", "--config", str(self.config)],
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self._wait_for(READY_MARK, timeout)

    def _wait_for(self, mark: str, timeout: float) -> None:
        assert self.proc is not None and self.log_path is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if mark in self.log_path.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise SimError(f"the recorder exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        raise SimError(f"the recorder did not say {mark!r} within {timeout} s; see {self.log_path}")

    def frames_produced(self) -> int | None:
        """What the camera of the last (cleanly stopped) run says it produced."""
        assert self.log_path is not None
        found = re.findall(r"camera produced (\d+) video frames", self.log_path.read_text(errors="replace"))
        return int(found[-1]) if found else None

    def kill(self) -> None:
        """A power cut: no chance to close anything."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self, timeout: float = 60.0) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            self.kill()
            raise SimError(f"the recorder did not stop within {timeout} s; see {self.log_path}") from exc
        if self.proc.returncode != 0:
            raise SimError(f"the recorder exited with {self.proc.returncode}; see {self.log_path}")


def _gnss(run: SimRun) -> SimulatedGnss:
    scenario = load_scenario(run.scenario or PATROL)
    return SimulatedGnss(replace(scenario, start_utc_ns=None))  # GNSS time is now, as a real sky's


def _mcu(run: SimRun) -> SimulatedMcu:
    table: dict[str, Any] = {}
    if run.scenario is not None:
        table = tomllib.loads(run.scenario.read_text())
    options: dict[str, Any] = {"rtc_valid": False} if run.faults.rtc_reset else {}
    return SimulatedMcu.from_scenario(table, **options)


def record(run: SimRun) -> dict[str, Any]:
    """Run the recorder for `run.seconds` of recording; return a summary."""
    run.out.mkdir(parents=True, exist_ok=True)
    _ensure_key(run)
    rng = random.Random(run.seed)
    gnss, mcu = _gnss(run), _mcu(run)
    gnss.start()
    mcu.start()
    recorder = RecorderProcess(_config(run, gnss, mcu), run.out / "logs")
    try:
        recorder.start()
        time.sleep(run.press_delay_s)
        mcu.press("record")
        started = time.monotonic()
        for at in sorted(run.marks_at_s):
            _sleep_until(started + at)
            mcu.press("mark")
        # Each cut comes a random while after the recording (re)started, so every one hits a recording.
        mean_gap = run.seconds / (run.faults.power_cuts + 1)
        for _ in range(run.faults.power_cuts):
            time.sleep(rng.uniform(0.5, max(0.6, 2 * mean_gap - 0.5)))
            run.kill_mono_ns.append(time.monotonic_ns())
            recorder.kill()
            run.kills.append(time.monotonic() - started)
            recorder.start()
            mcu.press("record")
        _sleep_until(started + run.seconds)
        recorder.stop()  # switched off while recording: the open segment is closed and signed
    finally:
        if recorder.proc is not None and recorder.proc.poll() is None:
            recorder.kill()
        mcu.stop()
        gnss.stop()
    return {"device": run.device, "store": str(run.store), "trust": str(run.trust_path),
            "recorder_starts": recorder.starts, "power_cuts_at_s": [round(k, 3) for k in run.kills],
            "frames_produced_last_run": recorder.frames_produced(),
            "lost_per_cut_ms": [None if loss is None else loss // 1_000_000
                                for loss in power_cut_losses(run.store / run.device, run.kill_mono_ns)]}


def _manifests(device_dir: Path) -> list[Manifest]:
    return [manifest.parse(signatures.open_envelope(p.read_bytes()).payload)
            for p in sorted(device_dir.glob(f"*{layout.MANIFEST_SUFFIX}"))]


def power_cut_losses(device_dir: Path, kill_mono_ns: list[int]) -> list[int | None]:
    """For each power cut, how much footage (ns) recorded before it is not in the store.

    The i-th cut ended the i-th boot session. What that session kept ends at its
    last segment or, for the segment open at the cut, at the recovered part of it;
    the loss is the time from there to the cut (None: nothing was recording).
    """
    manifests = _manifests(device_dir)
    sessions = [m.session for m in manifests if m.kind == manifest.BOOT]
    ends: dict[str, int] = {}
    for m in manifests:
        if m.kind == manifest.SEGMENT:
            ends[m.session] = max(ends.get(m.session, 0), m.time["mono_end_ns"])
        elif m.kind == manifest.RECOVERED_SEGMENT and "session" in m.detail:
            end = m.detail["mono_start_ns"] + m.media["duration_ns"]
            ends[m.detail["session"]] = max(ends.get(m.detail["session"], 0), end)
    return [kill - ends[s] if s in ends else None for s, kill in zip(sessions, kill_mono_ns, strict=False)]


def _sleep_until(deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining > 0:
        time.sleep(remaining)
