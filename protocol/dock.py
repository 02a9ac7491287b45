"""The dock link: the messages between a docked recorder and the gateway's bay, and their checks.

The recorder is the HTTP client; see docs/protocol.md §10 for each request and answer. The one signed
message is the device's *hello*: over the gateway's fresh nonce and time, the gateway's id and the
device's own clock reading, it proves that the recorder holds its enrolled key. The other messages are
plain JSON; each has a checker here that both sides use, so a malformed one is refused the same way
(`dock.malformed`) wherever it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from protocol import errors, signatures
from protocol.errors import ProtocolError
from protocol.fields import HEX32, HEX64, IDENTIFIER, INT64_MAX, Checker
from protocol.receipts import SignedKind, SignedRecord, check_version
from protocol.tlog.tiles import MAX_ENTRY_SIZE
from protocol.trust import TrustList

HELLO_TYPE = "application/vnd.liuhen.dock-hello.v1+json"
# A hello must answer a challenge this recent: it is signed at once, even by a secure element.
CHALLENGE_TTL_NS = 60 * 10**9
# What one dock receipt may cover: the server logs each receipt as one transparency-log entry, and an
# entry is at most 65,535 bytes; 250 segments of "ok" make about 64 KB, so longer results split further.
MAX_RECEIPT_SEGMENTS = 250
MAX_RECEIPT_BYTES = MAX_ENTRY_SIZE
MAX_ENVELOPE_BYTES = 1 << 20
MAX_PENDING = 100_000
MAX_ASSIGNMENT_BYTES = 4096
OFFSET_HEADER = "Dock-Offset"

_c = Checker(errors.DOCK_MALFORMED)
_HELLO_FIELDS = frozenset({"v", "device", "gateway", "nonce", "gateway_ns", "device_ns"})


@dataclass(frozen=True)
class Challenge:
    """What the gateway answered to a device's hello on one bay."""

    device: str
    gateway: str
    nonce: str
    gateway_ns: int

    def to_json(self) -> dict[str, Any]:
        return {"gateway": self.gateway, "nonce": self.nonce, "gateway_ns": self.gateway_ns}


@dataclass(frozen=True)
class SessionAnswer:
    token: str
    gateway_ns: int  # the gateway's UTC when it answered: the recorder follows it
    clock_offset_ns: int  # the device's clock minus the gateway's, as the gateway measured it


@dataclass(frozen=True)
class Offer:
    """One manifest the recorder holds without a dock receipt, and the size of its media file there."""

    envelope: bytes
    size: int | None  # None: the manifest names no media, or the recorder lacks the file

    def to_json(self) -> dict[str, Any]:
        return {"envelope": self.envelope.decode("ascii"), "size": self.size}


@dataclass(frozen=True)
class Transfer:
    seq: int
    offset: int  # bytes of the file the gateway already holds: send from here
    size: int


@dataclass(frozen=True)
class Refusal:
    seq: int | None  # None when the manifest could not be read at all
    code: str
    message: str


@dataclass(frozen=True)
class Plan:
    """The gateway's answer to the pending list: files to send in this order, manifests it already
    holds (earlier or just now, for records without media), and manifests it will not take."""

    send: list[Transfer]
    held: list[int]
    refused: list[Refusal]

    def to_json(self) -> dict[str, Any]:
        return {"send": [{"seq": t.seq, "offset": t.offset, "size": t.size} for t in self.send],
                "held": self.held,
                "refused": [{"seq": r.seq, "code": r.code, "message": r.message} for r in self.refused]}


@dataclass(frozen=True)
class FileAnswer:
    seq: int
    offset: int
    complete: bool
    result: str | None  # once complete: "ok" or the finding code the file arrived with


def midpoint_offset(reading_ns: int, before_ns: int, after_ns: int) -> int:
    """How far a clock reading taken between two local readings is ahead of the local clock, taking the
    reading to have been made halfway (NTP's assumption of a symmetric path); the error is at most half
    of `after_ns - before_ns`."""
    return reading_ns - (before_ns + after_ns) // 2


