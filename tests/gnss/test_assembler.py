"""NmeaAssembler: sentences in, exact integer fixes out; bad input counted, never raised."""

from __future__ import annotations

import datetime

import pytest

from hardware.gnss import Fix
from hardware.gnss_serial import MAX_LINE, NmeaAssembler
from simulators.gnss import nmea

SECOND_NS = 1_000_000_000
# The epoch of the RMC/GGA pair below (from a real SiRF-TriG log): 2015-02-25T07:41:55.799Z
UTC = (datetime.date(2015, 2, 25) - datetime.date(1970, 1, 1)).days * 86_400 * SECOND_NS \
    + (7 * 3600 + 41 * 60 + 55) * SECOND_NS + 799_000_000
RMC = "GNRMC,074155.799,A,3114.8770,N,12135.2463,E,0.30,4.94,250215,,,A"
GGA = "GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,1.3,156.9,M,8.3,M,,0000"
EXPECTED = Fix(utc_ns=UTC, mono_ns=10, valid=True, lat_e7=312_479_500, lon_e7=1_215_874_383, quality=1,
               hdop_c=130, satellites=5, speed_mm_s=154, course_cdeg=494)


def epoch(hhmmss: str, *, date: str = "250215", status: str = "A", quality: int = 1, lat: str = "3114.8770,N",
          lon: str = "12135.2463,E", talker: str = "GN") -> list[str]:
    """An RMC + GGA pair for one epoch."""
    return [f"{talker}RMC,{hhmmss},{status},{lat},{lon},0.30,4.94,{date},,,A",
            f"{talker}GGA,{hhmmss},{lat},{lon},{quality},05,1.3,156.9,M,8.3,M,,"]


def feed(assembler: NmeaAssembler, bodies: list[str], mono_ns: int = 10) -> list[Fix]:
    return assembler.feed(b"".join(nmea(b) for b in bodies), mono_ns)


@pytest.fixture
def asm() -> NmeaAssembler:
    return NmeaAssembler()


def test_rmc_then_gga_is_one_exact_fix(asm: NmeaAssembler) -> None:
    assert asm.line(nmea(RMC), 10) is None
    assert asm.line(nmea(GGA), 11) == EXPECTED  # stamped with the epoch's first arrival
    assert asm.stats.sentences == 2
    assert asm.stats.fixes == 1


def test_gga_then_rmc_is_the_same_fix(asm: NmeaAssembler) -> None:
    assert feed(asm, [GGA, RMC]) == [EXPECTED]


def test_track_point_is_what_manifests_carry() -> None:
    assert EXPECTED.track_point() == {"t_ns": UTC, "lat_e7": 312_479_500, "lon_e7": 1_215_874_383,
                                      "fix": 1, "hdop_c": 130}
    with pytest.raises(ValueError):
        Fix(UTC, 0, False, 0, 0, 0, 0, 0).track_point()


@pytest.mark.parametrize(("lat", "lon", "lat_e7", "lon_e7"), [
    ("3114.8770,S", "12135.2463,W", -312_479_500, -1_215_874_383),
    ("0000.0000,N", "00000.0000,E", 0, 0),
    ("9000.0000,S", "18000.0000,W", -900_000_000, -1_800_000_000),
    ("3352.1234,S", "15112.5678,E", -338_687_233, 1_512_094_633),  # Sydney
])
def test_hemispheres(asm: NmeaAssembler, lat: str, lon: str, lat_e7: int, lon_e7: int) -> None:
    [fix] = feed(asm, epoch("074155.799", lat=lat, lon=lon))
    assert (fix.lat_e7, fix.lon_e7, fix.valid) == (lat_e7, lon_e7, True)


def test_status_void_is_an_invalid_fix_with_time(asm: NmeaAssembler) -> None:
    [fix] = feed(asm, epoch("074155.799", status="V", quality=0))
    assert fix == Fix(UTC, 10, False, 0, 0, 0, 130, 5)


def test_quality_zero_makes_an_active_rmc_invalid(asm: NmeaAssembler) -> None:
    [fix] = feed(asm, epoch("074155.799", quality=0))
    assert not fix.valid and fix.lat_e7 == 0 and fix.quality == 0


