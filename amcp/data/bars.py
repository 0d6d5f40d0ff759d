"""Daily bars from Parquet: the loader (an I/O edge) and :class:`BarPanel`, the aligned panel.

A panel is T sessions × N symbols of OHLCV as float64 arrays, NaN where a symbol has no bar;
``panel.batch(i)`` is the :class:`~amcp.domain.data.BarBatch` a trading cycle consumes.

File format: a Parquet file with the columns ``symbol`` (string), ``date`` (date32, a
``YYYY-MM-DD`` string, or a timestamp whose wall-clock date is used), ``open``, ``high``,
``low``, ``close`` (numeric) and ``volume`` (numeric); other columns are ignored.

Each session's timestamp is its nominal close, 16:00 America/New_York, in UTC nanoseconds
(20:00 or 21:00 UTC depending on daylight saving time). Early closes are not modelled.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from amcp._typing import FloatArray, IntArray
from amcp.config import DataConfig
from amcp.data.calendar import EXCHANGE_TIMEZONE
from amcp.data.quality import BarRows, QualityReport, check_quality, day_to_iso
from amcp.domain.data import BarBatch
from amcp.errors import DataError

REQUIRED_COLUMNS: tuple[str, ...] = ("symbol", "date", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
SESSION_CLOSE = time(16, 0)

_NS_PER_DAY = 86_400 * 10**9
_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True, eq=False)
class BarPanel:
    """Daily bars of N symbols over T sessions, aligned on one time axis.

    Attributes:
        symbols: the N symbols, the column order of every array.
        ts_ns: shape (T,), int64 UTC nanoseconds of each session's close (16:00 New York),
            strictly increasing.
        open, high, low, close, volume: shape (T, N) float64, NaN where a symbol has no bar.
            Panels built by :func:`load_daily_bars` hold read-only arrays.
    """

    symbols: tuple[str, ...]
    ts_ns: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray

    def __post_init__(self) -> None:
        if len(set(self.symbols)) != len(self.symbols):
            dupes = sorted({s for s in self.symbols if self.symbols.count(s) > 1})
            raise DataError(f"BarPanel symbols must be unique, repeated: {dupes}")
        if not isinstance(self.ts_ns, np.ndarray) or self.ts_ns.ndim != 1 or self.ts_ns.dtype != np.int64:
            raise DataError(
                f"BarPanel.ts_ns must be a 1-D int64 array, got {getattr(self.ts_ns, 'dtype', self.ts_ns)}"
            )
        if self.ts_ns.size > 1 and not (np.diff(self.ts_ns) > 0).all():
            first = int(np.flatnonzero(np.diff(self.ts_ns) <= 0)[0])
            raise DataError(f"BarPanel.ts_ns must be strictly increasing; it is not at index {first + 1}")
        shape = (self.ts_ns.size, len(self.symbols))
        for name in _FIELDS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype != np.float64:
                raise DataError(
                    f"BarPanel.{name} must be a float64 array of shape {shape}, "
                    f"got {getattr(arr, 'dtype', type(arr).__name__)} {getattr(arr, 'shape', '')}"
                )

    def __len__(self) -> int:
        return int(self.ts_ns.size)

    @property
    def dates(self) -> np.ndarray:
        """Session dates, shape (T,), ``datetime64[D]`` (the UTC date of a 16:00 New York close)."""
        return (self.ts_ns // _NS_PER_DAY).astype("datetime64[D]")

    def index_of(self, symbol: str) -> int:
        """Return the column of ``symbol``.

        Raises:
            DataError: if the panel has no such symbol.
        """
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise DataError(
                f"symbol {symbol!r} is not in this panel of {len(self.symbols)} symbols"
            ) from None

    def batch(self, i: int) -> BarBatch:
        """Return session ``i``'s bars (negative ``i`` counts from the end).

        Raises:
            IndexError: if ``i`` is out of range.
        """
        t = len(self)
        if not -t <= i < t:
            raise IndexError(f"bar index {i} out of range for a panel of {t} sessions")
        return self._row(i, int(self.ts_ns[i]))

    def batches(self, start: int = 0, stop: int | None = None) -> Iterator[BarBatch]:
        """Yield the batches of sessions ``start`` to ``stop`` (exclusive), in time order."""
        rows = slice(*slice(start, stop).indices(len(self))[:2])
        symbols, make = self.symbols, BarBatch.from_checked_arrays
        # The panel checked every array's shape, so its rows need no second check.
        for ts_ns, open_, high, low, close, volume in zip(
            self.ts_ns[rows].tolist(),
            self.open[rows],
            self.high[rows],
            self.low[rows],
            self.close[rows],
            self.volume[rows],
        ):
            yield make(ts_ns, symbols, open_, high, low, close, volume)

    def _row(self, i: int, ts_ns: int) -> BarBatch:
        # The panel checked every array's shape, so its rows need no second check.
        return BarBatch.from_checked_arrays(
            ts_ns, self.symbols, self.open[i], self.high[i], self.low[i], self.close[i], self.volume[i]
        )

    def slice(self, start: int | None, stop: int | None) -> BarPanel:
        """Return sessions ``start`` to ``stop`` (exclusive, Python slice rules) as a panel of views."""
        rows = slice(start, stop)
        return BarPanel(
            self.symbols,
            self.ts_ns[rows],
            self.open[rows],
            self.high[rows],
            self.low[rows],
            self.close[rows],
            self.volume[rows],
        )

    def select(self, symbols: Sequence[str]) -> BarPanel:
        """Return a panel of ``symbols`` only, in that order.

        Sessions where none of ``symbols`` has a bar are dropped, so the result equals loading
        those symbols alone.

        Raises:
            DataError: if a symbol is not in the panel, or ``symbols`` is empty or repeats one.
        """
        wanted = tuple(symbols)
        if not wanted:
            raise DataError("select() needs at least one symbol")
        missing = [s for s in wanted if s not in self.symbols]
        if missing:
            raise DataError(f"symbols not in this panel: {missing}; it has {_preview(self.symbols)}")
        columns = np.array([self.symbols.index(s) for s in wanted], dtype=np.int64)
        close = self.close[:, columns]
        rows = np.flatnonzero(~np.isnan(close).all(axis=1))
        return BarPanel(
            wanted,
            self.ts_ns[rows],
            self.open[np.ix_(rows, columns)],
            self.high[np.ix_(rows, columns)],
            self.low[np.ix_(rows, columns)],
            close[rows],
            self.volume[np.ix_(rows, columns)],
        )


def load_daily_bars(config: DataConfig) -> tuple[BarPanel, QualityReport]:
    """Read daily bars, check and repair them, and align them into a panel.

    Rows are filtered to ``config.symbols`` (all symbols if empty) and to dates from
    ``config.start`` to ``config.end`` inclusive, then checked by
    :func:`amcp.data.quality.check_quality` with ``config.quality_policy`` and
    ``config.max_abs_return``. Panel columns follow ``config.symbols`` (sorted symbols if empty).

    Returns:
        The panel and the quality report.

    Raises:
        DataError: if the file is missing, not Parquet or corrupt, lacks a required column, has
            a non-numeric price or volume column, names unknown symbols, has no rows after the
            filters, or (policy ``strict``) has defects.
    """
    wanted = tuple(dict.fromkeys(config.symbols))
    if config.store is not None:
        source = f"{config.store.url} (equities/daily)"
        table = _read_store(config, wanted)
    else:
        source = str(config.path)
        table = _read_table(source, wanted, config.start, config.end)
    rows = _to_rows(table, source, wanted, config.start, config.end, symbols_known=config.store is not None)
    clean, report = check_quality(
        rows, policy=config.quality_policy, max_abs_return=config.max_abs_return, source=source
    )
    if len(clean) == 0:
        raise DataError(f"{source}: no rows left after the quality checks; {report.summary_line()}")
    return _panel(clean), report


def read_bar_frame(
    path: str | Path,
    *,
    symbols: Sequence[str] = (),
    start: date | None = None,
    end: date | None = None,
) -> pd.DataFrame:
    """Read a bar file as a frame, validating its schema; no quality checks.

    Returns:
        The rows in file order with columns ``symbol`` (str), ``date`` (``datetime64``, the
        session date at midnight), ``open``, ``high``, ``low``, ``close`` and ``volume``
        (float64), filtered to ``symbols`` (all if empty) and ``start``..``end`` inclusive.

    Raises:
        DataError: as :func:`load_daily_bars`, except for quality defects.
    """
    source = str(path)
    wanted = tuple(dict.fromkeys(symbols))
    rows = _to_rows(_read_table(source, wanted, start, end), source, wanted, start, end)
    frame = pd.DataFrame(
        {
            "symbol": np.asarray(rows.symbols, dtype=object)[rows.symbol_index],
            "date": rows.day.astype("datetime64[D]").astype("datetime64[s]"),
            **{name: getattr(rows, name) for name in _FIELDS},
        }
    )
    frame["symbol"] = frame["symbol"].astype("str")
    return frame


# --------------------------------------------------------------------------- reading


def _read_store(config: DataConfig, symbols: tuple[str, ...]) -> pa.Table:
    """Daily bars from the market-data store, adjusted per ``config.adjustment``, as a
    (symbol, date, OHLCV) table like a bar file's."""
    from amcp.data.calendar import day_of_ns
    from amcp.data.catalog import MarketDataCatalog
    from amcp.data.store import MarketDataStore

    if config.store is None:
        raise DataError("data.store is not set")
    store = MarketDataStore(config.store.url, storage_options=config.store.storage_options())
    source = f"{config.store.url} (equities/daily)"
    available = store.symbols("equities/daily")
    if not available:
        raise DataError(f"{source}: the store holds no daily bars; ingest some first (make ingest)")
    _raise_unknown_symbols(source, symbols, available, "the store")
    bars = MarketDataCatalog(store).bars(symbols or None, config.start, config.end, adjustment=config.adjustment,
                                         columns=("symbol", "ts", *_FIELDS))
    days = day_of_ns(bars.column("ts").cast(pa.int64()).to_numpy())
    return pa.table(
        {
            "symbol": bars.column("symbol"),
            "date": pa.array(days, pa.date32()),
            **{name: bars.column(name) for name in _FIELDS},
        }
    )


