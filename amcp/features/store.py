"""The feature store: one feature set as partitioned Parquet, on a local disk or an object store.

Layout under ``root`` (a folder or any fsspec URL, e.g. ``s3://bucket/features/v1``)::

    {root}/_features.json                      # the manifest, written last
    {root}/symbol=AAPL/part-0.parquet          # partition_by="symbol" (the default)
    {root}/year=2013/part-0.parquet            # partition_by="year"

Every file holds the columns ``date`` (``timestamp[ns]``, the session date at midnight),
``symbol`` (string) and one float64 column per feature, sorted by (date, symbol), zstd-compressed
with column statistics. Symbols are percent-encoded in folder names (``BRK/B`` → ``BRK%2FB``).

The manifest (:class:`FeatureManifest`) names the feature columns, a SHA-256 over the formulas
(docstrings) of the documented ones — the registry's features and any label docs given — the code
version (git commit) that computed them, the row count, date range and every partition's file,
rows and date range. Reads open only the partitions that can hold requested rows (by symbol or
year, and by each partition's date range), then push the date range down to row groups.

:func:`write_features` replaces the whole feature set at ``root``: partitions are written first
(each file atomically), then the manifest, then files of a previous set that the new one does
not have are deleted. A reader that starts during a write may see the previous manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from amcp.data.store import open_filesystem
from amcp.errors import DataError, StoreError
from amcp.features.registry import FeatureRegistry

__all__ = ["MANIFEST_NAME", "FeatureManifest", "PartitionInfo", "read_features", "read_manifest", "write_features"]

MANIFEST_NAME = "_features.json"
FORMAT_VERSION = 1
FILE_NAME = "part-0.parquet"
ROW_GROUP_ROWS = 65_536
"""Rows per row group: a symbol's 20 years of daily rows (~5,000) is one group; a year partition
of 500 symbols (~126,000 rows) is two, so date filters can skip one."""
WORKERS = 8
"""Files read or written at once."""
KEY_COLUMNS = ("date", "symbol")
RESERVED = frozenset({"date", "symbol", "year"})

PartitionBy = Literal["symbol", "year"]
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass(frozen=True)
class PartitionInfo:
    """One partition's file (relative to the root), its rows and its date range (ISO dates)."""

    key: str
    path: str
    rows: int
    start: str
    end: str


