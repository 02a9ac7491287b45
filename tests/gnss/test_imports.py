"""`hardware` and `simulators` import on a machine without pyserial or pynmea2."""

from __future__ import annotations

import subprocess
import sys

BLOCK = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("serial", "pynmea2"):
            raise ImportError("not installed: " + name)
sys.meta_path.insert(0, Blocker())
import hardware.gnss, hardware.gnss_serial, simulators.gnss
try:
    hardware.gnss_serial.SerialGnss("/dev/serial0")
except ImportError as error:
    print(error)
"""


def test_drivers_import_their_libraries_only_when_used() -> None:
    result = subprocess.run([sys.executable, "-c", BLOCK], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "not installed: pynmea2"
