"""Read users' bar files (CSV or Parquet, local or any fsspec URL) into store rows.

:func:`read_daily_bar_file` and :func:`read_intraday_bar_file` return
:data:`~amcp.data.schemas.BAR_SCHEMA` tables, ready for the quality checks of
:mod:`amcp.data.table_quality` and for the store. They validate and convert; they never drop,
reorder or repair rows (rows of other symbols are dropped only when ``symbol=`` asks for one).

Columns are found by name, case-insensitively, after ``column_map`` renames (``{file column:
amcp column}``, as ``DataFrame.rename``):

=================  ==================================================================
amcp column        accepted names
=================  ==================================================================
symbol             ``symbol``, ``ticker`` (optional when ``symbol=`` is passed)
date / timestamp   daily: ``date``, ``ts``, ``timestamp``, ``datetime``, ``time``;
                   intraday: ``ts``, ``timestamp``, ``datetime``, ``time``, ``date``
open ... volume    ``open``, ``high``, ``low``, ``close``, ``volume`` (required)
vwap, trade_count  optional; null when absent
=================  ==================================================================

Other columns (``asset_type``, ``Adj Close``...) are ignored. The file format comes from the
extension: ``.csv`` (optionally ``.gz``, ``.bz2``, ``.zst``, ``.xz``), ``.parquet``, ``.pq``.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from amcp._typing import IntArray
from amcp.data.calendar import EXCHANGE_TIMEZONE, midnight_ns
from amcp.data.schemas import BAR_SCHEMA, TS
from amcp.errors import DataError

CSV_SUFFIXES: tuple[str, ...] = (".csv",)
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq", ".parq")
COMPRESSION_SUFFIXES: tuple[str, ...] = (".gz", ".bz2", ".zst", ".xz")

REQUIRED_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
OPTIONAL_FIELDS: tuple[str, ...] = ("vwap", "trade_count")
SYMBOL_NAMES: tuple[str, ...] = ("symbol", "ticker")
DAILY_TIME_NAMES: tuple[str, ...] = ("date", "ts", "timestamp", "datetime", "time")
INTRADAY_TIME_NAMES: tuple[str, ...] = ("ts", "timestamp", "datetime", "time", "date")
_OFFSET_PATTERN = r"(?:Z|[+-]\d\d:?\d\d)$"


def read_daily_bar_file(
    path: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    symbol: str | None = None,
    column_map: Mapping[str, str] | None = None,
) -> pa.Table:
    """Read a file of daily bars into :data:`BAR_SCHEMA` rows, in file order.

    Each row's session date comes from a date column (``date32``, ``YYYY-MM-DD`` strings, or a
    timestamp, whose America/New_York date is taken when it has a time zone and whose own date
    when not); ``ts`` is 00:00 New York of that date in UTC
    (:func:`amcp.data.calendar.midnight_ns`). Prices are in the file's currency; volume in shares.

    Args:
        path: local path or fsspec URL (``s3://...``), ending in a CSV or Parquet extension.
        storage_options: fsspec options for remote URLs (credentials, endpoint).
        symbol: the symbol of a single-symbol file without a symbol column; for a file with
            one, keep only this symbol's rows.
        column_map: renames ``{file column: amcp column}`` applied before matching.

    Returns:
        A BAR_SCHEMA table (``vwap`` and ``trade_count`` null where the file has none).

    Raises:
        DataError: if the file is missing, unreadable or of an unknown type; a column is
            missing (the message lists the file's columns and close matches); a symbol is empty;
            a date does not parse (first bad value and its row); a price, volume or trade count
            is not numeric (first bad value and its row); or ``symbol=`` matches no row.
    """
    return _read_bars(path, storage_options, symbol, column_map, daily=True)


def read_intraday_bar_file(
    path: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    symbol: str | None = None,
    column_map: Mapping[str, str] | None = None,
) -> pa.Table:
    """Read a file of intraday bars into :data:`BAR_SCHEMA` rows, in file order.

    ``ts`` is the file's timestamp (the start of each bar's interval), read as UTC: a timestamp
    with a time zone (or an ISO string with an offset) is converted to UTC, a naive one is taken
    to be UTC already.

    Args:
        path, storage_options, symbol, column_map: as :func:`read_daily_bar_file`.

    Returns:
        A BAR_SCHEMA table.

    Raises:
        DataError: as :func:`read_daily_bar_file`, and if the time column holds dates without
            times.
    """
    return _read_bars(path, storage_options, symbol, column_map, daily=False)


# --------------------------------------------------------------------------- reading


def _read_bars(
    path: str,
    storage_options: Mapping[str, Any] | None,
    symbol: str | None,
    column_map: Mapping[str, str] | None,
    *,
    daily: bool,
) -> pa.Table:
    source = str(path)
    is_csv = _file_format(source) == "csv"

    def resolve(columns: Sequence[str]) -> dict[str, str]:
        return _resolve_columns(source, columns, column_map, daily)

    if is_csv:
        table = _read_csv(source, storage_options)
        names = resolve(table.column_names)
    else:
        table, names = _read_parquet(source, storage_options, resolve)
    rows = _Rows(source, is_csv)

    if "symbol" in names:
        symbols = _symbols(table.column(names["symbol"]), rows)
        if symbol is not None:
            keep = pc.equal(symbols, symbol)
            if not pc.any(keep).as_py():
                present = pc.unique(symbols).to_pylist()
                hint = difflib.get_close_matches(symbol, present, n=1)
                raise DataError(
                    f"{source}: no rows for symbol {symbol!r}; the file has {len(present):,} symbols, "
                    f"e.g. {present[:8]}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                )
            rows.keep(np.asarray(keep.to_numpy(zero_copy_only=False)))
            table = table.filter(keep)
            symbols = symbols.filter(keep)
    else:
        if not symbol or not symbol.strip():
            raise DataError(
                f"{source}: the file has no symbol column ({list(SYMBOL_NAMES)}) and no symbol= was "
                f"given; pass symbol= for a single-symbol file (columns: {table.column_names})"
            )
        symbols = pa.chunked_array([pa.array([symbol] * table.num_rows, pa.string())], pa.string())

    time_column = table.column(names["time"])
    to_ts = _daily_ts if daily else _intraday_ts
    ts = to_ts(time_column, rows, names["time"])
    arrays: dict[str, Any] = {"symbol": symbols, "ts": ts}
    for field in (*REQUIRED_FIELDS, "vwap"):
        if field in names:
            arrays[field] = _numbers(table.column(names[field]), rows, names[field], pa.float64())
        else:
            arrays[field] = pa.nulls(table.num_rows, pa.float64())
    if "trade_count" in names:
        column = names["trade_count"]
        arrays["trade_count"] = _numbers(table.column(column), rows, column, pa.int64())
    else:
        arrays["trade_count"] = pa.nulls(table.num_rows, pa.int64())
    return pa.Table.from_arrays([_chunked(arrays[f.name], f.type) for f in BAR_SCHEMA], schema=BAR_SCHEMA)


def _file_format(source: str) -> str:
    name = source.split("?", 1)[0].lower()
    for compression in COMPRESSION_SUFFIXES:
        if name.endswith(compression):
            name = name[: -len(compression)]
            break
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    raise DataError(
        f"{source}: unknown file type; expected a name ending in {list(CSV_SUFFIXES + PARQUET_SUFFIXES)} "
        f"(CSV optionally compressed: {list(COMPRESSION_SUFFIXES)})"
    )


def _read_csv(source: str, storage_options: Mapping[str, Any] | None) -> pa.Table:
    """Read every column as strings, so that conversion errors can name the value and row."""
    try:
        with fsspec.open(source, mode="rb", compression="infer", **dict(storage_options or {})) as handle:
            data = handle.read()
    except FileNotFoundError:
        raise DataError(f"{source}: file not found") from None
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"{source}: cannot read the file ({_short(exc)})") from None
    first_line = data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace").rstrip("\r")
    if not first_line.strip():
        raise DataError(f"{source}: the file is empty or has no header line")
    header = next(csv.reader(io.StringIO(first_line)))
    try:
        return pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(use_threads=True),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(f"{source}: not a readable CSV file ({_short(exc)})") from None


def _read_parquet(
    source: str,
    storage_options: Mapping[str, Any] | None,
    resolve: Callable[[Sequence[str]], dict[str, str]],
) -> tuple[pa.Table, dict[str, str]]:
    """Read only the columns ``resolve`` picks from the file's schema."""
    try:
        fs, inner = fsspec.core.url_to_fs(source, **dict(storage_options or {}))
        with fs.open(inner, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            names = resolve(parquet.schema_arrow.names)
            return parquet.read(columns=list(dict.fromkeys(names.values()))), names
    except FileNotFoundError:
        raise DataError(f"{source}: file not found") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(f"{source}: not a Parquet file, or it is corrupt ({_short(exc)})") from None


def _resolve_columns(
    source: str,
    columns: Sequence[str],
    column_map: Mapping[str, str] | None,
    daily: bool,
) -> dict[str, str]:
    """Map amcp names (``symbol``, ``time``, ``open``...) to the file's column names."""
    renamed: dict[str, str] = {}  # lower-cased amcp-side name -> file column
    mapped = dict(column_map or {})
    unknown = [c for c in mapped if c not in columns]
    if unknown:
        raise DataError(
            f"{source}: column_map names column{'s' if len(unknown) > 1 else ''} {unknown} not in the file; "
            f"it has {list(columns)}"
        )
    for column in columns:
        target = mapped.get(column, column).strip().lower()
        renamed.setdefault(target, column)

    found: dict[str, str] = {}
    for alias in SYMBOL_NAMES:
        if alias in renamed:
            found["symbol"] = renamed[alias]
            break
    for alias in DAILY_TIME_NAMES if daily else INTRADAY_TIME_NAMES:
        if alias in renamed:
            found["time"] = renamed[alias]
            break
    for field in REQUIRED_FIELDS + OPTIONAL_FIELDS:
        if field in renamed:
            found[field] = renamed[field]

    missing = [f for f in REQUIRED_FIELDS if f not in found]
    if "time" not in found:
        missing.insert(0, "date" if daily else "ts")
    if missing:
        lowered = {c.strip().lower(): c for c in columns}
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, list(lowered), n=1, cutoff=0.6)
            if close:
                hints.append(f"{lowered[close[0]]!r} for {name!r}")
        hint = f"; did you mean {', '.join(hints)}? (map it with column_map)" if hints else ""
        raise DataError(
            f"{source}: missing column{'s' if len(missing) > 1 else ''} {missing}; "
            f"the file has {list(columns)}{hint}"
        )
    return found


class _Rows:
    """Where a row of the current table sits in the file, for error messages."""

    def __init__(self, source: str, is_csv: bool) -> None:
        self.source = source
        self.is_csv = is_csv
        self._index: IntArray | None = None

    def keep(self, mask: np.ndarray) -> None:
        index = np.arange(mask.size) if self._index is None else self._index
        self._index = index[mask]

    def describe(self, i: int) -> str:
        row = int(i if self._index is None else self._index[i]) + 1
        return f"data row {row:,}" + (f" (line {row + 1:,})" if self.is_csv else "")


def _symbols(column: pa.ChunkedArray, rows: _Rows) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.string())
    column = pc.utf8_trim_whitespace(column.cast(pa.string()))
    empty = pc.or_kleene(pc.is_null(column), pc.equal(column, "")).to_numpy(zero_copy_only=False)
    if empty.any():
        raise DataError(f"{rows.source}: {rows.describe(int(np.flatnonzero(empty)[0]))} has no symbol")
    return column


