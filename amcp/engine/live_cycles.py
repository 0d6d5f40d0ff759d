"""Daily cycles from a live minute-bar stream: :class:`LiveBarBatcher`.

In ``mode: live`` the trading plane runs the same daily cycle as a replay, one
:class:`~amcp.domain.data.BarBatch` per exchange session, but the batches come from the live
feed's minute bars instead of a :class:`~amcp.data.bars.BarPanel`. The batcher aggregates each
symbol's regular-hours minute bars of a session into one daily bar::

    open = open of the earliest minute bar      high = max(high)      low = min(low)
    close = close of the latest minute bar      volume = Σ volume

and emits the session's batch once the session has closed by the exchange calendar: when a bar
stamped at or after the close arrives (any symbol, after-hours bars included), or, if a grace
period is set, when the clock passes ``close + grace``. Early closes (half days) close the
session at their real close.

The batch matches the panel's convention exactly, so strategies cannot tell a live batch from a
replayed one: ``ts_ns`` is 16:00 America/New_York of the session date in UTC nanoseconds (the
panel's nominal close, early closes included, see :func:`amcp.data.bars.session_close_ns`),
``symbols`` in the run's order, NaN in every array for a symbol with no bar that session.

Minute bars are stamped at their start (Alpaca's convention): a bar belongs to the session whose
open ``<=`` ts ``<`` close. Bars outside regular hours close sessions but are not aggregated. A bar
for a session already emitted is *late*: counted and logged, never re-emitted. A second bar for
the same symbol and minute is a *duplicate*: the first one counts. A session in which no symbol
had a bar is skipped (counted and logged), as a panel has no row for it.

:func:`warm_up` feeds the history (``data:``) to the strategies before the first live session.

Pure: no clock reads, no I/O; time comes in as arguments (UTC nanoseconds).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
import numpy as np

from amcp.data.bars import session_close_ns
from amcp.data.calendar import TradingCalendar, midnight_ns
from amcp.domain.data import Bar, BarBatch
from amcp.engine.invoker import Invoker
from amcp.errors import DataError

log = logging.getLogger(__name__)

_CALENDAR_HORIZON = timedelta(days=3 * 366)
"""Sessions precomputed from the first one (the calendar library clips to about a year ahead)."""


def warm_up(strategies: Sequence[Any], invoker: Invoker, batches: Iterable[BarBatch]) -> int:
    """Feed history to the strategy groups, bars only, so they start live with a full history.

    Each group's ``on_bars`` sees every batch in order, exactly as in a replay from the same
    start, and its intents are dropped: nothing is sized, checked, journaled or sent, and the
    broker, risk and portfolio never see the history. A strategy's own view of what it holds
    is therefore the one it would have had running since the history's start (momentum and
    mean reversion keep the targets they emitted; ``ma_cross`` tracks fills, so it starts flat,
    like the account). All calls go out at once (``invoker.gather``): one round of waiting.

    Returns:
        How many batches were fed.
    """
    history = list(batches)
    invoker.gather([(group, "on_bars", (batch,)) for batch in history for group in strategies])
    return len(history)


def next_session(calendar: TradingCalendar, day: date) -> date:
    """The first exchange session strictly after ``day``.

    Raises:
        DataError: if the calendar has no session in the 30 days after ``day`` (outside its range).
    """
    sessions = calendar.sessions(day + timedelta(days=1), day + timedelta(days=30))
    if sessions.size == 0:
        raise DataError(f"{calendar.exchange} calendar has no session in the 30 days after {day}")
    return date.fromisoformat(str(sessions[0]))


@dataclass(slots=True)
class _SessionBars:
    """One session's aggregation so far: per-symbol OHLCV and the minutes already counted."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    first_ts: np.ndarray  # per symbol, ts of the bar that set ``open`` (int64 max: none yet)
    last_ts: np.ndarray  # per symbol, ts of the bar that set ``close`` (int64 min: none yet)
    seen: set[tuple[int, int]] = field(default_factory=set)  # (symbol column, minute ts)

    @classmethod
    def empty(cls, n: int) -> _SessionBars:
        nan = np.full(n, np.nan)
        return cls(nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy(),
                   np.full(n, np.iinfo(np.int64).max), np.full(n, np.iinfo(np.int64).min))

    def add(self, column: int, bar: Bar) -> None:
        if bar.ts_ns < self.first_ts[column]:
            self.first_ts[column] = bar.ts_ns
            self.open[column] = bar.open
        if bar.ts_ns > self.last_ts[column]:
            self.last_ts[column] = bar.ts_ns
            self.close[column] = bar.close
        self.high[column] = np.fmax(self.high[column], bar.high)
        self.low[column] = np.fmin(self.low[column], bar.low)
        volume = self.volume[column]
        self.volume[column] = bar.volume if np.isnan(volume) else volume + bar.volume


