"""The telemetry examples in the recorder documentation have the shape the code produces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from firmware import telemetry as tm
from tests.doc_examples import examples

DOCS = Path(__file__).resolve().parents[2] / "docs"


def doc_examples() -> dict[str, Any]:
    found = examples(DOCS / "recorder.md")
    assert "telemetry-status" in found, "no telemetry examples in docs/recorder.md"
    return {name: json.loads(body) for name, (lang, body) in found.items() if name.startswith("telemetry-")}


def shape(value: Any) -> Any:
    """Keys and value types, recursively: what a consumer's parser depends on."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


def test_status_example_matches_recorder_status() -> None:
    documented = doc_examples()["telemetry-status"]
    built = tm.recorder_status(state="recording", firmware="0.1.0", clock_source="gnss", chain_seq=1,
                               chain_hash="00" * 32, storage_used_bytes=1, storage_free_bytes=1, battery_percent=1,
                               gnss_fix=True, gnss_satellites=1, last_position=(1, 1, 1))
    assert shape(documented) == shape({**built, "device": "D", "updated_ns": 1})


def test_event_examples_carry_the_common_fields() -> None:
    found = doc_examples()
    for name in ("telemetry-event", "telemetry-events-dropped"):
        assert {"device", "kind", "n", "t_ns"} <= found[name].keys()
    dropped = found["telemetry-events-dropped"]
    assert dropped.keys() == {"device", "kind", "n", "t_ns", "dropped", "first_n", "last_n"}
    assert dropped["kind"] == tm.EVENTS_DROPPED and dropped["n"] == dropped["last_n"]
    assert found["telemetry-event"]["kind"] in tm.EVENT_KINDS
