"""Canonical encoding of every value that is hashed or signed.

The format is JSON restricted to one byte string per value, close to RFC 8785 (JCS) but with
integers only: null, true, false, 64-bit signed integers, strings, arrays and objects with
string keys; no whitespace; object keys sorted by their UTF-8 bytes; strings in UTF-8 with the
fewest escapes. docs/protocol.md ("Canonical encoding") is the specification.

This module runs unchanged on MicroPython, so it uses builtins only (no typing, dataclasses or
enum; plain f-strings only; no `repr` in messages, since MicroPython's differs).
"""

import sys

MAX_SIZE = 1 << 20
MAX_DEPTH = 32
MIN_INT = -(1 << 63)
MAX_INT = (1 << 63) - 1

# Python's json (and MicroPython's) silently accepts duplicate keys, floats, NaN and lone
# surrogates, and MicroPython's has no hooks to refuse them: the parser below is our own. On
# CPython json's C scanner is a fast path for valid input only (see _decode_fast).
if sys.implementation.name == "cpython":
    import json as _json
else:
    _json = None


class CanonicalError(ValueError):
    """A value or byte string that is not canonical: `.code` is stable, `.message` is for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code + ": " + message)
        self.code = code
        self.message = message


# ---------------------------------------------------------------------------------------------
# Encoding

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
for _code in range(0x20):
    _ESCAPES.setdefault(chr(_code), f"\\u{_code:04x}")


def encode(value: object) -> bytes:
    """The canonical bytes of `value`; raises CanonicalError for anything outside the profile."""
    if _json is not None and _is_plain(value, 0):
        try:
            return _json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
        except UnicodeError:
            pass  # a lone surrogate: the pure encoder names the error
    return _encode_pure(value)


def _is_plain(value: object, depth: int) -> bool:
    """CPython: whether json.dumps writes the canonical bytes, as it does for exact builtin types.

    With ensure_ascii=False it escapes only the quote, the backslash and U+0000..U+001F (the short
    escapes, else lowercase u00xx), sorts keys by code point and writes ints in decimal: this
    profile. It would also write floats, tuples, int keys and deep values: those take the pure
    encoder, which refuses them.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return MIN_INT <= value <= MAX_INT
    if depth >= MAX_DEPTH:
        return False
    if kind is list:
        # Loops, not all(): a generator per container makes this check twice as slow.
        for item in value:  # noqa: SIM110
            if not _is_plain(item, depth + 1):
                return False
        return True
    if kind is dict:
        for key, item in value.items():  # noqa: SIM110
            if type(key) is not str or not _is_plain(item, depth + 1):
                return False
        return True
    return False


def _encode_pure(value: object) -> bytes:
    parts = []
    _encode_into(value, parts, 0)
    try:
        data = "".join(parts).encode()
    except UnicodeError:  # CPython refuses to encode a lone surrogate
        data = None
    # MicroPython encodes a lone surrogate silently, as ED A0..BF xx.
    if data is None or _has_surrogate(data):
        raise CanonicalError("canonical.bad_utf8", "string holds a surrogate code point (U+D800..U+DFFF)")
    return data


def _encode_into(value: object, parts: list, depth: int) -> None:
    # `is True/False` first: on CPython bool is an int, and must not be encoded as one.
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_quote(value))
    elif isinstance(value, int):
        if value < MIN_INT or value > MAX_INT:
            raise CanonicalError("canonical.int_range", "integer outside -2**63 .. 2**63-1")
        parts.append(f"{value:d}")
    elif isinstance(value, list):
        _encode_list(value, parts, _deeper(depth, -1))
    elif isinstance(value, dict):
        _encode_dict(value, parts, _deeper(depth, -1))
    elif isinstance(value, float):
        raise CanonicalError("canonical.float", "floats are not allowed: use integers")
    else:
        raise CanonicalError("canonical.bad_type", f"cannot encode a value of type {type(value).__name__}")


def _encode_list(items: list, parts: list, depth: int) -> None:
    parts.append("[")
    for i, item in enumerate(items):
        if i:
            parts.append(",")
        _encode_into(item, parts, depth)
    parts.append("]")


