"""Quality checks on ingest for :data:`~amcp.data.schemas.BAR_SCHEMA` tables (store rows).

The defect rules are those of :mod:`amcp.data.quality` (the backtest loader's checks), applied
per symbol on rows sorted by (symbol, ts), plus calendar checks for daily bars:

==================  ============================================================  =============
kind                condition                                                      fixable
==================  ============================================================  =============
duplicate           a later row has the same (symbol, ts)                          yes
bad_price           open, high, low or close is null, NaN or ``<= 0``              yes
ohlc_inconsistent   ``high < low``, ``high < max(open, close)`` or                 yes
                    ``low > min(open, close)``
high_below_low      ``high < low`` (subset of ``ohlc_inconsistent``)               yes
bad_print           one of o/h/l/c is a lone field over 2x off the others          yes
                    (subset of ``ohlc_inconsistent``)
bad_volume          volume null, NaN or negative                                   yes
outlier_return      ``|close_t / close_prev - 1| > max_abs_return`` between        report only
                    consecutive output rows of a symbol
missing_session     daily: an exchange session between a symbol's first and last  report only
                    output bar with no bar (counted per session, never invented)
non_session         daily: a bar whose New York date is not a session (a           report only
                    weekend or holiday; often a ``ts`` stamped in the wrong zone)
==================  ============================================================  =============

Each row is counted under the first of ``duplicate``, ``bad_price``, ``ohlc_inconsistent``
that applies (and ``bad_volume`` besides, unless it is a duplicate or has a bad price), exactly
as :func:`amcp.data.quality.check_quality` counts. The report-only kinds are computed on the
output rows, so they describe what the store will hold. Calendar checks cover only the
calendar's range (1990 onwards for ``XNYS``).

Policies:

* ``repair``: as :func:`~amcp.data.quality.check_quality` — drop duplicates (keep the last) and
  rows with a bad price, clamp bad prints and widen high/low to contain open/close, set a bad
  volume to 0. The dropped rows come back, unchanged, in the quarantine table.
* ``quarantine``: every row with a fixable defect goes to the quarantine table unchanged
  (including every duplicate but the last); the rest pass unchanged.
* ``strict``: raise :class:`~amcp.errors.DataError` on the first row with a fixable defect.

Both returned tables are sorted by (symbol, ts); every input row is in exactly one of them
(``repair`` changes values of the clean rows it fixes, never their number).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from amcp._typing import BoolArray, FloatArray, IntArray
from amcp.data.calendar import TradingCalendar, day_of_ns
from amcp.data.quality import (
    DEFECT_KINDS,
    FIXABLE_KINDS,
    BarRows,
    defect_masks,
    _format_example,
    _repaired,
)
from amcp.data.schemas import BAR_SCHEMA
from amcp.errors import DataError

QualityAction = Literal["repair", "quarantine", "strict"]
QUALITY_ACTIONS: tuple[str, ...] = ("repair", "quarantine", "strict")

TABLE_DEFECT_KINDS: tuple[str, ...] = (*DEFECT_KINDS, "missing_session", "non_session")
"""Every defect kind :func:`check_bars` counts, in report order."""

REPORT_ONLY_KINDS: tuple[str, ...] = ("outlier_return", "missing_session", "non_session")
"""Kinds that never change or move a row."""

DEFECT_COLUMN = "defect"
"""The column added to quarantined rows: their defect kinds, comma-separated."""

_REPAIR_ACTIONS: dict[str, str] = {
    "duplicate": "dropped (last kept), quarantined",
    "bad_price": "dropped, quarantined",
    "ohlc_inconsistent": "repaired",
    "high_below_low": "repaired",
    "bad_print": "clamped",
    "bad_volume": "set to 0",
}
_NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class SymbolQuality:
    """What :func:`check_bars` found for one symbol.

    Attributes:
        symbol: the symbol.
        rows_in: its rows in the input.
        rows_out: its rows in the clean output.
        counts: rows per defect kind, every kind of :data:`TABLE_DEFECT_KINDS` present (0 if
            none); ``missing_session`` counts sessions, not rows.
        examples: up to a few rows per kind, as found (before repair): kind, symbol, date
            (``YYYY-MM-DD`` for daily bars, an ISO UTC timestamp otherwise), OHLCV, and for
            outliers ``prev_close`` and ``return``; for gaps the first missing session and the
            gap's length in sessions (``sessions``).
        missing_sessions: exchange sessions between its first and last output bar without a bar.
    """

    symbol: str
    rows_in: int
    rows_out: int
    counts: Mapping[str, int]
    examples: tuple[Mapping[str, Any], ...] = ()
    missing_sessions: int = 0

    @property
    def is_clean(self) -> bool:
        """True when no defect of any kind was found."""
        return not any(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (NaN values become ``None``)."""
        return {
            "symbol": self.symbol,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "missing_sessions": self.missing_sessions,
            "counts": dict(self.counts),
            "examples": [{k: _json_value(v) for k, v in e.items()} for e in self.examples],
        }


