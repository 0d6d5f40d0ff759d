"""The market-data catalog: what readers ask for, on top of :class:`MarketDataStore`.

The store keeps raw rows; the catalog answers the questions a researcher or a job asks:
adjusted bars for symbols × dates × columns, a point-in-time universe, an option chain as of a
quote time. Usage::

    catalog = MarketDataCatalog(MarketDataStore("s3://bucket/amcp", storage_options=...))
    bars = catalog.bars(["AAPL", "MSFT"], "2015-01-01", "2016-12-31", adjustment="all")
    sp500 = catalog.universe("sp500")
    members = sp500.members("2016-06-30")
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from amcp.data.corporate_actions import ADJUSTMENT_MODES, AdjustmentMode, adjust_bars
from amcp.data.store import MarketDataStore
from amcp.data.universe import PointInTimeUniverse
from amcp.errors import DataError

ACTIONS_KIND = "reference/corporate_actions"
UNIVERSES_KIND = "reference/universes"
_ADJUSTED_NEEDS = ("symbol", "ts", "close")


class MarketDataCatalog:
    """Reads of the store with corporate actions and universes applied."""

    def __init__(self, store: MarketDataStore) -> None:
        self.store = store

    def bars(
        self,
        symbols: Sequence[str] | None,
        start: Any = None,
        end: Any = None,
        *,
        kind: str = "equities/daily",
        adjustment: AdjustmentMode = "all",
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """Bars of ``symbols`` (all if None) from ``start`` to ``end``, adjusted on read.

        ``adjustment``: ``raw`` as stored, ``split`` (splits only) or ``all`` (splits and cash
        dividends), backward from the store's corporate actions (see
        :mod:`amcp.data.corporate_actions`). Adjustment uses every stored action of the symbol,
        so history is expressed in today's share terms.
        """
        if adjustment not in ADJUSTMENT_MODES:
            raise DataError(f"adjustment must be one of {ADJUSTMENT_MODES}, got {adjustment!r}")
        wanted = None if columns is None else list(dict.fromkeys(columns))
        read_columns = wanted if wanted is None or adjustment == "raw" else list(dict.fromkeys([*_ADJUSTED_NEEDS, *wanted]))
        bars = self.store.read(kind, symbols, start, end, columns=read_columns)
        if adjustment != "raw" and bars.num_rows:
            names = pc.unique(bars.column("symbol")).to_pylist()
            actions = self.store.read(ACTIONS_KIND, names)
            if actions.num_rows:
                bars = _adjust_partial(bars, actions, adjustment)
        return bars if wanted is None else bars.select(wanted)

    def write_universe(self, universe: PointInTimeUniverse) -> None:
        """Store a universe's membership intervals (replacing the same intervals)."""
        self.store.write(UNIVERSES_KIND, universe.to_table())

    def universe(self, name: str) -> PointInTimeUniverse:
        """The stored point-in-time universe ``name``.

        Raises:
            DataError: if the store holds no universe of that name (naming the ones it holds).
        """
        table = self.store.read(UNIVERSES_KIND, [name])
        if table.num_rows == 0:
            known = self.store.symbols(UNIVERSES_KIND)
            raise DataError(f"no universe {name!r} in {self.store.url}; stored universes: {known or 'none'}")
        return PointInTimeUniverse.from_table(table, name)

    def option_chain(self, underlying: str, start: Any = None, end: Any = None) -> pa.Table:
        """Stored option quotes of ``underlying`` with quote times from ``start`` to ``end``."""
        return self.store.read("options/chains", [underlying], start, end)


def _adjust_partial(bars: pa.Table, actions: pa.Table, mode: AdjustmentMode) -> pa.Table:
    """:func:`adjust_bars` on a table that may hold only some of BAR_SCHEMA's columns."""
    from amcp.data.schemas import BAR_SCHEMA

    full = bars
    for field in BAR_SCHEMA:
        if field.name not in full.column_names:
            full = full.append_column(field, pa.nulls(full.num_rows, field.type))
    adjusted = adjust_bars(full.select(BAR_SCHEMA.names), actions, mode)
    return adjusted.select(bars.column_names)