def _encode_dict(obj: dict, parts: list, depth: int) -> None:
    keys = list(obj)
    for key in keys:
        if not isinstance(key, str):
            raise CanonicalError("canonical.bad_type", f"object keys must be str, not {type(key).__name__}")
    # Code point order equals UTF-8 byte order (CPython compares code points, MicroPython bytes).
    keys.sort()
    parts.append("{")
    for i, key in enumerate(keys):
        if i:
            parts.append(",")
        parts.append(_quote(key))
        parts.append(":")
        _encode_into(obj[key], parts, depth)
    parts.append("}")


def _quote(text: str) -> str:
    # min() and `in` run at C speed; most strings need no escape at all.
    if '"' in text or "\\" in text or (text and min(text) < " "):
        text = "".join([_ESCAPES.get(c, c) for c in text])
    return '"' + text + '"'


def _has_surrogate(data: bytes) -> bool:
    # In UTF-8 output, ED is always a lead byte; ED A0..BF starts an encoded surrogate.
    i = data.find(b"\xed")
    while i >= 0:
        if data[i + 1] >= 0xA0:
            return True
        i = data.find(b"\xed", i + 1)
    return False


def _deeper(depth: int, pos: int) -> int:
    """The depth inside one more array or object opened at byte `pos` (-1: while encoding)."""
    if depth >= MAX_DEPTH:
        where = "value" if pos < 0 else f"array or object at byte {pos}"
        raise CanonicalError("canonical.too_deep", f"{where} nests deeper than {MAX_DEPTH} levels")
    return depth + 1


# ---------------------------------------------------------------------------------------------
# Decoding


def decode(data: bytes, max_size: int = MAX_SIZE) -> object:
    """The value whose canonical encoding is exactly `data`; raises CanonicalError otherwise."""
    if _json is None:
        return _decode_pure(data, max_size)
    return _decode_fast(data, max_size)


def _decode_fast(data: bytes, max_size: int) -> object:
    """CPython: json's C scanner, where its answer is provably the pure parser's.

    If json.loads succeeds (so the input is JSON with no float, NaN or duplicate key, and with
    no leading zero, which json refuses) and its value encodes (so it has no lone surrogate,
    no integer out of range and no excess depth), the pure parser would read the same value
    without error and then compare the same bytes. Any other input goes to the pure parser,
    so that the first error in reading order is reported, with its position.
    """
    if not isinstance(data, (bytes, bytearray)) or len(data) > max_size:
        return _decode_pure(data, max_size)
    try:
        value = _json.loads(
            data.decode(),
            parse_float=_refuse,
            parse_constant=_refuse,
            object_pairs_hook=_unique_keys,
        )
        expected = encode(value)
    except (ValueError, RecursionError):  # CanonicalError is a ValueError
        return _decode_pure(data, max_size)
    if expected != data:
        raise _not_canonical(data, expected)
    return value


def _refuse(text: str) -> object:
    raise ValueError(text)


