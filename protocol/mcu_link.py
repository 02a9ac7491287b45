"""Framing for the UART between the recorder's main board and its supervisor MCU.

    offset  size  field
    0       2     sync: A5 5A
    2       1     frame type
    3       1     sequence number
    4       2     payload length n, big-endian, 0..1024
    6       2     header CRC: CRC-16/CCITT-FALSE of bytes 2..5, big-endian
    8       n     payload
    8+n     2     payload CRC: CRC-16/CCITT-FALSE of bytes 8..8+n-1, big-endian

The header has its own CRC so that a corrupted length is refused at once instead of making the
decoder wait for bytes that belong to the next frames. The payload CRC starts afresh rather than
running on over the header: after a header and its own CRC the register is 0, and from 0 a run
of zero bytes (a line held low after a cut frame) would carry a valid CRC of 0000.

A message is a frame whose payload is the canonical encoding of an object (`protocol.canonical`).
docs/protocol.md ("MCU link") is the specification.

This module runs unchanged on MicroPython: builtins only, and a table CRC rather than binascii,
which small MicroPython builds lack.
"""

from collections import namedtuple

from . import canonical

SYNC = b"\xa5\x5a"
HEADER_SIZE = 8
CRC_SIZE = 2
MAX_PAYLOAD = 1024
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE

# Frame types. "MCU": sent by the supervisor MCU, "main": by the main board.
ACK = 0x01  # both: the frame with body["seq"] arrived and was accepted
NACK = 0x02  # both: the frame with body["seq"] arrived intact but was refused
BUTTON = 0x10  # MCU: a button was pressed, released or held
LED_SET = 0x11  # main: set an LED
HAPTIC = 0x12  # main: run the vibration motor
BATTERY = 0x13  # MCU: battery state (a report, or the answer to BATTERY_GET)
BATTERY_GET = 0x14  # main: ask for the battery state
RTC_GET = 0x20  # main: ask for the RTC time
RTC_TIME = 0x21  # MCU: the RTC time (answers RTC_GET)
RTC_SET = 0x22  # main: set the RTC
POWER_FAIL = 0x30  # MCU: supply about to fail; finish writes now
TAMPER = 0x31  # MCU: the enclosure switch or another tamper input fired
SIGN_REQUEST = 0x40  # main: sign a digest with the key behind the MCU
SIGN_RESPONSE = 0x41  # MCU: the signature (answers SIGN_REQUEST)
KEY_GET = 0x42  # main: ask for the public key behind the MCU
KEY_INFO = 0x43  # MCU: the public key (answers KEY_GET)

TYPE_NAMES = {
    ACK: "ACK",
    NACK: "NACK",
    BUTTON: "BUTTON",
    LED_SET: "LED_SET",
    HAPTIC: "HAPTIC",
    BATTERY: "BATTERY",
    BATTERY_GET: "BATTERY_GET",
    RTC_GET: "RTC_GET",
    RTC_TIME: "RTC_TIME",
    RTC_SET: "RTC_SET",
    POWER_FAIL: "POWER_FAIL",
    TAMPER: "TAMPER",
    SIGN_REQUEST: "SIGN_REQUEST",
    SIGN_RESPONSE: "SIGN_RESPONSE",
    KEY_GET: "KEY_GET",
    KEY_INFO: "KEY_INFO",
}

Frame = namedtuple("Frame", ("ftype", "seq", "payload"))
Message = namedtuple("Message", ("ftype", "seq", "body"))


class LinkError(ValueError):
    """A frame or message that cannot be built or read: `.code` is stable, `.message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code + ": " + message)
        self.code = code
        self.message = message


def _crc_table() -> tuple:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021 if crc & 0x8000 else crc << 1) & 0xFFFF
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16(data: bytes, start: int = 0, end: int | None = None) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR) of data[start:end]."""
    if end is None:
        end = len(data)
    crc = 0xFFFF
    table = _CRC_TABLE
    for i in range(start, end):
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ data[i]]
    return crc


def _u16(value: int) -> bytes:
    return bytes([value >> 8, value & 0xFF])


def _u16_at(data: bytes, pos: int) -> int:
    return (data[pos] << 8) | data[pos + 1]


