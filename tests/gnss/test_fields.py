"""Exact integer conversion of NMEA fields: no float ever touches a signed value."""

from __future__ import annotations

import datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hardware.gnss_serial import angle_e7, date_days, scaled, time_of_day_ns

SECOND_NS = 1_000_000_000


@pytest.mark.parametrize(("text", "hemisphere", "axis", "expected"), [
    ("3114.8770", "N", "NS", 312_479_500),  # 31 + 14.8770/60 = 31.24795 exactly
    ("3114.8770", "S", "NS", -312_479_500),
    ("12135.2463", "E", "EW", 1_215_874_383),  # 121.587438333... rounds down
    ("12135.2463", "W", "EW", -1_215_874_383),
    ("12219.58361", "W", "EW", -1_223_263_935),  # 19.58361/60 = 0.3263935 exactly
    ("4807.038", "N", "NS", 481_173_000),
    ("4807", "N", "NS", 481_166_667),  # no fraction at all: 48 + 7/60
    ("0000.0000", "N", "NS", 0),
    ("0000.0000", "S", "NS", 0),
    ("9000.0000", "N", "NS", 900_000_000),
    ("9000.0000", "S", "NS", -900_000_000),
    ("18000.0000", "E", "EW", 1_800_000_000),
    ("18000.0000", "W", "EW", -1_800_000_000),
    ("8959.99999999", "N", "NS", 900_000_000),  # rounds up onto the pole, which is allowed
    ("00000.1", "E", "EW", 16_667),  # three-digit longitude degrees of zero
    ("0000.000003", "N", "NS", 1),  # exactly half a unit: half rounds away from zero ...
    ("0000.000003", "S", "NS", -1),  # ... on both sides, so the hemispheres mirror exactly
    ("0000.0000029", "N", "NS", 0),  # just under half
])
def test_angles_convert_exactly(text: str, hemisphere: str, axis: str, expected: int) -> None:
    assert angle_e7(text, hemisphere, axis) == expected


@pytest.mark.parametrize(("text", "hemisphere", "axis"), [
    ("9000.0001", "N", "NS"),  # beyond the pole
    ("18000.00001", "E", "EW"),  # beyond the antimeridian
    ("9100.0000", "N", "NS"),
    ("3160.0000", "N", "NS"),  # 60 minutes
    ("31.5", "N", "NS"),  # degrees without minutes
    ("", "N", "NS"),
    ("-3114.8770", "N", "NS"),  # signs belong in the hemisphere letter
    ("3114,8770", "N", "NS"),
    ("3114.8770", "E", "NS"),  # longitude letter on a latitude
    ("3114.8770", "", "NS"),
    ("3114.8770", "n", "NS"),
    ("1234567.0", "N", "NS"),
    ("3114.12345678901", "N", "NS"),  # more fraction digits than any receiver sends
    ("\uff13\uff1114.8770", "N", "NS"),  # full-width digits are not NMEA
])
def test_bad_angles_are_rejected(text: str, hemisphere: str, axis: str) -> None:
    with pytest.raises(ValueError):
        angle_e7(text, hemisphere, axis)


def _reference_e7(degrees: int, minutes: int, fraction: str) -> int:
    value = (degrees + (minutes + Fraction(int(fraction or "0"), 10 ** len(fraction))) / 60) * 10**7
    return int(value + Fraction(1, 2))  # half up; value >= 0


@given(st.integers(0, 89), st.integers(0, 59), st.text("0123456789", max_size=10))
def test_latitude_matches_exact_rational_arithmetic(degrees: int, minutes: int, fraction: str) -> None:
    text = f"{degrees:02d}{minutes:02d}" + (f".{fraction}" if fraction else "")
    expected = _reference_e7(degrees, minutes, fraction)
    assert angle_e7(text, "N", "NS") == expected
    assert angle_e7(text, "S", "NS") == -expected


@given(st.integers(0, 179), st.integers(0, 59), st.text("0123456789", min_size=1, max_size=10))
def test_longitude_matches_exact_rational_arithmetic(degrees: int, minutes: int, fraction: str) -> None:
    text = f"{degrees:03d}{minutes:02d}.{fraction}"
    expected = _reference_e7(degrees, minutes, fraction)
    assert angle_e7(text, "E", "EW") == expected
    assert angle_e7(text, "W", "EW") == -expected


@pytest.mark.parametrize(("text", "expected"), [
    ("074155.799", (7 * 3600 + 41 * 60 + 55) * SECOND_NS + 799_000_000),
    ("123519", (12 * 3600 + 35 * 60 + 19) * SECOND_NS),
    ("000000.000000001", 1),
    ("235959.99", 86_399 * SECOND_NS + 990_000_000),
    ("235960", 86_400 * SECOND_NS),  # a leap second reads as the next midnight
    ("", None),
])
def test_time_of_day(text: str, expected: int | None) -> None:
    assert time_of_day_ns(text) == expected


@pytest.mark.parametrize("text", ["240000", "236000", "235961", "1235", "12:35:19", "123519.1234567890", "a23519"])
def test_bad_time_of_day(text: str) -> None:
    with pytest.raises(ValueError):
        time_of_day_ns(text)


def _days(year: int, month: int, day: int) -> int:
    return (datetime.date(year, month, day) - datetime.date(1970, 1, 1)).days


@pytest.mark.parametrize(("text", "expected"), [
    ("250215", _days(2015, 2, 25)),
    ("010180", _days(1980, 1, 1)),  # two-digit years are 1980-2079
    ("311279", _days(2079, 12, 31)),
    ("290224", _days(2024, 2, 29)),
    ("", None),
])
def test_date(text: str, expected: int | None) -> None:
    assert date_days(text) == expected


@pytest.mark.parametrize("text", ["310215", "290223", "001225", "011325", "2502150", "25-02-15"])
def test_bad_date(text: str) -> None:
    with pytest.raises(ValueError):
        date_days(text)


@pytest.mark.parametrize(("text", "factor", "divisor", "expected"), [
    ("0.30", 1_852_000, 3600, 154),  # knots to mm/s: 154.33
    ("0.53", 1_852_000, 3600, 273),  # 272.66
    ("1.3", 100, 1, 130),  # HDOP x 100
    ("0.005", 100, 1, 1),  # half rounds up
    ("0.0049", 100, 1, 0),
    ("286.35", 100, 1, 28_635),
    ("12.", 100, 1, 1200),
    ("", 100, 1, None),
])
def test_scaled_decimals(text: str, factor: int, divisor: int, expected: int | None) -> None:
    assert scaled(text, factor, divisor) == expected


@pytest.mark.parametrize("text", ["-1.0", "+1.0", "1e3", ".5", "1.2.3", "nan", "inf", " 1.0", "1,0"])
def test_bad_decimals(text: str) -> None:
    with pytest.raises(ValueError):
        scaled(text, 100)
