"""The long-short portfolio, the baselines and the leaderboard, against hand-worked books."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from amcp.models import ModelError
from amcp.models.evaluate import (
    leaderboard,
    long_short_backtest,
    long_short_weights,
    momentum_signal,
    next_period_returns,
    plot_cumulative_returns,
    to_markdown,
    write_leaderboard,
)


def test_the_top_and_bottom_quantiles_are_held_long_and_short_at_half_the_gross_each() -> None:
    signal = np.array([[4.0, 3.0, 2.0, 1.0, np.nan]])  # 4 symbols with a signal, q = 0.25 → k = 1

    weights = long_short_weights(signal, quantile=0.25)

    np.testing.assert_array_equal(weights, [[0.5, 0.0, 0.0, -0.5, 0.0]])


def test_a_constant_signal_holds_nothing() -> None:
    assert not long_short_weights(np.zeros((2, 6)), quantile=0.5).any()
    assert not long_short_weights(np.ones((1, 6)), quantile=0.2).any()


def test_returns_costs_and_turnover_of_a_hand_worked_book() -> None:
    # day 0: long A, short D. day 1 (not a rebalance date): the book is kept although the signal flips.
    # day 2: rebalance to long D, short A: sum |Δw| = 2 → turnover 1.0 (whole book replaced).
    signal = np.array([[4.0, 3, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4]])
    next_returns = np.array([[0.02, 0.0, 0.0, -0.02], [0.01, 0.0, 0.0, 0.03], [-0.01, 0.5, 0.5, 0.01]])

    result = long_short_backtest(signal, next_returns, quantile=0.25, rebalance_every=2, cost_bps=10)

    expected = np.array([
        0.5 * 0.02 + 0.5 * 0.02 - 0.001 * 1.0,   # build: traded 1.0
        0.5 * 0.01 - 0.5 * 0.03,                  # held, no trade
        0.5 * 0.01 + 0.5 * 0.01 - 0.001 * 2.0,    # flipped: traded 2.0
    ])
    np.testing.assert_allclose(result.returns, expected, rtol=1e-12)
    np.testing.assert_allclose(result.turnover, [0.5, 0.0, 1.0])
    assert result.metrics["total_return"] == pytest.approx(np.prod(1 + expected) - 1)
    assert result.metrics["turnover"] == pytest.approx(0.5)
    assert result.metrics["max_drawdown"] == pytest.approx(-expected[1])


def test_next_period_returns_and_momentum_are_point_in_time() -> None:
    close = np.array([[10.0, 20.0], [11.0, np.nan], [12.1, 22.0]])

    np.testing.assert_allclose(next_period_returns(close), [[0.1, np.nan], [0.1, np.nan], [np.nan, np.nan]])
    np.testing.assert_allclose(momentum_signal(close, 2), [[np.nan, np.nan], [np.nan, np.nan], [0.21, 0.1]])


def test_bad_portfolio_parameters_are_refused() -> None:
    with pytest.raises(ModelError, match="quantile"):
        long_short_weights(np.zeros((1, 4)), quantile=0.6)
    with pytest.raises(ModelError, match="must be one non-empty"):
        long_short_backtest(np.zeros((2, 3)), np.zeros((2, 4)))


def _row(model: str, rank_ic: float) -> dict[str, object]:
    return {"model": model, "rank_ic_mean": rank_ic, "rank_icir": 0.1, "ic_mean": 0.01, "icir": 0.1,
            "accuracy": 0.5, "auc": 0.5, "ls_total_return": 0.0, "ls_cagr": 0.0, "ls_sharpe": 0.0,
            "ls_max_drawdown": 0.0, "ls_turnover": 0.0, "bt_total_return": 0.0, "bt_sharpe": 0.0,
            "bt_max_drawdown": 0.0, "bt_turnover": 0.0, "bt_fills": 0.0, "folds": 2, "ic_dates": 10.0}


def test_the_leaderboard_ranks_by_mean_rank_ic_with_undefined_last_and_writes_csv_markdown(tmp_path) -> None:
    board = leaderboard([_row("zero", math.nan), _row("lgbm", 0.03), _row("rf", 0.05)])

    files = write_leaderboard(board, tmp_path)

    assert list(board["model"]) == ["rf", "lgbm", "zero"]
    assert list(pd.read_csv(files["csv"])["model"]) == ["rf", "lgbm", "zero"]
    markdown = (tmp_path / "leaderboard.md").read_text().splitlines()
    assert markdown[0].startswith("| model | rank_ic_mean") and markdown[2].startswith("| rf | 0.0500")
    assert "| zero | — |" in to_markdown(board)
    with pytest.raises(ModelError, match="named twice"):
        leaderboard([_row("rf", 0.1), _row("rf", 0.2)])


def test_the_chart_is_a_png_file(tmp_path) -> None:
    dates = np.array(["2020-01-02", "2020-01-03"], dtype="datetime64[D]")

    path = plot_cumulative_returns({"a": (dates, np.array([0.01, -0.02]))}, tmp_path / "c.png")

    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
