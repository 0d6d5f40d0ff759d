"""Split and dividend adjustment of stored raw bars, applied on read.

The store keeps raw (as-traded) prices; a reader asks for ``raw``, ``split`` or ``all``
(splits and cash dividends) adjusted bars. Adjustment is backward, as CRSP and Yahoo do it: the
latest prices are unchanged and history is scaled.

For one symbol with bars :math:`b_0 < b_1 < \\dots` (by ``ts``) and an action with ex-date
:math:`E`, every bar whose session date is strictly before :math:`E` is multiplied by

* split with ratio :math:`R` (new shares per old share): prices by :math:`1 / R`, volume by
  :math:`R` (a 2-for-1 split halves earlier prices and doubles earlier volume);
* cash dividend :math:`D` per share: prices by :math:`1 - D / C_{prev}`, volume unchanged,
  where :math:`C_{prev}` is the raw close of the last bar before :math:`E`.

Factors of several actions compound (multiply). A dividend that cannot be applied — no bar
before its ex-date, or :math:`D \\ge C_{prev}`, or a missing :math:`C_{prev}` — is skipped and
listed in :attr:`Adjustment.skipped`; :func:`adjustment_factors` and :func:`adjust_bars` log a
warning for each. Actions on symbols that have no bars are ignored. An action whose ex-date is
after a symbol's last bar scales every bar of it: the result is adjusted to the horizon of the
actions table, so pass only actions with ``ex_date <= as_of`` for an as-of-date view.

Bar dates are the America/New_York dates of ``ts`` (:func:`amcp.data.calendar.day_of_ns`), so
the same rule serves daily and intraday bars.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from amcp._typing import FloatArray, IntArray
from amcp.data.calendar import day_of_ns
from amcp.data.schemas import BAR_SCHEMA, CORPORATE_ACTION_SCHEMA
from amcp.errors import DataError

AdjustmentMode = Literal["raw", "split", "all"]
ADJUSTMENT_MODES: tuple[str, ...] = ("raw", "split", "all")
ACTION_KINDS: tuple[str, ...] = ("split", "dividend")

#: Price columns of :data:`BAR_SCHEMA` scaled by the price factor.
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "vwap")

_EPOCH = date(1970, 1, 1)
_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class SkippedAction:
    """A dividend that could not be applied, and why.

    Attributes:
        symbol: the action's symbol.
        ex_date: the action's ex-date.
        action: ``"dividend"``.
        cash: the dividend per share, in the bars' currency.
        prev_close: the raw close of the last bar before ``ex_date`` (None if there is none).
        reason: what is wrong, in words.
    """

    symbol: str
    ex_date: date
    action: str
    cash: float
    prev_close: float | None
    reason: str


@dataclass(frozen=True, eq=False)
class Adjustment:
    """Per-row adjustment factors of a bars table.

    Attributes:
        price_factor: shape (R,), multiply open/high/low/close/vwap of row ``i`` by this.
        volume_factor: shape (R,), multiply the volume of row ``i`` by this.
        skipped: the dividends that were not applied.
    """

    price_factor: FloatArray
    volume_factor: FloatArray
    skipped: tuple[SkippedAction, ...] = ()


def compute_adjustment(bars: pa.Table, actions: pa.Table, mode: AdjustmentMode = "all") -> Adjustment:
    """Compute backward adjustment factors for every row of ``bars``, in its row order.

    Args:
        bars: rows with at least ``symbol`` (string) and ``ts`` (timestamp) and ``close``
            (raw prices); any number of symbols, any order.
        actions: a :data:`CORPORATE_ACTION_SCHEMA` table (``ex_date`` may also be a timestamp).
        mode: ``"raw"`` (all factors 1), ``"split"`` (splits only) or ``"all"`` (splits and
            cash dividends).

    Returns:
        The factors and the dividends that were skipped.

    Raises:
        DataError: if ``mode`` is unknown, a column is missing or null, an action kind is not
            ``split``/``dividend``, a split ratio is not a positive number, or a dividend's cash
            is not a non-negative number.
    """
    if mode not in ADJUSTMENT_MODES:
        raise DataError(f"adjustment mode must be one of {ADJUSTMENT_MODES}, got {mode!r}")
    symbols, codes, days, close = _bar_keys(bars)
    act_symbol, act_day, act_kind, ratio, cash = _action_arrays(actions)
    n = days.size
    ones = np.ones(n, dtype=np.float64)
    if mode == "raw" or n == 0 or act_day.size == 0:
        return Adjustment(ones, ones.copy())

    # Sort bars by (symbol code, day, row) so each symbol is one contiguous, time-ordered run.
    order = np.lexsort((days, codes))
    sorted_codes, sorted_days = codes[order], days[order]
    key = _key(sorted_codes, sorted_days)
    run_start = np.searchsorted(sorted_codes, np.arange(len(symbols)), side="left")

    code_of = {s: i for i, s in enumerate(symbols)}
    act_code = np.array([code_of.get(s, -1) for s in act_symbol], dtype=np.int64)
    use = act_code >= 0
    if mode == "split":
        use &= act_kind == "split"
    idx = np.flatnonzero(use)
    act_code, act_days = act_code[idx], act_day[idx]
    is_split = act_kind[idx] == "split"
    # pos: first sorted bar of the symbol on or after the ex-date; bars [run_start, pos) are before.
    pos = np.searchsorted(key, _key(act_code, act_days), side="left")
    has_prior = pos > run_start[act_code]

    price_mult = np.ones(idx.size)
    volume_mult = np.ones(idx.size)
    price_mult[is_split] = 1.0 / ratio[idx][is_split]
    volume_mult[is_split] = ratio[idx][is_split]

    skipped: list[SkippedAction] = []
    div = np.flatnonzero(~is_split)
    if div.size:
        prev = np.full(div.size, np.nan)
        ok_prior = has_prior[div]
        prev[ok_prior] = close[order[pos[div][ok_prior] - 1]]
        amount = cash[idx][div]
        with np.errstate(invalid="ignore", divide="ignore"):
            applicable = ok_prior & (prev > 0) & (amount < prev)
            price_mult[div] = np.where(applicable, 1.0 - amount / prev, 1.0)
        for j in np.flatnonzero(~applicable).tolist():
            k = int(idx[div[j]])
            p = float(prev[j])
            if not ok_prior[j]:
                reason = "no bar before the ex-date"
            elif not p > 0:
                reason = f"the close before the ex-date is not a positive price (got {p})"
            else:
                reason = f"the dividend {amount[j]:g} is not below the close before the ex-date ({p:g})"
            skipped.append(
                SkippedAction(
                    symbol=act_symbol[k],
                    ex_date=_EPOCH + timedelta(days=int(act_day[k])),
                    action="dividend",
                    cash=float(amount[j]),
                    prev_close=p if ok_prior[j] and np.isfinite(p) else None,
                    reason=reason,
                )
            )

    # An action scales the bars before it: put its multiplier on the last bar before the
    # ex-date and take the reverse cumulative product within each symbol's run.
    effective = has_prior
    price_at = np.ones(n)
    volume_at = np.ones(n)
    np.multiply.at(price_at, pos[effective] - 1, price_mult[effective])
    np.multiply.at(volume_at, pos[effective] - 1, volume_mult[effective])
    price_sorted = np.ones(n)
    volume_sorted = np.ones(n)
    run_end = np.append(run_start[1:], n)
    for code in np.unique(act_code[effective]).tolist():  # one slice per symbol with actions
        lo, hi = int(run_start[code]), int(run_end[code])
        price_sorted[lo:hi] = np.cumprod(price_at[lo:hi][::-1])[::-1]
        volume_sorted[lo:hi] = np.cumprod(volume_at[lo:hi][::-1])[::-1]

    price_factor = np.empty(n)
    volume_factor = np.empty(n)
    price_factor[order] = price_sorted
    volume_factor[order] = volume_sorted
    return Adjustment(price_factor, volume_factor, tuple(skipped))


def adjustment_factors(
    bars: pa.Table, actions: pa.Table, mode: AdjustmentMode = "all"
) -> tuple[FloatArray, FloatArray]:
    """Return the price factor and volume factor of each row of ``bars`` (row order kept).

    See :func:`compute_adjustment`; skipped dividends are logged as warnings.

    Raises:
        DataError: as :func:`compute_adjustment`.
    """
    result = compute_adjustment(bars, actions, mode)
    _warn(result.skipped)
    return result.price_factor, result.volume_factor


def adjust_bars(bars: pa.Table, actions: pa.Table, mode: AdjustmentMode = "all") -> pa.Table:
    """Return ``bars`` (BAR_SCHEMA) adjusted for ``actions``: same rows, same order.

    open/high/low/close/vwap are multiplied by the price factor and volume by the volume factor;
    ``trade_count`` and null values are left as they are. Skipped dividends are logged as
    warnings.

    Raises:
        DataError: if ``bars`` lacks a BAR_SCHEMA column or cannot be cast to it, or as
            :func:`compute_adjustment`.
    """
    table = _as_bar_table(bars)
    result = compute_adjustment(table, actions, mode)
    _warn(result.skipped)
    if mode == "raw":
        return table
    price = pa.array(result.price_factor, pa.float64())
    volume = pa.array(result.volume_factor, pa.float64())
    columns = []
    for field in BAR_SCHEMA:
        column = table.column(field.name)
        if field.name in PRICE_COLUMNS:
            column = pc.multiply(column, price)
        elif field.name == "volume":
            column = pc.multiply(column, volume)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=BAR_SCHEMA)


# --------------------------------------------------------------------------- helpers


def _warn(skipped: tuple[SkippedAction, ...]) -> None:
    for s in skipped:
        _LOG.warning(
            "corporate actions: %s dividend %g on %s not applied: %s", s.symbol, s.cash, s.ex_date, s.reason
        )


def _key(codes: IntArray, days: IntArray) -> IntArray:
    """One sortable int64 per (symbol code, day): days fit in 32 bits with room to spare."""
    return (codes.astype(np.int64) << 32) + (days.astype(np.int64) + (1 << 31))


def _as_bar_table(bars: pa.Table) -> pa.Table:
    missing = [name for name in BAR_SCHEMA.names if name not in bars.column_names]
    if missing:
        raise DataError(
            f"bars: missing column{'s' if len(missing) > 1 else ''} {missing}; "
            f"the table has {bars.column_names}"
        )
    try:
        return bars.select(BAR_SCHEMA.names).cast(BAR_SCHEMA)
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(f"bars: cannot be cast to BAR_SCHEMA ({exc})") from None


def _bar_keys(bars: pa.Table) -> tuple[list[str], IntArray, IntArray, FloatArray]:
    """Distinct symbols, each row's symbol code, New York session day and raw close."""
    missing = [name for name in ("symbol", "ts", "close") if name not in bars.column_names]
    if missing:
        raise DataError(
            f"bars: missing column{'s' if len(missing) > 1 else ''} {missing}; "
            f"the table has {bars.column_names}"
        )
    for name in ("symbol", "ts"):
        nulls = bars.column(name).null_count
        if nulls:
            raise DataError(f"bars: {nulls:,} rows have a null {name!r}")
    ts_type = bars.schema.field("ts").type
    if not pa.types.is_timestamp(ts_type):
        raise DataError(f"bars: column 'ts' must be a timestamp, got {ts_type}")
    symbol = bars.column("symbol")
    if pa.types.is_dictionary(symbol.type):
        symbol = symbol.cast(symbol.type.value_type)
    flat = symbol.combine_chunks() if bars.num_rows else pa.array([], pa.string())
    encoded = flat.dictionary_encode()
    symbols = [str(s) for s in encoded.dictionary.to_pylist()]
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    ts_ns = bars.column("ts").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy()
    unique_ts, inverse = np.unique(ts_ns, return_inverse=True)
    days = day_of_ns(unique_ts).astype(np.int64)[inverse]
    close = pc.fill_null(bars.column("close").cast(pa.float64()), float("nan")).to_numpy()
    return symbols, codes, days, close


