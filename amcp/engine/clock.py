"""Exchange-time helpers at the edge: UTC nanoseconds inside, New York sessions outside."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


def session_date(ts_ns: int) -> date:
    """Return the New York calendar date of a UTC nanosecond timestamp."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz=NEW_YORK).date()


def iso_utc(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).isoformat().replace("+00:00", "Z")
