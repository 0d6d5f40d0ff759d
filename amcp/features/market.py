"""Market proxies for the features that compare a symbol with its market (beta, correlation)."""

from __future__ import annotations

import numpy as np

from amcp._typing import FloatArray

__all__ = ["equal_weight_index"]


def equal_weight_index(close: FloatArray) -> FloatArray:
    """An equal-weighted close index of a dates × symbols panel, point in time.

    ``I_0 = 1``; ``I_t = I_{t-1} · (1 + mean_i(close[t, i] / close[t-1, i] − 1))`` over the symbols
    with a usable (finite, positive) close on both ``t − 1`` and ``t``; ``I_t = I_{t-1}`` on a date
    where there is none. ``I_t`` uses dates ``t − 1`` and ``t`` only (rebalanced daily to equal
    weights; a symbol enters the day after its first bar).
    """
    price = np.asarray(close, dtype=np.float64)
    usable = np.where(np.isfinite(price) & (price > 0), price, np.nan)
    returns = usable[1:] / usable[:-1] - 1.0
    count = np.isfinite(returns).sum(axis=1)
    mean = np.where(count > 0, np.nansum(returns, axis=1) / np.maximum(count, 1), 0.0)
    return np.concatenate([[1.0], np.cumprod(1.0 + mean)])
