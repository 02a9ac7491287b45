"""The simulator's sentences, routes, faults and scenario files, without a pty."""

from __future__ import annotations

import threading
from pathlib import Path

import pynmea2
import pytest

from hardware.gnss import Fix
from hardware.gnss_serial import NmeaAssembler
from simulators.gnss import (
    PATROL,
    BadChecksum,
    ColdStart,
    CutLine,
    Garbage,
    NoChecksum,
    Route,
    Scenario,
    SimClock,
    TimeJump,
    Tunnel,
    Waypoint,
    load_scenario,
    log_epochs,
    make_fault,
    nmea,
    route_epochs,
    with_stream_faults,
)

from .nmea_data import BU353_GLONASS, QUECTEL_L76K

SECOND_NS = 1_000_000_000
START = 1_763_947_800 * SECOND_NS  # 2025-11-24T01:30:00Z
# 0.001 degree of latitude north, then east, near the Bund
NORTH_EAST = Route((Waypoint(31.2400, 121.4850), Waypoint(31.2410, 121.4850, pause=5), Waypoint(31.2410, 121.4862)),
                   speed=1.25)


def assemble(scenario: Scenario, seconds: int | None = None) -> tuple[list[Fix], NmeaAssembler]:
    asm = NmeaAssembler()
    fixes = []
    epochs = with_stream_faults(route_epochs(scenario, START), scenario.faults, scenario.seed)
    for t, lines in epochs:
        if seconds is not None and t >= seconds * SECOND_NS:
            break
        fixes += asm.feed(b"".join(lines), t)
    last = asm.flush()
    return fixes + ([last] if last else []), asm


def test_sentences_carry_a_checksum_pynmea2_accepts() -> None:
    line = nmea("GNGGA,012345.00,3114.87700,N,12135.24630,E,1,09,0.9,12.0,M,9.4,M,,")
    assert line.endswith(b"\r\n")
    assert pynmea2.parse(line.decode().strip(), check=True).gps_qual == 1


def test_route_geometry() -> None:
    # 0.001 deg of latitude is 111.19 m on the mean Earth: 88.96 s at 1.25 m/s, heading north.
    north = NORTH_EAST.motion_at(10 * SECOND_NS)
    assert (north.speed_mm_s, north.course_cdeg) == (1250, 0)
    pause_starts = round(111.195 / 1.25 * SECOND_NS)
    standing = NORTH_EAST.motion_at(pause_starts + 2 * SECOND_NS)
    assert (standing.lat_e7, standing.lon_e7, standing.speed_mm_s) == (312_410_000, 1_214_850_000, 0)
    east = NORTH_EAST.motion_at(pause_starts + 10 * SECOND_NS)
    assert east.course_cdeg == 9000 and east.speed_mm_s == 1250
    end = NORTH_EAST.motion_at(NORTH_EAST.duration_ns + 60 * SECOND_NS)
    assert (end.lat_e7, end.lon_e7, end.speed_mm_s, end.course_cdeg) == (312_410_000, 1_214_862_000, 0, 9000)
    assert abs(NORTH_EAST.duration_ns - (pause_starts + 5 * SECOND_NS + round(114.07 / 1.25 * SECOND_NS))) \
        < SECOND_NS // 10


def test_a_looped_route_walks_back_to_its_start() -> None:
    loop = Route(NORTH_EAST.points, speed=1.25, loop=True)
    back = loop.motion_at(loop.duration_ns - SECOND_NS)
    assert 18_000 < back.course_cdeg < 27_000  # heading south-west, home
    assert loop.motion_at(loop.duration_ns + 10 * SECOND_NS) == loop.motion_at(10 * SECOND_NS)


@pytest.mark.parametrize("points", [(), (Waypoint(91.0, 0.0),), (Waypoint(0.0, 0.0, speed=0.0),)])
def test_bad_routes(points: tuple[Waypoint, ...]) -> None:
    with pytest.raises(ValueError):
        Route(points)


def test_the_driver_reads_back_the_route_within_a_centimetre() -> None:
    fixes, asm = assemble(Scenario(route=NORTH_EAST, duration=200))
    assert len(fixes) == 200 and all(f.valid for f in fixes)
    assert asm.stats.parse_errors == asm.stats.checksum_errors == asm.stats.time_jumps == 0
    for fix in fixes:
        assert fix.utc_ns is not None
        truth = NORTH_EAST.motion_at(fix.utc_ns - START)
        assert abs(fix.lat_e7 - truth.lat_e7) <= 1 and abs(fix.lon_e7 - truth.lon_e7) <= 1
        assert abs(fix.speed_mm_s - truth.speed_mm_s) <= 1 and fix.course_cdeg == truth.course_cdeg
        assert (fix.quality, fix.hdop_c, fix.satellites) == (1, 90, 9)


