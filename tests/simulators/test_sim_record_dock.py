"""`liuhen sim record` with the dock scenario: a real recorder process on simulated hardware records, the MCU puts
it in its dock (external power), it docks at a real gateway dock while it runs, and it records again."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from liuhen import cli
from liuhen.verify_folder import verify_paths
from protocol import layout, manifest, signatures
from protocol.manifest import Manifest
from protocol.trust import trusted_key
from simulators.record import SimRun, record
from tests.gateway.dock_rig import GATEWAY, NS, DockThread, Station
from tests.simulators.test_sim_record import manifests

ROOT = Path(__file__).resolve().parent.parent.parent
SCENARIO = ROOT / "simulators" / "scenarios" / "dock.toml"
DEVICE = "SIM-DOCK-1"


def device_key(out: Path, device: str) -> signatures.KeySigner:
    """The device key where `liuhen sim record` keeps it (it uses one it finds), made first so that the gateway
    can know the device before it docks."""
    key = signatures.generate()
    path = out / "keys" / f"{device}.key"
    path.parent.mkdir(parents=True)
    path.write_bytes(signatures.private_pem(key))
    os.chmod(path, 0o600)
    return signatures.KeySigner(key)


def copy_spooled(gateway: DockThread, device: str, folder: Path) -> list[Manifest]:
    """What the gateway took of `device`, laid out as a recorder store (for `liuhen verify`); its manifests."""
    head = gateway.spool.head(device)
    assert head is not None, "the gateway took nothing"
    held = gateway.spool.arrived(device, range(head[0] + 1))
    (folder / device).mkdir(parents=True)
    taken = []
    for seq, digest in sorted(held.items()):
        spooled = gateway.spool.get(digest)
        assert spooled is not None and spooled.findings == [] and spooled.dock_receipt is not None
        m = manifest.parse(signatures.open_envelope(spooled.envelope).payload)
        (folder / device / layout.manifest_name(seq)).write_bytes(spooled.envelope)
        if spooled.path is not None:
            shutil.copyfile(spooled.path, folder / device / m.media["name"])
        taken.append(m)
    return taken


def test_a_running_recorder_docks_between_two_recordings(tmp_path: Path) -> None:
    station = Station(tmp_path / "station")
    out = tmp_path / "run"
    signer = device_key(out, DEVICE)
    station.devices.add(trusted_key(signer.public_key(), "device", DEVICE))
    station.save_trust()
    gateways = tmp_path / "gateways.json"
    gateways.write_bytes(station.gateways.to_bytes())
    with DockThread(station, ["bay-1"], tmp_path / "spool") as gateway:
        run = SimRun(DEVICE, out, 11.0, scenario=SCENARIO, segment_seconds=2, prerecord_seconds=0,
                     gateway_url=gateway.url("bay-1"), gateway_trust=gateways)
        record(run)
        taken = copy_spooled(gateway, DEVICE, tmp_path / "taken")
    kept = manifests(run)
    # Everything recorded before the dock went to the gateway, receipted, and left the recorder: one chain,
    # cut where the dock came.
    assert [m.seq for m in taken] == list(range(len(taken)))
    assert [m.seq for m in kept] == list(range(len(taken), len(taken) + len(kept)))
    # The RTC had lost its time and GNSS gave no fix: footage before the dock is unsynced; the dock set the
    # clock with a signed clock-sync record, which went in the same dock.
    before = [m for m in taken if m.kind == manifest.SEGMENT]
    assert taken[0].kind == manifest.BOOT and len(before) >= 2
    assert all(m.time["source"] == "unsynced" for m in before)
    sync = taken[-1]
    assert sync.kind == manifest.CLOCK_SYNC and sync.detail["gateway"] == GATEWAY and sync.time["source"] == "dock"
    # Out of the dock it recorded again, on the dock's time.
    after = [m for m in kept if m.kind == manifest.SEGMENT]
    assert after and all(m.time["source"] == "dock" for m in after)
    assert abs(after[-1].time["end_ns"] - time.time_ns()) < 30 * NS
    # Nothing was lost or changed: what the gateway holds and what the recorder kept verify as one chain.
    report = verify_paths([tmp_path / "taken", run.store], station.devices)
    assert {f.code for f in report.findings() if not f.informational} == set()


def test_a_gateway_needs_its_trust_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    assert cli.main(["sim", "record", "--seconds", "5", "--out", str(out), "--gateway", "http://127.0.0.1:8701"]) == 2
    assert "--gateway-trust" in capsys.readouterr().err and not out.exists()
