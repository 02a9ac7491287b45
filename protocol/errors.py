"""Stable finding codes of the evidence protocol.

Codes are part of the protocol: reports, receipts and the server's quarantine
list carry them, and other verifiers must use the same strings. Add codes; never
rename or reuse one.
"""

from __future__ import annotations

# Envelope and signature
SIGNATURE_BAD = "signature.bad"
ENVELOPE_MALFORMED = "envelope.malformed"
ENVELOPE_WRONG_TYPE = "envelope.wrong_type"

# Keys and the trust list
KEY_UNKNOWN = "key.unknown"
KEY_REVOKED = "key.revoked"
KEY_OUTSIDE_VALIDITY = "key.outside_validity"
KEY_WRONG_OWNER = "key.wrong_owner"

# Manifest content
MANIFEST_MALFORMED = "manifest.malformed"
MANIFEST_NON_CANONICAL = "manifest.non_canonical"
MANIFEST_KEY_MISMATCH = "manifest.key_mismatch"

# Media files
FILE_MISSING = "file.missing"
FILE_TRUNCATED = "file.truncated"
FILE_SIZE_MISMATCH = "file.size_mismatch"
FILE_HASH_MISMATCH = "file.hash_mismatch"

# Device chain
CHAIN_BROKEN_LINK = "chain.broken_link"
CHAIN_GAP_UNEXPLAINED = "chain.gap_unexplained"
CHAIN_GAP_EXPLAINED = "chain.gap_explained"
CHAIN_DUPLICATE_SEQ = "chain.duplicate_seq"
CHAIN_FORK = "chain.fork"
CHAIN_REORDERED = "chain.reordered"
CHAIN_SESSION_SPLICE = "chain.session_splice"
CHAIN_HEAD_MISMATCH = "chain.head_mismatch"
DEVICE_REPLAYED = "device.replayed"
TIME_BACKWARDS = "time.backwards"

# Receipts and assignments
RECEIPT_MALFORMED = "receipt.malformed"
ASSIGNMENT_MALFORMED = "assignment.malformed"
RECEIPT_MISMATCH = "receipt.mismatch"
RECEIPT_QUARANTINED = "receipt.quarantined"
RECEIPT_WRONG_GATEWAY = "receipt.wrong_gateway"

# Gateway authentication (protocol/gateway_auth.py)
AUTH_MALFORMED = "auth.malformed"
AUTH_WRONG_SERVER = "auth.wrong_server"
AUTH_STALE = "auth.stale"
AUTH_REPLAYED = "auth.replayed"

# The dock link between a recorder and a gateway's bay (protocol/dock.py)
DOCK_MALFORMED = "dock.malformed"
DOCK_CHALLENGE_MISMATCH = "dock.challenge_mismatch"
DOCK_STALE = "dock.stale"
DOCK_NO_SESSION = "dock.no_session"
DOCK_NOT_PLANNED = "dock.not_planned"
DOCK_OFFSET_MISMATCH = "dock.offset_mismatch"
DOCK_DISK_FULL = "dock.disk_full"

# Evidence packages (docs/evidence-package.md)
PACKAGE_MALFORMED = "package.malformed"
PACKAGE_SEAL_BAD = "package.seal_bad"
PACKAGE_SEAL_UNTRUSTED = "package.seal_untrusted"
PACKAGE_INDEX_MISMATCH = "package.index_mismatch"
PACKAGE_FILE_EXTRA = "package.file_extra"
PACKAGE_FILE_MISSING = "package.file_missing"
PACKAGE_FILE_DUPLICATE = "package.file_duplicate"
PACKAGE_BAD_NAME = "package.bad_name"
PROOF_MISSING = "proof.missing"
PROOF_BAD = "proof.bad"
PROOF_CHECKPOINT_BAD = "proof.checkpoint_bad"
TOMBSTONE_BAD = "tombstone.bad"
FILE_PURGED = "file.purged"

# Server log records (custody, enrollment, tombstone) and what a log monitor finds
RECORD_MALFORMED = "record.malformed"
ENROLLMENT_CONFLICT = "enrollment.conflict"
TLOG_ENTRY_MISMATCH = "tlog.entry_mismatch"
TLOG_ROOT_MISMATCH = "tlog.root_mismatch"

# Codes that describe something intact (reported, but not a failure).
INFORMATIONAL = frozenset({CHAIN_GAP_EXPLAINED, FILE_PURGED})

