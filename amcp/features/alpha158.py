"""Qlib's Alpha158 feature set, registered into :data:`amcp.features.registry.REGISTRY`.

158 features with Qlib's names and expressions (``qlib.contrib.data.loader.Alpha158DL``):
9 candle features (KMID … KSFT2), 4 price ratios (OPEN0, HIGH0, LOW0, VWAP0) and 29 rolling
operators over the windows 5, 10, 20, 30 and 60 bars (ROC5 … VSUMD60). Each feature's docstring
states its Qlib expression with the concrete window.

Where amcp differs from Qlib's expression engine, deliberately and for every feature:

* Rolling windows need every bar: a value at bar ``t`` uses bars ``t − d + 1 .. t``, is NaN
  before the window is full and NaN when any input in it is missing (pandas' ``min_periods=d``;
  Qlib rolls with ``min_periods=1`` and so reports values from partial windows). An expression
  that also uses ``Ref(x, 1)`` needs ``d + 1`` bars; the registered ``window`` says so.
* A comparison with a missing operand is missing (Qlib's ``$close > Ref($close, 1)`` is False,
  i.e. 0, when either side is NaN).
* ±inf — a zero denominator without Qlib's ``1e-12`` guard, ``Log`` of 0, a ratio to a zero
  volume — is treated as missing: inside a rolling window it blanks the window, in a result it
  becomes NaN. No feature ever returns ±inf.

Kept from Qlib: the ``+ 1e-12`` in the denominators Qlib guards (so a flat bar's KMID2 is 0, not
NaN, and a zero-volume day's VMA is a large finite number), sample standard deviations
(``ddof = 1``), ``Corr`` and ``Rsquare`` blanked where a window's standard deviation is at most
``2e-5``, ``IdxMax``/``IdxMin`` counted 1-based from the oldest bar of the window (ties: the
oldest), and ``Rank`` as the last value's average-rank percentile, in (0, 1].

``$vwap``: daily bars have none; where :attr:`SeriesInputs.vwap` is NaN the typical price
``($high + $low + $close)/3`` stands in for it.

Every feature also takes a :class:`~amcp.features.registry.PanelInputs` and returns ``(T, N)``
values, column ``i`` equal to the feature of symbol ``i`` alone: the expressions are element-wise,
``Ref`` shifts along axis 0 and the rolling kernels work column by column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from amcp._typing import FloatArray
from amcp.features import _rolling as rolling
from amcp.features.registry import REGISTRY, FeatureRegistry, SeriesInputs, shared

__all__ = ["ALPHA158_NAMES", "GROUP", "WINDOWS", "register_alpha158"]

#: The rolling windows of Alpha158, in bars.
WINDOWS: tuple[int, ...] = (5, 10, 20, 30, 60)
#: The registry group of every Alpha158 feature.
GROUP = "alpha158"
#: Qlib's guard against a zero denominator.
_EPS = 1e-12
#: Qlib blanks Corr and Rsquare where a window's standard deviation is within 2e-5 of zero.
_FLAT_STD = 2e-5


# ---------------------------------------------------------------------------------- helpers


def _clean(values: FloatArray) -> FloatArray:
    """``values`` as float64 with ±inf replaced by NaN (a missing value, see the module docstring)."""
    out = np.asarray(values, dtype=np.float64)
    return np.where(np.isinf(out), np.nan, out)


def _ref(x: FloatArray, lag: int) -> FloatArray:
    """Qlib's ``Ref(x, lag)``: the value ``lag`` bars earlier, NaN for the first ``lag`` bars."""
    out = np.full_like(x, np.nan)
    out[lag:] = x[:-lag]
    return out


def _up(x: FloatArray) -> FloatArray:
    """``x > Ref(x, 1)`` as 1.0/0.0, NaN where either operand is missing."""
    previous = _ref(x, 1)
    return np.where(np.isnan(x) | np.isnan(previous), np.nan, (x > previous).astype(np.float64))


