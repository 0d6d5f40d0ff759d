"""StoreReplayFeed: stored bar rows become Bar events in time order, paced by an injected clock."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from amcp.data.replay import StoreReplayFeed
from amcp.data.schemas import BAR_SCHEMA
from amcp.domain.data import Bar
from amcp.errors import DataError

MINUTE_NS = 60_000_000_000
T0 = 1_700_000_040_000_000_000


class FakeClock:
    """A monotonic clock that only moves when the replay sleeps or the test advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _table(rows: list[tuple[str, int, float | None]]) -> pa.Table:
    """BAR_SCHEMA rows ``(symbol, ts_ns, close)``; open/high/low derived, volume 100."""
    return pa.table(
        {
            "symbol": [symbol for symbol, _, _ in rows],
            "ts": pa.array([ts for _, ts, _ in rows], pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "open": [None if close is None else close - 1 for _, _, close in rows],
            "high": [None if close is None else close + 1 for _, _, close in rows],
            "low": [None if close is None else close - 2 for _, _, close in rows],
            "close": [close for _, _, close in rows],
            "volume": [100.0] * len(rows),
            "vwap": [None] * len(rows),
            "trade_count": [None] * len(rows),
        },
        schema=BAR_SCHEMA,
    )


def test_unpaced_replay_emits_every_bar_in_time_then_symbol_order_with_exact_values() -> None:
    later = T0 + MINUTE_NS
    rows = [("MSFT", later, 20.5), ("MSFT", T0, 20.0), ("AAPL", later, 10.25), ("AAPL", T0, 10.0)]
    table = _table(rows)
    feed = StoreReplayFeed(table)

    events = feed.drain()

    assert events == [
        Bar("AAPL", T0, 9.0, 11.0, 8.0, 10.0, 100.0),
        Bar("MSFT", T0, 19.0, 21.0, 18.0, 20.0, 100.0),
        Bar("AAPL", T0 + MINUTE_NS, 9.25, 11.25, 8.25, 10.25, 100.0),
        Bar("MSFT", T0 + MINUTE_NS, 19.5, 21.5, 18.5, 20.5, 100.0),
    ]
    assert feed.drain() == []
    assert feed.exhausted


def test_max_events_drains_in_chunks_without_losing_or_repeating_bars() -> None:
    feed = StoreReplayFeed(_table([("AAPL", T0 + k * MINUTE_NS, 10.0 + k) for k in range(5)]))

    chunks = [feed.drain(2), feed.drain(2), feed.drain(2)]

    assert [[bar.close for bar in chunk] for chunk in chunks] == [[10.0, 11.0], [12.0, 13.0], [14.0]]
    assert feed.stats()["bars"] == 5 and feed.stats()["remaining"] == 0


def test_speed_60_makes_a_one_minute_gap_take_one_second() -> None:
    clock = FakeClock()
    rows = [
        ("AAPL", T0, 1.0), ("MSFT", T0, 2.0),
        ("AAPL", T0 + MINUTE_NS, 3.0), ("AAPL", T0 + 3 * MINUTE_NS, 4.0),
    ]
    feed = StoreReplayFeed(_table(rows), speed=60.0, clock=clock, sleep=clock.sleep)
    feed.start()

    at_start = feed.drain()
    clock.now += 0.999
    just_before = feed.drain()
    clock.now += 0.001
    at_one_second = feed.drain()

    assert [bar.close for bar in at_start] == [1.0, 2.0]  # bars sharing a timestamp are due together
    assert just_before == []
    assert [bar.close for bar in at_one_second] == [3.0]


def test_drain_with_timeout_sleeps_until_the_next_bar_but_no_longer_than_the_timeout() -> None:
    clock = FakeClock()
    rows = [("AAPL", T0, 1.0), ("AAPL", T0 + MINUTE_NS, 2.0), ("AAPL", T0 + 11 * MINUTE_NS, 3.0)]
    feed = StoreReplayFeed(_table(rows), speed=30.0, clock=clock, sleep=clock.sleep)
    feed.drain()

    second = feed.drain(timeout_s=5.0)
    capped = feed.drain(timeout_s=5.0)
    third = feed.drain(timeout_s=60.0)

    assert [bar.close for bar in second] == [2.0]
    assert capped == []
    assert [bar.close for bar in third] == [3.0]
    assert clock.sleeps == pytest.approx([2.0, 5.0, 15.0])


def test_null_prices_become_nan() -> None:
    feed = StoreReplayFeed(_table([("AAPL", T0, None)]))

    [bar] = feed.drain()

    assert math.isnan(bar.close) and math.isnan(bar.open)


def test_bar_events_are_accepted_and_sorted() -> None:
    bars = [Bar("B", T0, 1, 1, 1, 1, 1), Bar("A", T0 + 1, 2, 2, 2, 2, 2), Bar("A", T0, 3, 3, 3, 3, 3)]

    events = StoreReplayFeed(bars).drain()

    assert [(bar.symbol, bar.ts_ns) for bar in events] == [("A", T0), ("B", T0), ("A", T0 + 1)]


def test_stop_ends_the_replay() -> None:
    feed = StoreReplayFeed(_table([("AAPL", T0, 1.0)]))

    feed.stop()

    assert feed.drain() == []
    assert not feed.running


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        (_table([("AAPL", T0, 1.0)]).drop_columns(["volume"]), "volume"),
        (_table([("AAPL", T0, 1.0)]).set_column(1, "ts", pa.array([T0], pa.timestamp("ns"))), "timezone"),
    ],
)
def test_bad_table_is_refused_naming_the_problem(table: pa.Table, problem: str) -> None:
    with pytest.raises(DataError, match=problem):
        StoreReplayFeed(table)


@pytest.mark.parametrize("speed", [-1.0, math.inf, math.nan])
def test_bad_speed_is_refused(speed: float) -> None:
    with pytest.raises(DataError, match="speed"):
        StoreReplayFeed([], speed=speed)


def test_from_store_replays_stored_bars_in_time_then_symbol_order(tmp_path) -> None:
    from datetime import date

    from amcp.data.store import MarketDataStore
    from amcp.data.synthetic import generate_minute_bars

    minutes = generate_minute_bars(2, date(2016, 6, 1), date(2016, 6, 2), seed=4)
    MarketDataStore(str(tmp_path / "s")).write("equities/intraday", minutes)
    feed = StoreReplayFeed.from_store(str(tmp_path / "s"), None, "2016-06-02", "2016-06-02")
    feed.start()
    events = feed.drain()
    ts = minutes.column("ts").cast(pa.int64()).to_numpy()
    assert len(events) == int((ts >= events[0].ts_ns).sum()) > 0
    assert int((ts < events[0].ts_ns).sum()) > 0  # day one was not replayed
    assert [(e.ts_ns, e.symbol) for e in events] == sorted((e.ts_ns, e.symbol) for e in events)
    assert {e.symbol for e in events} == {"S0000", "S0001"}
