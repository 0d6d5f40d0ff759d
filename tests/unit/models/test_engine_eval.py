"""The long-short book through the backtest engine, held against the vectorised book it must reproduce."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from amcp.data.bars import BarPanel, session_close_ns
from amcp.models.base import ModelError
from amcp.models.engine_eval import PredictionScores, engine_long_short
from amcp.models.evaluate import long_short_backtest, next_period_returns
from amcp.strategies.ml_signal import SignalUnavailableError

CASH = 1e8


def _bars(close: np.ndarray, open_: np.ndarray | None = None) -> BarPanel:
    """Bars of ``close`` on business days from 2021-01-04; the open is the previous close unless given."""
    days = pd.bdate_range("2021-01-04", periods=close.shape[0]).to_numpy().astype("datetime64[D]").astype(np.int64)
    opens = np.vstack([close[:1], close[:-1]]) if open_ is None else open_
    symbols = tuple(f"S{i:02d}" for i in range(close.shape[1]))
    return BarPanel(symbols, session_close_ns(days), opens.copy(), np.maximum(opens, close), np.minimum(opens, close),
                    close.copy(), np.full(close.shape, 1e12))


@pytest.fixture(scope="module")
def market() -> tuple[BarPanel, np.ndarray, np.ndarray]:
    """20 symbols × 250 sessions of ~1000 USD random walks (open = previous close, ample volume);
    the signal is the next return plus noise, so the book trades every day and earns."""
    rng = np.random.default_rng(0)
    close = 1000.0 * np.cumprod(1 + rng.normal(0, 0.01, (250, 20)), axis=0)
    panel = _bars(close)
    returns = next_period_returns(close)
    return panel, np.nan_to_num(returns) + rng.normal(0, 0.02, close.shape), returns


def _engine(panel: BarPanel, signal: np.ndarray, **kwargs: object):
    options = dict(quantile=0.2, rebalance_every=1, cost_bps=0.0, starting_cash_usd=CASH, participation_rate=None,
                   fees=False)
    options.update(kwargs)
    return engine_long_short(panel, signal, **options)


# --------------------------------------------------------------------------- PredictionScores


def _client() -> PredictionScores:
    dates = np.array(["2021-01-04", "2021-01-05", "2021-01-07"], dtype="datetime64[D]")
    scores = np.array([[1.0, 2.0, np.nan], [3.0, np.nan, 4.0], [5.0, 6.0, 7.0]])
    return PredictionScores(dates, ("A", "B", "C"), scores)


def test_prediction_scores_answer_the_as_of_row_with_none_where_unknown() -> None:
    client = _client()

    answer = client.scores({"as_of": "2021-01-05", "bars": {"A": [], "B": [], "C": [], "Z": []}}, 1.0)

    assert answer.version == "predictions"
    assert dict(answer.scores) == {"A": 3.0, "B": None, "C": 4.0, "Z": None}  # B: NaN, Z: not a column
    assert dict(client.scores({"as_of": "2021-01-07", "bars": {"C": []}}, 1.0).scores) == {"C": 7.0}
    assert client.requests == 2


@pytest.mark.parametrize("day", ["2021-01-06", "2021-01-01", "2021-01-08"])  # a gap, before, after
def test_prediction_scores_refuse_a_date_without_a_row(day: str) -> None:
    with pytest.raises(SignalUnavailableError, match=f"no predictions for {day}"):
        _client().scores({"as_of": day, "bars": {"A": []}}, 1.0)


def test_prediction_scores_reject_a_bad_shape_or_unordered_dates() -> None:
    dates = np.array(["2021-01-04", "2021-01-05"], dtype="datetime64[D]")

    with pytest.raises(ModelError, match=r"shape \(2, 3\), expected \(dates, symbols\) = \(2, 2\)"):
        PredictionScores(dates, ("A", "B"), np.zeros((2, 3)))
    with pytest.raises(ModelError, match="strictly increasing"):
        PredictionScores(dates[::-1], ("A", "B"), np.zeros((2, 2)))
    with pytest.raises(ModelError, match="strictly increasing"):
        PredictionScores(dates[[0, 0]], ("A", "B"), np.zeros((2, 2)))


# --------------------------------------------------------------------------- against the vectorised book
#
# With open[t] = close[t-1], the engine's fill at the next open is the vectorised book's trade at
# the close, so the engine's session s+1 is the vectorised date s: engine returns[1:] against
# vectorised returns[:-1] (the last date's signal is never filled: the engine stops at the last
# scored session). What is left is the engine's realism:
# - whole shares: a position of ~1e8 / 8 USD at ~1000 USD is ~12,500 shares, rounded toward zero,
#   so the book is under-invested by ~4e-5 of its size. Over 249 sessions this costs ~3e-5 of
#   log growth (measured on seeds 0-2: 2.9e-5 to 3.1e-5); the tolerance is 1e-4.
# - with slippage, each slipped price is rounded to the cent against the trader (up to 0.1 bp of a
#   1000 USD price, 0.05 bp on average, i.e. 0.5% of a 10 bp cost), and the engine also pays on
#   the trades that take drifted positions back to their weights, which the vectorised cost omits.
#   Measured: the engine's cost drag is 0.39-0.46% larger; its log growth 1.6e-3 to 1.8e-3 below;
#   tolerances 1.5% and 3e-3.
# - turnover: the engine counts those drift trades and the vectorised formula does not; measured
#   at most 0.0087 apart on any session, the means 0.14% apart; tolerances 0.015 and 1%.


@pytest.fixture(scope="module")
def both_books(market):
    panel, signal, returns = market
    return {cost: (_engine(panel, signal, cost_bps=cost),
                   long_short_backtest(signal, returns, quantile=0.2, rebalance_every=1, cost_bps=cost))
            for cost in (0.0, 10.0)}


def test_daily_rebalanced_the_engine_earns_the_vectorised_return(both_books) -> None:
    for cost, tolerance in ((0.0, 1e-4), (10.0, 3e-3)):
        engine, book = both_books[cost]
        vectorised = np.prod(1 + book.returns[:-1]) - 1

        assert vectorised > 1.0  # a real book: the test would not pass on a flat one
        assert engine.equity.size == engine.returns.size == 250 and engine.returns[0] == 0.0
        assert np.log1p(engine.metrics["total_return"]) == pytest.approx(np.log1p(vectorised), abs=tolerance)
        assert np.corrcoef(engine.returns[1:], book.returns[:-1])[0, 1] > 0.99
        assert engine.metrics["total_return"] == pytest.approx(engine.equity[-1] / CASH - 1, rel=1e-9)
        assert engine.score_failures == 0 and engine.metrics["denials"] == 0


def test_daily_rebalanced_the_engine_trades_the_vectorised_turnover(both_books) -> None:
    engine, book = both_books[0.0]

    assert engine.turnover[0] == 0.0  # the first signal fills at the second session's open
    assert engine.turnover[1] == pytest.approx(0.5, abs=1e-3)  # the initial build: half the book each side
    assert np.abs(engine.turnover[1:] - book.turnover[:-1]).max() < 0.015
    assert engine.turnover[1:].mean() == pytest.approx(book.turnover[:-1].mean(), rel=0.01)
    assert engine.metrics["fills"] > 250 * 4  # every session trades several names


def test_slippage_costs_the_engine_what_the_vectorised_cost_predicts(both_books) -> None:
    (free, free_book), (costly, costly_book) = both_books[0.0], both_books[10.0]
    engine_drag = np.log1p(free.metrics["total_return"]) - np.log1p(costly.metrics["total_return"])
    book_drag = np.log1p(np.prod(1 + free_book.returns[:-1]) - 1) - np.log1p(np.prod(1 + costly_book.returns[:-1]) - 1)

    assert book_drag > 0.3  # 10 bp on ~1.6 units of weight a day
    assert engine_drag == pytest.approx(book_drag, rel=0.015)
    assert engine_drag >= book_drag  # the cent rounding only ever adds cost


def test_rebalancing_weekly_stays_close_to_the_vectorised_book(market) -> None:
    panel, signal, returns = market
    engine = _engine(panel, signal, rebalance_every=5)
    book = long_short_backtest(signal, returns, quantile=0.2, rebalance_every=5)

    # Between rebalances the engine holds its shares while the vectorised book is rebalanced back
    # to its weights every day, so only the rebalance sessions trade and the returns merely agree.
    traded = np.flatnonzero(engine.turnover > 0)
    assert set(traded.tolist()) <= set(range(1, 250, 5))
    assert np.corrcoef(engine.returns[1:], book.returns[:-1])[0, 1] > 0.99


# --------------------------------------------------------------------------- missing scores


def test_a_signal_without_two_scores_on_any_date_is_refused(market) -> None:
    panel, signal, _ = market
    nothing = np.full(signal.shape, np.nan)
    one_symbol = nothing.copy()
    one_symbol[:, 3] = signal[:, 3]

    for bad in (nothing, one_symbol):
        with pytest.raises(ModelError, match="no date has a score for two symbols"):
            _engine(panel, bad)
    with pytest.raises(ModelError, match=r"signal has shape \(250, 19\), the panel \(250, 20\)"):
        _engine(panel, signal[:, 1:])
    with pytest.raises(ModelError, match="out of range: quantile 0.6"):
        _engine(panel, signal, quantile=0.6)


def test_the_engine_runs_from_the_first_to_the_last_scored_session(market) -> None:
    panel, signal, _ = market
    partial = signal.copy()
    partial[:30] = np.nan
    partial[200:] = np.nan

    engine = _engine(panel, partial)

    assert engine.dates[0] == panel.dates[30] and engine.dates[-1] == panel.dates[199] and engine.dates.size == 170
    assert engine.score_failures == 0


def test_positions_are_held_through_sessions_without_scores(market) -> None:
    panel, signal, _ = market
    gap = signal.copy()
    gap[100:120] = np.nan  # no prediction for 20 sessions in the middle

    engine = _engine(panel, gap)

    assert engine.score_failures == 20  # asked again every session, refused every time
    # Signals of dates 100-119 would fill at sessions 101-120: nothing trades there, but the
    # book is held, so equity keeps moving; trading resumes with the scores of date 120.
    assert (engine.turnover[101:121] == 0).all()
    assert (np.abs(engine.returns[101:121]) > 0).all()
    assert engine.turnover[121] > 0.1
    assert engine.turnover[1:101].min() > 0.1 and np.isfinite(engine.metrics["sharpe"])


# --------------------------------------------------------------------------- next-open fills


def test_the_engine_fills_at_the_next_open_not_at_the_signal_close() -> None:
    close = np.full((10, 4), 1000.0)
    open_ = close.copy()
    open_[1, 0], close[1:, 0] = 1100.0, 1120.0  # S00 gaps up 10% overnight, then gains 1.8% in the session
    open_[2:, 0] = 1120.0
    panel = _bars(close, open_)
    signal = np.tile([4.0, 3.0, 2.0, 1.0], (10, 1))  # long S00, short S03 (quantile 0.25: one name a side)

    engine = _engine(panel, signal, quantile=0.25)
    book = long_short_backtest(signal, next_period_returns(close), quantile=0.25)

    # Close to close the long earns the whole 12% move (half the book: +6%). The engine sizes the
    # order at the signal's close (half the equity / 1000 USD a share) but buys at the gapped open,
    # so it earns only the session's 1120 - 1100 on those shares; later sessions are flat.
    inside_the_session = 0.5 * CASH / 1000 * (1120 - 1100) / CASH
    assert book.returns[0] == pytest.approx(0.06)
    assert engine.returns[1] == pytest.approx(inside_the_session, rel=1e-9)
    assert engine.metrics["total_return"] == pytest.approx(inside_the_session, rel=1e-9)
    assert engine.metrics["total_return"] < np.prod(1 + book.returns[:-1]) - 1 - 0.04
