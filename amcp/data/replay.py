"""Replays of stored market data as feeds.

* :class:`ReplayFeed` serves a :class:`~amcp.data.bars.BarPanel`'s bar batches by cycle index,
  in chunks (what the MarketData actor serves the trading plane in paper mode).
* :class:`StoreReplayFeed` turns stored bar rows (``BAR_SCHEMA``) into :class:`Bar` events in
  time order, paced like the live feed would deliver them, with the same ``drain`` interface
  as :class:`~amcp.data.live.AlpacaLiveFeed`, so a consumer can run on either.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from amcp._typing import FloatArray, IntArray
from amcp.data.bars import BarPanel
from amcp.domain.data import Bar, BarBatch
from amcp.errors import DataError

_NS_PER_S = 1_000_000_000
_REQUIRED_COLUMNS = ("symbol", "ts", "open", "high", "low", "close", "volume")


class ReplayFeed:
    """Serves a panel's bar batches by cycle index, in chunks (one actor hop per chunk)."""

    def __init__(self, panel: BarPanel) -> None:
        self.panel = panel

    def length(self) -> int:
        return len(self.panel)

    def symbols(self) -> tuple[str, ...]:
        return self.panel.symbols

    def batches(self, start: int, stop: int) -> list[BarBatch]:
        stop = min(stop, len(self.panel))
        return [self.panel.batch(i) for i in range(max(start, 0), stop)]


