"""Exchange trading calendars, from the maintained ``exchange_calendars`` library.

Holidays, early closes and historical closures (9/11, Hurricane Sandy, national days of
mourning) come from the library, never from a hand-written list. Sessions are returned as
``datetime64[D]`` arrays; instants are UTC nanoseconds (int64), as everywhere inside amcp.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

import exchange_calendars as xcals
import numpy as np
import pandas as pd

from amcp._typing import IntArray
from amcp.errors import DataError

DEFAULT_EXCHANGE = "XNYS"
CALENDAR_START = "1990-01-01"
"""The library's calendars default to the last 20 years; amcp's history reaches further."""

EXCHANGE_TIMEZONE = "America/New_York"


@lru_cache(maxsize=8)
def _calendar(exchange: str) -> Any:
    try:
        return xcals.get_calendar(exchange, start=CALENDAR_START)
    except xcals.errors.InvalidCalendarName:
        raise DataError(f"unknown exchange calendar {exchange!r}; try 'XNYS' (NYSE) or 'XNAS' (Nasdaq)") from None


class TradingCalendar:
    """One exchange's sessions, opens and closes (``XNYS`` by default)."""

    def __init__(self, exchange: str = DEFAULT_EXCHANGE) -> None:
        self.exchange = exchange
        self._cal = _calendar(exchange)

    def _bounds(self, start: Any, end: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
        first, last = self._cal.first_session, self._cal.last_session
        lo = max(pd.Timestamp(start).normalize().tz_localize(None), first)
        hi = min(pd.Timestamp(end).normalize().tz_localize(None), last)
        return lo, hi

    def sessions(self, start: date | str | pd.Timestamp, end: date | str | pd.Timestamp) -> np.ndarray:
        """Trading sessions from ``start`` to ``end`` inclusive, as ``datetime64[D]``.

        Dates outside the library's range (1990 to about a year ahead) are clipped to it.
        """
        lo, hi = self._bounds(start, end)
        if lo > hi:
            return np.array([], dtype="datetime64[D]")
        return self._cal.sessions_in_range(lo, hi).values.astype("datetime64[D]")

    def is_session(self, day: date | str | pd.Timestamp) -> bool:
        ts = pd.Timestamp(day).normalize().tz_localize(None)
        if not self._cal.first_session <= ts <= self._cal.last_session:
            raise DataError(
                f"{ts.date()} is outside the {self.exchange} calendar "
                f"({self._cal.first_session.date()} to {self._cal.last_session.date()})"
            )
        return bool(self._cal.is_session(ts))

    def opens_closes_ns(self, start: Any, end: Any) -> tuple[IntArray, IntArray]:
        """UTC nanoseconds of each session's open and close (early closes included)."""
        lo, hi = self._bounds(start, end)
        if lo > hi:
            empty = np.array([], dtype=np.int64)
            return empty, empty
        frame = self._cal.schedule.loc[lo:hi]
        return (
            frame["open"].values.astype("datetime64[ns]").astype(np.int64),
            frame["close"].values.astype("datetime64[ns]").astype(np.int64),
        )

    def missing_sessions(self, days: np.ndarray, start: Any = None, end: Any = None) -> np.ndarray:
        """Sessions between ``start`` and ``end`` (default: the first and last of ``days``) that
        ``days`` lacks, as ``datetime64[D]``."""
        days = np.asarray(days).astype("datetime64[D]")
        if days.size == 0 and (start is None or end is None):
            return np.array([], dtype="datetime64[D]")
        lo = start if start is not None else days.min()
        hi = end if end is not None else days.max()
        expected = self.sessions(lo, hi)
        return np.setdiff1d(expected, days)


def midnight_ns(days: np.ndarray) -> IntArray:
    """UTC nanoseconds of 00:00 America/New_York on each ``datetime64[D]`` day: a daily bar's
    ``ts`` in the store (Alpaca's convention)."""
    days = np.asarray(days).astype("datetime64[D]")
    local = pd.DatetimeIndex(days.astype("datetime64[ns]")).tz_localize(EXCHANGE_TIMEZONE)
    return local.tz_convert("UTC").asi8.astype(np.int64)


def day_of_ns(ts_ns: np.ndarray) -> np.ndarray:
    """The America/New_York calendar date of each UTC-nanosecond instant, as ``datetime64[D]``."""
    index = pd.DatetimeIndex(np.asarray(ts_ns, dtype=np.int64).view("datetime64[ns]")).tz_localize("UTC")
    return index.tz_convert(EXCHANGE_TIMEZONE).tz_localize(None).values.astype("datetime64[D]")
