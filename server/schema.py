"""The index: every table the server keeps, in SQLAlchemy Core, for SQLite and PostgreSQL alike.

Blobs (media files) live in the blob store, named by their SHA-256; rows name them. Times are
integers (UTC ns) and positions integers (1e-7 degrees), as in the signed structures they come from.
Changing a table needs an Alembic migration in server/migrations/versions.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

HEX64 = String(64)
ID = String(64)

# Devices (recorders) and gateways the server accepts footage from.
enrolled = Table(
    "enrolled", metadata,
    Column("id", ID, primary_key=True),
    Column("role", String(16), nullable=False),  # device | gateway
    Column("unit", String(64)),  # the unit a recorder belongs to: its supervisors see its footage
    Column("label", String(200), nullable=False, default=""),
    Column("enrolled_ns", BigInteger, nullable=False),
)

# Public keys of devices, gateways and the server itself, with validity and revocation.
keys = Table(
    "keys", metadata,
    Column("keyid", HEX64, primary_key=True),
    Column("role", String(16), nullable=False),
    Column("owner", ID, nullable=False, index=True),
    Column("alg", String(16), nullable=False),
    Column("spki", LargeBinary, nullable=False),
    Column("valid_from_ns", BigInteger),
    Column("valid_until_ns", BigInteger),
    Column("revoked_at_ns", BigInteger),
    Column("revoked_after_seq", BigInteger),
    Column("revoked_reason", String(200)),
    Column("enrolled_ns", BigInteger, nullable=False),
)

# Dock receipts as the gateways signed them; one receipt covers a range of a device's seqs.
dock_receipts = Table(
    "dock_receipts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("sha256", HEX64, nullable=False, unique=True),
    Column("gateway", ID, nullable=False),
    Column("device", ID, nullable=False),
    Column("first_seq", BigInteger, nullable=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("envelope", LargeBinary, nullable=False),
    Column("log_index", BigInteger, nullable=False),
)

# One row per manifest: segments with media and records without (boot, recovery, gap, ...).
segments = Table(
    "segments", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("manifest", HEX64, nullable=False, unique=True),  # SHA-256 of the signed payload
    Column("device", ID, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("start_ns", BigInteger, nullable=False),
    Column("end_ns", BigInteger, nullable=False),
    Column("officer", String(64)),
    Column("unit", String(64)),
    Column("min_lat_e7", Integer),
    Column("max_lat_e7", Integer),
    Column("min_lon_e7", Integer),
    Column("max_lon_e7", Integer),
    Column("markers", Integer, nullable=False, default=0),
    Column("media_name", String(128)),
    Column("media_sha256", HEX64),
    Column("media_size", BigInteger),
    Column("status", String(16), nullable=False),  # stored | quarantined
    Column("findings", Text, nullable=False, default="[]"),  # JSON list of {code, message}
    Column("gateway", ID),
    Column("received_ns", BigInteger, nullable=False),
    Column("log_index", BigInteger, nullable=False),
    Column("envelope", LargeBinary, nullable=False),  # the manifest envelope, byte for byte
    Column("dock_receipt_id", Integer, ForeignKey("dock_receipts.id")),
    Column("server_receipt", LargeBinary, nullable=False),
    Column("purged_ns", BigInteger),  # media deleted by retention; the manifest stays
    Column("tombstone_index", BigInteger),
    Index("ix_segments_device_seq", "device", "seq"),
    Index("ix_segments_officer_start", "officer", "start_ns"),
    Index("ix_segments_unit_start", "unit", "start_ns"),
    Index("ix_segments_start", "start_ns"),
    Index("ix_segments_place", "min_lat_e7", "max_lat_e7", "min_lon_e7", "max_lon_e7"),
    Index("ix_segments_media", "media_sha256"),
    Index("ix_segments_status", "status"),
)

segment_markers = Table(
    "segment_markers", metadata,
    Column("segment_id", Integer, ForeignKey("segments.id"), nullable=False),
    Column("t_ns", BigInteger, nullable=False),
    Column("kind", String(64), nullable=False),
    Index("ix_segment_markers_kind_t", "kind", "t_ns"),
    Index("ix_segment_markers_segment", "segment_id"),
)

# Transparency log: entries, tiles (C2SP tlog-tiles; a partial tile's row grows until it is full),
# and every checkpoint signed.
log_entries = Table(
    "log_entries", metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("entry", LargeBinary, nullable=False),
)

log_tiles = Table(
    "log_tiles", metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hashes", LargeBinary, nullable=False),
)

log_checkpoints = Table(
    "log_checkpoints", metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", LargeBinary, nullable=False),
    Column("signed_ns", BigInteger, nullable=False),
)

# One row, locked by every writer of the log so appends from several processes serialize.
log_head = Table(
    "log_head", metadata,
    Column("id", SmallInteger, primary_key=True, autoincrement=False),
    Column("size", BigInteger, nullable=False),
)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False, unique=True),
    Column("display_name", String(200), nullable=False, default=""),
    Column("role", String(32), nullable=False),
    Column("unit", String(64)),
    Column("officer_no", String(64), unique=True),
    Column("password_hash", String(200), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_ns", BigInteger, nullable=False),
)

# Browser sessions and API tokens: only the token's SHA-256 is stored.
tokens = Table(
    "tokens", metadata,
    Column("sha256", HEX64, primary_key=True),
    Column("kind", String(16), nullable=False),  # session | api | gateway
    Column("user_id", Integer, ForeignKey("users.id")),
    Column("gateway", ID),
    Column("name", String(200), nullable=False, default=""),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger),
    Column("revoked_ns", BigInteger),
    Index("ix_tokens_user", "user_id"),
)

# Who did what to which evidence, and why; written before a byte is served.
audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at_ns", BigInteger, nullable=False),
    Column("actor", String(64), nullable=False),  # user:<id> | gateway:<id> | admin-cli
    Column("action", String(32), nullable=False),
    Column("target", Text, nullable=False),  # JSON: segment ids, case, clip
    Column("reason", Text, nullable=False),
    Column("reason_salt", String(32)),  # hex; custody events commit to SHA-256(salt || reason)
    Column("client", String(200), nullable=False, default=""),
    Column("case_number", String(64)),  # the case the access was for, as stated
    Column("log_index", BigInteger),  # the first of its custody events in the log
    Index("ix_audit_at", "at_ns"),
    Index("ix_audit_actor_at", "actor", "at_ns"),
    Index("ix_audit_action_at", "action", "at_ns"),
    Index("ix_audit_case_at", "case_number", "at_ns"),
)

# The segments each audit record is about, so the audit trail can be searched by segment.
audit_segments = Table(
    "audit_segments", metadata,
    Column("audit_id", Integer, ForeignKey("audit.id"), primary_key=True),
    Column("segment_id", Integer, ForeignKey("segments.id"), primary_key=True),
    Index("ix_audit_segments_segment", "segment_id"),
)

# Short-lived permissions to fetch footage by HTTP Range without a new reason per request: each one is
# made in the transaction that writes its audit record. Only the token's SHA-256 is stored.
access_grants = Table(
    "access_grants", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("token_sha256", HEX64, nullable=False, unique=True),
    Column("audit_id", Integer, ForeignKey("audit.id"), nullable=False),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("action", String(16), nullable=False),  # view | download
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
)

access_grant_segments = Table(
    "access_grant_segments", metadata,
    Column("grant_id", Integer, ForeignKey("access_grants.id"), primary_key=True),
    Column("segment_id", Integer, ForeignKey("segments.id"), primary_key=True),
)

# Evidence packages and MP4 clips built for a person, kept under export_dir until they expire.
exports = Table(
    "exports", metadata,
    Column("id", ID, primary_key=True),  # also the package's export id
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("audit_id", Integer, ForeignKey("audit.id"), nullable=False),
    Column("format", String(16), nullable=False),  # package | mp4
    Column("status", String(16), nullable=False),  # building | ready | failed | expired
    Column("sha256", HEX64),
    Column("size", BigInteger),
    Column("error", Text),
    Column("created_ns", BigInteger, nullable=False),
    Column("expires_ns", BigInteger, nullable=False),
    Index("ix_exports_status_expires", "status", "expires_ns"),
)

cases = Table(
    "cases", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(64), nullable=False, unique=True),
    Column("title", String(200), nullable=False),
    Column("unit", String(64)),
    Column("created_ns", BigInteger, nullable=False),
    Column("created_by", Integer, ForeignKey("users.id")),
)

case_handlers = Table(
    "case_handlers", metadata,
    Column("case_id", Integer, ForeignKey("cases.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Index("ix_case_handlers_user", "user_id"),  # every search asks which cases its caller handles
)

case_segments = Table(
    "case_segments", metadata,
    Column("case_id", Integer, ForeignKey("cases.id"), primary_key=True),
    Column("segment_id", Integer, ForeignKey("segments.id"), primary_key=True),
    Column("linked_ns", BigInteger, nullable=False),
    Column("linked_by", String(64), nullable=False),
    Index("ix_case_segments_segment", "segment_id"),
)

# Legal holds keep footage beyond retention regardless of cases.
holds = Table(
    "holds", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("segment_id", Integer, ForeignKey("segments.id"), nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_ns", BigInteger, nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("released_ns", BigInteger),
    Index("ix_holds_segment", "segment_id"),
)
