"""Point-in-time universes: which symbols belonged to an index on each date.

A backtest that trades "the S&P 500" must trade the members of each day, not today's members
(survivorship bias). :class:`PointInTimeUniverse` holds membership intervals
(:data:`~amcp.data.schemas.UNIVERSE_SCHEMA`: ``start_date`` to ``end_date`` inclusive, a null
end meaning "still a member") and answers "who was a member on day *d*" and the (T, N) mask a
backtest multiplies its signals by.

Overlapping or touching intervals of one symbol (the second starting on or before the day after
the first ends) are merged into one: membership is a set of days per symbol, so merging changes
no answer and keeps the intervals disjoint.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa

from amcp._typing import BoolArray, IntArray
from amcp.data.schemas import UNIVERSE_SCHEMA
from amcp.errors import DataError

_EPOCH = date(1970, 1, 1)
_OPEN_END = np.iinfo(np.int64).max
"""End day of a membership that has not ended."""


class PointInTimeUniverse:
    """Membership intervals of one universe (e.g. ``"sp500"``), queryable by date.

    Build it with :meth:`from_intervals`, :meth:`from_table` or :func:`load_membership_csv`.
    Dates are calendar days; intervals are inclusive at both ends.
    """

    def __init__(self, name: str, symbols: Sequence[str], start_days: IntArray, end_days: IntArray) -> None:
        """Build from parallel arrays (prefer the ``from_*`` constructors).

        Args:
            name: the universe's name.
            symbols: each interval's symbol.
            start_days: first member day of each interval, days since 1970-01-01.
            end_days: last member day of each interval (inclusive), days since 1970-01-01;
                ``np.iinfo(np.int64).max`` for a membership that has not ended.

        Raises:
            DataError: if the name or a symbol is empty, the arrays differ in length, or an
                interval ends before it starts.
        """
        if not name:
            raise DataError("universe: the name must be a non-empty string")
        start = np.asarray(start_days, dtype=np.int64)
        end = np.asarray(end_days, dtype=np.int64)
        if not len(symbols) == start.size == end.size:
            raise DataError(
                f"universe {name!r}: symbols, start_days and end_days differ in length "
                f"({len(symbols)}, {start.size}, {end.size})"
            )
        labels = np.array([str(s) for s in symbols], dtype=object)
        empty = np.flatnonzero([not s.strip() for s in labels])
        if empty.size:
            raise DataError(f"universe {name!r}: interval {int(empty[0])} has an empty symbol")
        backwards = np.flatnonzero(end < start)
        if backwards.size:
            i = int(backwards[0])
            raise DataError(
                f"universe {name!r}: {labels[i]} membership ends before it starts "
                f"(start {_iso(start[i])}, end {_iso(end[i])})"
            )
        self.name = name
        self._symbols, self._code, self._start, self._end = _merged(labels, start, end)

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_intervals(
        cls, name: str, intervals: Iterable[tuple[str, date | str, date | str | None]]
    ) -> PointInTimeUniverse:
        """Build from ``(symbol, start, end)`` tuples; ``end`` None (or "") means still a member.

        Raises:
            DataError: if a date is not a date or ISO ``YYYY-MM-DD`` string, or as the constructor.
        """
        symbols: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        for k, (symbol, start, end) in enumerate(intervals):
            symbols.append(symbol)
            starts.append(_day(start, f"universe {name!r}: interval {k} start"))
            if end is None or end == "":
                ends.append(_OPEN_END)
            else:
                ends.append(_day(end, f"universe {name!r}: interval {k} end"))
        return cls(name, symbols, np.array(starts, dtype=np.int64), np.array(ends, dtype=np.int64))

    @classmethod
    def from_table(cls, table: pa.Table, universe: str | None = None) -> PointInTimeUniverse:
        """Build from a :data:`UNIVERSE_SCHEMA` table.

        Args:
            table: the rows; may hold several universes.
            universe: which one to take; may be omitted when the table holds only one.

        Raises:
            DataError: if a column is missing or null, the table holds several universes and
                none was chosen, the chosen one has no rows, or as the constructor.
        """
        missing = [c for c in UNIVERSE_SCHEMA.names if c not in table.column_names]
        if missing:
            raise DataError(f"universe table: missing columns {missing}; the table has {table.column_names}")
        try:
            table = table.select(UNIVERSE_SCHEMA.names).cast(UNIVERSE_SCHEMA)
        except (pa.ArrowException, ValueError) as exc:
            raise DataError(f"universe table: cannot be cast to UNIVERSE_SCHEMA ({exc})") from None
        names = np.array(table.column("universe").to_pylist(), dtype=object)
        present = sorted(set(names.tolist()))
        if universe is None:
            if len(present) > 1:
                raise DataError(f"universe table holds {len(present)} universes {present}; choose one")
            if not present:
                raise DataError("universe table has no rows; pass universe= to name an empty universe")
            universe = present[0]
        keep = names == universe
        if not keep.any():
            raise DataError(f"universe table has no rows for {universe!r}; it has {present}")
        symbols = np.array(table.column("symbol").to_pylist(), dtype=object)[keep]
        start = table.column("start_date").cast(pa.int32()).to_numpy().astype(np.int64)[keep]
        end_col = table.column("end_date").cast(pa.int32())
        end = np.where(
            np.asarray(end_col.is_null().to_numpy(zero_copy_only=False)),
            _OPEN_END,
            end_col.fill_null(0).to_numpy().astype(np.int64),
        )[keep]
        return cls(universe, list(symbols), start, end)

    # ------------------------------------------------------------------ queries

    def symbols(self) -> list[str]:
        """Every symbol that was ever a member, sorted."""
        return list(self._symbols)

    def members(self, on: date | str | np.datetime64) -> list[str]:
        """The members on day ``on`` (inclusive ends), sorted.

        Raises:
            DataError: if ``on`` is not a date.
        """
        day = _day(on, f"universe {self.name!r}: members(on)")
        inside = (self._start <= day) & (day <= self._end)
        return [self._symbols[c] for c in np.unique(self._code[inside]).tolist()]

    def mask(self, dates: np.ndarray, symbols: Sequence[str]) -> BoolArray:
        """Membership of each symbol on each date, shape (T, N).

        Args:
            dates: shape (T,), anything ``np.asarray(...).astype("datetime64[D]")`` accepts, in
                any order.
            symbols: N symbols (columns); one never in the universe gives an all-False column.

        Raises:
            DataError: if ``dates`` is not one-dimensional or holds NaT or non-dates.
        """
        try:
            days = np.asarray(dates).astype("datetime64[D]")
        except (TypeError, ValueError) as exc:
            raise DataError(f"universe {self.name!r}: mask dates must be dates ({exc})") from None
        if days.ndim != 1:
            raise DataError(f"universe {self.name!r}: mask dates must be 1-D, got shape {days.shape}")
        if np.isnat(days).any():
            first = int(np.flatnonzero(np.isnat(days))[0])
            raise DataError(f"universe {self.name!r}: mask dates hold NaT at index {first}")
        t, n = days.size, len(symbols)
        if t == 0 or n == 0:
            return np.zeros((t, n), dtype=bool)
        day = days.astype(np.int64)
        order = np.argsort(day, kind="stable")
        sorted_day = day[order]
        # Column of each interval (intervals of unrequested symbols drop out); a requested symbol
        # repeated in ``symbols`` gets every one of its columns.
        column_lists: dict[str, list[int]] = {}
        for j, s in enumerate(symbols):
            column_lists.setdefault(str(s), []).append(j)
        index_of_symbol = {s: i for i, s in enumerate(self._symbols)}
        pairs = [
            (index_of_symbol[s], j) for s, cols in column_lists.items() if s in index_of_symbol for j in cols
        ]
        if not pairs:
            return np.zeros((t, n), dtype=bool)
        code_col = np.array(pairs, dtype=np.int64)
        # For each requested (code, column), every interval of that code.
        interval_of_code = np.argsort(self._code, kind="stable")
        first = np.searchsorted(self._code[interval_of_code], code_col[:, 0], side="left")
        last = np.searchsorted(self._code[interval_of_code], code_col[:, 0], side="right")
        counts = last - first
        rep = np.repeat(np.arange(len(pairs)), counts)
        offsets = np.arange(rep.size) - np.repeat(np.cumsum(counts) - counts, counts)
        intervals = interval_of_code[first[rep] + offsets]
        columns = code_col[rep, 1]
        # Rows [lo, hi) of the sorted dates fall inside each interval: mark with a difference array.
        lo = np.searchsorted(sorted_day, self._start[intervals], side="left")
        hi = np.searchsorted(sorted_day, self._end[intervals], side="right")
        diff = np.zeros((t + 1, n), dtype=np.int32)
        np.add.at(diff, (lo, columns), 1)
        np.add.at(diff, (hi, columns), -1)
        inside_sorted = np.cumsum(diff[:-1], axis=0) > 0
        out = np.empty((t, n), dtype=bool)
        out[order] = inside_sorted
        return out

    def to_table(self) -> pa.Table:
        """The (merged) intervals as a :data:`UNIVERSE_SCHEMA` table, sorted by symbol and start."""
        end = self._end
        open_end = end == _OPEN_END
        return pa.Table.from_arrays(
            [
                pa.array([self.name] * self._code.size, pa.string()),
                pa.array([self._symbols[c] for c in self._code.tolist()], pa.string()),
                pa.array(self._start.astype(np.int32), pa.int32()).cast(pa.date32()),
                pa.array(np.where(open_end, 0, end).astype(np.int32), pa.int32(), mask=open_end).cast(
                    pa.date32()
                ),
            ],
            schema=UNIVERSE_SCHEMA,
        )

    def __len__(self) -> int:
        """Number of (merged) membership intervals."""
        return int(self._code.size)

    def __repr__(self) -> str:
        return f"PointInTimeUniverse({self.name!r}, {len(self._symbols)} symbols, {len(self)} intervals)"


def load_membership_csv(
    path: str | Path,
    universe_name: str,
    *,
    end_is_exclusive: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> PointInTimeUniverse:
    """Read a membership CSV with columns ``ticker`` (or ``symbol``), ``start_date``, ``end_date``.

    Dates are ``YYYY-MM-DD``; an empty ``end_date`` means still a member. The fja05680/sp500
    file (``sp500_ticker_start_end.csv``, the shared ``sp500_membership.csv``) gives as
    ``end_date`` the day of the index change that removed the ticker, when its replacement is
    already a member (AAL ends and DELL starts on 2024-09-23), so by default the last member day
    is ``end_date - 1``. Pass ``end_is_exclusive=False`` for a file whose ``end_date`` is the last
    member day.

    Args:
        path: local path or fsspec URL.
        universe_name: the name of the universe built.
        end_is_exclusive: whether ``end_date`` is the first day no longer a member.
        storage_options: passed to fsspec for remote URLs.

    Raises:
        DataError: if the file is missing or unreadable, lacks a column, has an empty ticker or
            a malformed date (the message names the line), or a membership ends before it
            starts (an interval with ``end_date == start_date`` when ends are exclusive is empty
            and is dropped).
    """
    source = str(path)
    try:
        with fsspec.open(source, mode="rt", newline="", **(storage_options or {})) as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        raise DataError(f"{source}: membership file not found") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{source}: cannot read the membership CSV ({exc})") from None
    if not rows:
        raise DataError(f"{source}: the membership file is empty")
    header = [h.strip().lower() for h in rows[0]]
    symbol_column = "ticker" if "ticker" in header else "symbol"
    missing = [c for c in (symbol_column, "start_date", "end_date") if c not in header]
    if missing:
        raise DataError(
            f"{source}: missing column{'s' if len(missing) > 1 else ''} {missing}; "
            f"expected ticker (or symbol), start_date, end_date; the file has {rows[0]}"
        )
    body = [r for r in rows[1:] if any(cell.strip() for cell in r)]
    lines = [k + 2 for k, r in enumerate(rows[1:]) if any(cell.strip() for cell in r)]
    columns = [header.index(c) for c in (symbol_column, "start_date", "end_date")]
    short = next((line for line, r in zip(lines, body, strict=True) if len(r) < len(header)), None)
    if short is not None:
        raise DataError(f"{source}: line {short} has fewer fields than the header's {len(header)}")
    symbol = np.array([r[columns[0]].strip() for r in body], dtype=object)
    start_text = np.array([r[columns[1]].strip() for r in body], dtype=object)
    end_text = np.array([r[columns[2]].strip() for r in body], dtype=object)
    empty_symbol = np.flatnonzero(symbol == "")
    if empty_symbol.size:
        raise DataError(f"{source}: line {lines[int(empty_symbol[0])]} has an empty {symbol_column}")
    start = _parse_days(start_text, source, "start_date", lines, allow_empty=False)
    end = _parse_days(end_text, source, "end_date", lines, allow_empty=True)
    open_end = end_text == ""
    last_day = np.where(open_end, _OPEN_END, end - 1 if end_is_exclusive else end)
    backwards = np.flatnonzero(~open_end & (end < start))
    if backwards.size:
        i = int(backwards[0])
        raise DataError(
            f"{source}: line {lines[i]}: {symbol[i]} membership ends before it starts "
            f"(start_date {start_text[i]}, end_date {end_text[i]})"
        )
    keep = last_day >= start  # drops only the empty [d, d) intervals of an exclusive file
    return PointInTimeUniverse(universe_name, list(symbol[keep]), start[keep], last_day[keep])


# --------------------------------------------------------------------------- helpers


def _merged(
    labels: np.ndarray, start: IntArray, end: IntArray
) -> tuple[tuple[str, ...], IntArray, IntArray, IntArray]:
    """Sorted distinct symbols and the disjoint merged intervals (code, start, end)."""
    if labels.size:
        symbols, code = np.unique(labels.astype(str), return_inverse=True)
    else:
        symbols, code = np.array([], dtype=str), np.zeros(0, dtype=np.int64)
    code = code.astype(np.int64)
    order = np.lexsort((start, code))
    code, start, end = code[order], start[order], end[order]
    if code.size:
        # Running maximum of the end within each symbol: an interval starts a new run unless it
        # starts on or before the day after the running end of the earlier ones.
        new_symbol = np.r_[True, code[1:] != code[:-1]]
        group = np.cumsum(new_symbol) - 1
        running_end = _group_cummax(end, group)
        previous_end = np.r_[np.int64(0), running_end[:-1]]
        with np.errstate(over="ignore"):
            touches = start <= np.where(previous_end == _OPEN_END, _OPEN_END, previous_end + 1)
        new_run = new_symbol | ~touches
        run = np.cumsum(new_run) - 1
        starts = start[new_run]
        ends = np.full(starts.size, np.iinfo(np.int64).min)
        np.maximum.at(ends, run, end)
        code = code[new_run]
        start, end = starts, ends
    return tuple(str(s) for s in symbols), code, start, end


def _group_cummax(values: IntArray, group: IntArray) -> IntArray:
    """Cumulative maximum of ``values`` restarting at each new ``group`` (groups contiguous)."""
    out = values.copy()
    for g_start, g_end in _runs(group):
        out[g_start:g_end] = np.maximum.accumulate(values[g_start:g_end])
    return out


def _runs(group: IntArray) -> list[tuple[int, int]]:
    bounds = np.flatnonzero(np.r_[True, group[1:] != group[:-1], True])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _parse_days(
    text: np.ndarray, source: str, column: str, lines: list[int], *, allow_empty: bool
) -> IntArray:
    empty = text == ""
    if not allow_empty and empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise DataError(f"{source}: line {lines[i]}: {column} is empty (expected YYYY-MM-DD)")
    values = pd.Series(np.where(empty, None, text), dtype=object)
    parsed = pd.to_datetime(values, format="%Y-%m-%d", errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy() & ~empty)
    if bad.size:
        i = int(bad[0])
        raise DataError(f"{source}: line {lines[i]}: {column} {text[i]!r} is not a YYYY-MM-DD date")
    values = parsed.to_numpy().astype("datetime64[D]").astype(np.int64)
    return np.where(empty, 0, values)


def _day(value: Any, what: str) -> int:
    try:
        if isinstance(value, str):
            return (date.fromisoformat(value) - _EPOCH).days
        day = np.datetime64(value, "D")
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected a date or YYYY-MM-DD string, got {value!r}") from None
    if np.isnat(day):
        raise DataError(f"{what}: expected a date, got NaT")
    return int(day.astype(np.int64))


def _iso(day: int | np.integer) -> str:
    if int(day) == _OPEN_END:
        return "open"
    return (_EPOCH + timedelta(days=int(day))).isoformat()


__all__ = ["PointInTimeUniverse", "load_membership_csv"]