def _read_table(source: str, symbols: tuple[str, ...], start: date | None, end: date | None) -> pa.Table:
    """Read the required columns, pushing the symbol (and date32 range) filters into Parquet."""
    if "://" not in source:
        file = Path(source)
        if not file.exists():
            raise DataError(f"{source}: bar file not found")
        if not file.is_file():
            raise DataError(f"{source}: is not a file (a single Parquet file of daily bars is expected)")
        if file.stat().st_size == 0:
            raise DataError(f"{source}: the file is empty (0 bytes)")
    try:
        parquet = pq.ParquetFile(source)
        schema = parquet.schema_arrow
        total_rows = parquet.metadata.num_rows
    except FileNotFoundError:
        raise DataError(f"{source}: bar file not found") from None
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"{source}: not a Parquet file, or it is corrupt or truncated ({_short(exc)})"
        ) from None
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise DataError(
            f"{source}: missing required column{'s' if len(missing) > 1 else ''} {missing}; "
            f"the file has {schema.names}"
        )
    if total_rows == 0:  # before the type checks: an empty file's column types are often "null"
        raise DataError(f"{source}: the file has no rows")
    _check_types(source, schema)

    date_type = schema.field("date").type
    condition = None
    if symbols:
        condition = pads.field("symbol").isin(list(symbols))
    if pa.types.is_date32(date_type):
        if start is not None:
            condition = _and(condition, pads.field("date") >= pa.scalar(start, pa.date32()))
        if end is not None:
            condition = _and(condition, pads.field("date") <= pa.scalar(end, pa.date32()))
    try:
        return pq.read_table(
            source,
            columns=list(REQUIRED_COLUMNS),
            filters=condition,
            read_dictionary=["symbol"],
            page_checksum_verification=True,
        )
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataError(
            f"{source}: could not read the Parquet data, it may be corrupt ({_short(exc)})"
        ) from None


