"""Nothing a serial line can carry makes the assembler raise, and whatever it
emits keeps the invariants manifests rely on."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hardware.gnss import Fix
from hardware.gnss_serial import NmeaAssembler
from simulators.gnss import nmea

from .nmea_data import CAPTURES

REAL_LINES = [line + b"\r\n" for path in CAPTURES for line in path.read_bytes().splitlines()
              if not line.startswith(b"#")]


def check(fix: Fix) -> None:
    assert -900_000_000 <= fix.lat_e7 <= 900_000_000
    assert -1_800_000_000 <= fix.lon_e7 <= 1_800_000_000
    assert 0 <= fix.quality <= 9 and 0 <= fix.hdop_c <= 99_999
    assert 0 <= fix.course_cdeg < 36_000 and fix.speed_mm_s >= 0
    if fix.valid:
        assert fix.utc_ns is not None and fix.quality > 0
    else:
        assert (fix.lat_e7, fix.lon_e7, fix.speed_mm_s, fix.course_cdeg) == (0, 0, 0, 0)
    for value in (fix.utc_ns or 0, fix.mono_ns, fix.lat_e7, fix.lon_e7, fix.hdop_c):
        assert type(value) is int


def run(chunks: list[bytes]) -> tuple[list[Fix], NmeaAssembler]:
    asm = NmeaAssembler()
    fixes = []
    for i, chunk in enumerate(chunks):
        fixes += asm.feed(chunk, i)
    last = asm.flush()
    fixes += [last] if last else []
    for fix in fixes:
        check(fix)
    return fixes, asm


@given(st.lists(st.binary(max_size=300), max_size=20))
def test_random_bytes(chunks: list[bytes]) -> None:
    run(chunks)


# Text close to NMEA: right sentence types, a correct checksum, fields of digits,
# letters and punctuation, so the field parsers (not the checksum) meet the noise.
_FIELD = st.text(alphabet="0123456789.,-+ABDENSWVT*$ \x00\x7f", max_size=14)
_SENTENCE = st.builds(
    lambda talker, kind, fields: nmea(f"{talker}{kind}," + ",".join(fields)),
    st.sampled_from(["GP", "GN", "BD", "GL", "II"]),
    st.sampled_from(["RMC", "GGA", "GSA", "VTG", "GNS", "ZDA", "GSV"]),
    st.lists(_FIELD, max_size=20),
)


@given(st.lists(_SENTENCE, max_size=30))
def test_well_formed_sentences_with_random_fields(sentences: list[bytes]) -> None:
    run(sentences)


@st.composite
def _mutated_real_stream(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(REAL_LINES), min_size=1, max_size=40))
    stream = bytearray(b"".join(lines))
    for _ in range(draw(st.integers(0, 8))):
        at = draw(st.integers(0, len(stream) - 1))
        stream[at] = draw(st.integers(0, 255))
    return bytes(stream)


@settings(max_examples=200)
@given(_mutated_real_stream())
def test_real_sentences_with_flipped_bytes(stream: bytes) -> None:
    run([stream])


@given(st.lists(st.sampled_from(REAL_LINES), min_size=1, max_size=60), st.data())
def test_how_bytes_are_split_into_reads_does_not_matter(lines: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole, whole_asm = run([stream])
    asm = NmeaAssembler()
    pieces = [fix for chunk in chunks for fix in asm.feed(chunk, 0)]
    last = asm.flush()
    pieces += [last] if last else []
    assert pieces == whole
    assert asm.stats == whole_asm.stats
