"""The pre-record buffer: encoded packets of the last N seconds, kept in whole GOPs.

A recording has to start at a keyframe, so the buffer drops only whole groups
of pictures, keeping the newest keyframe that lies at least N seconds back.
"""

from __future__ import annotations

from collections import deque

from hardware.media import VIDEO, EncodedPacket


class PreRecordBuffer:
    def __init__(self, seconds: float) -> None:
        self.window_ns = int(seconds * 1_000_000_000)
        self._packets: deque[EncodedPacket] = deque()
        self._keyframes: deque[int] = deque()  # capture_ns of each buffered video keyframe

    def add(self, packet: EncodedPacket) -> None:
        if not self._packets and not (packet.kind == VIDEO and packet.keyframe):
            return  # nothing can be played back before the first keyframe
        self._packets.append(packet)
        if packet.kind == VIDEO and packet.keyframe:
            self._keyframes.append(packet.capture_ns)
            self._trim(packet.capture_ns)

    def _trim(self, now_ns: int) -> None:
        # Drop the oldest GOP while the next keyframe still reaches back far enough.
        while len(self._keyframes) > 1 and self._keyframes[1] <= now_ns - self.window_ns:
            self._keyframes.popleft()
            start = self._keyframes[0]
            while self._packets and not (self._packets[0].kind == VIDEO and self._packets[0].keyframe
                                         and self._packets[0].capture_ns == start):
                self._packets.popleft()

    def drain(self) -> list[EncodedPacket]:
        packets, self._packets = list(self._packets), deque()
        self._keyframes.clear()
        return packets

    def clear(self) -> None:
        self._packets.clear()
        self._keyframes.clear()
