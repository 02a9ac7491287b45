"""The real GNSS driver: NMEA 0183 from a receiver on a UART, assembled into integer fixes.

`NmeaAssembler` is the whole protocol logic (bytes in, `Fix`es out) with no I/O,
threads or clock, so it is tested line by line and fuzzed; `SerialGnss` adds the
port (pyserial), a reader thread, reconnection and a bounded history.

A receiver reports one navigation epoch as a burst of sentences that share a
time of day: RMC (date, time, status, position, speed, course), GGA (fix quality,
satellites, HDOP) and, depending on the make, GSA, VTG, GSV, ZDA, GLL, GNS or
proprietary ones, in an order that differs between makes (u-blox sends RMC
first, SiRF and Quectel GGA first). Sentences are therefore grouped by their
time of day rather than by position in the stream.

pyserial and pynmea2 are imported inside the classes so `hardware` imports on a
machine that has neither.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from hardware.gnss import Fix, GnssStats

log = logging.getLogger(__name__)

SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS
E7 = 10_000_000

# NMEA 0183 caps a sentence at 82 characters; proprietary ones run longer, so
# allow some room, but never let a line without a terminator grow without bound.
MAX_LINE = 256

# Serial latency and the receiver's own output jitter are well under a second;
# a UTC step larger than this, unexplained by the monotonic clock, is a jump.
DEFAULT_JUMP_TOLERANCE_NS = 2 * SECOND_NS

# Talkers of satellite systems: GPS, any combination, GLONASS, Galileo, BeiDou
# (BD per the Chinese BDS specification, GB per NMEA 4.11), QZSS, NavIC.
GNSS_TALKERS = frozenset({"GP", "GN", "GL", "GA", "BD", "GB", "GQ", "GI"})

# RMC mode indicator (NMEA 2.3+) to the GGA quality it corresponds to, for
# epochs that carry no GGA.
_MODE_QUALITY = {"N": 0, "A": 1, "D": 2, "P": 3, "R": 4, "F": 5, "E": 6, "M": 7, "S": 8}

_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
# re.ASCII: \d must not match other scripts' digits (int() would accept them).
_DECIMAL = re.compile(r"(\d{1,12})(?:\.(\d{0,10}))?", re.ASCII)
_ANGLE = re.compile(r"(\d{1,3})(\d{2})(?:\.(\d{0,10}))?", re.ASCII)
_TIME = re.compile(r"(\d{2})(\d{2})(\d{2})(?:\.(\d{0,9}))?", re.ASCII)
_DATE = re.compile(r"(\d{2})(\d{2})(\d{2})", re.ASCII)
_SMALL_INT = re.compile(r"\d{1,4}", re.ASCII)


# --- exact field conversions -------------------------------------------------
#
# Positions are converted from the sentence text with integer arithmetic, not
# through pynmea2's float `latitude`: a float of degrees cannot hold 1e-7 degree
# steps exactly, so `round(lat * 1e7)` depends on binary rounding (ties land on
# either side, high-precision receivers lose their last digits), and these
# integers are signed into manifests, where the same sentence must give the same
# number on every machine and library version. Rounding is half away from zero,
# applied to the magnitude, so N/S and E/W give exactly opposite values.


def _round_div(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half up, for numerator >= 0."""
    return (2 * numerator + denominator) // (2 * denominator)


def scaled(text: str, factor: int, divisor: int = 1) -> int | None:
    """An unsigned decimal field times factor / divisor, rounded; None when the field is empty."""
    if not text:
        return None
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise ValueError(f"not an unsigned decimal: {text!r}")
    fraction = match.group(2) or ""
    mantissa = int(match.group(1) + fraction)
    return _round_div(mantissa * factor, divisor * 10 ** len(fraction))


def angle_e7(text: str, hemisphere: str, axis: str) -> int:
    """An NMEA (d)ddmm.mmmm field and its hemisphere letter as 1e-7 degrees.

    `axis` is "NS" for latitude or "EW" for longitude: the first letter is positive.
    """
    match = _ANGLE.fullmatch(text)
    if match is None:
        raise ValueError(f"not an NMEA angle: {text!r}")
    degrees, minutes, fraction = int(match.group(1)), int(match.group(2)), match.group(3) or ""
    if minutes >= 60:
        raise ValueError(f"minutes out of range: {text!r}")
    scale = 10 ** len(fraction)
    minutes_scaled = minutes * scale + int(fraction or "0")
    value = degrees * E7 + _round_div(minutes_scaled * E7, 60 * scale)
    limit = 90 * E7 if axis == "NS" else 180 * E7
    if value > limit:
        raise ValueError(f"angle out of range: {text!r}")
    if hemisphere == axis[0]:
        return value
    if hemisphere == axis[1]:
        return -value
    raise ValueError(f"hemisphere {hemisphere!r} is not one of {axis}")


