"""The worked examples of the canonical encoding (§1) and MCU link (§2) sections are what the code does.

Every `canonical-*` and `mcu-*` example in docs/protocol.md is checked, and both families must be
complete.
"""

import json
import re

import pytest

from protocol import canonical, mcu_link
from protocol.canonical import CanonicalError
from tests.doc_examples import document_text, examples
from tests.protocol.test_canonical import tagged

FAMILIES = ("canonical-", "mcu-")
REQUIRED = {
    "canonical-": {"canonical-record.value", "canonical-keys.value", "canonical-strings.value"},
    "mcu-": {"mcu-crc.check", "mcu-button.message", "mcu-empty.frame", "mcu-resync.stream"},
}
PARTNERS = {".value": ".bytes", ".message": ".bytes", ".frame": ".bytes", ".stream": ".result"}
DECODERS = {
    "public": canonical.decode,
    "pure": lambda data: canonical._decode_pure(data, canonical.MAX_SIZE),
}


EXAMPLES = {k: v for k, v in examples().items() if k.startswith(FAMILIES)}
TEXT = document_text()


def names(suffix: str) -> list:
    return sorted(n for n in EXAMPLES if n.endswith(suffix) and not n.startswith("canonical-reject."))


def body(name: str) -> bytes:
    """An example's bytes: hex digits (spaces and newlines ignored), or the text without its last newline."""
    lang, text = EXAMPLES[name]
    if lang == "hex":
        return bytes.fromhex("".join(text.split()))
    return text.removesuffix("\n").encode()


def partner(name: str) -> bytes:
    stem, dot, suffix = name.rpartition(".")
    return body(stem + PARTNERS[dot + suffix])


def test_the_examples_are_there() -> None:
    for family in FAMILIES:
        assert REQUIRED[family] <= set(EXAMPLES), f"missing: {sorted(REQUIRED[family] - set(EXAMPLES))}"


def test_every_example_is_checked() -> None:
    """A name that no test below reads would pass unchecked: each must have a known form."""
    pattern = re.compile(
        r"canonical-reject\.[a-z0-9_]+\.[\w-]+"
        r"|canonical-[\w-]+\.(value|bytes)"
        r"|mcu-[\w-]+\.(message|frame|bytes|stream|result)"
        r"|mcu-crc\.check"
    )
    for name in EXAMPLES:
        assert pattern.fullmatch(name), f"example {name} has no known form"
        stem, dot, suffix = name.rpartition(".")
        if dot + suffix in PARTNERS:
            assert stem + PARTNERS[dot + suffix] in EXAMPLES, f"{name} has no {PARTNERS[dot + suffix]} block"
        if suffix == "bytes":
            assert {stem + ".value", stem + ".message", stem + ".frame"} & set(EXAMPLES), f"{name} alone"


@pytest.mark.parametrize("name", names(".value"))
@pytest.mark.parametrize("decoder", DECODERS)
def test_value_and_its_canonical_bytes(name: str, decoder: str) -> None:
    value = json.loads(body(name))
    assert canonical.encode(value) == partner(name)
    assert canonical._encode_pure(value) == partner(name)
    assert tagged(DECODERS[decoder](partner(name))) == tagged(value)


@pytest.mark.parametrize("name", sorted(n for n in EXAMPLES if n.startswith("canonical-reject.")))
@pytest.mark.parametrize("decoder", DECODERS)
def test_refused_input(name: str, decoder: str) -> None:
    with pytest.raises(CanonicalError) as caught:
        DECODERS[decoder](body(name))
    assert caught.value.code == "canonical." + name.split(".")[1]


@pytest.mark.parametrize("name", names(".message") + names(".frame"))
def test_frame(name: str) -> None:
    spec = json.loads(body(name))
    wire = partner(name)
    if name.endswith(".message"):
        assert mcu_link.encode_message(spec["type"], spec["seq"], spec["body"]) == wire
        [frame] = mcu_link.FrameDecoder().feed(wire)
        assert mcu_link.decode_message(frame) == (spec["type"], spec["seq"], spec["body"])
    else:
        payload = bytes.fromhex(spec["payload"])
        assert mcu_link.encode_frame(spec["type"], spec["seq"], payload) == wire
        assert mcu_link.FrameDecoder().feed(wire) == [(spec["type"], spec["seq"], payload)]


@pytest.mark.parametrize("name", names(".stream"))
def test_stream(name: str) -> None:
    expected = json.loads(partner(name))
    decoder = mcu_link.FrameDecoder()
    frames = decoder.feed(body(name)) + decoder.idle()
    assert [[f.ftype, f.seq, f.payload.hex()] for f in frames] == expected["frames"]
    assert decoder.discarded == expected["discarded"]
    assert decoder.bad_headers == expected["bad_headers"]
    assert decoder.bad_crcs == expected["bad_crcs"]


def test_crc_check_value() -> None:
    check = json.loads(body("mcu-crc.check"))
    assert f"{mcu_link.crc16(check['ascii'].encode()):04x}" == check["crc16"]


def test_frame_type_table() -> None:
    rows = dict(re.findall(r"^\| 0x([0-9A-F]{2}) \| `([A-Z_]+)` \|", TEXT, re.M))
    assert {int(number, 16): name for number, name in rows.items()} == mcu_link.TYPE_NAMES
