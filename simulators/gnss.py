"""A simulated GNSS receiver: NMEA 0183 written to a pty, read by the real driver.

The simulator owns a pseudo-terminal pair; the recorder opens the slave path
(`SimulatedGnss.port`) with `hardware.gnss_serial.SerialGnss` exactly as it opens
/dev/serial0 on a Raspberry Pi, so the whole driver (pyserial, line splitting,
parsing, reconnection) runs unchanged.

What it sends comes either from a route (waypoints walked at a speed, one epoch
of RMC + GGA + GSA per period) with scenario faults (tunnel, cold start, time
jump, line noise, bad or missing checksums, cut lines), or from a recorded NMEA
log replayed at its own pace. The scenario file format is in
docs/recorder.md ("GNSS scenario files") and simulators/scenarios/patrol.toml.

Pacing uses a `SimClock` that can run faster than real time; give the driver the
same clock (`SerialGnss(sim.port, clock=sim.clock.now_ns)`) so its arrival
stamps agree with the receiver's time at any speed.
"""

from __future__ import annotations

import datetime
import fcntl
import math
import os
import random
import select
import termios
import threading
import time
import tomllib
import tty
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import reduce
from itertools import count
from operator import xor
from pathlib import Path
from typing import Any

SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS
E7 = 10_000_000
METRES_PER_DEGREE = 6_371_008.8 * math.pi / 180  # mean Earth radius: plenty for a city walk
MM_PER_S_PER_KNOT = 1_852_000 / 3600

PATROL = Path(__file__).parent / "scenarios" / "patrol.toml"

# A replayed log is paced by the time of day in its sentences; a gap longer than
# this (a jump in the log, or midnight without a date) is replayed as one period.
MAX_REPLAY_GAP_NS = 10 * SECOND_NS

# How wait() decides that a reader has taken everything: see there.
DRAIN_POLLS = 5
DRAIN_POLL_S = 0.005

# Satellites the simulated receiver says it uses, and what it reports with a fix.
_SATELLITES = ("03", "06", "09", "17", "19", "22", "28", "31", "32")
_HDOP, _PDOP, _VDOP = "0.9", "1.6", "1.3"
_ALTITUDE_M = "12.0"
_GEOID_M = "9.4"


# --- clock ------------------------------------------------------------------------


class SimClock:
    """Monotonic nanoseconds (from 0 at creation) running `speed` times faster than real time."""

    def __init__(self, speed: float = 1.0) -> None:
        if not speed > 0 or math.isinf(speed):
            raise ValueError(f"speed must be a positive number, not {speed}")
        self.speed = speed
        self._origin = time.monotonic_ns()

    def now_ns(self) -> int:
        return int((time.monotonic_ns() - self._origin) * self.speed)

    def wait_until(self, t_ns: int, stop: threading.Event) -> bool:
        """Block until now_ns() >= t_ns; False when `stop` was set first."""
        while not stop.is_set():
            remaining = t_ns - self.now_ns()
            if remaining <= 0:
                return True
            stop.wait(remaining / self.speed / SECOND_NS)
        return False


# --- routes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Waypoint:
    lat: float  # degrees, WGS-84 (what receivers report), north positive
    lon: float  # degrees, east positive
    speed: float | None = None  # m/s on the leg that starts here; None: the route's speed
    pause: float = 0.0  # seconds spent standing here before walking on


@dataclass(frozen=True)
class Motion:
    """Where the simulated receiver is at one instant, as the driver should report it."""

    lat_e7: int
    lon_e7: int
    speed_mm_s: int
    course_cdeg: int


@dataclass(frozen=True)
class _Phase:
    start_ns: int
    duration_ns: int
    origin: Waypoint
    target: Waypoint  # the same as origin while standing
    speed_mm_s: int
    course_cdeg: int


def _course_cdeg(a: Waypoint, b: Waypoint) -> int:
    north = b.lat - a.lat
    east = (b.lon - a.lon) * math.cos(math.radians((a.lat + b.lat) / 2))
    return round(math.degrees(math.atan2(east, north)) * 100) % 36_000


def _distance_m(a: Waypoint, b: Waypoint) -> float:
    north = b.lat - a.lat
    east = (b.lon - a.lon) * math.cos(math.radians((a.lat + b.lat) / 2))
    return math.hypot(north, east) * METRES_PER_DEGREE


