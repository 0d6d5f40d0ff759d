"""LatestValueCache against the machine's Redis: latest values, never backwards, pub/sub, errors."""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator

import pytest
import redis

from amcp.domain.data import Bar, Quote, Trade
from amcp.errors import StoreError
from amcp.store.redis_cache import LatestValueCache, decode_event, redact_url
from tests.conftest import require

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_040_000_000_000


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
        reachable = True
    except redis.exceptions.RedisError:
        reachable = False
    require(reachable, f"Redis is not reachable at {redact_url(REDIS_URL)}")
    return REDIS_URL


@pytest.fixture
def cache(redis_url: str) -> Iterator[LatestValueCache]:
    value_cache = LatestValueCache(redis_url, namespace=f"test-{uuid.uuid4().hex}")
    yield value_cache
    value_cache.clear()
    value_cache.close()


def _bar(ts_ns: int, close: float, symbol: str = "AAPL") -> Bar:
    return Bar(symbol, ts_ns, close - 0.5, close + 0.5, close - 1.0, close, 1_000.0)


def test_latest_bar_quote_and_trade_round_trip_exactly(cache: LatestValueCache) -> None:
    bar = Bar("AAPL", T0, 0.1 + 0.2, 1e-300, 5e-324, 189.123456789012345, 1.7976931348623157e308)
    quote = Quote("AAPL", T0 + 1, 189.11, 189.13, 300.0, 1e-7)
    trade = Trade("AAPL", T0 + 2, 189.12, 17.0, "V", 2**62)

    stored = (cache.put_bar(bar), cache.put_quote(quote), cache.put_trade(trade))

    assert stored == (True, True, True)
    assert cache.latest_bar("AAPL") == bar
    assert cache.latest_quote("AAPL") == quote
    assert cache.latest_trade("AAPL") == trade


def test_nan_volume_survives_the_round_trip(cache: LatestValueCache) -> None:
    cache.put_bar(Bar("AAPL", T0, 1.0, 1.0, 1.0, 1.0, math.nan))

    stored = cache.latest_bar("AAPL")

    assert stored is not None and math.isnan(stored.volume)


def test_older_bar_is_ignored_and_equal_timestamp_replaces(cache: LatestValueCache) -> None:
    cache.put_bar(_bar(T0, 10.0))

    older_stored = cache.put_bar(_bar(T0 - 60_000_000_000, 9.0))
    after_older = cache.latest_bar("AAPL")
    correction_stored = cache.put_bar(_bar(T0, 10.5))

    assert older_stored is False
    assert after_older == _bar(T0, 10.0)
    assert correction_stored is True
    assert cache.latest_bar("AAPL") == _bar(T0, 10.5)


def test_one_nanosecond_older_is_ignored_at_epoch_scale(cache: LatestValueCache) -> None:
    # adjacent nanoseconds near 1.7e18 are the same double: a float comparison would accept this
    cache.put_bar(_bar(T0 + 1, 2.0))

    stored = cache.put_bar(_bar(T0, 1.0))

    assert stored is False
    assert cache.latest_bar("AAPL") == _bar(T0 + 1, 2.0)


def test_kinds_are_independent_so_an_old_quote_is_not_blocked_by_a_newer_bar(cache: LatestValueCache) -> None:
    cache.put_bar(_bar(T0, 10.0))

    stored = cache.put_quote(Quote("AAPL", T0 - 1, 9.9, 10.1, 1.0, 1.0))

    assert stored is True


def test_latest_bars_returns_only_symbols_that_have_one(cache: LatestValueCache) -> None:
    cache.put_bar(_bar(T0, 10.0, "AAPL"))
    cache.put_bar(_bar(T0, 20.0, "MSFT"))

    latest = cache.latest_bars(["MSFT", "NVDA", "AAPL", "MSFT"])

    assert latest == {"MSFT": _bar(T0, 20.0, "MSFT"), "AAPL": _bar(T0, 10.0, "AAPL")}
    assert cache.latest_bars([]) == {}
    assert cache.latest_quote("AAPL") is None


def test_namespaces_do_not_see_each_other(cache: LatestValueCache, redis_url: str) -> None:
    other = LatestValueCache(redis_url, namespace=f"test-{uuid.uuid4().hex}")
    try:
        cache.put_bar(_bar(T0, 10.0))

        assert other.latest_bar("AAPL") is None
    finally:
        other.clear()
        other.close()


def test_accepted_writes_are_published_and_ignored_ones_are_not(
    cache: LatestValueCache, redis_url: str
) -> None:
    listener = redis.Redis.from_url(redis_url, decode_responses=True)
    pubsub = listener.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(cache.channel("bar"))
    try:
        pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        cache.put_bar(_bar(T0, 10.0))
        cache.put_bar(_bar(T0 - 1, 9.0))  # older: not published
        cache.put_bar(_bar(T0 + 1, 11.0))

        received = []
        for _ in range(3):
            message = pubsub.get_message(timeout=1.0)
            if message is not None:
                received.append(decode_event("bar", message["data"]))
    finally:
        pubsub.close()
        listener.close()

    assert received == [_bar(T0, 10.0), _bar(T0 + 1, 11.0)]


def test_unreachable_redis_raises_store_error_without_the_password() -> None:
    url = "redis://trader:hunter2@127.0.0.1:1/0"
    cache = LatestValueCache(url, namespace="unreachable", socket_timeout_s=0.5)

    with pytest.raises(StoreError) as raised:
        cache.put_bar(_bar(T0, 1.0))

    assert "127.0.0.1:1" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_negative_timestamp_is_refused(cache: LatestValueCache) -> None:
    with pytest.raises(StoreError, match="-5"):
        cache.put_bar(_bar(-5, 1.0))


def test_corrupt_stored_value_is_a_store_error_naming_the_kind(
    cache: LatestValueCache, redis_url: str
) -> None:
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.hset(cache.key("quote"), "AAPL", '{"symbol":"AAPL"}')
    finally:
        raw.close()

    with pytest.raises(StoreError, match="cannot decode a quote"):
        cache.latest_quote("AAPL")


def test_namespace_with_a_colon_is_refused() -> None:
    with pytest.raises(StoreError, match="'a:b'"):
        LatestValueCache(namespace="a:b")
