"""Labels: what a model learns to predict, each known only ``horizon`` bars after its bar.

A label at bar ``t`` looks *forward*, so unlike a feature it is not known at ``t``: it becomes
known at the bar its outcome is settled (``t + horizon`` for a forward return, the first barrier
touch for the triple barrier). Walk-forward splits must therefore purge training rows whose label
window reaches into a test window (:mod:`amcp.features.splits`).

Conventions, for arrays of daily bars oldest first:

* A price that is NaN or not positive is unusable: no label is computed from or at it.
* Where a label is unknown (its outcome lies beyond the last bar, or an input is unusable)
  :func:`forward_returns` gives NaN and :func:`triple_barrier` gives label 0 with hit index −1,
  so callers must mask with ``hit_index >= 0`` (:attr:`TripleBarrierLabels.known`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from amcp._typing import BoolArray, FloatArray, IntArray
from amcp.errors import DataError

__all__ = ["TripleBarrierLabels", "forward_returns", "rolling_volatility", "triple_barrier"]


class TripleBarrierLabels(NamedTuple):
    """The triple-barrier labels of every bar (unpacks as ``label, hit_index``).

    Attributes:
        label: int8, +1 where the upper barrier was touched first, −1 where the lower one was
            (or both in the same bar), 0 where the vertical barrier came first — and 0 where the
            label is unknown (see ``hit_index``).
        hit_index: int64, the bar at which the label was settled (the touching bar, or
            ``t + horizon`` at the vertical barrier); −1 where the label is unknown.
    """

    label: npt.NDArray[np.int8]
    hit_index: IntArray

    @property
    def known(self) -> BoolArray:
        """Where the label is known (``hit_index >= 0``)."""
        return self.hit_index >= 0


def forward_returns(close: FloatArray, horizon: int) -> FloatArray:
    """The simple return from bar ``t``'s close to bar ``t + horizon``'s close.

    ``r[t] = close[t + horizon] / close[t] − 1``, along axis 0 (one series, or a dates × symbols
    panel whose columns are handled independently). NaN for the last ``horizon`` bars, and
    where either close is NaN or not positive.

    Args:
        close: closes, oldest first; 1-D or 2-D (dates × symbols).
        horizon: bars ahead, at least 1.

    Returns:
        float64 of the shape of ``close``.

    Raises:
        DataError: if ``horizon`` is not an int >= 1 or ``close`` is 0-D.
    """
    _check_horizon(horizon)
    price = np.asarray(close, dtype=np.float64)
    if price.ndim == 0:
        raise DataError("forward_returns: close must be an array of bars, got a scalar")
    usable = np.where(np.isfinite(price) & (price > 0), price, np.nan)
    out = np.full_like(usable, np.nan)
    if horizon < len(usable):
        out[:-horizon] = usable[horizon:] / usable[:-horizon] - 1.0
    return out


def rolling_volatility(close: FloatArray, window: int) -> FloatArray:
    """Point-in-time volatility of daily log returns, for volatility-scaled barriers.

    ``vol[t] = std(log(close[i] / close[i−1]) for i in t−window+1..t)`` (sample std, ddof 1), so
    it uses bars ``t − window .. t`` only. NaN until ``window`` returns exist and wherever one of
    those returns is unusable (a NaN or non-positive close).

    Raises:
        DataError: if ``window`` is not an int >= 2 or ``close`` is not 1-D.
    """
    if type(window) is not int or window < 2:
        raise DataError(f"rolling_volatility: window must be an int >= 2, got {window!r}")
    price = np.asarray(close, dtype=np.float64)
    if price.ndim != 1:
        raise DataError(f"rolling_volatility: close must be 1-D, got shape {price.shape}")
    usable = np.where(np.isfinite(price) & (price > 0), price, np.nan)
    returns = np.full(len(usable), np.nan)
    returns[1:] = np.log(usable[1:] / usable[:-1])
    out = np.full(len(usable), np.nan)
    if len(usable) > window:
        windows = np.lib.stride_tricks.sliding_window_view(returns[1:], window)
        out[window:] = windows.std(axis=1, ddof=1)
    return out


def triple_barrier(
    close: FloatArray,
    high: FloatArray,
    low: FloatArray,
    *,
    horizon: int,
    upper: float,
    lower: float,
    volatility: FloatArray | None = None,
) -> TripleBarrierLabels:
    """López de Prado's triple-barrier label of every bar (*Advances in Financial ML*, 3.4).

    A position is entered at bar ``t``'s close ``c = close[t]``. With the scale ``s[t] = 1``, or
    ``volatility[t]`` when given (e.g. :func:`rolling_volatility`, so the barriers are that many
    standard deviations away), the horizontal barriers are::

        upper price = c · (1 + upper · s[t])        lower price = c · (1 − lower · s[t])

    and the vertical barrier is bar ``t + horizon``. Bars ``t+1 .. t+horizon`` are scanned in
    order using their *high and low* (the intrabar path, not just the close): the upper barrier
    is touched at bar ``j`` when ``high[j] >= upper price``, the lower when ``low[j] <= lower
    price``. The first touching bar settles the label: +1 (upper) or −1 (lower). When one bar
    touches both, daily bars cannot tell which came first, so the label is −1 (conservative: the
    stop is assumed to have been hit). A bar whose high or low is NaN touches nothing. With no
    touch, the label is 0, settled at the vertical barrier (whatever the return there).

    The label of ``t`` is unknown (0 with hit index −1) when ``close[t]`` or ``s[t]`` is NaN or
    not positive, or when no barrier was touched and ``t + horizon`` lies beyond the last bar.
    Near the end a label is still known if a barrier was touched within the bars available.
    Pass ``math.inf`` as ``upper`` or ``lower`` to disable that barrier.

    Args:
        close, high, low: 1-D float arrays of equal length, oldest first.
        horizon: the vertical barrier, in bars (>= 1).
        upper, lower: barrier distances as fractions of the entry close (× the scale), > 0.
        volatility: optional per-bar scale of the barriers, known at ``t``.

    Returns:
        :class:`TripleBarrierLabels` (``label, hit_index = triple_barrier(...)``).

    Raises:
        DataError: on mismatched shapes, a horizon < 1, or a barrier that is not > 0.
    """
    _check_horizon(horizon)
    for name, value in (("upper", upper), ("lower", lower)):
        if not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
            raise DataError(f"triple_barrier: {name} must be a number > 0 (math.inf disables it), got {value!r}")
    arrays = [np.asarray(a, dtype=np.float64) for a in (close, high, low)]
    if volatility is not None:
        arrays.append(np.asarray(volatility, dtype=np.float64))
    entry, high_, low_ = arrays[:3]
    if entry.ndim != 1 or any(a.shape != entry.shape for a in arrays):
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise DataError(
            f"triple_barrier: close, high, low (and volatility) must be 1-D of one length, got {shapes}")
    n = len(entry)
    scale = np.ones(n) if volatility is None else arrays[3]
    pending = np.isfinite(entry) & (entry > 0) & np.isfinite(scale) & (scale > 0)
    with np.errstate(invalid="ignore"):
        upper_price = entry * (1.0 + upper * scale)
        lower_price = entry * (1.0 - lower * scale)
    label = np.zeros(n, dtype=np.int8)
    hit_index = np.full(n, -1, dtype=np.int64)
    for step in range(1, min(horizon, n - 1) + 1):
        head = n - step
        active = pending[:head]
        down = active & (low_[step:] <= lower_price[:head])
        up = active & ~down & (high_[step:] >= upper_price[:head])
        touched = np.flatnonzero(down | up)
        label[touched] = np.where(down[touched], -1, 1).astype(np.int8)
        hit_index[touched] = touched + step
        pending[touched] = False
    vertical = np.flatnonzero(pending[: max(n - horizon, 0)])
    hit_index[vertical] = vertical + horizon
    return TripleBarrierLabels(label, hit_index)


def _check_horizon(horizon: int) -> None:
    if type(horizon) is not int or horizon < 1:
        raise DataError(f"label horizon must be an int >= 1 bar, got {horizon!r}")
