"""Market data events: single bars, quotes and trades, and the cross-sectional ``BarBatch``.

A cycle of the trading plane consumes one ``BarBatch``: every symbol's bar for one timestamp,
as aligned numpy arrays (NaN where a symbol has no bar). Batching keeps the hot path to one
call per component per cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amcp._typing import FloatArray
from amcp.domain._fast_init import unchecked_constructor
from amcp.errors import DataError


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    ts_ns: int
    bid_price: float
    ask_price: float
    bid_size: float
    ask_size: float


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    ts_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class Trade:
    """One print on the tape.

    Attributes:
        symbol: ticker (or OCC option symbol).
        ts_ns: execution time, UTC nanoseconds since the epoch.
        price: price per share (or per option contract unit), in the instrument's currency.
        size: shares (or contracts) traded.
        exchange: the venue's one-letter code as the vendor gives it (e.g. ``"V"`` for IEX).
        trade_id: the venue's trade id, unique per symbol and day.
    """

    symbol: str
    ts_ns: int
    price: float
    size: float
    exchange: str
    trade_id: int


@dataclass(frozen=True, slots=True, eq=False)
class BarBatch:
    """All symbols' bars that close at ``ts_ns`` (UTC nanoseconds).

    ``symbols`` is the same tuple, in the same order, for every batch of a run, so arrays line
    up across cycles. A symbol with no bar at ``ts_ns`` has NaN in every array.
    """

    ts_ns: int
    symbols: tuple[str, ...]
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        n = len(self.symbols)
        for name in ("open", "high", "low", "close", "volume"):
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.shape != (n,):
                raise DataError(f"BarBatch.{name} must be an array of shape ({n},), got {getattr(arr, 'shape', arr)}")

    @classmethod
    def from_checked_arrays(
        cls,
        ts_ns: int,
        symbols: tuple[str, ...],
        open: FloatArray,  # noqa: A002 - the field's name
        high: FloatArray,
        low: FloatArray,
        close: FloatArray,
        volume: FloatArray,
    ) -> BarBatch:
        """Build a batch from arrays already known to have shape ``(len(symbols),)``, unchecked.

        For the rows of a :class:`~amcp.data.bars.BarPanel`, whose shapes the panel checked.
        """
        return _build_unchecked(ts_ns, symbols, open, high, low, close, volume)

    @property
    def present(self) -> np.ndarray:
        """Boolean mask of symbols that have a bar in this batch."""
        return ~np.isnan(self.close)

    @property
    def bar_count(self) -> int:
        """How many symbols have a bar in this batch (``present.sum()``)."""
        return self.close.size - int(np.count_nonzero(np.isnan(self.close)))

    def bar(self, index: int) -> Bar | None:
        """Return symbol ``index``'s bar, or ``None`` if it has none at this timestamp."""
        if np.isnan(self.close[index]):
            return None
        return Bar(
            self.symbols[index],
            self.ts_ns,
            float(self.open[index]),
            float(self.high[index]),
            float(self.low[index]),
            float(self.close[index]),
            float(self.volume[index]),
        )


_build_unchecked = unchecked_constructor(BarBatch)
