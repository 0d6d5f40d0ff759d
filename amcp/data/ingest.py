"""Ingestion into the market-data store: quality on the way in, idempotent writes, resume.

Plain classes and functions, no Ray: ``pipelines/ingest.py`` fans them out over symbols as Ray
tasks. Every unit of work reports a :class:`SymbolIngest` instead of raising, so one bad symbol
never stops the others, and the job's summary names each failure and its reason.

Resume: an Alpaca ingest splits each symbol's date range into windows (``chunk_days``) and
records each finished window in a marker file under ``{store}/market-data/_ingest/{job_key}/``;
a rerun of the same job (same source, kind and quality policy) skips finished windows. Writes
are idempotent on each kind's key, so redoing a window that was half written when the job died
never duplicates rows. A window that reaches today is never marked finished: the day is not over.

Quarantine: rows set aside by the ``quarantine`` policy are written, unchanged and with their
``defect``, to ``{store}/market-data/_quarantine/{kind}/symbol=…/{job_key}.parquet`` (a rerun
overwrites its own file, so quarantine is idempotent too).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import quote

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from amcp.data.schemas import BAR_SCHEMA, kind_of
from amcp.data.store import MarketDataStore
from amcp.data.table_quality import QualityAction, check_bars
from amcp.errors import AmcpError, StoreError

INGEST_FOLDER = "_ingest"
QUARANTINE_FOLDER = "_quarantine"


@dataclass(frozen=True)
class SymbolIngest:
    """What ingesting one symbol did (or why it failed).

    Attributes:
        symbol: the symbol (the underlying for option chains; ``"*"`` for a whole-request unit).
        kind: the dataset kind written.
        rows_in: rows received from the source.
        rows_written: rows stored under a new key.
        rows_replaced: rows that overwrote a stored row with the same key (a re-ingest).
        rows_quarantined: rows set aside by the ``quarantine`` policy.
        rows_dropped: rows the ``repair`` policy dropped (duplicates, unusable prices).
        quality: defect counts, only the kinds found (see :mod:`amcp.data.table_quality`).
        windows: request windows attempted; ``windows_skipped``: finished by an earlier run.
        error: why the symbol failed (its earlier windows stay stored), or None.
    """

    symbol: str
    kind: str
    rows_in: int = 0
    rows_written: int = 0
    rows_replaced: int = 0
    rows_quarantined: int = 0
    rows_dropped: int = 0
    quality: Mapping[str, int] = field(default_factory=dict)
    windows: int = 0
    windows_skipped: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"quality": dict(self.quality)}


def job_key(payload: Mapping[str, Any]) -> str:
    """A short, stable id of an ingest job: a hash of what it fetches and how it checks it."""
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def date_windows(start: date, end: date, chunk_days: int) -> list[tuple[date, date]]:
    """Consecutive inclusive windows of at most ``chunk_days`` days covering ``start``..``end``."""
    if chunk_days < 1:
        raise AmcpError(f"chunk_days must be at least 1 (got {chunk_days})")
    windows = []
    lo = start
    while lo <= end:
        hi = min(end, lo + timedelta(days=chunk_days - 1))
        windows.append((lo, hi))
        lo = hi + timedelta(days=1)
    return windows


class _Area:
    """A folder of the store's filesystem for bookkeeping files (markers, quarantine)."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None, *parts: str) -> None:
        options = {"use_listings_cache": False, **dict(storage_options or {})}
        try:
            self._fs, root = fsspec.core.url_to_fs(url, **options)
        except (ValueError, TypeError, ImportError) as exc:
            raise StoreError(f"cannot open store {url!r}: {exc}") from exc
        self._root = "/".join([root.rstrip("/"), "market-data", *parts])

    def path(self, *parts: str) -> str:
        return "/".join([self._root, *parts])


