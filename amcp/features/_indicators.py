"""Causal numeric kernels for the technical features: smoothers, rolling windows, safe arithmetic.

Conventions shared by every kernel (see :mod:`amcp.features.technical` for how features use them):

* Output ``t`` depends on inputs ``0..t`` only.
* A non-finite input (NaN, ±inf) is a *missing* observation.
* Rolling kernels (``rolling_*``) cover the ``window`` rows ending at ``t``; their value is NaN
  unless all of those rows are finite (so NaN for ``window`` rows after a gap), except
  :func:`rolling_nanmean`, which averages the finite rows given a minimum count. Plain sums,
  means and extremes come from :mod:`amcp.features._rolling`, which shares this convention; the
  kernels here build on its means and extremes.
* Recursive smoothers (:func:`exp_smooth`, :func:`wilder_sum`) skip missing observations: the
  output is NaN at a missing row and the state carries over to the next finite one.
* Nothing returns ±inf: divisions by zero give NaN (:func:`safe_div`).
* Panels: every kernel takes a 1-D series of length ``T`` or a 2-D panel ``(T, N)`` (dates down,
  symbols across) and treats each column as an independent series, bit for bit as the 1-D call on
  that column; the columns are looped inside numba, and element-wise helpers act along axis 0.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from amcp._typing import FloatArray
from amcp.errors import DataError
from amcp.features._rolling import rolling_max, rolling_mean, rolling_min

__all__ = [
    "exp_smooth",
    "lag",
    "rolling_age_of_max",
    "rolling_age_of_min",
    "rolling_cov",
    "rolling_mean_abs_dev",
    "rolling_moments",
    "rolling_nanmean",
    "safe_div",
    "safe_log",
    "true_range",
    "wilder_sum",
]

_jit = nb.njit(cache=True, nogil=True, error_model="numpy")


def _array(x: FloatArray, name: str) -> FloatArray:
    """``x`` as an array (unchanged when it already is one), which must be 1-D ``(T,)`` or 2-D ``(T, N)``."""
    array = np.asarray(x)
    if array.ndim not in (1, 2):
        raise DataError(f"{name}: input must be 1-D (T,) or 2-D (T, N), got shape {array.shape}")
    return array


def _panel(x: FloatArray) -> FloatArray:
    return np.ascontiguousarray(x, dtype=np.float64)


# ---------------------------------------------------------------------------- recursive smoothers


def exp_smooth(x: FloatArray, period: int, alpha: float) -> FloatArray:
    """Exponential smoothing ``s_t = s_{t-1} + alpha (x_t - s_{t-1})``, seeded by an SMA.

    The seed is the mean of the first ``period`` finite values (TA-Lib's and backtrader's
    convention); ``alpha = 2/(period+1)`` is the EMA, ``alpha = 1/period`` Wilder's smoothing
    (SMMA/RMA). Missing inputs are skipped (output NaN there, state kept).
    """
    array = _array(x, "exp_smooth")
    if array.ndim == 1:
        return _exp_smooth_nb(array, period, alpha)
    return _exp_smooth_panel(_panel(array), period, alpha)


@_jit
def _exp_smooth_nb(x: FloatArray, period: int, alpha: float) -> FloatArray:
    n = x.shape[0]
    out = np.full(n, np.nan)
    count = 0
    total = 0.0
    state = 0.0
    for t in range(n):
        value = x[t]
        if not math.isfinite(value):
            continue
        if count < period:
            total += value
            count += 1
            if count == period:
                state = total / period
                out[t] = state
        else:
            state += alpha * (value - state)
            out[t] = state
    return out


@_jit
def _exp_smooth_panel(x: FloatArray, period: int, alpha: float) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _exp_smooth_nb(col, period, alpha)
    return out


def wilder_sum(x: FloatArray, period: int) -> FloatArray:
    """Wilder's running *sum* as TA-Lib computes +DM, −DM and TR for the DMI/ADX family.

    The first ``period - 1`` finite values are summed; from the ``period``-th on,
    ``S_t = S_{t-1} - S_{t-1}/period + x_t``. Missing inputs are skipped.
    """
    array = _array(x, "wilder_sum")
    if array.ndim == 1:
        return _wilder_sum_nb(array, period)
    return _wilder_sum_panel(_panel(array), period)


@_jit
def _wilder_sum_nb(x: FloatArray, period: int) -> FloatArray:
    n = x.shape[0]
    out = np.full(n, np.nan)
    count = 0
    state = 0.0
    for t in range(n):
        value = x[t]
        if not math.isfinite(value):
            continue
        if count < period - 1:
            state += value
            count += 1
        else:
            state = state - state / period + value
            out[t] = state
    return out


@_jit
def _wilder_sum_panel(x: FloatArray, period: int) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _wilder_sum_nb(col, period)
    return out


# ---------------------------------------------------------------------------- rolling windows


def rolling_age_of_max(x: FloatArray, window: int) -> FloatArray:
    """Bars since the maximum of the ``window`` rows ending at ``t`` (0 = this bar; ties: most recent).

    Kept beside :func:`amcp.features._rolling.rolling_argmax`, which resolves ties to the oldest bar:
    on equal highs ``window - argmax`` would differ from TA-Lib's Aroon.
    """
    array = _array(x, "rolling_age_of_max")
    if array.ndim == 1:
        return _age_of_extreme_nb(array, rolling_max(array, window), window)
    panel = _panel(array)
    return _age_of_extreme_panel(panel, rolling_max(panel, window), window)


def rolling_age_of_min(x: FloatArray, window: int) -> FloatArray:
    """Bars since the minimum of the ``window`` rows ending at ``t`` (ties: most recent)."""
    array = _array(x, "rolling_age_of_min")
    if array.ndim == 1:
        return _age_of_extreme_nb(array, rolling_min(array, window), window)
    panel = _panel(array)
    return _age_of_extreme_panel(panel, rolling_min(panel, window), window)


@_jit
def _age_of_extreme_nb(x: FloatArray, extreme: FloatArray, window: int) -> FloatArray:
    """``t - i`` for the latest ``i`` in the window with ``x[i] == extreme[t]``; NaN where ``extreme`` is."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    for t in range(n):
        if math.isfinite(extreme[t]):
            for i in range(t, t - window, -1):
                if x[i] == extreme[t]:
                    out[t] = t - i
                    break
    return out