def _check_types(source: str, schema: pa.Schema) -> None:
    symbol_type = schema.field("symbol").type
    if pa.types.is_dictionary(symbol_type):
        symbol_type = symbol_type.value_type
    if not (pa.types.is_string(symbol_type) or pa.types.is_large_string(symbol_type)):
        raise DataError(f"{source}: column 'symbol' must hold strings, it holds {symbol_type}")
    date_type = schema.field("date").type
    if not (
        pa.types.is_date(date_type)
        or pa.types.is_timestamp(date_type)
        or pa.types.is_string(date_type)
        or pa.types.is_large_string(date_type)
    ):
        raise DataError(
            f"{source}: column 'date' must be a date, timestamp or YYYY-MM-DD string, it is {date_type}"
        )
    bad = {c: str(schema.field(c).type) for c in _FIELDS if not _is_numeric(schema.field(c).type)}
    if bad:
        raise DataError(f"{source}: non-numeric price/volume column{'s' if len(bad) > 1 else ''}: {bad}")


def _is_numeric(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind))


def _to_rows(
    table: pa.Table,
    source: str,
    symbols: tuple[str, ...],
    start: date | None,
    end: date | None,
    *,
    symbols_known: bool = False,
) -> BarRows:
    """Convert a validated table to ``BarRows`` (file order, panel column order), applying the filters.

    ``symbols_known``: the caller already checked every wanted symbol exists (a store read), so a
    symbol without rows is reported as outside the window without reading ``source`` again.
    """
    names, codes = _symbol_codes(table.column("symbol"), source)
    day = _days(table.column("date"), source)

    keep = np.ones(day.size, dtype=bool)
    if start is not None:
        keep &= day >= (start - date(1970, 1, 1)).days
    if end is not None:
        keep &= day <= (end - date(1970, 1, 1)).days
    if symbols:
        wanted_code = np.zeros(len(names), dtype=bool)
        wanted_code[[names.index(s) for s in symbols if s in names]] = True
        keep &= wanted_code[codes]
    present = set(np.asarray(names, dtype=object)[np.unique(codes[keep])]) if keep.any() else set()
    if symbols:
        missing = [s for s in symbols if s not in present]
        if missing and symbols_known:
            raise DataError(f"{source}: no rows for {missing}{_window(start, end)}")
        if missing:
            _raise_missing_symbols(source, missing, start, end)
    if not keep.any():
        raise DataError(f"{source}: no rows{_window(start, end)}")

    order = list(symbols) if symbols else sorted(present)
    column_of = np.full(len(names), -1, dtype=np.int64)
    column_of[[names.index(s) for s in order]] = np.arange(len(order))
    arrays = {name: _floats(table.column(name), keep) for name in _FIELDS}
    return BarRows(tuple(order), column_of[codes[keep]], day[keep], **arrays)