class IngestCheckpoint(_Area):
    """Finished-window markers of one ingest job, one small JSON file per symbol.

    Only the task that ingests a symbol writes that symbol's file, so there is no contention.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None, key: str) -> None:
        super().__init__(url, storage_options, INGEST_FOLDER, key)

    def _file(self, symbol: str) -> str:
        return self.path(f"{quote(symbol, safe='')}.json")

    def done(self, symbol: str) -> set[str]:
        """The windows of ``symbol`` an earlier run finished (empty if none or unreadable)."""
        path = self._file(symbol)
        try:
            with self._fs.open(path, "rb") as handle:
                data = json.loads(handle.read())
        except FileNotFoundError:
            return set()
        except (OSError, ValueError) as exc:
            raise StoreError(f"ingest checkpoint {path} is unreadable ({exc}); delete it to start that symbol over") from exc
        windows = data.get("done") if isinstance(data, dict) else None
        if not isinstance(windows, list) or not all(isinstance(w, str) for w in windows):
            raise StoreError(f"ingest checkpoint {path} is malformed (no 'done' list); delete it to start over")
        return set(windows)

    def mark(self, symbol: str, window: str) -> None:
        """Record ``window`` of ``symbol`` as finished (atomic replace of the symbol's file)."""
        done = self.done(symbol) | {window}
        path = self._file(symbol)
        self._fs.makedirs(self._root, exist_ok=True)
        tmp = f"{path}.tmp"
        with self._fs.open(tmp, "wb") as handle:
            handle.write(json.dumps({"done": sorted(done)}).encode())
        self._fs.mv(tmp, path)

    def clear(self) -> None:
        """Forget every finished window (a ``--restart``)."""
        if self._fs.exists(self._root):
            self._fs.rm(self._root, recursive=True)


class Quarantine(_Area):
    """Where the ``quarantine`` policy puts defective rows, unchanged, per kind and symbol."""

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None, key: str) -> None:
        super().__init__(url, storage_options, QUARANTINE_FOLDER)
        self.key = key

    def write(self, kind: str, rows: pa.Table, part: str = "") -> int:
        """Write ``rows`` (with their ``defect`` column) grouped by symbol; return the rows written."""
        if rows.num_rows == 0:
            return 0
        folder = kind_of(kind).path
        column = kind_of(kind).symbol_column
        for symbol in pc.unique(rows.column(column)).to_pylist():
            subset = rows.filter(pc.equal(rows.column(column), symbol))
            directory = self.path(folder, f"{column}={quote(symbol, safe='')}")
            self._fs.makedirs(directory, exist_ok=True)
            name = f"{self.key}{'-' + part if part else ''}.parquet"
            with self._fs.open(f"{directory}/{name}", "wb") as handle:
                pq.write_table(subset, handle, compression="zstd")
        return rows.num_rows

    def read(self, kind: str) -> pa.Table:
        """Every quarantined row of ``kind`` (for inspection and tests)."""
        folder = self.path(kind_of(kind).path)
        if not self._fs.exists(folder):
            return pa.table({})
        files = sorted(self._fs.glob(f"{folder}/*/*.parquet"))
        tables = []
        for path in files:
            with self._fs.open(path, "rb") as handle:
                tables.append(pq.read_table(handle))
        return pa.concat_tables(tables) if tables else pa.table({})


@dataclass(frozen=True)
class QualityPolicy:
    """How bars are checked on the way in (see :mod:`amcp.data.table_quality`)."""

    policy: QualityAction = "repair"
    max_abs_return: float = 1.0


def store_bars(
    store: MarketDataStore,
    kind: str,
    table: pa.Table,
    quality: QualityPolicy,
    quarantine: Quarantine | None,
    *,
    daily: bool,
    part: str = "",
) -> dict[str, SymbolIngest]:
    """Check ``table`` (bars of any number of symbols), write the clean rows, quarantine the rest.

    With the ``strict`` policy a defective symbol fails alone (its rows are not written, the
    others are). Returns one :class:`SymbolIngest` per symbol in ``table``.
    """
    symbols = sorted(set(pc.unique(table.column("symbol")).to_pylist())) if table.num_rows else []
    if quality.policy == "strict" and len(symbols) > 1:
        results: dict[str, SymbolIngest] = {}
        for symbol in symbols:
            subset = table.filter(pc.equal(table.column("symbol"), symbol))
            results.update(store_bars(store, kind, subset, quality, quarantine, daily=daily, part=part))
        return results
    try:
        clean, held, report = check_bars(table, policy=quality.policy, max_abs_return=quality.max_abs_return, daily=daily)
    except AmcpError as exc:
        return {s: SymbolIngest(s, kind, rows_in=_count(table, s), error=str(exc)) for s in symbols}
    by_symbol_new = _write_per_symbol(store, kind, clean)
    if quarantine is not None and held.num_rows:
        quarantine.write(kind, held, part)
    results = {}
    for symbol in symbols:
        sq = report.per_symbol[symbol]
        counts = {k: int(v) for k, v in sq.counts.items() if v}
        outcome = by_symbol_new.get(symbol, (0, 0))
        if isinstance(outcome, str):
            results[symbol] = SymbolIngest(symbol, kind, rows_in=sq.rows_in, quality=counts, error=outcome)
            continue
        new, replaced = outcome
        results[symbol] = SymbolIngest(
            symbol,
            kind,
            rows_in=sq.rows_in,
            rows_written=new,
            rows_replaced=replaced,
            rows_quarantined=sq.rows_in - sq.rows_out if quality.policy == "quarantine" else 0,
            rows_dropped=sq.rows_in - sq.rows_out if quality.policy == "repair" else 0,
            quality=counts,
        )
    return results


def store_rows(store: MarketDataStore, kind: str, table: pa.Table, symbol: str) -> SymbolIngest | None:
    """Store rows of a non-bar kind (e.g. trades) as fetched; None when there are none."""
    if table.num_rows == 0:
        return None
    written = store.write(kind, table)
    return SymbolIngest(symbol, kind, rows_in=table.num_rows, rows_written=written.rows_written,
                        rows_replaced=written.rows_replaced)