@_jit
def _age_of_extreme_panel(x: FloatArray, extreme: FloatArray, window: int) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    col_extreme = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        col_extreme[:] = extreme[:, j]
        out[:, j] = _age_of_extreme_nb(col, col_extreme, window)
    return out


def rolling_mean_abs_dev(x: FloatArray, window: int) -> FloatArray:
    """``mean_i |x_i - mean(x)|`` over the ``window`` rows ending at ``t`` (the window's own mean)."""
    array = _array(x, "rolling_mean_abs_dev")
    if array.ndim == 1:
        return _mean_abs_dev_nb(array, rolling_mean(array, window), window)
    panel = _panel(array)
    return _mean_abs_dev_panel(panel, rolling_mean(panel, window), window)


@_jit
def _mean_abs_dev_nb(x: FloatArray, mean: FloatArray, window: int) -> FloatArray:
    n = x.shape[0]
    out = np.full(n, np.nan)
    for t in range(n):
        if math.isfinite(mean[t]):
            total = 0.0
            for i in range(t - window + 1, t + 1):
                total += abs(x[i] - mean[t])
            out[t] = total / window
    return out


@_jit
def _mean_abs_dev_panel(x: FloatArray, mean: FloatArray, window: int) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    col_mean = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        col_mean[:] = mean[:, j]
        out[:, j] = _mean_abs_dev_nb(col, col_mean, window)
    return out


