"""MovingAverageCross detects crosses exactly where backtrader's CrossOver does, and trades them."""

from __future__ import annotations

import datetime as dt
import importlib.util
import pickle
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from amcp.config import MovingAverageCrossConfig
from amcp.domain import (
    BarBatch,
    ClientOrderId,
    LiquiditySide,
    OrderFilled,
    OrderIntent,
    OrderSide,
    OrderType,
    StrategyId,
    TimeInForce,
    TradeId,
    VenueOrderId,
)
from amcp.strategies.ma_cross import MovingAverageCross

import backtrader as bt  # noqa: E402 - the oracle for CrossOver (a pinned dev dependency)


def config(fast: int = 3, slow: int = 7, quantity: int = 100) -> MovingAverageCrossConfig:
    return MovingAverageCrossConfig(
        kind="ma_cross", id="ma", fast_bars=fast, slow_bars=slow, quantity=Decimal(quantity)
    )


def batch(t: int, symbols: tuple[str, ...], close: np.ndarray) -> BarBatch:
    close = np.asarray(close, dtype=np.float64)
    return BarBatch(t, symbols, close, close, close, close, np.zeros(len(symbols)))


def fill(intent: OrderIntent, quantity: Decimal | None = None, strategy: str | None = None) -> OrderFilled:
    return OrderFilled(
        client_order_id=ClientOrderId("c1"),
        venue_order_id=VenueOrderId("v1"),
        trade_id=TradeId("t1"),
        strategy_id=StrategyId(strategy) if strategy else intent.strategy_id,
        symbol=intent.symbol,
        side=intent.side,
        last_quantity=intent.quantity if quantity is None else quantity,
        last_price=Decimal(10),
        fee=Decimal(0),
        liquidity=LiquiditySide.TAKER,
        ts_ns=0,
    )


def our_crossovers(closes: np.ndarray, fast: int, slow: int) -> np.ndarray:
    """Our CrossOver per bar, for a (bars, symbols) array of closes."""
    symbols = tuple(f"S{i}" for i in range(closes.shape[1]))
    strategy = MovingAverageCross(config(fast, slow), symbols)
    out = np.zeros(closes.shape, dtype=np.int64)
    for t in range(closes.shape[0]):
        strategy.on_bars(batch(t, symbols, closes[t]))
        out[t] = strategy.last_crossover
    return out


def backtrader_crossovers(close: np.ndarray, fast: int, slow: int) -> np.ndarray:
    """bt.ind.CrossOver(SMA(fast), SMA(slow)) per bar (0 before backtrader calls next)."""
    index = pd.bdate_range("2014-01-02", periods=len(close))
    frame = pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 1.0}, index=index
    )
    seen: dict[int, float] = {}

    class Recorder(bt.Strategy):
        def __init__(self) -> None:
            self.cross = bt.ind.CrossOver(
                bt.ind.SMA(self.data.close, period=fast), bt.ind.SMA(self.data.close, period=slow)
            )

        def next(self) -> None:
            seen[len(self.data) - 1] = self.cross[0]

    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=frame, openinterest=None))
    cerebro.addstrategy(Recorder)
    cerebro.run()
    out = np.zeros(len(close), dtype=np.int64)
    for i, value in seen.items():
        out[i] = int(value)
    return out


@pytest.fixture(scope="module")
def real_closes(shared_daily: Path) -> np.ndarray:
    """Closes of four liquid names, 2014-2016, as a (bars, 4) array (complete, aligned)."""
    frame = pd.read_parquet(
        shared_daily,
        filters=[("symbol", "in", ["AAPL", "KO", "SPY", "XOM"])],
        columns=["symbol", "date", "close"],
    )
    frame = frame[(frame["date"] >= dt.date(2014, 1, 1)) & (frame["date"] <= dt.date(2016, 12, 31))]
    panel = frame.pivot(index="date", columns="symbol", values="close").sort_index()
    assert not panel.isna().any().any() and len(panel) > 700
    return panel.to_numpy()


@pytest.mark.parametrize(("fast", "slow"), [(10, 30), (5, 20), (2, 5), (1, 2)])
def test_crossover_matches_backtrader_on_real_prices(real_closes: np.ndarray, fast: int, slow: int) -> None:
    ours = our_crossovers(real_closes, fast, slow)

    for j in range(real_closes.shape[1]):
        expected = backtrader_crossovers(real_closes[:, j], fast, slow)
        assert np.count_nonzero(expected) > 3
        np.testing.assert_array_equal(ours[:, j], expected, err_msg=f"column {j}, SMA {fast}/{slow}")