def test_no_date_means_no_utc_and_no_valid_fix(asm: NmeaAssembler) -> None:
    [fix] = feed(asm, epoch("074155.799", date=""))
    assert fix.utc_ns is None and not fix.valid


def test_cold_start_sentences_without_time(asm: NmeaAssembler) -> None:
    fixes = feed(asm, ["GNRMC,,V,,,,,,,,,,N", "GNGGA,,,,,,0,00,,,M,,M,,"] * 3)
    assert [f.utc_ns for f in fixes] == [None, None, None]
    assert not any(f.valid for f in fixes)


def test_an_epoch_without_gga_is_emitted_when_the_next_starts(asm: NmeaAssembler) -> None:
    assert feed(asm, ["GPRMC,074155.799,A,3114.8770,N,12135.2463,E,0.30,4.94,250215,,,D"]) == []
    [fix] = feed(asm, [epoch("074156.799")[1]], mono_ns=20)
    assert fix.valid and fix.quality == 2  # from the RMC mode indicator D (differential)
    assert (fix.hdop_c, fix.satellites) == (0, 0)  # unknown without GGA or GSA


def test_rmc_before_nmea_2_3_has_no_mode_indicator(asm: NmeaAssembler) -> None:
    feed(asm, ["GPRMC,074155.799,A,3114.8770,N,12135.2463,E,0.30,4.94,250215,,"])
    fix = asm.flush()
    assert fix is not None and fix.valid and fix.quality == 1


def test_an_epoch_without_rmc_has_no_utc(asm: NmeaAssembler) -> None:
    feed(asm, [GGA])
    fix = asm.flush()
    assert fix is not None and fix.utc_ns is None and not fix.valid and fix.quality == 1
    assert asm.flush() is None


def test_gsa_and_vtg_fill_what_rmc_and_gga_left_empty(asm: NmeaAssembler) -> None:
    fixes = feed(asm, ["GNRMC,074155.799,A,3114.8770,N,12135.2463,E,,,250215,,,A",
                       "GNVTG,4.94,T,,M,0.30,N,0.56,K,A",
                       "GNGSA,A,3,25,32,,,,,,,,,,,5.1,1.3,4.9",
                       "GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,,156.9,M,8.3,M,,"])
    assert fixes == [EXPECTED]


def test_vtg_speed_in_km_h_when_knots_are_missing(asm: NmeaAssembler) -> None:
    fixes = feed(asm, ["GNRMC,074155.799,A,3114.8770,N,12135.2463,E,,,250215,,,A",
                       "GNVTG,4.94,T,,M,,N,0.56,K,A", GGA])
    assert fixes[0].speed_mm_s == 156  # 0.56 km/h = 155.6 mm/s


def test_gsa_and_vtg_after_the_epoch_change_nothing(asm: NmeaAssembler) -> None:
    fixes = feed(asm, [RMC, GGA, "GNGSA,A,3,25,32,,,,,,,,,,,5.1,2.2,4.9", "GNVTG,100.0,T,,M,9.0,N,16.7,K,A"])
    assert fixes == [EXPECTED]
    assert asm.flush() is None
    assert asm.stats.parse_errors == 0


def test_nmea_4_1_fields_are_accepted(asm: NmeaAssembler) -> None:
    # Quectel L76K: RMC with a navigational status, GSA with a system id.
    fixes = feed(asm, ["GNGGA,055234.200,4739.71890,N,12219.58362,W,1,14,0.9,76.5,M,-21.6,M,,",
                       "GNGSA,A,3,02,07,14,15,17,20,22,30,,,,,1.5,0.9,1.2,1",
                       "GNRMC,055234.200,A,4739.71890,N,12219.58362,W,0.00,286.35,050826,,,A,V"])
    assert (fixes[0].lat_e7, fixes[0].lon_e7, fixes[0].satellites) == (476_619_817, -1_223_263_937, 14)


def test_the_same_epoch_from_a_second_talker_is_ignored(asm: NmeaAssembler) -> None:
    fixes = feed(asm, [RMC, GGA, RMC.replace("GN", "GP", 1), GGA.replace("GN", "GP", 1)])
    assert fixes == [EXPECTED]
    assert asm.flush() is None


def test_talkers_of_other_instruments_are_ignored(asm: NmeaAssembler) -> None:
    assert feed(asm, [RMC.replace("GN", "II", 1), GGA.replace("GN", "EC", 1)]) == []
    assert asm.flush() is None
    assert asm.stats.sentences == 2


