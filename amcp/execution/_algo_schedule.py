"""Scheduled algorithms: TWAP and VWAP, and the intraday volume curve VWAP follows.

Both split the window ``[start_ns, end_ns)`` into ``N`` slices starting at
``t_k = start_ns + ⌊k·(end_ns − start_ns)/N⌋`` and keep a cumulative target
``Q_k = ⌊Q·F_k⌋_lot`` (``F_k`` the fraction of the parent due by the end of slice ``k``,
``Q_{N−1} = Q``). When slice ``k`` becomes due the child is ``Q_k − filled − working leaves``
rounded down to the lot: whatever earlier slices did not fill (a denial, an IOC remainder, a
cancel) is caught up, and filled plus working never exceeds the target. TWAP has
``F_k = (k+1)/N``; VWAP has ``F_k = Σ_{j≤k} c_j`` for a volume curve ``c`` normalised to 1.
"""

from __future__ import annotations

import bisect
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from datetime import time
from decimal import Decimal
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import Field, field_validator, model_validator

from amcp._typing import FloatArray, IntArray
from amcp.domain.messages import SubmitOrder
from amcp.domain.objects import to_decimal
from amcp.errors import DataError, ExecutionError
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.execution._algo_single import SingleParentAlgorithm
from amcp.execution._algo_types import AlgorithmParams, InstrumentLookup, MarketView, ParentOrder

_ZERO = Decimal(0)
_MAX_SLICES = 100_000
_NS_PER_S = 1_000_000_000
_NEW_YORK = "America/New_York"


class TWAPParams(AlgorithmParams):
    """TWAP parameters: exactly one of ``slices`` and ``slice_interval_s``.

    Attributes:
        slices: number of equal slices over the window.
        slice_interval_s: seconds between slices; ``N = ⌈window / interval⌉``.
    """

    slices: int | None = Field(None, ge=1, le=_MAX_SLICES)
    slice_interval_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_schedule(self) -> TWAPParams:
        if (self.slices is None) == (self.slice_interval_s is None):
            raise ValueError(
                f"give exactly one of slices and slice_interval_s (got slices={self.slices}, "
                f"slice_interval_s={self.slice_interval_s})"
            )
        return self


class VWAPParams(AlgorithmParams):
    """VWAP parameters.

    Attributes:
        volume_curve: expected share of volume per slice, slices evenly spaced over the window
            (e.g. from :func:`volume_curve_from_bars`); non-negative, normalised to 1 here.
        max_participation: cap each child at this fraction of the volume reported (through
            ``MarketView.volume``) since the previous slice; the first slice is uncapped and a
            capped shortfall is caught up later. ``None``: no cap.
    """

    volume_curve: tuple[float, ...] = Field(..., min_length=1, max_length=_MAX_SLICES)
    max_participation: float | None = Field(None, gt=0, le=1)

    @field_validator("volume_curve")
    @classmethod
    def _curve(cls, curve: tuple[float, ...]) -> tuple[float, ...]:
        bad = [value for value in curve if not math.isfinite(value) or value < 0]
        if bad:
            raise ValueError(f"volume_curve values must be finite and >= 0, got {bad[:5]}")
        if not sum(curve) > 0:
            raise ValueError(f"volume_curve must have a positive sum, got {sum(curve)}")
        return curve


