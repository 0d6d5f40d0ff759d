"""The binary body of a scoring request: bars as one Apache Arrow IPC stream.

A ``POST /v1/signals`` body of 50 symbols × 140 daily bars is about 600 KB as JSON objects, and
decoding it costs more than computing its features (measured in ``benchmarks/serve_signals.py``).
The same request as an Arrow stream is about 60 KB and decodes without a Python object per value.
Content type :data:`ARROW_CONTENT_TYPE`.

Two layouts (one record batch or several; one table), told apart by the schema metadata:

*Bars* (each symbol its own dates):

- schema metadata ``as_of``: the ISO date the scores are for (required);
- ``symbol``: string (or dictionary of strings) — each symbol's rows contiguous;
- ``t``: ``date32`` session date; within a symbol oldest first;
- ``o``, ``h``, ``l``, ``c``, ``v``: numbers (read as float64): open, high, low, close, volume;
- ``market`` (optional): the market proxy's close on the row's date (null/NaN: unknown).

*Panel* (every symbol on the same dates; one row per date):

- schema metadata ``as_of`` and ``symbols``: a JSON array of the ``N`` symbol names;
- ``t``: ``date32``, oldest first;
- ``o``, ``h``, ``l``, ``c``, ``v``: ``fixed_size_list<float64>[N]``, element ``j`` being symbol ``j``'s
  value on the row's date — the row-major ``(T, N)`` matrix a panel of features is computed from,
  decoded without a copy;
- ``market`` (optional): float64, the market proxy's close on the row's date (null/NaN: unknown).

:func:`encode_request` writes them from the JSON-shaped request: ``{"as_of", "bars": {symbol:
{"t": [...], "o": [...], ...}}, "market": {"t": [...], "c": [...]}}`` (columns or row lists) as
bars, ``{"as_of", "panel": {"symbols": [...], "t": [...], "o": (T, N), ...}, "market": ...}`` as a
panel; :func:`decode_table` reads either back (:class:`DecodedTable`, :class:`DecodedPanel`) and
:func:`decode_request` into per-symbol arrays. A client holding its universe's bars as matrices
(the ``ml_signal`` strategy) sends a panel: less to encode, send and decode. Checking the values
(positive prices, increasing dates, history length) is the server's job (``serve/signals.py``);
this module only refuses what is not a well-formed table of one of the layouts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from amcp._typing import FloatArray
from amcp.errors import DataError

__all__ = [
    "ARROW_CONTENT_TYPE", "BAR_FIELDS", "DecodedPanel", "DecodedTable", "SymbolBars", "WireError", "decode_request",
    "decode_table", "encode_request",
]

ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"
BAR_FIELDS = ("o", "h", "l", "c", "v")
_DAY = np.dtype("datetime64[D]")


class WireError(DataError):
    """A binary request body is not an Arrow stream of the documented layout."""


@dataclass(frozen=True, eq=False)
class SymbolBars:
    """One symbol's rows of a decoded request: dates, the five bar columns, the market column (or None)."""

    symbol: str
    dates: np.ndarray
    columns: tuple[FloatArray, ...]
    market: FloatArray | None


def _column_arrays(bars: Any) -> tuple[np.ndarray, list[FloatArray]]:
    """Dates and o/h/l/c/v of a symbol given as columns (a mapping of lists) or rows (a list of objects)."""
    if isinstance(bars, (dict, Mapping)):
        dates = bars["t"]
        if not (isinstance(dates, np.ndarray) and dates.dtype == _DAY):  # else already what is sent: no copy
            dates = np.asarray(dates).astype(_DAY)
        return dates, [np.asarray(bars[key], dtype=np.float64) for key in BAR_FIELDS]
    rows = list(bars)
    dates = np.array([row["t"] for row in rows], dtype="datetime64[D]")
    return dates, [np.array([row[key] for row in rows], dtype=np.float64) for key in BAR_FIELDS]


def _market_columns(market: Any) -> tuple[np.ndarray, FloatArray]:
    """The market proxy's dates and closes, oldest first, from columns or a list of ``{"t", "c"}``."""
    if isinstance(market, Mapping):
        days = np.asarray(market["t"]).astype("datetime64[D]")
        close = np.asarray(market["c"], dtype=np.float64)
    else:
        days = np.array([row["t"] for row in market], dtype="datetime64[D]")
        close = np.array([row["c"] for row in market], dtype=np.float64)
    if days.shape != close.shape or days.ndim != 1:
        raise WireError(f"market: t and c must be 1-D and of one length, got {days.shape} and {close.shape}")
    order = np.argsort(days, kind="stable")
    return days[order], close[order]