@pytest.mark.parametrize("grid", ["integers", "cents"])
@pytest.mark.parametrize(("fast", "slow"), [(1, 2), (2, 3), (3, 7), (4, 12)])
def test_crossover_matches_backtrader_when_averages_tie(grid: str, fast: int, slow: int) -> None:
    # Prices on a coarse grid with flat runs make fast == slow (or equal up to rounding) often:
    # the NonZeroDifference memory and the exactly rounded sums both decide these bars.
    rng = np.random.default_rng(11 + fast * 10 + slow)
    steps = rng.integers(-1, 2, 600) if grid == "integers" else rng.integers(-3, 4, 600)
    close = 50.0 + np.cumsum(steps) if grid == "integers" else np.round(50.0 + np.cumsum(steps) * 0.01, 2)

    ours = our_crossovers(close[:, None], fast, slow)[:, 0]

    np.testing.assert_array_equal(ours, backtrader_crossovers(close, fast, slow))


def test_first_cross_is_possible_only_after_slow_plus_one_closes() -> None:
    # fast below slow for the first slow bars, then a jump: backtrader's first CrossOver value is
    # at bar index `slow`, seeded by the difference at bar `slow - 1`.
    close = np.array([5.0, 4, 3, 2, 1, 9, 9, 9])
    ours = our_crossovers(close[:, None], 2, 4)[:, 0]
    np.testing.assert_array_equal(ours, backtrader_crossovers(close, 2, 4))
    assert ours[:4].tolist() == [0, 0, 0, 0] and ours[4] == 0 and ours[5] == 1


def test_orders_follow_crosses_with_the_strategy_own_position() -> None:
    # SMA(1) vs SMA(2): the sign of each close-to-close change, so every bar from t=2 crosses.
    strategy = MovingAverageCross(config(fast=1, slow=2, quantity=100), ("A",))

    def step(t: int, price: float) -> list[OrderIntent]:
        return strategy.on_bars(batch(t, ("A",), np.array([price])))  # type: ignore[return-value]

    assert step(0, 10.0) == [] and step(1, 9.0) == []
    buy = step(2, 11.0)  # up-cross while flat: buy quantity
    assert buy == [
        OrderIntent(
            strategy_id=StrategyId("ma"),
            symbol="A",
            side=OrderSide.BUY,
            quantity=Decimal(100),
            order_type=OrderType.MARKET,
            time_in_force=TimeInForce.DAY,
            tag="ma cross up",
        )
    ]
    strategy.on_fills([fill(buy[0], quantity=Decimal(60))])  # a partial fill
    strategy.on_fills([fill(buy[0], strategy="someone-else")])  # another strategy's: ignored
    assert strategy.positions == {"A": Decimal(60)}

    sell = step(3, 10.0)  # down-cross while long: sell the whole position
    assert [(i.side, i.quantity, i.tag) for i in sell] == [(OrderSide.SELL, Decimal(60), "ma cross down")]
    assert step(4, 12.0) == []  # up-cross while still long (sell not filled): nothing
    sell_again = step(5, 11.0)
    assert [(i.side, i.quantity) for i in sell_again] == [(OrderSide.SELL, Decimal(60))]
    strategy.on_fills([fill(sell_again[0])])
    assert strategy.positions == {}
    assert [(i.side, i.quantity) for i in step(6, 13.0)] == [(OrderSide.BUY, Decimal(100))]


def test_down_cross_while_flat_emits_nothing() -> None:
    strategy = MovingAverageCross(config(fast=1, slow=2), ("A",))
    intents = [strategy.on_bars(batch(t, ("A",), np.array([p]))) for t, p in enumerate([10.0, 11.0, 9.0])]
    assert strategy.last_crossover.tolist() == [-1]
    assert intents == [[], [], []]


def test_nan_bar_does_not_advance_history() -> None:
    rng = np.random.default_rng(3)
    dense = 20 + np.cumsum(rng.normal(0, 0.5, 200))
    gaps = rng.random(200) < 0.2
    gaps[:3] = False
    with_gaps = np.column_stack([dense, np.full(200, np.nan)])
    # Column B holds A's series, spread out with NaN bars in between.
    spread = []
    k = 0
    for t in range(200):
        if gaps[t]:
            spread.append(np.nan)
        else:
            spread.append(dense[k])
            k += 1
    with_gaps[:, 1] = spread

    ours = our_crossovers(with_gaps, 3, 8)

    # B's crossovers, at its present bars, are A's over A's first k bars.
    present = ~gaps
    np.testing.assert_array_equal(ours[present, 1], ours[:k, 0])
    assert np.all(ours[gaps, 1] == 0)