@dataclass(frozen=True)
class Route:
    """Waypoints walked in order at constant speed per leg, with pauses; heading from each leg.

    After the last waypoint the receiver stands there, or starts again from the
    first waypoint when `loop` is true (walking back to it first).
    """

    points: tuple[Waypoint, ...]
    speed: float = 1.4  # m/s, a patrol's walking pace
    loop: bool = False
    _phases: tuple[_Phase, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("a route needs at least one waypoint")
        for p in self.points:
            if not (-90 <= p.lat <= 90 and -180 <= p.lon <= 180):
                raise ValueError(f"waypoint out of range: {p}")
            if (p.speed if p.speed is not None else self.speed) <= 0 or p.pause < 0:
                raise ValueError(f"speed must be positive and pause not negative: {p}")
        object.__setattr__(self, "_phases", tuple(self._plan()))

    @property
    def duration_ns(self) -> int:
        """One pass over the route, pauses included."""
        last = self._phases[-1]
        return last.start_ns + last.duration_ns

    def motion_at(self, t_ns: int) -> Motion:
        """Position, speed and heading `t_ns` after the route starts."""
        if self.loop and self.duration_ns > 0:
            t_ns %= self.duration_ns
        phase = next((p for p in self._phases if t_ns < p.start_ns + p.duration_ns), self._phases[-1])
        fraction = min(1.0, (t_ns - phase.start_ns) / phase.duration_ns) if phase.duration_ns else 1.0
        lat = phase.origin.lat + (phase.target.lat - phase.origin.lat) * fraction
        lon = phase.origin.lon + (phase.target.lon - phase.origin.lon) * fraction
        moving = phase.origin is not phase.target and t_ns < phase.start_ns + phase.duration_ns
        return Motion(round(lat * E7), round(lon * E7), phase.speed_mm_s if moving else 0, phase.course_cdeg)

    def _plan(self) -> Iterator[_Phase]:
        stops = list(self.points) + ([self.points[0]] if self.loop and len(self.points) > 1 else [])
        start, course = 0, 0
        for i, here in enumerate(stops):
            following = stops[i + 1] if i + 1 < len(stops) else None
            if following is not None:
                course = _course_cdeg(here, following)
            pause_ns = round(here.pause * SECOND_NS) if i < len(self.points) else 0
            yield _Phase(start, pause_ns, here, here, 0, course)
            start += pause_ns
            if following is None:
                return
            speed = here.speed if here.speed is not None else self.speed
            walk_ns = round(_distance_m(here, following) / speed * SECOND_NS)
            yield _Phase(start, walk_ns, here, following, round(speed * 1000), course)
            start += walk_ns


# --- faults -----------------------------------------------------------------------
# Times are seconds from the scenario start; each dataclass is one `kind` of
# [[gnss.faults]] in a scenario file, with the same field names.


class _Numbers:
    """Fault fields are seconds, sizes and counts: reject anything else when the
    fault is made, not later in the sender thread."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if value is None and f.default is None:
                continue
            kinds = int if f.type == "int" else int | float
            signed = f.name == "step"  # a time jump may go back
            if (isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value)
                    or (not signed and value < 0)):
                raise ValueError(f"{type(self).__name__}.{f.name}: {value!r} is not a "
                                 f"{'' if signed else 'non-negative '}{'integer' if f.type == 'int' else 'number'}")


@dataclass(frozen=True)
class Tunnel(_Numbers):
    """No fix from `at` for `duration` s: RMC status V, GGA quality 0, time still known."""

    at: float
    duration: float


@dataclass(frozen=True)
class ColdStart(_Numbers):
    """From `at`: `no_time` s without time or fix, then `no_fix` s with time but no fix."""

    at: float = 0.0
    no_time: float = 5.0
    no_fix: float = 10.0


@dataclass(frozen=True)
class TimeJump(_Numbers):
    """From `at` the receiver's UTC is off by `step` s (negative: back), for `duration` s or for good."""

    at: float
    step: float
    duration: float | None = None


@dataclass(frozen=True)
class Garbage(_Numbers):
    """`size` random bytes (line noise, possibly with '$' and line ends) before the epoch at `at`."""

    at: float
    size: int = 64


@dataclass(frozen=True)
class BadChecksum(_Numbers):
    """The next `count` sentences from `at` carry a wrong checksum."""

    at: float
    count: int = 1


@dataclass(frozen=True)
class NoChecksum(_Numbers):
    """The next `count` sentences from `at` carry no checksum at all."""

    at: float
    count: int = 1


@dataclass(frozen=True)
class CutLine(_Numbers):
    """The next `count` sentences from `at` are cut in half and run into the sentence after them."""

    at: float
    count: int = 1


Fault = Tunnel | ColdStart | TimeJump | Garbage | BadChecksum | NoChecksum | CutLine
FAULT_KINDS: dict[str, type[Fault]] = {
    "tunnel": Tunnel, "cold-start": ColdStart, "time-jump": TimeJump, "garbage": Garbage,
    "bad-checksum": BadChecksum, "no-checksum": NoChecksum, "cut-line": CutLine,
}
_ROUTE_ONLY = (Tunnel, ColdStart, TimeJump)


def _ns(seconds: float) -> int:
    return round(seconds * SECOND_NS)


def _active(at: float, duration: float | None, t_ns: int) -> bool:
    return _ns(at) <= t_ns and (duration is None or t_ns < _ns(at + duration))


# --- scenarios --------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """Everything the simulated receiver sends: a route or a log, plus faults."""

    route: Route | None = None
    log: Path | None = None  # a recorded NMEA log to replay instead of a route
    start_utc_ns: int | None = None  # UTC of the first epoch; None: the wall clock at start()
    rate_hz: float = 1.0
    talker: str = "GN"  # GP (GPS only), GN (several systems), BD or GB (BeiDou) ...
    duration: float | None = None  # seconds; None: until stopped (a route) or the log's end
    faults: tuple[Fault, ...] = ()
    seed: int = 0  # for garbage bytes

    def __post_init__(self) -> None:
        if (self.route is None) == (self.log is None):
            raise ValueError("a scenario has either a route or a log")
        if not 0 < self.rate_hz <= 100:
            raise ValueError(f"rate_hz must be in (0, 100], not {self.rate_hz}")
        if len(self.talker) != 2 or not (self.talker.isascii() and self.talker.isalpha() and self.talker.isupper()):
            raise ValueError(f"talker must be two capital letters, not {self.talker!r}")
        if self.log is not None and any(isinstance(f, _ROUTE_ONLY) for f in self.faults):
            raise ValueError("tunnel, cold-start and time-jump faults need a route, not a log")


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """The [gnss] table of a scenario file (other tables belong to other simulators)."""
    path = Path(path)
    with path.open("rb") as f:
        table = tomllib.load(f).get("gnss")
    if not isinstance(table, dict):
        raise ValueError(f"{path}: no [gnss] table")
    try:
        return _scenario(table, path.parent)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{path}: {error}") from error


def _scenario(table: dict[str, Any], base: Path) -> Scenario:
    known = {"start", "rate_hz", "talker", "duration", "seed", "route", "log", "faults"}
    _no_unknown(table, known, "[gnss]")
    start = table.get("start")
    return Scenario(
        route=_route(table["route"]) if "route" in table else None,
        log=base / table["log"] if "log" in table else None,
        start_utc_ns=None if start is None else _utc_ns(start),
        rate_hz=float(table.get("rate_hz", 1.0)),
        talker=str(table.get("talker", "GN")),
        duration=None if table.get("duration") is None else float(table["duration"]),
        faults=tuple(make_fault(f) for f in table.get("faults", [])),
        seed=int(table.get("seed", 0)),
    )


def _route(table: dict[str, Any]) -> Route:
    _no_unknown(table, {"speed", "loop", "points"}, "[gnss.route]")
    points = []
    for p in table["points"]:
        _no_unknown(p, {"lat", "lon", "speed", "pause"}, "a route point")
        points.append(Waypoint(float(p["lat"]), float(p["lon"]),
                               None if p.get("speed") is None else float(p["speed"]), float(p.get("pause", 0))))
    return Route(tuple(points), float(table.get("speed", 1.4)), bool(table.get("loop", False)))


def make_fault(table: dict[str, Any]) -> Fault:
    """A fault from its scenario-file form, e.g. {"kind": "tunnel", "at": 30, "duration": 20}."""
    kind = table.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"fault kind {kind!r} is not one of {sorted(FAULT_KINDS)}")
    cls = FAULT_KINDS[kind]
    _no_unknown(table, {"kind"} | {f.name for f in fields(cls)}, f"a {kind} fault")
    return cls(**{k: v for k, v in table.items() if k != "kind"})


