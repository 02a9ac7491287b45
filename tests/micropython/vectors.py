"""Test vectors for protocol.canonical and protocol.mcu_link, printed one line per case.

Runs on CPython and on MicroPython; test_micropython.py checks that both print the same lines.
`--pure` (CPython only) turns off canonical's json fast path, so the pure parser is compared too.
Nothing here may depend on dict order (MicroPython's is not insertion order) or on repr().
"""

import sys

from protocol import canonical, mcu_link
from protocol.canonical import CanonicalError
from protocol.mcu_link import LinkError

if "--pure" in sys.argv[1:]:
    canonical._json = None


class Random:
    """A small deterministic generator (LCG), identical on both interpreters."""

    def __init__(self, seed: int) -> None:
        self.state = seed

    def below(self, n: int) -> int:
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.state >> 8) % n

    def choice(self, items: list) -> object:
        return items[self.below(len(items))]

    def data(self, n: int) -> bytes:
        return bytes([self.below(256) for _ in range(n)])


def hexs(data: bytes) -> str:
    # MicroPython's b"".hex() returns b"", not "".
    return data.hex() if data else ""


def error_line(error: Exception) -> str:
    return "! " + error.code + " " + error.message


def encode_line(value: object) -> str:
    try:
        return hexs(canonical.encode(value))
    except CanonicalError as error:
        return error_line(error)


def decode_line(data: bytes, max_size: int = canonical.MAX_SIZE) -> str:
    try:
        value = canonical.decode(data, max_size)
    except CanonicalError as error:
        return error_line(error)
    encoded = canonical.encode(value)
    return ("ok " if encoded == data else "MISMATCH ") + hexs(encoded)


def nested(depth: int) -> list:
    value = []
    for _ in range(depth - 1):
        value = [value]
    return value


# --- canonical: fixed values -------------------------------------------------------------------

ENCODE_CASES = [
    ("null", None),
    ("true", True),
    ("false", False),
    ("zero", 0),
    ("minus-one", -1),
    ("int-max", canonical.MAX_INT),
    ("int-min", canonical.MIN_INT),
    ("int-max+1", canonical.MAX_INT + 1),
    ("int-min-1", canonical.MIN_INT - 1),
    ("empty-string", ""),
    ("ascii", "hello, world"),
    ("escapes", '"\\/\b\t\n\f\r'),
    ("controls", "".join([chr(c) for c in range(0x20)]) + "\x7f"),
    ("unicode", "\u00e9\u4e2d\u6587\u2028\u2029\ufeff\uffff\U0001f600\U0010ffff"),
    ("empty-list", []),
    ("empty-object", {}),
    ("list", [1, "a", None, True, False, [], {}]),
    ("keys-sorted", {"b": 1, "a": 2, "aa": 3, "A": 4, "": 5, "\u00e9": 6, "\U0001f600": 7, "\uffff": 8}),
    ("nested", {"a": [{"b": [{"c": []}]}], "d": {"e": {"f": None}}}),
    ("bool-in-list", [True, 1, False, 0]),
    ("depth-32", nested(32)),
    ("depth-33", nested(33)),
    ("float", 1.5),
    ("float-in-list", [1, 2.0]),
    ("bytes", b"x"),
    ("bytearray", bytearray(b"x")),
    ("tuple", (1, 2)),
    ("set", {1}),
    ("int-key", {1: "a"}),
    ("bool-key", {True: "a"}),
    ("none-key", {None: "a"}),
    ("lone-surrogate", "\ud800"),
    ("surrogate-pair-as-two", "\ud83d\ude00"),
    ("surrogate-in-key", {"\udfff": 1}),
]