@pytest.mark.parametrize("talker", ["GP", "GN", "BD", "GB", "GL", "GA"])
def test_satellite_system_talkers(asm: NmeaAssembler, talker: str) -> None:
    [fix] = feed(asm, epoch("074155.799", talker=talker))
    assert fix.valid


@pytest.mark.parametrize("line", [
    b"\x00\xff\x13garbage",
    b"no dollar at all",
    b"GNRMC,074155.799,A,3114.8770,N,12135.2463,E,0.30,4.94,250215,,,A*76",  # the '$' is required
    b"$\xe4\xb8\xad\xe6\x96\x87",  # not ASCII
    b"$GNRMC",
    b"$GNXYZ,1,2,3*4E",  # unknown sentence type, correct checksum
    b"$GNRMC,074155.799,A,3114.8770,N,12135.2463,E,0.30,4.94,250215,,,A*7g",
])
def test_garbage_is_counted_and_skipped(asm: NmeaAssembler, line: bytes) -> None:
    assert asm.line(line, 1) is None
    assert asm.stats.parse_errors >= 1
    assert feed(asm, [RMC, GGA]) == [EXPECTED]


def test_wrong_checksum_is_counted_and_the_sentence_dropped(asm: NmeaAssembler) -> None:
    bad = nmea(RMC).replace(b"*76", b"*77")
    assert asm.feed(bad + nmea(GGA), 10) == []
    assert asm.stats.checksum_errors == 1
    fix = asm.flush()
    assert fix is not None and fix.utc_ns is None  # only the GGA made it


def test_missing_checksum_is_rejected(asm: NmeaAssembler) -> None:
    # pynmea2 accepts a sentence without checksum unless asked not to.
    assert asm.feed(f"${RMC}\r\n${GGA}\r\n".encode(), 10) == []
    assert asm.stats.checksum_errors == 2
    assert asm.flush() is None


def test_a_cut_line_loses_only_the_cut_sentence(asm: NmeaAssembler) -> None:
    cut = nmea(RMC)[:30]  # no line end: runs into the next sentence
    fixes = asm.feed(cut + nmea(GGA) + nmea(RMC), 10)
    assert fixes == [EXPECTED]
    assert asm.stats.parse_errors == 1


def test_garbage_running_into_a_sentence_keeps_the_sentence(asm: NmeaAssembler) -> None:
    assert asm.feed(b"\xf0\x9f\x92\xa9\x00\x7f" + nmea(RMC) + nmea(GGA), 10) == [EXPECTED]
    assert asm.stats.parse_errors == 1


def test_bad_field_values_with_a_correct_checksum(asm: NmeaAssembler) -> None:
    for body in ["GNRMC,074155.799,A,31x4.8770,N,12135.2463,E,0.30,4.94,250215,,,A",
                 "GNRMC,074155.799,A,3114.8770,Q,12135.2463,E,0.30,4.94,250215,,,A",
                 "GNRMC,074155.799,X,3114.8770,N,12135.2463,E,0.30,4.94,250215,,,A",
                 "GNRMC,074155.799,A,3114.8770,N,12135.2463,E,0.30,4.94,310215,,,A",
                 "GNRMC,254155.799,A,3114.8770,N,12135.2463,E,0.30,4.94,250215,,,A",
                 "GNRMC,074155.799,A,3114.8770,N,12135.2463,E,-0.30,4.94,250215,,,A",
                 "GNRMC,074155.799,A,3114.8770,N,12135.2463,E,0.30,361.00,250215,,,A",
                 "GNGGA,074155.799,3114.8770,N,12135.2463,E,12,05,1.3,156.9,M,8.3,M,,",
                 "GNGGA,074155.799,3114.8770,N,12135.2463,E,1,x5,1.3,156.9,M,8.3,M,,",
                 "GNGSA,A,3,25,32,,,,,,,,,,,5.1,1000.0,4.9"]:
        assert feed(asm, [body]) == []
    assert asm.stats.parse_errors == 10
    assert asm.stats.sentences == 0
    assert asm.flush() is None


