"""Data-quality checks for daily bars: find defects, then repair them or stop.

Pure numpy over long-format rows (:class:`BarRows`); no I/O. The loader in
:mod:`amcp.data.bars` reads a file into ``BarRows``, calls :func:`check_quality` and builds the
panel from the rows it returns.

Defect kinds, checked per symbol on rows sorted by (symbol, date). Each row is counted under the
first of ``duplicate``, ``bad_price``, ``ohlc_inconsistent`` that applies; ``bad_volume`` and
``outlier_return`` are counted on the rows that survive those three.

==================  ========================================================  ====================
kind                condition                                                 ``repair`` action
==================  ========================================================  ====================
duplicate           another row has the same (symbol, date) later in the      drop (keep the last)
                    file
bad_price           open, high, low or close is NaN or ``<= 0``               drop the row
ohlc_inconsistent   ``high < low`` or ``high < max(open, close)`` or          ``high = max(o,h,l,c)``,
                    ``low > min(open, close)``                                ``low = min(o,h,l,c)``
                                                                              (after any bad print
                                                                              is fixed, see below)
high_below_low      ``high < low`` (a subset of ``ohlc_inconsistent``)        as above
bad_print           in an inconsistent row, one of o/h/l/c is more than      clamp that field into
                    ``BAD_PRINT_FACTOR`` (2×) away from the median of the     the range of the other
                    other three — a shifted decimal, not a real trade        three
                    (a subset of ``ohlc_inconsistent``)
bad_volume          volume negative or NaN                                    set to 0
outlier_return      ``|close_t / close_{t-1} - 1| > max_abs_return`` between  none: reported only
                    consecutive rows of one symbol (after the fixes above)
==================  ========================================================  ====================

Policy ``strict`` raises :class:`~amcp.errors.DataError` when any defect that ``repair`` would
change is present (every kind but ``outlier_return``: a large move can be real, so it is
reported, never fatal).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Literal

import numpy as np

from amcp._typing import BoolArray, FloatArray, IntArray
from amcp.errors import DataError

QualityPolicy = Literal["repair", "strict"]

DEFECT_KINDS: tuple[str, ...] = (
    "duplicate",
    "bad_price",
    "ohlc_inconsistent",
    "high_below_low",
    "bad_print",
    "bad_volume",
    "outlier_return",
)
"""Every defect kind, in report order."""

#: Kinds that ``repair`` changes and ``strict`` refuses; ``high_below_low`` is a subset of
#: ``ohlc_inconsistent`` and ``outlier_return`` is informational.
FIXABLE_KINDS: tuple[str, ...] = ("duplicate", "bad_price", "ohlc_inconsistent", "bad_volume")

_ACTIONS: dict[str, str] = {
    "duplicate": "dropped, last kept",
    "bad_price": "dropped",
    "ohlc_inconsistent": "repaired",
    "high_below_low": "repaired",
    "bad_print": "clamped",
    "bad_volume": "set to 0",
    "outlier_return": "reported",
}

_EPOCH = date(1970, 1, 1)


def day_to_iso(day: int) -> str:
    """Return the ISO date (``YYYY-MM-DD``) of ``day`` days since 1970-01-01."""
    return (_EPOCH + timedelta(days=int(day))).isoformat()


@dataclass(frozen=True, eq=False)
class BarRows:
    """Daily bars in long form: one row per (symbol, session).

    Attributes:
        symbols: symbol names; ``symbol_index`` points into this tuple.
        symbol_index: shape (R,), the row's symbol as an index into ``symbols``.
        day: shape (R,), the session date as days since 1970-01-01.
        open, high, low, close, volume: shape (R,), float64 (NaN where missing).
    """

    symbols: tuple[str, ...]
    symbol_index: IntArray
    day: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        n = self.symbol_index.shape
        if len(n) != 1:
            raise DataError(f"BarRows.symbol_index must be 1-D, got shape {n}")
        for name in ("day", "open", "high", "low", "close", "volume"):
            shape = getattr(self, name).shape
            if shape != n:
                raise DataError(f"BarRows.{name} has shape {shape}, expected {n} like symbol_index")
        if n[0] and (self.symbol_index.min() < 0 or self.symbol_index.max() >= len(self.symbols)):
            raise DataError(f"BarRows.symbol_index must lie in [0, {len(self.symbols)})")

    def __len__(self) -> int:
        return int(self.symbol_index.shape[0])

    def take(self, index: IntArray | BoolArray) -> BarRows:
        """Return the rows selected by an integer index or a boolean mask."""
        return BarRows(
            self.symbols,
            self.symbol_index[index],
            self.day[index],
            self.open[index],
            self.high[index],
            self.low[index],
            self.close[index],
            self.volume[index],
        )


@dataclass(frozen=True, eq=False)
class QualityReport:
    """What :func:`check_quality` found and did. Treat the dict fields as read-only.

    Attributes:
        source: the file or label the rows came from.
        policy: ``"repair"`` or ``"strict"``.
        max_abs_return: the outlier threshold used (a fraction: 1.0 = 100%).
        rows_in: rows before the checks.
        rows_out: rows after (``rows_in`` minus dropped duplicates and bad prices).
        counts: rows per defect kind, every kind of :data:`DEFECT_KINDS` present (0 if none).
        by_symbol: per symbol with any defect, its non-zero counts per kind.
        examples: up to a few rows per kind: kind, symbol, date, the OHLCV values as found
            (before repair) and, for outliers, ``prev_close`` and ``return``.
    """

    source: str
    policy: str
    max_abs_return: float
    rows_in: int
    rows_out: int
    counts: dict[str, int]
    by_symbol: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: tuple[dict[str, Any], ...] = ()

    @property
    def rows_dropped(self) -> int:
        """Rows removed (duplicates and bad prices)."""
        return self.rows_in - self.rows_out

    @property
    def is_clean(self) -> bool:
        """True when no defect of any kind, outliers included, was found."""
        return not any(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (NaN values become ``None``)."""
        return {
            "source": self.source,
            "policy": self.policy,
            "max_abs_return": self.max_abs_return,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_dropped": self.rows_dropped,
            "counts": dict(self.counts),
            "actions": {k: _ACTIONS[k] if self.policy == "repair" else "none" for k in DEFECT_KINDS},
            "by_symbol": {s: dict(c) for s, c in self.by_symbol.items()},
            "examples": [{k: _json_value(v) for k, v in e.items()} for e in self.examples],
            "summary": self.summary_line(),
        }

    def summary_line(self) -> str:
        """Return one line such as ``data quality [repair] f.parquet: 100 rows in, 98 out; ...``."""
        head = f"data quality [{self.policy}] {self.source}: {self.rows_in:,} rows in, {self.rows_out:,} out"
        found = [k for k in DEFECT_KINDS if self.counts.get(k, 0)]
        if not found:
            return f"{head}; clean"
        parts = []
        for kind in found:
            action = _ACTIONS[kind] if self.policy == "repair" else "found"
            parts.append(f"{kind} {self.counts[kind]:,} ({action})")
        symbols = len(self.by_symbol)
        return f"{head}; " + ", ".join(parts) + f" in {symbols} symbol{'s' if symbols != 1 else ''}"