def _aligned(market_days: np.ndarray, market_close: FloatArray, dates: np.ndarray) -> FloatArray:
    """The market close on each of ``dates`` (NaN where the market has none)."""
    if market_days.size == 0:
        return np.full(dates.size, np.nan)
    at = np.minimum(np.searchsorted(market_days, dates), market_days.size - 1)
    return np.where(market_days[at] == dates, market_close[at], np.nan)


def _stream(arrays: Mapping[str, pa.Array], metadata: Mapping[str, str]) -> bytes:
    table = pa.table(dict(arrays)).replace_schema_metadata(dict(metadata))
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _encode_panel(as_of: str, panel: Any, market: Any) -> bytes:
    """The panel layout of ``{"symbols", "t", "o", "h", "l", "c", "v"}`` (matrices ``(T, N)``)."""
    try:
        symbols = [str(symbol) for symbol in panel["symbols"]]
        dates = panel["t"]
        if not (isinstance(dates, np.ndarray) and dates.dtype == _DAY):
            dates = np.asarray(dates).astype(_DAY)
        matrices = [np.asarray(panel[key], dtype=np.float64) for key in BAR_FIELDS]
        market_columns = None if market is None else _market_columns(market)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"cannot encode the request: {type(exc).__name__}: {exc}") from None
    shape = (dates.size, len(symbols))
    if dates.ndim != 1 or not symbols or any(matrix.shape != shape for matrix in matrices):
        raise WireError(f"panel: t must be 1-D, symbols non-empty and {', '.join(BAR_FIELDS)} of shape "
                        f"(len(t), len(symbols)) = {shape}, got {[matrix.shape for matrix in matrices]}")
    arrays: dict[str, pa.Array] = {"t": pa.array(dates, type=pa.date32())}
    for key, matrix in zip(BAR_FIELDS, matrices):
        flat = pa.array(np.ascontiguousarray(matrix).reshape(-1), type=pa.float64())
        arrays[key] = pa.FixedSizeListArray.from_arrays(flat, len(symbols))
    if market_columns is not None:
        arrays["market"] = pa.array(_aligned(*market_columns, dates), type=pa.float64())
    return _stream(arrays, {"as_of": as_of, "symbols": json.dumps(symbols)})


def encode_request(body: Mapping[str, Any]) -> bytes:
    """The Arrow stream of a JSON-shaped request body (see the module docstring): the bars layout
    for a body with ``bars``, the panel layout for one with ``panel``.

    Raises:
        WireError: if the body lacks ``as_of`` or both or neither of ``bars`` and ``panel``, or a
            symbol's columns (or the panel's matrices) are malformed.
    """
    if ("bars" in body) == ("panel" in body):
        raise WireError("cannot encode the request: give either bars (per symbol) or panel (one calendar)")
    if "panel" in body:
        if "as_of" not in body:
            raise WireError("cannot encode the request: KeyError: 'as_of'")
        return _encode_panel(str(body["as_of"]), body["panel"], body.get("market"))
    try:
        as_of = str(body["as_of"])
        symbols, dates, columns = [], [], [[] for _ in BAR_FIELDS]
        for symbol, bars in body["bars"].items():
            day, values = _column_arrays(bars)
            size = day.size
            if day.ndim != 1 or any(value.shape != (size,) for value in values):
                raise WireError(f"bars.{symbol}: the columns t, {', '.join(BAR_FIELDS)} must be 1-D and of one "
                                f"length, got {[day.size, *(value.size for value in values)]}")
            symbols.append((str(symbol), size))
            dates.append(day)
            for column, value in zip(columns, values):
                column.append(value)
        market = body.get("market")
        market_columns = None if market is None else _market_columns(market)
    except (KeyError, TypeError, ValueError) as exc:
        raise WireError(f"cannot encode the request: {type(exc).__name__}: {exc}") from None
    all_dates = np.concatenate(dates) if dates else np.empty(0, dtype="datetime64[D]")
    names = [name for name, _ in symbols]
    counts = np.array([count for _, count in symbols], dtype=np.int64)
    arrays: dict[str, pa.Array] = {
        "symbol": pa.DictionaryArray.from_arrays(pa.array(np.repeat(np.arange(len(names), dtype=np.int32), counts)),
                                                 pa.array(names, type=pa.string())),
        "t": pa.array(all_dates, type=pa.date32()),
    }
    for key, parts in zip(BAR_FIELDS, columns):
        arrays[key] = pa.array(np.concatenate(parts) if parts else np.empty(0), type=pa.float64())
    if market_columns is not None:
        arrays["market"] = pa.array(_aligned(*market_columns, all_dates), type=pa.float64())
    return _stream(arrays, {"as_of": as_of})