def _symbol_codes(column: pa.ChunkedArray, source: str) -> tuple[list[str], IntArray]:
    """Return the distinct symbols and each row's index into them."""
    if column.null_count:
        raise DataError(f"{source}: {column.null_count:,} rows have no symbol")
    if not pa.types.is_dictionary(column.type):
        column = column.dictionary_encode()
    column = column.unify_dictionaries()
    if column.num_chunks == 0:
        return [], np.zeros(0, dtype=np.int64)
    names = [str(s) for s in column.chunk(0).dictionary.to_pylist()]
    codes = np.concatenate([chunk.indices.to_numpy(zero_copy_only=False) for chunk in column.chunks])
    return names, codes.astype(np.int64)


def _days(column: pa.ChunkedArray, source: str) -> IntArray:
    """Return the session date of each row as days since 1970-01-01."""
    if column.null_count:
        raise DataError(f"{source}: {column.null_count:,} rows have no date")
    kind = column.type
    try:
        if pa.types.is_date32(kind):
            return column.cast(pa.int32()).to_numpy().astype(np.int64)
        if pa.types.is_date64(kind):
            return column.cast(pa.int64()).to_numpy() // 86_400_000
        if pa.types.is_timestamp(kind):
            if kind.tz is not None:
                column = pc.local_timestamp(column)  # wall-clock time in the column's zone
            per_day = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": _NS_PER_DAY}[kind.unit]
            return column.cast(pa.timestamp(kind.unit)).cast(pa.int64()).to_numpy() // per_day
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(f"{source}: cannot read column 'date' as dates ({_short(exc)})") from None
    # Strings: parse each distinct value once.
    encoded = column.combine_chunks().dictionary_encode()
    texts = encoded.dictionary.to_pylist()
    try:
        parsed = pd.to_datetime(pd.Series(texts, dtype=object), format="ISO8601")
    except (ValueError, TypeError):
        bad = next(t for t in texts if _not_iso(t))
        raise DataError(
            f"{source}: column 'date' has a value that is not a YYYY-MM-DD date: {bad!r}"
        ) from None
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    unique_days = parsed.to_numpy().astype("datetime64[D]").astype(np.int64)
    return unique_days[encoded.indices.to_numpy(zero_copy_only=False)]


def _not_iso(text: str) -> bool:
    try:
        pd.to_datetime(text, format="ISO8601")
    except (ValueError, TypeError):
        return True
    return False


