"""`liuhen sim record`: a real recorder process against simulated hardware, end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av

from liuhen.verify_folder import verify_paths
from protocol import manifest, signatures
from protocol.manifest import Manifest
from protocol.trust import parse_trust_list
from simulators.record import Faults, SimRun, record
from tests.camera.helpers import ffprobe

ROOT = Path(__file__).resolve().parent.parent.parent
FPS = 30
FRAME_TICKS = 3000  # 90 kHz video time base at 30 fps


def manifests(run: SimRun) -> list[Manifest]:
    return [manifest.parse(signatures.open_envelope(p.read_bytes()).payload)
            for p in sorted((run.store / run.device).glob("*.manifest"))]


def findings(run: SimRun) -> set[str]:
    report = verify_paths([run.out], parse_trust_list(run.trust_path.read_bytes()))
    return {f.code for f in report.findings() if not f.informational}


def media(run: SimRun) -> list[Manifest]:
    return [m for m in manifests(run) if m.kind in manifest.MEDIA_KINDS]


def decode(path: Path) -> tuple[list[int], int]:
    """Video pts of every decoded frame and the number of audio samples; raises on any decoding error."""
    pts, samples = [], 0
    with av.open(str(path)) as c:
        for packet in c.demux():
            for frame in packet.decode():
                if packet.stream.type == "video":
                    pts.append(frame.pts)
                else:
                    samples += frame.samples
    return pts, samples


def test_sixty_seconds_verify_play_and_add_up(tmp_path: Path) -> None:
    run = SimRun("SIM-0001", tmp_path / "out", 60.0)
    summary = record(run)
    r = subprocess.run([sys.executable, "-m", "liuhen", "verify", str(run.out), "--keys", str(run.trust_path)],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    segments = media(run)
    assert len(segments) >= 6
    all_pts: list[int] = []
    for m in segments:
        path = run.store / run.device / m.media["name"]
        pts, samples = decode(path)
        assert len(pts) == m.media["frames"] and samples > 0
        probe = ffprobe(path)
        assert int(probe["video"]["nb_read_frames"]) == m.media["frames"]
        all_pts += pts
    # Frames across segments add up exactly to what the camera produced, with no gap or repeat.
    assert len(all_pts) == summary["frames_produced_last_run"]
    assert all_pts == [all_pts[0] + i * FRAME_TICKS for i in range(len(all_pts))]
    # GNSS: a cold start gives no fix for 12 s, then the track fills and the clock follows GNSS.
    assert segments[0].fields["track"]["none_reason"] == "no-fix"
    assert len(segments[-2].fields["track"]["points"]) >= 9
    assert segments[0].time["source"] == "rtc" and segments[-2].time["source"] == "gnss"


def test_fifty_power_cuts_lose_at_most_a_second_each(tmp_path: Path) -> None:
    run = SimRun("SIM-0002", tmp_path / "out", 100.0, faults=Faults(power_cuts=50), seed=20261128)
    summary = record(run)
    assert summary["recorder_starts"] == 51
    assert findings(run) == set()
    chain = manifests(run)
    assert sum(m.kind == manifest.BOOT for m in chain) == 51
    assert sum(m.kind == manifest.RECOVERY for m in chain) == 50
    losses = [loss for loss in summary["lost_per_cut_ms"] if loss is not None]
    print("footage lost per power cut (ms):", losses)
    assert len(losses) >= 45  # every cut came while recording, a few before the first fragment closed
    assert max(losses) <= 1000
    for m in media(run):
        decode(run.store / run.device / m.media["name"])


def test_storage_full_stops_with_a_signed_record_and_keeps_everything(tmp_path: Path) -> None:
    run = SimRun("SIM-0003", tmp_path / "out", 25.0, faults=Faults(storage_quota_bytes=1_600_000),
                 segment_seconds=2)
    record(run)
    chain = manifests(run)
    assert manifest.STORAGE_FULL in [m.kind for m in chain]
    full = next(m for m in chain if m.kind == manifest.STORAGE_FULL)
    assert not [m for m in chain if m.kind == manifest.SEGMENT and m.seq > full.seq]
    assert findings(run) == set()
    assert all((run.store / run.device / m.media["name"]).exists() for m in media(run))


def test_rtc_reset_gnss_tunnel_and_garbage(tmp_path: Path) -> None:
    scenario = tmp_path / "tunnel.toml"
    scenario.write_text("""
[gnss]
rate_hz = 1
[gnss.route]
speed = 1.4
points = [{ lat = 31.2371, lon = 121.4715 }, { lat = 31.2402, lon = 121.4817 }]
[[gnss.faults]]
kind = "cold-start"
at = 0
no_time = 1
no_fix = 3
[[gnss.faults]]
kind = "tunnel"
at = 14
duration = 14
[[gnss.faults]]
kind = "garbage"
at = 6
size = 64
[[gnss.faults]]
kind = "bad-checksum"
at = 8
count = 3
""")
    run = SimRun("SIM-0004", tmp_path / "out", 42.0, scenario=scenario, faults=Faults(rtc_reset=True),
                 segment_seconds=5)
    record(run)
    chain = manifests(run)
    assert chain[0].kind == manifest.BOOT and chain[0].detail["rtc_valid"] is False
    assert chain[0].time["source"] == "unsynced"
    sync = next(m for m in chain if m.kind == manifest.CLOCK_SYNC)
    # The RTC had lost its time: everything before the first GNSS fix is marked unsynced, after it GNSS.
    assert all(m.time["source"] == "unsynced" for m in chain if m.seq < sync.seq)
    segments = media(run)
    in_tunnel = [m for m in segments if m.time["mono_start_ns"] - chain[0].time["mono_start_ns"] > 19e9
                 and m.time["mono_end_ns"] - chain[0].time["mono_start_ns"] < 28e9]
    assert in_tunnel and all(m.fields["track"]["none_reason"] == "no-fix" for m in in_tunnel)
    assert segments[-1].fields["track"]["points"]  # the fix came back after the tunnel
    assert findings(run) == set()


def test_prerecord_and_markers(tmp_path: Path) -> None:
    run = SimRun("SIM-0005", tmp_path / "out", 12.0, prerecord_seconds=5, press_delay_s=8.0,
                 marks_at_s=[3.0, 7.5])
    record(run)
    segments = media(run)
    first = segments[0]
    assert first.fields["prerecord"]
    boot = manifests(run)[0]
    # The officer pressed about 8 s after boot: the first segment opens about 5 s before the press,
    # at a keyframe (one a second), so 5 to 6 s early.
    press_offset = first.time["mono_start_ns"] - boot.time["mono_start_ns"]
    assert 2e9 <= press_offset <= 3.9e9
    marks = [mk for m in segments for mk in m.fields["markers"]]
    assert len(marks) == 2 and all(mk["kind"] == "event" for mk in marks)
    assert findings(run) == set()


def test_bad_arguments_are_clear(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "liuhen", "sim", "record", "--seconds", "5", "--out",
                        str(tmp_path / "o"), "--faults", "meteor"], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "unknown fault 'meteor'" in r.stderr
    assert not (tmp_path / "o").exists()
    json.dumps({})  # the summary is JSON (checked in the runs above through record())
