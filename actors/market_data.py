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

import ray

from amcp.data.live import LiveMarketData
from amcp.data.replay import ReplayFeed

MarketDataActor = ray.remote(ReplayFeed)


LiveMarketDataActor = ray.remote(LiveMarketData)