def _no_unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    unknown = set(table) - known
    if unknown:
        raise ValueError(f"unknown keys in {where}: {sorted(unknown)}")


def _utc_ns(value: object) -> int:
    if not isinstance(value, datetime.datetime) or value.tzinfo is None:
        raise ValueError("start must be a date-time with an offset, e.g. 2025-11-24T09:00:00+08:00")
    delta = value - datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    return (delta.days * 86_400 + delta.seconds) * SECOND_NS + delta.microseconds * 1000


# --- sentences --------------------------------------------------------------------


def nmea(body: str) -> bytes:
    """A sentence with its checksum and line end: nmea("GPGGA,...") -> b"$GPGGA,...*hh\\r\\n"."""
    checksum = reduce(xor, body.encode("ascii"), 0)
    return f"${body}*{checksum:02X}\r\n".encode("ascii")


def _angle(value_e7: int, axis: str, degree_digits: int) -> tuple[str, str]:
    """1e-7 degrees as an NMEA (d)ddmm.mmmmm field and hemisphere (1e-5 minute = 1.85 cm)."""
    degrees, rest = divmod(abs(value_e7), E7)
    minutes_e5 = (rest * 6_000_000 * 2 + E7) // (2 * E7)  # rest * 60 * 1e5 / 1e7, rounded half up
    if minutes_e5 == 6_000_000:
        degrees, minutes_e5 = degrees + 1, 0
    whole, fraction = divmod(minutes_e5, 100_000)
    return f"{degrees:0{degree_digits}d}{whole:02d}.{fraction:05d}", axis[0] if value_e7 >= 0 else axis[1]


