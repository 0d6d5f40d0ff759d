"""MeanReversion enters beyond entry_z, exits inside exit_z, and holds at most max_positions."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from amcp.config import MeanReversionConfig
from amcp.domain import BarBatch, StrategyId, TargetWeight
from amcp.strategies.mean_reversion import MeanReversion


def config(**overrides: object) -> MeanReversionConfig:
    values: dict[str, object] = {
        "kind": "mean_reversion",
        "id": "mr",
        "window_bars": 5,
        "entry_z": 1.9,
        "exit_z": 0.5,
        "max_positions": 2,
    }
    values.update(overrides)
    return MeanReversionConfig.model_validate(values)


def batch(t: int, close: np.ndarray, symbols: tuple[str, ...]) -> BarBatch:
    close = np.asarray(close, dtype=np.float64)
    return BarBatch(t, symbols, close, close, close, close, np.zeros(len(symbols)))


def run(strategy: MeanReversion, closes: np.ndarray, symbols: tuple[str, ...]) -> list[list[object]]:
    return [list(strategy.on_bars(batch(t, closes[t], symbols))) for t in range(len(closes))]


def weights(intents: list[object]) -> list[tuple[str, float]]:
    return [(i.symbol, i.weight) for i in intents]  # type: ignore[attr-defined]


def test_enters_when_z_reaches_minus_entry_z_and_not_before() -> None:
    # Four equal closes then a drop: the last close has z = -sqrt(4) = -2 exactly.
    closes = np.array([[10.0], [10.0], [10.0], [10.0], [9.0]])

    entered = run(MeanReversion(config(entry_z=1.9), ("A",)), closes, ("A",))
    not_entered = run(MeanReversion(config(entry_z=2.1), ("A",)), closes, ("A",))

    assert entered == [
        [],
        [],
        [],
        [],
        [TargetWeight(strategy_id=StrategyId("mr"), symbol="A", weight=0.5, tag="mean reversion long")],
    ]
    assert not_entered == [[]] * 5


def test_exits_once_z_is_back_above_minus_exit_z() -> None:
    strategy = MeanReversion(config(entry_z=1.9, exit_z=0.5), ("A",))
    prices = [10.0, 10.0, 10.0, 10.0, 9.0, 9.1, 9.6]
    emitted = run(strategy, np.array(prices)[:, None], ("A",))

    # t=5: window 10,10,10,9,9.1 -> z of 9.1 is about -0.7: still held.
    assert emitted[5] == []
    # t=6: window 10,10,9,9.1,9.6 -> z of 9.6 is about +0.4 >= -0.5: exit with weight 0.
    assert weights(emitted[6]) == [("A", 0.0)]
    assert strategy.held == {}


def test_short_side_mirrors_the_long_side_when_allowed() -> None:
    closes = np.array([[10.0], [10.0], [10.0], [10.0], [11.0], [10.9], [10.3]])

    long_only = run(MeanReversion(config(), ("A",)), closes, ("A",))
    with_shorts = run(MeanReversion(config(allow_short=True), ("A",)), closes, ("A",))

    assert all(intents == [] for intents in long_only)
    assert weights(with_shorts[4]) == [("A", -0.5)]
    assert with_shorts[5] == []
    assert weights(with_shorts[6]) == [("A", 0.0)]


def test_at_most_max_positions_most_stretched_first() -> None:
    symbols = ("A", "B", "C")
    closes = np.full((5, 3), 10.0)
    closes[:4, 2] = [10.0, 10.2, 9.8, 10.0]  # C is noisier: its drop gives a smaller |z|
    closes[4] = [9.0, 9.5, 9.0]
    strategy = MeanReversion(config(max_positions=1), symbols)

    emitted = run(strategy, closes, symbols)

    assert weights(emitted[4]) == [("A", 1.0)]  # A and B both z=-2; A first in the universe
    assert strategy.held == {"A": 1}


def test_flat_window_and_missing_bar_give_no_signal() -> None:
    symbols = ("A", "B")
    closes = np.array([[10.0, 10.0]] * 6)
    closes[5, 1] = np.nan
    strategy = MeanReversion(config(), symbols)

    emitted = run(strategy, closes, symbols)

    assert emitted == [[]] * 6
    assert np.isnan(strategy.last_zscore).all()


def reference(
    closes: np.ndarray,
    symbols: tuple[str, ...],
    window: int,
    entry: float,
    exit_: float,
    cap: int,
    short: bool,
) -> list[list[tuple[str, float]]]:
    """Plain-Python mean reversion: each symbol keeps its own list of closes (NaN appends nothing)."""
    history: list[list[float]] = [[] for _ in symbols]
    held: dict[int, int] = {}
    out = []
    for row in closes:
        z: dict[int, float] = {}
        for j, price in enumerate(row):
            if np.isnan(price):
                continue
            history[j].append(price)
            if len(history[j]) >= window:
                values = np.array(history[j][-window:])
                std = values.std()
                if std > 0:
                    z[j] = (price - values.mean()) / std
        intents = []
        exits = [
            j
            for j in sorted(held)
            if j in z and ((held[j] > 0 and z[j] >= -exit_) or (held[j] < 0 and z[j] <= exit_))
        ]
        candidates = [
            j
            for j in range(len(symbols))
            if j not in held and j in z and (z[j] <= -entry or (short and z[j] >= entry))
        ]
        for j in exits:
            del held[j]
            intents.append((symbols[j], 0.0))
        free = cap - len(held)
        chosen = sorted(sorted(candidates, key=lambda j: -abs(z[j]))[: max(free, 0)])
        for j in chosen:
            held[j] = 1 if z[j] < 0 else -1
            intents.append((symbols[j], held[j] / cap))
        out.append(intents)
    return out


@pytest.mark.parametrize("allow_short", [False, True])
def test_matches_a_reference_where_nan_bars_do_not_advance_history(allow_short: bool) -> None:
    rng = np.random.default_rng(33)
    closes = 40 * np.exp(np.cumsum(rng.normal(0, 0.02, (400, 10)), axis=0))
    closes[rng.random(closes.shape) < 0.06] = np.nan
    closes[:30, 4] = np.nan
    symbols = tuple(f"S{i}" for i in range(10))
    cfg = config(window_bars=12, entry_z=1.5, exit_z=0.2, max_positions=3, allow_short=allow_short)

    emitted = run(MeanReversion(cfg, symbols), closes, symbols)

    expected = reference(closes, symbols, 12, 1.5, 0.2, 3, allow_short)
    assert [weights(e) for e in emitted] == expected
    assert sum(len(e) for e in emitted) > 40


def test_state_round_trip_continues_identically() -> None:
    rng = np.random.default_rng(12)
    closes = 40 * np.exp(np.cumsum(rng.normal(0, 0.02, (300, 7)), axis=0))
    closes[rng.random(closes.shape) < 0.05] = np.nan
    symbols = tuple("ABCDEFG")
    cfg = config(window_bars=10, entry_z=1.5, exit_z=0.3, max_positions=3, allow_short=True)
    straight, first = MeanReversion(cfg, symbols), MeanReversion(cfg, symbols)
    for t in range(140):
        straight.on_bars(batch(t, closes[t], symbols))
        first.on_bars(batch(t, closes[t], symbols))

    resumed = MeanReversion(cfg, symbols)
    resumed.load_state(pickle.loads(pickle.dumps(first.state())))

    for t in range(140, 300):
        assert resumed.on_bars(batch(t, closes[t], symbols)) == straight.on_bars(
            batch(t, closes[t], symbols)
        ), t
    assert resumed.held == straight.held


def test_poisoned_future_bars_do_not_change_earlier_intents() -> None:
    rng = np.random.default_rng(13)
    closes = 40 * np.exp(np.cumsum(rng.normal(0, 0.02, (200, 6)), axis=0))
    poisoned = closes.copy()
    poisoned[120:] = rng.normal(1e6, 1e5, poisoned[120:].shape)
    poisoned[130:, 1] = np.nan
    symbols = tuple("ABCDEF")
    cfg = config(window_bars=10, entry_z=1.5, exit_z=0.3, max_positions=3)

    clean = run(MeanReversion(cfg, symbols), closes, symbols)
    dirty = run(MeanReversion(cfg, symbols), poisoned, symbols)

    assert clean[:120] == dirty[:120]
    assert any(clean[:120])
