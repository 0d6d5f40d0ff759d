"""Real daily bars of a few stocks from the shared data file, on the market proxy's calendar."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from amcp.features.registry import SeriesInputs


def on_market_calendar(path: Path, symbols: Sequence[str], market: str, start: str, end: str, *,
                       complete: bool = False) -> list[SeriesInputs]:
    """Each symbol's bars from ``start`` to ``end`` on ``market``'s dates (a missing bar is a NaN row),
    with ``market``'s close as its market column and no vwap. ``complete``: assert no bar is missing."""
    table = pq.read_table(path, columns=["symbol", "date", "open", "high", "low", "close", "volume"],
                          filters=[("symbol", "in", [*symbols, market])])
    bars = table.to_pandas()
    bars["date"] = pd.to_datetime(bars["date"])
    bars = bars[(bars["date"] >= start) & (bars["date"] <= end)].set_index("date")
    proxy = bars[bars["symbol"] == market]["close"].sort_index()
    dates = proxy.index.to_numpy(dtype="datetime64[D]")
    out = []
    for symbol in symbols:
        frame = bars[bars["symbol"] == symbol].reindex(proxy.index)
        if complete:
            assert frame["close"].notna().all(), f"{symbol} misses bars in {start}..{end}"
        ohlcv = [frame[c].to_numpy(np.float64) for c in ("open", "high", "low", "close", "volume")]
        out.append(SeriesInputs(dates, *ohlcv, np.full(len(frame), np.nan), proxy.to_numpy(np.float64)))
    return out
