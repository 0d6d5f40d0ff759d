"""Technical series features beyond Alpha158: range volatility estimators, classic indicators
(ATR, MACD, DMI/ADX, OBV, MFI, stochastics, CCI, Williams %R, RSI, Aroon, Ultimate Oscillator,
TRIX), Keltner and Donchian channels, return moments, Amihud illiquidity, market beta and
correlation, and calendar features. Importing this module registers them into
:data:`amcp.features.registry.REGISTRY`.

Conventions (each feature's docstring states its formula, window and smoothing):

* Notation: ``O, H, L, C, V`` are the bar's open, high, low, close and volume; ``C_{t-1}`` the
  previous *row's* close; windows include the current bar.
* Price-denominated indicators are made scale-free so that they compare across symbols (ATR and
  MACD are divided by the close, channels give the close's position and the width relative to
  price); each docstring says how.
* Smoothing: ``EMA_n`` has ``alpha = 2/(n+1)``; ``Wilder_n`` (SMMA/RMA) has ``alpha = 1/n``; both
  are seeded with the simple mean of their first ``n`` values, as TA-Lib and backtrader do.
* Missing bars (NaN rows) make every rolling window that contains them NaN; recursive smoothers
  skip them (NaN at the row, state kept). A quantity whose denominator is zero (a zero range, zero
  volume, a flat market) is NaN, never ±inf; each docstring names its case.
* Volatilities are per bar (daily), not annualised: multiply by ``sqrt(252)`` to annualise.
* Panels: every feature also takes a :class:`~amcp.features.registry.PanelInputs` (``(T, N)``
  columns) and returns ``(T, N)`` values, each column equal to the feature of that symbol alone:
  everything computes along axis 0 (the kernels column by column), the calendar features repeat
  their per-date value for every symbol, and beta and correlation are all-NaN ``(T, N)`` without
  a market.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from amcp._typing import BoolArray, FloatArray
from amcp.features._indicators import (
    exp_smooth,
    lag,
    rolling_age_of_max,
    rolling_age_of_min,
    rolling_cov,
    rolling_mean_abs_dev,
    rolling_moments,
    rolling_nanmean,
    safe_div,
    safe_log,
    true_range,
    wilder_sum,
)
from amcp.features._rolling import rolling_max, rolling_mean, rolling_min, rolling_sum
from amcp.features.registry import REGISTRY, SeriesInputs, shared

__all__ = ["TECHNICAL_FEATURES", "atr", "directional_movement", "ema", "macd", "wilder"]

_Feature = Callable[[SeriesInputs], FloatArray]
_LN2 = math.log(2.0)
_FLAT_VARIANCE = 1e-24  # variance of log returns below which skew and kurtosis are undefined
_TIE = 1e-12  # relative size of a typical-price change that is rounding noise, not a move


def ema(x: FloatArray, period: int) -> FloatArray:
    """EMA with ``alpha = 2/(period+1)``, seeded by the mean of the first ``period`` finite values."""
    return exp_smooth(x, period, 2.0 / (period + 1.0))


def wilder(x: FloatArray, period: int) -> FloatArray:
    """Wilder's smoothing (``alpha = 1/period``), seeded by the mean of the first ``period`` finite values."""
    return exp_smooth(x, period, 1.0 / period)


def atr(high: FloatArray, low: FloatArray, close: FloatArray, period: int) -> FloatArray:
    """Wilder's average true range in price units (TA-Lib ``ATR``): ``Wilder_period(TR)``.

    The first value is at bar ``period`` (TR needs the previous close).
    """
    return wilder(true_range(high, low, close), period)