def rolling_moments(x: FloatArray, window: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Mean and the central moments ``m_k = mean((x - mean)^k)``, k = 2, 3, 4, over the window."""
    array = _array(x, "rolling_moments")
    if array.ndim == 1:
        mean = rolling_mean(array, window)
        m2, m3, m4 = _central_moments_nb(array, mean, window)
        return mean, m2, m3, m4
    panel = _panel(array)
    mean = rolling_mean(panel, window)
    m2, m3, m4 = _central_moments_panel(panel, mean, window)
    return mean, m2, m3, m4


@_jit
def _central_moments_nb(x: FloatArray, mean: FloatArray,
                        window: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = x.shape[0]
    m2 = np.full(n, np.nan)
    m3 = np.full(n, np.nan)
    m4 = np.full(n, np.nan)
    for t in range(n):
        if math.isfinite(mean[t]):
            s2 = 0.0
            s3 = 0.0
            s4 = 0.0
            for i in range(t - window + 1, t + 1):
                d = x[i] - mean[t]
                d2 = d * d
                s2 += d2
                s3 += d2 * d
                s4 += d2 * d2
            m2[t] = s2 / window
            m3[t] = s3 / window
            m4[t] = s4 / window
    return m2, m3, m4


@_jit
def _central_moments_panel(x: FloatArray, mean: FloatArray,
                           window: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    m2 = np.empty(x.shape)
    m3 = np.empty(x.shape)
    m4 = np.empty(x.shape)
    col = np.empty(x.shape[0])
    col_mean = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        col_mean[:] = mean[:, j]
        c2, c3, c4 = _central_moments_nb(col, col_mean, window)
        m2[:, j] = c2
        m3[:, j] = c3
        m4[:, j] = c4
    return m2, m3, m4


def rolling_cov(x: FloatArray, y: FloatArray, window: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Biased (÷ window) covariance of x and y and the variances of each over the rows where both are finite.

    NaN unless all ``window`` rows ending at ``t`` have finite x and y.
    """
    x, y = _array(x, "rolling_cov"), _array(y, "rolling_cov")
    if x.shape != y.shape:
        raise DataError(f"rolling_cov: inputs differ in shape, {x.shape} and {y.shape}")
    if x.ndim == 2:
        x, y = _panel(x), _panel(y)
    both = np.isfinite(x) & np.isfinite(y)
    mean_x = rolling_mean(np.where(both, x, np.nan), window)
    mean_y = rolling_mean(np.where(both, y, np.nan), window)
    if x.ndim == 1:
        return _covariance_nb(x, y, mean_x, mean_y, window)
    return _covariance_panel(x, y, mean_x, mean_y, window)


@_jit
def _covariance_nb(x: FloatArray, y: FloatArray, mean_x: FloatArray, mean_y: FloatArray,
                   window: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = x.shape[0]
    cov = np.full(n, np.nan)
    var_x = np.full(n, np.nan)
    var_y = np.full(n, np.nan)
    for t in range(n):
        if not math.isnan(mean_x[t]):  # NaN exactly when a row of the window lacks x or y
            sxy = 0.0
            sxx = 0.0
            syy = 0.0
            for i in range(t - window + 1, t + 1):
                dx = x[i] - mean_x[t]
                dy = y[i] - mean_y[t]
                sxy += dx * dy
                sxx += dx * dx
                syy += dy * dy
            cov[t] = sxy / window
            var_x[t] = sxx / window
            var_y[t] = syy / window
    return cov, var_x, var_y


@_jit
def _covariance_panel(x: FloatArray, y: FloatArray, mean_x: FloatArray, mean_y: FloatArray,
                      window: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    cov = np.empty(x.shape)
    var_x = np.empty(x.shape)
    var_y = np.empty(x.shape)
    n = x.shape[0]
    col_x = np.empty(n)
    col_y = np.empty(n)
    col_mean_x = np.empty(n)
    col_mean_y = np.empty(n)
    for j in range(x.shape[1]):
        col_x[:] = x[:, j]
        col_y[:] = y[:, j]
        col_mean_x[:] = mean_x[:, j]
        col_mean_y[:] = mean_y[:, j]
        c, vx, vy = _covariance_nb(col_x, col_y, col_mean_x, col_mean_y, window)
        cov[:, j] = c
        var_x[:, j] = vx
        var_y[:, j] = vy
    return cov, var_x, var_y


def rolling_nanmean(x: FloatArray, window: int, min_count: int) -> FloatArray:
    """Mean of the finite rows among the ``window`` rows ending at ``t``; NaN if fewer than ``min_count``."""
    array = _array(x, "rolling_nanmean")
    if array.ndim == 1:
        return _nanmean_nb(array, window, min_count)
    return _nanmean_panel(_panel(array), window, min_count)


@_jit
def _nanmean_nb(x: FloatArray, window: int, min_count: int) -> FloatArray:
    n = x.shape[0]
    out = np.full(n, np.nan)
    for t in range(window - 1, n):
        total = 0.0
        count = 0
        for i in range(t - window + 1, t + 1):
            if math.isfinite(x[i]):
                total += x[i]
                count += 1
        if count >= min_count and count > 0:
            out[t] = total / count
    return out


@_jit
def _nanmean_panel(x: FloatArray, window: int, min_count: int) -> FloatArray:
    out = np.empty(x.shape)
    col = np.empty(x.shape[0])
    for j in range(x.shape[1]):
        col[:] = x[:, j]
        out[:, j] = _nanmean_nb(col, window, min_count)
    return out


# ---------------------------------------------------------------------------- element-wise helpers


def lag(x: FloatArray, periods: int = 1) -> FloatArray:
    """``x`` shifted ``periods`` rows later (row ``t`` holds ``x[t - periods]``; NaN before).

    On a ``(T, N)`` panel each column shifts down its own rows (axis 0), never across columns.
    """
    if np.ndim(x) not in (1, 2):
        raise DataError(f"lag: input must be 1-D (T,) or 2-D (T, N), got shape {np.shape(x)}")
    out = np.full_like(x, np.nan)
    if periods < len(x):
        out[periods:] = x[: len(x) - periods]
    return out


def safe_div(numerator: FloatArray, denominator: FloatArray | float) -> FloatArray:
    """``numerator / denominator`` with NaN wherever the denominator is 0 or the result is not finite."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.broadcast_to(np.asarray(denominator, dtype=np.float64), num.shape)
    out = np.full(num.shape, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        np.divide(num, den, out=out, where=den != 0)
    out[~np.isfinite(out)] = np.nan
    return out


def safe_log(x: FloatArray) -> FloatArray:
    """Natural log of ``x`` where ``x > 0`` and finite; NaN elsewhere."""
    out = np.full_like(x, np.nan)
    positive = np.isfinite(x) & (x > 0)
    np.log(x, out=out, where=positive)
    return out


def true_range(high: FloatArray, low: FloatArray, close: FloatArray) -> FloatArray:
    """Wilder's true range ``max(H_t, C_{t-1}) - min(L_t, C_{t-1})``.

    NaN on bar 0 and wherever one of the three inputs is NaN.
    """
    previous_close = lag(close)
    return np.maximum(high, previous_close) - np.minimum(low, previous_close)