def _floats(table: pa.Table, name: str) -> FloatArray:
    column = table.column(name)
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        raise WireError(f"column {name!r} must be numeric, got {column.type}")
    return column.to_numpy().astype(np.float64, copy=False)  # nulls become NaN


@dataclass(frozen=True, eq=False)
class DecodedTable:
    """A decoded request, flat: symbol ``k``'s rows are ``starts[k]:ends[k]`` of every column."""

    as_of: str
    symbols: tuple[str, ...]
    starts: np.ndarray
    ends: np.ndarray
    dates: np.ndarray
    columns: tuple[FloatArray, ...]
    market: FloatArray | None

    def symbol_bars(self) -> list[SymbolBars]:
        """Each symbol's rows (views of the columns), in first-seen order."""
        return [SymbolBars(name, self.dates[a:b], tuple(column[a:b] for column in self.columns),
                           None if self.market is None else self.market[a:b])
                for name, a, b in zip(self.symbols, self.starts.tolist(), self.ends.tolist())]


def _dates_of(table: pa.Table) -> np.ndarray:
    """Column ``t`` as ``datetime64[D]``, refused unless it is ``date32`` without nulls."""
    column = table.column("t")
    if not pa.types.is_date32(column.type):
        raise WireError(f"column 't' must be date32 (session dates), got {column.type}")
    if column.null_count:
        raise WireError("column 't' has nulls")
    return column.to_numpy().astype("datetime64[D]")


@dataclass(frozen=True, eq=False)
class DecodedPanel:
    """A decoded panel body: ``dates`` ``(T,)`` and each bar column ``(T, N)`` (column ``j`` is
    ``symbols[j]``), ``market`` ``(T,)`` or None. The columns are read-only views of the body."""

    as_of: str
    symbols: tuple[str, ...]
    dates: np.ndarray
    columns: tuple[FloatArray, ...]
    market: FloatArray | None

    def symbol_bars(self) -> list[SymbolBars]:
        """Each symbol's rows (views of the panel's columns), in the body's order."""
        return [SymbolBars(name, self.dates, tuple(column[:, j] for column in self.columns), self.market)
                for j, name in enumerate(self.symbols)]


def _decode_panel(table: pa.Table, as_of: str, symbols_json: bytes, *, max_symbols: int,
                  max_rows: int) -> DecodedPanel:
    try:
        symbols = json.loads(symbols_json)
    except ValueError as exc:
        raise WireError(f"the 'symbols' metadata is not JSON: {exc}") from None
    if not isinstance(symbols, list) or not symbols or not all(isinstance(x, str) for x in symbols):
        raise WireError("the 'symbols' metadata must be a non-empty JSON array of symbol names")
    if len(symbols) > max_symbols:
        raise WireError(f"{len(symbols)} symbols asked for, at most {max_symbols} per request")
    if len(set(symbols)) != len(symbols):
        values, counts = np.unique(np.array(symbols), return_counts=True)
        raise WireError(f"symbol {str(values[counts > 1][0])!r} appears twice in the panel's 'symbols'")
    missing = [name for name in ("t", *BAR_FIELDS) if name not in table.column_names]
    if missing:
        raise WireError(f"the Arrow panel lacks columns {missing}; it needs t, o, h, l, c, v (and optionally market)")
    if table.num_rows == 0:
        raise WireError("the Arrow panel has no rows")
    if table.num_rows * len(symbols) > max_rows:
        raise WireError(f"{table.num_rows} dates × {len(symbols)} symbols sent, at most {max_rows} bars are accepted")
    dates = _dates_of(table)
    width = len(symbols)
    columns = []
    for name in BAR_FIELDS:
        column = table.column(name)
        kind = column.type
        if not (pa.types.is_fixed_size_list(kind) and kind.list_size == width
                and (pa.types.is_floating(kind.value_type) or pa.types.is_integer(kind.value_type))):
            raise WireError(f"column {name!r} of a panel must be fixed_size_list<float64>[{width}] (one value per "
                            f"symbol), got {kind}")
        if column.null_count:
            raise WireError(f"column {name!r} has null rows")
        values = column.combine_chunks().flatten() if column.num_chunks != 1 else column.chunk(0).flatten()
        # flatten() honours a sliced array's offset; nulls inside a row become NaN (refused as prices later)
        columns.append(values.to_numpy(zero_copy_only=False).astype(np.float64, copy=False).reshape(-1, width))
    market = _floats(table, "market") if "market" in table.column_names else None
    return DecodedPanel(as_of, tuple(symbols), dates, tuple(columns), market)