def _down(x: FloatArray) -> FloatArray:
    """``x < Ref(x, 1)`` as 1.0/0.0, NaN where either operand is missing."""
    previous = _ref(x, 1)
    return np.where(np.isnan(x) | np.isnan(previous), np.nan, (x < previous).astype(np.float64))


def _vwap(s: SeriesInputs) -> FloatArray:
    """``$vwap``, the typical price ``(H + L + C)/3`` where the source has none."""
    return np.where(np.isnan(s.vwap), (s.high + s.low + s.close) / 3.0, s.vwap)


def _gain_loss(s: SeriesInputs, field: str, d: int) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Over ``d`` bars of the column ``field``: Σ max(Δx, 0), Σ max(−Δx, 0) and Σ|Δx| + 1e-12, with
    Δx = x − Ref(x, 1); computed once per inputs for SUMP, SUMN and SUMD."""

    def compute() -> tuple[FloatArray, FloatArray, FloatArray]:
        x = getattr(s, field)
        change = x - _ref(x, 1)
        gains = rolling.rolling_sum(np.maximum(change, 0.0), d)
        losses = rolling.rolling_sum(np.maximum(-change, 0.0), d)
        moved = rolling.rolling_sum(np.abs(change), d) + _EPS
        return gains, losses, moved

    return shared(s, ("gain_loss", field, d), compute)  # type: ignore[no-any-return]


def _extreme(s: SeriesInputs, kind: str, d: int) -> FloatArray:
    """The ``d``-bar highest high (``"max"``), lowest low (``"min"``) or their 1-based positions
    (``"argmax"``, ``"argmin"``); computed once per inputs for MAX, MIN, RSV, IMAX, IMIN and IMXD."""
    kernel, column = {"max": (rolling.rolling_max, "high"), "min": (rolling.rolling_min, "low"),
                      "argmax": (rolling.rolling_argmax, "high"), "argmin": (rolling.rolling_argmin, "low")}[kind]
    return shared(s, ("extreme", kind, d), lambda: kernel(getattr(s, column), d))  # type: ignore[no-any-return]


def _up_down_share(s: SeriesInputs, d: int) -> tuple[FloatArray, FloatArray]:
    """The shares of up and of down closes among the last ``d`` (CNTP, CNTN; CNTD is their difference)."""
    return shared(s, ("up_down", d), lambda: (rolling.rolling_mean(_up(s.close), d),  # type: ignore[no-any-return]
                                              rolling.rolling_mean(_down(s.close), d)))


# ---------------------------------------------------------------------------------- definitions


@dataclass(frozen=True)
class _Feature:
    """A feature family: ``name`` + window, its Qlib expression and meaning (``{d}`` = window)."""

    name: str
    expression: str
    meaning: str
    compute: Callable[[SeriesInputs, int], FloatArray]
    lagged: bool = False  # the expression reaches one bar before its d-bar window: d + 1 bars


_KBAR: tuple[_Feature, ...] = (
    _Feature("KMID", "($close-$open)/$open", "the candle body relative to the open",
             lambda s, d: (s.close - s.open) / s.open),
    _Feature("KLEN", "($high-$low)/$open", "the candle range relative to the open",
             lambda s, d: (s.high - s.low) / s.open),
    _Feature("KMID2", "($close-$open)/($high-$low+1e-12)", "the body as a share of the range",
             lambda s, d: (s.close - s.open) / (s.high - s.low + _EPS)),
    _Feature("KUP", "($high-Greater($open, $close))/$open", "the upper shadow relative to the open",
             lambda s, d: (s.high - np.maximum(s.open, s.close)) / s.open),
    _Feature("KUP2", "($high-Greater($open, $close))/($high-$low+1e-12)",
             "the upper shadow as a share of the range",
             lambda s, d: (s.high - np.maximum(s.open, s.close)) / (s.high - s.low + _EPS)),
    _Feature("KLOW", "(Less($open, $close)-$low)/$open", "the lower shadow relative to the open",
             lambda s, d: (np.minimum(s.open, s.close) - s.low) / s.open),
    _Feature("KLOW2", "(Less($open, $close)-$low)/($high-$low+1e-12)",
             "the lower shadow as a share of the range",
             lambda s, d: (np.minimum(s.open, s.close) - s.low) / (s.high - s.low + _EPS)),
    _Feature("KSFT", "(2*$close-$high-$low)/$open", "where the close sits in the range, relative to the open",
             lambda s, d: (2.0 * s.close - s.high - s.low) / s.open),
    _Feature("KSFT2", "(2*$close-$high-$low)/($high-$low+1e-12)",
             "where the close sits in the range, as a share of it",
             lambda s, d: (2.0 * s.close - s.high - s.low) / (s.high - s.low + _EPS)),
)

_PRICE: tuple[_Feature, ...] = (
    _Feature("OPEN", "$open/$close", "today's open over today's close", lambda s, d: s.open / s.close),
    _Feature("HIGH", "$high/$close", "today's high over today's close", lambda s, d: s.high / s.close),
    _Feature("LOW", "$low/$close", "today's low over today's close", lambda s, d: s.low / s.close),
    _Feature("VWAP", "$vwap/$close", "today's vwap (typical price (H+L+C)/3 where none) over today's close",
             lambda s, d: _vwap(s) / s.close),
)


def _corr_close_logvolume(s: SeriesInputs, d: int) -> FloatArray:
    return rolling.rolling_corr(s.close, _clean(np.log(s.volume + 1.0)), d, _FLAT_STD)


def _corr_changes(s: SeriesInputs, d: int) -> FloatArray:
    price_ratio = _clean(s.close / _ref(s.close, 1))
    volume_ratio = _clean(np.log(s.volume / _ref(s.volume, 1) + 1.0))
    return rolling.rolling_corr(price_ratio, volume_ratio, d, _FLAT_STD)


def _sump(s: SeriesInputs, field: str, d: int) -> FloatArray:
    gains, _, moved = _gain_loss(s, field, d)
    return gains / moved


def _sumn(s: SeriesInputs, field: str, d: int) -> FloatArray:
    _, losses, moved = _gain_loss(s, field, d)
    return losses / moved


def _sumd(s: SeriesInputs, field: str, d: int) -> FloatArray:
    gains, losses, moved = _gain_loss(s, field, d)
    return (gains - losses) / moved


def _wvma(s: SeriesInputs, d: int) -> FloatArray:
    weighted = _clean(np.abs(s.close / _ref(s.close, 1) - 1.0) * s.volume)
    return rolling.rolling_std(weighted, d) / (rolling.rolling_mean(weighted, d) + _EPS)


def _rsv(s: SeriesInputs, d: int) -> FloatArray:
    lowest = _extreme(s, "min", d)
    return (s.close - lowest) / (_extreme(s, "max", d) - lowest + _EPS)


_ROLLING: tuple[_Feature, ...] = (
    _Feature("ROC", "Ref($close, {d})/$close", "the close {d} bars ago over today's close",
             lambda s, d: _ref(s.close, d) / s.close, lagged=True),
    _Feature("MA", "Mean($close, {d})/$close", "the {d}-bar mean close over today's close",
             lambda s, d: rolling.rolling_mean(s.close, d) / s.close),
    _Feature("STD", "Std($close, {d})/$close",
             "the {d}-bar sample standard deviation of the close over today's close",
             lambda s, d: rolling.rolling_std(s.close, d) / s.close),
    _Feature("BETA", "Slope($close, {d})/$close",
             "the slope of the {d}-bar least-squares line of the close on time, over today's close",
             lambda s, d: rolling.rolling_slope(s.close, d) / s.close),
    _Feature("RSQR", "Rsquare($close, {d})",
             "the R² of the {d}-bar least-squares line of the close on time (NaN where the close's "
             "{d}-bar std is <= 2e-5)",
             lambda s, d: rolling.rolling_rsquare(s.close, d, _FLAT_STD)),
    _Feature("RESI", "Resi($close, {d})/$close",
             "today's residual from the {d}-bar least-squares line of the close on time, over today's close",
             lambda s, d: rolling.rolling_resi(s.close, d) / s.close),
    _Feature("MAX", "Max($high, {d})/$close", "the {d}-bar highest high over today's close",
             lambda s, d: _extreme(s, "max", d) / s.close),
    _Feature("MIN", "Min($low, {d})/$close", "the {d}-bar lowest low over today's close",
             lambda s, d: _extreme(s, "min", d) / s.close),
    _Feature("QTLU", "Quantile($close, {d}, 0.8)/$close",
             "the 80% quantile (linear interpolation) of the last {d} closes over today's close",
             lambda s, d: rolling.rolling_quantile(s.close, d, 0.8) / s.close),
    _Feature("QTLD", "Quantile($close, {d}, 0.2)/$close",
             "the 20% quantile (linear interpolation) of the last {d} closes over today's close",
             lambda s, d: rolling.rolling_quantile(s.close, d, 0.2) / s.close),
    _Feature("RANK", "Rank($close, {d})",
             "today's close's percentile among the last {d} closes, in (0, 1], ties at their average rank",
             lambda s, d: rolling.rolling_rank(s.close, d)),
    _Feature("RSV", "($close-Min($low, {d}))/(Max($high, {d})-Min($low, {d})+1e-12)",
             "where today's close sits in the {d}-bar low-high range", _rsv),
    _Feature("IMAX", "IdxMax($high, {d})/{d}",
             "the 1-based position of the {d}-bar highest high (oldest bar = 1, ties: oldest), over {d}",
             lambda s, d: _extreme(s, "argmax", d) / d),
    _Feature("IMIN", "IdxMin($low, {d})/{d}",
             "the 1-based position of the {d}-bar lowest low (oldest bar = 1, ties: oldest), over {d}",
             lambda s, d: _extreme(s, "argmin", d) / d),
    _Feature("IMXD", "(IdxMax($high, {d})-IdxMin($low, {d}))/{d}",
             "how many bars the {d}-bar highest high came after the lowest low, over {d}",
             lambda s, d: (_extreme(s, "argmax", d) - _extreme(s, "argmin", d)) / d),
    _Feature("CORR", "Corr($close, Log($volume+1), {d})",
             "the {d}-bar correlation of the close with log volume (NaN where either std is <= 2e-5)",
             _corr_close_logvolume),
    _Feature("CORD", "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), {d})",
             "the {d}-bar correlation of the price ratio with the log volume ratio (NaN where either std "
             "is <= 2e-5, or a volume ratio is infinite or undefined: a zero previous volume)",
             _corr_changes, lagged=True),
    _Feature("CNTP", "Mean($close>Ref($close, 1), {d})", "the share of up days among the last {d}",
             lambda s, d: _up_down_share(s, d)[0], lagged=True),
    _Feature("CNTN", "Mean($close<Ref($close, 1), {d})", "the share of down days among the last {d}",
             lambda s, d: _up_down_share(s, d)[1], lagged=True),
    _Feature("CNTD", "Mean($close>Ref($close, 1), {d})-Mean($close<Ref($close, 1), {d})",
             "the share of up days minus the share of down days among the last {d}",
             lambda s, d: _up_down_share(s, d)[0] - _up_down_share(s, d)[1],
             lagged=True),
    _Feature("SUMP",
             "Sum(Greater($close-Ref($close, 1), 0), {d})/(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)",
             "the {d}-bar total gain over the total absolute change (an RSI)",
             lambda s, d: _sump(s, "close", d), lagged=True),
    _Feature("SUMN",
             "Sum(Greater(Ref($close, 1)-$close, 0), {d})/(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)",
             "the {d}-bar total loss over the total absolute change",
             lambda s, d: _sumn(s, "close", d), lagged=True),
    _Feature("SUMD",
             "(Sum(Greater($close-Ref($close, 1), 0), {d})-Sum(Greater(Ref($close, 1)-$close, 0), {d}))"
             "/(Sum(Abs($close-Ref($close, 1)), {d})+1e-12)",
             "the {d}-bar total gain minus total loss over the total absolute change",
             lambda s, d: _sumd(s, "close", d), lagged=True),
    _Feature("VMA", "Mean($volume, {d})/($volume+1e-12)", "the {d}-bar mean volume over today's volume",
             lambda s, d: rolling.rolling_mean(s.volume, d) / (s.volume + _EPS)),
    _Feature("VSTD", "Std($volume, {d})/($volume+1e-12)",
             "the {d}-bar sample standard deviation of volume over today's volume",
             lambda s, d: rolling.rolling_std(s.volume, d) / (s.volume + _EPS)),
    _Feature("WVMA",
             "Std(Abs($close/Ref($close, 1)-1)*$volume, {d})"
             "/(Mean(Abs($close/Ref($close, 1)-1)*$volume, {d})+1e-12)",
             "the coefficient of variation of the volume-weighted absolute return over {d} bars",
             _wvma, lagged=True),
    _Feature("VSUMP",
             "Sum(Greater($volume-Ref($volume, 1), 0), {d})/(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)",
             "the {d}-bar total volume increase over the total absolute volume change",
             lambda s, d: _sump(s, "volume", d), lagged=True),
    _Feature("VSUMN",
             "Sum(Greater(Ref($volume, 1)-$volume, 0), {d})/(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)",
             "the {d}-bar total volume decrease over the total absolute volume change",
             lambda s, d: _sumn(s, "volume", d), lagged=True),
    _Feature("VSUMD",
             "(Sum(Greater($volume-Ref($volume, 1), 0), {d})-Sum(Greater(Ref($volume, 1)-$volume, 0), {d}))"
             "/(Sum(Abs($volume-Ref($volume, 1)), {d})+1e-12)",
             "the {d}-bar total volume increase minus decrease over the total absolute volume change",
             lambda s, d: _sumd(s, "volume", d), lagged=True),
)


# ---------------------------------------------------------------------------------- registration


def _feature_function(feature: _Feature, name: str, d: int,
                      window: int) -> Callable[[SeriesInputs], FloatArray]:
    """The registered function of ``feature`` at window ``d``; its docstring states the formula."""

    def compute(inputs: SeriesInputs) -> FloatArray:
        with np.errstate(divide="ignore", invalid="ignore"):  # x/0 and log(0) become NaN in _clean
            return _clean(feature.compute(inputs, d))

    if window == 1:
        needs = "Window: 1 bar (today's bar only)."
    else:
        needs = (f"Window: {window} bars (today and the {window - 1} before it); the first value is at "
                 f"bar {window - 1} (0-based), NaN before.")
    compute.__name__ = compute.__qualname__ = f"alpha158_{name}"
    formula = feature.expression.format(d=d)
    compute.__doc__ = (f"{name} = {formula}: {feature.meaning.format(d=d)} (Qlib Alpha158).\n\n"
                       f"{needs} Missing inputs and ±inf give NaN (module amcp.features.alpha158).")
    return compute


def _definitions() -> list[tuple[str, int, _Feature, int]]:
    """``(name, window, family, d)`` of the 158 features, in Qlib's order."""
    rows: list[tuple[str, int, _Feature, int]] = [(f.name, 1, f, 0) for f in _KBAR]
    rows += [(f"{f.name}0", 1, f, 0) for f in _PRICE]
    rows += [(f"{f.name}{d}", d + 1 if f.lagged else d, f, d) for f in _ROLLING for d in WINDOWS]
    return rows


def register_alpha158(registry: FeatureRegistry) -> tuple[str, ...]:
    """Register the 158 Alpha158 features into ``registry``; return their names in Qlib's order.

    Raises:
        DataError: if one of the names is taken in ``registry``.
    """
    names = []
    for name, window, feature, d in _definitions():
        registry.register(name, window=window, group=GROUP)(_feature_function(feature, name, d, window))
        names.append(name)
    return tuple(names)


#: The 158 Alpha158 feature names, in Qlib's order.
ALPHA158_NAMES: tuple[str, ...] = register_alpha158(REGISTRY)
