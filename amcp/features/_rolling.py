"""Rolling-window kernels over float64 series or panels, compiled with numba.

Every public kernel takes a 1-D series of length ``T`` or a 2-D *panel* of shape ``(T, N)``
(dates down, symbols across, each column an independent series) and returns the same shape;
column ``j`` of a panel's result is bit for bit the 1-D result on column ``j`` (the columns are
looped inside numba, with no per-column Python overhead).

Window semantics, shared by every kernel: the value at bar ``t`` is computed from
``x[t - window + 1 .. t]`` (the ``window`` most recent bars, ``t`` included); it is NaN for
``t < window - 1`` and NaN when any value in the window is missing. A value is *missing* when it
is NaN or ±inf, so every result is finite or NaN. This is pandas' ``rolling(window)`` with its
default ``min_periods=window``. Qlib's expression engine differs on purpose: it rolls with
``min_periods=1``, so its values over a partial or gappy window use fewer bars than the window
names; here such a value is NaN. :func:`rolling_count` is the one exception: it counts the
present values and is NaN only before the window is full.

Each value is computed from its own window (two-pass centred sums, a scan, or an incrementally
maintained sorted window), never from running totals over the whole series, so there is no
drift from cumulative sums and a value at ``t`` depends on ``x[..t]`` alone, bit for bit.
Cost is O(T·window) with a small constant (O(T·window) moves for the quantile's sorted window).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from amcp._typing import FloatArray, IntArray
from amcp.errors import DataError

__all__ = [
    "rolling_argmax",
    "rolling_argmin",
    "rolling_corr",
    "rolling_count",
    "rolling_max",
    "rolling_mean",
    "rolling_min",
    "rolling_quantile",
    "rolling_rank",
    "rolling_resi",
    "rolling_rsquare",
    "rolling_slope",
    "rolling_std",
    "rolling_sum",
]


# ---------------------------------------------------------------------------------- numba kernels

#: Compiled once and cached on disk; releases the GIL; x/0 follows IEEE (the kernels never divide by 0).
_jit = numba.njit(cache=True, nogil=True, error_model="numpy")


@_jit
def _run_lengths(x: FloatArray) -> IntArray:
    """``run[t]``: how many consecutive finite values end at ``t`` (0 when ``x[t]`` is missing)."""
    run = np.empty(len(x), dtype=np.int64)
    count = 0
    for t in range(len(x)):
        count = count + 1 if np.isfinite(x[t]) else 0
        run[t] = count
    return run


@_jit
def _sum_nb(x: FloatArray, w: int, mean: bool) -> FloatArray:
    out = np.full(len(x), np.nan)
    run = _run_lengths(x)
    for t in range(w - 1, len(x)):
        if run[t] < w:
            continue
        total = 0.0
        for i in range(t - w + 1, t + 1):
            total += x[i]
        out[t] = total / w if mean else total
    return out


@_jit
def _std_nb(x: FloatArray, w: int, ddof: int) -> FloatArray:
    out = np.full(len(x), np.nan)
    run = _run_lengths(x)
    for t in range(w - 1, len(x)):
        if run[t] < w:
            continue
        total = 0.0
        for i in range(t - w + 1, t + 1):
            total += x[i]
        centre = total / w
        squares = 0.0
        for i in range(t - w + 1, t + 1):
            squares += (x[i] - centre) ** 2
        out[t] = math.sqrt(squares / (w - ddof))
    return out


@_jit
def _extreme_nb(x: FloatArray, w: int, maximum: bool, position: bool) -> FloatArray:
    out = np.full(len(x), np.nan)
    run = _run_lengths(x)
    for t in range(w - 1, len(x)):
        if run[t] < w:
            continue
        start = t - w + 1
        best = x[start]
        where = 0
        for k in range(1, w):
            value = x[start + k]
            if (value > best) if maximum else (value < best):
                best = value
                where = k
        out[t] = where + 1.0 if position else best
    return out


@_jit
def _quantile_nb(x: FloatArray, w: int, q: float) -> FloatArray:
    out = np.full(len(x), np.nan)
    run = _run_lengths(x)
    window = np.empty(w)
    position = q * (w - 1)
    low = int(math.floor(position))
    high = min(low + 1, w - 1)
    fraction = position - low
    sorted_ok = False
    for t in range(w - 1, len(x)):
        if run[t] < w:
            sorted_ok = False
            continue
        if not sorted_ok:
            window[:] = np.sort(x[t - w + 1:t + 1])
            sorted_ok = True
        else:
            leaving = np.searchsorted(window, x[t - w])
            entering = np.searchsorted(window, x[t])
            if entering > leaving:
                for k in range(leaving, entering - 1):
                    window[k] = window[k + 1]
                window[entering - 1] = x[t]
            else:
                for k in range(leaving, entering, -1):
                    window[k] = window[k - 1]
                window[entering] = x[t]
        if fraction == 0.0:
            out[t] = window[low]
        else:
            out[t] = window[low] + (window[high] - window[low]) * fraction
    return out


@_jit
def _rank_nb(x: FloatArray, w: int) -> FloatArray:
    out = np.full(len(x), np.nan)
    run = _run_lengths(x)
    for t in range(w - 1, len(x)):
        if run[t] < w:
            continue
        last = x[t]
        below = 0
        equal = 0
        for i in range(t - w + 1, t + 1):
            if x[i] < last:
                below += 1
            elif x[i] == last:
                equal += 1
        out[t] = (2.0 * below + equal + 1.0) / (2.0 * w)
    return out


@_jit
def _regression_nb(x: FloatArray, w: int, kind: int, min_std: float) -> FloatArray:
    """kind 0: slope, 1: r-squared, 2: residual of the last bar; regression on time 1..w."""
    out = np.full(len(x), np.nan)
    run = _run_lengths(x)
    time_mean = (w + 1) / 2.0
    time_squares = w * (w * w - 1.0) / 12.0
    for t in range(w - 1, len(x)):
        if run[t] < w:
            continue
        start = t - w + 1
        total = 0.0
        for i in range(start, t + 1):
            total += x[i]
        centre = total / w
        cross = 0.0
        squares = 0.0
        for k in range(w):
            deviation = x[start + k] - centre
            cross += (k + 1.0 - time_mean) * deviation
            squares += deviation * deviation
        slope = cross / time_squares
        if kind == 0:
            out[t] = slope
        elif kind == 1:
            if squares > 0.0 and math.sqrt(squares / (w - 1)) > min_std:
                out[t] = cross * cross / (time_squares * squares)
        else:
            out[t] = (x[t] - centre) - slope * (w - time_mean)
    return out


@_jit
def _corr_nb(x: FloatArray, y: FloatArray, w: int, min_std: float) -> FloatArray:
    out = np.full(len(x), np.nan)
    run_x = _run_lengths(x)
    run_y = _run_lengths(y)
    for t in range(w - 1, len(x)):
        if run_x[t] < w or run_y[t] < w:
            continue
        start = t - w + 1
        total_x = 0.0
        total_y = 0.0
        for i in range(start, t + 1):
            total_x += x[i]
            total_y += y[i]
        centre_x = total_x / w
        centre_y = total_y / w
        cross = 0.0
        squares_x = 0.0
        squares_y = 0.0
        for i in range(start, t + 1):
            dx = x[i] - centre_x
            dy = y[i] - centre_y
            cross += dx * dy
            squares_x += dx * dx
            squares_y += dy * dy
        if squares_x <= 0.0 or squares_y <= 0.0:
            continue
        if math.sqrt(squares_x / (w - 1)) <= min_std or math.sqrt(squares_y / (w - 1)) <= min_std:
            continue
        out[t] = cross / math.sqrt(squares_x * squares_y)
    return out


@_jit
def _count_nb(x: FloatArray, w: int) -> FloatArray:
    out = np.full(len(x), np.nan)
    present = 0
    for t in range(len(x)):
        if np.isfinite(x[t]):
            present += 1
        if t >= w and np.isfinite(x[t - w]):
            present -= 1
        if t >= w - 1:
            out[t] = present
    return out


# ------------------------------------------------------------------- panel (T, N) wrappers
# Each loops the columns inside numba: the column is copied into a contiguous buffer, so the 1-D
# kernel runs on exactly the array type (and code) a 1-D call does, and the result is bit for bit
# the same.


@_jit
def _sum_panel(x: FloatArray, w: int, mean: bool) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _sum_nb(col, w, mean)
    return out


@_jit
def _std_panel(x: FloatArray, w: int, ddof: int) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _std_nb(col, w, ddof)
    return out


@_jit
def _extreme_panel(x: FloatArray, w: int, maximum: bool, position: bool) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _extreme_nb(col, w, maximum, position)
    return out


@_jit
def _quantile_panel(x: FloatArray, w: int, q: float) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _quantile_nb(col, w, q)
    return out


@_jit
def _rank_panel(x: FloatArray, w: int) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _rank_nb(col, w)
    return out


@_jit
def _regression_panel(x: FloatArray, w: int, kind: int, min_std: float) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _regression_nb(col, w, kind, min_std)
    return out


@_jit
def _corr_panel(x: FloatArray, y: FloatArray, w: int, min_std: float) -> FloatArray:
    out = np.empty(x.shape)
    col_x = np.empty(x.shape[0])
    col_y = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col_x[:] = x[:, j]
        col_y[:] = y[:, j]
        out[:, j] = _corr_nb(col_x, col_y, w, min_std)
    return out


@_jit
def _count_panel(x: FloatArray, w: int) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _count_nb(col, w)
    return out


# ---------------------------------------------------------------------------------- public API


def _series(x: FloatArray, name: str) -> FloatArray:
    array = np.asarray(x, dtype=np.float64)
    if array.ndim not in (1, 2):
        raise DataError(f"rolling {name}: input must be 1-D (T,) or 2-D (T, N), got shape {array.shape}")
    return np.ascontiguousarray(array)


def _run(kernel, panel, array: FloatArray, *args):  # type: ignore[no-untyped-def]
    """The 1-D ``kernel`` on a series, the column-looping ``panel`` wrapper on a (T, N) panel."""
    return kernel(array, *args) if array.ndim == 1 else panel(array, *args)


def _window(window: int, name: str, minimum: int = 1) -> int:
    if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < minimum:
        raise DataError(f"rolling {name}: window must be an int >= {minimum}, got {window!r}")
    return int(window)


def rolling_sum(x: FloatArray, window: int) -> FloatArray:
    """Sum of the last ``window`` values (module docstring: window and NaN semantics)."""
    return _run(_sum_nb, _sum_panel, _series(x, "sum"), _window(window, "sum"), False)


def rolling_mean(x: FloatArray, window: int) -> FloatArray:
    """Arithmetic mean of the last ``window`` values (Qlib's ``Mean``)."""
    return _run(_sum_nb, _sum_panel, _series(x, "mean"), _window(window, "mean"), True)


def rolling_std(x: FloatArray, window: int, ddof: int = 1) -> FloatArray:
    """Standard deviation of the last ``window`` values, ``sqrt(Σ(x − x̄)² / (window − ddof))``.

    ``ddof=1`` (the default) is the sample deviation of pandas' ``rolling().std()``, which Qlib's
    ``Std`` uses.

    Raises:
        DataError: if ``ddof`` is not in ``[0, window)``.
    """
    w = _window(window, "std")
    if not 0 <= ddof < w:
        raise DataError(f"rolling std: ddof must be in [0, window={w}), got {ddof}")
    return _run(_std_nb, _std_panel, _series(x, "std"), w, int(ddof))


def rolling_max(x: FloatArray, window: int) -> FloatArray:
    """Largest of the last ``window`` values (Qlib's ``Max``)."""
    return _run(_extreme_nb, _extreme_panel, _series(x, "max"), _window(window, "max"), True, False)


def rolling_min(x: FloatArray, window: int) -> FloatArray:
    """Smallest of the last ``window`` values (Qlib's ``Min``)."""
    return _run(_extreme_nb, _extreme_panel, _series(x, "min"), _window(window, "min"), False, False)


def rolling_argmax(x: FloatArray, window: int) -> FloatArray:
    """1-based position of the largest value in the window, oldest bar = 1 (Qlib's ``IdxMax``).

    Ties resolve to the oldest bar, as ``numpy.argmax`` does; ``window`` means the maximum is today.
    """
    return _run(_extreme_nb, _extreme_panel, _series(x, "argmax"), _window(window, "argmax"), True, True)


def rolling_argmin(x: FloatArray, window: int) -> FloatArray:
    """1-based position of the smallest value in the window, oldest bar = 1 (Qlib's ``IdxMin``)."""
    return _run(_extreme_nb, _extreme_panel, _series(x, "argmin"), _window(window, "argmin"), False, True)


def rolling_quantile(x: FloatArray, window: int, q: float) -> FloatArray:
    """The ``q`` quantile of the window, interpolated linearly (Qlib's ``Quantile``).

    With the window sorted ascending as ``s[0..w-1]`` and ``p = q·(w − 1)``:
    ``s[⌊p⌋] + (s[⌊p⌋ + 1] − s[⌊p⌋])·(p − ⌊p⌋)``, as pandas' ``rolling().quantile(q)``.

    Raises:
        DataError: if ``q`` is not in [0, 1].
    """
    if not 0.0 <= float(q) <= 1.0:
        raise DataError(f"rolling quantile: q must be in [0, 1], got {q!r}")
    return _run(_quantile_nb, _quantile_panel, _series(x, "quantile"), _window(window, "quantile"), float(q))


def rolling_rank(x: FloatArray, window: int) -> FloatArray:
    """Percentile of the last value within its window, in (0, 1] (Qlib's ``Rank``).

    ``(below + (equal + 1)/2) / window`` where ``below`` counts window values smaller than the
    last and ``equal`` those equal to it (itself included): the last value's average rank over
    ``window``, as ``scipy.stats.percentileofscore(window, last) / 100`` and pandas'
    ``rolling().rank(pct=True)``.
    """
    return _run(_rank_nb, _rank_panel, _series(x, "rank"), _window(window, "rank"))


def rolling_slope(x: FloatArray, window: int) -> FloatArray:
    """Least-squares slope of the window on time ``1..window`` (Qlib's ``Slope``).

    ``Σ(i − ī)(x_i − x̄) / Σ(i − ī)²`` with ``ī = (window + 1)/2`` and
    ``Σ(i − ī)² = window(window² − 1)/12``.

    Raises:
        DataError: if ``window`` < 2.
    """
    return _run(_regression_nb, _regression_panel, _series(x, "slope"), _window(window, "slope", 2), 0, 0.0)


def rolling_rsquare(x: FloatArray, window: int, min_std: float = 0.0) -> FloatArray:
    """R² of the window's least-squares line on time ``1..window`` (Qlib's ``Rsquare``).

    ``(Σ(i − ī)(x_i − x̄))² / (Σ(i − ī)² · Σ(x_i − x̄)²)``; NaN when the window's sample standard
    deviation is ``<= min_std`` (a flat window has no R²; Qlib uses ``min_std = 2e-5``).

    Raises:
        DataError: if ``window`` < 2 or ``min_std`` < 0.
    """
    if not min_std >= 0.0:
        raise DataError(f"rolling rsquare: min_std must be >= 0, got {min_std!r}")
    return _run(_regression_nb, _regression_panel, _series(x, "rsquare"), _window(window, "rsquare", 2), 1,
                float(min_std))


def rolling_resi(x: FloatArray, window: int) -> FloatArray:
    """Residual of the last bar from the window's least-squares line on time (Qlib's ``Resi``).

    ``x_t − (a + b·window)`` with slope ``b`` as :func:`rolling_slope` and ``a = x̄ − b·ī``.

    Raises:
        DataError: if ``window`` < 2.
    """
    return _run(_regression_nb, _regression_panel, _series(x, "resi"), _window(window, "resi", 2), 2, 0.0)


def rolling_corr(x: FloatArray, y: FloatArray, window: int, min_std: float = 0.0) -> FloatArray:
    """Pearson correlation of ``x`` and ``y`` over the window (Qlib's ``Corr``).

    ``Σ(x − x̄)(y − ȳ) / sqrt(Σ(x − x̄)² · Σ(y − ȳ)²)``; NaN when either series is missing anywhere
    in the window or when either window's sample standard deviation is ``<= min_std`` (Qlib
    blanks |std| ≤ 2e-5; with ``min_std = 0`` only a flat window is blanked).

    Raises:
        DataError: if the lengths differ, ``window`` < 2 or ``min_std`` < 0.
    """
    left, right = _series(x, "corr"), _series(y, "corr")
    if left.shape != right.shape:
        if left.ndim == right.ndim == 1:
            raise DataError(f"rolling corr: inputs differ in length, {left.shape[0]} and {right.shape[0]}")
        raise DataError(f"rolling corr: inputs differ in shape, {left.shape} and {right.shape}")
    if not min_std >= 0.0:
        raise DataError(f"rolling corr: min_std must be >= 0, got {min_std!r}")
    return _run(_corr_nb, _corr_panel, left, right, _window(window, "corr", 2), float(min_std))


def rolling_count(x: FloatArray, window: int) -> FloatArray:
    """How many of the last ``window`` values are present (finite): Qlib's ``Count``.

    Unlike the other kernels a missing value does not blank the window: it is simply not
    counted. NaN for ``t < window − 1``.
    """
    return _run(_count_nb, _count_panel, _series(x, "count"), _window(window, "count"))
