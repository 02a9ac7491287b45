"""Worked examples from docs/protocol.md, so tests can check the spec against the code.

An example is a fenced block whose info string is `<lang> example=<name>`, e.g.

    ```hex example=canonical-basic
    7b2261223a317d
    ```
"""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
_BLOCK = re.compile(r"^```(\w+) example=([\w.-]+)\n(.*?)^```", re.M | re.S)


def document_text(path: Path | None = None) -> str:
    return (path or DOC).read_text(encoding="utf-8")


def examples(path: Path | None = None) -> dict[str, tuple[str, str]]:
    """Map example name -> (language, text) for every example in the document."""
    text = document_text(path)
    found: dict[str, tuple[str, str]] = {}
    for lang, name, body in _BLOCK.findall(text):
        if name in found:
            raise ValueError(f"example {name!r} appears twice in {path or DOC}")
        found[name] = (lang, body)
    return found


def example(name: str) -> str:
    return examples()[name][1]


def example_bytes(name: str) -> bytes:
    """A `hex` example as bytes; whitespace between hex digits is ignored."""
    return bytes.fromhex("".join(example(name).split()))