DESCRIPTIONS: dict[str, str] = {
    SIGNATURE_BAD: "the signature does not verify over the stored bytes",
    ENVELOPE_MALFORMED: "the signed envelope cannot be parsed",
    ENVELOPE_WRONG_TYPE: "the envelope carries a different kind of signed structure",
    KEY_UNKNOWN: "signed by a key that is not in the trust list",
    KEY_REVOKED: "signed by a key after its revocation",
    KEY_OUTSIDE_VALIDITY: "signed by a key outside its validity period",
    KEY_WRONG_OWNER: "the key belongs to another device or role than the structure names",
    MANIFEST_MALFORMED: "the manifest lacks fields, has unknown fields or wrong types",
    MANIFEST_NON_CANONICAL: "the manifest bytes are not in canonical encoding",
    MANIFEST_KEY_MISMATCH: "the manifest names another key than the one that signed it",
    FILE_MISSING: "the media file named by the manifest is missing",
    FILE_TRUNCATED: "the media file is shorter than the manifest says",
    FILE_SIZE_MISMATCH: "the media file is longer than the manifest says",
    FILE_HASH_MISMATCH: "the media file's SHA-256 differs from the manifest",
    CHAIN_BROKEN_LINK: "prev does not match the hash of the preceding manifest",
    CHAIN_GAP_UNEXPLAINED: "sequence numbers are missing and no signed record explains them",
    CHAIN_GAP_EXPLAINED: "sequence numbers are missing, explained by a signed recovery or gap record",
    CHAIN_DUPLICATE_SEQ: "the same manifest appears more than once",
    CHAIN_FORK: "two different manifests claim the same sequence number",
    CHAIN_REORDERED: "a manifest is stored at another sequence position than it states",
    CHAIN_SESSION_SPLICE: "a boot session's manifests are not one contiguous run that starts at boot",
    CHAIN_HEAD_MISMATCH: "the chain does not continue from the head already known for the device",
    DEVICE_REPLAYED: "a manifest of another device is presented as this device's",
    TIME_BACKWARDS: "time goes backwards between consecutive manifests beyond the tolerance",
    RECEIPT_MALFORMED: "the receipt lacks fields or has wrong types",
    ASSIGNMENT_MALFORMED: "the officer assignment lacks fields, has wrong types or names another device",
    RECEIPT_MISMATCH: "a receipt names another device, seq, manifest, media hash or log index than the package holds",
    RECEIPT_QUARANTINED: "a receipt records that the segment failed verification when it was received",
    RECEIPT_WRONG_GATEWAY: "a dock receipt is from another gateway than the one that uploaded the segment",
    AUTH_MALFORMED: "a gateway authentication lacks fields or has wrong types",
    AUTH_WRONG_SERVER: "a gateway authentication is addressed to another server",
    AUTH_STALE: "a gateway authentication was issued too long before or after the server's time",
    AUTH_REPLAYED: "a gateway authentication was presented before (its nonce was used)",
    DOCK_MALFORMED: "a dock link message lacks fields, has unknown fields or wrong types",
    DOCK_CHALLENGE_MISMATCH: "a device's signed hello does not answer the challenge the gateway gave on that bay",
    DOCK_STALE: "a device's signed hello answers a challenge older than the gateway accepts",
    DOCK_NO_SESSION: "a dock request carries no session token the bay knows: start again with hello",
    DOCK_NOT_PLANNED: "file bytes are sent for a segment the gateway's transfer plan does not ask for",
    DOCK_OFFSET_MISMATCH: "file bytes are sent from another offset than the gateway holds",
    DOCK_DISK_FULL: "the gateway's spool would fall below its free-space reserve: the recorder keeps its footage",
    PACKAGE_MALFORMED: "the package archive, or its index, trust list, log key or checkpoint, cannot be parsed",
    PACKAGE_SEAL_BAD: "the package seal is missing or malformed, or does not match the archive bytes or its key",
    PACKAGE_SEAL_UNTRUSTED: "the package is sealed by a key that is not a server key you trust",
    PACKAGE_INDEX_MISMATCH: "an archive member differs from the package index in size, SHA-256 or order",
    PACKAGE_FILE_EXTRA: "the archive holds a member the package index does not list",
    PACKAGE_FILE_MISSING: "the package index lists a file the archive does not hold",
    PACKAGE_FILE_DUPLICATE: "the archive holds two members with the same name",
    PACKAGE_BAD_NAME: "a member name is outside the package layout or belongs to no manifest in the package",
    PROOF_MISSING: "a manifest in the package has no transparency-log inclusion proof",
    PROOF_BAD: "an inclusion proof does not show the entry in the log at the package checkpoint",
    PROOF_CHECKPOINT_BAD: "the package checkpoint is not signed by the log key",
    TOMBSTONE_BAD: "a tombstone is not a valid server-signed record of this segment's purge",
    FILE_PURGED: "the media file was deleted by retention, as a valid server-signed tombstone records",
    RECORD_MALFORMED: "a custody event, enrollment change or tombstone lacks fields or has wrong types",
    ENROLLMENT_CONFLICT: "an enrollment change contradicts an earlier one for the same key",
    TLOG_ENTRY_MISMATCH: "an entry served by the log does not hash to the leaf hash in its tiles",
    TLOG_ROOT_MISMATCH: "the entries and tiles served by the log do not lead to its signed root",
}


class ProtocolError(ValueError):
    """A structure failed a protocol rule; `code` is one of the codes above."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
