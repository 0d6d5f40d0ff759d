"""Exchange-time helpers at the edge: UTC nanoseconds inside, New York sessions outside.

:func:`session_date` reads the tz database. :func:`new_york_date` applies the US daylight-saving
rules in force since 1987 instead; :class:`NewYorkDays` (the simulated venue's clock) and
:class:`SessionDates` (the trading cycle's) apply them in a few integer operations per timestamp,
for the hot path.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


def session_date(ts_ns: int) -> date:
    """Return the New York calendar date of a UTC nanosecond timestamp."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=NEW_YORK).date()


def iso_utc(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class SessionDates:
    """:func:`session_date` for a stream of timestamps (a run's cycles), in a few integer operations.

    A whole-second timestamp from 1987 through 2099 (every bar close) takes its date from
    :class:`NewYorkDays`: over those years the tz database's America/New_York follows exactly the
    rules it applies, and a whole number of seconds turns into the float ``ts_ns / 1e9`` without
    rounding, so the date is the one :func:`session_date` returns. Any other timestamp (or a
    timestamp that is not a plain ``int``) goes to :func:`session_date` itself.
    """

    __slots__ = ("_days",)

    def __init__(self) -> None:
        self._days = NewYorkDays()

    def date_of(self, ts_ns: int) -> date:
        if type(ts_ns) is int and _RULES_START_NS <= ts_ns < _RULES_END_NS and not ts_ns % _NS_PER_SECOND:
            return self._days.date_of(ts_ns)
        return session_date(ts_ns)


def new_york_date(ts_ns: int) -> date:
    """Return the America/New_York calendar date of a UTC timestamp by the US DST rules since 1987."""
    utc = _UNIX_EPOCH + timedelta(microseconds=ts_ns // 1000)
    dst_start, dst_end = _daylight_time(utc.year)
    dst = dst_start <= utc < dst_end
    return (utc - timedelta(hours=4 if dst else 5)).date()


def _daylight_time(year: int) -> tuple[datetime, datetime]:
    """Return the UTC start and end of daylight saving time in New York in ``year`` (naive)."""
    if year >= 2007:  # second Sunday of March to first Sunday of November, 2:00 local
        start, end = _nth_sunday(year, 3, 2), _nth_sunday(year, 11, 1)
    else:  # first Sunday of April to last Sunday of October
        start, end = _nth_sunday(year, 4, 1), _nth_sunday(year, 10, 5)
    return start + timedelta(hours=7), end + timedelta(hours=6)


class NewYorkDays:
    """:func:`new_york_date` for a stream of timestamps, in a few integer operations.

    Remembers the stretch of constant UTC offset (standard or daylight time, within one UTC
    year) that the last timestamp fell in; only a timestamp outside it computes the rules again.
    """

    __slots__ = ("_end_ns", "_offset_ns", "_start_ns")

    def __init__(self) -> None:
        self._start_ns = self._end_ns = self._offset_ns = 0  # an empty stretch

    def date_of(self, ts_ns: int) -> date:
        if not self._start_ns <= ts_ns < self._end_ns:
            self._start_ns, self._end_ns, self._offset_ns = _offset_stretch(ts_ns)
        return date.fromordinal(_UNIX_EPOCH_ORDINAL + (ts_ns - self._offset_ns) // _NS_PER_DAY)


def _offset_stretch(ts_ns: int) -> tuple[int, int, int]:
    """Return ``[start, end)`` in UTC ns around ``ts_ns`` where New York's UTC offset is constant,
    and that offset (ns behind UTC), by the same rules as :func:`new_york_date`."""
    year = (_UNIX_EPOCH + timedelta(microseconds=ts_ns // 1000)).year
    dst_start, dst_end = (_ns_since_epoch(moment) for moment in _daylight_time(year))
    year_start, year_end = _ns_since_epoch(datetime(year, 1, 1)), _ns_since_epoch(datetime(year + 1, 1, 1))
    if ts_ns < dst_start:
        return year_start, dst_start, 5 * _NS_PER_HOUR
    if ts_ns < dst_end:
        return dst_start, dst_end, 4 * _NS_PER_HOUR
    return dst_end, year_end, 5 * _NS_PER_HOUR


def _ns_since_epoch(moment: datetime) -> int:
    return (moment - _UNIX_EPOCH) // _MICROSECOND * 1000


_UNIX_EPOCH = datetime(1970, 1, 1)
_UNIX_EPOCH_ORDINAL = _UNIX_EPOCH.toordinal()
_MICROSECOND = timedelta(microseconds=1)
_NS_PER_HOUR = 3_600 * 10**9
_NS_PER_DAY = 24 * _NS_PER_HOUR


def _nth_sunday(year: int, month: int, n: int) -> datetime:
    """Midnight of the n-th Sunday of a month (n=5 means the last one)."""
    first = datetime(year, month, 1)
    day = first + timedelta(days=(6 - first.weekday()) % 7 + 7 * (n - 1))
    while day.month != month:
        day -= timedelta(days=7)
    return day


_NS_PER_SECOND = 10**9
_RULES_START_NS = _ns_since_epoch(datetime(1987, 1, 1))
_RULES_END_NS = _ns_since_epoch(datetime(2100, 1, 1))
