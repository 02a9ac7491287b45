"""protocol.canonical: round trips, every rejection, and the CPython fast path against the pure one."""

import collections
import enum
import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import canonical
from protocol.canonical import MAX_INT, MIN_INT, CanonicalError, decode, encode

# Both decoders must agree on every input: the public one (json fast path on CPython, falling
# back to the pure parser) and the pure parser alone (what MicroPython runs).
DECODERS = {
    "public": decode,
    "pure": lambda data, max_size=canonical.MAX_SIZE: canonical._decode_pure(data, max_size),
}
ENCODERS = {"public": encode, "pure": canonical._encode_pure}

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
scalars = st.none() | st.booleans() | st.integers(MIN_INT, MAX_INT) | texts
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(texts, inner, max_size=5),
    max_leaves=30,
)


def tagged(value: object) -> object:
    """`value` with every leaf tagged by its type, so that True and 1 compare unequal."""
    if isinstance(value, list):
        return ["list", [tagged(v) for v in value]]
    if isinstance(value, dict):
        return ["dict", sorted((k, tagged(v)) for k, v in value.items())]
    return [type(value).__name__, value]


def outcome(decoder, data: bytes) -> tuple:
    try:
        return ("ok", tagged(decoder(data)))
    except CanonicalError as error:
        return ("error", error.code, error.message)


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@given(values)
def test_round_trip(value: object) -> None:
    data = encode(value)
    assert canonical._encode_pure(value) == data
    for decoder in DECODERS.values():
        assert tagged(decoder(data)) == tagged(value)


@given(values)
def test_encoding_is_json_with_sorted_keys_and_no_whitespace(value: object) -> None:
    reference = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert encode(value) == reference.encode()


mutations = st.tuples(st.sampled_from(["insert", "delete", "replace", "duplicate", "truncate"]), st.integers(0))


def mutate(data: bytes, kind: str, where: int, byte: int) -> bytes:
    pos = where % (len(data) + 1)
    if kind == "insert":
        return data[:pos] + bytes([byte]) + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + 1 :]
    if kind == "replace":
        return data[:pos] + bytes([byte]) + data[pos + 1 :]
    if kind == "duplicate":
        return data[:pos] + data[pos : pos + 1 + byte % 8] + data[pos:]
    return data[:pos]


interesting_bytes = st.sampled_from(b' \t\n"\\/,:[]{}0-.eE+1tfn\x00\x01\x7f\x80\xc3\xed\xff') | st.integers(0, 255)


@given(values, st.lists(st.tuples(mutations, interesting_bytes), min_size=1, max_size=3))
def test_mutation_is_refused_or_is_itself_canonical(value: object, edits: list) -> None:
    data = encode(value)
    for (kind, where), byte in edits:
        data = mutate(data, kind, where, byte)
    results = [outcome(decoder, data) for decoder in DECODERS.values()]
    assert results[0] == results[1]
    if results[0][0] == "ok":
        assert encode(decode(data)) == data


@given(st.binary(max_size=64))
def test_arbitrary_bytes(data: bytes) -> None:
    results = [outcome(decoder, data) for decoder in DECODERS.values()]
    assert results[0] == results[1]
    if results[0][0] == "ok":
        assert encode(decode(data)) == data


@given(
    values,
    st.sampled_from([None, 0, 2]),
    st.sampled_from([(",", ":"), (", ", ": ")]),
    st.booleans(),
    st.booleans(),
)
def test_other_json_writers_are_non_canonical_not_syntax_errors(
    value: object, indent: int | None, separators: tuple, ensure_ascii: bool, sort_keys: bool
) -> None:
    text = json.dumps(value, indent=indent, separators=separators, ensure_ascii=ensure_ascii, sort_keys=sort_keys)
    data = text.encode()
    for decoder in DECODERS.values():
        if data == encode(value):
            assert tagged(decoder(data)) == tagged(value)
        else:
            with pytest.raises(CanonicalError) as caught:
                decoder(data)
            assert caught.value.code == "canonical.non_canonical"


@given(st.binary(max_size=24))
def test_utf8_check_matches_cpython(data: bytes) -> None:
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    try:
        canonical._check_utf8(data)
        assert valid
    except CanonicalError as error:
        assert not valid
        assert error.code == "canonical.bad_utf8"


