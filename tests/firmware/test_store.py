"""The recorder store's dock API: pending footage, receipts, freeing only what a gateway holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from firmware.store import RecorderStore, StoreError
from protocol import receipts, signatures
from protocol.trust import TrustList, trusted_key
from simulators.synthetic import typical_shift

DEVICE = "REC-0001"


@pytest.fixture
def setup(tmp_path: Path) -> tuple[RecorderStore, signatures.KeySigner, TrustList]:
    signer = signatures.KeySigner(signatures.generate())
    typical_shift(tmp_path, DEVICE, signer, segments=4)
    gateway = signatures.KeySigner(signatures.generate())
    return RecorderStore(tmp_path, DEVICE), gateway, TrustList([trusted_key(gateway.public_key(), "gateway", "GW-1")])


def receipt_for(store: RecorderStore, gateway: signatures.KeySigner, seqs: list[int], **over: object) -> bytes:
    entries = []
    for seq in seqs:
        m = store.load(seq).manifest
        entries.append({"seq": seq, "manifest": m.hash.hex(),
                        "media_sha256": m.media["sha256"] if m.media else None, "result": "ok"})
    fields = {"gateway": "GW-1", "device": DEVICE, "first_seq": min(seqs), "last_seq": max(seqs),
              "head": store.load(max(seqs)).manifest.hash.hex(), "received_ns": 1, "clock_offset_ns": 0,
              "segments": entries, **over}
    return receipts.issue(gateway, receipts.DOCK_TYPE, fields)


def test_pending_receipt_and_free(setup) -> None:
    store, gateway, gateways = setup
    pending = [s.seq for s in store.pending()]
    assert pending == store.stored_seqs() and len(pending) == 7
    covered = store.apply_receipt(receipt_for(store, gateway, pending[:4]), gateways)
    assert covered == pending[:4]
    assert [s.seq for s in store.pending()] == pending[4:]
    head = store.head()
    freed = store.free(covered)
    assert freed > 0 and store.stored_seqs() == pending[4:]
    assert store.head() == head  # the chain head is kept when footage is freed


def test_nothing_is_freed_without_a_receipt(setup) -> None:
    store, _, _ = setup
    with pytest.raises(StoreError, match="no dock receipt"):
        store.free(store.stored_seqs()[:1])
    assert len(store.stored_seqs()) == 7


def test_receipt_entries_that_do_not_match_free_nothing(setup) -> None:
    store, gateway, gateways = setup
    seqs = store.stored_seqs()[:2]
    raw = receipt_for(store, gateway, seqs)
    env = signatures.open_envelope(raw)
    payload = json.loads(env.payload)
    payload["segments"][0]["manifest"] = "00" * 32
    payload.pop("v")
    forged = receipts.issue(gateway, receipts.DOCK_TYPE, payload)
    assert store.apply_receipt(forged, gateways) == seqs[1:]
    with pytest.raises(StoreError):
        store.free(seqs[:1])


def test_receipts_from_unknown_gateways_or_for_other_devices_are_refused(setup) -> None:
    store, gateway, gateways = setup
    seqs = store.stored_seqs()[:1]
    with pytest.raises(StoreError, match="refused"):
        store.apply_receipt(receipt_for(store, gateway, seqs), TrustList())
    other = receipt_for(store, gateway, seqs, device="REC-9999")
    with pytest.raises(StoreError, match="not REC-0001"):
        store.apply_receipt(other, gateways)
    assert store.pending()[0].seq == seqs[0]
