"""Cross-sectional ranks of technical features: registration, hand-checked panels, ties, NaN."""

from __future__ import annotations

import numpy as np
import pytest

from amcp.features.cross_sectional import CROSS_SECTIONAL_FEATURES
from amcp.features.registry import REGISTRY, SeriesInputs
from amcp.features.technical import TECHNICAL_FEATURES


def test_registers_at_least_five_documented_ranks_of_technical_features() -> None:
    assert len(CROSS_SECTIONAL_FEATURES) >= 5
    for name in CROSS_SECTIONAL_FEATURES:
        spec = REGISTRY.cross_sectional(name)
        assert spec.op == "rank"
        assert spec.base in TECHNICAL_FEATURES or spec.base == "ROC20"
        assert spec.base in spec.doc


def test_rank_of_a_hand_checked_panel_with_ties_and_nan() -> None:
    # dates x symbols
    amihud = np.array([
        [0.3, 0.1, 0.2, 0.4],        # distinct: ranks 3, 1, 2, 4 of 4
        [0.5, 0.5, np.nan, 0.1],     # a tie and a NaN: 0.1 -> 1, the 0.5s share (2 + 3) / 2, of 3
        [np.nan, np.nan, np.nan, 7.0],  # one valid value: rank 1 of 1
        [np.nan] * 4,                 # nothing to rank
    ])
    expected = np.array([
        [3 / 4, 1 / 4, 2 / 4, 4 / 4],
        [2.5 / 3, 2.5 / 3, np.nan, 1 / 3],
        [np.nan, np.nan, np.nan, 1.0],
        [np.nan] * 4,
    ])
    np.testing.assert_allclose(REGISTRY.compute_cross_sectional("rank_amihud_20", amihud), expected)


def _bars(sigma: float, seed: int, n: int = 120) -> SeriesInputs:
    rng = np.random.default_rng(seed)
    close = 40.0 * np.exp(np.cumsum(rng.normal(0.0, sigma, n)))
    open_ = np.r_[40.0, close[:-1]]
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, sigma / 2, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, sigma / 2, n)))
    dates = np.datetime64("2015-01-02") + np.arange(n)
    return SeriesInputs(dates, open_, high, low, close, np.full(n, 1e5), np.full(n, np.nan))


def test_volatility_rank_orders_symbols_by_their_simulated_volatility() -> None:
    sigmas = (0.04, 0.01, 0.03, 0.02)
    base = np.column_stack([
        REGISTRY.compute(_bars(sigma, seed), ["yang_zhang_vol_20"]).values[:, 0]
        for seed, sigma in enumerate(sigmas)])
    ranks = REGISTRY.compute_cross_sectional("rank_yang_zhang_vol_20", base)
    assert np.isnan(ranks[:20]).all()  # no symbol has a full window yet
    np.testing.assert_allclose(ranks[-1], [1.0, 0.25, 0.75, 0.5])


def test_momentum_rank_is_one_for_the_weakest_20_day_return() -> None:
    n = 40
    drifts = (0.01, -0.02, 0.0, 0.03)  # per-bar log drift of each symbol
    base = []
    for drift in drifts:
        close = 10.0 * np.exp(drift * np.arange(n))
        bars = SeriesInputs(np.datetime64("2016-03-01") + np.arange(n), close, close, close, close,
                            np.full(n, 1e4), np.full(n, np.nan))
        base.append(REGISTRY.compute(bars, ["ROC20"]).values[:, 0])
    ranks = REGISTRY.compute_cross_sectional("rank_roc_20", np.column_stack(base))
    np.testing.assert_allclose(ranks[-1], [0.5, 1.0, 0.75, 0.25])


def test_rank_on_a_date_ignores_later_dates() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=(30, 8))
    ranks = REGISTRY.compute_cross_sectional("rank_rsi_14", base)
    altered = base.copy()
    altered[20:] = rng.normal(size=(10, 8))
    np.testing.assert_array_equal(REGISTRY.compute_cross_sectional("rank_rsi_14", altered)[:20], ranks[:20])


@pytest.mark.parametrize("name", CROSS_SECTIONAL_FEATURES)
def test_ranks_lie_in_zero_one_and_preserve_order(name: str) -> None:
    rng = np.random.default_rng(9)
    base = rng.normal(size=(5, 12))
    base[2, 3] = np.nan
    ranks = REGISTRY.compute_cross_sectional(name, base)
    valid = ~np.isnan(base)
    np.testing.assert_array_equal(np.isnan(ranks), ~valid)
    assert ((ranks[valid] > 0) & (ranks[valid] <= 1)).all()
    for row, rank_row in zip(base, ranks):
        ok = ~np.isnan(row)
        np.testing.assert_array_equal(np.argsort(row[ok]), np.argsort(rank_row[ok]))