def _clock_fields(utc_ns: int) -> tuple[str, str]:
    """hhmmss.ss and ddmmyy of a UTC time."""
    days, tod = divmod(utc_ns, DAY_NS)
    centis = tod // 10_000_000
    hours, rest = divmod(centis, 360_000)
    minutes, rest = divmod(rest, 6_000)
    date = datetime.date.fromordinal(datetime.date(1970, 1, 1).toordinal() + days)
    return f"{hours:02d}{minutes:02d}{rest // 100:02d}.{rest % 100:02d}", date.strftime("%d%m%y")


def _milli(value_milli: int) -> str:
    return f"{value_milli // 1000}.{value_milli % 1000:03d}"


def _epoch_sentences(talker: str, utc_ns: int | None, motion: Motion | None) -> list[bytes]:
    """RMC, GGA and GSA of one epoch. No time: utc_ns None; no fix: motion None."""
    hhmmss, ddmmyy = _clock_fields(utc_ns) if utc_ns is not None else ("", "")
    if motion is None:
        return [nmea(f"{talker}RMC,{hhmmss},V,,,,,,,{ddmmyy},,,N"),
                nmea(f"{talker}GGA,{hhmmss},,,,,0,00,,,M,,M,,"),
                nmea(f"{talker}GSA,A,1,,,,,,,,,,,,,,,")]
    lat, ns = _angle(motion.lat_e7, "NS", 2)
    lon, ew = _angle(motion.lon_e7, "EW", 3)
    knots = _milli(round(motion.speed_mm_s * 1000 / MM_PER_S_PER_KNOT))
    course = f"{motion.course_cdeg // 100}.{motion.course_cdeg % 100:02d}"
    sats = ",".join(_SATELLITES + ("",) * (12 - len(_SATELLITES)))  # GSA has 12 satellite fields
    return [nmea(f"{talker}RMC,{hhmmss},A,{lat},{ns},{lon},{ew},{knots},{course},{ddmmyy},,,A"),
            nmea(f"{talker}GGA,{hhmmss},{lat},{ns},{lon},{ew},1,{len(_SATELLITES):02d},{_HDOP},"
                 f"{_ALTITUDE_M},M,{_GEOID_M},M,,"),
            nmea(f"{talker}GSA,A,3,{sats},{_PDOP},{_HDOP},{_VDOP}")]


Epoch = tuple[int, list[bytes]]  # (ns after the scenario start, bytes to send then)


def route_epochs(scenario: Scenario, start_utc_ns: int) -> Iterator[Epoch]:
    """What a receiver walking the route sends, epoch by epoch, before stream faults."""
    if scenario.route is None:
        raise ValueError("route_epochs needs a scenario with a route")
    period_ns = round(SECOND_NS / scenario.rate_hz)
    for k in count():
        t = k * period_ns
        if scenario.duration is not None and t >= _ns(scenario.duration):
            return
        has_time, has_fix = _receiver_state(scenario.faults, t)
        utc = start_utc_ns + t + _time_offset_ns(scenario.faults, t) if has_time else None
        motion = scenario.route.motion_at(t) if has_fix else None
        yield t, _epoch_sentences(scenario.talker, utc, motion)