ENCODINGS = [
    (None, b"null"),
    (True, b"true"),
    (False, b"false"),
    (0, b"0"),
    (-1, b"-1"),
    (MAX_INT, b"9223372036854775807"),
    (MIN_INT, b"-9223372036854775808"),
    ("", b'""'),
    ('"\\/\b\t\n\f\r', b'"\\"\\\\/\\b\\t\\n\\f\\r"'),
    ("\x00\x1f\x7f", b'"\\u0000\\u001f\x7f"'),
    ("é中\u2028\U0001f600", '"é中\u2028\U0001f600"'.encode()),
    ([], b"[]"),
    ({}, b"{}"),
    ([1, [True, None]], b"[1,[true,null]]"),
    ({"b": 1, "a": 2, "": 3, "\uffff": 4, "\U0001f600": 5}, '{"":3,"a":2,"b":1,"\uffff":4,"\U0001f600":5}'.encode()),
    (nested(32), b"[" * 32 + b"]" * 32),
]


@pytest.mark.parametrize(("value", "expected"), ENCODINGS)
@pytest.mark.parametrize("name", ENCODERS)
def test_encodings(name: str, value: object, expected: bytes) -> None:
    assert ENCODERS[name](value) == expected


class Colour(enum.IntEnum):
    RED = 7


class Name(str):
    pass


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Colour.RED, b"7"),
        ([Name("x")], b'["x"]'),
        (collections.OrderedDict([("b", 1), ("a", 2)]), b'{"a":2,"b":1}'),
        ({Name("k"): Colour.RED}, b'{"k":7}'),
    ],
)
def test_subclasses_of_the_builtin_types_encode_like_them(value: object, expected: bytes) -> None:
    assert encode(value) == expected


def self_containing() -> list:
    value: list = []
    value.append(value)
    return value


REFUSED_VALUES = [
    (1.5, "canonical.float"),
    ([1, 2.0], "canonical.float"),
    (float("nan"), "canonical.float"),
    (b"x", "canonical.bad_type"),
    (bytearray(b"x"), "canonical.bad_type"),
    ((1, 2), "canonical.bad_type"),
    ({1}, "canonical.bad_type"),
    ({1: "a"}, "canonical.bad_type"),
    ({True: "a"}, "canonical.bad_type"),
    ({None: "a"}, "canonical.bad_type"),
    ({("a",): 1}, "canonical.bad_type"),
    (object(), "canonical.bad_type"),
    (MAX_INT + 1, "canonical.int_range"),
    (MIN_INT - 1, "canonical.int_range"),
    ([2**100], "canonical.int_range"),
    ("\ud800", "canonical.bad_utf8"),
    ({"\udc00": 1}, "canonical.bad_utf8"),
    ("\ud83d\ude00", "canonical.bad_utf8"),
    (nested(33), "canonical.too_deep"),
    ({"a": nested(32)}, "canonical.too_deep"),
    (self_containing(), "canonical.too_deep"),
]


@pytest.mark.parametrize(("value", "code"), REFUSED_VALUES)
@pytest.mark.parametrize("name", ENCODERS)
def test_refused_values(name: str, value: object, code: str) -> None:
    with pytest.raises(CanonicalError) as caught:
        ENCODERS[name](value)
    assert caught.value.code == code


REFUSED_BYTES = [
    (b"", "canonical.syntax"),
    (b"[1,]", "canonical.syntax"),
    (b"[1 2]", "canonical.syntax"),
    (b"{1:2}", "canonical.syntax"),
    (b"'a'", "canonical.syntax"),
    (b"NaN", "canonical.syntax"),
    (b"-Infinity", "canonical.syntax"),
    (b'"a\x01"', "canonical.syntax"),
    (b'"\\x"', "canonical.syntax"),
    (b'"\\u12"', "canonical.syntax"),
    (b"1.", "canonical.syntax"),
    (b"\xef\xbb\xbf1", "canonical.syntax"),
    (b"[1]x", "canonical.trailing_data"),
    (b"1 2", "canonical.trailing_data"),
    (b"{}{}", "canonical.trailing_data"),
    (b"1.5", "canonical.float"),
    (b"1e5", "canonical.float"),
    (b"-0.0", "canonical.float"),
    (b'{"b":1,"a":1.5}', "canonical.float"),
    (b'{"a":1,"a":2}', "canonical.duplicate_key"),
    (b'{"a":1,"\\u0061":2}', "canonical.duplicate_key"),
    (b'{"b":1,"a":2}', "canonical.non_canonical"),
    (b"[1, 2]", "canonical.non_canonical"),
    (b" 1", "canonical.non_canonical"),
    (b"1\n", "canonical.non_canonical"),
    (b"01", "canonical.non_canonical"),
    (b"-0", "canonical.non_canonical"),
    (b'"\\/"', "canonical.non_canonical"),
    (b'"\\u0041"', "canonical.non_canonical"),
    (b'"\\u0008"', "canonical.non_canonical"),
    (b'"\\u001F"', "canonical.non_canonical"),
    (b'"\\ud83d\\ude00"', "canonical.non_canonical"),
    (b"9223372036854775808", "canonical.int_range"),
    (b"-9223372036854775809", "canonical.int_range"),
    (b"1" * 5000, "canonical.int_range"),
    (b"[" * 33 + b"]" * 33, "canonical.too_deep"),
    (b"[" * 100_000, "canonical.too_deep"),
    (b'"\xff"', "canonical.bad_utf8"),
    (b'"\xc0\x80"', "canonical.bad_utf8"),
    (b'"\xed\xa0\x80"', "canonical.bad_utf8"),
    (b'"\xf4\x90\x80\x80"', "canonical.bad_utf8"),
    (b'"\\ud800"', "canonical.bad_utf8"),
    (b'"\\udc00\\ud800"', "canonical.bad_utf8"),
    (b"1" * (canonical.MAX_SIZE + 1), "canonical.too_large"),
]