def time_of_day_ns(text: str) -> int | None:
    """hhmmss(.sss) as nanoseconds since midnight; second 60 (a leap second) is allowed."""
    if not text:
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"not an NMEA time: {text!r}")
    hours, minutes, seconds = (int(g) for g in match.group(1, 2, 3))
    if hours > 23 or minutes > 59 or seconds > 60:
        raise ValueError(f"time out of range: {text!r}")
    fraction = match.group(4) or ""
    fraction_ns = int(fraction or "0") * 10 ** (9 - len(fraction))
    return ((hours * 60 + minutes) * 60 + seconds) * SECOND_NS + fraction_ns


def date_days(text: str) -> int | None:
    """ddmmyy as days since 1970-01-01; two-digit years are read as 1980-2079."""
    if not text:
        return None
    match = _DATE.fullmatch(text)
    if match is None:
        raise ValueError(f"not an NMEA date: {text!r}")
    day, month, year = (int(g) for g in match.group(1, 2, 3))
    year += 2000 if year < 80 else 1900
    return datetime.date(year, month, day).toordinal() - _EPOCH_ORDINAL


def _int_field(text: str, upper: int) -> int:
    """A small unsigned integer field, 0 when empty."""
    if not text:
        return 0
    if not _SMALL_INT.fullmatch(text) or int(text) > upper:
        raise ValueError(f"not an integer in 0..{upper}: {text!r}")
    return int(text)


def _position(fields: dict[str, str]) -> tuple[int, int] | None:
    if not fields["lat"] or not fields["lon"]:
        return None
    return (angle_e7(fields["lat"], fields["lat_dir"], "NS"),
            angle_e7(fields["lon"], fields["lon_dir"], "EW"))


# --- sentences ------------------------------------------------------------------


@dataclass(frozen=True)
class _Rmc:
    time_ns: int | None
    days: int | None
    active: bool
    quality: int  # from the mode indicator
    position: tuple[int, int] | None
    speed_mm_s: int | None
    course_cdeg: int | None


@dataclass(frozen=True)
class _Gga:
    time_ns: int | None
    quality: int
    satellites: int
    hdop_c: int | None
    position: tuple[int, int] | None


@dataclass(frozen=True)
class _Gsa:
    hdop_c: int | None


@dataclass(frozen=True)
class _Vtg:
    speed_mm_s: int | None
    course_cdeg: int | None


def _course(text: str) -> int | None:
    course = scaled(text, 100)
    if course is not None and course > 36_000:
        raise ValueError(f"course out of range: {text!r}")
    return None if course is None else course % 36_000


def _hdop(text: str) -> int | None:
    hdop = scaled(text, 100)
    if hdop is not None and hdop > 99_999:
        raise ValueError(f"HDOP out of range: {text!r}")
    return hdop


def _read_rmc(f: dict[str, str]) -> _Rmc:
    if f["status"] not in ("A", "V", ""):
        raise ValueError(f"RMC status {f['status']!r}")
    active = f["status"] == "A"
    mode = f["mode_indicator"][:1]
    if mode and mode not in _MODE_QUALITY:
        raise ValueError(f"RMC mode {mode!r}")
    quality = _MODE_QUALITY[mode] if mode else int(active)
    return _Rmc(time_of_day_ns(f["timestamp"]), date_days(f["datestamp"]), active, quality,
                _position(f), scaled(f["spd_over_grnd"], 1_852_000, 3600),  # knots: 1852 m/h
                _course(f["true_course"]))


def _read_gga(f: dict[str, str]) -> _Gga:
    return _Gga(time_of_day_ns(f["timestamp"]), _int_field(f["gps_qual"], 9),
                _int_field(f["num_sats"], 999), _hdop(f["horizontal_dil"]), _position(f))


def _read_gsa(f: dict[str, str]) -> _Gsa:
    return _Gsa(_hdop(f["hdop"]))