# -- the device's signed hello -------------------------------------------------------------------------


def check_hello(f: object) -> dict[str, Any]:
    f = _c.exact(f, _HELLO_FIELDS, "dock hello")
    check_version(_c, f, "dock hello")
    _c.str(f["device"], "device", IDENTIFIER)
    _c.str(f["gateway"], "gateway", IDENTIFIER)
    _c.str(f["nonce"], "nonce", HEX32)
    _c.int(f["gateway_ns"], "gateway_ns")
    _c.int(f["device_ns"], "device_ns")
    return f


# The key must be usable at the gateway's time (echoed, and compared with the challenge below), not at
# the device's reading: a recorder whose clock was reset must still be able to dock and be set right.
_HELLO = SignedKind(HELLO_TYPE, check_hello, errors.DOCK_MALFORMED, "device", "device", "gateway_ns")


def issue_hello(signer: signatures.Signer, challenge: Challenge, device_ns: int) -> bytes:
    """The recorder's answer to a challenge: signed with its key, carrying its own clock reading."""
    return _HELLO.issue(signer, {"device": challenge.device, "gateway": challenge.gateway,
                                 "nonce": challenge.nonce, "gateway_ns": challenge.gateway_ns,
                                 "device_ns": device_ns})


def open_hello(raw: bytes, trust: TrustList) -> SignedRecord:
    """Parse and verify a signed hello: a `device` key of `device`, usable at `gateway_ns`; raise
    ProtocolError (`key.unknown`, `key.revoked`, `signature.bad`, `dock.malformed` ...)."""
    return _HELLO.open(raw, trust)


def check_answers(hello: SignedRecord, challenge: Challenge, now_ns: int,
                  max_age_ns: int = CHALLENGE_TTL_NS) -> None:
    """Refuse a verified hello that answers another challenge than `challenge` (`dock.challenge_mismatch`)
    or one issued more than `max_age_ns` before `now_ns` (`dock.stale`)."""
    for name in ("device", "gateway", "nonce", "gateway_ns"):
        if hello[name] != getattr(challenge, name):
            raise ProtocolError(errors.DOCK_CHALLENGE_MISMATCH,
                                f"the hello's {name} is {hello[name]!r}, the challenge's {getattr(challenge, name)!r}")
    age = now_ns - challenge.gateway_ns
    if age > max_age_ns:
        raise ProtocolError(errors.DOCK_STALE, f"the challenge was given {age // 10**9} s ago; "
                                               f"answer within {max_age_ns // 10**9} s")


# -- plain JSON messages -------------------------------------------------------------------------------


def check_hello_request(obj: object) -> str:
    """POST /dock/hello: the device names itself."""
    return _c.str(_c.exact(obj, frozenset({"device"}), "hello request")["device"], "device", IDENTIFIER)


def parse_challenge(obj: object, device: str) -> Challenge:
    f = _c.exact(obj, frozenset({"gateway", "nonce", "gateway_ns"}), "challenge")
    return Challenge(device, _c.str(f["gateway"], "gateway", IDENTIFIER), _c.str(f["nonce"], "nonce", HEX32),
                     _c.int(f["gateway_ns"], "gateway_ns"))


def parse_session_answer(obj: object) -> SessionAnswer:
    f = _c.exact(obj, frozenset({"token", "gateway_ns", "clock_offset_ns"}), "session answer")
    return SessionAnswer(_c.str(f["token"], "token", HEX32), _c.int(f["gateway_ns"], "gateway_ns"),
                         _c.int(f["clock_offset_ns"], "clock_offset_ns", -INT64_MAX, INT64_MAX))


def parse_pending(obj: object) -> list[Offer]:
    """POST /dock/pending: the manifests the recorder holds without a dock receipt (envelope, file size)."""
    items = _c.list(_c.exact(obj, frozenset({"manifests"}), "pending list")["manifests"], "manifests", MAX_PENDING)
    offers = []
    for i, item in enumerate(items):
        item = _c.exact(item, frozenset({"envelope", "size"}), f"manifests[{i}]")
        size = None if item["size"] is None else _c.int(item["size"], f"manifests[{i}].size")
        offers.append(Offer(_envelope(item["envelope"], f"manifests[{i}].envelope", MAX_ENVELOPE_BYTES), size))
    return offers