def test_southern_and_western_routes() -> None:
    route = Route((Waypoint(-33.8688, 151.2093), Waypoint(-33.8678, 151.2093)))  # Sydney, north
    [fix] = assemble(Scenario(route=route, duration=1))[0]
    assert (fix.lat_e7, fix.lon_e7, fix.course_cdeg) == (-338_688_000, 1_512_093_000, 0)
    route = Route((Waypoint(47.6619, -122.3264), Waypoint(47.6619, -122.3274)))  # Seattle, west
    [fix] = assemble(Scenario(route=route, duration=1))[0]
    assert (fix.lat_e7, fix.lon_e7, fix.course_cdeg) == (476_619_000, -1_223_264_000, 27_000)


def test_rate_and_talker() -> None:
    scenario = Scenario(route=NORTH_EAST, duration=2, rate_hz=5, talker="BD")
    epochs = list(route_epochs(scenario, START))
    assert [t for t, _ in epochs] == [i * 200_000_000 for i in range(10)]
    assert all(line.startswith(b"$BD") for _, lines in epochs for line in lines)
    assert len(assemble(scenario)[0]) == 10


def test_tunnel() -> None:
    fixes, _ = assemble(Scenario(route=NORTH_EAST, duration=30, faults=(Tunnel(at=10, duration=5),)))
    assert [i for i, f in enumerate(fixes) if not f.valid] == [10, 11, 12, 13, 14]
    assert fixes[12].utc_ns == START + 12 * SECOND_NS  # time goes on without a fix
    assert fixes[12].quality == 0


def test_cold_start() -> None:
    fixes, _ = assemble(Scenario(route=NORTH_EAST, duration=20, faults=(ColdStart(at=0, no_time=3, no_fix=4),)))
    assert [f.utc_ns is not None for f in fixes[:8]] == [False] * 3 + [True] * 5
    assert [f.valid for f in fixes[:8]] == [False] * 7 + [True]


def test_time_jump_for_a_while() -> None:
    fixes, asm = assemble(Scenario(route=NORTH_EAST, duration=20, faults=(TimeJump(at=5, step=3600, duration=4),)))
    offsets = [(f.utc_ns or 0) - START - f.mono_ns for f in fixes]
    assert offsets == [0] * 5 + [3600 * SECOND_NS] * 4 + [0] * 11
    assert asm.stats.time_jumps == 2
    assert [i for i, f in enumerate(fixes) if f.time_jump] == [5, 9]
    # The position follows the true time, not the receiver's wrong clock.
    assert abs(fixes[6].lat_e7 - NORTH_EAST.motion_at(6 * SECOND_NS).lat_e7) <= 1


def test_stream_faults_are_counted_by_the_driver() -> None:
    faults = (Garbage(at=2, size=200), BadChecksum(at=4, count=2), NoChecksum(at=6), CutLine(at=8))
    fixes, asm = assemble(Scenario(route=NORTH_EAST, duration=12, faults=faults, seed=3))
    assert asm.stats.checksum_errors == 3  # two wrong, one missing
    assert asm.stats.parse_errors >= 2  # the garbage (one line or more) and the cut line
    assert asm.stats.time_jumps == 0
    # Epoch 4 lost RMC and GGA, 6 its RMC, 8 its RMC (cut): no position for 4, no time for 6 and 8.
    assert [f.utc_ns is not None for f in fixes].count(False) == 2
    assert sum(f.valid for f in fixes) == 12 - 3


def test_garbage_is_reproducible_with_a_seed() -> None:
    scenario = Scenario(route=NORTH_EAST, duration=3, faults=(Garbage(at=1),), seed=5)
    def once() -> list[tuple[int, list[bytes]]]:
        return list(with_stream_faults(route_epochs(scenario, START), scenario.faults, scenario.seed))
    assert once() == once()
    assert len(once()[1][1][0]) == 64


def test_log_epochs_follow_the_log_s_own_pace() -> None:
    quectel = list(log_epochs(QUECTEL_L76K))
    assert [t for t, _ in quectel] == [i * 200_000_000 for i in range(6)]
    assert quectel[1][1][0].startswith(b"$GNGGA,055234.200")  # each epoch opens with its GGA
    bu353 = list(log_epochs(BU353_GLONASS))
    assert [t for t, _ in bu353] == [i * SECOND_NS for i in range(19)]
    assert sum(len(lines) for _, lines in bu353) == 112
    assert all(line.endswith(b"\r\n") and not line.startswith(b"#") for _, lines in bu353 for line in lines)


def test_log_gaps_are_capped(tmp_path: Path) -> None:
    log = tmp_path / "gap.nmea"
    log.write_bytes(nmea("GPGGA,120000.00,,,,,0,00,,,M,,M,,") + nmea("GPGGA,130000.00,,,,,0,00,,,M,,M,,")
                    + nmea("GPGGA,130001.00,,,,,0,00,,,M,,M,,"))
    assert [t for t, _ in log_epochs(log)] == [0, SECOND_NS, 2 * SECOND_NS]


