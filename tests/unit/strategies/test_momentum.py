"""CrossSectionalMomentum ranks by skip-adjusted lookback return and rebalances every n cycles."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from amcp.config import MomentumConfig
from amcp.domain import BarBatch, StrategyId, TargetWeight
from amcp.errors import ConfigError
from amcp.strategies.momentum import CrossSectionalMomentum

SYMBOLS = ("A", "B", "C", "D", "E", "F")


def config(**overrides: object) -> MomentumConfig:
    values: dict[str, object] = {
        "kind": "momentum",
        "id": "mom",
        "lookback_bars": 4,
        "skip_bars": 1,
        "top_n": 2,
        "rebalance_bars": 3,
    }
    values.update(overrides)
    return MomentumConfig.model_validate(values)


def batch(t: int, close: np.ndarray, symbols: tuple[str, ...] = SYMBOLS) -> BarBatch:
    close = np.asarray(close, dtype=np.float64)
    return BarBatch(t, symbols, close, close, close, close, np.zeros(len(symbols)))


def run(
    strategy: CrossSectionalMomentum, closes: np.ndarray, symbols: tuple[str, ...] = SYMBOLS
) -> list[list[object]]:
    return [list(strategy.on_bars(batch(t, closes[t], symbols))) for t in range(len(closes))]


def weights(intents: list[object]) -> list[tuple[str, float]]:
    return [(i.symbol, i.weight) for i in intents]  # type: ignore[attr-defined]


def growth_panel(rates: list[float], bars: int) -> np.ndarray:
    return 100.0 * np.power(1.0 + np.asarray(rates), np.arange(bars)[:, None])


def test_first_rebalance_longs_the_top_n_with_equal_weights() -> None:
    closes = growth_panel([0.01, 0.05, 0.03, -0.02, 0.04, 0.0], 5)
    strategy = CrossSectionalMomentum(config(), SYMBOLS)

    emitted = run(strategy, closes)

    assert emitted[:4] == [[], [], [], []]  # lookback + 1 = 5 closes needed
    assert emitted[4] == [
        TargetWeight(strategy_id=StrategyId("mom"), symbol="B", weight=0.5, tag="momentum long"),
        TargetWeight(strategy_id=StrategyId("mom"), symbol="E", weight=0.5, tag="momentum long"),
    ]
    assert strategy.held == {"B": 1, "E": 1}


def test_rebalances_only_every_n_cycles_and_exits_dropped_symbols() -> None:
    closes = growth_panel([0.01, 0.05, 0.03, -0.02, 0.04, 0.0], 14)
    closes[8:, 3] = closes[7, 3] * np.power(1.5, np.arange(1, 7))  # D takes off from bar 8
    strategy = CrossSectionalMomentum(config(), SYMBOLS)

    emitted = run(strategy, closes)

    active = [t for t, intents in enumerate(emitted) if intents]
    assert active == [4, 7, 10, 13]
    assert weights(emitted[7]) == [("B", 0.5), ("E", 0.5)]
    # At 10 the score uses closes 9 (skip 1) and 6: D's 1.5^2 - 1 beats B's 1.05^3 - 1 and E's.
    assert weights(emitted[10]) == [("E", 0.0), ("D", 0.5), ("B", 0.5)]
    assert strategy.held == {"B": 1, "D": 1}


def test_skip_bars_ignores_the_most_recent_moves() -> None:
    closes = growth_panel([0.01, 0.05, 0.03, -0.02, 0.04, 0.0], 5)
    closes[4, 1] = 1.0  # B crashes on the last bar; skip_bars=1 does not see it
    closes[4, 5] = 1000.0  # F soars on the last bar; not seen either

    assert weights(run(CrossSectionalMomentum(config(), SYMBOLS), closes)[4]) == [("B", 0.5), ("E", 0.5)]
    no_skip = weights(run(CrossSectionalMomentum(config(skip_bars=0), SYMBOLS), closes)[4])
    assert no_skip == [("F", 0.5), ("E", 0.5)]


def test_long_short_shorts_the_bottom_n_with_half_weights() -> None:
    closes = growth_panel([0.01, 0.05, 0.03, -0.02, 0.04, 0.0], 5)
    strategy = CrossSectionalMomentum(config(long_short=True), SYMBOLS)

    emitted = run(strategy, closes)

    assert weights(emitted[4]) == [("B", 0.25), ("E", 0.25), ("D", -0.25), ("F", -0.25)]
    assert strategy.held == {"B": 1, "D": -1, "E": 1, "F": -1}


def test_matches_a_reference_where_nan_bars_do_not_advance_history() -> None:
    rng = np.random.default_rng(21)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (260, 12)), axis=0))
    closes[rng.random(closes.shape) < 0.05] = np.nan
    closes[:40, 0] = np.nan  # a late listing
    symbols = tuple(f"S{i}" for i in range(12))
    cfg = config(lookback_bars=20, skip_bars=5, top_n=3, rebalance_bars=7)

    emitted = run(CrossSectionalMomentum(cfg, symbols), closes, symbols)

    # Reference: each symbol keeps its own list of closes (a NaN bar appends nothing).
    history: list[list[float]] = [[] for _ in symbols]
    held: set[str] = set()
    warm_at = None
    for t in range(len(closes)):
        scores = {}
        for j, price in enumerate(closes[t]):
            if np.isnan(price):
                continue
            history[j].append(price)
            if len(history[j]) > 20:
                scores[symbols[j]] = history[j][-6] / history[j][-21] - 1
        if warm_at is None and len(scores) >= 3:
            warm_at = t
        if warm_at is None or (t - warm_at) % 7:
            assert emitted[t] == [], t
            continue
        ranked = sorted(scores, key=lambda s: -scores[s])[:3]
        expected = [(s, 0.0) for s in symbols if s in held and s not in ranked] + [(s, 1 / 3) for s in ranked]
        assert weights(emitted[t]) == expected, t
        held = set(ranked)
    assert warm_at is not None and sum(1 for e in emitted if e) > 20


def test_held_symbol_without_a_bar_at_rebalance_is_exited() -> None:
    closes = growth_panel([0.01, 0.05, 0.03, -0.02, 0.04, 0.0], 8)
    closes[7, 1] = np.nan  # B (held) has no bar at the rebalance at 7
    emitted = run(CrossSectionalMomentum(config(), SYMBOLS), closes)
    assert weights(emitted[7]) == [("B", 0.0), ("E", 0.5), ("C", 0.5)]


def test_universe_smaller_than_selection_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="needs at least 4 symbols, the universe has 3"):
        CrossSectionalMomentum(config(long_short=True), ("A", "B", "C"))


def test_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(8)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (200, 8)), axis=0))
    closes[rng.random(closes.shape) < 0.05] = np.nan
    symbols = tuple("ABCDEFGH")
    cfg = config(lookback_bars=15, skip_bars=3, top_n=2, rebalance_bars=4, long_short=True)
    straight = CrossSectionalMomentum(cfg, symbols)
    first = CrossSectionalMomentum(cfg, symbols)
    for t in range(97):
        straight.on_bars(batch(t, closes[t], symbols))
        first.on_bars(batch(t, closes[t], symbols))

    resumed = CrossSectionalMomentum(cfg, symbols)
    resumed.load_state(pickle.loads(pickle.dumps(first.state())))

    for t in range(97, 200):
        assert resumed.on_bars(batch(t, closes[t], symbols)) == straight.on_bars(
            batch(t, closes[t], symbols)
        ), t


def test_poisoned_future_bars_do_not_change_earlier_intents() -> None:
    rng = np.random.default_rng(10)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (150, 8)), axis=0))
    poisoned = closes.copy()
    poisoned[90:] = rng.normal(1e6, 1e5, poisoned[90:].shape)
    poisoned[100:, 3] = np.nan
    symbols = tuple("ABCDEFGH")
    cfg = config(lookback_bars=15, skip_bars=3, top_n=2, rebalance_bars=4)

    clean = run(CrossSectionalMomentum(cfg, symbols), closes, symbols)
    dirty = run(CrossSectionalMomentum(cfg, symbols), poisoned, symbols)

    assert clean[:90] == dirty[:90]
    assert any(clean[:90])