def _daily_ts(column: pa.ChunkedArray, rows: _Rows, name: str) -> pa.Array:
    """00:00 New York of each row's session date, as UTC nanoseconds."""
    _no_nulls(column, rows, name)
    kind = column.type
    if pa.types.is_date(kind):
        days = column.cast(pa.date32()).cast(pa.int32()).to_numpy().astype("datetime64[D]")
    elif pa.types.is_timestamp(kind):
        if kind.tz is not None:
            column = pc.local_timestamp(column.cast(pa.timestamp(kind.unit, tz=EXCHANGE_TIMEZONE)))
        ns = column.cast(pa.timestamp("ns")).cast(pa.int64()).to_numpy()
        days = ns.view("datetime64[ns]").astype("datetime64[D]")
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        days = _parse_strings(column, rows, name, utc=False)
    else:
        raise DataError(f"{rows.source}: column {name!r} must hold dates (YYYY-MM-DD), it holds {kind}")
    # Convert each distinct day once (hash-encoded: faster than sorting millions of rows).
    encoded = pa.array(days.astype(np.int64)).dictionary_encode()
    unique_days = encoded.dictionary.to_numpy().astype("datetime64[D]")
    inverse = encoded.indices.to_numpy(zero_copy_only=False)
    return pa.array(midnight_ns(unique_days)[inverse], pa.int64()).cast(TS)