def _receiver_state(faults: Sequence[Fault], t_ns: int) -> tuple[bool, bool]:
    """(has time, has a fix) at t_ns."""
    has_time = has_fix = True
    for f in faults:
        if isinstance(f, ColdStart) and _active(f.at, f.no_time + f.no_fix, t_ns):
            has_fix = False
            has_time = has_time and not _active(f.at, f.no_time, t_ns)
        elif isinstance(f, Tunnel) and _active(f.at, f.duration, t_ns):
            has_fix = False
    return has_time, has_fix


def _time_offset_ns(faults: Sequence[Fault], t_ns: int) -> int:
    return sum(_ns(f.step) for f in faults if isinstance(f, TimeJump) and _active(f.at, f.duration, t_ns))


def log_epochs(path: Path, rate_hz: float = 1.0) -> Iterator[Epoch]:
    """A recorded NMEA log grouped into epochs by the time of day of its sentences.

    Lines starting with '#' are comments. A line is sent as it is in the file
    (bad checksums and all), ended with CR LF.
    """
    period_ns = round(SECOND_NS / rate_hz)
    t, group_tod, group = 0, None, []
    for line in path.read_bytes().splitlines():
        if not line.strip() or line.startswith(b"#"):
            continue
        tod = _time_of_day(line)
        if tod is not None and group_tod is not None and tod != group_tod:
            yield t, group
            gap = (tod - group_tod) % DAY_NS
            t, group = t + (gap if 0 < gap <= MAX_REPLAY_GAP_NS else period_ns), []
        if tod is not None:
            group_tod = tod
        group.append(line + b"\r\n")
    if group:
        yield t, group


def _time_of_day(line: bytes) -> int | None:
    """The time of day of an RMC, GGA, GNS or ZDA sentence (the first field of each)."""
    parts = line.strip().split(b",", 2)
    if len(parts) < 3 or len(parts[0]) != 6 or parts[0][3:] not in (b"RMC", b"GGA", b"GNS", b"ZDA"):
        return None
    hhmmss, _, fraction = parts[1].partition(b".")
    if len(hhmmss) != 6 or not hhmmss.isdigit():
        return None
    fraction_ns = int(fraction[:9].ljust(9, b"0")) if fraction.isdigit() else 0
    seconds = int(hhmmss[:2]) * 3600 + int(hhmmss[2:4]) * 60 + int(hhmmss[4:])
    return seconds * SECOND_NS + fraction_ns


def with_stream_faults(epochs: Iterable[Epoch], faults: Sequence[Fault], seed: int = 0) -> Iterator[Epoch]:
    """Byte-level faults (garbage, bad/missing checksums, cut lines) applied to a stream of epochs."""
    rng = random.Random(seed)
    pending = sorted((f for f in faults if not isinstance(f, _ROUTE_ONLY)), key=lambda f: f.at)
    damage: list[Fault] = []  # faults started, with sentences still to damage
    for t, lines in epochs:
        prefix = b""
        while pending and _ns(pending[0].at) <= t:
            fault = pending.pop(0)
            if isinstance(fault, Garbage):
                prefix += rng.randbytes(fault.size)
            else:
                damage.append(fault)
        out, damage = _damage(lines, damage)
        yield t, ([prefix] if prefix else []) + out


