"""How much faster than real time the simulated camera runs here: printed, not asserted."""

from __future__ import annotations

import time

import pytest

from simulators.camera import SimulatedCamera

from .helpers import record


@pytest.mark.parametrize(("width", "height", "frames"), [(320, 240, 300), (1280, 720, 150)])
def test_simulated_camera_speed(width: int, height: int, frames: int, capsys: pytest.CaptureFixture[str]) -> None:
    camera = SimulatedCamera(width=width, height=height, speed=None, stop_at_frames=frames)
    camera.set_overlay(["2025-11-24T16:00:00Z", "REC0001", "012345"])
    started = time.perf_counter()
    camera.start()
    record(camera)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nsimulated camera {width}x{height}@30 + AAC: {frames / 30 / elapsed:.1f}x real time "
              f"({frames} frames in {elapsed:.2f} s)")