def macd(close: FloatArray, fast: int, slow: int, signal: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """MACD line ``EMA_fast(C) - EMA_slow(C)``, its signal ``EMA_signal(line)`` and histogram, in price units.

    Both price EMAs are seeded by their own first SMA (backtrader's convention); TA-Lib's ``MACD``
    instead seeds the fast EMA at bar ``slow - 1`` — the two agree once that seed has decayed
    (relative difference ``((fast-1)/(fast+1))^k`` after ``k`` bars).
    """
    line = ema(close, fast) - ema(close, slow)
    signal_line = ema(line, signal)
    return line, signal_line, line - signal_line


def directional_movement(high: FloatArray, low: FloatArray, close: FloatArray,
                         period: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Wilder's +DI, −DI and ADX in TA-Lib's convention (``PLUS_DI``, ``MINUS_DI``, ``ADX``).

    ``up = H_t - H_{t-1}``, ``down = L_{t-1} - L_t``; ``+DM = up`` if ``up > down`` and ``up > 0``
    else 0; ``−DM = down`` if ``down > up`` and ``down > 0`` else 0. ``+DM``, ``−DM`` and TR are
    accumulated with :func:`~amcp.features._indicators.wilder_sum` (sum of ``period - 1``, then
    ``S - S/period + x``); ``±DI = 100 S(±DM) / S(TR)`` (NaN when ``S(TR) = 0``);
    ``DX = 100 |+DI − −DI| / (+DI + −DI)`` (NaN when both are 0); ``ADX = Wilder_period(DX)``.
    DI is first defined at bar ``period``, ADX at bar ``2 period - 1``.
    """
    up = high - lag(high)
    down = lag(low) - low
    valid = np.isfinite(up) & np.isfinite(down)
    plus_dm = np.where(valid, np.where((up > down) & (up > 0), up, 0.0), np.nan)
    minus_dm = np.where(valid, np.where((down > up) & (down > 0), down, 0.0), np.nan)
    tr_sum = wilder_sum(true_range(high, low, close), period)
    plus_di = 100.0 * safe_div(wilder_sum(plus_dm, period), tr_sum)
    minus_di = 100.0 * safe_div(wilder_sum(minus_dm, period), tr_sum)
    dx = 100.0 * safe_div(np.abs(plus_di - minus_di), plus_di + minus_di)
    return plus_di, minus_di, wilder(dx, period)


def _macd(b: SeriesInputs, fast: int, slow: int, signal: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    return shared(b, ("macd", fast, slow, signal), lambda: macd(b.close, fast, slow, signal))  # type: ignore[no-any-return]


def _directional(b: SeriesInputs, period: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    return shared(b, ("dm", period),  # type: ignore[no-any-return]
                   lambda: directional_movement(b.high, b.low, b.close, period))


def _typical_price(b: SeriesInputs) -> FloatArray:
    return (b.high + b.low + b.close) / 3.0


def _fast_stochastic(b: SeriesInputs, period: int) -> FloatArray:
    highest = rolling_max(b.high, period)
    lowest = rolling_min(b.low, period)
    return 100.0 * safe_div(b.close - lowest, highest - lowest)


def _valid_range_bar(b: SeriesInputs) -> BoolArray:
    """Bars usable by the range estimators: positive prices with ``L <= O, C <= H``."""
    with np.errstate(invalid="ignore"):
        return ((b.low > 0) & (b.low <= np.minimum(b.open, b.close))
                & (b.high >= np.maximum(b.open, b.close)))


def _range_logs(b: SeriesInputs) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """``ln(H/L)``, ``ln(H/O)``, ``ln(L/O)``, ``ln(C/O)`` on valid range bars, NaN elsewhere."""
    valid = _valid_range_bar(b)

    def log_ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
        return np.where(valid, safe_log(safe_div(numerator, denominator)), np.nan)

    return (log_ratio(b.high, b.low), log_ratio(b.high, b.open), log_ratio(b.low, b.open),
            log_ratio(b.close, b.open))


def _parkinson_var(b: SeriesInputs) -> FloatArray:
    log_hl, _, _, _ = _range_logs(b)
    return log_hl**2 / (4.0 * _LN2)


def _garman_klass_var(b: SeriesInputs) -> FloatArray:
    log_hl, _, _, log_co = _range_logs(b)
    return 0.5 * log_hl**2 - (2.0 * _LN2 - 1.0) * log_co**2


def _rogers_satchell_var(b: SeriesInputs) -> FloatArray:
    _, log_ho, log_lo, log_co = _range_logs(b)
    return log_ho * (log_ho - log_co) + log_lo * (log_lo - log_co)


def _vol(per_bar_variance: FloatArray, window: int) -> FloatArray:
    return np.sqrt(np.maximum(rolling_mean(per_bar_variance, window), 0.0))


def _yang_zhang(b: SeriesInputs, window: int) -> FloatArray:
    _, _, _, open_close = _range_logs(b)
    overnight = np.where(np.isfinite(open_close), safe_log(safe_div(b.open, lag(b.close))), np.nan)
    _, var_overnight, _, _ = rolling_moments(overnight, window)
    _, var_open_close, _, _ = rolling_moments(open_close, window)
    unbias = window / (window - 1.0)
    k = 0.34 / (1.34 + (window + 1.0) / (window - 1.0))
    rs = rolling_mean(_rogers_satchell_var(b), window)
    variance = unbias * var_overnight + k * unbias * var_open_close + (1.0 - k) * rs
    return np.sqrt(np.maximum(variance, 0.0))


def _log_returns(b: SeriesInputs) -> FloatArray:
    return safe_log(safe_div(b.close, lag(b.close)))


def _return_moments(b: SeriesInputs, window: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``m2, m3, m4`` of the log returns; ``m2`` is NaN where their std is below 1e-12 (numerically flat)."""
    _, m2, m3, m4 = rolling_moments(_log_returns(b), window)
    return np.where(m2 > _FLAT_VARIANCE, m2, np.nan), m3, m4


def _skew(b: SeriesInputs, window: int) -> FloatArray:
    m2, m3, _ = _return_moments(b, window)
    n = float(window)
    g1 = safe_div(m3, m2**1.5)
    return math.sqrt(n * (n - 1.0)) / (n - 2.0) * g1


def _kurt(b: SeriesInputs, window: int) -> FloatArray:
    m2, _, m4 = _return_moments(b, window)
    n = float(window)
    g2 = safe_div(m4, m2**2) - 3.0
    return (n - 1.0) / ((n - 2.0) * (n - 3.0)) * ((n + 1.0) * g2 + 6.0)


def _market_stats(b: SeriesInputs, window: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    if b.market is None:
        nan = np.full(b.close.shape, np.nan)
        return nan, nan, nan
    stock = safe_div(b.close, lag(b.close)) - 1.0
    market = safe_div(b.market, lag(b.market)) - 1.0
    return rolling_cov(stock, market, window)


def _beta(b: SeriesInputs, window: int) -> FloatArray:
    cov, _, var_market = _market_stats(b, window)
    return safe_div(cov, var_market)


def _corr(b: SeriesInputs, window: int) -> FloatArray:
    cov, var_stock, var_market = _market_stats(b, window)
    return np.clip(safe_div(cov, np.sqrt(var_stock * var_market)), -1.0, 1.0)


def _donchian_position(b: SeriesInputs, window: int) -> FloatArray:
    highest = rolling_max(b.high, window)
    lowest = rolling_min(b.low, window)
    return safe_div(b.close - lowest, highest - lowest)


# ============================================================================ registered features

def _register(name: str, *, window: int, group: str) -> Callable[[_Feature], _Feature]:
    """Register into :data:`REGISTRY`; non-finite inputs become NaN silently (no numpy warnings)."""

    def decorate(fn: _Feature) -> _Feature:
        @functools.wraps(fn)
        def quiet(inputs: SeriesInputs) -> FloatArray:
            with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
                return fn(inputs)

        REGISTRY.register(name, window=window, group=group)(quiet)
        return fn

    return decorate


# ---------------------------------------------------------------------------- volatility estimators


@_register("parkinson_vol_20", window=20, group="volatility")
def parkinson_vol_20(b: SeriesInputs) -> FloatArray:
    """Parkinson (1980) range volatility, daily (not annualised), 20 bars.

    ``sqrt( mean_20[ ln(H/L)^2 ] / (4 ln 2) )``. Bars with a non-positive price or ``O``/``C``
    outside ``[L, H]`` are invalid (NaN), so windows containing them are NaN.
    """
    return _vol(_parkinson_var(b), 20)


@_register("parkinson_vol_60", window=60, group="volatility")
def parkinson_vol_60(b: SeriesInputs) -> FloatArray:
    """Parkinson range volatility, daily, 60 bars: ``sqrt(mean_60[ln(H/L)^2] / (4 ln 2))``
    (invalid bars as ``parkinson_vol_20``)."""
    return _vol(_parkinson_var(b), 60)


@_register("garman_klass_vol_20", window=20, group="volatility")
def garman_klass_vol_20(b: SeriesInputs) -> FloatArray:
    """Garman-Klass (1980) volatility, daily (not annualised), 20 bars.

    ``sqrt( mean_20[ 0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2 ] )`` (no overnight term). Each bar's
    term is ≥ 0 on a valid bar (``O, C`` in ``[L, H]``, prices > 0); invalid bars are NaN.
    """
    return _vol(_garman_klass_var(b), 20)


@_register("garman_klass_vol_60", window=60, group="volatility")
def garman_klass_vol_60(b: SeriesInputs) -> FloatArray:
    """Garman-Klass volatility, daily, 60 bars: ``sqrt(mean_60[0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2])``."""
    return _vol(_garman_klass_var(b), 60)


@_register("rogers_satchell_vol_20", window=20, group="volatility")
def rogers_satchell_vol_20(b: SeriesInputs) -> FloatArray:
    """Rogers-Satchell (1991) drift-independent volatility, daily (not annualised), 20 bars.

    ``sqrt( mean_20[ ln(H/C) ln(H/O) + ln(L/C) ln(L/O) ] )``; invalid bars (as Parkinson) are NaN.
    """
    return _vol(_rogers_satchell_var(b), 20)


@_register("rogers_satchell_vol_60", window=60, group="volatility")
def rogers_satchell_vol_60(b: SeriesInputs) -> FloatArray:
    """Rogers-Satchell volatility, daily, 60 bars: ``sqrt(mean_60[ln(H/C) ln(H/O) + ln(L/C) ln(L/O)])``."""
    return _vol(_rogers_satchell_var(b), 60)


@_register("yang_zhang_vol_20", window=21, group="volatility")
def yang_zhang_vol_20(b: SeriesInputs) -> FloatArray:
    """Yang-Zhang (2000) volatility, daily (not annualised), n = 20 bars (21 with the previous close).

    ``sqrt( s_o^2 + k s_c^2 + (1 - k) RS )`` with ``s_o^2`` the sample variance (÷ n−1) of the
    overnight returns ``ln(O_t / C_{t-1})``, ``s_c^2`` that of ``ln(C_t / O_t)``, ``RS`` the mean
    Rogers-Satchell term, all over the last n bars, and ``k = 0.34 / (1.34 + (n+1)/(n-1))``.
    """
    return _yang_zhang(b, 20)


@_register("yang_zhang_vol_60", window=61, group="volatility")
def yang_zhang_vol_60(b: SeriesInputs) -> FloatArray:
    """Yang-Zhang volatility, daily, n = 60 bars (61 with the previous close); formula as
    ``yang_zhang_vol_20`` with ``k = 0.34 / (1.34 + 61/59)``."""
    return _yang_zhang(b, 60)


@_register("natr_14", window=15, group="volatility")
def natr_14(b: SeriesInputs) -> FloatArray:
    """Normalised average true range (TA-Lib ``NATR``), Wilder smoothing, 14 bars.

    ``100 * ATR_14 / C`` with ``TR_t = max(H_t, C_{t-1}) - min(L_t, C_{t-1})`` and
    ``ATR_14 = Wilder_14(TR)`` seeded by the mean of TR over bars 1..14 (first value at bar 14).
    """
    return 100.0 * safe_div(atr(b.high, b.low, b.close, 14), b.close)


# ---------------------------------------------------------------------------- trend and momentum


@_register("macd_12_26", window=26, group="trend")
def macd_12_26(b: SeriesInputs) -> FloatArray:
    """MACD line over the close: ``(EMA_12(C) - EMA_26(C)) / C``.

    EMAs seeded by their first SMA (TA-Lib/backtrader ``EMA``); equals TA-Lib ``MACD(12, 26, 9)``'s
    line divided by ``C`` once TA-Lib's later seed of the fast EMA has decayed (~150 bars).
    """
    line, _, _ = _macd(b, 12, 26, 9)
    return safe_div(line, b.close)


@_register("macd_signal_12_26_9", window=34, group="trend")
def macd_signal_12_26_9(b: SeriesInputs) -> FloatArray:
    """MACD signal over the close: ``EMA_9(MACD line) / C`` (price-unit line ``EMA_12(C) - EMA_26(C)``)."""
    _, signal, _ = _macd(b, 12, 26, 9)
    return safe_div(signal, b.close)


@_register("macd_hist_12_26_9", window=34, group="trend")
def macd_hist_12_26_9(b: SeriesInputs) -> FloatArray:
    """MACD histogram over the close: ``(line - EMA_9(line)) / C`` with ``line = EMA_12(C) - EMA_26(C)``."""
    _, _, histogram = _macd(b, 12, 26, 9)
    return safe_div(histogram, b.close)


@_register("plus_di_14", window=15, group="trend")
def plus_di_14(b: SeriesInputs) -> FloatArray:
    """Wilder's +DI, 14 bars, TA-Lib ``PLUS_DI``: ``100 S(+DM) / S(TR)`` with Wilder running sums
    (see ``adx_14``); NaN when ``S(TR) = 0``."""
    plus, _, _ = _directional(b, 14)
    return plus


@_register("minus_di_14", window=15, group="trend")
def minus_di_14(b: SeriesInputs) -> FloatArray:
    """Wilder's −DI, 14 bars, TA-Lib ``MINUS_DI``: ``100 S(−DM) / S(TR)`` with Wilder running sums
    (see ``adx_14``); NaN when ``S(TR) = 0``."""
    _, minus, _ = _directional(b, 14)
    return minus


@_register("adx_14", window=28, group="trend")
def adx_14(b: SeriesInputs) -> FloatArray:
    """Wilder's average directional index, 14 bars, TA-Lib ``ADX`` convention.

    ``+DM = H_t - H_{t-1}`` if it exceeds ``L_{t-1} - L_t`` and is > 0, else 0 (``−DM`` mirrored);
    ``S(x)`` sums the first 13 values then updates ``S - S/14 + x``; ``±DI = 100 S(±DM)/S(TR)``;
    ``DX = 100 |+DI − −DI| / (+DI + −DI)`` (NaN when both are 0, skipped by the smoother);
    ``ADX = Wilder_14(DX)``, first at bar 27.
    """
    _, _, adx = _directional(b, 14)
    return adx


@_register("aroon_osc_14", window=15, group="trend")
def aroon_osc_14(b: SeriesInputs) -> FloatArray:
    """Aroon oscillator, 14 bars (15 with the current), TA-Lib ``AROONOSC``.

    ``100 (a_L - a_H) / 14`` where ``a_H``/``a_L`` are the bars since the highest high/lowest low
    of the last 15 bars (the most recent one on ties); in [−100, 100].
    """
    return 100.0 * (rolling_age_of_min(b.low, 15) - rolling_age_of_max(b.high, 15)) / 14.0


@_register("trix_15", window=44, group="trend")
def trix_15(b: SeriesInputs) -> FloatArray:
    """TRIX, 15 bars, TA-Lib ``TRIX``: ``100 (E_t / E_{t-1} - 1)`` with ``E = EMA_15(EMA_15(EMA_15(C)))``.

    Each EMA is seeded by the mean of its first 15 values; first value at bar 43.
    """
    triple = ema(ema(ema(b.close, 15), 15), 15)
    return 100.0 * (safe_div(triple, lag(triple)) - 1.0)


# ---------------------------------------------------------------------------- oscillators


@_register("rsi_14", window=15, group="oscillator")
def rsi_14(b: SeriesInputs) -> FloatArray:
    """Wilder's relative strength index, 14 bars, TA-Lib ``RSI``.

    ``100 G / (G + L)`` with ``G = Wilder_14(max(ΔC, 0))``, ``L = Wilder_14(max(−ΔC, 0))`` seeded
    by the means over bars 1..14 (first value at bar 14); NaN when ``G + L = 0`` (flat close).
    """
    change = b.close - lag(b.close)
    gain = wilder(np.where(np.isfinite(change), np.maximum(change, 0.0), np.nan), 14)
    loss = wilder(np.where(np.isfinite(change), np.maximum(-change, 0.0), np.nan), 14)
    return 100.0 * safe_div(gain, gain + loss)


@_register("stoch_fastk_14", window=14, group="oscillator")
def stoch_fastk_14(b: SeriesInputs) -> FloatArray:
    """Fast stochastic %K, 14 bars: ``100 (C - LL_14) / (HH_14 - LL_14)`` (``HH``/``LL``: highest high,
    lowest low of the last 14 bars); NaN on a zero range (TA-Lib returns 0 there)."""
    return _fast_stochastic(b, 14)


@_register("stoch_k_14_3", window=16, group="oscillator")
def stoch_k_14_3(b: SeriesInputs) -> FloatArray:
    """Slow stochastic %K (TA-Lib ``STOCH`` slowk, backtrader ``Stochastic`` %K): ``SMA_3(fast %K_14)``;
    NaN while a zero-range fast %K is in the 3 bars."""
    return rolling_mean(_fast_stochastic(b, 14), 3)


@_register("stoch_d_14_3_3", window=18, group="oscillator")
def stoch_d_14_3_3(b: SeriesInputs) -> FloatArray:
    """Slow stochastic %D (TA-Lib ``STOCH`` slowd): ``SMA_3(SMA_3(fast %K_14))``, first value at bar 17."""
    return rolling_mean(rolling_mean(_fast_stochastic(b, 14), 3), 3)


@_register("willr_14", window=14, group="oscillator")
def willr_14(b: SeriesInputs) -> FloatArray:
    """Williams %R, 14 bars, TA-Lib ``WILLR``: ``-100 (HH_14 - C) / (HH_14 - LL_14)`` in [−100, 0];
    NaN on a zero range ``HH_14 = LL_14`` (TA-Lib returns 0 there)."""
    highest = rolling_max(b.high, 14)
    lowest = rolling_min(b.low, 14)
    return -100.0 * safe_div(highest - b.close, highest - lowest)


@_register("cci_20", window=20, group="oscillator")
def cci_20(b: SeriesInputs) -> FloatArray:
    """Commodity channel index, 20 bars, TA-Lib ``CCI`` (Lambert).

    ``(TP - SMA_20(TP)) / (0.015 MD)``, ``TP = (H + L + C)/3``, ``MD = mean_i |TP_i - SMA_20(TP)_t|``
    over the same 20 bars (deviations from the current mean); NaN when ``MD = 0``.
    """
    tp = _typical_price(b)
    return safe_div(tp - rolling_mean(tp, 20), 0.015 * rolling_mean_abs_dev(tp, 20))


@_register("mfi_14", window=15, group="oscillator")
def mfi_14(b: SeriesInputs) -> FloatArray:
    """Money flow index, 14 bars, TA-Lib ``MFI``.

    ``MF_t = TP_t V_t`` (``TP = (H+L+C)/3``) counts as positive when ``TP_t > TP_{t-1}``, negative
    when ``<``, neither when equal (within a relative 1e-12: decimal prices whose ``TP`` differ
    only by rounding noise are equal, as in TA-Lib); ``100 ΣMF+ / (ΣMF+ + ΣMF−)`` over the last
    14 bars; NaN when both sums are 0 (no volume or flat TP).
    """
    tp = _typical_price(b)
    change = tp - lag(tp)
    change[np.abs(change) <= _TIE * np.abs(tp)] = 0.0  # float noise of (H+L+C)/3 is no move
    flow = tp * b.volume
    known = np.isfinite(change) & np.isfinite(flow)
    positive = rolling_sum(np.where(known, np.where(change > 0, flow, 0.0), np.nan), 14)
    negative = rolling_sum(np.where(known, np.where(change < 0, flow, 0.0), np.nan), 14)
    return 100.0 * safe_div(positive, positive + negative)


@_register("ultosc_7_14_28", window=29, group="oscillator")
def ultosc_7_14_28(b: SeriesInputs) -> FloatArray:
    """Ultimate oscillator (Williams), 7/14/28 bars, TA-Lib ``ULTOSC``.

    ``BP = C - min(L, C_{t-1})``, ``TR`` as ATR; ``A_n = Σ_n BP / Σ_n TR``;
    ``100 (4 A_7 + 2 A_14 + A_28) / 7``; NaN when a ``Σ_n TR`` is 0.
    """
    buying = b.close - np.minimum(b.low, lag(b.close))
    tr = true_range(b.high, b.low, b.close)
    a7, a14, a28 = (safe_div(rolling_sum(buying, n), rolling_sum(tr, n)) for n in (7, 14, 28))
    return 100.0 * (4.0 * a7 + 2.0 * a14 + a28) / 7.0


# ---------------------------------------------------------------------------- volume


@_register("obv_20", window=21, group="volume")
def obv_20(b: SeriesInputs) -> FloatArray:
    """On-balance volume over 20 bars, scale-free: ``(OBV_t - OBV_{t-20}) / Σ_20 V`` in [−1, 1].

    ``OBV`` (TA-Lib ``OBV``) adds ``V_t`` when ``C_t > C_{t-1}``, subtracts it when ``<``; so this is
    ``Σ_20 sign(ΔC) V / Σ_20 V``; NaN when the 20 bars have no volume.
    """
    change = b.close - lag(b.close)
    signed = np.where(np.isfinite(change), np.sign(change) * b.volume, np.nan)
    return safe_div(rolling_sum(signed, 20), rolling_sum(np.where(np.isfinite(change), b.volume, np.nan), 20))


@_register("volume_zscore_20", window=20, group="volume")
def volume_zscore_20(b: SeriesInputs) -> FloatArray:
    """Volume z-score, 20 bars: ``(V_t - mean_20(V)) / std_20(V)`` (sample std, ÷ 19); NaN when std is 0."""
    mean, m2, _, _ = rolling_moments(b.volume, 20)
    return safe_div(b.volume - mean, np.sqrt(m2 * 20.0 / 19.0))


@_register("amihud_20", window=20, group="volume")
def amihud_20(b: SeriesInputs) -> FloatArray:
    """Amihud (2002) illiquidity, 20 bars: ``1e6 * mean( |C_t / C_{t-1} - 1| / (C_t V_t) )``.

    Absolute return per million of dollar volume; bars without trading (``V = 0``) or with a missing
    return carry no price-impact observation and are left out of the mean, which needs at least 10
    of the 20 bars (else NaN).
    """
    ret = np.abs(safe_div(b.close, lag(b.close)) - 1.0)
    dollar_volume = b.close * b.volume
    with np.errstate(invalid="ignore"):
        impact = np.where(dollar_volume > 0, safe_div(ret, dollar_volume), np.nan)
    return 1e6 * rolling_nanmean(impact, 20, 10)


# ---------------------------------------------------------------------------- channels


@_register("keltner_pos_20", window=20, group="channel")
def keltner_pos_20(b: SeriesInputs) -> FloatArray:
    """Close's position in the Keltner channel ``EMA_20(C) ± 2 ATR_10`` (ATR Wilder-smoothed).

    ``(C - EMA_20(C)) / (2 ATR_10)``: 0 on the middle line, +1 on the upper band, −1 on the lower;
    NaN when ``ATR_10 = 0``.
    """
    return safe_div(b.close - ema(b.close, 20), 2.0 * atr(b.high, b.low, b.close, 10))


@_register("keltner_width_20", window=20, group="channel")
def keltner_width_20(b: SeriesInputs) -> FloatArray:
    """Keltner channel width relative to its middle: ``4 ATR_10 / EMA_20(C)`` (ATR Wilder-smoothed)."""
    return safe_div(4.0 * atr(b.high, b.low, b.close, 10), ema(b.close, 20))


@_register("donchian_pos_20", window=20, group="channel")
def donchian_pos_20(b: SeriesInputs) -> FloatArray:
    """Close's position in the 20-bar Donchian channel: ``(C - LL_20) / (HH_20 - LL_20)`` in [0, 1]
    (current bar included); NaN on a zero range."""
    return _donchian_position(b, 20)


@_register("donchian_pos_55", window=55, group="channel")
def donchian_pos_55(b: SeriesInputs) -> FloatArray:
    """Close's position in the 55-bar Donchian channel: ``(C - LL_55) / (HH_55 - LL_55)`` in [0, 1];
    NaN on a zero range."""
    return _donchian_position(b, 55)


@_register("donchian_width_20", window=20, group="channel")
def donchian_width_20(b: SeriesInputs) -> FloatArray:
    """20-bar Donchian channel width relative to the close: ``(HH_20 - LL_20) / C``."""
    return safe_div(rolling_max(b.high, 20) - rolling_min(b.low, 20), b.close)


# ---------------------------------------------------------------------------- return distribution


@_register("ret_skew_20", window=21, group="distribution")
def ret_skew_20(b: SeriesInputs) -> FloatArray:
    """Skewness of the last 20 daily log returns ``ln(C_t/C_{t-1})``, adjusted Fisher-Pearson
    ``G1 = sqrt(n(n-1))/(n-2) m3/m2^1.5`` (as pandas ``skew``); NaN when the returns are flat
    (std < 1e-12)."""
    return _skew(b, 20)


@_register("ret_skew_60", window=61, group="distribution")
def ret_skew_60(b: SeriesInputs) -> FloatArray:
    """Skewness (G1, as ``ret_skew_20``) of the last 60 daily log returns; NaN when flat."""
    return _skew(b, 60)


@_register("ret_kurt_20", window=21, group="distribution")
def ret_kurt_20(b: SeriesInputs) -> FloatArray:
    """Excess kurtosis of the last 20 daily log returns, bias-adjusted
    ``G2 = (n-1)/((n-2)(n-3)) ((n+1)(m4/m2^2 - 3) + 6)`` (as pandas ``kurt``); NaN when the returns
    are flat (std < 1e-12)."""
    return _kurt(b, 20)


@_register("ret_kurt_60", window=61, group="distribution")
def ret_kurt_60(b: SeriesInputs) -> FloatArray:
    """Excess kurtosis (G2, as ``ret_kurt_20``) of the last 60 daily log returns; NaN when flat."""
    return _kurt(b, 60)


# ---------------------------------------------------------------------------- market


@_register("beta_20", window=21, group="market")
def beta_20(b: SeriesInputs) -> FloatArray:
    """Beta to the market proxy over the last 20 simple returns: ``cov(r, r_m) / var(r_m)``.

    ``r = C_t/C_{t-1} - 1``, ``r_m`` likewise from ``SeriesInputs.market``; all-NaN when ``market``
    is None; NaN when ``var(r_m) = 0`` or a return in the window is missing.
    """
    return _beta(b, 20)


@_register("beta_60", window=61, group="market")
def beta_60(b: SeriesInputs) -> FloatArray:
    """Beta to the market proxy over the last 60 simple returns: ``cov(r, r_m) / var(r_m)``
    (missing data as ``beta_20``)."""
    return _beta(b, 60)


@_register("corr_20", window=21, group="market")
def corr_20(b: SeriesInputs) -> FloatArray:
    """Pearson correlation of the last 20 simple returns with the market proxy's; all-NaN without
    ``market``; NaN when either variance is 0."""
    return _corr(b, 20)


@_register("corr_60", window=61, group="market")
def corr_60(b: SeriesInputs) -> FloatArray:
    """Pearson correlation of the last 60 simple returns with the market proxy's (rules as ``corr_20``)."""
    return _corr(b, 60)


# ---------------------------------------------------------------------------- calendar


def _months(b: SeriesInputs) -> npt.NDArray[np.datetime64]:
    return b.dates.astype("datetime64[M]")


def _per_date(b: SeriesInputs, values: FloatArray) -> FloatArray:
    """``values`` (one per date) as the feature's result: itself for one symbol, repeated for
    every symbol (``(T, N)``) for a panel."""
    if b.close.ndim == 2:
        return np.broadcast_to(values[:, None], b.close.shape).copy()
    return values


@_register("day_of_week", window=1, group="calendar")
def day_of_week(b: SeriesInputs) -> FloatArray:
    """Weekday of the bar's date: Monday = 0 … Sunday = 6."""
    days = b.dates.astype("datetime64[D]").astype(np.int64)
    return _per_date(b, ((days + 3) % 7).astype(np.float64))  # 1970-01-01 was a Thursday


@_register("month_of_year", window=1, group="calendar")
def month_of_year(b: SeriesInputs) -> FloatArray:
    """Month of the bar's date: January = 1 … December = 12."""
    return _per_date(b, (_months(b).astype(np.int64) % 12 + 1).astype(np.float64))


@_register("day_of_month", window=1, group="calendar")
def day_of_month(b: SeriesInputs) -> FloatArray:
    """Day of the month of the bar's date, 1 … 31."""
    day = (b.dates - _months(b).astype("datetime64[D]")).astype(np.int64) + 1
    return _per_date(b, day.astype(np.float64))


@_register("days_to_month_end", window=1, group="calendar")
def days_to_month_end(b: SeriesInputs) -> FloatArray:
    """Calendar days from the bar's date to the last calendar day of its month (0 on that day).

    A function of the date alone (trading days would need the exchange calendar's future sessions).
    """
    next_month = (_months(b) + 1).astype("datetime64[D]")
    return _per_date(b, ((next_month - b.dates).astype(np.int64) - 1).astype(np.float64))


#: The series features this module registers, in registration order.
TECHNICAL_FEATURES: tuple[str, ...] = tuple(
    name for name in REGISTRY.series_names if REGISTRY.series(name).fn.__module__ == __name__)