DECODE_CASES = [
    ("int", b"123"),
    ("negative", b"-45"),
    ("int-max", b"9223372036854775807"),
    ("int-min", b"-9223372036854775808"),
    ("int-max+1", b"9223372036854775808"),
    ("int-min-1", b"-9223372036854775809"),
    ("int-20-digits", b"12345678901234567890"),
    ("int-long", b"1" * 400),
    ("int-zero-padded-long", b"0" * 30 + b"1"),
    ("leading-zero", b"01"),
    ("minus-zero", b"-0"),
    ("minus-zero-padded", b"-00"),
    ("minus-alone", b"-"),
    ("plus", b"+1"),
    ("float", b"1.5"),
    ("float-exp", b"1e5"),
    ("float-exp-sign", b"1E-5"),
    ("float-zero", b"0.0"),
    ("float-minus-zero", b"-0.0"),
    ("float-in-object", b'{"a":1.0}'),
    ("float-bad-dot", b"1."),
    ("float-bad-exp", b"1e"),
    ("float-bad-exp-sign", b"1e+"),
    ("float-dot-first", b".5"),
    ("nan", b"NaN"),
    ("infinity", b"Infinity"),
    ("minus-infinity", b"-Infinity"),
    ("null", b"null"),
    ("true", b"true"),
    ("false", b"false"),
    ("literal-cut", b"tru"),
    ("literal-caps", b"True"),
    ("literal-trailing", b"nullx"),
    ("string", b'"abc"'),
    ("string-unicode", '"\u00e9\u4e2d\U0001f600"'.encode()),
    ("string-escapes", b'"\\"\\\\\\b\\t\\n\\f\\r"'),
    ("string-u-control", b'"\\u0000\\u001f"'),
    ("string-u-control-upper", b'"\\u001F"'),
    ("string-u-letter", b'"\\u0041"'),
    ("string-u-nonascii", b'"\\u00e9"'),
    ("string-u-pair", b'"\\ud83d\\ude00"'),
    ("string-u-lone-high", b'"\\ud800"'),
    ("string-u-lone-low", b'"\\udc00"'),
    ("string-u-high-then-letter", b'"\\ud800\\u0041"'),
    ("string-u-short", b'"\\u12"'),
    ("string-u-bad-hex", b'"\\u12g4"'),
    ("string-u-plus", b'"\\u+123"'),
    ("string-solidus", b'"\\/"'),
    ("string-short-for-control", b'"\\u0008"'),
    ("string-bad-escape", b'"\\x"'),
    ("string-raw-control", b'"a\x01b"'),
    ("string-raw-newline", b'"a\nb"'),
    ("string-raw-del", b'"\x7f"'),
    ("string-unterminated", b'"abc'),
    ("string-backslash-at-end", b'"\\'),
    ("utf8-bad-lead", b'"\xff"'),
    ("utf8-continuation-alone", b'"\x80"'),
    ("utf8-overlong-2", b'"\xc0\x80"'),
    ("utf8-overlong-3", b'"\xe0\x80\x80"'),
    ("utf8-overlong-4", b'"\xf0\x80\x80\x80"'),
    ("utf8-surrogate", b'"\xed\xa0\x80"'),
    ("utf8-above-max", b'"\xf4\x90\x80\x80"'),
    ("utf8-truncated", b'"\xe4\xb8"'),
    ("utf8-truncated-at-end", b"\xe4\xb8"),
    ("utf8-max", b'"\xf4\x8f\xbf\xbf"'),
    ("utf8-outside-string", b"\xc3\xa9"),
    ("bom", b"\xef\xbb\xbf1"),
    ("empty", b""),
    ("space", b" "),
    ("leading-space", b" 1"),
    ("trailing-space", b"1 "),
    ("trailing-newline", b"[]\n"),
    ("space-in-array", b"[1, 2]"),
    ("space-in-object", b'{"a": 1}'),
    ("tab", b"[1,\t2]"),
    ("array", b'[1,"a",null,true,false,[],{}]'),
    ("array-trailing-comma", b"[1,]"),
    ("array-leading-comma", b"[,1]"),
    ("array-missing-comma", b"[1 2]"),
    ("array-unclosed", b"[1"),
    ("array-extra-close", b"[1]]"),
    ("object", b'{"a":1,"b":[2]}'),
    ("object-unsorted", b'{"b":1,"a":2}'),
    ("object-sorted-utf8", '{"\uffff":1,"\U0001f600":2}'.encode()),
    ("object-sorted-utf16-order", '{"\U0001f600":2,"\uffff":1}'.encode()),
    ("object-duplicate", b'{"a":1,"a":1}'),
    ("object-duplicate-escaped", b'{"a":1,"\\u0061":2}'),
    ("object-duplicate-then-float", b'{"a":1,"a":1.5}'),
    ("object-float-then-duplicate", b'{"a":1.5,"a":1}'),
    ("object-unsorted-then-float", b'{"b":1,"a":1.5}'),
    ("object-nonstring-key", b"{1:2}"),
    ("object-missing-colon", b'{"a" 1}'),
    ("object-trailing-comma", b'{"a":1,}'),
    ("object-unclosed", b'{"a":1'),
    ("depth-32", b"[" * 32 + b"]" * 32),
    ("depth-33", b"[" * 33 + b"]" * 33),
    ("depth-33-objects", b'{"a":' * 33 + b"1" + b"}" * 33),
    ("depth-1000-unclosed", b"[" * 1000),
    ("deep-after-syntax-error", b"[1 2" + b"[" * 40),
    ("trailing-data", b"[1]x"),
    ("trailing-value", b"1 2"),
    ("two-objects", b"{}{}"),
    ("stray-close", b"]"),
    ("comment", b"[1]//"),
    ("single-quotes", b"'a'"),
]


