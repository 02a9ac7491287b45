"""Real receiver captures from gpsd's test suite (tests/gnss/data): the expected
values below were worked out by hand from the sentences, as noted beside each."""

from __future__ import annotations

import datetime
import itertools

from hardware.gnss import Fix

from .nmea_data import BU353_GLONASS, QUECTEL_L76K, SIRF_TRIG_BEIDOU, replay

SECOND_NS = 1_000_000_000


def utc_ns(year: int, month: int, day: int, hh: int, mm: int, ss: int, ms: int = 0) -> int:
    days = (datetime.date(year, month, day) - datetime.date(1970, 1, 1)).days
    return ((days * 24 + hh) * 60 + mm) * 60 * SECOND_NS + ss * SECOND_NS + ms * 1_000_000


def without_mono(fix: Fix) -> tuple[object, ...]:
    return (fix.utc_ns, fix.valid, fix.lat_e7, fix.lon_e7, fix.quality, fix.hdop_c, fix.satellites,
            fix.speed_mm_s, fix.course_cdeg)


def test_sirf_trig_gps_and_beidou_near_shanghai() -> None:
    fixes, asm = replay(SIRF_TRIG_BEIDOU)
    assert asm.stats.checksum_errors == asm.stats.parse_errors == asm.stats.time_jumps == 0
    assert asm.stats.sentences == 79  # every line, SiRF proprietary ones included
    # Five epochs without a fix (RMC V, GGA quality 0) but with time, then five with one.
    assert [f.valid for f in fixes] == [False] * 5 + [True] * 5
    assert without_mono(fixes[0]) == (utc_ns(2015, 2, 25, 7, 41, 50, 799), False, 0, 0, 0, 0, 0, 0, 0)
    # $GNGGA,074155.799,3114.8770,N,12135.2463,E,1,05,1.3,...
    # $GNRMC,074155.799,A,3114.8770,N,12135.2463,E,0.30,4.94,250215,,,A
    #   lat 31 + 14.8770/60 = 31.24795 exactly; lon 121 + 35.2463/60 = 121.58743833.. -> 1215874383
    #   0.30 kn = 0.30 * 1852000 / 3600 mm/s = 154.33 -> 154; course 4.94 deg; HDOP 1.3; 5 satellites
    assert without_mono(fixes[5]) == (utc_ns(2015, 2, 25, 7, 41, 55, 799), True, 312_479_500, 1_215_874_383,
                                      1, 130, 5, 154, 494)
    # The RMC of 07:41:57.799 arrived with a space before its '$'.
    # lat 31 + 14.8902/60 = 31.24817; lon 121 + 35.2443/60 = 121.58740500; 0.32 kn = 164.62 mm/s
    assert without_mono(fixes[7]) == (utc_ns(2015, 2, 25, 7, 41, 57, 799), True, 312_481_700, 1_215_874_050,
                                      1, 110, 7, 165, 494)
    assert fixes[9].utc_ns == utc_ns(2015, 2, 25, 7, 41, 59, 799)


def test_bu353_gga_first_with_gp_and_gn_talkers_and_a_lost_fix() -> None:
    fixes, asm = replay(BU353_GLONASS)
    assert asm.stats.checksum_errors == asm.stats.parse_errors == asm.stats.time_jumps == 0
    assert len(fixes) == 19
    # The log opens mid-epoch: the RMC of 08:14:03 has no GGA; quality comes from its mode A, and the
    # two GSA before it belong to the epoch before, which the capture does not hold: no HDOP.
    # lat 55 + 41.1938/60 = 55.68656333..; lon 37 + 37.2875/60 = 37.62145833..; 0.63 kn = 324.1 mm/s
    assert without_mono(fixes[0]) == (utc_ns(2014, 5, 26, 8, 14, 3), True, 556_865_633, 376_214_583,
                                      1, 0, 0, 324, 25_933)
    # $GPGGA,081404.000,5541.1939,N,03737.2887,E,1,6,2.57,...  then  $GNRMC,081404.000,A,...,0.53,261.98,260514
    #   lat 55 + 41.1939/60 = 55.686565 exactly; lon 37 + 37.2887/60 = 37.62147833..; 0.53 kn = 272.66 mm/s
    assert without_mono(fixes[1]) == (utc_ns(2014, 5, 26, 8, 14, 4), True, 556_865_650, 376_214_783,
                                      1, 257, 6, 273, 26_198)
    # $GPGGA,081412.000,5541.1956,N,03737.2877,E,1,5,4.87,...: five satellites, HDOP 4.87
    assert without_mono(fixes[9])[5:7] == (487, 5)
    # From 08:14:20 the receiver has time but no fix: RMC V, GGA quality 0, no position.
    assert without_mono(fixes[17]) == (utc_ns(2014, 5, 26, 8, 14, 20), False, 0, 0, 0, 0, 0, 0, 0)
    assert [f.valid for f in fixes] == [True] * 17 + [False] * 2


def test_quectel_l76k_five_hertz_nmea_4_1_west_longitude() -> None:
    fixes, asm = replay(QUECTEL_L76K)
    assert asm.stats.checksum_errors == asm.stats.parse_errors == asm.stats.time_jumps == 0
    assert [f.utc_ns for f in fixes] == [utc_ns(2026, 8, 5, 5, 52, 34, ms) for ms in (0, 200, 400, 600, 800)] \
        + [utc_ns(2026, 8, 5, 5, 52, 35)]
    assert all(f.valid for f in fixes)
    # First epoch: the capture starts after its GGA, so RMC + VTG only; 0.00 kn, course 286.35.
    # lat 47 + 39.71890/60 = 47.66198166.. -> 476619817; lon 122 + 19.58362/60 = 122.32639366.. west
    assert without_mono(fixes[0]) == (fixes[0].utc_ns, True, 476_619_817, -1_223_263_937, 1, 0, 0, 0, 28_635)
    # $GNGGA,055234.200,...,1,14,0.9,...: 14 satellites of three systems, HDOP 0.9
    assert without_mono(fixes[1])[2:7] == (476_619_817, -1_223_263_937, 1, 90, 14)
    # From 05:52:34.400 the longitude reads 12219.58361 W: 19.58361/60 = 0.3263935 exactly.
    assert [f.lon_e7 for f in fixes[2:]] == [-1_223_263_935] * 4
    # Fixes are stamped at their epoch's first sentence: 200 ms apart, as the log is paced.
    assert [b.mono_ns - a.mono_ns for a, b in itertools.pairwise(fixes)] == [200_000_000] * 5
