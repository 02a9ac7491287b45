"""Encoded H.264 + AAC packets in capture order from the simulated camera, for recorder tests."""

from __future__ import annotations

from hardware.media import EncodedPacket, StreamInfo
from simulators.camera import SimulatedCamera

FPS = 30


def make_packets(seconds: float) -> tuple[list[StreamInfo], list[EncodedPacket]]:
    """Every packet of `seconds` of the simulated camera at 160x120, captured at its media time."""
    camera = SimulatedCamera(width=160, height=120, fps=FPS, speed=None, stop_at_frames=int(seconds * FPS),
                             clock=lambda: 0)
    camera.start()
    packets = []
    while (packet := camera.read(timeout=10)) is not None:
        info = next(s for s in camera.streams() if s.kind == packet.kind)
        # Stamp capture with media time so tests can script presses in seconds.
        packets.append(EncodedPacket(packet.kind, packet.data, packet.pts, packet.dts, packet.duration,
                                     packet.keyframe, info.to_ns(packet.pts)))
    camera.stop()
    return camera.streams(), packets
