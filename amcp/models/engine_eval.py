"""A signal's long-short book run through the event-driven backtest engine.

:func:`amcp.models.evaluate.long_short_backtest` prices the book vectorised: trades at the
close that produced the signal, weights rebalanced back every date, a flat cost per unit of
traded weight. Here the same signal trades through everything a live run goes through: the
``ml_signal`` strategy (:class:`~amcp.strategies.ml_signal.MLSignalStrategy`, the one that
trades the served model live) ranks the scores and emits target weights, then sizing (whole
shares of the strategy's capital), pre-trade risk, the OMS and the simulated venue (market
orders filled at the next session's open, ``cost_bps`` of adverse slippage on every fill,
Alpaca's regulatory fees on sells, fills capped at ``participation_rate`` of the bar's volume).

Only the source of the scores differs from live: :class:`PredictionScores` answers the
strategy's requests from a (dates × symbols) matrix of out-of-sample predictions instead of
asking the signal service. The engine runs over the sessions from the first date with a score
to the last one, so the strategy's rebalance schedule starts on the first scored date (as the
vectorised book's does).

Turnover is reported as the vectorised book's is: per session, the notional traded over twice
the previous session's equity (one-way share of the book), averaged over the sessions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from amcp._typing import FloatArray
from amcp.backtest.engine import BacktestEngine
from amcp.config import (
    AccountConfig,
    BacktestConfig,
    DataConfig,
    FeeConfig,
    MLSignalConfig,
    RiskConfig,
    SizingConfig,
    SlippageConfig,
    VenueConfig,
)
from amcp.data.bars import BarPanel
from amcp.models.base import ModelError
from amcp.strategies.ml_signal import MLSignalStrategy, SignalAnswer, SignalUnavailableError, requested_symbols

__all__ = ["ENGINE_METRICS", "EngineLongShort", "PredictionScores", "engine_long_short"]

ENGINE_METRICS: tuple[str, ...] = (
    "total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar", "turnover",
    "fills", "denials", "fees_usd",
)
"""Keys of :attr:`EngineLongShort.metrics`."""

_UNCAPPED = Decimal(10) ** 15


class PredictionScores:
    """A :class:`~amcp.strategies.ml_signal.SignalClient` answering from precomputed scores.

    Args:
        dates: shape (T,), strictly increasing session dates (``datetime64[D]``).
        symbols: the N column names of ``scores``.
        scores: shape (T, N), the score of each symbol known at each date's close (NaN: none).

    Raises:
        ModelError: if the shapes disagree or the dates are not strictly increasing.
    """

    def __init__(self, dates: np.ndarray, symbols: tuple[str, ...], scores: FloatArray) -> None:
        days = np.asarray(dates).astype("datetime64[D]")
        values = np.asarray(scores, dtype=np.float64)
        if values.shape != (days.size, len(symbols)):
            raise ModelError(f"scores have shape {values.shape}, expected (dates, symbols) = "
                             f"({days.size}, {len(symbols)})")
        if days.size > 1 and not (days[1:] > days[:-1]).all():
            raise ModelError("score dates must be strictly increasing")
        self._dates = days
        self._column = {s: j for j, s in enumerate(symbols)}
        self._scores = values
        self.requests = 0

    def scores(self, body: Mapping[str, Any], timeout_s: float) -> SignalAnswer:
        """The scores at ``body["as_of"]`` of the symbols the body asks for (None where unknown).

        Raises:
            SignalUnavailableError: if the date has no row of scores.
        """
        self.requests += 1
        day = np.datetime64(str(body["as_of"]), "D")
        row = int(np.searchsorted(self._dates, day))
        if row >= self._dates.size or self._dates[row] != day:
            raise SignalUnavailableError(f"no predictions for {day}")
        values = self._scores[row]
        answer: dict[str, float | None] = {}
        for symbol in requested_symbols(body):
            j = self._column.get(symbol)
            x = float(values[j]) if j is not None else math.nan
            answer[symbol] = x if math.isfinite(x) else None
        return SignalAnswer("predictions", answer)


@dataclass(frozen=True, eq=False)
class EngineLongShort:
    """The engine's run of a long-short book.

    Attributes:
        dates: shape (S,), the sessions run.
        equity: shape (S,), the account equity at each session's close.
        returns: shape (S,), ``equity[s] / equity[s-1] - 1`` (the first from the starting cash).
        turnover: shape (S,), notional traded at each session over twice the equity before it.
        metrics: :data:`ENGINE_METRICS` (``turnover``: the mean of ``turnover``).
        score_failures: rebalances at which fewer than two symbols had a score (positions held).
    """

    dates: np.ndarray
    equity: FloatArray
    returns: FloatArray
    turnover: FloatArray
    metrics: dict[str, float]
    score_failures: int


def engine_long_short(
    panel: BarPanel,
    signal: FloatArray,
    *,
    quantile: float = 0.2,
    rebalance_every: int = 1,
    cost_bps: float = 0.0,
    starting_cash_usd: float = 1_000_000.0,
    participation_rate: float | None = 0.05,
    fees: bool = True,
    periods_per_year: float = 252.0,
) -> EngineLongShort:
    """Run the long-short book of ``signal`` through the backtest engine (see the module docstring).

    Args:
        panel: the bars; ``signal`` is aligned to its dates and symbols.
        signal: shape (T, N) like the panel's closes, the score known at each date's close.
        quantile: share of the scored symbols held on each side (at most half of them).
        rebalance_every: sessions between rebalances, counted from the first scored date.
        cost_bps: adverse slippage on every fill, in basis points of its price.
        starting_cash_usd: the account's cash at the start.
        participation_rate: cap on a fill as a fraction of the bar's volume (None: no cap).
        fees: charge Alpaca's regulatory fees on sells (SEC fee, FINRA TAF).
        periods_per_year: for annualising.

    Raises:
        ModelError: if the shapes differ, no date has two scores, or a parameter is out of range.
    """
    scores = np.asarray(signal, dtype=np.float64)
    shape = (len(panel), len(panel.symbols))
    if scores.shape != shape:
        raise ModelError(f"signal has shape {scores.shape}, the panel {shape}")
    if not 0 < quantile <= 0.5 or rebalance_every < 1 or cost_bps < 0 or not starting_cash_usd > 0:
        raise ModelError(f"out of range: quantile {quantile} (0, 0.5], rebalance_every {rebalance_every} >= 1, "
                         f"cost_bps {cost_bps} >= 0, starting_cash_usd {starting_cash_usd} > 0")
    scored = np.flatnonzero(np.count_nonzero(np.isfinite(scores), axis=1) >= 2)
    if scored.size == 0:
        raise ModelError("no date has a score for two symbols: nothing to rank")
    first, last = int(scored[0]), int(scored[-1]) + 1
    window = panel.slice(first, last)
    strategy = MLSignalConfig(id="long_short", kind="ml_signal", history_bars=1, rebalance_bars=rebalance_every,
                              portfolio="long_short", quantile=quantile, min_scored=2)
    no_fee = Decimal(0)
    config = BacktestConfig(
        # The engine is handed its panel; the data section is required by the schema, never read.
        data=DataConfig(path="(in memory)"),
        account=AccountConfig(starting_cash_usd=Decimal(str(starting_cash_usd))),
        venue=VenueConfig(
            participation_rate=participation_rate,
            slippage=SlippageConfig(model="fixed_bps" if cost_bps else "none", bps=cost_bps),
            fees=FeeConfig() if fees else FeeConfig(sec_fee_per_million_usd=no_fee, finra_taf_per_share_usd=no_fee),
        ),
        # The book's size is the account's: per-order and per-position notional caps sized for a
        # 100k USD paper account would deny its trades, so they are lifted; the daily loss limits,
        # the collar and the throttle stay as a live run has them.
        risk=RiskConfig(max_order_quantity=_UNCAPPED, max_order_notional_usd=_UNCAPPED,
                        max_position_notional_usd=_UNCAPPED, max_gross_exposure_usd=_UNCAPPED),
        sizing=SizingConfig(cash_buffer_pct=0.0, min_trade_notional_usd=Decimal(0)),
        strategies=(strategy,),
    )
    engine = BacktestEngine(config, window)
    (trader,) = engine.plane.strategies[0].strategies
    if not isinstance(trader, MLSignalStrategy):  # the config above names one ml_signal strategy
        raise ModelError(f"the engine built a {type(trader).__name__}, not the ml_signal strategy")
    trader.client = PredictionScores(window.dates, panel.symbols, scores[first:last])
    result = engine.run()

    equity = np.asarray(result.equity, dtype=np.float64)
    before = np.concatenate(([starting_cash_usd], equity[:-1]))
    returns = np.where(before > 0, equity / np.where(before > 0, before, 1.0) - 1.0, 0.0)
    traded = np.zeros(len(window))
    at = {int(ts): s for s, ts in enumerate(window.ts_ns.tolist())}
    for fill in result.fills:
        traded[at[int(fill.ts_ns)]] += float(fill.last_quantity * fill.last_price)
    turnover = np.where(before > 0, traded / (2.0 * np.where(before > 0, before, 1.0)), 0.0)
    base = result.metrics(starting_cash_usd, periods_per_year)
    metrics = {key: float(base[key]) for key in
               ("total_return", "cagr", "volatility", "sharpe", "sortino", "max_drawdown", "calmar")}
    metrics.update(turnover=float(turnover.mean()), fills=float(len(result.fills)),
                   denials=float(len(result.denials)), fees_usd=float(sum(f.fee for f in result.fills)))
    return EngineLongShort(dates=window.dates, equity=equity, returns=returns, turnover=turnover,
                           metrics=metrics, score_failures=trader.failures)
