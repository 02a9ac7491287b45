"""Every access to evidence leaves a trace twice: a private audit record (who, when, what, action,
reason) in the index, and a public custody event in the transparency log that names the account by
id and commits to the reason. Both are written in one transaction, before any byte is served.

The commitment is SHA-256(salt || reason) with a random 16-byte salt kept beside the reason in the audit
record: an auditor holding both can show which reason was given, while the public log does not let
anyone confirm a guessed reason ("court request", a case number) by hashing it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update

from protocol import log_records
from server.schema import audit, audit_segments
from server.services import Services

MAX_REASON = 2000


class ReasonError(ValueError):
    pass


def check_reason(reason: object) -> str:
    """A stated reason is required for every view, download, export and custody change."""
    if not isinstance(reason, str) or not reason.strip():
        raise ReasonError("state a reason (for example the case number and why the footage is needed)")
    if len(reason) > MAX_REASON:
        raise ReasonError(f"a reason is at most {MAX_REASON} characters")
    return reason.strip()


@dataclass(frozen=True)
class Subject:
    """One segment an action touches: its row id (private) and manifest hash (public)."""

    segment_id: int
    manifest: str


def record(conn: Connection, s: Services, *, actor: str, action: str, subjects: Sequence[Subject], reason: str,
           case: str | None = None, client: str = "", detail: dict[str, object] | None = None) -> int:
    """Write the audit record and its custody events (one per 256 subjects) in `conn`'s write
    transaction; return the audit record's id. The caller serves nothing until this commits."""
    reason = check_reason(reason)
    if not subjects:
        raise ValueError("an audit record is about at least one segment")
    now = s.clock()
    salt = secrets.token_hex(16)
    target = {"segments": [x.segment_id for x in subjects], "case": case, **(detail or {})}
    audit_id = conn.execute(insert(audit).values(
        at_ns=now, actor=actor, action=action, target=json.dumps(target, sort_keys=True), reason=reason,
        reason_salt=salt, client=client[:200], case_number=case)).inserted_primary_key[0]
    segment_ids = sorted({x.segment_id for x in subjects})
    conn.execute(insert(audit_segments), [{"audit_id": audit_id, "segment_id": i} for i in segment_ids])
    manifests = list(dict.fromkeys(x.manifest for x in subjects))
    reason_sha256 = reason_commitment(reason, salt)
    events = [
        ("custody", log_records.issue(s.identity.signer, log_records.CUSTODY_TYPE, {
            "server": s.identity.name, "action": action, "at_ns": now, "actor": actor, "audit_id": audit_id,
            "reason_sha256": reason_sha256, "case": case, "subjects": manifests[i : i + log_records.MAX_SUBJECTS],
        }))
        for i in range(0, len(manifests), log_records.MAX_SUBJECTS)
    ]
    first = s.log.append(conn, events, now)
    conn.execute(update(audit).where(audit.c.id == audit_id).values(log_index=first))
    return audit_id


def note(conn: Connection, s: Services, *, actor: str, action: str, target: dict[str, object], reason: str = "",
         client: str = "", log_index: int | None = None) -> int:
    """An audit record of an administrative change (accounts, enrollment): no footage, no custody event."""
    return conn.execute(insert(audit).values(
        at_ns=s.clock(), actor=actor, action=action, target=json.dumps(target, sort_keys=True), reason=reason,
        client=client[:200], log_index=log_index)).inserted_primary_key[0]


def reason_commitment(reason: str, salt: str) -> str:
    """The public commitment to a reason: SHA-256 of the salt's 16 bytes followed by the reason's UTF-8."""
    return hashlib.sha256(bytes.fromhex(salt) + reason.encode("utf-8")).hexdigest()


def commitment_of(conn: Connection, audit_id: int) -> str:
    """The reason commitment an audit record's custody events carry."""
    row = conn.execute(select(audit.c.reason, audit.c.reason_salt).where(audit.c.id == audit_id)).one()
    return reason_commitment(row.reason, row.reason_salt)