@pytest.mark.parametrize(("data", "code"), REFUSED_BYTES, ids=lambda x: x[:24] if isinstance(x, bytes) else x)
@pytest.mark.parametrize("name", DECODERS)
def test_refused_bytes(name: str, data: bytes, code: str) -> None:
    with pytest.raises(CanonicalError) as caught:
        DECODERS[name](data)
    assert caught.value.code == code
    assert str(caught.value) == code + ": " + caught.value.message


def test_messages_say_where() -> None:
    cases = {
        b'{"a":1,"a":2}': "duplicate key at byte 7",
        b'[1,"x",2.5]': "number with a fraction or exponent at byte 7",
        b"[1, 2]": "not canonical at byte 3: expected 0x32, found 0x20",
        b"[1]\n": "not canonical at byte 3: expected end of input, found 0x0a",
        b"[1]]": "data after the value at byte 3",
        b'"\xe4\xb8"': "invalid UTF-8 at byte 1",
    }
    for data, message in cases.items():
        with pytest.raises(CanonicalError) as caught:
            decode(data)
        assert caught.value.message == message


def test_limits() -> None:
    assert decode(b"[1]", max_size=3) == [1]
    with pytest.raises(CanonicalError, match=r"^canonical\.too_large: "):
        decode(b"[1]", max_size=2)
    assert decode(encode(nested(32))) == nested(32)


@pytest.mark.parametrize("data", ["1", [1], None, memoryview(b"1")])
def test_decode_takes_bytes_only(data: object) -> None:
    with pytest.raises(CanonicalError, match=r"^canonical\.bad_type: "):
        decode(data)
    assert decode(bytearray(b"[1]")) == [1]


def test_bool_is_never_an_int() -> None:
    assert encode([True, 1, False, 0]) == b"[true,1,false,0]"
    assert decode(b"[true,1]")[0] is True
    assert type(decode(b"[true,1]")[1]) is int


def test_error_is_a_value_error() -> None:
    error = CanonicalError("canonical.syntax", "bad")
    assert isinstance(error, ValueError)
    assert (error.code, error.message, str(error)) == ("canonical.syntax", "bad", "canonical.syntax: bad")


def manifest() -> dict:
    return {
        "v": 1,
        "device": "LH-00042",
        "seq": 123456,
        "prev": "ab" * 32,
        "file": {"sha256": "cd" * 32, "size": 123456789, "name": "seg-000123.mp4"},
        "start_ns": 1_700_000_000_000_000_000,
        "end_ns": 1_700_000_010_000_000_000,
        "track": [{"t": 1_700_000_000_000 + i, "lat": 312345678 + i, "lon": 1212345678, "fix": 3} for i in range(20)],
        "markers": [{"t": 1_700_000_001_000, "kind": "button", "note": "执法记录 开始"}],
        "alg": "ed25519",
        "key": "ef" * 16,
    }


def test_fast_path_takes_canonical_input(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(manifest())
    monkeypatch.setattr(canonical, "_decode_pure", None)
    monkeypatch.setattr(canonical, "_encode_pure", None)
    assert decode(data) == manifest()


def test_a_2kb_manifest_takes_well_under_a_millisecond() -> None:
    value = manifest()
    data = encode(value)
    assert 1500 < len(data) < 2500
    runs = 200
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(runs):
            decode(encode(value))
        best = min(best, (time.perf_counter() - start) / runs)
    assert best < 0.0005, f"encode + decode took {best * 1e6:.0f} µs"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"[" + b"1, " * 340_000 + b"1]", "canonical.non_canonical"),
        (b"[" * canonical.MAX_SIZE, "canonical.too_deep"),
        (b"9" * canonical.MAX_SIZE, "canonical.int_range"),
    ],
    ids=["spaces", "brackets", "digits"],
)
def test_a_megabyte_is_refused_quickly(data: bytes, code: str) -> None:
    start = time.perf_counter()
    with pytest.raises(CanonicalError) as caught:
        decode(data)
    assert caught.value.code == code
    assert time.perf_counter() - start < 1
