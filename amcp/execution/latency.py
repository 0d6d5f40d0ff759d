"""Seeded order-arrival latency for the simulated venue.

An order submitted at ``ts_ns`` reaches the simulated matching engine at
``ts_ns + sample_ns()``. Samples are normal with mean ``mean_ms`` and standard deviation
``jitter_ms``, clipped at zero, drawn from ``numpy.random.default_rng(seed)``: the same seed and
the same sequence of calls give the same samples. No clock is read.
"""

from __future__ import annotations

import numpy as np

from amcp.config import LatencyConfig

NANOS_PER_MILLI = 1_000_000


class LatencyModel:
    """Draws one arrival delay per order from a seeded normal distribution.

    Args:
        config: mean and jitter of the delay, in milliseconds.
        seed: seed of the generator; the venue passes ``VenueConfig.seed``.
    """

    def __init__(self, config: LatencyConfig, seed: int) -> None:
        self._mean_ms = float(config.mean_ms)
        self._jitter_ms = float(config.jitter_ms)
        self._rng = np.random.default_rng(seed)

    def sample_ns(self) -> int:
        """Return the next delay in nanoseconds (>= 0).

        One value is drawn from the generator on every call, even with zero jitter, so the
        sequence of samples depends only on the seed and the number of calls.
        """
        delay_ms = float(self._rng.normal(self._mean_ms, self._jitter_ms))
        return round(max(delay_ms, 0.0) * NANOS_PER_MILLI)
