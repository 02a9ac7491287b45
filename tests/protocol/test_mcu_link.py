"""protocol.mcu_link: frame layout, resynchronisation, bounded memory, messages."""

import binascii

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import mcu_link
from protocol.canonical import CanonicalError
from protocol.mcu_link import (
    HEADER_SIZE,
    MAX_FRAME,
    MAX_PAYLOAD,
    SYNC,
    Frame,
    FrameDecoder,
    LinkError,
    crc16,
    decode_message,
    encode_frame,
    encode_message,
)

frames = st.builds(Frame, st.integers(0, 255), st.integers(0, 255), st.binary(max_size=80))


def wire(frame: Frame) -> bytes:
    return encode_frame(*frame)


def feed_in_chunks(decoder: FrameDecoder, stream: bytes, sizes: list) -> list:
    """Feed `stream` in pieces of the given sizes (cycled), checking the memory bound each time."""
    out: list = []
    pos = 0
    i = 0
    while pos < len(stream):
        size = sizes[i % len(sizes)] if sizes else len(stream)
        out += decoder.feed(stream[pos : pos + size])
        assert decoder.buffered <= MAX_FRAME
        pos += size
        i += 1
    return out


def test_crc_is_crc16_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    assert crc16(b"xx123456789yy", 2, 11) == 0x29B1


@given(st.binary(max_size=300))
def test_crc_matches_binascii(data: bytes) -> None:
    assert crc16(data) == binascii.crc_hqx(data, 0xFFFF)


def test_frame_layout() -> None:
    data = encode_frame(0x10, 7, b'{"a":1}')
    assert data.hex() == "a55a100700076a107b2261223a317d7299"
    assert data[:2] == SYNC
    assert (data[2], data[3], int.from_bytes(data[4:6], "big")) == (0x10, 7, 7)
    assert int.from_bytes(data[6:8], "big") == crc16(data, 2, 6)
    assert data[8:-2] == b'{"a":1}'
    assert int.from_bytes(data[-2:], "big") == crc16(b'{"a":1}')
    assert encode_frame(0x20, 3, b"")[-2:] == b"\xff\xff"


def test_zero_bytes_after_a_cut_header_are_not_a_frame() -> None:
    # A line held low reads as zero bytes; they must not complete a cut frame.
    cut = encode_frame(1, 1, bytes(16))[:8]
    decoder = FrameDecoder()
    assert decoder.feed(cut + bytes(18)) == []
    assert decoder.bad_crcs == 1


def test_largest_frame() -> None:
    data = encode_frame(1, 2, bytes(MAX_PAYLOAD))
    assert len(data) == MAX_FRAME
    assert FrameDecoder().feed(data) == [Frame(1, 2, bytes(MAX_PAYLOAD))]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((256, 0, b""), "mcu.bad_field"),
        ((-1, 0, b""), "mcu.bad_field"),
        ((True, 0, b""), "mcu.bad_field"),
        ((1, 256, b""), "mcu.bad_field"),
        ((1, 1.0, b""), "mcu.bad_field"),
        ((1, 1, "text"), "mcu.bad_field"),
        ((1, 1, bytes(MAX_PAYLOAD + 1)), "mcu.too_large"),
    ],
)
def test_encode_frame_refuses(args: tuple, code: str) -> None:
    with pytest.raises(LinkError) as caught:
        encode_frame(*args)
    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)


@given(st.lists(frames, max_size=6), st.lists(st.integers(1, 50), max_size=5))
def test_frames_in_any_pieces_come_out_once_in_order(sent: list, sizes: list) -> None:
    decoder = FrameDecoder()
    received = feed_in_chunks(decoder, b"".join(wire(f) for f in sent), sizes)
    assert received == sent
    assert (decoder.discarded, decoder.bad_headers, decoder.bad_crcs, decoder.buffered) == (0, 0, 0, 0)


def garbage() -> st.SearchStrategy:
    # Garbage rich in sync bytes, so that false syncs are common.
    return st.lists(st.sampled_from([0xA5, 0x5A, 0x00, 0xFF]) | st.integers(0, 255), max_size=40).map(bytes)


segment = st.one_of(
    st.tuples(st.just("intact"), frames, st.just(0)),
    st.tuples(st.just("garbage"), garbage(), st.just(0)),
    st.tuples(st.just("cut"), frames, st.integers(0)),
    st.tuples(st.just("flipped"), frames, st.integers(0)),
)


