"""The RTC's date-time tuples and UTC milliseconds since 1970, converted by integer arithmetic.

`machine.RTC().datetime()` is (year, month, day, weekday, hours, minutes, seconds, subseconds)
with weekday 0 = Monday. The conversion is written out rather than taken from `time`, because
MicroPython ports disagree on the epoch (1970 or 2000) and on `time.mktime`'s argument. The RTC
counts whole seconds, so a time read back has second resolution.
"""

# The range RTC_SET accepts: a time outside it comes from a bug on the main board, not a clock.
MIN_UTC_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_UTC_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z (exclusive)

_DAY_MS = 86_400_000


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def civil_from_days(days: int) -> tuple:
    """(year, month, day) of a count of days since 1970-01-01."""
    days += 719_468
    era = days // 146_097
    doe = days - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + (3 if mp < 10 else -9)
    return (yoe + era * 400 + (1 if month <= 2 else 0), month, day)


def to_datetime(utc_ms: int) -> tuple:
    """The RTC tuple for a UTC time (milliseconds are dropped: the RTC keeps whole seconds)."""
    days, ms = divmod(utc_ms, _DAY_MS)
    year, month, day = civil_from_days(days)
    seconds = ms // 1000
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday
    return (year, month, day, weekday, seconds // 3600, seconds // 60 % 60, seconds % 60, 0)


def from_datetime(dt: tuple) -> int:
    """UTC milliseconds of an RTC tuple (weekday and subseconds are ignored)."""
    days = days_from_civil(dt[0], dt[1], dt[2])
    return ((days * 24 + dt[4]) * 60 + dt[5]) * 60_000 + dt[6] * 1000
