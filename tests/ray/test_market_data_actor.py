"""LiveMarketDataActor on Ray: a live Alpaca feed (against the fake stream) and a store replay."""

from __future__ import annotations

import time
from functools import partial

import pytest

from actors.market_data import LiveMarketDataActor
from amcp.data.live import AlpacaLiveFeed
from amcp.data.replay import StoreReplayFeed
from amcp.domain.data import Bar, Quote
from amcp.testing.alpaca_stream import AlpacaStreamServer

pytestmark = pytest.mark.ray

T0 = 1_700_000_040_000_000_000
MINUTE_NS = 60_000_000_000


def test_live_actor_serves_events_from_the_alpaca_stream(ray_local) -> None:
    with AlpacaStreamServer("k", "s") as server:
        factory = partial(AlpacaLiveFeed, "k", "s", stock_url=server.url, symbols=["AAPL"])
        actor = LiveMarketDataActor.remote(factory)
        ray_local.get(actor.start.remote())
        assert server.wait_subscribed(["AAPL"], timeout_s=30, channel="quotes")
        server.publish_quote("AAPL", T0, 189.1, 2.0, 189.2, 3.0)

        events: list[object] = []
        deadline = time.monotonic() + 10
        while not events and time.monotonic() < deadline:
            events = ray_local.get(actor.drain.remote(timeout_s=0.5))
        stats = ray_local.get(actor.stats.remote())
        ray_local.get(actor.stop.remote())
        ray_local.kill(actor)

    assert events == [Quote("AAPL", T0, 189.1, 189.2, 2.0, 3.0)]
    assert stats["quotes"] == 1


def test_replay_actor_serves_bars_in_time_order(ray_local) -> None:
    bars = [Bar("AAPL", T0 + k * MINUTE_NS, 1.0 + k, 1.0 + k, 1.0 + k, 1.0 + k, 10.0) for k in (2, 0, 1)]
    actor = LiveMarketDataActor.remote(partial(StoreReplayFeed, bars))

    ray_local.get(actor.start.remote())
    first, rest = ray_local.get(actor.drain.remote(1)), ray_local.get(actor.drain.remote())
    ray_local.kill(actor)

    assert [bar.ts_ns for bar in first + rest] == [T0, T0 + MINUTE_NS, T0 + 2 * MINUTE_NS]
