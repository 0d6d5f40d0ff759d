"""What a signal is worth as a portfolio: a long-short backtest, naive baselines, a leaderboard and a chart.

The long-short portfolio here is computed vectorised over a dates × symbols panel — fast, per
fold, with idealised trading (at the signal's close, constant weights, a flat cost). Its equity
curve goes through the engine's metrics (:func:`amcp.backtest.metrics.compute_metrics`). The same
book run through the event-driven engine (next-open fills, whole shares, risk, fees) is
:func:`amcp.models.engine_eval.engine_long_short`.

Portfolio, for a signal ``S[t, i]`` known at the close of date ``t`` and the next-period return
``R[t, i] = close[t+1, i] / close[t, i] - 1``:

- on each rebalance date (every ``rebalance_every``-th date, the first included) the ``k =
  max(1, floor(q × n_t))`` symbols with the highest signal are held long and the ``k`` lowest
  short, ``n_t`` being the symbols with a finite signal (ties take their average rank and are
  held together; when the two sides would share a symbol — a constant signal — nothing is held); each long weighs ``+G / (2k)`` and each short ``-G / (2k)``,
  ``G`` the gross exposure (dollar neutral); between rebalances the weights are kept (a
  constant-mix book, rebalanced back to them each day);
- trades happen at the close of date ``t`` (Qlib's default deal price), so
  ``r_t = Σ_i w[t, i] × R[t, i] − c × Σ_i |w[t, i] − w[t−1, i]|`` with ``c = cost_bps / 10⁴``
  (a missing ``R`` counts as 0: a symbol that stops trading is marked flat);
- ``turnover_t = Σ_i |w[t, i] − w[t−1, i]| / (2G)``: the one-way share of the book traded
  (1.0 = the whole book replaced); the first date's turnover is the initial build.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from amcp._typing import FloatArray
from amcp.backtest.metrics import compute_metrics
from amcp.models.base import ModelError

__all__ = [
    "ENGINE_COLUMNS",
    "LEADERBOARD_COLUMNS",
    "LongShortResult",
    "leaderboard",
    "long_short_backtest",
    "long_short_weights",
    "momentum_signal",
    "next_period_returns",
    "plot_cumulative_returns",
    "to_markdown",
    "write_leaderboard",
]

ENGINE_COLUMNS: tuple[str, ...] = ("bt_total_return", "bt_sharpe", "bt_max_drawdown", "bt_turnover", "bt_fills")
"""The leaderboard's columns from the long-short book run through the backtest engine
(:mod:`amcp.models.engine_eval`); NaN where it was not run."""

LEADERBOARD_COLUMNS: tuple[str, ...] = (
    "model", "rank_ic_mean", "rank_icir", "ic_mean", "icir", "accuracy", "auc",
    "ls_total_return", "ls_cagr", "ls_sharpe", "ls_max_drawdown", "ls_turnover", *ENGINE_COLUMNS, "folds", "ic_dates",
)
"""Columns of :func:`leaderboard`, in display order (``ls_*``: the vectorised book; ``bt_*``: the engine's)."""


@dataclass(frozen=True, eq=False)
class LongShortResult:
    """A long-short backtest: per-date weights, net returns and turnover, and summary metrics.

    Attributes:
        weights: shape (T, N), the book held after the close of each date.
        returns: shape (T,), the net return earned from each date's close to the next.
        turnover: shape (T,), the one-way share of the book traded at each date's close.
        metrics: ``total_return``, ``cagr``, ``volatility``, ``sharpe``, ``sortino``,
            ``max_drawdown``, ``calmar`` (of the equity curve ``Π (1 + r_t)``) and ``turnover``
            (mean daily one-way turnover).
    """

    weights: FloatArray
    returns: FloatArray
    turnover: FloatArray
    metrics: dict[str, float]


def next_period_returns(close: FloatArray) -> FloatArray:
    """``R[t, i] = close[t+1, i] / close[t, i] − 1`` (NaN on the last date or where a close is missing or ≤ 0)."""
    c = np.asarray(close, dtype=np.float64)
    if c.ndim != 2:
        raise ModelError(f"close must be a (dates, symbols) array, got shape {c.shape}")
    out = np.full(c.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        valid = (c[:-1] > 0) & (c[1:] > 0)
        out[:-1] = np.where(valid, c[1:] / c[:-1] - 1.0, np.nan)
    return out


def momentum_signal(close: FloatArray, window: int) -> FloatArray:
    """The naive momentum baseline: ``close[t] / close[t − window] − 1`` (point in time; NaN when unknown)."""
    if window < 1:
        raise ModelError(f"momentum window must be at least 1, got {window}")
    c = np.asarray(close, dtype=np.float64)
    out = np.full(c.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        past, now = c[:-window], c[window:]
        out[window:] = np.where((past > 0) & (now > 0), now / past - 1.0, np.nan)
    return out


def _target_weights(row: FloatArray, quantile: float, gross_exposure: float) -> FloatArray:
    weights = np.zeros(row.size)
    finite = np.flatnonzero(np.isfinite(row))
    n = finite.size
    k = max(1, int(math.floor(quantile * n)))
    if n < 2 * k:
        return weights
    ranks = pd.Series(row[finite]).rank(method="average").to_numpy()
    longs = finite[ranks > n - k + 0.5 - 1e-9]
    shorts = finite[ranks < k + 0.5 + 1e-9]
    if longs.size and shorts.size and not np.intersect1d(longs, shorts).size:
        weights[longs] = gross_exposure / (2.0 * longs.size)
        weights[shorts] = -gross_exposure / (2.0 * shorts.size)
    return weights


def long_short_weights(signal: FloatArray, *, quantile: float = 0.2, rebalance_every: int = 1,
                       gross_exposure: float = 1.0) -> FloatArray:
    """The long-short book of the module docstring for each date of ``signal`` (shape (T, N)).

    Raises:
        ModelError: if ``quantile`` is not in (0, 0.5], ``rebalance_every < 1`` or ``gross_exposure <= 0``.
    """
    s = np.asarray(signal, dtype=np.float64)
    if s.ndim != 2:
        raise ModelError(f"signal must be a (dates, symbols) array, got shape {s.shape}")
    if not 0 < quantile <= 0.5:
        raise ModelError(f"quantile must be in (0, 0.5], got {quantile}")
    if rebalance_every < 1:
        raise ModelError(f"rebalance_every must be at least 1, got {rebalance_every}")
    if not gross_exposure > 0:
        raise ModelError(f"gross_exposure must be > 0, got {gross_exposure}")
    weights = np.zeros(s.shape)
    for t in range(s.shape[0]):
        if t % rebalance_every == 0:
            weights[t] = _target_weights(s[t], quantile, gross_exposure)
        else:
            weights[t] = weights[t - 1]
    return weights


def long_short_backtest(signal: FloatArray, next_returns: FloatArray, *, quantile: float = 0.2,
                        rebalance_every: int = 1, cost_bps: float = 0.0, gross_exposure: float = 1.0,
                        periods_per_year: float = 252.0) -> LongShortResult:
    """Backtest the long-short portfolio of ``signal`` (see the module docstring).

    Args:
        signal: shape (T, N), NaN where a symbol has no signal.
        next_returns: shape (T, N), :func:`next_period_returns` of the closes.
        quantile: share of the symbols held on each side.
        rebalance_every: dates between rebalances.
        cost_bps: cost per unit of traded weight, in basis points.
        gross_exposure: sum of absolute weights.
        periods_per_year: for annualising (252 for daily dates).

    Raises:
        ModelError: if the shapes differ, the panel is empty or a parameter is out of range.
    """
    s = np.asarray(signal, dtype=np.float64)
    r = np.asarray(next_returns, dtype=np.float64)
    if s.shape != r.shape or s.ndim != 2 or s.shape[0] == 0:
        raise ModelError(f"signal {s.shape} and next_returns {r.shape} must be one non-empty (dates, symbols) shape")
    if cost_bps < 0:
        raise ModelError(f"cost_bps must be >= 0, got {cost_bps}")
    weights = long_short_weights(s, quantile=quantile, rebalance_every=rebalance_every, gross_exposure=gross_exposure)
    traded = np.abs(np.diff(weights, axis=0, prepend=0.0)).sum(axis=1)
    returns = (weights * np.nan_to_num(r, nan=0.0)).sum(axis=1) - cost_bps / 1e4 * traded
    equity = np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    if equity[-1] <= 0 or not np.isfinite(equity).all():
        equity = np.maximum(np.nan_to_num(equity, nan=0.0), 0.0)
        equity[0] = 1.0
    engine_metrics = compute_metrics(equity, periods_per_year=periods_per_year)
    turnover = traded / (2.0 * gross_exposure)
    metrics = {key: engine_metrics[key] for key in
               ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar")}
    metrics["turnover"] = float(turnover.mean())
    return LongShortResult(weights=weights, returns=returns, turnover=turnover, metrics=metrics)


# --------------------------------------------------------------------------- leaderboard


def leaderboard(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per model, in :data:`LEADERBOARD_COLUMNS` order, best mean rank IC first.

    Raises:
        ModelError: if a row lacks a column or names a model twice.
    """
    frame = pd.DataFrame(list(rows))
    missing = sorted(set(LEADERBOARD_COLUMNS) - set(frame.columns)) if len(frame) else []
    if missing:
        raise ModelError(f"leaderboard rows lack columns {missing}")
    if frame.empty:
        return pd.DataFrame(columns=list(LEADERBOARD_COLUMNS))
    if frame["model"].duplicated().any():
        raise ModelError(f"leaderboard: models named twice: {sorted(frame.loc[frame['model'].duplicated(), 'model'])}")
    frame = frame[list(LEADERBOARD_COLUMNS)]
    return frame.sort_values("rank_ic_mean", ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def to_markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table of ``frame`` (floats to ``digits`` places, NaN shown as ``—``)."""

    def cell(value: Any) -> str:
        if isinstance(value, (float, np.floating)):
            return "—" if not math.isfinite(float(value)) else f"{float(value):.{digits}f}"
        return str(value)

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def write_leaderboard(frame: pd.DataFrame, directory: str | Path) -> dict[str, str]:
    """Write ``leaderboard.csv`` and ``leaderboard.md`` into ``directory``; return their paths by format."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "leaderboard.csv", index=False)
    (folder / "leaderboard.md").write_text(to_markdown(frame))
    return {"csv": str(folder / "leaderboard.csv"), "markdown": str(folder / "leaderboard.md")}


def plot_cumulative_returns(curves: Mapping[str, tuple[npt.ArrayLike, FloatArray]], path: str | Path,
                            title: str = "Long-short cumulative return, out of sample") -> str:
    """Plot ``Π (1 + r) − 1`` of each model's daily returns on one chart (PNG, matplotlib Agg); return the path.

    Args:
        curves: model name → (dates, daily net returns).
        path: the PNG file to write.
        title: the chart title.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(10, 5.5), dpi=110)
    try:
        for name, (dates, returns) in curves.items():
            axes.plot(pd.to_datetime(np.asarray(dates)), np.cumprod(1.0 + np.asarray(returns)) - 1.0, label=name,
                      linewidth=1.2)
        axes.axhline(0.0, color="grey", linewidth=0.6)
        axes.set_title(title)
        axes.set_ylabel("cumulative return")
        axes.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        axes.legend(loc="best", fontsize=8)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(target)
    finally:
        plt.close(figure)
    return str(target)