def _check_byte(what: str, value: int) -> None:
    # `is True/False`: on CPython bool is an int, and is never meant here.
    if value is True or value is False or not isinstance(value, int) or not 0 <= value <= 0xFF:
        raise LinkError("mcu.bad_field", f"{what} must be an integer 0..255")


def encode_frame(ftype: int, seq: int, payload: bytes) -> bytes:
    """The bytes of one frame."""
    _check_byte("frame type", ftype)
    _check_byte("sequence number", seq)
    if not isinstance(payload, (bytes, bytearray)):
        raise LinkError("mcu.bad_field", "payload must be bytes")
    if len(payload) > MAX_PAYLOAD:
        raise LinkError("mcu.too_large", f"payload of {len(payload)} bytes is over {MAX_PAYLOAD}")
    payload = bytes(payload)
    header = bytes([ftype, seq, len(payload) >> 8, len(payload) & 0xFF])
    return SYNC + header + _u16(crc16(header)) + payload + _u16(crc16(payload))


def encode_message(ftype: int, seq: int, body: dict) -> bytes:
    """A frame whose payload is the canonical encoding of the object `body`."""
    if not isinstance(body, dict):
        raise LinkError("mcu.bad_body", "a message body is an object (dict)")
    return encode_frame(ftype, seq, canonical.encode(body))


def decode_message(frame: Frame) -> Message:
    """The message in a frame; raises canonical.CanonicalError or LinkError for a bad payload."""
    ftype, seq, payload = frame
    body = canonical.decode(payload, MAX_PAYLOAD)
    if not isinstance(body, dict):
        raise LinkError("mcu.bad_body", "a message body is an object")
    return Message(ftype, seq, body)


class FrameDecoder:
    """Turns the bytes read from the UART, in pieces of any size, into frames.

    It holds at most one frame's worth of bytes (MAX_FRAME). Bytes that are not part of a good
    frame (garbage, a cut frame, a frame that fails a CRC) are dropped and counted; after a
    failed frame the search for the next sync starts one byte after the failed sync, so a real
    frame that began inside the failed one is still found.

    A frame cut short and never completed keeps the decoder waiting for its declared length;
    the bytes that follow complete it, fail its CRC and are read again, so nothing is lost, but
    delivery can wait. Call `idle()` when the line has gone quiet (no byte for 20 ms) to stop
    waiting.
    """

    def __init__(self) -> None:
        self._buf = b""
        self.discarded = 0  # bytes dropped
        self.bad_headers = 0  # syncs whose header failed its CRC or declared too long a payload
        self.bad_crcs = 0  # frames whose header was good but the payload CRC was not

    @property
    def buffered(self) -> int:
        """Bytes held while waiting for the rest of a frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list:
        """The frames completed by `data`, in order."""
        frames = []
        data = bytes(data)
        pos = 0
        while pos < len(data):
            room = MAX_FRAME - len(self._buf)
            self._buf += data[pos : pos + room]
            pos += room
            self._scan(frames)
        return frames

    def idle(self) -> list:
        """The line went quiet: drop the partial frame held and deliver whole frames after it."""
        frames = []
        while self._buf:
            self._buf = self._buf[1:]
            self.discarded += 1
            self._scan(frames)
        return frames

    def _scan(self, frames: list) -> None:
        buf = self._buf
        pos = 0
        while True:
            start = buf.find(SYNC, pos)
            if start < 0:
                # Keep a last A5: it may be the first half of a sync split between reads.
                start = len(buf) - 1 if len(buf) > pos and buf[-1] == SYNC[0] else len(buf)
            self.discarded += start - pos
            pos = start
            if len(buf) - pos < HEADER_SIZE:
                break
            length = _u16_at(buf, pos + 4)
            if length > MAX_PAYLOAD or crc16(buf, pos + 2, pos + 6) != _u16_at(buf, pos + 6):
                self.bad_headers += 1
                self.discarded += 1
                pos += 1
                continue
            end = pos + HEADER_SIZE + length + CRC_SIZE
            if len(buf) < end:
                break
            if crc16(buf, pos + HEADER_SIZE, end - CRC_SIZE) != _u16_at(buf, end - CRC_SIZE):
                self.bad_crcs += 1
                self.discarded += 1
                pos += 1
                continue
            frames.append(Frame(buf[pos + 2], buf[pos + 3], buf[pos + HEADER_SIZE : end - CRC_SIZE]))
            pos = end
        self._buf = buf[pos:]