def canonical_cases() -> None:
    for name, value in ENCODE_CASES:
        print("encode", name, encode_line(value))
    for name, data in DECODE_CASES:
        print("decode", name, decode_line(data))
    print("decode bytearray", decode_line(bytearray(b"[1]")))
    print("decode max-size-ok", decode_line(b"[1]", 3))
    print("decode max-size-over", decode_line(b"[1]", 2))
    print("decode too-large", decode_line(b"1" * (canonical.MAX_SIZE + 1)))
    for name, data in (("str", "1"), ("list", [1]), ("none", None)):
        try:
            canonical.decode(data)
            print("decode-type", name, "accepted")
        except CanonicalError as error:
            print("decode-type", name, error_line(error))
    for code in range(0x80):
        print("char", code, encode_line(chr(code)), decode_line(canonical.encode(chr(code))))


# --- canonical: random values and mutations of their encodings -----------------------------------

ALPHABET = [
    "a",
    "b",
    "Z",
    "0",
    " ",
    '"',
    "\\",
    "/",
    "\x00",
    "\x1f",
    "\n",
    "\x7f",
    "\u00e9",
    "\u4e2d",
    "\u2028",
    "\ufeff",
    "\uffff",
    "\U0001f600",
    "\U0010ffff",
]
INTS = [0, 1, -1, 9, 10, -10, 255, 65536, 2**31, -(2**31), 2**53 + 1, canonical.MAX_INT, canonical.MIN_INT]
INSERTS = b' \t\n"\\/,:[]{}0-.eE+1aun\x01\x7f\x80\xc3\xed\xff'


def random_string(rng: Random) -> str:
    return "".join([rng.choice(ALPHABET) for _ in range(rng.below(6))])


def random_value(rng: Random, depth: int) -> object:
    kind = rng.below(8 if depth < 4 else 5)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind in (1, 2):
        return rng.choice(INTS) if rng.below(2) else rng.below(2000) - 1000
    if kind in (3, 4):
        return random_string(rng)
    if kind == 5:
        return [random_value(rng, depth + 1) for _ in range(rng.below(4))]
    obj = {}
    for _ in range(rng.below(5)):
        obj[random_string(rng)] = random_value(rng, depth + 1)
    return obj


def mutate(rng: Random, data: bytes) -> bytes:
    pos = rng.below(len(data) + 1)
    kind = rng.below(5)
    if kind == 0:
        return data[:pos] + bytes([rng.choice(INSERTS)]) + data[pos:]
    if kind == 1:
        return data[:pos] + data[pos + 1 :]
    if kind == 2:
        return data[:pos] + bytes([rng.below(256)]) + data[pos + 1 :]
    if kind == 3:
        return data[:pos] + data[pos : pos + 1 + rng.below(6)] + data[pos:]
    return data[:pos]


def random_canonical_cases(count: int) -> None:
    rng = Random(20240601)
    for i in range(count):
        value = random_value(rng, 0)
        data = canonical.encode(value)
        print("random", i, hexs(data), decode_line(data))
        for j in range(4):
            mutated = mutate(rng, data)
            print("mutation", i, j, hexs(mutated), decode_line(mutated))


# --- MCU link ------------------------------------------------------------------------------------


def frame_line(frame: tuple) -> str:
    ftype, seq, payload = frame
    return f"frame {ftype} {seq} {hexs(payload)}"


def decoder_lines(decoder: mcu_link.FrameDecoder, frames: list) -> list:
    return [frame_line(f) for f in frames] + [
        f"counters discarded={decoder.discarded} bad_headers={decoder.bad_headers}"
        f" bad_crcs={decoder.bad_crcs} buffered={decoder.buffered}"
    ]


def feed_all(stream: bytes, chunk: int, idle: bool = True) -> list:
    decoder = mcu_link.FrameDecoder()
    frames = []
    for pos in range(0, len(stream), chunk):
        frames += decoder.feed(stream[pos : pos + chunk])
    if idle:
        frames += decoder.idle()
    return decoder_lines(decoder, frames)


def encode_frame_line(ftype: object, seq: object, payload: object) -> str:
    try:
        return hexs(mcu_link.encode_frame(ftype, seq, payload))
    except LinkError as error:
        return error_line(error)


