"""RateLimiterActor: one token bucket shared by every Ray task that calls a rate-limited API.

Alpaca allows 200 requests a minute per account, across all of a job's tasks, so the bucket
lives in one actor. The actor never sleeps: :meth:`TokenBucket.reserve` hands out a wait, and
:class:`RemoteRateLimiter` (the caller's side) sleeps it locally, so a slow caller never blocks
the others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import ray

from amcp.data.ratelimit import TokenBucket

RateLimiterActor = ray.remote(num_cpus=0)(TokenBucket)


class RemoteRateLimiter:
    """A :class:`~amcp.data.ratelimit.RateLimiter` backed by a :data:`RateLimiterActor` handle."""

    def __init__(self, handle: Any, sleep: Callable[[float], None] = time.sleep) -> None:
        self._handle = handle
        self._sleep = sleep

    def acquire(self, n: int = 1) -> float:
        wait_s = float(ray.get(self._handle.reserve.remote(n)))
        if wait_s > 0:
            self._sleep(wait_s)
        return wait_s
