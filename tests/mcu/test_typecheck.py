"""The supervisor MCU's code type-checks against the MicroPython rp2 stubs (firmware/mcu/typecheck.sh).

The first run makes .venv-mcu (mypy and the stubs from PyPI, about 20 s); later runs reuse it.
"""

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SCRIPT = ROOT / "firmware" / "mcu" / "typecheck.sh"


def test_mcu_code_type_checks_against_the_micropython_stubs() -> None:
    result = subprocess.run(["sh", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail(f"firmware/mcu/typecheck.sh failed:\n{result.stdout}{result.stderr}")
    assert "Success: no issues found" in result.stdout