def build(segments: list) -> tuple:
    """(stream, frames that arrive intact) for a list of segments."""
    stream = b""
    intact = []
    for kind, item, where in segments:
        if kind == "garbage":
            stream += item
            continue
        data = wire(item)
        if kind == "intact":
            intact.append(item)
        elif kind == "cut":
            data = data[: where % len(data)]
        else:  # one bit flipped: a CRC-16 catches every single-bit error
            bit = where % (len(data) * 8)
            data = data[: bit // 8] + bytes([data[bit // 8] ^ (1 << bit % 8)]) + data[bit // 8 + 1 :]
        stream += data
    return stream, intact


# A cut frame is completed by the bytes that follow it, and those pass its 16-bit CRC with
# probability 2**-16: then a garbage frame is delivered and the frames inside it are lost. That
# is inherent to the format (the message layer refuses such a payload and the sender, unacked,
# repeats); a fixed seed keeps this test from failing on that chance.
@settings(derandomize=True, max_examples=300)
@given(st.lists(segment, max_size=8), st.lists(st.integers(1, 64), max_size=4))
def test_every_intact_frame_is_recovered_once_and_nothing_else(segments: list, sizes: list) -> None:
    stream, intact = build(segments)
    decoder = FrameDecoder()
    received = feed_in_chunks(decoder, stream, sizes) + decoder.idle()
    assert received == intact
    assert decoder.buffered == 0
    assert decoder.discarded + sum(len(wire(f)) for f in received) == len(stream)


def test_garbage_before_between_and_after() -> None:
    a, b = Frame(1, 1, b"one"), Frame(2, 2, b"two")
    stream = b"\x00\xffnoise\xa5" + wire(a) + b"\xa5\xa5\x5a\x5a" + wire(b) + b"tail"
    decoder = FrameDecoder()
    assert decoder.feed(stream) == [a, b]
    assert decoder.discarded == len(stream) - len(wire(a)) - len(wire(b))


def test_sync_split_between_reads() -> None:
    data = wire(Frame(3, 4, b"x"))
    decoder = FrameDecoder()
    assert decoder.feed(b"junk" + data[:1]) == []
    assert decoder.buffered == 1
    assert decoder.feed(data[1:]) == [Frame(3, 4, b"x")]


def test_false_sync_inside_a_payload_is_not_a_frame() -> None:
    inner = wire(Frame(9, 9, b"inner"))
    outer = Frame(1, 1, b"x" + inner + b"y")
    assert FrameDecoder().feed(wire(outer)) == [outer]


def test_frame_that_began_inside_a_failed_frame_is_found() -> None:
    real = wire(Frame(5, 6, b"real"))
    cut = wire(Frame(1, 1, b"z" * 30))[:12]
    decoder = FrameDecoder()
    assert decoder.feed(cut + real + b"\x00" * 30) == [Frame(5, 6, b"real")]
    assert decoder.bad_crcs == 1


def test_a_length_over_the_maximum_is_refused_at_once() -> None:
    header = bytes([1, 1, 0x04, 0x01])  # 1025
    bad = SYNC + header + crc16(header).to_bytes(2, "big")
    decoder = FrameDecoder()
    assert decoder.feed(bad + wire(Frame(2, 2, b"ok"))) == [Frame(2, 2, b"ok")]
    assert decoder.bad_headers == 1


def test_a_corrupted_length_is_refused_at_once() -> None:
    data = bytearray(wire(Frame(1, 1, b"abc")))
    data[4] ^= 0x01  # length 3 -> 259: without a header CRC the decoder would wait for 256 bytes
    decoder = FrameDecoder()
    assert decoder.feed(bytes(data) + wire(Frame(2, 2, b"ok"))) == [Frame(2, 2, b"ok")]
    assert decoder.bad_headers == 1


def test_idle_gives_up_a_cut_frame() -> None:
    cut = wire(Frame(1, 1, b"z" * 100))[:20]
    real = wire(Frame(2, 2, b"ok"))
    decoder = FrameDecoder()
    assert decoder.feed(cut + real) == []  # still waiting for the cut frame's 110 bytes
    assert decoder.buffered == len(cut + real)
    assert decoder.idle() == [Frame(2, 2, b"ok")]
    assert decoder.buffered == 0
    assert decoder.discarded == len(cut)
    assert decoder.idle() == []


def test_memory_stays_bounded() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\xa5" * 100_000 + b"x" * 100_000) == []
    assert decoder.buffered == 0
    assert decoder.feed(b"\x00" * 10 + wire(Frame(1, 2, b"y" * 1000))[:-1]) == []
    assert decoder.buffered < MAX_FRAME
    many = [Frame(i % 256, i % 256, bytes([i % 256]) * (i % 100)) for i in range(500)]
    assert decoder.feed(b"".join(wire(f) for f in many)) == many
    assert decoder.discarded == 10 + 200_000 + len(wire(Frame(1, 2, b"y" * 1000))) - 1


def test_feed_takes_any_bytes_like() -> None:
    data = wire(Frame(1, 2, b"x"))
    assert FrameDecoder().feed(bytearray(data)) == [Frame(1, 2, b"x")]
    assert FrameDecoder().feed(memoryview(data)) == [Frame(1, 2, b"x")]
    assert FrameDecoder().feed(b"") == []


def test_header_size() -> None:
    assert HEADER_SIZE == 8
    assert MAX_FRAME == 8 + 1024 + 2


bodies = st.dictionaries(
    st.text(max_size=8),
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    max_size=6,
)


@given(st.integers(0, 255), st.integers(0, 255), bodies)
def test_message_round_trip(ftype: int, seq: int, body: dict) -> None:
    received = FrameDecoder().feed(encode_message(ftype, seq, body))
    assert len(received) == 1
    message = decode_message(received[0])
    assert (message.ftype, message.seq, message.body) == (ftype, seq, body)


def test_message_errors() -> None:
    with pytest.raises(LinkError) as caught:
        encode_message(mcu_link.LED_SET, 1, [1])
    assert caught.value.code == "mcu.bad_body"
    with pytest.raises(LinkError) as caught:
        encode_message(mcu_link.LED_SET, 1, {"x": "y" * MAX_PAYLOAD})
    assert caught.value.code == "mcu.too_large"
    with pytest.raises(CanonicalError) as caught:
        encode_message(mcu_link.LED_SET, 1, {"x": 0.5})
    assert caught.value.code == "canonical.float"
    with pytest.raises(LinkError) as caught:
        decode_message(Frame(1, 1, b"[1]"))
    assert caught.value.code == "mcu.bad_body"
    with pytest.raises(CanonicalError) as caught:
        decode_message(Frame(1, 1, b'{"a": 1}'))
    assert caught.value.code == "canonical.non_canonical"


def test_frame_types() -> None:
    names = mcu_link.TYPE_NAMES
    assert len(set(names)) == len(names) == 16
    for number, name in names.items():
        assert getattr(mcu_link, name) == number
        assert 0 < number < 256
