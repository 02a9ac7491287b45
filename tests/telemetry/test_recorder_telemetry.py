"""The recorder's telemetry through a real broker: state changes, signed records and its status."""

from __future__ import annotations

from pathlib import Path

from firmware.telemetry import Telemetry
from tests.firmware.media_fixture import make_packets
from tests.firmware.test_recorder import DEVICE, Rig

from .conftest import Broker, Subscriber, url


def test_recorder_publishes_state_records_and_status(broker: Broker, tmp_path: Path) -> None:
    sub = Subscriber(broker.port, device=DEVICE)
    rig = Rig(tmp_path / "store", make_packets(12.0))
    tel = Telemetry(DEVICE, url(broker.port), tmp_path / "outbox")
    tel.start()
    try:
        rec = rig.recorder()
        rec.telemetry = tel
        rig.feed(rec, 11.5, {2.0: "record", 4.0: "mark", 9.0: "record"})
        rec.tick()
        rec.shutdown()
        assert tel.flush(10)
    finally:
        tel.close()
    try:
        _check(sub)
    finally:
        sub.close()


def _check(sub: Subscriber) -> None:
    sub.wait(lambda s: {"recording-started", "recording-stopped"} <= {e["kind"] for e in s.events()},
             "recording events")
    kinds = [e["kind"] for e in sorted(sub.events(), key=lambda e: e["n"])]
    assert kinds.index("recording-started") < kinds.index("recording-stopped")
    sub.wait(lambda s: bool(s.on(f"liuhen/recorders/{DEVICE}/status")), "a status")
    status = sub.on(f"liuhen/recorders/{DEVICE}/status")[-1].json()
    assert status["chain"]["seq"] >= 1 and status["state"] in ("standby", "recording", "post-record")