def test_an_overlong_line_is_counted_once(asm: NmeaAssembler) -> None:
    noise = b"x" * (3 * MAX_LINE)
    assert asm.feed(noise[:MAX_LINE + 1], 1) == []
    assert asm.feed(noise, 2) == []
    assert asm.feed(b"tail of the noise\r\n" + nmea(RMC) + nmea(GGA), 10) == [EXPECTED]
    assert asm.stats.parse_errors == 1


def test_line_ends_cr_lf_cr_or_lf(asm: NmeaAssembler) -> None:
    data = nmea(RMC).replace(b"\r\n", b"\r") + nmea(GGA).replace(b"\r\n", b"\n")
    assert asm.feed(data, 10) == [EXPECTED]


def test_bytes_may_arrive_in_any_pieces(asm: NmeaAssembler) -> None:
    stream = nmea(RMC) + b"\x00junk\r\n" + nmea(GGA)
    fixes = []
    for i in range(len(stream)):
        fixes += asm.feed(stream[i:i + 1], 10)
    assert fixes == [EXPECTED]
    assert asm.stats.parse_errors == 1


def test_a_partial_line_dropped_when_the_port_goes_away(asm: NmeaAssembler) -> None:
    asm.feed(nmea(RMC)[:20], 10)
    asm.drop_partial_line()
    assert asm.stats.parse_errors == 1
    asm.drop_partial_line()
    assert asm.stats.parse_errors == 1


def _steady(asm: NmeaAssembler, seconds: range, utc_offset_s: int = 0, mono_offset_s: int = 0) -> list[Fix]:
    fixes = []
    for s in seconds:
        hhmmss = f"0741{(s + utc_offset_s) % 60:02d}.00"
        fixes += feed(asm, epoch(hhmmss), mono_ns=(s + mono_offset_s) * SECOND_NS + 123)
    return fixes


def test_steady_time_has_no_jumps(asm: NmeaAssembler) -> None:
    fixes = _steady(asm, range(0, 20))
    assert len(fixes) == 20 and asm.stats.time_jumps == 0


def test_time_stepping_forward_is_a_jump(asm: NmeaAssembler) -> None:
    _steady(asm, range(0, 5))
    fixes = _steady(asm, range(5, 10), utc_offset_s=30)
    assert asm.stats.time_jumps == 1
    assert [f.time_jump for f in fixes] == [True, False, False, False, False]


def test_time_stepping_back_is_a_jump(asm: NmeaAssembler) -> None:
    _steady(asm, range(20, 25))
    _steady(asm, range(25, 30), utc_offset_s=-10)
    assert asm.stats.time_jumps == 1


def test_silence_explained_by_the_monotonic_clock_is_no_jump(asm: NmeaAssembler) -> None:
    _steady(asm, range(0, 3))
    _steady(asm, range(40, 43))  # 37 s of silence on both clocks (a reconnect, say)
    assert asm.stats.time_jumps == 0


def test_arrival_jitter_within_tolerance_is_no_jump(asm: NmeaAssembler) -> None:
    _steady(asm, range(0, 3))
    _steady(asm, range(3, 6), mono_offset_s=1)  # the serial line was a second late
    assert asm.stats.time_jumps == 0


def test_the_first_time_after_a_cold_start_is_no_jump(asm: NmeaAssembler) -> None:
    feed(asm, ["GNRMC,,V,,,,,,,,,,N", "GNGGA,,,,,,0,00,,,M,,M,,"], mono_ns=0)
    _steady(asm, range(5, 8))
    assert asm.stats.time_jumps == 0


def test_a_leap_second_is_no_jump(asm: NmeaAssembler) -> None:
    fixes = []
    for i, (hhmmss, ddmmyy) in enumerate([("235959", "311216"), ("235960", "311216"), ("000000", "010117")]):
        fixes += feed(asm, epoch(hhmmss, date=ddmmyy), mono_ns=i * SECOND_NS)
    assert fixes[1].utc_ns == fixes[2].utc_ns  # 23:59:60 has no UTC nanosecond of its own
    assert asm.stats.time_jumps == 0


def test_jump_tolerance_is_configurable() -> None:
    strict = NmeaAssembler(jump_tolerance_ns=100_000_000)
    _steady(strict, range(0, 3))
    _steady(strict, range(3, 6), mono_offset_s=1)
    assert strict.stats.time_jumps == 1
