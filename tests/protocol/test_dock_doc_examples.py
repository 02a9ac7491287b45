"""The worked examples of docs/protocol.md §10 (dock link) are what protocol/dock.py produces and accepts."""

from __future__ import annotations

import json

from protocol import canonical, dock, signatures
from protocol.trust import TrustList, trusted_key
from tests.doc_examples import document_text, example
from tests.protocol.test_core_doc_examples import DEVICE, example_dock_receipt, example_signer

CHALLENGE = dock.Challenge(DEVICE, "GW-STATION-01", "3b8f0c6e2d4a1f5e9c7b0a2d4e6f8a1c", 1_764_030_000_000_000_000)
DEVICE_NS = 1_764_029_999_581_500_000
ARRIVED_NS = 1_764_030_000_003_000_000


def test_signed_hello_example() -> None:
    payload = example("dock-hello-payload").rstrip("\n").encode()
    envelope = example("dock-hello-envelope").rstrip("\n").encode()
    assert envelope == dock.issue_hello(example_signer(), CHALLENGE, DEVICE_NS)
    assert signatures.open_envelope(envelope, dock.HELLO_TYPE).payload == payload
    trust = TrustList([trusted_key(example_signer().public_key(), "device", DEVICE)])
    hello = dock.open_hello(envelope, trust)
    dock.check_answers(hello, CHALLENGE, ARRIVED_NS)
    assert hello.fields == canonical.decode(payload)


def test_the_measured_offset_is_the_receipt_example() -> None:
    offset = dock.midpoint_offset(DEVICE_NS, CHALLENGE.gateway_ns, ARRIVED_NS)
    assert offset == example_dock_receipt()["clock_offset_ns"] == -420_000_000


def test_plan_example() -> None:
    doc = json.loads(example("dock-plan"))
    plan = dock.parse_plan(doc)
    assert plan.to_json() == doc
    assert [t.seq for t in plan.send] == [3, 1, 2] and plan.send[1].offset == 2 * 1024**2


def test_every_dock_message_and_header_is_documented() -> None:
    text = document_text()
    for path in ("/dock/hello", "/dock/session", "/dock/pending", "/dock/files/<seq>", "/dock/receipts"):
        assert path in text, path
    assert dock.OFFSET_HEADER in text and dock.HELLO_TYPE in text
    assert f"at most {dock.MAX_RECEIPT_SEGMENTS} segments" in text and "65,535 bytes" in text
