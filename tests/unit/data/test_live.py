"""AlpacaLiveFeed: the real alpaca-py streams against AlpacaStreamServer, normalised to domain events."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import redis

from amcp.data.live import AlpacaLiveFeed, MarketEvent, event_from_message, timestamp_ns
from amcp.domain.data import Bar, Quote, Trade
from amcp.errors import DataError
from amcp.store.redis_cache import LatestValueCache
from amcp.testing.alpaca_stream import AlpacaStreamServer
from tests.conftest import require

KEY, SECRET = "test-key", "test-secret"
MINUTE_NS = 60_000_000_000
T0 = 1_700_000_040_000_000_000  # a minute boundary
OPTION = "AAPL240119C00190000"


@pytest.fixture
def server() -> Iterator[AlpacaStreamServer]:
    with AlpacaStreamServer(KEY, SECRET) as running:
        yield running


@pytest.fixture
def feeds() -> Iterator[list[AlpacaLiveFeed]]:
    """Feeds a test starts; stopped afterwards even if the test fails."""
    started: list[AlpacaLiveFeed] = []
    yield started
    for feed in started:
        feed.stop()


def _start(feeds: list[AlpacaLiveFeed], feed: AlpacaLiveFeed) -> AlpacaLiveFeed:
    feeds.append(feed)
    feed.start()
    return feed


def _stock_feed(server: AlpacaStreamServer, **options: Any) -> AlpacaLiveFeed:
    """A feed of AAPL on the fake server; ``options`` override the defaults."""
    settings: dict[str, Any] = {"stock_url": server.url, "symbols": ["AAPL"]} | options
    return AlpacaLiveFeed(KEY, SECRET, **settings)


def _wait_until(condition: Callable[[], bool], timeout_s: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _collect(feed: AlpacaLiveFeed, count: int, timeout_s: float = 5.0) -> list[MarketEvent]:
    events: list[MarketEvent] = []
    deadline = time.monotonic() + timeout_s
    while len(events) < count and time.monotonic() < deadline:
        events.extend(feed.drain(timeout_s=0.1))
    return events


def _bar(ts_ns: int, close: float, symbol: str = "AAPL") -> Bar:
    return Bar(symbol, ts_ns, close, close, close, close, 100.0)


def test_stock_stream_delivers_exactly_the_published_events_with_exact_values(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    feed = _start(feeds, AlpacaLiveFeed(KEY, SECRET, stock_url=server.url, symbols=["AAPL", "MSFT"]))
    assert server.wait_subscribed(["AAPL", "MSFT"], channel="trades")
    assert server.wait_subscribed(["AAPL", "MSFT"], channel="bars")

    server.publish_bar("AAPL", T0, 189.123456789, 189.5, 188.9, 189.2, 12_345.0, vwap=189.3, trade_count=55)
    server.publish_quote("MSFT", T0 + 1, 370.01, 3.0, 370.05, 5.0)
    server.publish_trade("AAPL", T0 + 999_999_999, 189.21, 17.0, trade_id=9_001, exchange="V")
    server.publish_bar("TSLA", T0, 1.0, 1.0, 1.0, 1.0, 1.0)  # not subscribed
    events = _collect(feed, 3)

    assert events == [
        Bar("AAPL", T0, 189.123456789, 189.5, 188.9, 189.2, 12_345.0),
        Quote("MSFT", T0 + 1, 370.01, 370.05, 3.0, 5.0),
        Trade("AAPL", T0 + 999_999_999, 189.21, 17.0, "V", 9_001),
    ]
    assert feed.drain(timeout_s=0.1) == []
    stats = feed.stats()
    counts = [stats[key] for key in ("bars", "quotes", "trades", "sessions", "reconnects", "bad_messages")]
    assert counts == [1, 1, 1, 1, 0, 0]


def test_option_stream_delivers_an_option_quote(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    feed = _start(feeds, AlpacaLiveFeed(KEY, SECRET, option_url=server.url, option_symbols=[OPTION]))
    assert server.wait_subscribed([OPTION], channel="quotes")

    server.publish_quote(OPTION, T0, 2.15, 12.0, 2.25, 30.0, bid_exchange="C", ask_exchange="X")

    assert _collect(feed, 1) == [Quote(OPTION, T0, 2.15, 2.25, 12.0, 30.0)]


def test_wrong_key_is_reported_in_stats_and_stops_the_feed_without_retrying(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    feed = _start(feeds, AlpacaLiveFeed("wrong-key", SECRET, stock_url=server.url, symbols=["AAPL"]))

    assert _wait_until(lambda: not feed.running)
    stats = feed.stats()
    assert stats["auth_failures"] == 1
    assert "login rejected" in stats["last_error"]
    assert (server.auth_failures, stats["sessions"]) == (1, 0)


def test_feed_reconnects_after_a_drop_and_backfills_the_gap_before_the_new_bar(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    windows: list[tuple[str, int, int]] = []
    history = {ts: _bar(ts, 100.0 + i) for i, ts in enumerate(range(T0, T0 + 6 * MINUTE_NS, MINUTE_NS))}

    def backfill(symbol: str, start_ns: int, end_ns: int) -> list[Bar]:
        windows.append((symbol, start_ns, end_ns))
        # a sloppy source: the boundary bars, a duplicate, and out of order
        inside = [bar for ts, bar in history.items() if start_ns - MINUTE_NS <= ts <= end_ns + MINUTE_NS]
        return list(reversed(inside)) + inside[:1]

    feed = _start(feeds, _stock_feed(server, channels=["bars"], backfill=backfill))
    assert server.wait_subscribed(["AAPL"], channel="bars")
    server.publish_bar("AAPL", T0, 100.0, 100.0, 100.0, 100.0, 100.0)
    before = _collect(feed, 1)

    assert server.drop_all_connections() == 1
    assert server.wait_subscribed(["AAPL"], channel="bars")  # alpaca-py's backoff: 0.5 to 1 s
    server.publish_bar("AAPL", T0 + 5 * MINUTE_NS, 105.0, 105.0, 105.0, 105.0, 100.0)
    after = _collect(feed, 5)

    assert before == [history[T0]]
    assert windows == [("AAPL", T0 + MINUTE_NS, T0 + 4 * MINUTE_NS)]
    assert [bar.ts_ns for bar in after] == [T0 + k * MINUTE_NS for k in (1, 2, 3, 4, 5)]
    assert after[:4] == [history[T0 + k * MINUTE_NS] for k in (1, 2, 3, 4)]
    assert after[4].close == 105.0
    stats = feed.stats()
    keys = ("reconnects", "gaps_backfilled", "backfilled_bars", "bars", "stale_bars")
    counts = [stats[key] for key in keys]
    assert counts == [1, 1, 4, 6, 0]
    assert server.connections == 2


def test_failed_backfill_is_counted_and_the_new_bar_still_arrives(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    def backfill(symbol: str, start_ns: int, end_ns: int) -> list[Bar]:
        raise ConnectionError("historical API down")

    feed = _start(feeds, _stock_feed(server, channels=["bars"], backfill=backfill))
    assert server.wait_subscribed(["AAPL"], channel="bars")
    server.publish_bar("AAPL", T0, 1.0, 1.0, 1.0, 1.0, 1.0)
    server.publish_bar("AAPL", T0 + 3 * MINUTE_NS, 2.0, 2.0, 2.0, 2.0, 1.0)

    events = _collect(feed, 2)

    assert [event.ts_ns for event in events] == [T0, T0 + 3 * MINUTE_NS]
    stats = feed.stats()
    assert (stats["gaps_detected"], stats["backfill_errors"], stats["gaps_backfilled"]) == (1, 1, 0)
    assert "historical API down" in stats["last_error"]


def test_bar_not_newer_than_the_last_one_is_dropped_as_stale(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    feed = _start(feeds, _stock_feed(server, channels=["bars"]))
    assert server.wait_subscribed(["AAPL"], channel="bars")
    for ts_ns, close in ((T0, 1.0), (T0, 1.5), (T0 - MINUTE_NS, 0.5), (T0 + MINUTE_NS, 2.0)):
        server.publish_bar("AAPL", ts_ns, close, close, close, close, 1.0)

    events = _collect(feed, 2)

    assert [(event.ts_ns, event.close) for event in events] == [(T0, 1.0), (T0 + MINUTE_NS, 2.0)]
    assert feed.stats()["stale_bars"] == 2


def test_malformed_messages_are_counted_and_the_rest_of_the_frame_survives(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    feed = _start(feeds, _stock_feed(server, channels=["trades"]))
    assert server.wait_subscribed(["AAPL"], channel="trades")
    stamp = msgpack.Timestamp.from_unix_nano(T0)
    good = {"T": "t", "S": "AAPL", "i": 7, "x": "V", "p": 10.5, "s": 3.0, "t": stamp}
    frame = [
        {"T": "t", "S": "AAPL", "i": 5, "x": "V", "s": 3.0, "t": stamp},  # no price
        {**good, "p": math.nan},
        {**good, "t": "yesterday"},
        good,
    ]

    server.publish_raw("trades", "AAPL", frame)
    events = _collect(feed, 1)

    assert events == [Trade("AAPL", T0, 10.5, 3.0, "V", 7)]
    stats = feed.stats()
    assert (stats["bad_messages"], stats["trades"]) == (3, 1)
    assert feed.running


def test_every_event_is_cached_when_a_cache_is_given(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    try:
        redis.Redis(socket_connect_timeout=1).ping()
        reachable = True
    except redis.exceptions.RedisError:
        reachable = False
    require(reachable, "Redis is not reachable at 127.0.0.1:6379")
    cache = LatestValueCache("redis://127.0.0.1:6379/0", namespace=f"test-{uuid.uuid4().hex}")
    try:
        feed = _start(feeds, _stock_feed(server, cache=cache))
        assert server.wait_subscribed(["AAPL"], channel="quotes")
        server.publish_bar("AAPL", T0, 1.0, 2.0, 0.5, 1.5, 10.0)
        server.publish_quote("AAPL", T0 + 5, 1.4, 1.0, 1.6, 2.0)
        _collect(feed, 2)

        assert cache.latest_bar("AAPL") == Bar("AAPL", T0, 1.0, 2.0, 0.5, 1.5, 10.0)
        assert cache.latest_quote("AAPL") == Quote("AAPL", T0 + 5, 1.4, 1.6, 1.0, 2.0)
    finally:
        cache.clear()
        cache.close()


def test_stop_ends_the_thread_and_keeps_undrained_events(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    feed = _start(feeds, _stock_feed(server, channels=["quotes"]))
    assert server.wait_subscribed(["AAPL"], channel="quotes")
    server.publish_quote("AAPL", T0, 1.0, 1.0, 1.1, 1.0)
    assert _wait_until(lambda: feed.stats()["buffered"] == 1)

    feed.stop()

    assert not feed.running
    assert feed.drain() == [Quote("AAPL", T0, 1.0, 1.1, 1.0, 1.0)]


# ------------------------------------------------------------------ parsing and configuration


def test_timestamp_parses_rfc3339_nanoseconds_and_rejects_naive_strings() -> None:
    assert timestamp_ns("2023-11-14T22:13:20.123456789Z") == 1_700_000_000_123_456_789
    assert timestamp_ns("2023-11-14T17:13:20.5-05:00") == 1_700_000_000_500_000_000
    with pytest.raises(DataError, match="no timezone"):
        timestamp_ns("2023-11-14T22:13:20")
    with pytest.raises(DataError, match="int"):
        timestamp_ns(1_700_000_000)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ({"T": "b", "S": "AAPL", "o": 1.0, "h": 1.0, "l": 1.0, "c": 1.0, "t": "2023-11-14T22:13:20Z"}, "'v'"),
        ({"T": "q", "S": "AAPL", "bp": -1.0, "ap": 1, "bs": 1, "as": 1, "t": "2023-11-14T22:13:20Z"}, "-1.0"),
        ({"T": "t", "S": "AAPL", "i": "7", "p": 1.0, "s": 1, "t": "2023-11-14T22:13:20Z"}, "'7'"),
        ({"T": "t", "S": "AAPL", "i": 7, "p": True, "s": 1, "t": "2023-11-14T22:13:20Z"}, "True"),
        ({"T": "n", "S": "AAPL"}, "'n'"),
    ],
)
def test_malformed_message_raises_data_error_naming_the_value(
    message: dict[str, object], problem: str
) -> None:
    with pytest.raises(DataError, match=problem):
        event_from_message(message)


def test_configuration_errors_name_the_bad_value() -> None:
    with pytest.raises(DataError, match="candles"):
        AlpacaLiveFeed(KEY, SECRET, symbols=["AAPL"], channels=["candles"])
    with pytest.raises(DataError, match="no symbols"):
        AlpacaLiveFeed(KEY, SECRET)
    with pytest.raises(DataError, match="'otc'"):
        AlpacaLiveFeed(KEY, SECRET, symbols=["AAPL"], feed="otc")
    with pytest.raises(DataError, match="-5"):
        AlpacaLiveFeed(KEY, SECRET, symbols=["AAPL"], bar_interval_ns=-5)


def test_gap_after_a_drop_is_backfilled_over_rest_and_redis_holds_the_latest_bar(
    server: AlpacaStreamServer, feeds: list[AlpacaLiveFeed]
) -> None:
    """The whole live path with real parts: alpaca-py's stream and REST clients against the two
    Alpaca-compatible servers, the gap filled by ``rest_backfill``, every bar cached in Redis."""
    import pyarrow as pa

    from amcp.data.alpaca_source import AlpacaHistoricalSource
    from amcp.data.live import rest_backfill
    from amcp.data.ratelimit import TokenBucket
    from amcp.data.schemas import BAR_SCHEMA
    from amcp.testing.alpaca_rest import AlpacaMarketDataServer

    cache = LatestValueCache(namespace=f"test-{uuid.uuid4().hex}")
    try:
        cache.ping()
        reachable = True
    except Exception:  # noqa: BLE001 - any failure means no Redis here
        reachable = False
    require(reachable, "Redis is not reachable at REDIS_URL / 127.0.0.1:6379")
    minutes = [T0 + k * MINUTE_NS for k in range(6)]
    history = pa.table(
        {"symbol": ["AAPL"] * 6, "ts": pa.array(minutes, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
         **{f: [100.0 + k for k in range(6)] for f in ("open", "high", "low", "close")},
         "volume": [1000.0] * 6, "vwap": [None] * 6, "trade_count": [None] * 6},
        schema=BAR_SCHEMA,
    )
    try:
        with AlpacaMarketDataServer(KEY, SECRET) as rest:
            rest.add_bars(history, "1Min")
            source = AlpacaHistoricalSource(KEY, SECRET, url_override=rest.url, rate_limiter=TokenBucket(6000, burst=10))
            feed = _start(feeds, _stock_feed(server, channels=["bars"], cache=cache,
                                             backfill=rest_backfill(source, "1Min")))
            assert server.wait_subscribed(["AAPL"], channel="bars")
            server.publish_bar("AAPL", T0, 100.0, 100.0, 100.0, 100.0, 1000.0)
            assert [b.ts_ns for b in _collect(feed, 1)] == [T0]
            assert server.drop_all_connections() == 1
            assert server.wait_subscribed(["AAPL"], channel="bars")
            server.publish_bar("AAPL", minutes[5], 105.0, 105.0, 105.0, 105.0, 1000.0)
            after = _collect(feed, 5)
            source.close()
            bar_requests = [r for r in rest.requests if "bars" in r.path]
        assert [b.ts_ns for b in after] == minutes[1:]
        assert [b.close for b in after] == [101.0, 102.0, 103.0, 104.0, 105.0]
        assert len(bar_requests) == 1
        assert _wait_until(lambda: (cache.latest_bar("AAPL") or _bar(0, 0)).ts_ns == minutes[5])
        assert cache.latest_bar("AAPL").close == 105.0
        assert feed.stats()["gaps_backfilled"] == 1
    finally:
        cache.clear()
        cache.close()
