"""MarketDataActor: serves bar batches (replay of the store in paper mode)."""

import ray

from amcp.data.replay import ReplayFeed

MarketDataActor = ray.remote(ReplayFeed)