def parse_plan(obj: object) -> Plan:
    f = _c.exact(obj, frozenset({"send", "held", "refused"}), "plan")
    send = []
    for i, t in enumerate(_c.list(f["send"], "send", MAX_PENDING)):
        t = _c.exact(t, frozenset({"seq", "offset", "size"}), f"send[{i}]")
        size = _c.int(t["size"], f"send[{i}].size")
        send.append(Transfer(_c.int(t["seq"], f"send[{i}].seq"), _c.int(t["offset"], f"send[{i}].offset", 0, size),
                             size))
    held = [_c.int(s, f"held[{i}]") for i, s in enumerate(_c.list(f["held"], "held", MAX_PENDING))]
    refused = []
    for i, r in enumerate(_c.list(f["refused"], "refused", MAX_PENDING)):
        r = _c.exact(r, frozenset({"seq", "code", "message"}), f"refused[{i}]")
        seq = None if r["seq"] is None else _c.int(r["seq"], f"refused[{i}].seq")
        refused.append(Refusal(seq, _c.str(r["code"], f"refused[{i}].code"),
                               _c.str(r["message"], f"refused[{i}].message", max_len=4096)))
    seqs = [t.seq for t in send] + held
    if len(set(seqs)) != len(seqs):
        raise _c.fail("a seq appears twice in the plan")
    return Plan(send, held, refused)


def parse_file_answer(obj: object) -> FileAnswer:
    f = _c.exact(obj, frozenset({"seq", "offset", "complete", "result"}), "file answer")
    complete = _c.bool(f["complete"], "complete")
    result = None if f["result"] is None else _c.str(f["result"], "result")
    if complete != (result is not None):
        raise _c.fail("a complete file has a result; an incomplete one has none")
    return FileAnswer(_c.int(f["seq"], "seq"), _c.int(f["offset"], "offset"), complete, result)


def parse_receipts_request(obj: object) -> list[int]:
    """POST /dock/receipts: the seqs the recorder holds without a receipt (issued ones come back again)."""
    seqs = _c.list(_c.exact(obj, frozenset({"seqs"}), "receipts request")["seqs"], "seqs", MAX_PENDING)
    return [_c.int(s, f"seqs[{i}]") for i, s in enumerate(seqs)]


def parse_receipts_answer(obj: object) -> list[bytes]:
    items = _c.list(_c.exact(obj, frozenset({"receipts"}), "receipts answer")["receipts"], "receipts")
    return [_envelope(r, f"receipts[{i}]", MAX_RECEIPT_BYTES) for i, r in enumerate(items)]


def parse_assignment_answer(obj: object) -> bytes | None:
    """GET /dock/assignment: the gateway-signed assignment (check-out) waiting for this device, or None."""
    value = _c.exact(obj, frozenset({"assignment"}), "assignment answer")["assignment"]
    return None if value is None else _envelope(value, "assignment", MAX_ASSIGNMENT_BYTES)


def parse_assignment_ack(obj: object) -> str:
    """POST /dock/assignment: the ref (SHA-256 of the envelope) of the assignment the recorder signed into its
    chain; the gateway then counts it delivered."""
    return _c.str(_c.exact(obj, frozenset({"ref"}), "assignment acknowledgement")["ref"], "ref", HEX64)


def _envelope(value: object, where: str, max_len: int) -> bytes:
    """An envelope carried as a JSON string: its canonical bytes are ASCII (base64, hex and type names)."""
    text = _c.str(value, where, max_len=max_len)
    if not text.isascii():
        raise _c.fail(f"{where} must be the ASCII envelope bytes")
    return text.encode("ascii")


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """Every refusal on the dock link: a finding code, a sentence for people, and what the code needs."""
    return {"error": code, "message": message, **extra}
