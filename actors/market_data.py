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
  :func:`alpaca_bar_feed` is the factory of ``mode: live`` (minute bars, REST gap backfill); its
  settings carry a reference to the key pair (:class:`actors.credentials.CredentialRef`), resolved
  when the actor builds the feed, never the key pair itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import ray

from amcp.data.live import AlpacaLiveFeed, LiveMarketData, rest_backfill
from amcp.data.replay import ReplayFeed
from amcp.execution.live_plane import KeyPairSource

MarketDataActor = ray.remote(ReplayFeed)


LiveMarketDataActor = ray.remote(LiveMarketData)


@dataclass(frozen=True)
class AlpacaBarFeedSettings:
    """What :func:`alpaca_bar_feed` builds a feed from (picklable: it travels to the actor; it holds
    no secret).

    Attributes:
        credentials: gives the account's key pair when the feed is built (never logged).
        symbols: stock symbols to subscribe to (minute bars only).
        feed: ``"iex"`` or ``"sip"``.
        stream_url: stock stream websocket URL; None for Alpaca's.
        rest_url: market-data REST base URL for gap backfill; None for Alpaca's.
        backfill: whether to fetch the bars of a stream gap over REST.
    """

    credentials: KeyPairSource
    symbols: tuple[str, ...]
    feed: str = "iex"
    stream_url: str | None = None
    rest_url: str | None = None
    backfill: bool = True


def alpaca_bar_feed(settings: AlpacaBarFeedSettings) -> AlpacaLiveFeed:
    """An :class:`AlpacaLiveFeed` of minute bars for ``settings.symbols``, with REST gap backfill
    when ``settings.backfill`` (built inside the actor: ``partial(alpaca_bar_feed, settings)``).

    Raises:
        ConfigError: if ``settings.credentials`` cannot give the key pair.
    """
    from amcp.data.alpaca_source import AlpacaHistoricalSource

    api_key, secret_key = settings.credentials.key_pair()
    backfill = None
    if settings.backfill:
        source = AlpacaHistoricalSource(api_key, secret_key, url_override=settings.rest_url,
                                        feed=settings.feed)
        backfill = rest_backfill(source)
    return AlpacaLiveFeed(api_key, secret_key, stock_url=settings.stream_url, feed=settings.feed,
                          symbols=settings.symbols, channels=("bars",), backfill=backfill)