def _intraday_ts(column: pa.ChunkedArray, rows: _Rows, name: str) -> pa.Array:
    _no_nulls(column, rows, name)
    kind = column.type
    if pa.types.is_timestamp(kind):
        ns = column.cast(pa.timestamp("ns", tz=kind.tz)).cast(pa.int64()).to_numpy()
        return pa.array(ns, pa.int64()).cast(TS)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        stamps = _parse_strings(column, rows, name, utc=True)
        return pa.array(stamps.astype("datetime64[ns]").astype(np.int64), pa.int64()).cast(TS)
    raise DataError(
        f"{rows.source}: column {name!r} must hold timestamps (e.g. 2013-10-07T13:30:00Z) for "
        f"intraday bars, it holds {kind}"
    )


def _parse_strings(column: pa.ChunkedArray, rows: _Rows, name: str, *, utc: bool) -> np.ndarray:
    """Parse ISO dates/timestamps, each distinct value once.

    Returns ``datetime64[D]`` days (``utc=False``: the wall-clock date, or the New York date of a
    value with an offset) or ``datetime64[ns]`` UTC instants (``utc=True``).
    """
    encoded = column.combine_chunks().dictionary_encode()
    texts = pd.Series(encoded.dictionary.to_pylist(), dtype=object)
    parsed = pd.to_datetime(texts, format="ISO8601", errors="coerce", utc=True)
    bad_text = parsed.isna().to_numpy()
    if bad_text.any():
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        first = int(np.flatnonzero(bad_text[indices])[0])
        expected = "an ISO timestamp" if utc else "a YYYY-MM-DD date"
        raise DataError(
            f"{rows.source}: column {name!r} has a value that is not {expected}: "
            f"{texts[int(indices[first])]!r} at {rows.describe(first)}"
        )
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    if utc:
        values = parsed.dt.tz_localize(None).to_numpy().astype("datetime64[ns]")
        return values[indices]
    # A value with an offset is an instant: take its New York date; a naive value its own date
    # (parsed as if UTC, so dropping the zone gives back its wall clock).
    has_offset = texts.str.contains(_OFFSET_PATTERN, regex=True).to_numpy(dtype=bool)
    local = np.where(
        has_offset,
        parsed.dt.tz_convert(EXCHANGE_TIMEZONE).dt.tz_localize(None).to_numpy(),
        parsed.dt.tz_localize(None).to_numpy(),
    )
    return local.astype("datetime64[D]")[indices]


