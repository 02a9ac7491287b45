"""The supervisor MCU's code, compiled by mpy-cross, behaves under MicroPython as under CPython.

scenarios.py drives the firmware on the simulated machine module and prints one line per event;
it runs under the MicroPython WebAssembly port (Node) from .mpy files laid out as on the board,
and under CPython from the sources. Both must print the same lines. Nothing is skipped: a
missing tool fails with how to install it.
"""

from pathlib import Path

import pytest

from tests.mpy_tools import ROOT, compile_lib, run_cpython, run_micropython

SCENARIOS = Path(__file__).resolve().parent / "scenarios.py"
# What a flashed board holds in /lib, plus the simulated machine module the scenarios use.
SOURCES = [
    "protocol/canonical.py",
    "protocol/mcu_link.py",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "firmware" / "mcu").glob("*.py")),
    "simulators/mcu_machine.py",
]


@pytest.fixture(scope="module")
def lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A /lib tree of .mpy files made by mpy-cross from our sources."""
    return compile_lib(SOURCES, tmp_path_factory.mktemp("mcu") / "lib")


@pytest.fixture(scope="module")
def cpython_lines() -> list[str]:
    return run_cpython(SCENARIOS)


def test_micropython_prints_what_cpython_prints(lib: Path, cpython_lines: list[str]) -> None:
    micropython_lines = run_micropython(SCENARIOS, lib)
    assert cpython_lines[-1] == "done"
    assert len(cpython_lines) > 300, "scenarios.py stopped early?"
    for number, (want, got) in enumerate(zip(cpython_lines, micropython_lines, strict=False), start=1):
        assert got == want, f"line {number} differs:\nCPython:     {want}\nMicroPython: {got}"
    assert len(micropython_lines) == len(cpython_lines)


def test_micropython_ran_the_compiled_modules(lib: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\n"
        "from simulators import mcu_machine\n"
        "sys.modules['machine'] = mcu_machine\n"
        "from firmware.mcu import app, main\n"
        "print(sys.implementation.name)\n"
        "print(app.__file__)\n"
        "print(main.__file__)\n"
        "print(main.__name__)\n"
    )
    assert run_micropython(probe, lib) == [
        "micropython",
        "/lib/firmware/mcu/app.mpy",
        "/lib/firmware/mcu/main.mpy",
        "firmware.mcu.main",
    ]


def test_the_scenarios_cover_every_message_the_mcu_sends(cpython_lines: list[str]) -> None:
    sent = {line.split()[1] for line in cpython_lines if line[:1].isdigit() and len(line.split()) > 2}
    assert sent >= {"ACK", "NACK", "BUTTON", "BATTERY", "RTC_TIME", "POWER_FAIL", "TAMPER", "SIGN_RESPONSE", "KEY_INFO"}