def _read_vtg(f: dict[str, str]) -> _Vtg | None:
    # NMEA before 2.3 had no unit letters in VTG and a different layout: skip it.
    if f["true_track_sym"] != "T":
        return None
    speed = scaled(f["spd_over_grnd_kts"], 1_852_000, 3600)
    if speed is None:
        speed = scaled(f["spd_over_grnd_kmph"], 1_000_000, 3600)
    return _Vtg(speed, _course(f["true_track"]))


_READERS: dict[str, Callable[[dict[str, str]], Any]] = {
    "RMC": _read_rmc, "GGA": _read_gga, "GSA": _read_gsa, "VTG": _read_vtg,
}


def _fields(msg: Any) -> dict[str, str]:
    """A sentence's fields by pynmea2 name, as text; fields a receiver left out are empty."""
    data = msg.data
    return {name: (data[i].strip() if i < len(data) else "") for name, i in msg.name_to_idx.items()}


# --- epochs -----------------------------------------------------------------------


@dataclass
class _Epoch:
    time_ns: int | None  # time of day shared by the epoch's sentences
    mono_ns: int  # arrival of its first sentence: closest to the receiver's epoch
    rmc: _Rmc | None = None
    gga: _Gga | None = None
    gsa: _Gsa | None = None
    vtg: _Vtg | None = None
    emitted: bool = False

    def complete(self) -> bool:
        return self.rmc is not None and self.gga is not None

    def holds(self, sentence: _Rmc | _Gga) -> bool:
        return (self.rmc if isinstance(sentence, _Rmc) else self.gga) is not None

    def add(self, sentence: _Rmc | _Gga) -> None:
        if isinstance(sentence, _Rmc):
            self.rmc = sentence
        else:
            self.gga = sentence


def _first(*values: int | None) -> int:
    return next((v for v in values if v is not None), 0)


def _utc_ns(rmc: _Rmc | None) -> int | None:
    if rmc is None or rmc.days is None or rmc.time_ns is None:
        return None
    return rmc.days * DAY_NS + rmc.time_ns


def _build_fix(e: _Epoch) -> Fix:
    rmc, gga, gsa, vtg = e.rmc, e.gga, e.gsa, e.vtg
    utc_ns = _utc_ns(rmc)
    quality = gga.quality if gga else rmc.quality if rmc else 0
    hdop_c = _first(gga.hdop_c if gga else None, gsa.hdop_c if gsa else None)
    satellites = gga.satellites if gga else 0
    position = (rmc.position if rmc else None) or (gga.position if gga else None)
    if rmc is None or not rmc.active or quality == 0 or utc_ns is None or position is None:
        return Fix(utc_ns, e.mono_ns, False, 0, 0, quality, hdop_c, satellites)
    return Fix(utc_ns, e.mono_ns, True, position[0], position[1], quality, hdop_c, satellites,
               _first(rmc.speed_mm_s, vtg.speed_mm_s if vtg else None),
               _first(rmc.course_cdeg, vtg.course_cdeg if vtg else None))


