"""Every access to evidence leaves a trace twice: a private audit record (who, when, what, action,
reason) in the index, and a public custody event in the transparency log that names the account by
id and the reason by its SHA-256. Both are written in one transaction, before any byte is served.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, insert, update

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
    target = {"segments": [x.segment_id for x in subjects], "case": case, **(detail or {})}
    audit_id = conn.execute(insert(audit).values(
        at_ns=now, actor=actor, action=action, target=json.dumps(target, sort_keys=True), reason=reason,
        client=client[:200], case_number=case)).inserted_primary_key[0]
    segment_ids = sorted({x.segment_id for x in subjects})
    conn.execute(insert(audit_segments), [{"audit_id": audit_id, "segment_id": i} for i in segment_ids])
    manifests = list(dict.fromkeys(x.manifest for x in subjects))
    reason_sha256 = hashlib.sha256(reason.encode("utf-8")).hexdigest()
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