def _damage(lines: list[bytes], damage: list[Fault]) -> tuple[list[bytes], list[Fault]]:
    out = []
    for line in lines:
        fault = damage[0] if damage else None
        if isinstance(fault, BadChecksum):
            line = line[:-4] + (b"00" if line[-4:-2] != b"00" else b"FF") + line[-2:]
        elif isinstance(fault, NoChecksum):
            line = line[:-5] + line[-2:]
        elif isinstance(fault, CutLine):
            line = line[: len(line) // 2]  # no line end: it runs into the next sentence
        if isinstance(fault, BadChecksum | NoChecksum | CutLine):
            left = fault.count - 1
            damage = ([replace(fault, count=left)] if left else []) + damage[1:]
        out.append(line)
    return out, damage


# --- the simulated receiver ---------------------------------------------------------


class SimulatedGnss:
    """A GNSS receiver on a pty, sending a scenario's NMEA at the scenario's pace.

    `source` is a `Scenario`, a `Route` (walked with the default scenario
    settings), a scenario file (.toml) or a recorded NMEA log (any other file).
    `faults` are added to the scenario's own. `speed` (x real time) is used when
    no `clock` is given. `link`, when given, is a symlink made to point at the pty,
    like /dev/serial0 points at the UART: a driver opened on it reconnects to
    the next simulator started with the same link.
    """

    def __init__(self, source: Scenario | Route | str | os.PathLike[str], *, speed: float = 1.0,
                 faults: Sequence[Fault] = (), clock: SimClock | None = None,
                 link: str | os.PathLike[str] | None = None) -> None:
        scenario = _as_scenario(source)
        self.scenario = replace(scenario, faults=scenario.faults + tuple(faults))
        self.clock = clock or SimClock(speed)
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: bytes pass as a UART passes them
        os.set_blocking(self._master, False)
        self._link = Path(link) if link is not None else None
        if self._link is not None:
            self._point_link(self._link)
        self.port = str(self._link) if self._link is not None else os.ttyname(self._slave)
        self._stopping = threading.Event()
        self._finished = threading.Event()  # the sender thread ended, one way or another
        self._completed = False  # ... having sent everything
        self._thread: threading.Thread | None = None
        self._closed = False

    def _point_link(self, link: Path) -> None:
        """Replace a previous simulator's link; refuse to replace anything that is not a link."""
        try:
            if link.is_symlink():
                link.unlink()
            link.symlink_to(os.ttyname(self._slave))
        except OSError:
            os.close(self._master)
            os.close(self._slave)
            raise

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        start_utc = self.scenario.start_utc_ns
        if start_utc is None:
            start_utc = time.time_ns() // SECOND_NS * SECOND_NS  # receivers report whole epochs
        self._thread = threading.Thread(target=self._run, args=(self._epochs(start_utc),),
                                        name="gnss-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending and close the pty: a driver reading it sees the port go away."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
        if self._closed:
            return  # closing again could close a descriptor number reused since
        self._closed = True
        if self._link is not None and self._link.is_symlink():
            self._link.unlink()
        os.close(self._master)
        os.close(self._slave)

    def wait(self, timeout: float | None = None) -> bool:
        """True once everything was sent and the driver has read it all (the pty is drained)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._finished.wait(timeout) or not self._completed:
            return False
        # The kernel moves written bytes to the reader's queue in a worker, a moment
        # after write() returns, so one empty look is not enough: the queue must stay
        # empty for DRAIN_POLLS looks in a row. There is no event for "drained".
        empty_looks = 0
        while not self._closed and empty_looks < DRAIN_POLLS:
            if deadline is not None and time.monotonic() > deadline:
                return False
            empty_looks = empty_looks + 1 if self.unread() == 0 else 0
            self._stopping.wait(DRAIN_POLL_S)
        return True

    def unread(self) -> int:
        """Bytes sent that no reader has taken from the pty yet."""
        buffer = bytearray(4)
        fcntl.ioctl(self._slave, termios.FIONREAD, buffer)
        return int.from_bytes(buffer, "little")

    def __enter__(self) -> SimulatedGnss:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _epochs(self, start_utc_ns: int) -> Iterator[Epoch]:
        s = self.scenario
        if s.log is not None:
            epochs = log_epochs(s.log, s.rate_hz)
            if s.duration is not None:
                epochs = (e for e in epochs if e[0] < _ns(s.duration))
        else:
            epochs = route_epochs(s, start_utc_ns)
        return with_stream_faults(epochs, s.faults, s.seed)

    def _run(self, epochs: Iterator[Epoch]) -> None:
        try:
            origin = self.clock.now_ns()
            for offset, chunks in epochs:
                if not self.clock.wait_until(origin + offset, self._stopping):
                    return
                if not self._write(b"".join(chunks)):
                    return
            self._completed = True
        finally:
            self._finished.set()

    def _write(self, data: bytes) -> bool:
        """Send all of `data`, waiting while the pty is full (no reader); False when stopped."""
        view = memoryview(data)
        while view:
            if self._stopping.is_set():
                return False
            try:
                view = view[os.write(self._master, view):]
            except BlockingIOError:
                select.select([], [self._master], [], 0.05)
        return True


def _as_scenario(source: Scenario | Route | str | os.PathLike[str]) -> Scenario:
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Route):
        return Scenario(route=source)
    path = Path(source)
    return load_scenario(path) if path.suffix == ".toml" else Scenario(log=path)