def _count(table: pa.Table, symbol: str) -> int:
    return int(pc.sum(pc.equal(table.column("symbol"), symbol)).as_py() or 0)


def _write_per_symbol(store: MarketDataStore, kind: str, clean: pa.Table) -> dict[str, tuple[int, int] | str]:
    """Write ``clean`` (sorted by symbol) one symbol at a time: (new, replaced) rows per symbol,
    or why that symbol's write failed (the others are still written)."""
    out: dict[str, tuple[int, int] | str] = {}
    if clean.num_rows == 0:
        return out
    order = {c["values"]: c["counts"] for c in pc.value_counts(clean.column("symbol")).to_pylist()}
    offset = 0
    for symbol in pc.unique(clean.column("symbol")).to_pylist():  # first-seen order = sorted order
        n = order[symbol]
        try:
            written = store.write(kind, clean.slice(offset, n))
            out[symbol] = (written.rows_written, written.rows_replaced)
        except AmcpError as exc:
            out[symbol] = f"write failed: {exc}"
        offset += n
    return out


def ingest_alpaca_symbol(
    store: MarketDataStore,
    fetch: Callable[[str, date, date], pa.Table],
    checkpoint: IngestCheckpoint,
    symbol: str,
    windows: Sequence[tuple[date, date]],
    kind: str,
    quality: QualityPolicy,
    quarantine: Quarantine | None,
    *,
    daily: bool,
    today: date,
    on_window: Callable[[], None] | None = None,
) -> SymbolIngest:
    """Fetch, check and store ``symbol`` window by window, skipping windows already finished.

    ``fetch(symbol, start, end)`` returns rows of ``kind``'s schema; bars pass the quality
    checks, other kinds (trades) are stored as fetched. The first failing window stops the
    symbol (its earlier windows stay stored and marked) and is named in ``error``.
    """
    done = checkpoint.done(symbol)
    total = SymbolIngest(symbol, kind)
    counts: dict[str, int] = {}
    for lo, hi in windows:
        name = f"{lo.isoformat()}_{hi.isoformat()}"
        if name in done:
            total = _add(total, windows_skipped=1)
            if on_window:
                on_window()
            continue
        try:
            table = fetch(symbol, lo, hi)
            if kind_of(kind).schema.names == BAR_SCHEMA.names:
                result = store_bars(store, kind, table, quality, quarantine, daily=daily, part=name).get(symbol)
            else:
                result = store_rows(store, kind, table, symbol)
        except AmcpError as exc:
            return _add(total, windows=1, error=f"{lo}..{hi}: {exc}", quality=counts)
        if result is not None:
            if result.error:
                return _add(total, windows=1, rows_in=result.rows_in, error=f"{lo}..{hi}: {result.error}", quality=counts)
            for k, v in result.quality.items():
                counts[k] = counts.get(k, 0) + v
            total = _add(
                total,
                rows_in=result.rows_in,
                rows_written=result.rows_written,
                rows_replaced=result.rows_replaced,
                rows_quarantined=result.rows_quarantined,
                rows_dropped=result.rows_dropped,
            )
        total = _add(total, windows=1)
        if hi < today:
            checkpoint.mark(symbol, name)
        if on_window:
            on_window()
    return _add(total, quality=counts)


def _add(base: SymbolIngest, *, error: str | None = None, quality: Mapping[str, int] | None = None, **deltas: int) -> SymbolIngest:
    values = asdict(base)
    for key, delta in deltas.items():
        values[key] += delta
    if error is not None:
        values["error"] = error
    if quality is not None:
        values["quality"] = dict(quality)
    return SymbolIngest(**values)


def summarize(results: Sequence[SymbolIngest]) -> dict[str, Any]:
    """Totals over symbols (all kinds, and ``by_kind``), and the failures with their reasons."""
    quality: dict[str, int] = {}
    for r in results:
        for k, v in r.quality.items():
            quality[k] = quality.get(k, 0) + v
    by_kind: dict[str, dict[str, int]] = {}
    for r in results:
        entry = by_kind.setdefault(r.kind, {"symbols": 0, "rows_in": 0, "rows_written": 0, "rows_replaced": 0})
        entry["symbols"] += 1
        entry["rows_in"] += r.rows_in
        entry["rows_written"] += r.rows_written
        entry["rows_replaced"] += r.rows_replaced
    return {
        "symbols": len({r.symbol for r in results if r.symbol != "*"}),
        "rows_in": sum(r.rows_in for r in results),
        "rows_written": sum(r.rows_written for r in results),
        "rows_replaced": sum(r.rows_replaced for r in results),
        "rows_quarantined": sum(r.rows_quarantined for r in results),
        "rows_dropped": sum(r.rows_dropped for r in results),
        "windows": sum(r.windows for r in results),
        "windows_skipped": sum(r.windows_skipped for r in results),
        "quality": dict(sorted(quality.items())),
        "by_kind": dict(sorted(by_kind.items())),
        "failures": [{"symbol": r.symbol, "kind": r.kind, "reason": r.error} for r in results if r.error],
    }
