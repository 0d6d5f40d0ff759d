"""TokenBucket: pacing to a rate with a burst, on a fake clock (nothing really sleeps)."""

from __future__ import annotations

import threading

import pytest

from amcp.data.ratelimit import RateLimiter, TokenBucket
from amcp.errors import ConfigError, DataError


class FakeClock:
    """A clock that only moves when something sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_request_201_within_a_minute_waits_for_one_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(200, burst=200, clock=clock, sleep=clock.sleep)

    first_200 = [bucket.acquire() for _ in range(200)]
    waited = bucket.acquire()

    assert first_200 == [0.0] * 200
    assert waited == pytest.approx(60 / 200)
    assert clock.sleeps == [pytest.approx(60 / 200)]


def test_default_burst_spaces_requests_evenly() -> None:
    clock = FakeClock()
    bucket = TokenBucket(120, clock=clock, sleep=clock.sleep)
    start = clock.now

    waits = [bucket.acquire() for _ in range(10)]

    assert waits[0] == 0.0
    assert waits[1:] == [pytest.approx(0.5)] * 9
    assert clock.now - start == pytest.approx(4.5)


def test_idle_time_refills_no_more_than_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(200, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()

    clock.now += 3600.0  # an hour idle would earn 12,000 tokens without the cap
    free = [bucket.acquire() for _ in range(5)]
    sixth = bucket.acquire()

    assert free == [0.0] * 5
    assert sixth == pytest.approx(0.3)


@pytest.mark.parametrize(("rate", "burst"), [(200, 1), (200, 10), (60, 30)])
def test_no_60_second_window_exceeds_burst_plus_rate(rate: float, burst: int) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, burst=burst, clock=clock, sleep=clock.sleep)

    grants = []
    for _ in range(3 * int(rate) + burst):
        bucket.acquire()
        grants.append(clock.now)

    busiest = max(sum(1 for t in grants if start <= t < start + 60.0) for start in grants)
    assert busiest <= burst + rate
    assert busiest >= rate  # and it does use the rate it is allowed


def test_concurrent_reservations_each_get_their_own_slot() -> None:
    clock = FakeClock()  # frozen: nobody sleeps, so every wait is a queue position
    bucket = TokenBucket(600, burst=4, clock=clock, sleep=clock.sleep)
    waits: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        mine = [bucket.reserve() for _ in range(25)]
        with lock:
            waits.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    interval = 60 / 600
    expected = [max(0, k + 1 - 4) * interval for k in range(200)]
    assert sorted(waits) == pytest.approx(expected)


def test_acquire_of_several_tokens_waits_for_all_of_them() -> None:
    clock = FakeClock()
    bucket = TokenBucket(60, burst=3, clock=clock, sleep=clock.sleep)
    bucket.acquire(3)

    waited = bucket.acquire(2)

    assert waited == pytest.approx(2.0)
    assert bucket.available == pytest.approx(0.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-5, None), (200, 0), (200, 2.5)])
def test_invalid_configuration_is_refused(rate: float, burst: object) -> None:
    with pytest.raises(ConfigError, match="token bucket"):
        TokenBucket(rate, burst=burst)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, -1, 6])
def test_impossible_token_counts_are_refused(n: int) -> None:
    bucket = TokenBucket(200, burst=5)

    with pytest.raises(DataError, match=str(n)):
        bucket.acquire(n)


def test_token_bucket_is_a_rate_limiter() -> None:
    assert isinstance(TokenBucket(), RateLimiter)
    assert not isinstance(object(), RateLimiter)


def test_retry_after_prefers_retry_after_then_the_reset_time() -> None:
    from amcp.data.ratelimit import retry_after_s

    assert retry_after_s({"Retry-After": "2.5", "X-RateLimit-Reset": "1000"}, now_s=990) == 2.5
    assert retry_after_s({"X-RateLimit-Reset": "1000"}, now_s=990.5) == 9.5
    assert retry_after_s({"X-RateLimit-Reset": "1000"}, now_s=1010) == 0.0  # already reset
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert retry_after_s({}) is None


def test_a_bucket_pickles_into_an_independent_copy_with_the_same_settings() -> None:
    import pickle

    bucket = TokenBucket(120, burst=3)  # 2 tokens a second: microseconds between calls refill nothing
    bucket.reserve(2)
    copy = pickle.loads(pickle.dumps(bucket))
    assert (copy.rate_per_minute, copy.burst) == (120.0, 3)
    assert copy.reserve(1) == 0.0  # the token left in the original came along
    assert copy.reserve(1) > 0  # and the copy is empty now, while the original is untouched
    assert bucket.reserve(1) == 0.0
