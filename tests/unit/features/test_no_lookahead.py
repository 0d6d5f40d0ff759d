"""No feature looks ahead: poisoning every bar after ``t`` leaves every value at or before ``t`` unchanged.

For every series feature of :func:`amcp.features.default_registry` (Alpha158, technical) and
every cross-sectional feature, on real bars (four stocks, 2010–2012, SPY as the market proxy) and
on a synthetic panel: every input after bar ``t`` — open, high, low, close, volume, vwap and the
market — is replaced by random values (some NaN, some zero), for ``t`` early (bar 2), inside the
first 60-bar window (bar 30), in the middle and late; the features are recomputed and each value
at bars ``0..t`` must equal the original. For cross-sectional features every symbol of the panel
is poisoned after ``t``.

Equality is bit for bit (NaN where and only where the original is NaN), with no tolerance: a
causal computation performs the same floating-point operations on the same inputs for bars
``<= t`` whatever follows them, so its values cannot differ even in the last bit. A tolerance
(say 1e-12 relative) would only be needed for a kernel whose rounding depends on data after
``t`` — e.g. a whole-array pairwise sum, which is itself a look-ahead worth flagging.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from amcp.features import default_registry
from amcp.features.registry import FeatureRegistry, SeriesInputs

from ._real_bars import on_market_calendar

SYMBOLS = ("AAPL", "JPM", "XOM", "GE")
MARKET = "SPY"
START, END = "2010-01-01", "2012-12-31"


Panel = list[SeriesInputs]


def _synthetic_panel(symbols: int = 6, bars: int = 400, seed: int = 7) -> Panel:
    """Random-walk bars with a partial vwap, a few gaps and zero volumes; the market is their mean."""
    rng = np.random.default_rng(seed)
    dates = np.arange(np.datetime64("2003-01-01"), np.datetime64("2003-01-01") + bars)
    closes = 40.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (bars, symbols)), axis=0))
    market = closes.mean(axis=1)
    panel = []
    for j in range(symbols):
        close = closes[:, j].copy()
        open_ = close * np.exp(rng.normal(0.0, 0.01, bars))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.01, bars)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.01, bars)))
        volume = rng.lognormal(13.0, 0.5, bars)
        volume[rng.choice(bars, 3, replace=False)] = 0.0
        vwap = np.where(rng.random(bars) < 0.5, (high + low + close) / 3.0, np.nan)
        columns = [open_, high, low, close, volume, vwap]
        gap = rng.choice(np.arange(100, bars), 2, replace=False)
        for column in columns:
            column[gap] = np.nan
        panel.append(SeriesInputs(dates, *columns, market))
    return panel


def _poison(inputs: SeriesInputs, t: int, rng: np.random.Generator) -> SeriesInputs:
    """``inputs`` with every value after bar ``t`` replaced by random values (10% NaN, 5% zero)."""
    def noise(column: np.ndarray) -> np.ndarray:
        out = column.copy()
        tail = len(out) - t - 1
        values = rng.lognormal(3.0, 2.0, tail)
        values[rng.random(tail) < 0.10] = np.nan
        values[rng.random(tail) < 0.05] = 0.0
        out[t + 1:] = values
        return out

    market = None if inputs.market is None else noise(inputs.market)
    return replace(inputs, open=noise(inputs.open), high=noise(inputs.high), low=noise(inputs.low),
                   close=noise(inputs.close), volume=noise(inputs.volume), vwap=noise(inputs.vwap),
                   market=market)


def _leaks(before: np.ndarray, after: np.ndarray, t: int, names: tuple[str, ...]) -> list[str]:
    """Names of the columns whose values at bars ``0..t`` differ between ``before`` and ``after``."""
    return [name for j, name in enumerate(names)
            if not np.array_equal(before[:t + 1, j], after[:t + 1, j], equal_nan=True)]


def _cuts(length: int) -> tuple[int, ...]:
    return (2, 30, length // 2, length - 20)


@pytest.fixture(scope="module")
def registry() -> FeatureRegistry:
    return default_registry()


@pytest.fixture(scope="module")
def real_panel(shared_daily: Path) -> Panel:
    return on_market_calendar(shared_daily, SYMBOLS, MARKET, START, END)


@pytest.fixture(scope="module")
def synthetic_panel() -> Panel:
    return _synthetic_panel()


def _check_series(registry: FeatureRegistry, panel: Panel, label: str) -> None:
    rng = np.random.default_rng(2024)
    names = registry.series_names
    leaks = []
    for k, inputs in enumerate(panel):
        clean = registry.compute(inputs).values
        for t in _cuts(len(inputs)):
            poisoned = registry.compute(_poison(inputs, t, rng)).values
            leaks += [f"{name} ({label} symbol {k}, t={t})" for name in _leaks(clean, poisoned, t, names)]
            if t == len(inputs) // 2:  # the poison bites: most features change after t
                changed = ~np.isclose(poisoned[t + 1:], clean[t + 1:], equal_nan=True).all(axis=0)
                assert changed.sum() >= 0.9 * len(names), f"only {changed.sum()} of {len(names)} changed"
    assert not leaks, "values at or before t changed when later bars were poisoned: " + ", ".join(leaks)


def test_series_features_on_real_bars_do_not_look_ahead(registry: FeatureRegistry, real_panel: Panel) -> None:
    _check_series(registry, real_panel, "real")


def test_series_features_on_synthetic_bars_do_not_look_ahead(registry: FeatureRegistry,
                                                             synthetic_panel: Panel) -> None:
    _check_series(registry, synthetic_panel, "synthetic")


def _base_panel(registry: FeatureRegistry, panel: Panel, bases: list[str]) -> dict[str, np.ndarray]:
    """Each base feature as a dates × symbols array."""
    matrices = [registry.compute(inputs, bases).values for inputs in panel]
    return {base: np.column_stack([m[:, j] for m in matrices]) for j, base in enumerate(bases)}


@pytest.mark.parametrize("panel_name", ["real_panel", "synthetic_panel"])
def test_cross_sectional_features_do_not_look_ahead(registry: FeatureRegistry, panel_name: str,
                                                    request: pytest.FixtureRequest) -> None:
    panel: Panel = request.getfixturevalue(panel_name)
    names = registry.cross_sectional_names
    assert names, "the default registry has no cross-sectional feature to check"
    bases = sorted({registry.cross_sectional(name).base for name in names})
    clean = _base_panel(registry, panel, bases)
    rng = np.random.default_rng(99)
    leaks = []
    for t in _cuts(len(panel[0])):
        poisoned = _base_panel(registry, [_poison(inputs, t, rng) for inputs in panel], bases)
        for name in names:
            base = registry.cross_sectional(name).base
            before = registry.compute_cross_sectional(name, clean[base])
            after = registry.compute_cross_sectional(name, poisoned[base])
            leaks += [f"{name} (t={t}, symbol {j})" for j in range(len(panel))
                      if _leaks(before[:, [j]], after[:, [j]], t, (name,))]
    assert not leaks, "cross-sectional values at or before t changed after poisoning: " + ", ".join(leaks)


def test_values_at_t_equal_those_computed_from_bars_up_to_t_only(registry: FeatureRegistry,
                                                                synthetic_panel: Panel) -> None:
    inputs = synthetic_panel[0]
    full = registry.compute(inputs).values
    leaks = []
    for t in _cuts(len(inputs)):
        known = registry.compute(inputs.head(t + 1)).values
        leaks += [f"{name} (t={t})" for name in _leaks(full, known, t, registry.series_names)]
    assert not leaks, "values differ from those computed on the bars known at t: " + ", ".join(leaks)


def test_the_poisoning_check_catches_features_that_peek_ahead(synthetic_panel: Panel) -> None:
    leaky = FeatureRegistry()

    @leaky.register("next_return", window=1, group="leak")
    def next_return(b: SeriesInputs) -> np.ndarray:
        """close[t+1]/close[t] - 1: uses tomorrow's close."""
        return np.append(b.close[1:] / b.close[:-1] - 1.0, np.nan)

    @leaky.register("close_over_sample_mean", window=1, group="leak")
    def close_over_sample_mean(b: SeriesInputs) -> np.ndarray:
        """close / mean(all closes): normalised with the whole sample."""
        return b.close / np.nanmean(b.close)

    @leaky.register("honest_return", window=2, group="leak")
    def honest_return(b: SeriesInputs) -> np.ndarray:
        """close[t]/close[t-1] - 1."""
        return np.insert(b.close[1:] / b.close[:-1] - 1.0, 0, np.nan)

    inputs = synthetic_panel[0]
    t = len(inputs) // 2
    with np.errstate(divide="ignore", invalid="ignore"):  # the poison holds zeros
        before = leaky.compute(inputs).values
        after = leaky.compute(_poison(inputs, t, np.random.default_rng(5))).values
    assert _leaks(before, after, t, leaky.series_names) == ["next_return", "close_over_sample_mean"]


def test_the_check_covers_every_registered_feature(registry: FeatureRegistry) -> None:
    # the tests above iterate registry.series_names and registry.cross_sectional_names: make sure
    # those are every feature the default registry holds, Alpha158 included
    assert set(registry.names) == set(registry.series_names) | set(registry.cross_sectional_names)
    assert len(registry.group("alpha158")) == 158
    assert len(registry.series_names) > 158