def _floats(column: pa.ChunkedArray, keep: np.ndarray) -> FloatArray:
    values = pc.fill_null(column.cast(pa.float64()), float("nan")).to_numpy()
    return values if keep.all() else values[keep]


def _raise_missing_symbols(source: str, missing: list[str], start: date | None, end: date | None) -> None:
    table = pq.read_table(source, columns=["symbol"])
    available = sorted(str(s) for s in pc.unique(table.column("symbol").cast(pa.string())).to_pylist() if s)
    _raise_unknown_symbols(source, missing, available, "the file")
    raise DataError(
        f"{source}: no rows for symbol{'s' if len(missing) > 1 else ''} {missing}{_window(start, end)}"
    )


def _raise_unknown_symbols(source: str, wanted: Sequence[str], available: Sequence[str], holder: str) -> None:
    """Raise a :class:`DataError` naming the symbols of ``wanted`` not in ``available``, with
    close matches; return quietly when every one is known."""
    known = set(available)
    unknown = [s for s in wanted if s not in known]
    if not unknown:
        return
    hints = []
    for s in unknown:
        close = difflib.get_close_matches(s.upper(), list(available), n=1) or [a for a in available if a == s.upper()]
        if close:
            hints.append(f"{close[0]!r} for {s!r}")
    hint = f"; did you mean {', '.join(hints)}?" if hints else ""
    raise DataError(
        f"{source}: unknown symbol{'s' if len(unknown) > 1 else ''} {unknown}; "
        f"{holder} has {len(available):,} symbols, e.g. {_preview(list(available))}{hint}"
    )


# --------------------------------------------------------------------------- panel


def _panel(rows: BarRows) -> BarPanel:
    """Align sorted, de-duplicated rows on the union of their sessions."""
    day_min = int(rows.day.min())
    seen = np.zeros(int(rows.day.max()) - day_min + 1, dtype=bool)
    seen[rows.day - day_min] = True
    session_days = np.flatnonzero(seen) + day_min
    position = np.cumsum(seen) - 1  # day offset -> session index
    t, n = session_days.size, len(rows.symbols)
    flat = position[rows.day - day_min] * n + rows.symbol_index
    arrays: dict[str, FloatArray] = {}
    for name in _FIELDS:
        cells = np.full(t * n, np.nan)
        cells[flat] = getattr(rows, name)
        grid = cells.reshape(t, n)
        grid.flags.writeable = False
        arrays[name] = grid
    ts_ns = session_close_ns(session_days)
    ts_ns.flags.writeable = False
    return BarPanel(rows.symbols, ts_ns, **arrays)


def session_close_ns(days: IntArray) -> IntArray:
    """Return the UTC nanoseconds of 16:00 New York on each date (days since 1970-01-01).

    Raises:
        DataError: if the time-zone database has no America/New_York (install ``tzdata``).
    """
    try:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        zone = ZoneInfo(EXCHANGE_TIMEZONE)
    except (ImportError, ZoneInfoNotFoundError, OSError):
        raise DataError(f"no time-zone data for {EXCHANGE_TIMEZONE}: pip install tzdata") from None
    epoch = date(1970, 1, 1)
    days = np.asarray(days, dtype=np.int64)
    # One zoneinfo lookup per day: a panel has at most ~20k distinct sessions.
    offsets_s = np.empty(days.size, dtype=np.int64)
    for k, d in enumerate(days.tolist()):
        local = datetime.combine(epoch + timedelta(days=d), SESSION_CLOSE, tzinfo=zone)
        offset = local.utcoffset()
        offsets_s[k] = int(offset.total_seconds()) if offset is not None else 0
    local_s = days * 86_400 + (SESSION_CLOSE.hour * 3600 + SESSION_CLOSE.minute * 60)
    return (local_s - offsets_s) * 10**9


# --------------------------------------------------------------------------- helpers


def _and(left: Any, right: Any) -> Any:
    return right if left is None else left & right


def _window(start: date | None, end: date | None) -> str:
    if start is None and end is None:
        return ""
    return f" between {start or 'the first date'} and {end or 'the last date'}"


def _preview(names: Sequence[str], count: int = 8) -> str:
    shown = ", ".join(list(names)[:count])
    return shown + (", ..." if len(names) > count else "")


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "EXCHANGE_TIMEZONE",
    "REQUIRED_COLUMNS",
    "SESSION_CLOSE",
    "BarPanel",
    "day_to_iso",
    "load_daily_bars",
    "read_bar_frame",
    "session_close_ns",
]