def _numbers(column: pa.ChunkedArray, rows: _Rows, name: str, target: pa.DataType) -> pa.ChunkedArray:
    """Cast a numeric or text column to ``target`` (float64 or int64); nulls stay null."""
    kind = column.type
    is_text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if pa.types.is_null(kind):
        return column.cast(target)
    if not (is_text or pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)):
        raise DataError(f"{rows.source}: column {name!r} must be numeric, it holds {kind}")
    try:
        values = pc.utf8_trim_whitespace(column).cast(pa.float64()) if is_text else column
        if pa.types.is_integer(target) and pa.types.is_floating(values.type):
            # A NaN count is a missing count; a fractional one is an error (the cast is safe).
            values = pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
        return values.cast(target)
    except (pa.ArrowException, ValueError):
        pass
    found = pd.Series(column.to_pylist(), dtype=object)
    parsed = pd.to_numeric(found.astype(str).str.strip().where(found.notna()), errors="coerce")
    bad = parsed.isna() & found.notna() & (found.astype(str).str.strip().str.lower() != "nan")
    if pa.types.is_integer(target):
        bad |= parsed.notna() & (parsed != np.floor(parsed))
    expected = "an integer" if pa.types.is_integer(target) else "a number"
    if not bad.any():
        raise DataError(f"{rows.source}: column {name!r} cannot be read as {expected} ({kind})")
    first = int(np.flatnonzero(bad.to_numpy())[0])
    raise DataError(
        f"{rows.source}: column {name!r} has a value that is not {expected}: "
        f"{found.iloc[first]!r} at {rows.describe(first)}"
    )


def _no_nulls(column: pa.ChunkedArray, rows: _Rows, name: str) -> None:
    if column.null_count:
        first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{rows.source}: column {name!r} is empty at {rows.describe(first)}")


def _chunked(values: Any, kind: pa.DataType) -> pa.ChunkedArray:
    if isinstance(values, pa.ChunkedArray):
        return values.cast(kind)
    return pa.chunked_array([values], kind)


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = ["read_daily_bar_file", "read_intraday_bar_file"]
