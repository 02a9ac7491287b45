"""Enrollment from the command line and the API: every change lands in the index, the public log (as a
server-signed enrollment record) and the audit trail; the trust list anyone can fetch follows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from liuhen.cli import main
from protocol import log_records, signatures
from protocol.trust import TrustList, parse_trust_list
from server.app import open_services
from server.cli import config_or_exit
from server.schema import audit, enrolled, log_entries
from server.services import Services
from tests.server.harness import InProcessServer, write_config

AT = "2025-11-24T16:00:00Z"
AT_NS = 1_764_000_000 * 10**9


def logged_trust(s: Services) -> tuple[TrustList, list[log_records.Record]]:
    """The trust list rebuilt from the log's enrollment records (as a monitor does), and those records."""
    server_only = TrustList([s.identity.trusted_key()])
    with s.db.read() as conn:
        entries = conn.execute(select(log_entries.c.entry).where(log_entries.c.kind == "enrollment")
                               .order_by(log_entries.c.idx)).scalars().all()
    records = [log_records.open_record(e, log_records.ENROLLMENT_TYPE, server_only) for e in entries]
    rebuilt = TrustList()
    for record in records:
        log_records.apply_enrollment(rebuilt, record)
    return rebuilt, records


def same_keys(a: TrustList, b: TrustList) -> None:
    def view(t: TrustList) -> dict[str, tuple[object, ...]]:
        return {k.keyid: (k.role, k.owner, k.revoked and (k.revoked.at_ns, k.revoked.after_seq)) for k in t.entries()}
    assert view(a) == view(b)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_enrollment_from_the_command_line(db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(write_config(tmp_path, db_url))
    assert run(capsys, "server", "init", "--config", config)[0] == 0
    for name in ("rec", "gw"):
        assert run(capsys, "keys", "gen", "--out", str(tmp_path / f"{name}.key"))[0] == 0
    code, out, _ = run(capsys, "admin", "device", "enroll", "--config", config, "--id", "REC-0001", "--key",
                       str(tmp_path / "rec.key.pub"), "--unit", "U1", "--label", "patrol car 7")
    assert code == 0 and out.startswith("enrolled device REC-0001 key ")
    device_keyid = out.split()[-1]
    assert run(capsys, "admin", "gateway", "enroll", "--config", config, "--id", "GW-1", "--key",
               str(tmp_path / "gw.key.pub"))[0] == 0
    code, out, _ = run(capsys, "admin", "device", "list", "--config", config)
    [listed] = [json.loads(line) for line in out.splitlines()]
    assert (listed["id"], listed["unit"], listed["label"], listed["keys"][0]["keyid"]) == \
        ("REC-0001", "U1", "patrol car 7", device_keyid)
    code, out, _ = run(capsys, "admin", "key", "revoke", "--config", config, "--keyid", device_keyid[:10],
                       "--at", AT, "--after-seq", "41", "--reason", "lost on patrol")
    assert code == 0 and out.startswith("revoked device REC-0001 key")
    assert run(capsys, "admin", "trust", "export", "--config", config, "--out", str(tmp_path / "trust.json"))[0] == 0
    exported = parse_trust_list((tmp_path / "trust.json").read_bytes())
    assert [(k.role, k.owner) for k in exported.entries()] == [("server", "srv-test"), ("device", "REC-0001"),
                                                               ("gateway", "GW-1")]
    revoked = exported.get(device_keyid).revoked
    assert revoked is not None and (revoked.at_ns, revoked.after_seq, revoked.reason) == (AT_NS, 41, "lost on patrol")
    code, out, _ = run(capsys, "admin", "trust", "export", "--config", config)
    assert parse_trust_list(out.encode()).get(device_keyid) == exported.get(device_keyid)

    refusals = [
        (["device", "enroll", "--id", "REC-0002", "--key", str(tmp_path / "rec.key.pub")], "enrolled already"),
        (["device", "enroll", "--id", "GW-1", "--key", str(tmp_path / "other.pub")], "cannot read"),
        (["gateway", "enroll", "--id", "REC-0001", "--key", str(tmp_path / "trust.json")], "not a usable PEM"),
        (["key", "revoke", "--keyid", "00000000", "--reason", "x"], "no enrolled key"),
        (["key", "revoke", "--keyid", device_keyid, "--reason", "again"], "revoked already"),
        (["key", "revoke", "--keyid", exported.entries()[2].keyid, "--after-seq", "3", "--reason", "x"],
         "sequence number"),
        (["key", "revoke", "--keyid", exported.entries()[0].keyid, "--reason", "x"], "server's own key"),
        (["device", "enroll", "--id", "bad id", "--key", str(tmp_path / "gw.key.pub")], "not an id"),
    ]
    s = open_services(config_or_exit(Path(config)))
    try:
        with s.db.read() as conn:
            size_before = len(conn.execute(select(log_entries.c.idx)).all())
        for args, message in refusals:
            area, action, *rest = args
            code, _, err = run(capsys, "admin", area, action, "--config", config, *rest)
            assert code == 2 and message in err, (args, err)
        with s.db.read() as conn:
            assert len(conn.execute(select(log_entries.c.idx)).all()) == size_before  # refusals change nothing
            actions = conn.execute(select(audit.c.action, audit.c.actor, audit.c.log_index)
                                   .order_by(audit.c.id)).all()
        rebuilt, records = logged_trust(s)
        same_keys(rebuilt, exported)
        assert [(r["action"], r["actor"]) for r in records] == [
            ("enroll", "system:startup"), ("enroll", "admin-cli"), ("enroll", "admin-cli"), ("revoke", "admin-cli")]
        assert [(a.action, a.actor) for a in actions] == [(r["action"], r["actor"]) for r in records]
        assert all(a.log_index is not None for a in actions)
    finally:
        s.db.close()
    with pytest.raises(SystemExit):
        main(["admin", "key", "revoke", "--config", config, "--keyid", device_keyid, "--at", "yesterday",
              "--reason", "x"])


def pem(signer: signatures.KeySigner) -> str:
    return signatures.public_pem(signer.public_key()).decode()


def test_enrollment_over_the_api(db_url: str, tmp_path: Path) -> None:
    with InProcessServer(tmp_path, db_url) as server:
        url = server.url
        admin = server.user("a.admin", "administrator")
        supervisor = server.user("s.wang", "supervisor", unit="U1")
        rec = signatures.KeySigner(signatures.generate())
        gw = signatures.KeySigner(signatures.generate(signatures.ES256))
        body = {"id": "REC-0001", "public_key": pem(rec), "unit": "U1", "label": "car 7"}
        assert requests.post(f"{url}/api/devices", json=body, timeout=10).status_code == 401
        assert supervisor.post(f"{url}/api/devices", json=body, timeout=10).status_code == 403
        r = admin.post(f"{url}/api/devices", json=body, timeout=10)
        assert r.status_code == 201 and r.json() == {"keyid": rec.keyid, "alg": "ed25519", "role": "device",
                                                     "owner": "REC-0001"}
        r = admin.post(f"{url}/api/gateways", json={"id": "GW-1", "public_key": pem(gw)}, timeout=10)
        assert r.status_code == 201 and r.json()["alg"] == "es256"

        refused = [
            ("/api/devices", body, 409),  # the same key again
            ("/api/devices", {**body, "public_key": "-----BEGIN PUBLIC KEY-----\nxx\n"}, 400),
            ("/api/devices", {**body, "id": "../x"}, 400),
            ("/api/devices", {**body, "extra": 1}, 400),
            ("/api/gateways", {"id": "REC-0001", "public_key": pem(signatures.KeySigner(signatures.generate()))}, 409),
            (f"/api/keys/{rec.keyid}/revoke", {"reason": " "}, 400),
            (f"/api/keys/{'0' * 64}/revoke", {"reason": "lost"}, 404),
            (f"/api/keys/{gw.keyid}/revoke", {"reason": "lost", "after_seq": 3}, 400),
            (f"/api/keys/{server.services.identity.keyid}/revoke", {"reason": "lost"}, 400),
        ]
        for path, sent, status in refused:
            r = admin.post(url + path, json=sent, timeout=10)
            assert r.status_code == status and r.json()["message"], (path, sent, r.text)

        r = admin.post(f"{url}/api/keys/{rec.keyid}/revoke", json={"reason": "lost", "at_ns": AT_NS, "after_seq": 41},
                       timeout=10)
        assert r.status_code == 200
        assert admin.post(f"{url}/api/keys/{rec.keyid}/revoke", json={"reason": "lost"}, timeout=10).status_code == 409
        devices = admin.get(f"{url}/api/devices", timeout=10).json()["devices"]
        assert devices[0]["keys"][0]["revoked"] == {"at_ns": AT_NS, "after_seq": 41, "reason": "lost"}
        assert admin.get(f"{url}/api/gateways", timeout=10).json()["gateways"][0]["id"] == "GW-1"
        assert supervisor.get(f"{url}/api/devices", timeout=10).status_code == 403

        trust = requests.get(f"{url}/api/trust", timeout=10)  # public
        assert trust.status_code == 200
        published = parse_trust_list(trust.content)
        rebuilt, records = logged_trust(server.services)
        same_keys(rebuilt, published)
        admin_id = admin.get(f"{url}/api/me", timeout=10).json()["id"]
        assert [(r["action"], r["actor"]) for r in records[1:]] == [
            ("enroll", f"user:{admin_id}"), ("enroll", f"user:{admin_id}"), ("revoke", f"user:{admin_id}")]
        with server.services.db.read() as conn:
            assert conn.execute(select(enrolled.c.unit).where(enrolled.c.id == "REC-0001")).scalar() == "U1"