@dataclass(frozen=True)
class FeatureManifest:
    """What ``_features.json`` records about a stored feature set.

    Attributes:
        features: the value columns, in stored order.
        docs_sha256: SHA-256 of the JSON ``{name: formula}`` of the documented columns.
        undocumented: value columns with no formula (neither registered nor given as a label doc).
        code_version: the git commit of the code that wrote the set, or None if unknown.
        rows, symbols: row and distinct symbol counts.
        start, end: first and last session date (ISO).
        partition_by: ``"symbol"`` or ``"year"``.
        partitions: every partition, sorted by key.
        written_at: UTC time of the write (ISO 8601).
        metadata: whatever the writer added (e.g. the job's label horizons).
    """

    features: tuple[str, ...]
    docs_sha256: str
    undocumented: tuple[str, ...]
    code_version: str | None
    rows: int
    symbols: int
    start: str
    end: str
    partition_by: PartitionBy
    partitions: tuple[PartitionInfo, ...]
    written_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        """The manifest as JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str, source: str = MANIFEST_NAME) -> FeatureManifest:
        """Parse a manifest.

        Raises:
            StoreError: if it is not a manifest of a known format version.
        """
        try:
            raw = json.loads(text)
            if raw.get("format_version") != FORMAT_VERSION:
                raise StoreError(f"{source}: format_version {raw.get('format_version')!r} is not {FORMAT_VERSION}")
            raw["features"] = tuple(raw["features"])
            raw["undocumented"] = tuple(raw["undocumented"])
            raw["partitions"] = tuple(PartitionInfo(**p) for p in raw["partitions"])
            return cls(**raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StoreError(f"{source}: not a feature-store manifest: {exc}") from exc


def write_features(
    root: str,
    frame: pd.DataFrame,
    *,
    registry: FeatureRegistry | None = None,
    label_docs: Mapping[str, str] | None = None,
    partition_by: PartitionBy = "symbol",
    storage_options: Mapping[str, Any] | None = None,
    code_version: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> FeatureManifest:
    """Store ``frame`` as the feature set at ``root``, replacing any set stored there.

    Args:
        root: a folder or fsspec URL (``s3://bucket/prefix``).
        frame: columns ``date`` (datetime64 without time zone, the session date at midnight),
            ``symbol`` (non-empty strings) and one float64 column per feature (or label);
            one row per (date, symbol).
        registry: where the formulas of the feature columns come from (default:
            :func:`amcp.features.default_registry`).
        label_docs: formulas of columns that are not registered features (labels).
        partition_by: ``"symbol"`` (reads of a few symbols open a few files) or ``"year"``
            (reads of a few years of many symbols open a few files).
        storage_options: fsspec options, e.g. for MinIO ``{"endpoint_url": ..., "key": ...,
            "secret": ...}``.
        code_version: recorded in the manifest; default: the git commit of this checkout, if any.
        metadata: JSON-serialisable extras recorded in the manifest.

    Returns:
        The manifest written.

    Raises:
        DataError: if ``frame`` breaks the layout above (the message names the columns or rows).
        StoreError: if the root cannot be opened or a file cannot be written.
    """
    if partition_by not in ("symbol", "year"):
        raise DataError(f"write_features: partition_by must be 'symbol' or 'year', got {partition_by!r}")
    features = _validate(frame)
    table = _to_table(frame, features)
    if registry is None:
        from amcp.features import default_registry

        registry = default_registry()
    docs = _docs(features, registry, label_docs or {})
    fs, base = _filesystem(root, storage_options)
    keys, parts = _split(table, partition_by)
    infos = [
        PartitionInfo(key, f"{_partition_dir(partition_by, key)}/{FILE_NAME}", part.num_rows,
                      *_date_range(part))
        for key, part in zip(keys, parts, strict=True)
    ]
    previous = _try_read_manifest(fs, base)
    _map(lambda item: _write_file(fs, f"{base}/{item[0].path}", item[1]), list(zip(infos, parts, strict=True)))
    start, end = _date_range(table)
    manifest = FeatureManifest(
        features=features,
        docs_sha256=hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest(),
        undocumented=tuple(name for name in features if name not in docs),
        code_version=code_version if code_version is not None else git_commit(),
        rows=table.num_rows,
        symbols=int(frame["symbol"].nunique()),
        start=start,
        end=end,
        partition_by=partition_by,
        partitions=tuple(infos),
        written_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        metadata=dict(metadata or {}),
    )
    _put(fs, f"{base}/{MANIFEST_NAME}", manifest.to_json().encode())
    if previous is not None:
        kept = {info.path for info in infos}
        stale = [f"{base}/{info.path}" for info in previous.partitions if info.path not in kept]
        _map(lambda path: _remove(fs, path), stale)
    return manifest


def read_manifest(root: str, *, storage_options: Mapping[str, Any] | None = None) -> FeatureManifest:
    """The manifest of the feature set at ``root``.

    Raises:
        DataError: if there is no feature set at ``root``.
        StoreError: if the manifest cannot be read or parsed.
    """
    fs, base = _filesystem(root, storage_options)
    manifest = _try_read_manifest(fs, base)
    if manifest is None:
        raise DataError(f"no feature set at {root!r}: {MANIFEST_NAME} is missing")
    return manifest


def read_features(
    root: str,
    *,
    symbols: Sequence[str] | None = None,
    start: Any = None,
    end: Any = None,
    columns: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Rows of the feature set at ``root``, sorted by (date, symbol).

    Args:
        root: as :func:`write_features`.
        symbols: symbols to read (``None``: all); unknown symbols contribute no rows.
        start, end: first and last session date to include (inclusive): a ``date``,
            ``"YYYY-MM-DD"``, naive ``datetime``/``pd.Timestamp`` or ``datetime64``; ``None`` for
            no bound.
        columns: value columns to return, in this order (``None``: all, in stored order);
            ``date`` and ``symbol`` always come first.
        storage_options: as :func:`write_features`.

    Returns:
        A frame with ``date`` (datetime64[ns]), ``symbol`` (str) and float64 value columns.

    Raises:
        DataError: no feature set at ``root``, an unknown column, a bound that is not a date,
            ``symbols`` given as one string.
        StoreError: a partition's file is missing or unreadable.
    """
    fs, base = _filesystem(root, storage_options)
    manifest = _try_read_manifest(fs, base)
    if manifest is None:
        raise DataError(f"no feature set at {root!r}: {MANIFEST_NAME} is missing")
    if isinstance(symbols, str):
        raise DataError(f"read_features: symbols must be a sequence of strings, not one string ({symbols!r})")
    chosen = manifest.features if columns is None else tuple(dict.fromkeys(columns))
    unknown = [name for name in chosen if name not in manifest.features]
    if unknown:
        raise DataError(f"read_features: unknown columns {unknown}; the set at {root!r} has "
                        f"{len(manifest.features)}: {', '.join(manifest.features[:8])}…")
    lo, hi = _bound(start, "start"), _bound(end, "end")
    wanted = None if symbols is None else sorted(set(symbols))
    parts = [p for p in manifest.partitions
             if (lo is None or np.datetime64(p.end) >= lo) and (hi is None or np.datetime64(p.start) <= hi)
             and (wanted is None or manifest.partition_by != "symbol" or p.key in wanted)]
    filters: list[tuple[str, str, Any]] = []
    if lo is not None:
        filters.append(("date", ">=", pd.Timestamp(lo)))
    if hi is not None:
        filters.append(("date", "<=", pd.Timestamp(hi)))
    if wanted is not None and manifest.partition_by == "year":
        filters.append(("symbol", "in", wanted))
    names = [*KEY_COLUMNS, *chosen]
    tables = _read_files(fs, base, parts, names, filters or None)
    schema = pa.schema([pa.field("date", pa.timestamp("ns")), pa.field("symbol", pa.string()),
                        *(pa.field(name, pa.float64()) for name in names[2:])])
    table = pa.concat_tables([t.select(names) for t in tables]).cast(schema) if tables else schema.empty_table()
    out = table.to_pandas()
    return out.sort_values(list(KEY_COLUMNS), kind="stable", ignore_index=True) if len(out) else out


def git_commit() -> str | None:
    """The git commit of the checkout this package runs from, or None (no git, not a checkout)."""
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                              capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", commit) else None


# --------------------------------------------------------------------------- validation


def _validate(frame: pd.DataFrame) -> tuple[str, ...]:
    """The feature columns of a valid ``frame``; raise naming what is wrong otherwise."""
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"write_features: expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [name for name in KEY_COLUMNS if name not in frame.columns]
    if missing:
        raise DataError(f"write_features: frame lacks the key columns {missing}")
    if frame.columns.duplicated().any():
        doubled = sorted(set(frame.columns[frame.columns.duplicated()]))
        raise DataError(f"write_features: repeated columns {doubled}")
    if len(frame) == 0:
        raise DataError("write_features: the frame has no rows")
    features = tuple(str(name) for name in frame.columns if name not in KEY_COLUMNS)
    if not features:
        raise DataError("write_features: the frame has no feature columns besides date and symbol")
    bad_names = [name for name in features if not _NAME.match(name) or name in RESERVED]
    if bad_names:
        raise DataError(f"write_features: column names must match {_NAME.pattern} and not be {sorted(RESERVED)}; "
                        f"got {bad_names}")
    not_float = {name: str(frame[name].dtype) for name in features if frame[name].dtype != np.float64}
    if not_float:
        raise DataError(f"write_features: feature columns must be float64, got {not_float}")
    dates = frame["date"]
    if not pd.api.types.is_datetime64_dtype(dates.dtype) or isinstance(dates.dtype, pd.DatetimeTZDtype):
        raise DataError(f"write_features: column date must be datetime64 without a time zone, got {dates.dtype}")
    if dates.isna().any():
        raise DataError(f"write_features: column date has {int(dates.isna().sum())} missing values")
    off_midnight = dates != dates.dt.normalize()
    if off_midnight.any():
        raise DataError(f"write_features: column date must hold session dates at midnight; "
                        f"{int(off_midnight.sum())} do not, e.g. {dates[off_midnight].iloc[0]}")
    symbol_ok = frame["symbol"].map(lambda s: isinstance(s, str) and s != "")
    if not symbol_ok.all():
        raise DataError(f"write_features: column symbol must hold non-empty strings; "
                        f"{int((~symbol_ok).sum())} rows do not, e.g. {frame['symbol'][~symbol_ok].iloc[0]!r}")
    repeated = frame.duplicated(list(KEY_COLUMNS))
    if repeated.any():
        first = frame.loc[repeated, list(KEY_COLUMNS)].iloc[0]
        raise DataError(f"write_features: {int(repeated.sum())} rows repeat a (date, symbol), "
                        f"e.g. ({first['date'].date()}, {first['symbol']})")
    return features


def _to_table(frame: pd.DataFrame, features: tuple[str, ...]) -> pa.Table:
    arrays = [pa.array(frame["date"].to_numpy().astype("datetime64[ns]"), pa.timestamp("ns")),
              pa.array(frame["symbol"].to_numpy(dtype=object), pa.string()),
              *(pa.array(frame[name].to_numpy(), pa.float64()) for name in features)]
    table = pa.Table.from_arrays(arrays, names=[*KEY_COLUMNS, *features])
    order = np.lexsort((table.column("symbol").to_numpy(zero_copy_only=False), frame["date"].to_numpy()))
    return table.take(pa.array(order))


def _docs(features: tuple[str, ...], registry: FeatureRegistry, label_docs: Mapping[str, str]) -> dict[str, str]:
    registered = {row["name"]: str(row["doc"]) for row in registry.describe()}
    docs = {name: registered[name] for name in features if name in registered}
    docs.update({name: doc for name, doc in label_docs.items() if name in features and name not in docs})
    return docs


# --------------------------------------------------------------------------- files


def _filesystem(root: str, storage_options: Mapping[str, Any] | None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and root path (without protocol) of ``root``, as every store opens it."""
    fs, path = open_filesystem(root, storage_options, owner="feature store")
    return fs, path.rstrip("/")


def _split(table: pa.Table, partition_by: PartitionBy) -> tuple[list[str], list[pa.Table]]:
    """Partition keys (sorted) and each partition's rows (still sorted by date, symbol)."""
    if partition_by == "symbol":
        labels = table.column("symbol").to_numpy(zero_copy_only=False).astype(str)
    else:
        days = table.column("date").to_numpy().astype("datetime64[Y]")
        labels = (days.astype(np.int64) + 1970).astype(str)
    keys, inverse = np.unique(labels, return_inverse=True)
    parts = [table.take(pa.array(np.flatnonzero(inverse == k))) for k in range(len(keys))]
    return [str(k) for k in keys], parts


def _partition_dir(partition_by: PartitionBy, key: str) -> str:
    return f"{partition_by}={quote(key, safe='')}"


def _date_range(table: pa.Table) -> tuple[str, str]:
    days = table.column("date").to_numpy().astype("datetime64[D]")
    return str(days.min()), str(days.max())


def _write_file(fs: fsspec.AbstractFileSystem, path: str, table: pa.Table) -> None:
    options: dict[str, Any] = {
        "compression": "zstd", "write_statistics": True, "row_group_size": ROW_GROUP_ROWS,
        "use_dictionary": ["symbol"],
        "sorting_columns": [pq.SortingColumn(0), pq.SortingColumn(1)],
    }
    sink = pa.BufferOutputStream()
    try:
        pq.write_table(table, sink, **options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise StoreError(f"feature store: cannot encode {path!r}: {exc}") from exc
    _put(fs, path, sink.getvalue().to_pybytes())


def _put(fs: fsspec.AbstractFileSystem, path: str, blob: bytes) -> None:
    """Write ``blob`` to ``path`` atomically: temporary file and rename on a disk, one PUT elsewhere."""
    folder = path.rsplit("/", 1)[0]
    try:
        if isinstance(fs, LocalFileSystem):
            fs.makedirs(folder, exist_ok=True)
            temporary = f"{folder}/.{path.rsplit('/', 1)[1]}.{uuid.uuid4().hex}.tmp"
            try:
                with open(temporary, "wb") as handle:
                    handle.write(blob)
                os.replace(temporary, path)
            finally:
                if os.path.exists(temporary):
                    os.remove(temporary)
        else:
            fs.pipe_file(path, blob)
    except OSError as exc:
        raise StoreError(f"feature store: cannot write {path!r}: {exc}") from exc


def _remove(fs: fsspec.AbstractFileSystem, path: str) -> None:
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"feature store: cannot delete the stale file {path!r}: {exc}") from exc
    if isinstance(fs, LocalFileSystem):
        try:
            os.rmdir(path.rsplit("/", 1)[0])  # the partition's folder, if nothing else is in it
        except OSError:
            pass


def _try_read_manifest(fs: fsspec.AbstractFileSystem, base: str) -> FeatureManifest | None:
    path = f"{base}/{MANIFEST_NAME}"
    try:
        text = fs.cat_file(path).decode()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StoreError(f"feature store: cannot read {path!r}: {exc}") from exc
    return FeatureManifest.from_json(text, path)


def _read_files(fs: fsspec.AbstractFileSystem, base: str, parts: list[PartitionInfo], names: list[str],
                filters: list[tuple[str, str, Any]] | None) -> list[pa.Table]:
    def read(info: PartitionInfo) -> pa.Table:
        path = f"{base}/{info.path}"
        try:
            source: Any = path if isinstance(fs, LocalFileSystem) else pa.BufferReader(fs.cat_file(path))
            return pq.read_table(source, columns=names, filters=filters)
        except FileNotFoundError as exc:
            raise StoreError(f"feature store: partition file {path!r} named by the manifest is missing") from exc
        except (OSError, pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise StoreError(f"feature store: cannot read {path!r}: {exc}") from exc

    return [table for table in _map(read, parts) if table.num_rows]


def _bound(value: Any, which: str) -> np.datetime64 | None:
    """A date bound as ``datetime64[D]`` (None for none); a time of day is ignored."""
    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise DataError(f"read_features: {which} must be a date, got {value!r}") from exc
    if stamp is pd.NaT or stamp.tzinfo is not None:
        raise DataError(f"read_features: {which} must be a date without a time zone, got {value!r}")
    return np.datetime64(stamp.date(), "D")


def _map(function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(WORKERS, len(items))) as pool:
        return list(pool.map(function, items))