class NmeaAssembler:
    """Receiver bytes in, one `Fix` per navigation epoch out. Never raises on input.

    A fix is emitted as soon as its epoch has both RMC and GGA; an epoch that
    lacks one of them is emitted when the next epoch starts or on `flush()`.
    GSA and VTG fill in HDOP, speed and course that RMC/GGA left empty, when
    they arrive before the epoch is emitted.
    """

    def __init__(self, jump_tolerance_ns: int = DEFAULT_JUMP_TOLERANCE_NS) -> None:
        import pynmea2  # lazy: see the module docstring

        self._parse = pynmea2.parse
        self._checksum_error = pynmea2.ChecksumError
        self.jump_tolerance_ns = jump_tolerance_ns
        self.stats = GnssStats()
        self._buffer = bytearray()
        self._skipping = False  # inside an overlong line, until its terminator
        self._epoch: _Epoch | None = None
        self._last_timed: Fix | None = None

    def feed(self, data: bytes, mono_ns: int) -> list[Fix]:
        """Bytes as they came from the port, read at `mono_ns`; the fixes they completed."""
        fixes = []
        for line in self._split(data):
            fix = self.line(line, mono_ns)
            if fix is not None:
                fixes.append(fix)
        return fixes

    def line(self, raw: bytes, mono_ns: int) -> Fix | None:
        """One line without its terminator; the fix it completed, if any."""
        raw = raw.strip()
        if not raw:
            return None
        # A cut line or line noise can run into the next sentence: resynchronise
        # on the last '$' (NMEA reserves it for a sentence start) and count the rest.
        start = raw.rfind(b"$")
        if start != 0:
            self.stats.parse_errors += 1
            if start < 0:
                return None
        try:
            text = raw[start:].decode("ascii")
        except UnicodeDecodeError:
            self.stats.parse_errors += 1
            return None
        return self._sentence(text, mono_ns)

    def flush(self) -> Fix | None:
        """End of the stream (stop or a lost port): emit the epoch still being assembled."""
        epoch, self._epoch = self._epoch, None
        if epoch is None or epoch.emitted:
            return None
        return self._emit(epoch)

    def drop_partial_line(self) -> None:
        """The port went away mid-line: what was read of that line is garbage."""
        if self._buffer:
            self.stats.parse_errors += 1
        self._buffer.clear()
        self._skipping = False

    def _split(self, data: bytes) -> list[bytes]:
        # Receivers end lines with CR LF; accept either alone as well.
        chunks = data.replace(b"\r", b"\n").split(b"\n")
        lines = []
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            if not self._skipping:
                self._buffer += chunk
            if last:
                break
            if not self._skipping and self._buffer:
                lines.append(bytes(self._buffer))
            self._buffer.clear()
            self._skipping = False
        if len(self._buffer) > MAX_LINE:
            self.stats.parse_errors += 1
            self._buffer.clear()
            self._skipping = True
        return lines

    def _sentence(self, text: str, mono_ns: int) -> Fix | None:
        try:
            msg = self._parse(text, check=True)
        except self._checksum_error:  # also raised for a missing checksum, with check=True
            self.stats.checksum_errors += 1
            return None
        except Exception:  # pynmea2 raises more than ParseError on odd input; none may stop the reader
            self.stats.parse_errors += 1
            return None
        reader = _READERS.get(getattr(msg, "sentence_type", ""))
        if reader is None or getattr(msg, "talker", None) not in GNSS_TALKERS:
            self.stats.sentences += 1
            return None
        try:
            sentence = reader(_fields(msg))
        except (ValueError, KeyError):
            self.stats.parse_errors += 1
            return None
        self.stats.sentences += 1
        return self._add(sentence, mono_ns)

    def _add(self, sentence: _Rmc | _Gga | _Gsa | _Vtg | None, mono_ns: int) -> Fix | None:
        if sentence is None:
            return None
        epoch = self._epoch
        if isinstance(sentence, _Gsa | _Vtg):
            # Untimed: they belong to the epoch under way; once it is emitted they are late.
            if epoch is not None and not epoch.emitted:
                if isinstance(sentence, _Gsa):
                    epoch.gsa = epoch.gsa or sentence
                else:
                    epoch.vtg = epoch.vtg or sentence
            return None
        same_time = epoch is not None and epoch.time_ns == sentence.time_ns
        if epoch is not None and same_time and not epoch.emitted and not epoch.holds(sentence):
            epoch.add(sentence)
            return self._emit(epoch) if epoch.complete() else None
        if epoch is not None and same_time and sentence.time_ns is not None:
            return None  # the same epoch again (e.g. GPRMC beside GNRMC): keep the first
        flushed = self.flush()
        self._epoch = _Epoch(sentence.time_ns, mono_ns)
        self._epoch.add(sentence)
        return flushed

    def _emit(self, epoch: _Epoch) -> Fix:
        epoch.emitted = True
        fix = _build_fix(epoch)
        if fix.utc_ns is not None:
            if self._jumped(fix):
                fix = replace(fix, time_jump=True)
                self.stats.time_jumps += 1
            self._last_timed = fix
        self.stats.fixes += 1
        return fix

    def _jumped(self, fix: Fix) -> bool:
        previous = self._last_timed
        if previous is None or previous.utc_ns is None or fix.utc_ns is None:
            return False
        unexplained = (fix.utc_ns - previous.utc_ns) - (fix.mono_ns - previous.mono_ns)
        return abs(unexplained) > self.jump_tolerance_ns


# --- the driver -------------------------------------------------------------------

READ_TIMEOUT_S = 0.1  # how long a read blocks: bounds how long stop() waits


