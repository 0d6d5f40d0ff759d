"""LiveBarBatcher: minute bars in, one daily batch per closed session out, exactly like the panel's."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import yaml

from amcp.config import TradeConfig, parse_config
from amcp.data.bars import BarPanel, load_daily_bars
from amcp.data.calendar import TradingCalendar
from amcp.domain.data import Bar, BarBatch
from amcp.engine.components import StrategyGroup
from amcp.engine.invoker import LocalInvoker
from amcp.engine.live_cycles import LiveBarBatcher, next_session, warm_up
from amcp.errors import DataError

ROOT = Path(__file__).resolve().parents[3]
MINUTE_NS = 60_000_000_000
CALENDAR = TradingCalendar()
SYMBOLS = ("AAPL", "MSFT", "SPY")


def _open_close_ns(day: date) -> tuple[int, int]:
    opens, closes = CALENDAR.opens_closes_ns(day, day)
    return int(opens[0]), int(closes[0])


def _bar(symbol: str, ts_ns: int, price: float, volume: float = 100.0) -> Bar:
    return Bar(symbol, ts_ns, price, price, price, price, volume)


def minute_bars(batch: BarBatch, day: date) -> list[Bar]:
    """Regular-hours minute bars whose aggregate is ``batch``'s daily bar, in time order.

    Per symbol: the open at the open, the high and the low in the next two minutes, the close in
    the last minute; the volume split in two whole parts (exact in floating point).
    """
    open_ns, close_ns = _open_close_ns(day)
    stamps = (open_ns, open_ns + MINUTE_NS, open_ns + 2 * MINUTE_NS, close_ns - MINUTE_NS)
    bars: list[Bar] = []
    for i, symbol in enumerate(batch.symbols):
        daily = batch.bar(i)
        if daily is None:
            continue
        first_volume = float(daily.volume // 2)
        prices = (daily.open, daily.high, daily.low, daily.close)
        volumes = (first_volume, 0.0, 0.0, daily.volume - first_volume)
        bars.extend(Bar(symbol, ts, p, p, p, p, v) for ts, p, v in zip(stamps, prices, volumes))
    return sorted(bars, key=lambda bar: (bar.ts_ns, bar.symbol))


def _feed(batcher: LiveBarBatcher, bars: list[Bar]) -> list[BarBatch]:
    return [batch for bar in bars for batch in batcher.on_bar(bar)]


def _assert_same_batch(live: BarBatch, replayed: BarBatch) -> None:
    assert live.ts_ns == replayed.ts_ns and live.symbols == replayed.symbols
    for name in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(live, name), getattr(replayed, name), err_msg=name)


@pytest.fixture(scope="module")
def panel() -> BarPanel:
    config = parse_config(yaml.safe_load((ROOT / "configs/live.yaml").read_text()), TradeConfig)
    data = config.data.model_copy(update={"path": str(ROOT / "data/sample/daily_bars.parquet"),
                                          "end": date(2010, 7, 8)})
    return load_daily_bars(data)[0]


def _day(panel: BarPanel, index: int) -> date:
    return date.fromisoformat(str(panel.dates[index]))


# ------------------------------------------------------------------ aggregation


def test_session_minute_bars_aggregate_to_the_panel_batch_of_that_day(panel: BarPanel) -> None:
    day = _day(panel, 100)
    batcher = LiveBarBatcher(panel.symbols, day)

    during = _feed(batcher, minute_bars(panel.batch(100), day))
    after_close = batcher.on_bar(_bar("SPY", _open_close_ns(day)[1], 1.0))  # an after-hours bar

    assert during == [] and len(after_close) == 1
    _assert_same_batch(after_close[0], panel.batch(100))
    assert batcher.stats()["extended_hours_bars"] == 1 and batcher.next_session == _day(panel, 101)


def test_a_symbol_without_bars_is_nan_in_every_array_like_the_panel() -> None:
    day = date(2024, 3, 5)
    open_ns, close_ns = _open_close_ns(day)
    batcher = LiveBarBatcher(SYMBOLS, day)

    _feed(batcher, [_bar("AAPL", open_ns, 170.0), _bar("SPY", open_ns, 510.0)])
    (batch,) = batcher.on_bar(_bar("AAPL", close_ns + MINUTE_NS, 1.0))

    for name in ("open", "high", "low", "close", "volume"):
        assert np.isnan(getattr(batch, name)[1]), name
    assert batch.bar_count == 2 and batch.bar(1) is None


def test_out_of_order_bars_take_open_from_the_earliest_and_close_from_the_latest_minute() -> None:
    day = date(2024, 3, 5)
    open_ns, close_ns = _open_close_ns(day)
    batcher = LiveBarBatcher(("AAPL",), day)
    bars = [Bar("AAPL", open_ns + 2 * MINUTE_NS, 11.0, 12.0, 10.5, 11.5, 30.0),
            Bar("AAPL", open_ns, 10.0, 10.2, 9.0, 10.1, 20.0),
            Bar("AAPL", open_ns + MINUTE_NS, 10.1, 13.0, 10.0, 12.5, 10.0)]

    _feed(batcher, bars)
    (batch,) = batcher.on_bar(_bar("AAPL", close_ns, 1.0))

    assert (batch.open[0], batch.high[0], batch.low[0], batch.close[0], batch.volume[0]) == (10.0, 13.0, 9.0, 11.5, 60.0)


def test_duplicate_bars_are_counted_once() -> None:
    day = date(2024, 3, 5)
    open_ns, close_ns = _open_close_ns(day)
    batcher = LiveBarBatcher(("AAPL",), day)

    _feed(batcher, [_bar("AAPL", open_ns, 10.0, 50.0), _bar("AAPL", open_ns, 99.0, 50.0)])
    (batch,) = batcher.on_bar(_bar("AAPL", close_ns, 1.0))

    assert batch.volume[0] == 50.0 and batch.high[0] == 10.0
    assert batcher.stats()["duplicate_bars"] == 1


def test_extended_hours_and_unknown_symbol_bars_are_not_aggregated() -> None:
    day = date(2024, 3, 5)
    open_ns, close_ns = _open_close_ns(day)
    batcher = LiveBarBatcher(("AAPL",), day)

    _feed(batcher, [_bar("AAPL", open_ns - 30 * MINUTE_NS, 1.0), _bar("TSLA", open_ns, 2.0),
                    _bar("AAPL", open_ns, 10.0)])
    (batch,) = batcher.on_bar(_bar("AAPL", close_ns + 5 * MINUTE_NS, 3.0))

    assert (batch.open[0], batch.low[0], batch.close[0]) == (10.0, 10.0, 10.0)
    stats = batcher.stats()
    assert (stats["extended_hours_bars"], stats["unknown_symbol_bars"], stats["bars"]) == (2, 1, 1)


# ------------------------------------------------------------------ when a session closes


def test_the_last_regular_minute_does_not_close_the_session_the_close_does() -> None:
    day = date(2024, 3, 5)
    _, close_ns = _open_close_ns(day)
    batcher = LiveBarBatcher(("AAPL",), day)

    before = batcher.on_bar(_bar("AAPL", close_ns - MINUTE_NS, 10.0))
    at_close = batcher.on_bar(_bar("AAPL", close_ns, 10.0))

    assert before == [] and len(at_close) == 1


def test_the_clock_closes_a_session_only_after_the_grace_period() -> None:
    day = date(2024, 3, 5)
    open_ns, close_ns = _open_close_ns(day)
    grace_ns = 120 * 10**9
    batcher = LiveBarBatcher(("AAPL",), day, close_grace_ns=grace_ns)
    batcher.on_bar(_bar("AAPL", open_ns, 10.0))

    assert batcher.on_clock(close_ns + grace_ns - 1) == []
    assert len(batcher.on_clock(close_ns + grace_ns)) == 1
    assert batcher.on_clock(close_ns + 10 * grace_ns) == []  # emitted once


def test_without_a_grace_period_the_clock_closes_nothing() -> None:
    day = date(2024, 3, 5)
    open_ns, close_ns = _open_close_ns(day)
    batcher = LiveBarBatcher(("AAPL",), day)
    batcher.on_bar(_bar("AAPL", open_ns, 10.0))

    assert batcher.on_clock(close_ns + 86_400 * 10**9) == []


def test_a_half_day_closes_at_its_early_close_and_keeps_the_panels_16h_stamp() -> None:
    day = date(2017, 11, 24)  # the day after Thanksgiving: NYSE closes at 13:00
    open_ns, close_ns = _open_close_ns(day)
    batcher = LiveBarBatcher(("AAPL",), day)
    batcher.on_bar(_bar("AAPL", open_ns, 10.0))

    (batch,) = batcher.on_bar(_bar("AAPL", close_ns, 11.0))  # 13:00: after hours on a half day

    assert close_ns - open_ns == int(3.5 * 3600 * 10**9)
    assert batch.ts_ns == int(np.datetime64("2017-11-24T21:00", "ns").astype(np.int64))  # 16:00 EST
    assert batch.close[0] == 10.0


def test_one_bar_closes_every_earlier_session_in_order_and_skips_empty_ones(caplog) -> None:
    first = date(2024, 3, 4)
    open_ns, _ = _open_close_ns(first)
    batcher = LiveBarBatcher(("AAPL",), first)
    batcher.on_bar(_bar("AAPL", open_ns, 10.0))  # Monday; nothing Tuesday
    wednesday_open, _ = _open_close_ns(date(2024, 3, 6))

    with caplog.at_level(logging.WARNING):
        batches = batcher.on_bar(_bar("AAPL", wednesday_open, 12.0))

    assert [b.close[0] for b in batches] == [10.0]
    assert batcher.stats()["empty_sessions"] == 1 and "2024-03-05" in caplog.text
    assert batcher.next_session == date(2024, 3, 6)


def test_late_bars_are_counted_and_logged_never_re_emitted(caplog) -> None:
    day = date(2024, 3, 5)
    open_ns, close_ns = _open_close_ns(day)
    batcher = LiveBarBatcher(("AAPL",), day)
    batcher.on_bar(_bar("AAPL", open_ns, 10.0))
    batcher.on_bar(_bar("AAPL", close_ns, 10.0))

    with caplog.at_level(logging.WARNING):
        late = batcher.on_bar(_bar("AAPL", close_ns - MINUTE_NS, 50.0))
        before_start = batcher.on_bar(_bar("AAPL", open_ns - 86_400 * 10**9, 50.0))
    next_open, next_close = _open_close_ns(date(2024, 3, 6))
    batcher.on_bar(_bar("AAPL", next_open, 11.0))
    (following,) = batcher.on_bar(_bar("AAPL", next_close, 11.0))

    assert late == [] and before_start == [] and batcher.stats()["late_bars"] == 2
    assert "late AAPL bar" in caplog.text
    assert following.close[0] == 11.0 and following.high[0] == 11.0  # the late bar went nowhere


# ------------------------------------------------------------------ bad input and helpers


def test_bad_arguments_are_refused_with_the_values() -> None:
    with pytest.raises(DataError, match="2024-03-09 is not a XNYS session"):
        LiveBarBatcher(("AAPL",), date(2024, 3, 9))
    with pytest.raises(DataError, match="close_grace_ns must be >= 0"):
        LiveBarBatcher(("AAPL",), date(2024, 3, 5), close_grace_ns=-1)
    with pytest.raises(DataError, match="non-empty and unique"):
        LiveBarBatcher(("AAPL", "AAPL"), date(2024, 3, 5))


def test_next_session_skips_weekends_and_holidays() -> None:
    assert next_session(CALENDAR, date(2010, 7, 2)) == date(2010, 7, 6)  # Fri; Mon 5 July a holiday
    assert next_session(CALENDAR, date(2024, 3, 5)) == date(2024, 3, 6)


# ------------------------------------------------------------------ warm-up


def test_a_strategy_warmed_on_history_emits_the_paper_runs_intents_on_the_first_live_session(panel: BarPanel) -> None:
    config = parse_config(yaml.safe_load((ROOT / "configs/live.yaml").read_text()), TradeConfig)
    history_end = _day(panel, 125)  # 2010-07-02; the next session (after the 5 July holiday) rebalances momentum
    first_live = next_session(CALENDAR, history_end)
    live_index = int(np.flatnonzero(panel.dates == np.datetime64(first_live))[0])
    paper, warmed = StrategyGroup(config.strategies, panel.symbols), StrategyGroup(config.strategies, panel.symbols)
    for batch in panel.batches(0, live_index):
        paper.on_bars(batch)
    fed = warm_up([warmed], LocalInvoker(), panel.batches(0, live_index))
    batcher = LiveBarBatcher(panel.symbols, first_live)

    _feed(batcher, minute_bars(panel.batch(live_index), first_live))
    (live_batch,) = batcher.on_bar(_bar("SPY", _open_close_ns(first_live)[1], 1.0))
    expected = paper.on_bars(panel.batch(live_index))

    assert fed == live_index == 126 and len(expected) == 5  # momentum's first rebalance: five longs
    assert warmed.on_bars(live_batch) == expected