def test_the_patrol_scenario() -> None:
    scenario = load_scenario(PATROL)
    assert scenario.route is not None and scenario.talker == "GN" and scenario.rate_hz == 1
    assert scenario.start_utc_ns == START  # 09:30 +08:00 is 01:30Z
    assert 25 * 60 < scenario.route.duration_ns / SECOND_NS < 30 * 60
    fixes, asm = assemble(scenario, seconds=1700)
    invalid = [(f.utc_ns - START) // SECOND_NS if f.utc_ns else None for f in fixes if not f.valid]
    # Cold start (no time for 3 s, no fix until 15 s), then the underpass from 1192 s to 1262 s.
    assert invalid == [None] * 3 + list(range(3, 15)) + list(range(1192, 1262))
    assert asm.stats.checksum_errors == 2 and asm.stats.parse_errors >= 1
    # The underpass is where the tunnel is: the officer walks it between 1194 s and 1256 s.
    entry, exit_ = scenario.route.points[5], scenario.route.points[6]
    at_entry = scenario.route.motion_at(1194 * SECOND_NS)
    at_exit = scenario.route.motion_at(1256 * SECOND_NS)
    assert abs(at_entry.lat_e7 - round(entry.lat * 1e7)) < 100 and abs(at_exit.lon_e7 - round(exit_.lon * 1e7)) < 100


@pytest.mark.parametrize(("text", "message"), [
    ("[camera]\nfps = 30\n", "no [gnss] table"),
    ("[gnss]\nrate_hz = 1\n", "either a route or a log"),
    ("[gnss]\nlog = 'x.nmea'\n[gnss.route]\npoints = [{lat = 1, lon = 2}]\n", "either a route or a log"),
    ("[gnss]\nspeed = 2\n[gnss.route]\npoints = [{lat = 1, lon = 2}]\n", "unknown keys in [gnss]"),
    ("[gnss.route]\npoints = [{lat = 1, lon = 2, heading = 3}]\n", "unknown keys in a route point"),
    ("[gnss]\nstart = 2025-11-24T09:30:00\n[gnss.route]\npoints = [{lat = 1, lon = 2}]\n", "offset"),
    ("[gnss.route]\npoints = [{lat = 1, lon = 2}]\n[[gnss.faults]]\nkind = 'meteor'\nat = 1\n", "fault kind"),
    ("[gnss.route]\npoints = [{lat = 1, lon = 2}]\n[[gnss.faults]]\nkind = 'tunnel'\nat = 1\nlength = 2\n",
     "unknown keys in a tunnel fault"),
    ("[gnss.route]\npoints = [{lat = 1, lon = 2}]\n[[gnss.faults]]\nkind = 'tunnel'\nat = 1\n", "duration"),
    ("[gnss]\nlog = 'x.nmea'\n[[gnss.faults]]\nkind = 'tunnel'\nat = 1\nduration = 2\n", "need a route"),
    ("[gnss]\ntalker = 'GPS'\n[gnss.route]\npoints = [{lat = 1, lon = 2}]\n", "talker"),
    ("[gnss.route]\npoints = [{lat = 1, lon = 2}]\n[[gnss.faults]]\nkind = 'garbage'\nat = 1\nsize = 1.5\n",
     "Garbage.size: 1.5 is not a non-negative integer"),
    ("[gnss.route]\npoints = [{lat = 1, lon = 2}]\n[[gnss.faults]]\nkind = 'tunnel'\nat = 'soon'\nduration = 2\n",
     "Tunnel.at"),
])
def test_bad_scenario_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_scenario(path)


def test_faults_from_their_file_form() -> None:
    assert make_fault({"kind": "time-jump", "at": 5, "step": -30}) == TimeJump(at=5, step=-30)
    assert make_fault({"kind": "cut-line", "at": 2.5}) == CutLine(at=2.5)
    with pytest.raises(ValueError):
        make_fault({"kind": "tunnel", "at": -1, "duration": 3})


def test_a_scenario_file_may_replay_a_log_next_to_it(tmp_path: Path) -> None:
    (tmp_path / "log.nmea").write_bytes(BU353_GLONASS.read_bytes())
    path = tmp_path / "scenario.toml"
    path.write_text("[gnss]\nlog = 'log.nmea'\n[[gnss.faults]]\nkind = 'garbage'\nat = 2\n")
    scenario = load_scenario(path)
    assert scenario.log == tmp_path / "log.nmea" and scenario.faults == (Garbage(at=2),)


def test_sim_clock() -> None:
    clock = SimClock(speed=1000)
    stop = threading.Event()
    assert clock.wait_until(clock.now_ns() + 50 * 1_000_000_000 // 1000 * 1000, stop)  # 50 s at 1000x
    stop.set()
    assert not clock.wait_until(clock.now_ns() + 3600 * SECOND_NS, stop)
    with pytest.raises(ValueError):
        SimClock(speed=0)
