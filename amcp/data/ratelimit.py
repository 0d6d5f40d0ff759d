"""Client-side request rate limiting: a thread-safe token bucket.

Alpaca's market-data API allows 200 requests per minute per key on the free plan (10,000 on
paid plans) and answers 429 beyond that. Every HTTP request an ingest job makes, every page of
a paginated call included, takes a token first, so a job paces itself instead of being throttled.

The bucket holds up to ``burst`` tokens and gains ``rate_per_minute / 60`` tokens per second.
Tokens are *reserved* rather than waited for under the lock: a reservation may take the bucket
into debt and returns how long its holder must wait, so waiters are served in arrival order and
never hold the lock while sleeping. :meth:`TokenBucket.reserve` never sleeps, which is what a
shared Ray actor should expose (the caller sleeps locally, the actor is never blocked);
:meth:`TokenBucket.acquire` reserves and then sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from amcp.errors import ConfigError, DataError

ALPACA_FREE_RATE_PER_MINUTE = 200.0
"""Alpaca's documented market-data request limit for the free (Basic) plan."""


@runtime_checkable
class RateLimiter(Protocol):
    """Anything that can pace requests: a :class:`TokenBucket`, or a handle to a shared one."""

    def acquire(self, n: int = 1) -> float:
        """Block until ``n`` requests may be made; return the seconds waited."""
        ...


class TokenBucket:
    """A thread-safe token bucket of ``rate_per_minute`` tokens per minute, ``burst`` deep.

    With the default ``burst`` of 1 the requests are evenly spaced ``60 / rate_per_minute``
    seconds apart, so no 60-second window ever holds more than ``rate_per_minute + 1`` of
    them. A larger ``burst`` lets that many requests go at once after an idle spell; over any
    window of ``T`` seconds at most ``burst + rate_per_minute * T / 60`` requests are granted.

    Args:
        rate_per_minute: sustained rate, in requests (tokens) per minute; must be > 0.
        burst: bucket capacity in tokens (>= 1); ``None`` means 1. The bucket starts full.
        clock: monotonic clock in seconds (injected so tests need no real time).
        sleep: sleeps for the given seconds (injected so tests need no real time).

    Raises:
        ConfigError: if ``rate_per_minute`` is not positive or ``burst`` is below 1.
    """

    def __init__(
        self,
        rate_per_minute: float = ALPACA_FREE_RATE_PER_MINUTE,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(rate_per_minute, int | float) or not rate_per_minute > 0:
            raise ConfigError(
                f"token bucket: rate_per_minute must be a positive number (got {rate_per_minute!r})"
            )
        capacity = 1 if burst is None else burst
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"token bucket: burst must be an integer >= 1 (got {burst!r})")
        self.rate_per_minute = float(rate_per_minute)
        self.burst = capacity
        self._rate_per_s = self.rate_per_minute / 60.0
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = float(capacity)
        self._updated_s = clock()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the lock (so a bucket can be handed to a Ray actor). The copy is an
        independent bucket with the same settings and tokens; a limit shared by several
        processes needs one bucket behind an actor (``actors.rate_limiter.RateLimiterActor``)."""
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._updated_s = self._clock()  # another process's clock may differ: refill from now

    def reserve(self, n: int = 1) -> float:
        """Take ``n`` tokens now, possibly on credit, and return the seconds to wait before use.

        Never sleeps. Reservations are granted in call order: a caller arriving after others
        waits for their tokens to be refilled first.

        Raises:
            DataError: if ``n`` is not a positive integer or exceeds ``burst``.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"token bucket: tokens requested must be a positive integer (got {n!r})")
        if n > self.burst:
            raise DataError(f"token bucket: cannot take {n} tokens at once from a bucket {self.burst} deep")
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._updated_s)
            self._tokens = min(float(self.burst), self._tokens + elapsed * self._rate_per_s)
            self._updated_s = now
            self._tokens -= n
            return 0.0 if self._tokens >= 0 else -self._tokens / self._rate_per_s

    def acquire(self, n: int = 1) -> float:
        """Block until ``n`` tokens are available and take them; return the seconds waited.

        Raises:
            DataError: if ``n`` is not a positive integer or exceeds ``burst``.
        """
        wait_s = self.reserve(n)
        if wait_s > 0:
            self._sleep(wait_s)
        return wait_s

    @property
    def available(self) -> float:
        """Tokens available right now (negative while reservations are outstanding)."""
        with self._lock:
            elapsed = max(0.0, self._clock() - self._updated_s)
            return min(float(self.burst), self._tokens + elapsed * self._rate_per_s)


def retry_after_s(headers: Mapping[str, str], now_s: float | None = None) -> float | None:
    """Seconds a rate-limited (429) response asks the client to wait, or ``None`` if it does not say.

    ``Retry-After`` in seconds wins; otherwise Alpaca's ``X-RateLimit-Reset`` (the Unix time, in
    seconds, at which the window resets) gives ``reset - now``. Negative waits become 0; HTTP-date
    ``Retry-After`` values and non-numeric headers are ignored.
    """
    value = headers.get("Retry-After")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    reset = headers.get("X-RateLimit-Reset")
    if reset is not None:
        try:
            return max(0.0, float(reset) - (time.time() if now_s is None else now_s))
        except ValueError:
            pass
    return None