class _ScheduledAlgorithm(SingleParentAlgorithm):
    """Slices with cumulative targets (see the module docstring)."""

    def __init__(
        self, parent: ParentOrder, instrument_for: InstrumentLookup = default_instrument_for
    ) -> None:
        super().__init__(parent, instrument_for)
        fractions = self._fractions()
        span = parent.end_ns - parent.start_ns
        n = len(fractions)
        self._slice_ns = [parent.start_ns + (k * span) // n for k in range(n)]
        quantity = parent.quantity
        self._targets = [self._round_lot(quantity * fraction) for fraction in fractions[:-1]] + [quantity]
        self._slices_due = 0

    @abstractmethod
    def _fractions(self) -> list[Decimal]:
        """``F_k``: the cumulative fraction of the parent due by the end of slice ``k``."""

    @property
    def slice_times_ns(self) -> tuple[int, ...]:
        """UTC nanoseconds at which each slice becomes due."""
        return tuple(self._slice_ns)

    @property
    def cumulative_targets(self) -> tuple[Decimal, ...]:
        """``Q_k``: quantity due (filled plus working) once slice ``k`` is due."""
        return tuple(self._targets)

    def _due(self, ts_ns: int, market: MarketView | None) -> Sequence[SubmitOrder]:
        due = bisect.bisect_right(self._slice_ns, ts_ns)
        if due <= self._slices_due:
            return ()
        first_slice = self._slices_due == 0
        self._slices_due = due
        want = self._targets[due - 1] - self._filled - self.working_quantity
        want = self._cap(want, first_slice)
        if self._round_lot(want) <= 0:
            return ()
        terms = self._child_terms(ts_ns, market)
        if terms is None:
            return ()
        child = self._new_child(ts_ns, want, *terms)
        return () if child is None else (child,)

    def _cap(self, want: Decimal, first_slice: bool) -> Decimal:
        return want

    def _extra_state(self) -> dict[str, Any]:
        return {"slices_due": self._slices_due}

    def _load_extra(self, extra: Mapping[str, Any]) -> None:
        due = extra["slices_due"]
        if type(due) is not int or not 0 <= due <= len(self._slice_ns):
            raise ExecutionError(
                f"checkpoint slices_due must be an int in [0, {len(self._slice_ns)}], got {due!r}"
            )
        self._slices_due = due


class TWAPAlgorithm(_ScheduledAlgorithm):
    """Time-weighted average price: ``N`` equal slices over the window.

    Slice sizes differ by at most one lot (``Q_k = ⌊Q·(k+1)/N⌋_lot``). Children are market
    orders, or limit orders for a parent with a limit price (see :class:`AlgorithmParams`).
    """

    algo_name: ClassVar[str] = "twap"
    params_model: ClassVar[type[AlgorithmParams]] = TWAPParams

    def _fractions(self) -> list[Decimal]:
        params = cast(TWAPParams, self._params)  # params_model validated it
        if params.slices is not None:
            n = params.slices
        else:
            interval_ns = round(to_decimal(params.slice_interval_s or 0.0) * _NS_PER_S)
            n = max(1, -(-(self._parent.end_ns - self._parent.start_ns) // max(interval_ns, 1)))
            if n > _MAX_SLICES:
                raise ExecutionError(
                    f"parent {self._parent.parent_id}: slice_interval_s {params.slice_interval_s} gives {n} "
                    f"slices, more than {_MAX_SLICES}"
                )
        return [Decimal(k + 1) / Decimal(n) for k in range(n)]



class VWAPAlgorithm(_ScheduledAlgorithm):
    """Volume-weighted average price: slice sizes follow a volume curve.

    Slice ``k`` is within one lot of ``Q·c_k`` (``c`` the curve normalised to 1) unless a
    participation cap or earlier shortfall moves quantity between slices.
    """

    algo_name: ClassVar[str] = "vwap"
    params_model: ClassVar[type[AlgorithmParams]] = VWAPParams

    def __init__(
        self, parent: ParentOrder, instrument_for: InstrumentLookup = default_instrument_for
    ) -> None:
        super().__init__(parent, instrument_for)
        self._observed_volume = 0.0

    def _fractions(self) -> list[Decimal]:
        params = cast(VWAPParams, self._params)  # params_model validated it
        curve = np.asarray(params.volume_curve, dtype=np.float64)
        cumulative = np.minimum(np.cumsum(curve) / curve.sum(), 1.0)
        return [to_decimal(float(value)) for value in cumulative[:-1]] + [Decimal(1)]

    @property
    def curve(self) -> FloatArray:
        """The volume curve, normalised to sum to 1."""
        params = cast(VWAPParams, self._params)  # params_model validated it
        curve = np.asarray(params.volume_curve, dtype=np.float64)
        return curve / curve.sum()

    def _observe(self, ts_ns: int, market: MarketView | None) -> None:
        if market is not None and math.isfinite(market.volume) and market.volume > 0:
            self._observed_volume += float(market.volume)

    def _cap(self, want: Decimal, first_slice: bool) -> Decimal:
        params = cast(VWAPParams, self._params)  # params_model validated it
        observed, self._observed_volume = self._observed_volume, 0.0
        if params.max_participation is None or first_slice:
            return want
        return min(want, self._round_lot(to_decimal(params.max_participation * observed)))

    def _extra_state(self) -> dict[str, Any]:
        return {**super()._extra_state(), "observed_volume": self._observed_volume}

    def _load_extra(self, extra: Mapping[str, Any]) -> None:
        super()._load_extra(extra)
        volume = float(extra["observed_volume"])
        if not math.isfinite(volume) or volume < 0:
            raise ExecutionError(f"checkpoint observed_volume must be finite and >= 0, got {volume!r}")
        self._observed_volume = volume


def volume_curve_from_bars(
    bars: pa.Table | tuple[IntArray, FloatArray],
    *,
    window_start: time = time(9, 30),
    window_end: time = time(16, 0),
    n_buckets: int | None = None,
    symbol: str | None = None,
) -> FloatArray:
    """Build an intraday volume curve from historical minute bars.

    Each bar is placed by its New York clock time (its ``ts`` is the start of its minute).
    For every (symbol, day) the window's volume is split into ``n_buckets`` equal buckets and
    divided by that day's window volume; the curve is the mean of those shares over days,
    normalised to sum to 1. Days that have no bar in the window's last bucket (early closes,
    gaps) or no volume are left out, so a half day does not bend the afternoon.

    Args:
        bars: a :data:`~amcp.data.schemas.BAR_SCHEMA` table (``symbol``, ``ts``, ``volume``), or
            ``(ts_ns, volume)`` arrays of one symbol (UTC nanoseconds of each minute's start).
        window_start: New York time the window opens (inclusive).
        window_end: New York time the window closes (exclusive).
        n_buckets: buckets over the window; default one per minute.
        symbol: use only this symbol's rows of a table (default: pool every symbol).

    Returns:
        ``float64`` array of ``n_buckets`` non-negative shares summing to 1.

    Raises:
        ExecutionError: if the window or ``n_buckets`` is invalid.
        DataError: if the input lacks columns, arrays differ in length, or no day is usable.
    """
    start_minute = window_start.hour * 60 + window_start.minute
    end_minute = window_end.hour * 60 + window_end.minute
    minutes = end_minute - start_minute
    if minutes <= 0:
        raise ExecutionError(f"window_start {window_start} must be before window_end {window_end}")
    buckets = minutes if n_buckets is None else n_buckets
    if isinstance(buckets, bool) or not isinstance(buckets, int) or not 1 <= buckets <= minutes:
        raise ExecutionError(f"n_buckets must be an int in [1, {minutes}] for this window, got {n_buckets!r}")
    ts_ns, volume, group = _bar_columns(bars, symbol)
    local = pd.DatetimeIndex(ts_ns.view("datetime64[ns]")).tz_localize("UTC").tz_convert(_NEW_YORK)
    minute_of_day = np.asarray(local.hour * 60 + local.minute, dtype=np.int64)
    day = local.tz_localize(None).values.astype("datetime64[D]").astype(np.int64)
    inside = (minute_of_day >= start_minute) & (minute_of_day < end_minute)
    bucket = (minute_of_day[inside] - start_minute) * buckets // minutes
    keys = np.stack([group[inside], day[inside]], axis=1)
    if keys.shape[0] == 0:
        raise DataError(f"no bars between {window_start} and {window_end} New York time")
    unique_keys, row = np.unique(keys, axis=0, return_inverse=True)
    row = row.reshape(-1)
    n_days = unique_keys.shape[0]
    table = np.zeros((n_days, buckets))
    present = np.zeros((n_days, buckets), dtype=bool)
    clean = np.where(np.isfinite(volume[inside]) & (volume[inside] > 0), volume[inside], 0.0)
    np.add.at(table, (row, bucket), clean)
    present[row, bucket] = True
    totals = table.sum(axis=1)
    usable = present[:, -1] & (totals > 0)
    if not usable.any():
        raise DataError(
            f"no usable day among {n_days}: each needs volume and a bar in the last bucket "
            f"before {window_end}"
        )
    shares = table[usable] / totals[usable, None]
    curve = shares.mean(axis=0)
    result: FloatArray = curve / curve.sum()
    return result


def _bar_columns(
    bars: pa.Table | tuple[IntArray, FloatArray], symbol: str | None
) -> tuple[IntArray, FloatArray, IntArray]:
    """``ts_ns``, ``volume`` and a symbol code per row."""
    if isinstance(bars, pa.Table):
        missing = {"ts", "volume"} - set(bars.column_names)
        if missing:
            raise DataError(f"minute bar table lacks column(s) {sorted(missing)}; has {bars.column_names}")
        if symbol is not None:
            if "symbol" not in bars.column_names:
                raise DataError(f"cannot select symbol {symbol!r}: the table has no symbol column")
            mask = np.asarray(bars.column("symbol").to_numpy(zero_copy_only=False) == symbol)
            bars = bars.filter(pa.array(mask))
            if bars.num_rows == 0:
                raise DataError(f"minute bar table has no rows for symbol {symbol!r}")
        ts_ns = np.asarray(bars.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
        volume = np.asarray(bars.column("volume").to_numpy(zero_copy_only=False), dtype=np.float64)
        if "symbol" in bars.column_names:
            names = np.asarray(bars.column("symbol").to_numpy(zero_copy_only=False))
            _, codes = np.unique(names, return_inverse=True)
            group = np.asarray(codes, dtype=np.int64).reshape(-1)
        else:
            group = np.zeros(ts_ns.size, dtype=np.int64)
        return ts_ns, volume, group
    if not isinstance(bars, tuple) or len(bars) != 2:
        raise DataError(f"bars must be a pyarrow Table or a (ts_ns, volume) tuple, got {type(bars).__name__}")
    ts_ns = np.asarray(bars[0], dtype=np.int64)
    volume = np.asarray(bars[1], dtype=np.float64)
    if ts_ns.ndim != 1 or ts_ns.shape != volume.shape:
        raise DataError(f"ts_ns {ts_ns.shape} and volume {volume.shape} must be 1-d arrays of one length")
    return ts_ns, volume, np.zeros(ts_ns.size, dtype=np.int64)