@dataclass(frozen=True)
class TableQualityReport:
    """What :func:`check_bars` found and did, per symbol and in total.

    Attributes:
        policy: ``"repair"``, ``"quarantine"`` or ``"strict"``.
        max_abs_return: the outlier threshold (a fraction: 1.0 = 100%).
        rows_in: input rows.
        rows_out: rows in the clean table.
        rows_quarantined: rows in the quarantine table (``rows_in - rows_out``).
        totals: per defect kind, the sum over symbols.
        per_symbol: every input symbol's :class:`SymbolQuality`, sorted by symbol.
    """

    policy: str
    max_abs_return: float
    rows_in: int
    rows_out: int
    rows_quarantined: int
    totals: Mapping[str, int]
    per_symbol: Mapping[str, SymbolQuality] = field(default_factory=dict)

    @property
    def is_clean(self) -> bool:
        """True when no defect of any kind was found."""
        return not any(self.totals.values())

    def actions(self) -> dict[str, str]:
        """What the policy did with each defect kind."""
        out = {}
        for kind in TABLE_DEFECT_KINDS:
            if kind in REPORT_ONLY_KINDS:
                out[kind] = "reported"
            elif self.policy == "repair":
                out[kind] = _REPAIR_ACTIONS[kind]
            elif self.policy == "quarantine":
                out[kind] = "quarantined"
            else:
                out[kind] = "refused"
        return out

    def summary_line(self) -> str:
        """One line such as ``bar quality [repair]: 100 rows in, 98 out, 2 quarantined; ...``."""
        head = (
            f"bar quality [{self.policy}]: {self.rows_in:,} rows in, {self.rows_out:,} out, "
            f"{self.rows_quarantined:,} quarantined"
        )
        found = [k for k in TABLE_DEFECT_KINDS if self.totals.get(k, 0)]
        if not found:
            return f"{head}; clean"
        affected = sum(1 for s in self.per_symbol.values() if not s.is_clean)
        parts = ", ".join(f"{k} {self.totals[k]:,}" for k in found)
        return f"{head}; {parts} in {affected:,} symbol{'s' if affected != 1 else ''}"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict (NaN values become ``None``)."""
        return {
            "policy": self.policy,
            "max_abs_return": self.max_abs_return,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "rows_quarantined": self.rows_quarantined,
            "totals": dict(self.totals),
            "actions": self.actions(),
            "summary": self.summary_line(),
            "per_symbol": {s: q.to_dict() for s, q in self.per_symbol.items()},
        }


def check_bars(
    table: pa.Table,
    *,
    policy: QualityAction = "repair",
    max_abs_return: float = 1.0,
    calendar: TradingCalendar | None = None,
    daily: bool = True,
    max_examples: int = 3,
) -> tuple[pa.Table, pa.Table, TableQualityReport]:
    """Check bars for defects and repair, quarantine or refuse them.

    Args:
        table: BAR_SCHEMA rows (any order, any number of symbols; extra columns are dropped).
        policy: ``repair``, ``quarantine`` or ``strict`` (see the module docstring).
        max_abs_return: a close-to-close move above this fraction is an ``outlier_return``.
        calendar: the exchange calendar for daily checks (default: NYSE).
        daily: whether the rows are daily bars (one per session, ``ts`` = midnight New York);
            the calendar checks run only for daily bars.
        max_examples: example rows kept per kind and symbol.

    Returns:
        The clean rows (BAR_SCHEMA), the quarantined rows (BAR_SCHEMA plus a string
        ``defect`` column), both sorted by (symbol, ts), and the report.

    Raises:
        DataError: if the policy or threshold is invalid, a column is missing or cannot be cast
            to BAR_SCHEMA, a symbol or ts is null, or (policy ``strict``) any row has a fixable
            defect; the message names the first such row's symbol, date, values and the counts.
    """
    if policy not in QUALITY_ACTIONS:
        raise DataError(f"quality policy must be one of {QUALITY_ACTIONS}, got {policy!r}")
    if not (isinstance(max_abs_return, int | float) and max_abs_return > 0):
        raise DataError(f"max_abs_return must be a number > 0, got {max_abs_return!r}")
    bars = _as_bar_table(table)
    names, code = _symbol_codes(bars.column("symbol"))
    ts = bars.column("ts").cast(pa.int64()).to_numpy()
    order = np.lexsort((ts, code))  # stable: equal keys keep their input order
    rows = _SortedRows(bars, order, names, code[order], ts[order])
    n = len(order)

    masks = _input_defects(rows)
    fixable = masks["duplicate"] | masks["bad_price"] | masks["ohlc_inconsistent"] | masks["bad_volume"]
    if policy == "strict" and fixable.any():
        _refuse(rows, masks, fixable, daily)

    if policy == "quarantine":
        clean = ~fixable
    else:  # repair, or strict with nothing fixable
        clean = ~(masks["duplicate"] | masks["bad_price"])
    clean_index = np.flatnonzero(clean)
    out_rows = rows.subset(clean_index)
    if policy == "repair":
        out_rows = out_rows.repaired(
            masks["ohlc_inconsistent"][clean_index], masks["bad_volume"][clean_index]
        )

    # Report-only kinds, on the output rows.
    outlier, ret = _outliers(out_rows, max_abs_return)
    sym_out = rows.sym[clean_index]
    non_session = np.zeros(clean_index.size, dtype=bool)
    gaps = _Gaps.none(len(names))
    if daily and clean_index.size:
        gaps, non_session = _calendar_checks(
            rows.days[clean_index], sym_out, len(names), calendar or TradingCalendar()
        )

    quarantine_index = np.flatnonzero(~clean)
    clean_table = out_rows.table()
    quarantine_table = rows.subset(quarantine_index).table().append_column(
        pa.field(DEFECT_COLUMN, pa.string(), nullable=False),
        _defect_labels({k: m[quarantine_index] for k, m in masks.items()}),
    )

    n_sym = len(names)
    per_kind: dict[str, IntArray] = {k: np.bincount(rows.sym[m], minlength=n_sym) for k, m in masks.items()}
    per_kind["outlier_return"] = np.bincount(sym_out[outlier], minlength=n_sym)
    per_kind["missing_session"] = gaps.missing
    per_kind["non_session"] = np.bincount(sym_out[non_session], minlength=n_sym)

    examples: list[list[dict[str, Any]]] = [[] for _ in range(n_sym)]
    for kind in DEFECT_KINDS[:-1]:
        for i in _first_per_group(np.flatnonzero(masks[kind]), rows.sym, max_examples).tolist():
            examples[int(rows.sym[i])].append(rows.example(kind, i, daily))
    for i in _first_per_group(np.flatnonzero(outlier), sym_out, max_examples).tolist():
        example = out_rows.example("outlier_return", i, daily)
        example["prev_close"] = float(out_rows.close[i - 1])
        example["return"] = float(ret[i])
        examples[int(sym_out[i])].append(example)
    for i in _first_per_group(np.flatnonzero(non_session), sym_out, max_examples).tolist():
        examples[int(sym_out[i])].append(out_rows.example("non_session", i, daily))
    for s, day, length in gaps.examples(max_examples):
        examples[s].append(
            {"kind": "missing_session", "symbol": names[s], "date": str(day), "sessions": length}
        )

    rows_in = np.bincount(rows.sym, minlength=n_sym)
    rows_out = np.bincount(sym_out, minlength=n_sym)
    per_symbol = {
        names[s]: SymbolQuality(
            symbol=names[s],
            rows_in=int(rows_in[s]),
            rows_out=int(rows_out[s]),
            counts={k: int(per_kind[k][s]) for k in TABLE_DEFECT_KINDS},
            examples=tuple(examples[s]),
            missing_sessions=int(gaps.missing[s]),
        )
        for s in range(n_sym)
    }
    report = TableQualityReport(
        policy=policy,
        max_abs_return=float(max_abs_return),
        rows_in=n,
        rows_out=int(clean_index.size),
        rows_quarantined=int(quarantine_index.size),
        totals={k: int(per_kind[k].sum()) for k in TABLE_DEFECT_KINDS},
        per_symbol=per_symbol,
    )
    return clean_table, quarantine_table, report


# --------------------------------------------------------------------------- rows


class _SortedRows:
    """Rows of a BAR_SCHEMA table in (symbol, ts) order, with numpy views for the checks.

    ``take`` indexes the source table; OHLCV may be replaced by repaired values.
    """

    def __init__(
        self,
        source: pa.Table,
        take: IntArray,
        names: list[str],
        sym: IntArray,
        ts: IntArray,
        values: dict[str, FloatArray] | None = None,
        days: np.ndarray | None = None,
    ) -> None:
        self.source, self.take, self.names, self.sym, self.ts = source, take, names, sym, ts
        if values is None:
            values = {
                name: pc.fill_null(source.column(name), float("nan")).to_numpy()[take]
                for name in ("open", "high", "low", "close", "volume")
            }
        self.values = values
        self.open, self.high, self.low = values["open"], values["high"], values["low"]
        self.close, self.volume = values["close"], values["volume"]
        self.days = days if days is not None else _days(ts)
        self.changed = False

    def __len__(self) -> int:
        return int(self.take.size)

    def subset(self, index: IntArray) -> _SortedRows:
        values = {k: v[index] for k, v in self.values.items()}
        take, sym, ts, days = self.take[index], self.sym[index], self.ts[index], self.days[index]
        return _SortedRows(self.source, take, self.names, sym, ts, values, days)

    def repaired(self, ohlc_bad: BoolArray, volume_bad: BoolArray) -> _SortedRows:
        """Apply :func:`amcp.data.quality._repaired` (bad-print clamp, high/low widening, volume 0)."""
        if not ohlc_bad.any() and not volume_bad.any():
            return self
        fixed = _repaired(
            BarRows(("",), np.zeros(len(self), np.int64), np.zeros(len(self), np.int64),
                    self.open, self.high, self.low, self.close, self.volume),
            ohlc_bad,
            volume_bad,
        )
        values = {name: getattr(fixed, name) for name in ("open", "high", "low", "close", "volume")}
        out = _SortedRows(self.source, self.take, self.names, self.sym, self.ts, values, self.days)
        out.changed = True
        return out

    def table(self) -> pa.Table:
        """The rows as a BAR_SCHEMA table (repaired values, if any, in place of the source's)."""
        out = self.source.take(pa.array(self.take, pa.int64()))
        if self.changed:
            for name in ("open", "high", "low", "close", "volume"):
                position = out.schema.get_field_index(name)
                out = out.set_column(position, BAR_SCHEMA.field(name), pa.array(self.values[name]))
        return out

    def example(self, kind: str, i: int, daily: bool) -> dict[str, Any]:
        """Row ``i`` as found (the source's values, before any repair)."""
        row = int(self.take[i])
        found = {
            name: self.source.column(name)[row].as_py() for name in ("open", "high", "low", "close", "volume")
        }
        return {
            "kind": kind,
            "symbol": self.names[int(self.sym[i])],
            "date": _when(int(self.ts[i]), self.days[i], daily),
            **{k: float("nan") if v is None else float(v) for k, v in found.items()},
        }


def _as_bar_table(table: pa.Table) -> pa.Table:
    missing = [name for name in BAR_SCHEMA.names if name not in table.column_names]
    if missing:
        raise DataError(
            f"bars: missing column{'s' if len(missing) > 1 else ''} {missing}; "
            f"the table has {table.column_names}"
        )
    for name in ("symbol", "ts"):
        nulls = table.column(name).null_count
        if nulls:
            raise DataError(f"bars: {nulls:,} rows have a null {name!r}")
    try:
        return table.select(BAR_SCHEMA.names).cast(BAR_SCHEMA)
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(f"bars: cannot be cast to BAR_SCHEMA ({exc})") from None


def _symbol_codes(column: pa.ChunkedArray) -> tuple[list[str], IntArray]:
    """Sorted distinct symbols and each row's index into them."""
    if len(column) == 0:
        return [], np.zeros(0, dtype=np.int64)
    encoded = column.combine_chunks().dictionary_encode()
    found = np.array(encoded.dictionary.to_pylist(), dtype=object)
    order = np.argsort(found.astype(str), kind="stable")
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return [str(s) for s in found[order]], rank[encoded.indices.to_numpy(zero_copy_only=False)]


def _days(ts: IntArray) -> np.ndarray:
    """New York date of each ts, converting each distinct value once."""
    if ts.size == 0:
        return np.zeros(0, dtype="datetime64[D]")
    encoded = pa.array(ts, pa.int64()).dictionary_encode()
    unique_days = day_of_ns(encoded.dictionary.to_numpy())
    return unique_days[encoded.indices.to_numpy(zero_copy_only=False)]


# --------------------------------------------------------------------------- checks


def _input_defects(rows: _SortedRows) -> dict[str, BoolArray]:
    """The masks of :func:`amcp.data.quality.check_quality`, on sorted rows."""
    return defect_masks(rows.sym, rows.ts, rows.open, rows.high, rows.low, rows.close, rows.volume)


def _refuse(rows: _SortedRows, masks: dict[str, BoolArray], fixable: BoolArray, daily: bool) -> None:
    first = int(np.flatnonzero(fixable)[0])
    kind = next(k for k in FIXABLE_KINDS if masks[k][first])
    counts = ", ".join(f"{k}={int(masks[k].sum()):,}" for k in FIXABLE_KINDS if masks[k].any())
    raise DataError(
        f"bars: data quality check failed (policy strict): {counts} in {len(rows):,} rows; "
        f"first: {_format_example(rows.example(kind, first, daily))}. "
        "Fix the source or use policy repair or quarantine"
    )


def _outliers(rows: _SortedRows, max_abs_return: float) -> tuple[BoolArray, FloatArray]:
    n = len(rows)
    outlier = np.zeros(n, dtype=bool)
    ret = np.full(n, np.nan)
    if n > 1:
        same = rows.sym[1:] == rows.sym[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            move = rows.close[1:] / rows.close[:-1] - 1.0
            ret[1:] = np.where(same, move, np.nan)
            outlier[1:] = same & (np.abs(move) > max_abs_return)
    return outlier, ret


@dataclass(frozen=True)
class _Gaps:
    missing: IntArray  # per symbol code
    gap_symbol: IntArray  # per gap: symbol code, first missing session, length in sessions
    gap_first: np.ndarray
    gap_length: IntArray

    @staticmethod
    def none(n_symbols: int) -> _Gaps:
        empty = np.zeros(0, dtype=np.int64)
        return _Gaps(np.zeros(n_symbols, dtype=np.int64), empty, np.zeros(0, "datetime64[D]"), empty)

    def examples(self, per_symbol: int) -> list[tuple[int, np.datetime64, int]]:
        keep = _first_per_group(np.arange(self.gap_symbol.size), self.gap_symbol, per_symbol)
        symbols, lengths = self.gap_symbol[keep].tolist(), self.gap_length[keep].tolist()
        return list(zip(symbols, self.gap_first[keep], lengths, strict=True))


def _calendar_checks(
    days: np.ndarray, sym: IntArray, n_symbols: int, calendar: TradingCalendar
) -> tuple[_Gaps, BoolArray]:
    """Missing sessions per symbol and bars on non-session days, for rows sorted by (sym, day).

    Equivalent to ``calendar.missing_sessions`` of each symbol's days, computed for all symbols
    from one session array.
    """
    days = days.astype("datetime64[D]")
    # A week either side: any in-calendar day then lies between the first and last session.
    sessions = calendar.sessions(days.min() - np.timedelta64(7, "D"), days.max() + np.timedelta64(7, "D"))
    if sessions.size == 0:
        return _Gaps.none(n_symbols), np.zeros(days.size, dtype=bool)
    in_range = (days >= sessions[0]) & (days <= sessions[-1])
    k = np.clip(np.searchsorted(sessions, days), 0, sessions.size - 1)
    is_session = in_range & (sessions[k] == days)
    non_session = in_range & ~is_session

    idx = np.flatnonzero(is_session)
    s, kk = sym[idx], k[idx]
    distinct = np.ones(idx.size, dtype=bool)
    distinct[1:] = (s[1:] != s[:-1]) | (kk[1:] != kk[:-1])
    s, kk = s[distinct], kk[distinct]
    step = np.zeros(s.size, dtype=np.int64)
    if s.size > 1:
        same = s[1:] == s[:-1]
        step[1:] = np.where(same, kk[1:] - kk[:-1] - 1, 0)
    missing = np.bincount(s, weights=step, minlength=n_symbols).astype(np.int64)
    at = np.flatnonzero(step > 0)
    gaps = _Gaps(missing, s[at], sessions[kk[at - 1] + 1], step[at])
    return gaps, non_session


def _first_per_group(index: IntArray, group: IntArray, count: int) -> IntArray:
    """The first ``count`` of ``index`` (ascending, grouped by ``group[index]``) in each group."""
    if index.size == 0 or count <= 0:
        return index[:0]
    g = group[index]
    start = np.r_[True, g[1:] != g[:-1]]
    first_pos = np.maximum.accumulate(np.where(start, np.arange(index.size), 0))
    return index[np.arange(index.size) - first_pos < count]


def _defect_labels(masks: Mapping[str, BoolArray]) -> pa.Array:
    """Comma-separated defect kinds per row, via one bit per kind."""
    kinds = list(masks)
    n = next(iter(masks.values())).size if masks else 0
    bits = np.zeros(n, dtype=np.int64)
    for b, kind in enumerate(kinds):
        bits |= masks[kind].astype(np.int64) << b
    codes, inverse = np.unique(bits, return_inverse=True)
    labels = [",".join(k for b, k in enumerate(kinds) if code >> b & 1) for code in codes.tolist()]
    indices = pa.array(inverse, pa.int32())
    return pa.DictionaryArray.from_arrays(indices, pa.array(labels, pa.string())).cast(pa.string())


def _when(ts_ns: int, day: np.datetime64, daily: bool) -> str:
    if daily:
        return str(day)
    return pd.Timestamp(ts_ns, unit="ns", tz="UTC").isoformat()


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


__all__ = [
    "DEFECT_COLUMN",
    "QUALITY_ACTIONS",
    "REPORT_ONLY_KINDS",
    "TABLE_DEFECT_KINDS",
    "QualityAction",
    "SymbolQuality",
    "TableQualityReport",
    "check_bars",
]
