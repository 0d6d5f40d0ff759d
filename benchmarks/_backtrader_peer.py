"""backtrader, the peer of the moving-average-cross benchmark: the same strategy, run the backtrader way.

Imported by the benchmark that compares it with amcp's engine; run directly
(``.venv/bin/python benchmarks/_backtrader_peer.py``) it runs itself on a synthetic 20-symbol,
1,000-day panel and prints one JSON line, as every benchmark here does.

The strategy, per symbol: ``bt.ind.SMA`` fast and slow of the close and ``bt.ind.CrossOver`` of
the two; on an up-cross with no position, ``buy(size=quantity)``; on a down-cross while long,
``close()``. Market orders fill at the next bar's open (backtrader's default), commission 0,
and the broker's submission check is off, so no order is ever rejected for cash or margin.
Frames must cover the same sessions (backtrader calls ``next`` only once every feed has
enough bars; ``prenext`` trades the feeds that do, so feeds starting late also work).
"""

from __future__ import annotations

import json
import time
from typing import Any

import numpy as np
import pandas as pd

_COLUMNS = ("open", "high", "low", "close", "volume")


def run_backtrader_ma_cross(
    frames: dict[str, pd.DataFrame], fast: int, slow: int, quantity: int, cash: float
) -> dict[str, Any]:
    """Run the MA-cross strategy on every frame in one backtrader ``Cerebro``.

    Args:
        frames: symbol -> daily bars, indexed by a ``DatetimeIndex`` of sessions, with columns
            open, high, low, close, volume.
        fast: bars of the fast SMA.
        slow: bars of the slow SMA (more than ``fast``).
        quantity: shares bought on an up-cross.
        cash: starting cash.

    Returns:
        ``{"trades": [(symbol, date ISO, "buy" | "sell", qty, price), ...] sorted,
        "final_value": broker value at the end, "bars": bars over all frames,
        "seconds": wall time of feed building plus the run, "run_seconds": the run alone}``.

    Raises:
        ValueError: if a frame is empty, lacks a column or is not indexed by dates, or the
            windows are not ``1 <= fast < slow``.
    """
    import backtrader as bt

    if not 1 <= fast < slow:
        raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
    if not frames:
        raise ValueError("no frames given")
    for symbol, frame in frames.items():
        missing = [c for c in _COLUMNS if c not in frame.columns]
        if missing or frame.empty or not isinstance(frame.index, pd.DatetimeIndex):
            raise ValueError(
                f"frame {symbol!r} must be non-empty, indexed by dates, with columns {list(_COLUMNS)}; "
                f"missing {missing}, {len(frame)} rows, index {type(frame.index).__name__}"
            )

    trades: list[tuple[str, str, str, int | float, float]] = []

    class MovingAverageCross(bt.Strategy):  # type: ignore[misc]
        def __init__(self) -> None:
            # A list, not a dict: backtrader lines overload ==, so they make poor dict keys.
            self.crosses = [
                (
                    data,
                    bt.ind.CrossOver(
                        bt.ind.SMA(data.close, period=fast), bt.ind.SMA(data.close, period=slow)
                    ),
                )
                for data in self.datas
            ]

        def _trade(self) -> None:
            for data, cross in self.crosses:
                if len(data) <= slow:  # CrossOver has no value before the (slow + 1)-th bar
                    continue
                signal = cross[0]
                size = self.getposition(data).size
                if size == 0 and signal > 0:
                    self.buy(data=data, size=quantity)
                elif size > 0 and signal < 0:
                    self.close(data=data)

        def prenext(self) -> None:
            self._trade()

        def next(self) -> None:
            self._trade()

        def notify_order(self, order: Any) -> None:
            if order.status != order.Completed:
                return
            size = abs(order.executed.size)
            trades.append(
                (
                    order.data._name,
                    bt.num2date(order.executed.dt).date().isoformat(),
                    "buy" if order.isbuy() else "sell",
                    int(size) if float(size).is_integer() else float(size),
                    float(order.executed.price),
                )
            )

    started = time.perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    for symbol in sorted(frames):
        frame = frames[symbol]
        feed = bt.feeds.PandasData(
            dataname=frame,
            datetime=None,
            open="open",
            high="high",
            low="low",
            close="close",
            volume="volume",
            openinterest=None,
        )
        cerebro.adddata(feed, name=symbol)
    cerebro.addstrategy(MovingAverageCross)
    cerebro.broker.setcash(float(cash))
    cerebro.broker.setcommission(commission=0.0)
    cerebro.broker.set_checksubmit(False)
    run_started = time.perf_counter()
    cerebro.run(stdstats=False)
    finished = time.perf_counter()
    return {
        "trades": sorted(trades),
        "final_value": float(cerebro.broker.getvalue()),
        "bars": int(sum(len(frame) for frame in frames.values())),
        "seconds": finished - started,
        "run_seconds": finished - run_started,
    }


def _synthetic_frames(symbols: int, days: int, seed: int = 7) -> dict[str, pd.DataFrame]:
    """Random-walk daily bars, every symbol on the same business days."""
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2015-01-02", periods=days)
    frames = {}
    for i in range(symbols):
        close = 50.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.015, days)))
        open_ = close * np.exp(rng.normal(0.0, 0.003, days))
        frames[f"S{i:03d}"] = pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) * 1.005,
                "low": np.minimum(open_, close) * 0.995,
                "close": close,
                "volume": rng.integers(100_000, 1_000_000, days).astype(float),
            },
            index=index,
        )
    return frames


if __name__ == "__main__":
    result = run_backtrader_ma_cross(_synthetic_frames(20, 1000), fast=10, slow=30, quantity=100, cash=1e9)
    print(
        json.dumps(
            {
                "benchmark": "backtrader_ma_cross_peer_selfcheck",
                "bars": result["bars"],
                "trades": len(result["trades"]),
                "final_value": round(result["final_value"], 2),
                "seconds": round(result["seconds"], 3),
                "bars_per_second": round(result["bars"] / result["seconds"]),
            }
        )
    )
