"""Real receiver captures (tests/gnss/data) and how to feed them to the assembler."""

from __future__ import annotations

from pathlib import Path

from hardware.gnss import Fix
from hardware.gnss_serial import NmeaAssembler
from simulators.gnss import log_epochs

DATA = Path(__file__).parent / "data"
SIRF_TRIG_BEIDOU = DATA / "sirf-trig-beidou.nmea"
BU353_GLONASS = DATA / "bu353-glonass.nmea"
QUECTEL_L76K = DATA / "quectel-l76k.nmea"
CAPTURES = (SIRF_TRIG_BEIDOU, BU353_GLONASS, QUECTEL_L76K)


def replay(path: Path, assembler: NmeaAssembler | None = None) -> tuple[list[Fix], NmeaAssembler]:
    """Feed a capture epoch by epoch, stamped with the log's own pace, as the simulator sends it."""
    assembler = assembler or NmeaAssembler()
    fixes = []
    for offset, lines in log_epochs(path):
        fixes += assembler.feed(b"".join(lines), offset)
    last = assembler.flush()
    return fixes + ([last] if last else []), assembler
