"""Tests for amcp.backtest.metrics: hand-computed values on tiny curves, pandas as an oracle."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from amcp.backtest.metrics import METRIC_NAMES, compute_metrics, drawdown_series, period_returns
from amcp.errors import DataError


def test_flat_curve_has_zero_everything_and_no_nan() -> None:
    metrics = compute_metrics(np.full(10, 100.0))

    assert set(metrics) == set(METRIC_NAMES)
    for name in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown", "calmar", "volatility"):
        assert metrics[name] == 0.0, name
    assert all(math.isfinite(v) for v in metrics.values())
    json.dumps(metrics, allow_nan=False)


def test_hand_computed_three_point_curve() -> None:
    # E = 100, 110, 99: r = +0.10, -0.10; mean 0, std (ddof 1) = sqrt(0.02)
    equity = np.array([100.0, 110.0, 99.0])

    m = compute_metrics(equity, periods_per_year=2.0)

    assert m["total_return"] == pytest.approx(-0.01)
    # years = 2 periods / 2 per year = 1 -> cagr = total return
    assert m["cagr"] == pytest.approx(-0.01)
    assert m["volatility"] == pytest.approx(math.sqrt(0.02) * math.sqrt(2.0))
    assert m["sharpe"] == pytest.approx(0.0, abs=1e-12)
    assert m["max_drawdown"] == pytest.approx(0.1)  # 99 / 110 - 1
    assert m["calmar"] == pytest.approx(-0.01 / 0.1)
    assert m["periods"] == 2.0
    np.testing.assert_allclose(period_returns(equity), [0.1, -0.1])


def test_hand_computed_sharpe_sortino_and_cagr() -> None:
    # r = +0.10, -0.05, +0.10 on E = 100, 110, 104.5, 114.95
    equity = np.array([100.0, 110.0, 104.5, 114.95])
    r = np.array([0.10, -0.05, 0.10])
    mean, std = r.mean(), r.std(ddof=1)
    downside = math.sqrt((0.05**2) / 3)

    m = compute_metrics(equity, periods_per_year=252.0)

    assert m["sharpe"] == pytest.approx(mean / std * math.sqrt(252))
    assert m["sortino"] == pytest.approx(mean / downside * math.sqrt(252))
    assert m["cagr"] == pytest.approx(1.1495 ** (252 / 3) - 1)
    assert m["max_drawdown"] == pytest.approx(0.05)


def test_rising_curve_has_zero_drawdown_calmar_and_sortino() -> None:
    m = compute_metrics(np.array([100.0, 101.0, 103.0, 104.0]))

    assert m["max_drawdown"] == 0.0
    assert m["calmar"] == 0.0  # no drawdown: defined as 0, not inf
    assert m["sortino"] == 0.0  # no downside: defined as 0, not inf
    assert m["sharpe"] > 0


def test_single_point_curve() -> None:
    m = compute_metrics(np.array([100.0]))

    assert m["total_return"] == 0.0 and m["cagr"] == 0.0 and m["turnover"] == 0.0
    assert m["periods"] == 0.0


def test_turnover_is_annual_notional_over_average_equity() -> None:
    equity = np.full(253, 1_000.0)  # 252 periods = one year

    m = compute_metrics(equity, traded_notional=5_000.0)

    assert m["turnover"] == pytest.approx(5.0)
    half = compute_metrics(np.full(127, 1_000.0), traded_notional=5_000.0)  # half a year
    assert half["turnover"] == pytest.approx(10.0)


def test_hit_rate_counts_winning_trades() -> None:
    m = compute_metrics(np.full(3, 1.0), trade_pnls=np.array([5.0, -1.0, 0.0, 2.0, np.nan]))

    assert m["hit_rate"] == pytest.approx(0.5)  # 2 winners of 4 finite trades; 0 is not a win
    assert m["trades"] == 4.0


def test_hit_rate_without_trades_is_zero() -> None:
    assert compute_metrics(np.full(3, 1.0))["hit_rate"] == 0.0
    assert compute_metrics(np.full(3, 1.0), trade_pnls=np.array([]))["hit_rate"] == 0.0


def test_exposure_is_mean_gross_over_equity() -> None:
    m = compute_metrics(np.array([100.0, 200.0]), gross_exposure=np.array([50.0, 200.0]))

    assert m["exposure"] == pytest.approx((0.5 + 1.0) / 2)


def test_exposure_shape_mismatch_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"gross_exposure has shape \(3,\), equity has \(2,\)"):
        compute_metrics(np.array([1.0, 2.0]), gross_exposure=np.ones(3))


def test_wipe_out_gives_minus_one_cagr_and_zero_returns_after() -> None:
    equity = np.array([100.0, 50.0, 0.0, 0.0])

    m = compute_metrics(equity)

    assert m["total_return"] == -1.0
    assert m["cagr"] == -1.0
    assert m["max_drawdown"] == 1.0
    np.testing.assert_allclose(period_returns(equity), [-0.5, -1.0, 0.0])


@pytest.mark.parametrize(
    ("equity", "message"),
    [
        (np.array([]), "non-empty 1-D"),
        (np.ones((2, 2)), "non-empty 1-D"),
        (np.array([1.0, np.nan]), "finite, got nan at index 1"),
        (np.array([0.0, 1.0]), "start above 0"),
    ],
)
def test_bad_equity_is_a_data_error(equity: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        compute_metrics(equity)


def test_drawdown_series_hand_computed() -> None:
    dd = drawdown_series(np.array([100.0, 120.0, 90.0, 130.0, 117.0]))

    np.testing.assert_allclose(dd, [0.0, 0.0, 0.25, 0.0, 0.1])


def test_metrics_match_an_independent_pandas_computation() -> None:
    rng = np.random.default_rng(42)
    equity = 1e6 * np.cumprod(1 + rng.normal(0.0004, 0.012, 1500))
    gross = equity * rng.uniform(0.5, 1.5, equity.size)
    pnls = rng.normal(10, 100, 300)
    ppy = 252.0

    m = compute_metrics(equity, ppy, gross_exposure=gross, traded_notional=3.3e7, trade_pnls=pnls)

    s = pd.Series(equity)
    r = s.pct_change().dropna()
    years = len(r) / ppy
    drawdown = 1 - s / s.cummax()
    downside = np.sqrt((r.clip(upper=0) ** 2).mean())
    cagr = (s.iloc[-1] / s.iloc[0]) ** (1 / years) - 1
    assert m["total_return"] == pytest.approx(s.iloc[-1] / s.iloc[0] - 1, rel=1e-12)
    assert m["cagr"] == pytest.approx(cagr, rel=1e-12)
    assert m["volatility"] == pytest.approx(r.std() * np.sqrt(ppy), rel=1e-12)
    assert m["sharpe"] == pytest.approx(r.mean() / r.std() * np.sqrt(ppy), rel=1e-12)
    assert m["sortino"] == pytest.approx(r.mean() / downside * np.sqrt(ppy), rel=1e-12)
    assert m["max_drawdown"] == pytest.approx(drawdown.max(), rel=1e-12)
    assert m["calmar"] == pytest.approx(cagr / drawdown.max(), rel=1e-12)
    assert m["turnover"] == pytest.approx(3.3e7 / years / s.mean(), rel=1e-12)
    assert m["hit_rate"] == pytest.approx((pd.Series(pnls) > 0).mean(), rel=1e-12)
    assert m["exposure"] == pytest.approx((pd.Series(gross) / s).mean(), rel=1e-12)
    np.testing.assert_allclose(drawdown_series(equity), drawdown.to_numpy(), rtol=0, atol=1e-15)