class LiveBarBatcher:
    """Turns a stream of minute :class:`Bar` events into one daily :class:`BarBatch` per session.

    Args:
        symbols: the run's symbols, in the order of every batch; bars of other symbols are ignored.
        first_session: the first session to emit (the one after the warm-up history); bars of
            earlier sessions are late.
        calendar: the exchange calendar (``XNYS`` if None).
        close_grace_ns: with :meth:`on_clock`, a session is emitted once the clock reaches its
            close plus this many nanoseconds; None: only a bar at or after the close emits it.

    Raises:
        DataError: if ``symbols`` is empty or repeats one, ``first_session`` is not a session
            of the calendar, or ``close_grace_ns`` is negative.
    """

    def __init__(self, symbols: tuple[str, ...], first_session: date, calendar: TradingCalendar | None = None,
                 close_grace_ns: int | None = None) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise DataError(f"LiveBarBatcher: symbols must be non-empty and unique, got {symbols!r}")
        if close_grace_ns is not None and close_grace_ns < 0:
            raise DataError(f"LiveBarBatcher: close_grace_ns must be >= 0 or None, got {close_grace_ns}")
        self.calendar = calendar if calendar is not None else TradingCalendar()
        if not self.calendar.is_session(first_session):
            raise DataError(
                f"LiveBarBatcher: first_session {first_session} is not a {self.calendar.exchange} session")
        self.symbols = symbols
        self.close_grace_ns = close_grace_ns
        self._column = {symbol: i for i, symbol in enumerate(symbols)}
        horizon = first_session + _CALENDAR_HORIZON
        self._days = self.calendar.sessions(first_session, horizon)
        self._opens, self._closes = self.calendar.opens_closes_ns(first_session, horizon)
        self._batch_ts = session_close_ns(self._days.astype(np.int64))  # the panel's 16:00 New York stamps
        self._first_day_ns = int(midnight_ns(self._days[:1])[0])  # earlier bars belong to earlier sessions
        self._next = 0  # index into the sessions of the next session to emit
        self._sessions: dict[int, _SessionBars] = {}  # session index -> its bars so far
        self._counts: dict[str, int] = dict.fromkeys(
            ("bars", "late_bars", "duplicate_bars", "extended_hours_bars", "unknown_symbol_bars",
             "sessions_emitted", "empty_sessions"), 0)

    # ------------------------------------------------------------------ views
    @property
    def next_session(self) -> date:
        """The session the next emitted batch (or skip) will be for."""
        return date.fromisoformat(str(self._days[self._next]))

    @property
    def next_close_ns(self) -> int:
        """UTC nanoseconds of the real close (early closes included) of :attr:`next_session`."""
        return int(self._closes[self._next])

    def stats(self) -> dict[str, int]:
        """Counters: ``bars`` (aggregated), ``late_bars``, ``duplicate_bars``, ``extended_hours_bars``,
        ``unknown_symbol_bars``, ``sessions_emitted``, ``empty_sessions`` (skipped)."""
        return dict(self._counts)

    # ------------------------------------------------------------------ input
    def on_bar(self, bar: Bar) -> list[BarBatch]:
        """Take one minute bar; return the batches of the sessions it shows to be closed (oldest first)."""
        emitted = self._emit_until(bar.ts_ns)
        column = self._column.get(bar.symbol)
        if column is None:
            self._counts["unknown_symbol_bars"] += 1
            return emitted
        index = int(np.searchsorted(self._closes, bar.ts_ns, side="right"))  # first session closing after ts
        if index >= len(self._days) or bar.ts_ns < self._opens[index]:
            if bar.ts_ns < self._first_day_ns:
                self._late(bar, "before the first live session")
            else:
                self._counts["extended_hours_bars"] += 1
            return emitted
        if index < self._next:
            self._late(bar, f"for session {self._days[index]}, already emitted")
            return emitted
        session = self._sessions.setdefault(index, _SessionBars.empty(len(self.symbols)))
        key = (column, bar.ts_ns)
        if key in session.seen:
            self._counts["duplicate_bars"] += 1
            return emitted
        session.seen.add(key)
        session.add(column, bar)
        self._counts["bars"] += 1
        return emitted

    def on_clock(self, now_ns: int) -> list[BarBatch]:
        """Return the batches of sessions whose close plus the grace period is at or before ``now_ns``
        (none without a grace period)."""
        if self.close_grace_ns is None:
            return []
        return self._emit_until(now_ns - self.close_grace_ns)

    # ------------------------------------------------------------------ output
    def _emit_until(self, ts_ns: int) -> list[BarBatch]:
        """Emit (or skip, if empty) every pending session whose close is at or before ``ts_ns``."""
        batches: list[BarBatch] = []
        while self._next < len(self._days) and self._closes[self._next] <= ts_ns:
            index = self._next
            self._next += 1
            session = self._sessions.pop(index, None)
            day = self._days[index]
            if session is None:
                self._counts["empty_sessions"] += 1
                log.warning("live bars: session %s closed without a bar for any of %d symbols; no cycle",
                            day, len(self.symbols))
                continue
            batches.append(BarBatch(int(self._batch_ts[index]), self.symbols, session.open, session.high,
                                    session.low, session.close, session.volume))
            self._counts["sessions_emitted"] += 1
        return batches

    def _late(self, bar: Bar, why: str) -> None:
        self._counts["late_bars"] += 1
        log.warning("live bars: late %s bar at %d (%s) dropped", bar.symbol, bar.ts_ns, why)

    def __repr__(self) -> str:
        return f"LiveBarBatcher({len(self.symbols)} symbols, next session {self.next_session})"