class StoreReplayFeed:
    """Stored bars replayed as :class:`Bar` events, in ``(ts, symbol)`` order, at a chosen speed.

    Pacing: the first bar is due when the replay starts; a bar stamped ``d`` seconds after the
    first is due ``d / speed`` seconds of ``clock`` later. ``speed=0`` makes every bar due at
    once (as fast as the consumer drains). Bars sharing a timestamp are due together.

    Args:
        table_or_events: a ``pyarrow.Table`` with at least the ``BAR_SCHEMA`` columns
            ``symbol, ts, open, high, low, close, volume`` (``ts`` a timezone-aware timestamp;
            null prices become NaN), or an iterable of :class:`Bar`.
        speed: replay speed as a multiple of real time; 0 for no pacing.
        clock: seconds, monotonic (injected so tests need not wait).
        sleep: blocks for the given seconds (used only by ``drain(timeout_s=...)``).

    Raises:
        DataError: if a column is missing or mistyped, a ``ts`` is null, or ``speed`` is
            negative or not finite.
    """

    def __init__(
        self,
        table_or_events: pa.Table | Iterable[Bar],
        *,
        speed: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        is_number = isinstance(speed, (int, float)) and not isinstance(speed, bool)
        if not is_number or not math.isfinite(speed) or speed < 0:
            raise DataError(f"StoreReplayFeed: speed must be a finite number >= 0 (got {speed!r})")
        self._speed = float(speed)
        self._clock = clock
        self._sleep = sleep
        if isinstance(table_or_events, pa.Table):
            columns = _columns_from_table(table_or_events)
        else:
            columns = _columns_from_bars(table_or_events)
        self._symbols: list[str] = columns[0]
        self._ts: IntArray = columns[1]
        self._prices: tuple[FloatArray, ...] = columns[2:]
        # seconds after the start at which each bar is due; all zero when unpaced
        if self._speed > 0 and self._ts.size:
            self._due_s: FloatArray = (self._ts - self._ts[0]).astype(np.float64) / _NS_PER_S / self._speed
        else:
            self._due_s = np.zeros(self._ts.size, dtype=np.float64)
        self._position = 0
        self._started_at: float | None = None
        self._stopped = False

    @classmethod
    def from_store(
        cls,
        store_url: str,
        symbols: Sequence[str] | None,
        start: Any = None,
        end: Any = None,
        *,
        kind: str = "equities/intraday",
        adjustment: str = "raw",
        storage_options: Mapping[str, Any] | None = None,
        speed: float = 0.0,
    ) -> StoreReplayFeed:
        """A replay of the store's bars of ``kind`` for ``symbols`` from ``start`` to ``end``.

        Takes a URL rather than a store so that it can be built where it runs (inside a Ray
        actor: ``LiveMarketDataActor.remote(partial(StoreReplayFeed.from_store, url, ...))``).
        """
        from amcp.data.catalog import MarketDataCatalog
        from amcp.data.store import MarketDataStore

        store = MarketDataStore(store_url, storage_options=storage_options)
        bars = MarketDataCatalog(store).bars(symbols, start, end, kind=kind, adjustment=adjustment)  # type: ignore[arg-type]
        return cls(bars.sort_by([("ts", "ascending"), ("symbol", "ascending")]), speed=speed)

    def __len__(self) -> int:
        return int(self._ts.size)

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """Start the replay clock (idempotent; the first :meth:`drain` starts it if this was not called)."""
        if self._started_at is None:
            self._started_at = self._clock()

    def stop(self) -> None:
        """End the replay: later drains return nothing."""
        self._stopped = True

    @property
    def running(self) -> bool:
        """Started, not stopped, and bars remain."""
        return self._started_at is not None and not self._stopped and self._position < len(self)

    @property
    def exhausted(self) -> bool:
        """Every bar has been drained (or the replay was stopped)."""
        return self._stopped or self._position >= len(self)

    # ----------------------------------------------------------------- consumer side

    def drain(self, max_events: int | None = None, *, timeout_s: float = 0.0) -> list[Bar]:
        """Take the bars that are due, oldest first.

        Args:
            max_events: at most this many; ``None`` for all that are due.
            timeout_s: if none is due, sleep until the next one is (at most this many seconds).

        Returns:
            Due bars in ``(ts, symbol)`` order; empty when none is due or the replay is over.
        """
        if max_events is not None and max_events < 0:
            raise DataError(f"drain: max_events must be >= 0 or None (got {max_events})")
        if self.exhausted:
            return []
        self.start()
        due = self._due_count()
        if due == self._position and timeout_s > 0:
            wait_s = self._due_s[self._position] - self._elapsed_s()
            self._sleep(max(0.0, min(wait_s, timeout_s)))
            due = self._due_count()
        stop = due if max_events is None else min(due, self._position + max_events)
        bars = [self._bar(index) for index in range(self._position, stop)]
        self._position = stop
        return bars

    def stats(self) -> dict[str, Any]:
        """``bars`` (emitted), ``remaining``, ``speed``, ``running``."""
        return {
            "bars": self._position,
            "remaining": len(self) - self._position,
            "speed": self._speed,
            "running": self.running,
        }

    # ----------------------------------------------------------------- internals

    def _elapsed_s(self) -> float:
        """Seconds of ``clock`` since :meth:`start` (0 before it)."""
        return 0.0 if self._started_at is None else self._clock() - self._started_at

    def _due_count(self) -> int:
        """Index one past the last bar due now."""
        if self._speed == 0:
            return len(self)
        return int(np.searchsorted(self._due_s, self._elapsed_s(), side="right"))

    def _bar(self, index: int) -> Bar:
        open_, high, low, close, volume = (float(column[index]) for column in self._prices)
        return Bar(self._symbols[index], int(self._ts[index]), open_, high, low, close, volume)


def _columns_from_table(table: pa.Table) -> tuple[Any, ...]:
    missing = [name for name in _REQUIRED_COLUMNS if name not in table.column_names]
    if missing:
        raise DataError(f"StoreReplayFeed: table lacks bar columns {missing} (has {table.column_names})")
    ts_type = table.schema.field("ts").type
    if not pa.types.is_timestamp(ts_type) or ts_type.tz is None:
        raise DataError(f"StoreReplayFeed: column 'ts' must be a timezone-aware timestamp (got {ts_type})")
    if table.column("ts").null_count:
        raise DataError(f"StoreReplayFeed: column 'ts' has {table.column('ts').null_count} nulls")
    if table.column("symbol").null_count:
        raise DataError(f"StoreReplayFeed: column 'symbol' has {table.column('symbol').null_count} nulls")
    table = table.select(list(_REQUIRED_COLUMNS))
    table = table.take(pc.sort_indices(table, sort_keys=[("ts", "ascending"), ("symbol", "ascending")]))
    try:
        ts = table.column("ts").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
        prices = tuple(
            table.column(name).cast(pa.float64()).to_numpy().astype(np.float64, copy=False)
            for name in ("open", "high", "low", "close", "volume")
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise DataError(
            f"StoreReplayFeed: cannot read bar columns as timestamps and floats ({exc})"
        ) from None
    return (table.column("symbol").to_pylist(), ts.astype(np.int64, copy=False), *prices)


def _columns_from_bars(events: Iterable[Bar]) -> tuple[Any, ...]:
    bars = list(events)
    for bar in bars:
        if not isinstance(bar, Bar):
            raise DataError(f"StoreReplayFeed: expected Bar events (got {type(bar).__name__})")
    bars.sort(key=lambda bar: (bar.ts_ns, bar.symbol))
    ts = np.fromiter((bar.ts_ns for bar in bars), dtype=np.int64, count=len(bars))
    prices = tuple(
        np.fromiter((getattr(bar, name) for bar in bars), dtype=np.float64, count=len(bars))
        for name in ("open", "high", "low", "close", "volume")
    )
    return ([bar.symbol for bar in bars], ts, *prices)