def link_cases() -> None:
    print("crc16 check", "{:04x}".format(mcu_link.crc16(b"123456789")))
    print("crc16 empty", "{:04x}".format(mcu_link.crc16(b"")))
    print("crc16 slice", "{:04x}".format(mcu_link.crc16(b"xx123456789yy", 2, 11)))
    for name in sorted(mcu_link.TYPE_NAMES.values()):
        print("type", name, getattr(mcu_link, name))
    a = mcu_link.encode_frame(mcu_link.BUTTON, 1, b'{"button":"record"}')
    b = mcu_link.encode_frame(mcu_link.ACK, 255, b"")
    c = mcu_link.encode_frame(mcu_link.SIGN_REQUEST, 0, bytes(range(256)) * 4)
    sync_inside = mcu_link.encode_frame(mcu_link.TAMPER, 9, b"x" + mcu_link.SYNC + a[2:9] + b"y")
    print("encode a", hexs(a))
    print("encode b", hexs(b))
    print("encode c-length", len(c), hexs(c[:12]), hexs(c[-4:]))
    print("encode sync-inside", hexs(sync_inside))
    bad_args = [
        ("type-256", 256, 0, b""),
        ("type-negative", -1, 0, b""),
        ("type-bool", True, 0, b""),
        ("seq-256", 1, 256, b""),
        ("seq-str", 1, "1", b""),
        ("payload-str", 1, 1, "x"),
        ("payload-1025", 1, 1, b"x" * 1025),
    ]
    for name, ftype, seq, payload in bad_args:
        print("encode", name, encode_frame_line(ftype, seq, payload))

    streams = [
        ("clean", a + b + c + sync_inside),
        ("garbage-around", b"\x00\xff garbage \xa5" + a + b"\xa5\xa5\x5a\x5a" + b + b"tail\xa5"),
        ("cut-then-frames", a[:12] + b + sync_inside + a),
        ("cut-header", a[:5] + b + a),
        ("cut-long", c[:500] + a + b),
        ("flipped-payload", a[:10] + bytes([a[10] ^ 1]) + a[11:] + b),
        ("flipped-length", a[:5] + bytes([a[5] ^ 0x40]) + a[6:] + b),
        ("flipped-crc", a[:-1] + bytes([a[-1] ^ 0x80]) + b),
        ("length-too-big", b"\xa5\x5a\x01\x02\xff\xff\x00\x00" + a),
        ("sync-only", mcu_link.SYNC * 20 + a),
        ("duplicate", a + a),
        ("sync-inside-payload", sync_inside + b),
    ]
    for name, stream in streams:
        for chunk in (1, 7, len(stream)):
            for line in feed_all(stream, chunk):
                print("stream", name, chunk, line)
    for line in feed_all(a[:12] + b, 3, idle=False):
        print("stream waiting-for-cut-frame", line)
    for line in feed_all(b"x" * 5000 + a, 1000):
        print("stream long-garbage", line)
    message_cases()


def message_cases() -> None:
    bodies = [
        (mcu_link.BUTTON, 3, {"button": "record", "action": "press", "t_ms": 123456}),
        (mcu_link.LED_SET, 4, {"led": "red", "mode": "blink", "period_ms": 500}),
        (mcu_link.RTC_GET, 5, {}),
        (mcu_link.SIGN_REQUEST, 6, {"alg": "ES256", "digest": "ab" * 32, "note": "\u4e2d\u6587"}),
        (mcu_link.NACK, 7, {"seq": 6, "code": "mcu.unknown_type"}),
    ]
    for ftype, seq, body in bodies:
        data = mcu_link.encode_message(ftype, seq, body)
        frames = mcu_link.FrameDecoder().feed(data)
        message = mcu_link.decode_message(frames[0])
        print("message", hexs(data), message.ftype, message.seq, hexs(canonical.encode(message.body)))
    for name, body in (("list", [1]), ("none", None), ("float", {"a": 1.5}), ("big", {"a": "x" * 1100})):
        try:
            print("message", name, hexs(mcu_link.encode_message(1, 1, body)))
        except (CanonicalError, LinkError) as error:
            print("message", name, error_line(error))
    for name, payload in (("list", b"[1]"), ("spaces", b'{"a": 1}'), ("empty", b""), ("object", b'{"a":1}')):
        try:
            message = mcu_link.decode_message(mcu_link.Frame(1, 2, payload))
            print("read", name, message.ftype, message.seq, hexs(canonical.encode(message.body)))
        except (CanonicalError, LinkError) as error:
            print("read", name, error_line(error))


def random_stream_cases(count: int) -> None:
    rng = Random(7)
    for i in range(count):
        stream = b""
        sent = []
        for _ in range(1 + rng.below(6)):
            kind = rng.below(5)
            frame = mcu_link.encode_frame(rng.below(256), rng.below(256), rng.data(rng.below(40)))
            if kind == 0:
                stream += rng.data(rng.below(30))
            elif kind == 1:
                stream += frame[: rng.below(len(frame))]
            elif kind == 2:
                pos = rng.below(len(frame))
                stream += frame[:pos] + bytes([frame[pos] ^ (1 << rng.below(8))]) + frame[pos + 1 :]
            else:
                stream += frame
                sent.append(frame)
        lines = feed_all(stream, 1 + rng.below(20))
        print("random-stream", i, len(sent), hexs(stream))
        for line in lines:
            print("random-stream", i, line)


canonical_cases()
random_canonical_cases(300)
link_cases()
random_stream_cases(120)
print("done")
