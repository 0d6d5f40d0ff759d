"""Seeded order-arrival latency for the simulated venue.

An order submitted at ``ts_ns`` reaches the simulated matching engine at
``ts_ns + sample_ns()``. Samples are normal with mean ``mean_ms`` and standard deviation
``jitter_ms``, clipped at zero, drawn from ``numpy.random.default_rng(seed)``: the same seed and
the same sequence of calls give the same samples. No clock is read.

Draws are taken from the generator in blocks of :data:`BLOCK` (one vectorised call instead of
one per order); numpy's ``Generator.normal`` yields the same values one at a time or in a block,
so the k-th sample is the generator's k-th normal draw either way.
"""

from __future__ import annotations

import numpy as np

from amcp.config import LatencyConfig

NANOS_PER_MILLI = 1_000_000
BLOCK = 256


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
        self._block: list[int] = []  # drawn and converted, not yet used; the next is the last item

    def sample_ns(self) -> int:
        """Return the next delay in nanoseconds (>= 0).

        One value of the generator's sequence is used on every call, even with zero jitter, so
        the sequence of samples depends only on the seed and the number of calls.
        """
        block = self._block
        if not block:
            draws_ms = self._rng.normal(self._mean_ms, self._jitter_ms, size=BLOCK).tolist()
            block.extend(round(max(delay_ms, 0.0) * NANOS_PER_MILLI) for delay_ms in reversed(draws_ms))
        return block.pop()
