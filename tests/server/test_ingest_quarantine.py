"""Bad evidence is kept, not dropped: every way an upload fails verification is stored as quarantined with
its finding code, its file kept under its real hash, and listed for supervisors of its unit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import requests

from protocol import canonical, errors, receipts, signatures
from protocol.manifest import Manifest
from server.enrollment import revoke
from simulators.synthetic import SyntheticDevice
from tests.server.footage import Gateway, enroll_keys, envelope, receipt_after, server_trust, tus_client, uploader
from tests.server.harness import InProcessServer

SERVER = "srv-test"


@dataclass
class Case:
    """One upload that must be quarantined: what is sent (by GW-1) and the finding it must carry."""

    name: str
    device: SyntheticDevice
    manifest: Manifest
    code: str
    body: bytes | None = None  # the file sent, if not the segment's own media
    signed: bytes | None = None  # the manifest envelope sent, if not the stored one
    dock: bytes | None = None  # the dock receipt sent, if not GW-1's for the segment


class Lab:
    def __init__(self, server: InProcessServer, folder: Path) -> None:
        self.server = server
        self.folder = folder
        self.gw1, self.gw2 = Gateway("GW-1"), Gateway("GW-2")
        self.signers: dict[str, signatures.KeySigner] = {}
        self.token = ""

    def device(self, name: str, *, seed: int = 0, enrolled: bool = True, store: str = "a") -> SyntheticDevice:
        """A recorder; the same name and a new `store` gives a second chain signed with the same key."""
        if name not in self.signers:
            self.signers[name] = signatures.KeySigner(signatures.generate())
            if enrolled:
                enroll_keys(self.server.services, devices={name: self.signers[name]}, gateways=[])
        return SyntheticDevice(self.folder / store, name, self.signers[name], seed=seed)

    def send(self, dev: SyntheticDevice, m: Manifest, *, body: bytes | None = None, signed: bytes | None = None,
             dock: bytes | None = None) -> dict[str, object]:
        path = self.folder / f"body-{m.device}-{m.seq}-{hashlib.sha256(body or b'').hexdigest()[:8]}"
        if body is not None:
            path.write_bytes(body)
        elif m.media:
            path = dev.dir / m.media["name"]
        else:
            path.write_bytes(b"")
        up = uploader(tus_client(self.server.url, self.token), path, signed or envelope(dev, m),
                      dock or self.gw1.dock_receipt(dev, [m]))
        up.upload()
        return receipts.open_receipt(receipt_after(up, self.token), receipts.SERVER_TYPE,
                                     server_trust(self.server.url)).fields


def _spliced_signature(dev: SyntheticDevice, m: Manifest, other: Manifest) -> bytes:
    """The envelope of `m` carrying the signature of `other`: well formed, signature bad."""
    env, donor = canonical.decode(envelope(dev, m)), canonical.decode(envelope(dev, other))
    return canonical.encode({**env, "sig": donor["sig"]})


def _cases(lab: Lab) -> tuple[list[Case], list[tuple[SyntheticDevice, Manifest]]]:
    """The cases, and the uploads that must be stored before them (their neighbours)."""
    cases: list[Case] = []
    before: list[tuple[SyntheticDevice, Manifest]] = []

    dev = lab.device("REC-SIG")
    boot, seg = dev.boot(), dev.segment()
    cases.append(Case("bad signature", dev, seg, errors.SIGNATURE_BAD, signed=_spliced_signature(dev, seg, boot)))

    dev = lab.device("REC-UNKNOWN", enrolled=False)
    dev.boot()
    cases.append(Case("unknown key", dev, dev.segment(), errors.KEY_UNKNOWN))

    dev = lab.device("REC-REVOKED")
    dev.boot()
    dev.segment()
    with lab.server.services.db.write() as conn:
        revoke(conn, lab.server.services, keyid=lab.signers["REC-REVOKED"].keyid, reason="lost", actor="test",
               after_seq=1)
    cases.append(Case("revoked key", dev, dev.segment(), errors.KEY_REVOKED))

    dev = lab.device("REC-HASH")
    dev.boot()
    seg = dev.segment(size=5000)
    cases.append(Case("media hash mismatch", dev, seg, errors.FILE_HASH_MISMATCH, body=b"x" * 5000))
    seg = dev.segment(size=5000)
    cases.append(Case("media too long", dev, seg, errors.FILE_SIZE_MISMATCH, body=b"y" * 5001))
    seg = dev.segment(size=5000)
    cases.append(Case("media truncated", dev, seg, errors.FILE_TRUNCATED,
                      body=(dev.dir / seg.media["name"]).read_bytes()[:4000]))

    first = lab.device("REC-FORK", seed=1)
    before += [(first, first.boot()), (first, first.segment())]
    second = lab.device("REC-FORK", seed=2, store="b")
    second.boot()
    cases.append(Case("fork", second, second.segment(), errors.CHAIN_FORK))

    first = lab.device("REC-LINK", seed=1)
    before += [(first, first.boot()), (first, first.segment())]
    second = lab.device("REC-LINK", seed=2, store="b")
    second.boot()
    second.segment()
    cases.append(Case("broken link to the stored predecessor", second, second.segment(), errors.CHAIN_BROKEN_LINK))

    first = lab.device("REC-NEXT", seed=1)
    first.boot()
    first.segment()
    before.append((first, first.segment()))  # seq 2 arrives first
    second = lab.device("REC-NEXT", seed=2, store="b")
    second.boot()
    cases.append(Case("stored successor does not link", second, second.segment(), errors.CHAIN_BROKEN_LINK))

    dev = lab.device("REC-DOCK")
    dev.boot()
    seg = dev.segment()
    cases.append(Case("dock receipt of another gateway", dev, seg, errors.RECEIPT_WRONG_GATEWAY,
                      dock=lab.gw2.dock_receipt(dev, [seg])))
    seg = dev.segment()
    cases.append(Case("dock receipt signed by another gateway's key", dev, seg, errors.KEY_WRONG_OWNER,
                      dock=lab.gw2.dock_receipt(dev, [seg], name="GW-1")))
    seg = dev.segment()
    cases.append(Case("dock receipt not covering the seq", dev, seg, errors.RECEIPT_MISMATCH,
                      dock=lab.gw1.dock_receipt(dev, dev.manifests[:2])))
    seg = dev.segment()
    cases.append(Case("the gateway's own finding", dev, seg, errors.TIME_BACKWARDS,
                      dock=lab.gw1.dock_receipt(dev, [seg], results={seg.seq: errors.TIME_BACKWARDS})))
    return cases, before


def test_every_quarantine_cause_is_kept_with_its_code_and_listed(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        lab = Lab(server, tmp_path / "recorders")
        enroll_keys(server.services, devices={}, gateways=[lab.gw1, lab.gw2])
        lab.token = lab.gw1.sign_in(server.url, SERVER, server.services.clock())
        cases, before = _cases(lab)
        for dev, m in before:
            assert lab.send(dev, m)["status"] == "stored", (dev.device, m.seq)
        blobs = server.services.blobs
        for case in cases:
            receipt = lab.send(case.device, case.manifest, body=case.body, signed=case.signed, dock=case.dock)
            assert receipt["status"] == "quarantined" and case.code in receipt["findings"], (case.name, receipt)
            body = case.body if case.body is not None else (case.device.dir / case.manifest.media["name"]).read_bytes()
            assert receipt["media_sha256"] == hashlib.sha256(body).hexdigest(), case.name
            assert blobs.exists(receipt["media_sha256"]), case.name  # kept under its real hash

        admin = server.user("a.admin", "administrator")
        listed = admin.get(f"{server.url}/api/quarantine", params={"limit": 1000}, timeout=10).json()["segments"]
        assert len(listed) == len(cases)
        by_manifest = {item["manifest"]: item for item in listed}
        for case in cases:
            item = by_manifest[case.manifest.hash.hex()]
            codes = [f["code"] for f in item["findings"]]
            assert case.code in codes and all(f["message"] for f in item["findings"]), case.name

        unit = server.user("s.wang", "supervisor", unit="U1").get(f"{server.url}/api/quarantine", timeout=10)
        assert {i["device"] for i in unit.json()["segments"]} == {c.device.device for c in cases} - {"REC-UNKNOWN"}
        other = server.user("s.li", "supervisor", unit="U2").get(f"{server.url}/api/quarantine", timeout=10)
        assert other.json()["segments"] == []
        page = admin.get(f"{server.url}/api/quarantine", params={"limit": 2, "offset": 1}, timeout=10).json()
        assert [i["id"] for i in page["segments"]] == [i["id"] for i in listed[1:3]]
        assert admin.get(f"{server.url}/api/quarantine", params={"limit": 0}, timeout=10).status_code == 400
        officer = server.user("o.li", "officer", unit="U1", officer_no="100001")
        assert officer.get(f"{server.url}/api/quarantine", timeout=10).status_code == 403
        assert requests.get(f"{server.url}/api/quarantine", timeout=10).status_code == 401