def _action_arrays(actions: pa.Table) -> tuple[list[str], IntArray, np.ndarray, FloatArray, FloatArray]:
    """Validate ``actions`` and return symbol, ex-day, kind, ratio and cash per action."""
    missing = [name for name in CORPORATE_ACTION_SCHEMA.names if name not in actions.column_names]
    if missing:
        raise DataError(
            f"corporate actions: missing column{'s' if len(missing) > 1 else ''} {missing}; "
            f"the table has {actions.column_names}"
        )
    for name in ("symbol", "ex_date", "action"):
        nulls = actions.column(name).null_count
        if nulls:
            raise DataError(f"corporate actions: {nulls:,} rows have a null {name!r}")
    ex = actions.column("ex_date")
    try:
        if pa.types.is_timestamp(ex.type) and ex.type.tz is not None:
            ex = pc.local_timestamp(ex)
        ex_days = ex.cast(pa.date32()).cast(pa.int32()).to_numpy().astype(np.int64)
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(
            f"corporate actions: column 'ex_date' must hold dates, got {ex.type} ({exc})"
        ) from None
    symbols = [str(s) for s in actions.column("symbol").cast(pa.string()).to_pylist()]
    kinds = np.array(actions.column("action").cast(pa.string()).to_pylist(), dtype=object)
    ratio = pc.fill_null(actions.column("ratio").cast(pa.float64()), float("nan")).to_numpy()
    cash = pc.fill_null(actions.column("cash").cast(pa.float64()), float("nan")).to_numpy()

    unknown = ~np.isin(kinds, ACTION_KINDS)
    if unknown.any():
        i = int(np.flatnonzero(unknown)[0])
        raise DataError(
            f"corporate actions: row {i} ({symbols[i]} {_iso(ex_days[i])}) has unknown action "
            f"{kinds[i]!r}; expected one of {ACTION_KINDS}"
        )
    with np.errstate(invalid="ignore"):
        bad_ratio = (kinds == "split") & ~(np.isfinite(ratio) & (ratio > 0))
        bad_cash = (kinds == "dividend") & ~(np.isfinite(cash) & (cash >= 0))
    if bad_ratio.any():
        i = int(np.flatnonzero(bad_ratio)[0])
        raise DataError(
            f"corporate actions: split of {symbols[i]} on {_iso(ex_days[i])} needs a positive ratio "
            f"(new shares per old share), got {ratio[i]}"
        )
    if bad_cash.any():
        i = int(np.flatnonzero(bad_cash)[0])
        raise DataError(
            f"corporate actions: dividend of {symbols[i]} on {_iso(ex_days[i])} needs a non-negative "
            f"cash amount per share, got {cash[i]}"
        )
    return symbols, ex_days, kinds, ratio, cash


def _iso(day: int | np.integer) -> str:
    return (_EPOCH + timedelta(days=int(day))).isoformat()


__all__ = [
    "ACTION_KINDS",
    "ADJUSTMENT_MODES",
    "Adjustment",
    "AdjustmentMode",
    "SkippedAction",
    "adjust_bars",
    "adjustment_factors",
    "compute_adjustment",
]