def _unique_keys(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


def _decode_pure(data: bytes, max_size: int) -> object:
    """Parse any JSON text, failing on the first hard error; then demand the canonical bytes."""
    if not isinstance(data, (bytes, bytearray)):
        raise CanonicalError("canonical.bad_type", f"decode() takes bytes, not {type(data).__name__}")
    if len(data) > max_size:
        raise CanonicalError("canonical.too_large", f"{len(data)} bytes is over the limit of {max_size} bytes")
    data = bytes(data)
    _check_utf8(data)
    value, pos = _parse_value(data, _skip_ws(data, 0), 0)
    pos = _skip_ws(data, pos)
    if pos != len(data):
        raise CanonicalError("canonical.trailing_data", f"data after the value at byte {pos}")
    expected = encode(value)
    if expected != data:
        raise _not_canonical(data, expected)
    return value


def _not_canonical(data: bytes, expected: bytes) -> CanonicalError:
    i = 0
    end = min(len(data), len(expected))
    while i < end and data[i] == expected[i]:
        i += 1
    return CanonicalError(
        "canonical.non_canonical",
        f"not canonical at byte {i}: expected {_byte_at(expected, i)}, found {_byte_at(data, i)}",
    )


def _byte_at(data: bytes, pos: int) -> str:
    return "end of input" if pos >= len(data) else f"0x{data[pos]:02x}"


def _syntax(what: str, pos: int) -> CanonicalError:
    return CanonicalError("canonical.syntax", f"{what} at byte {pos}")


def _check_utf8(data: bytes) -> None:
    """Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing above U+10FFFF."""
    if not data or max(data) < 0x80:  # ASCII, the common case, checked at C speed
        return
    i = 0
    n = len(data)
    while i < n:
        if data[i] < 0x80:
            i += 1
            continue
        size, low, high = _utf8_lead(data[i])
        if size == 0 or i + size >= n or not low <= data[i + 1] <= high:
            raise CanonicalError("canonical.bad_utf8", f"invalid UTF-8 at byte {i}")
        for j in range(i + 2, i + size + 1):
            if not 0x80 <= data[j] <= 0xBF:
                raise CanonicalError("canonical.bad_utf8", f"invalid UTF-8 at byte {i}")
        i += size + 1


def _utf8_lead(byte: int) -> tuple:
    """(continuation bytes, lowest and highest allowed first continuation byte); size 0: invalid."""
    if 0xC2 <= byte <= 0xDF:
        return 1, 0x80, 0xBF
    if byte == 0xE0:
        return 2, 0xA0, 0xBF  # below A0 would be overlong
    if byte == 0xED:
        return 2, 0x80, 0x9F  # above 9F would be a surrogate
    if 0xE1 <= byte <= 0xEF:
        return 2, 0x80, 0xBF
    if byte == 0xF0:
        return 3, 0x90, 0xBF  # below 90 would be overlong
    if 0xF1 <= byte <= 0xF3:
        return 3, 0x80, 0xBF
    if byte == 0xF4:
        return 3, 0x80, 0x8F  # above 8F would be past U+10FFFF
    return 0, 0, 0


def _at(data: bytes, pos: int) -> int:
    return data[pos] if pos < len(data) else -1


def _is_one_of(data: bytes, pos: int, choices: bytes) -> bool:
    return pos < len(data) and data[pos] in choices


def _skip_ws(data: bytes, pos: int) -> int:
    # Accepted so that the error says "not canonical" rather than "syntax".
    while _is_one_of(data, pos, b" \t\n\r"):
        pos += 1
    return pos


def _skip_digits(data: bytes, pos: int) -> int:
    while pos < len(data) and 0x30 <= data[pos] <= 0x39:
        pos += 1
    return pos


_LITERALS = ((b"null", None), (b"true", True), (b"false", False))


def _parse_value(data: bytes, pos: int, depth: int) -> tuple:
    """(value, position after it) for the JSON value starting at `pos`."""
    c = _at(data, pos)
    if c == 0x22:
        return _parse_string(data, pos + 1)
    if c == 0x7B:
        return _parse_object(data, pos + 1, _deeper(depth, pos))
    if c == 0x5B:
        return _parse_array(data, pos + 1, _deeper(depth, pos))
    if c == 0x2D or 0x30 <= c <= 0x39:
        return _parse_number(data, pos)
    for word, value in _LITERALS:
        if data.startswith(word, pos):
            return value, pos + len(word)
    raise _syntax("expected a value", pos)


def _parse_array(data: bytes, pos: int, depth: int) -> tuple:
    items = []
    pos = _skip_ws(data, pos)
    if _at(data, pos) == 0x5D:
        return items, pos + 1
    while True:
        item, pos = _parse_value(data, pos, depth)
        items.append(item)
        pos = _skip_ws(data, pos)
        c = _at(data, pos)
        if c == 0x5D:
            return items, pos + 1
        if c != 0x2C:
            raise _syntax("expected ',' or ']'", pos)
        pos = _skip_ws(data, pos + 1)


def _parse_object(data: bytes, pos: int, depth: int) -> tuple:
    obj = {}
    pos = _skip_ws(data, pos)
    if _at(data, pos) == 0x7D:
        return obj, pos + 1
    while True:
        if _at(data, pos) != 0x22:
            raise _syntax("expected a string key", pos)
        key, after = _parse_string(data, pos + 1)
        if key in obj:
            raise CanonicalError("canonical.duplicate_key", f"duplicate key at byte {pos}")
        pos = _skip_ws(data, after)
        if _at(data, pos) != 0x3A:
            raise _syntax("expected ':'", pos)
        value, pos = _parse_value(data, _skip_ws(data, pos + 1), depth)
        obj[key] = value
        pos = _skip_ws(data, pos)
        c = _at(data, pos)
        if c == 0x7D:
            return obj, pos + 1
        if c != 0x2C:
            raise _syntax("expected ',' or '}'", pos)
        pos = _skip_ws(data, pos + 1)


def _parse_number(data: bytes, pos: int) -> tuple:
    start = pos
    if data[pos] == 0x2D:
        pos += 1
    digits = pos
    pos = _skip_digits(data, pos)
    if pos == digits:
        raise _syntax("expected a digit", pos)
    if _is_one_of(data, pos, b".eE"):
        _refuse_fraction(data, pos, start)
    # Leading zeros are read here and refused as non-canonical; count digits without them so
    # that a huge number is refused before int() spends time on it.
    if pos - digits > 19 and len(data[digits:pos].lstrip(b"0")) > 19:
        raise CanonicalError("canonical.int_range", f"integer outside -2**63 .. 2**63-1 at byte {start}")
    value = int(data[start:pos])
    if value < MIN_INT or value > MAX_INT:
        raise CanonicalError("canonical.int_range", f"integer outside -2**63 .. 2**63-1 at byte {start}")
    return value, pos


def _refuse_fraction(data: bytes, pos: int, start: int) -> None:
    """Check the fraction/exponent's grammar (a malformed one is a syntax error), then refuse it."""
    if data[pos] == 0x2E:
        pos += 1
        if _skip_digits(data, pos) == pos:
            raise _syntax("expected a digit after '.'", pos)
        pos = _skip_digits(data, pos)
    if _is_one_of(data, pos, b"eE"):
        pos += 1
        if _is_one_of(data, pos, b"+-"):
            pos += 1
        if _skip_digits(data, pos) == pos:
            raise _syntax("expected a digit in the exponent", pos)
    raise CanonicalError("canonical.float", f"number with a fraction or exponent at byte {start}")


_SIMPLE_ESCAPES = {
    0x22: '"',
    0x5C: "\\",
    0x2F: "/",
    0x62: "\b",
    0x66: "\f",
    0x6E: "\n",
    0x72: "\r",
    0x74: "\t",
}


def _parse_string(data: bytes, pos: int) -> tuple:
    """(text, position after the closing quote) for a string whose opening quote is at pos - 1."""
    parts = []
    start = pos
    n = len(data)
    while True:
        if pos >= n:
            raise _syntax("unterminated string", start - 1)
        c = data[pos]
        if c == 0x22:
            parts.append(data[start:pos].decode())
            return "".join(parts), pos + 1
        if c == 0x5C:
            parts.append(data[start:pos].decode())
            text, pos = _parse_escape(data, pos)
            parts.append(text)
            start = pos
        elif c < 0x20:
            raise _syntax("control character in string", pos)
        else:
            pos += 1


def _parse_escape(data: bytes, pos: int) -> tuple:
    """(text, position after it) for the escape whose backslash is at `pos`."""
    c = _at(data, pos + 1)
    if c != 0x75:
        text = _SIMPLE_ESCAPES.get(c)
        if text is None:
            raise _syntax("invalid escape", pos)
        return text, pos + 2
    unit = _hex4(data, pos + 2)
    if 0xD800 <= unit <= 0xDBFF and data.startswith(b"\\u", pos + 6):
        low = _hex4(data, pos + 8)
        if 0xDC00 <= low <= 0xDFFF:
            return chr(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)), pos + 12
    if 0xD800 <= unit <= 0xDFFF:
        raise CanonicalError("canonical.bad_utf8", f"escaped lone surrogate at byte {pos}")
    return chr(unit), pos + 6


def _hex4(data: bytes, pos: int) -> int:
    digits = data[pos : pos + 4]
    if len(digits) != 4 or any(c not in b"0123456789abcdefABCDEF" for c in digits):
        raise _syntax("expected 4 hex digits", pos)
    return int(digits, 16)