def check_quality(
    rows: BarRows,
    policy: QualityPolicy = "repair",
    max_abs_return: float = 1.0,
    source: str = "<bars>",
    max_examples_per_kind: int = 3,
) -> tuple[BarRows, QualityReport]:
    """Find defects in ``rows`` and repair them (policy ``repair``) or refuse them (``strict``).

    Args:
        rows: bars in any order; the result is sorted by (symbol index, day), and rows with the
            same key keep their input order (so "last" means last in the input).
        policy: ``repair`` fixes or drops defective rows; ``strict`` raises on any of them.
        max_abs_return: a close-to-close move whose absolute value exceeds this fraction is
            reported as ``outlier_return`` (never changed).
        source: the file name or label used in the report and in error messages.
        max_examples_per_kind: how many example rows to keep per defect kind.

    Returns:
        The cleaned rows (sorted) and a :class:`QualityReport`.

    Raises:
        DataError: with policy ``strict``, if any duplicate, bad price, OHLC inconsistency or bad
            volume is found; the message lists the counts and the first examples.
    """
    if policy not in ("repair", "strict"):
        raise DataError(f"quality policy must be 'repair' or 'strict', got {policy!r}")
    if not max_abs_return > 0:
        raise DataError(f"max_abs_return must be > 0, got {max_abs_return}")
    rows = _sorted(rows)
    rows_in = len(rows)
    sym, day = rows.symbol_index, rows.day
    o, h, l, c, v = rows.open, rows.high, rows.low, rows.close, rows.volume

    masks = defect_masks(sym, day, o, h, l, c, v)
    kept = ~masks["duplicate"] & ~masks["bad_price"]

    examples: list[dict[str, Any]] = []
    shown: set[int] = set()
    for kind, mask in masks.items():
        if kind in ("high_below_low", "bad_print"):  # subsets of ohlc_inconsistent: skip rows shown there
            mask = mask & ~_mask_of(shown, rows_in)
        for i in np.flatnonzero(mask)[:max_examples_per_kind].tolist():
            examples.append(_example(kind, rows, i))
            shown.add(i)

    fixable = {k: int(masks[k].sum()) for k in FIXABLE_KINDS}
    if policy == "strict" and any(fixable.values()):
        found = ", ".join(f"{k}={n:,}" for k, n in fixable.items() if n)
        listed = "; ".join(_format_example(e) for e in examples if e["kind"] in FIXABLE_KINDS)
        raise DataError(
            f"{source}: data quality check failed (policy strict): {found} in {rows_in:,} rows; "
            f"first examples: {listed}. Fix the file or use quality_policy: repair"
        )

    out = rows.take(kept) if not kept.all() else rows
    if policy == "repair":
        out = _repaired(out, masks["ohlc_inconsistent"][kept], masks["bad_volume"][kept])

    # Outliers on the cleaned series: a move between consecutive surviving rows of one symbol.
    outlier = np.zeros(len(out), dtype=bool)
    ret = np.full(len(out), np.nan)
    if len(out) > 1:
        same = out.symbol_index[1:] == out.symbol_index[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            move = out.close[1:] / out.close[:-1] - 1.0
        ret[1:] = np.where(same, move, np.nan)
        with np.errstate(invalid="ignore"):
            outlier[1:] = same & (np.abs(move) > max_abs_return)
    for i in np.flatnonzero(outlier)[:max_examples_per_kind]:
        example = _example("outlier_return", out, int(i))
        example["prev_close"] = float(out.close[i - 1])
        example["return"] = float(ret[i])
        examples.append(example)

    counts = {k: int(m.sum()) for k, m in masks.items()}
    counts["outlier_return"] = int(outlier.sum())
    n_symbols = len(rows.symbols)
    per_kind = {k: np.bincount(sym[m], minlength=n_symbols) for k, m in masks.items()}
    per_kind["outlier_return"] = np.bincount(out.symbol_index[outlier], minlength=n_symbols)
    by_symbol: dict[str, dict[str, int]] = {}
    for s in np.flatnonzero(np.sum(list(per_kind.values()), axis=0)):
        by_symbol[rows.symbols[s]] = {k: int(a[s]) for k, a in per_kind.items() if a[s]}

    report = QualityReport(
        source=source,
        policy=policy,
        max_abs_return=float(max_abs_return),
        rows_in=rows_in,
        rows_out=len(out),
        counts=counts,
        by_symbol=by_symbol,
        examples=tuple(examples),
    )
    return out, report


def defect_masks(
    symbol: IntArray, key: IntArray, o: FloatArray, h: FloatArray, l: FloatArray, c: FloatArray, v: FloatArray
) -> dict[str, BoolArray]:
    """Per-row masks of every input defect kind (all but ``outlier_return``), as in the table in
    the module docstring.

    Args:
        symbol: symbol code of each row; rows must be sorted by (symbol, key), equal keys in
            input order.
        key: the row's time key (a day number or a timestamp); equal (symbol, key) is a duplicate
            of the next row (the last of a run is kept).
        o, h, l, c, v: the row's open, high, low, close and volume.
    """
    n = symbol.size
    duplicate = np.zeros(n, dtype=bool)
    if n > 1:
        duplicate[:-1] = (symbol[:-1] == symbol[1:]) & (key[:-1] == key[1:])
    with np.errstate(invalid="ignore"):
        priced = (o > 0) & (h > 0) & (l > 0) & (c > 0)  # False for NaN
        kept = ~duplicate & priced
        high_below_low = kept & (h < l)
        ohlc = kept & ((h < l) | (h < np.maximum(o, c)) | (l > np.minimum(o, c)))
        bad_volume = kept & ~(v >= 0)
    bad_print = np.zeros(n, dtype=bool)
    inconsistent = np.flatnonzero(ohlc)
    if inconsistent.size:  # the median test only on the few inconsistent rows
        fields = _bad_print_fields(o[inconsistent], h[inconsistent], l[inconsistent], c[inconsistent])
        bad_print[inconsistent] = fields.any(axis=0)
    return {
        "duplicate": duplicate,
        "bad_price": ~duplicate & ~priced,
        "ohlc_inconsistent": ohlc,
        "high_below_low": high_below_low,
        "bad_print": bad_print,
        "bad_volume": bad_volume,
    }


def _mask_of(index: set[int], size: int) -> BoolArray:
    mask = np.zeros(size, dtype=bool)
    mask[list(index)] = True
    return mask


def _sorted(rows: BarRows) -> BarRows:
    sym, day = rows.symbol_index, rows.day
    if len(rows) < 2:
        return rows
    ordered = (sym[1:] > sym[:-1]) | ((sym[1:] == sym[:-1]) & (day[1:] >= day[:-1]))
    if ordered.all():
        return rows
    return rows.take(np.lexsort((day, sym)))  # lexsort is stable: equal keys keep input order


BAD_PRINT_FACTOR = 2.0
"""A field more than this factor above or below the median of the row's other three prices is a
bad print (a shifted decimal point, as in the shared data's EIX close of 3.64 in a 36 bar)."""


def _bad_print_fields(o: FloatArray, h: FloatArray, l: FloatArray, c: FloatArray) -> BoolArray:
    """Boolean (4, n): which of open/high/low/close is a lone gross outlier in its row."""
    prices = np.stack([o, h, l, c])
    flags = np.zeros(prices.shape, dtype=bool)
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(4):
            others = np.median(np.delete(prices, k, axis=0), axis=0)
            ratio = prices[k] / others
            flags[k] = (ratio > BAD_PRINT_FACTOR) | (ratio < 1.0 / BAD_PRINT_FACTOR)
    # Only a single outlier field is a bad print; two or more off means the row itself is unknowable.
    flags &= flags.sum(axis=0) == 1
    return flags


def _repaired(rows: BarRows, ohlc_bad: BoolArray, volume_bad: BoolArray) -> BarRows:
    if not ohlc_bad.any() and not volume_bad.any():
        return rows
    open_, high, low, close, volume = rows.open, rows.high, rows.low, rows.close, rows.volume
    if ohlc_bad.any():
        bad = np.flatnonzero(ohlc_bad)
        stacked = np.stack([open_[bad], high[bad], low[bad], close[bad]])
        # 1. A lone gross outlier field is clamped into the range of the other three.
        flags = _bad_print_fields(*stacked)
        for k in range(4):
            others = np.delete(stacked, k, axis=0)
            clamped = np.clip(stacked[k], others.min(axis=0), others.max(axis=0))
            stacked[k] = np.where(flags[k], clamped, stacked[k])
        # 2. Then high and low are widened to contain open and close.
        open_, high, low, close = open_.copy(), high.copy(), low.copy(), close.copy()
        open_[bad], close[bad] = stacked[0], stacked[3]
        high[bad] = stacked.max(axis=0)
        low[bad] = stacked.min(axis=0)
    if volume_bad.any():
        volume = np.where(volume_bad, 0.0, rows.volume)
    return BarRows(rows.symbols, rows.symbol_index, rows.day, open_, high, low, close, volume)


def _example(kind: str, rows: BarRows, i: int) -> dict[str, Any]:
    return {
        "kind": kind,
        "symbol": rows.symbols[int(rows.symbol_index[i])],
        "date": day_to_iso(int(rows.day[i])),
        "open": float(rows.open[i]),
        "high": float(rows.high[i]),
        "low": float(rows.low[i]),
        "close": float(rows.close[i]),
        "volume": float(rows.volume[i]),
    }


def _format_example(example: Mapping[str, Any]) -> str:
    prices = " ".join(f"{k[0]}={example[k]:g}" for k in ("open", "high", "low", "close"))
    values = f"{prices} v={example['volume']:.0f}"
    return f"{example['kind']} {example['symbol']} {example['date']} {values}"


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
