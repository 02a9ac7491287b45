"""Check-out (gateway/checkout.py): a gateway-signed assignment a real recorder takes, kept pending until the
dock delivers it, the newest one winning; bad input changes nothing; what was answered survives a crash."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware.recorder import Recorder
from gateway.checkout import DELIVERED, PENDING, SUPERSEDED, CheckoutError, Checkouts, Officer, parse_officer
from protocol import assignment, manifest, signatures
from protocol.errors import ProtocolError
from tests.firmware.media_fixture import make_packets
from tests.firmware.test_recorder import DEVICE, Rig
from tests.gateway.test_spool import Clock

OFFICER = Officer("110234", "王伟", "110100000000", "北京市东城区城管执法局")
OTHER = Officer("110567", "李娜", "110100000000", "北京市东城区城管执法局")


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path / "store", make_packets(1.0))


@pytest.fixture
def checkouts(tmp_path: Path, rig: Rig) -> Iterator[Checkouts]:
    with Checkouts(tmp_path / "gateway", "GW-01", rig.gateway, clock_ns=Clock()) as made:
        yield made


def test_a_real_recorder_takes_the_assignment(rig: Rig, checkouts: Checkouts) -> None:
    made = checkouts.check_out(DEVICE, OFFICER)
    envelope = checkouts.pending_for(DEVICE)
    assert envelope == made.envelope and made.status == PENDING
    rec: Recorder = rig.recorder()
    taken = assignment.open_assignment(envelope, rig.gateways, DEVICE)  # as the dock client will
    signed = rec.assign(taken)
    assert taken.ref == made.ref
    assert signed.fields["kind"] == manifest.ASSIGNMENT
    assert signed.fields["detail"] == {"officer": OFFICER.to_json(), "gateway": "GW-01"}
    rec.shutdown()
    assert rig.recorder().assignment.manifest_field() == {"officer": "110234", "ref": made.ref}  # kept across boot
    with pytest.raises(ProtocolError, match="not OTHER-1"):  # another recorder refuses it
        assignment.open_assignment(envelope, rig.gateways, "OTHER-1")


def test_pending_until_delivered_and_the_newest_wins(checkouts: Checkouts) -> None:
    assert checkouts.pending_for(DEVICE) is None
    first = checkouts.check_out(DEVICE, OFFICER)
    second = checkouts.check_out(DEVICE, OTHER)  # changed their mind before the recorder docked
    other_device = checkouts.check_out("REC-0002", OFFICER)
    assert checkouts.pending_for(DEVICE) == second.envelope
    assert [(c.ref, c.status) for c in checkouts.list(DEVICE)] == [(second.ref, PENDING), (first.ref, SUPERSEDED)]
    checkouts.delivered(DEVICE, second.ref)
    checkouts.delivered(DEVICE, second.ref)  # said twice: nothing changes
    assert checkouts.pending_for(DEVICE) is None
    delivered = checkouts.get(second.ref)
    assert delivered is not None and delivered.status == DELIVERED and delivered.delivered_ns is not None
    assert checkouts.get(second.ref) == delivered
    assert checkouts.pending_for("REC-0002") == other_device.envelope
    assert [c.ref for c in checkouts.list()] == [other_device.ref, second.ref, first.ref]
    assert [c.ref for c in checkouts.list(limit=1)] == [other_device.ref]


def test_a_superseded_assignment_the_recorder_kept_anyway_counts(checkouts: Checkouts) -> None:
    first = checkouts.check_out(DEVICE, OFFICER)
    second = checkouts.check_out(DEVICE, OTHER)
    checkouts.delivered(DEVICE, first.ref)  # handed over while the second was being made
    assert checkouts.get(first.ref).status == DELIVERED  # type: ignore[union-attr]
    assert checkouts.pending_for(DEVICE) == second.envelope  # still to deliver at the next dock


def test_the_same_check_out_in_the_same_nanosecond_is_kept_once(tmp_path: Path, rig: Rig) -> None:
    with Checkouts(tmp_path / "gateway", "GW-01", rig.gateway, clock_ns=lambda: 5) as frozen:
        first = frozen.check_out(DEVICE, OFFICER)
        frozen.delivered(DEVICE, first.ref)
        again = frozen.check_out(DEVICE, OFFICER)  # a form sent twice (Ed25519 signs deterministically)
        assert again.ref == first.ref and again.status == DELIVERED and len(frozen.list()) == 1


@pytest.mark.parametrize(("device", "officer", "message"), [
    (DEVICE, Officer("1102345", "王伟", "1101", "局"), "officer.number .* at most 6"),
    (DEVICE, Officer("110234", "王" * 33, "1101", "局"), "officer.name .* at most 32"),
    (DEVICE, Officer("110234", "王伟", "1" * 13, "局"), "officer.unit_code .* at most 12"),
    (DEVICE, Officer("110234", "王伟", "1101", "局" * 33), "officer.unit_name .* at most 32"),
    (DEVICE, Officer("", "王伟", "1101", "局"), "officer.number .* non-empty"),
    ("REC 1", OFFICER, "device has an invalid form"),
    ("", OFFICER, "device .* non-empty"),
])
def test_bad_input_is_refused_and_changes_nothing(checkouts: Checkouts, device: str, officer: Officer,
                                                  message: str) -> None:
    kept = checkouts.check_out(DEVICE, OFFICER)
    with pytest.raises(CheckoutError, match=message):
        checkouts.check_out(device, officer)
    assert checkouts.list() == [kept] and checkouts.pending_for(DEVICE) == kept.envelope


def test_a_delivery_naming_nothing_known_is_refused(checkouts: Checkouts) -> None:
    made = checkouts.check_out(DEVICE, OFFICER)
    with pytest.raises(CheckoutError, match="not a SHA-256"):
        checkouts.delivered(DEVICE, "abc")
    with pytest.raises(CheckoutError, match="no check-out of REC-0002"):
        checkouts.delivered("REC-0002", made.ref)  # another recorder's assignment
    assert checkouts.list() == [made]


@pytest.mark.parametrize(("given", "message"), [
    ("110234", "must be an object"),
    ({"number": "1", "name": "a", "unit_code": "b"}, r"missing \['unit_name'\]"),
    ({**OFFICER.to_json(), "rank": "x"}, r"unknown \['rank'\]"),
    ({**OFFICER.to_json(), "number": 110234}, "must be strings"),
])
def test_officer_from_a_request(given: object, message: str) -> None:
    with pytest.raises(CheckoutError, match=message):
        parse_officer(given)


def test_officer_fields_lose_surrounding_blanks() -> None:
    assert parse_officer({k: f" {v}\n" for k, v in OFFICER.to_json().items()}) == OFFICER


def test_an_answered_check_out_survives_a_kill(tmp_path: Path) -> None:
    """The process dies (SIGKILL) right after check_out returned: the check-out is there on reopening."""
    folder = tmp_path / "gateway"
    private = signatures.generate()
    (tmp_path / "key.pem").write_bytes(signatures.private_pem(private))
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from gateway.checkout import Checkouts, Officer
        from protocol import signatures
        signer = signatures.KeySigner(signatures.load_private_key(Path({str(tmp_path / "key.pem")!r}).read_bytes()))
        made = Checkouts(Path({str(folder)!r}), "GW-01", signer).check_out("REC-0001", Officer("1", "a", "b", "c"))
        print(made.ref, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert run.returncode == -9, run.stderr
    with Checkouts(folder, "GW-01", signatures.KeySigner(private)) as reopened:
        assert reopened.pending_for("REC-0001") == reopened.get(run.stdout.strip()).envelope  # type: ignore[union-attr]


def test_a_bad_gateway_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckoutError, match="gateway id"):
        Checkouts(tmp_path, "GW 1", signatures.KeySigner(signatures.generate()))