@pytest.mark.parametrize("gaps", [False, True])
def test_state_round_trip_continues_identically(gaps: bool) -> None:
    rng = np.random.default_rng(5)
    closes = 30 + np.cumsum(rng.normal(0, 0.4, (300, 6)), axis=0)
    if gaps:
        closes[rng.random(closes.shape) < 0.05] = np.nan
    symbols = tuple("ABCDEF")
    straight = MovingAverageCross(config(4, 11), symbols)
    first = MovingAverageCross(config(4, 11), symbols)
    for t in range(150):
        straight.on_bars(batch(t, symbols, closes[t]))
        intents = first.on_bars(batch(t, symbols, closes[t]))
        for strategy in (straight, first):
            strategy.on_fills([fill(i) for i in intents])  # type: ignore[arg-type]

    resumed = MovingAverageCross(config(4, 11), symbols)
    resumed.load_state(pickle.loads(pickle.dumps(first.state())))
    for t in range(150, 300):
        expected = straight.on_bars(batch(t, symbols, closes[t]))
        got = resumed.on_bars(batch(t, symbols, closes[t]))
        assert got == expected, t
        straight.on_fills([fill(i) for i in expected])  # type: ignore[arg-type]
        resumed.on_fills([fill(i) for i in got])  # type: ignore[arg-type]
    assert resumed.positions == straight.positions


def test_poisoned_future_bars_do_not_change_earlier_intents() -> None:
    rng = np.random.default_rng(9)
    closes = 30 + np.cumsum(rng.normal(0, 0.4, (200, 5)), axis=0)
    poisoned = closes.copy()
    poisoned[120:] = rng.normal(1e6, 1e5, poisoned[120:].shape)
    poisoned[150:, 2] = np.nan
    symbols = tuple("ABCDE")

    def run(data: np.ndarray) -> list[list[object]]:
        strategy = MovingAverageCross(config(3, 9), symbols)
        return [list(strategy.on_bars(batch(t, symbols, data[t]))) for t in range(len(data))]

    clean, dirty = run(closes), run(poisoned)
    assert clean[:120] == dirty[:120]
    assert any(clean[:120])


def test_intents_filled_at_next_open_reproduce_the_backtrader_peer(
    repo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # benchmarks/_backtrader_peer.py is what the speed benchmark compares against: our orders,
    # filled at the next bar's open as backtrader fills market orders, must be its trades.
    spec = importlib.util.spec_from_file_location(
        "_backtrader_peer", repo_root / "benchmarks" / "_backtrader_peer.py"
    )
    assert spec is not None and spec.loader is not None
    peer = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "_backtrader_peer", peer)  # backtrader looks its classes up there
    spec.loader.exec_module(peer)
    frames = peer._synthetic_frames(5, 400, seed=3)
    symbols = tuple(sorted(frames))
    dates = frames[symbols[0]].index
    opens = np.column_stack([frames[s]["open"].to_numpy() for s in symbols])
    closes = np.column_stack([frames[s]["close"].to_numpy() for s in symbols])

    expected = peer.run_backtrader_ma_cross(frames, fast=10, slow=30, quantity=100, cash=1e9)

    strategy = MovingAverageCross(config(10, 30, 100), symbols)
    pending: list[OrderIntent] = []
    trades = []
    for t in range(len(dates)):
        fills = []
        for intent in pending:
            price = float(opens[t, symbols.index(intent.symbol)])
            fills.append(fill(intent))
            trades.append(
                (intent.symbol, dates[t].date().isoformat(), intent.side.value, int(intent.quantity), price)
            )
        strategy.on_fills(fills)
        pending = strategy.on_bars(batch(t, symbols, closes[t]))  # type: ignore[assignment]

    assert len(expected["trades"]) > 50
    assert [trade[:4] for trade in sorted(trades)] == [trade[:4] for trade in expected["trades"]]
    # backtrader prices a fill as a size-weighted average: the open, give or take an ulp.
    np.testing.assert_allclose([t[4] for t in sorted(trades)], [t[4] for t in expected["trades"]], rtol=1e-12)
