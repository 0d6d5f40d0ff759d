"""Market-data actors.

* ``MarketDataActor`` serves a bar panel's batches by cycle index (replay of the store in paper
  mode; the trading plane uses it).
* ``LiveMarketDataActor`` serves a stream of :class:`Bar` / :class:`Quote` / :class:`Trade`
  events from a live Alpaca feed or a paced store replay, behind one interface::

      from functools import partial
      from amcp.data.live import AlpacaLiveFeed
      from amcp.data.replay import StoreReplayFeed

      live = LiveMarketDataActor.remote(partial(AlpacaLiveFeed, key, secret, symbols=["AAPL"]))
      replay = LiveMarketDataActor.remote(partial(StoreReplayFeed, bars_table, speed=60.0))
      ray.get(live.start.remote())
      events = ray.get(live.drain.remote(max_events=1_000, timeout_s=1.0))

  The actor takes a factory, not a feed, because a feed holds threads and sockets once built
  and is built where it runs. A drain with a timeout holds the actor for up to that long.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import ray

from amcp.data.replay import ReplayFeed
from amcp.domain.data import Bar, Quote, Trade

MarketDataActor = ray.remote(ReplayFeed)


class EventFeed(Protocol):
    """What :class:`LiveMarketData` needs of a feed (``AlpacaLiveFeed`` and ``StoreReplayFeed`` have it)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def drain(
        self, max_events: int | None = None, *, timeout_s: float = 0.0
    ) -> Sequence[Bar | Quote | Trade]: ...

    def stats(self) -> dict[str, Any]: ...


class LiveMarketData:
    """A feed of market-data events, built in the actor by ``feed_factory`` and served by drain.

    Args:
        feed_factory: builds the feed, e.g. ``functools.partial(AlpacaLiveFeed, key, secret, ...)``.
    """

    def __init__(self, feed_factory: Callable[[], EventFeed]) -> None:
        self._feed = feed_factory()

    def start(self) -> None:
        """Start the feed (connect, or start the replay clock)."""
        self._feed.start()

    def stop(self) -> None:
        """Stop the feed; events already buffered can still be drained."""
        self._feed.stop()

    def drain(self, max_events: int | None = None, timeout_s: float = 0.0) -> list[Bar | Quote | Trade]:
        """The feed's pending events, oldest first (waiting up to ``timeout_s`` seconds for one)."""
        return list(self._feed.drain(max_events, timeout_s=timeout_s))

    def stats(self) -> dict[str, Any]:
        """The feed's counters (see ``AlpacaLiveFeed.stats`` / ``StoreReplayFeed.stats``)."""
        return self._feed.stats()


LiveMarketDataActor = ray.remote(LiveMarketData)
