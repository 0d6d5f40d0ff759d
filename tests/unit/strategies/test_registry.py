"""The registry builds each kind of strategy on its universe; every built strategy shares the interface.

The second half covers what ``amcp.strategies.base`` gives every strategy: the column mapping,
the per-symbol ring buffer, fill tracking and checkpoint checks.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from amcp.config import MeanReversionConfig, MomentumConfig, MovingAverageCrossConfig
from amcp.domain import (
    BarBatch,
    ClientOrderId,
    LiquiditySide,
    OrderFilled,
    OrderSide,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from amcp.errors import ConfigError, DataError
from amcp.strategies.base import PriceHistory
from amcp.strategies.ma_cross import MovingAverageCross
from amcp.strategies.mean_reversion import MeanReversion
from amcp.strategies.momentum import CrossSectionalMomentum
from amcp.strategies.registry import build_strategies, build_strategy

DATA_SYMBOLS = ("AAPL", "MSFT", "SPY", "XOM", "KO", "JPM")
MOMENTUM = MomentumConfig(kind="momentum", id="mom", top_n=2)
MEAN_REVERSION = MeanReversionConfig(kind="mean_reversion", id="mr", symbols=("SPY", "AAPL"))
MA_CROSS = MovingAverageCrossConfig(kind="ma_cross", id="ma", fast_bars=2, slow_bars=3, symbols=("XOM",))


def batch(t: int, close: list[float], symbols: tuple[str, ...] = DATA_SYMBOLS) -> BarBatch:
    values = np.asarray(close, dtype=np.float64)
    return BarBatch(t, symbols, values, values, values, values, np.zeros(len(symbols)))


def fill(strategy: str, symbol: str, side: OrderSide, quantity: int) -> OrderFilled:
    return OrderFilled(
        client_order_id=ClientOrderId("c"),
        venue_order_id=VenueOrderId("v"),
        trade_id=TradeId("t"),
        strategy_id=StrategyId(strategy),
        symbol=symbol,
        side=side,
        last_quantity=Decimal(quantity),
        last_price=Decimal(1),
        fee=Decimal(0),
        liquidity=LiquiditySide.TAKER,
        ts_ns=0,
    )


# --------------------------------------------------------------------------- registry


def test_each_kind_builds_its_strategy_class() -> None:
    built = build_strategies([MOMENTUM, MEAN_REVERSION, MA_CROSS], DATA_SYMBOLS)

    assert [type(s) for s in built] == [CrossSectionalMomentum, MeanReversion, MovingAverageCross]
    assert [str(s.id) for s in built] == ["mom", "mr", "ma"]


def test_empty_symbols_trade_every_data_symbol_and_a_subset_keeps_its_order() -> None:
    assert build_strategy(MOMENTUM, DATA_SYMBOLS).universe == DATA_SYMBOLS
    assert build_strategy(MEAN_REVERSION, DATA_SYMBOLS).universe == ("SPY", "AAPL")


def test_unknown_symbols_are_a_config_error_naming_them() -> None:
    config = MeanReversionConfig(kind="mean_reversion", id="mr", symbols=("SPY", "NOPE", "ZZZ"))
    with pytest.raises(ConfigError, match=r"'mr'.*\['NOPE', 'ZZZ'\]"):
        build_strategy(config, DATA_SYMBOLS)


def test_repeated_ids_and_repeated_symbols_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"repeated: \['mom'\]"):
        build_strategies([MOMENTUM, MOMENTUM], DATA_SYMBOLS)
    config = MeanReversionConfig(kind="mean_reversion", id="mr", symbols=("SPY", "SPY"))
    with pytest.raises(ConfigError, match=r"repeated in the universe: \['SPY'\]"):
        build_strategy(config, DATA_SYMBOLS)


def test_no_data_symbols_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no symbols"):
        build_strategy(MOMENTUM, ())


# --------------------------------------------------------------------------- shared interface


def test_universe_subset_reads_its_own_columns() -> None:
    strategy = build_strategy(MA_CROSS, DATA_SYMBOLS)  # XOM only, SMA 2/3
    closes = [[1.0, 1.0, 1.0, x, 1.0, 1.0] for x in (10.0, 9.0, 8.0, 12.0)]

    for t, row in enumerate(closes):
        strategy.on_bars(batch(t, row))

    assert strategy.last_crossover.tolist() == [1]  # XOM's own up-cross at its 4th close


def test_batch_missing_a_universe_symbol_is_a_data_error() -> None:
    strategy = build_strategy(MEAN_REVERSION, DATA_SYMBOLS)
    with pytest.raises(DataError, match=r"not in the bar batch: \['SPY'\]"):
        strategy.on_bars(batch(0, [1.0, 2.0], ("AAPL", "MSFT")))


def test_batch_symbols_changing_mid_run_is_a_data_error() -> None:
    strategy = build_strategy(MOMENTUM, DATA_SYMBOLS)
    strategy.on_bars(batch(0, [1.0] * 6))
    strategy.on_bars(batch(1, [1.0] * 6, tuple(DATA_SYMBOLS)))  # equal tuple, new object: fine
    with pytest.raises(DataError, match="same symbols in the same order"):
        strategy.on_bars(batch(2, [1.0] * 6, tuple(reversed(DATA_SYMBOLS))))


def test_on_fills_tracks_only_its_own_signed_positions() -> None:
    strategy = build_strategy(MOMENTUM, DATA_SYMBOLS)
    strategy.on_fills(
        [
            fill("mom", "AAPL", OrderSide.BUY, 10),
            fill("other", "AAPL", OrderSide.BUY, 99),
            fill("mom", "AAPL", OrderSide.SELL, 4),
            fill("mom", "KO", OrderSide.SELL, 5),
            fill("mom", "SPY", OrderSide.BUY, 3),
            fill("mom", "SPY", OrderSide.SELL, 3),
        ]
    )
    assert strategy.positions == {"AAPL": Decimal(6), "KO": Decimal(-5)}


def test_checkpoint_of_another_strategy_is_refused() -> None:
    momentum = build_strategy(MOMENTUM, DATA_SYMBOLS)
    other = build_strategy(MomentumConfig(kind="momentum", id="mom-2", top_n=2), DATA_SYMBOLS)
    with pytest.raises(DataError, match="cannot be loaded"):
        other.load_state(momentum.state())
    with pytest.raises(DataError, match="cannot be loaded"):
        build_strategy(MEAN_REVERSION, DATA_SYMBOLS).load_state(momentum.state())


def test_checkpoint_before_the_first_batch_round_trips() -> None:
    first = build_strategy(MA_CROSS, DATA_SYMBOLS)
    resumed = build_strategy(MA_CROSS, DATA_SYMBOLS)
    resumed.load_state(first.state())
    for t, x in enumerate((10.0, 9.0, 8.0, 12.0)):
        row = [1.0, 1.0, 1.0, x, 1.0, 1.0]
        assert resumed.on_bars(batch(t, row)) == first.on_bars(batch(t, row))


@pytest.mark.parametrize("gappy", [False, True])
def test_price_history_nan_bars_do_not_advance_a_symbol(gappy: bool) -> None:
    rng = np.random.default_rng(2)
    dense = rng.random((50, 3)) + 1.0
    history = PriceHistory(capacity=7, n_symbols=3)
    own: list[list[float]] = [[], [], []]
    for t in range(50):
        row = dense[t].copy()
        if gappy:
            row[rng.random(3) < 0.3] = np.nan
        absent = np.isnan(row)
        history.push(row, absent, not absent.any())
        for j in range(3):
            if not absent[j]:
                own[j].append(row[j])

        assert history.counts.tolist() == [len(v) for v in own]
        for k in (1, 4, 7):
            window = history.window(k)
            for j in range(3):
                if len(own[j]) < k:
                    assert np.isnan(window[:, j]).any()
                else:
                    assert window[:, j].tolist() == own[j][-k:]
        for k in (0, 3, 6):
            lag = history.lag(k)
            for j in range(3):
                if len(own[j]) > k:
                    assert lag[j] == own[j][-1 - k]
                else:
                    assert np.isnan(lag[j])