def _symbol_runs(column: pa.ChunkedArray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Where each run of one symbol starts, and the runs' symbols (no Python object per row).

    A dictionary column of one chunk whose dictionary has no repeats (what :func:`encode_request`
    writes) is read through its integer indices; any other string column through its values.
    """
    if pa.types.is_dictionary(column.type) and column.num_chunks == 1:
        chunk = column.chunk(0)
        dictionary = chunk.dictionary.to_pylist()
        if len(set(dictionary)) == len(dictionary) and None not in dictionary:
            indices = chunk.indices.to_numpy()
            starts = np.flatnonzero(np.concatenate(([True], indices[1:] != indices[:-1])))
            return starts, tuple(dictionary[int(k)] for k in indices[starts])
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    values = column.combine_chunks()
    if values.null_count:  # a dictionary index pointing at a null entry
        raise WireError("column 'symbol' has nulls")
    changed = pc.not_equal(values[1:], values[:-1]).to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(np.concatenate(([True], changed)))
    return starts, tuple(str(values[int(i)]) for i in starts)


def decode_table(payload: bytes, *, max_symbols: int, max_rows: int) -> DecodedTable | DecodedPanel:
    """The columns of an Arrow request body: flat (bars layout) or ``(T, N)`` (panel layout; see
    :func:`decode_request`)."""
    try:
        table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        raise WireError(f"the body is not an Arrow IPC stream: {exc}") from None
    metadata = table.schema.metadata or {}
    if b"as_of" not in metadata:
        raise WireError("the Arrow schema has no 'as_of' metadata (the ISO date the scores are for)")
    if b"symbols" in metadata:
        return _decode_panel(table, metadata[b"as_of"].decode(errors="replace"), metadata[b"symbols"],
                             max_symbols=max_symbols, max_rows=max_rows)
    missing = [name for name in ("symbol", "t", *BAR_FIELDS) if name not in table.column_names]
    if missing:
        raise WireError(f"the Arrow table lacks columns {missing}; it needs symbol, t, o, h, l, c, v "
                        f"(and optionally market)")
    if table.num_rows == 0:
        raise WireError("the Arrow table has no rows")
    if table.num_rows > max_rows:
        raise WireError(f"{table.num_rows} rows sent, at most {max_rows} are accepted")
    symbol_column = table.column("symbol")
    if symbol_column.null_count:
        raise WireError("column 'symbol' has nulls")
    value_type = symbol_column.type.value_type if pa.types.is_dictionary(symbol_column.type) else symbol_column.type
    if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
        raise WireError(f"column 'symbol' must be strings, got {symbol_column.type}")
    dates = _dates_of(table)
    starts, names = _symbol_runs(symbol_column)
    if len(set(names)) != len(names):
        values, counts = np.unique(np.array(names), return_counts=True)
        repeated = str(values[counts > 1][0])
        raise WireError(f"the rows of symbol {repeated!r} are not contiguous: send each symbol's rows together")
    if len(names) > max_symbols:
        raise WireError(f"{len(names)} symbols asked for, at most {max_symbols} per request")
    columns = tuple(_floats(table, name) for name in BAR_FIELDS)
    market = _floats(table, "market") if "market" in table.column_names else None
    ends = np.append(starts[1:], table.num_rows)
    return DecodedTable(metadata[b"as_of"].decode(errors="replace"), names, starts, ends, dates, columns, market)


def decode_request(payload: bytes, *, max_symbols: int, max_rows: int) -> tuple[str, list[SymbolBars]]:
    """``(as_of, bars per symbol in first-seen order)`` of an Arrow request body.

    Args:
        payload: the body.
        max_symbols: refuse more symbols than this.
        max_rows: refuse more rows (bars of all symbols) than this in all (checked before the
            columns are converted).

    Raises:
        WireError: naming what is wrong (not an Arrow stream, a missing or mistyped column,
            no ``as_of``, a symbol whose rows are not contiguous, a panel's symbol named twice,
            too many symbols or rows).
    """
    decoded = decode_table(payload, max_symbols=max_symbols, max_rows=max_rows)
    return decoded.as_of, decoded.symbol_bars()