class SerialGnss:
    """A GNSS receiver on a serial port (`GnssReceiver`).

    `url` is anything `serial.serial_for_url` opens: "/dev/serial0" on a
    Raspberry Pi, a pty path from the simulator, "loop://". `clock` gives the
    monotonic nanoseconds that stamp each arrival (injected so tests need no
    sleeps). `on_fix` is called from the reader thread for every fix.
    """

    def __init__(self, url: str = "/dev/serial0", baudrate: int = 9600, *,
                 clock: Callable[[], int] = time.monotonic_ns, history: int = 3600,
                 jump_tolerance_ns: int = DEFAULT_JUMP_TOLERANCE_NS, reconnect_delay_s: float = 1.0,
                 on_fix: Callable[[Fix], None] | None = None) -> None:
        self.url = url
        self.baudrate = baudrate
        self._clock = clock
        self._reconnect_delay_s = reconnect_delay_s
        self._on_fix = on_fix
        self._assembler = NmeaAssembler(jump_tolerance_ns)
        self._history: deque[Fix] = deque(maxlen=history)
        self._latest: Fix | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._port: Any = None
        self._ever_opened = False
        self._port_failing = False

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._stopping.clear()
        # Open in the caller when possible, so nothing the receiver sends after
        # start() returns is lost to an open still pending in the thread.
        self._port = self._open()
        self._thread = threading.Thread(target=self._run, name="gnss-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stopping.set()
        thread.join()
        with self._lock:
            fixes = self._flush()
        self._notify(fixes)

    @property
    def connected(self) -> bool:
        """The port is open (the receiver may still be silent)."""
        return self._port is not None

    def latest(self) -> Fix | None:
        with self._lock:
            return self._latest

    def track_since(self, mono_ns: int) -> list[Fix]:
        with self._lock:
            newer = []
            for fix in reversed(self._history):
                if fix.mono_ns < mono_ns:
                    break
                newer.append(fix)
        newer.reverse()
        return newer

    def stats(self) -> GnssStats:
        with self._lock:
            return replace(self._assembler.stats)

    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._port is None:
                self._port = self._open()
                if self._port is None:
                    self._stopping.wait(self._reconnect_delay_s)
                continue
            try:
                data = self._port.read(max(1, self._port.in_waiting))
            except OSError as error:  # pyserial's SerialException is an OSError
                self._lost(error)
                continue
            if data:
                self._feed(data, self._clock())
        self._close()

    def _open(self) -> Any:
        import serial  # lazy: see the module docstring

        try:
            port = serial.serial_for_url(self.url, self.baudrate, timeout=READ_TIMEOUT_S)
        except (OSError, ValueError) as error:
            if not self._port_failing:
                log.warning("gnss port unavailable url=%s error=%s", self.url, error)
            self._port_failing = True
            return None
        with self._lock:
            if self._ever_opened:
                self._assembler.stats.reconnects += 1
            self._ever_opened = True
        if self._port_failing:
            log.info("gnss port open again url=%s", self.url)
        self._port_failing = False
        return port

    def _lost(self, error: OSError) -> None:
        log.warning("gnss port lost url=%s error=%s", self.url, error)
        self._port_failing = True
        self._close()
        with self._lock:
            self._assembler.drop_partial_line()
            fixes = self._flush()
        self._notify(fixes)
        self._stopping.wait(self._reconnect_delay_s)

    def _close(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            with contextlib.suppress(OSError):  # already gone: nothing more to release
                port.close()

    def _feed(self, data: bytes, mono_ns: int) -> None:
        with self._lock:
            fixes = self._assembler.feed(data, mono_ns)
            for fix in fixes:
                self._publish(fix)
        self._notify(fixes)

    def _flush(self) -> list[Fix]:
        """Publish the epoch still being assembled; the caller holds the lock."""
        fix = self._assembler.flush()
        if fix is None:
            return []
        self._publish(fix)
        return [fix]

    def _publish(self, fix: Fix) -> None:
        """Record a fix; the caller holds the lock."""
        self._latest = fix
        if fix.valid:
            self._history.append(fix)

    def _notify(self, fixes: list[Fix]) -> None:
        if self._on_fix is None:
            return
        for fix in fixes:
            try:
                self._on_fix(fix)
            except Exception:  # a listener's bug must not stop the receiver
                log.exception("gnss on_fix listener failed")
