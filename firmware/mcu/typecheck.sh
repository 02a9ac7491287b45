#!/bin/sh
# Type-check the supervisor MCU's code against the MicroPython rp2 stubs.
#
# The stubs replace the standard library's (a MicroPython `time` has ticks_ms, its `json` no
# sort_keys), so they live in an environment of their own, .venv-mcu at the repository root,
# made on the first run and reused after (delete it to rebuild). The stubs are installed into
# a plain folder and given to mypy as its typeshed: installed as a package, mypy ignores them.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
VENV="$ROOT/.venv-mcu"
MYPY="mypy==1.20.2"
STUBS="micropython-rp2-stubs==1.27.0.post1 micropython-stdlib-stubs==1.27.0.post2"
STAMP="$VENV/.installed"

if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$MYPY $STUBS" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    echo "*" > "$VENV/.gitignore"  # keeps git, and ruff with it, out of the environment
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MYPY"
    # shellcheck disable=SC2086 # STUBS is a list of requirements
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --target "$VENV/typings" $STUBS
    echo "$MYPY $STUBS" > "$STAMP"
fi

cd "$ROOT"
MYPYPATH="$VENV/typings" exec "$VENV/bin/mypy" --config-file firmware/mcu/mypy.ini \
    --custom-typeshed-dir "$VENV/typings" --no-site-packages \
    firmware/mcu simulators/mcu_machine.py
