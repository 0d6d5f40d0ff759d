"""Benchmark: amcp's Parquet market-data store against the obvious ways to hold the same bars.

Run:
    .venv/bin/python benchmarks/data_store.py [--symbols 500] [--s3-symbols 100] [--minute-symbols 50]
        [--repeats 3]

Data: synthetic daily bars (``amcp.data.synthetic.generate_daily_bars``, 1996-2017, 22 years of
NYSE sessions) and one year of synthetic minute bars, written into a temporary folder that is
removed afterwards; plus the real ``../shared/data/us_equities_daily.parquet`` when it is present
(skipped with a note on stderr when not). S3 runs against moto's S3 server started in this
process, reached through s3fs exactly as a MinIO endpoint would be.

Timing: every read is repeated ``--repeats`` times after one untimed warm-up read, and the
median is reported; ours and a pyarrow.dataset peer are timed in alternation (order swapped each
round) so that load from other processes falls on both alike, so the OS page cache is warm for both sides (disclosed in each line); the
summary gives the machine's load average, since a shared machine makes every number noisy.
Writes are timed once. Before a line is printed, ours and the peer are checked to have returned
the same rows: equal row counts and equal sums of ``close`` (relative 1e-9, since the peer's row
order differs), over the same columns. Prints JSON lines ``{"bench": "data_store", "metric", "ours", "peer",
"peer_value", "ratio", "unit", ...}`` where ``ratio`` > 1 means ours is better (peer/ours for
seconds, ours/peer for rows/s), then one summary line. Expect about two to three minutes on two
cores.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, host_load, load_average_1m, progress  # noqa: E402

from amcp.data.calendar import midnight_ns  # noqa: E402
from amcp.data.schemas import BAR_SCHEMA  # noqa: E402
from amcp.data.store import MarketDataStore  # noqa: E402
from amcp.data.synthetic import generate_daily_bars, generate_minute_bars  # noqa: E402

BENCH = "data_store"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "us_equities_daily.parquet"
DAILY, INTRADAY = "equities/daily", "equities/intraday"
DAILY_START, DAILY_END = date(1996, 1, 1), date(2017, 12, 31)
MINUTE_START, MINUTE_END = date(2016, 1, 1), date(2016, 12, 31)
SEED = 7
WARM = "warm: one untimed warm-up read, then the median of the timed repeats"
"""Also true of the peers: the OS page cache holds the files for both sides."""


def median_s(function: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall-clock seconds of ``repeats`` calls after one warm-up call, and the last result."""
    result = function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def paired_median_s(
    ours: Callable[[], Any], peer: Callable[[], Any], repeats: int
) -> tuple[float, Any, float, Any]:
    """:func:`median_s` of ``ours`` and ``peer`` with their repeats interleaved (the order swapped
    each round), so a burst of load on a shared machine hits both sides alike."""
    ours_result, peer_result = ours(), peer()
    ours_times, peer_times = [], []
    for round_ in range(repeats):
        for side in ((0, 1) if round_ % 2 == 0 else (1, 0)):
            started = time.perf_counter()
            if side == 0:
                ours_result = ours()
                ours_times.append(time.perf_counter() - started)
            else:
                peer_result = peer()
                peer_times.append(time.perf_counter() - started)
    return statistics.median(ours_times), ours_result, statistics.median(peer_times), peer_result


def once_s(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def rows_of(result: Any) -> int:
    return int(result.num_rows if isinstance(result, pa.Table) else len(result))


def close_sum(result: Any) -> float:
    """Sum of the ``close`` column (nulls skipped): an order-free checksum of the rows read."""
    if isinstance(result, pa.Table):
        return float(pc.sum(result.column("close")).as_py() or 0.0)
    return float(result["close"].sum())


def check_same(what: str, ours: Any, peer: Any) -> None:
    """Raise unless ``ours`` and ``peer`` hold the same number of rows with the same ``close`` sum."""
    if rows_of(ours) != rows_of(peer):
        raise RuntimeError(f"{what}: row counts differ: ours {rows_of(ours)}, peer {rows_of(peer)}")
    if isinstance(ours, pa.Table) and isinstance(peer, pa.Table) and set(ours.column_names) != set(peer.column_names):
        raise RuntimeError(f"{what}: columns differ: ours {ours.column_names}, peer {peer.column_names}")
    a, b = close_sum(ours), close_sum(peer)
    if abs(a - b) > 1e-9 * max(abs(a), abs(b), 1.0):
        raise RuntimeError(f"{what}: close checksums differ: ours {a!r}, peer {b!r}")


def seconds_line(metric: str, ours_s: float, peer: str, peer_s: float, **extra: Any) -> dict[str, Any]:
    return {"bench": BENCH, "metric": metric, "ours": round(ours_s, 4), "peer": peer, "peer_value": round(peer_s, 4),
            "ratio": round(peer_s / ours_s, 2), "unit": "s", **extra}


def rate_line(metric: str, rows: int, ours_s: float, peer: str, peer_s: float, **extra: Any) -> dict[str, Any]:
    ours, theirs = rows / ours_s, rows / peer_s
    return {"bench": BENCH, "metric": metric, "ours": round(ours), "peer": peer, "peer_value": round(theirs),
            "ratio": round(ours / theirs, 2), "unit": "rows/s", "rows": rows, **extra}


def keep(line: dict[str, Any], lines: list[dict[str, Any]]) -> None:
    """Print ``line`` as a JSON line and add it to ``lines``."""
    lines.append(emit(line))


def in_range(kind_time: str, symbols: list[str] | None, start: pd.Timestamp | None, end: pd.Timestamp | None) -> Any:
    """The peer's filter expression for a symbol list and an inclusive [start, end] instant range."""
    expression = pc.scalar(True)
    if symbols is not None:
        expression = expression & pc.field("symbol").isin(symbols)
    if start is not None:
        expression = expression & (pc.field(kind_time) >= pa.scalar(start, BAR_SCHEMA.field("ts").type))
    if end is not None:
        expression = expression & (pc.field(kind_time) <= pa.scalar(end, BAR_SCHEMA.field("ts").type))
    return expression


def ny_day_bounds(first: str, last: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The store's rule for a bare date range: midnight New York of ``first`` to the end of ``last``."""
    start = pd.Timestamp(first, tz="America/New_York").tz_convert("UTC")
    end = (pd.Timestamp(last, tz="America/New_York") + pd.Timedelta(days=1)).tz_convert("UTC") - pd.Timedelta(1, "ns")
    return start, end


# ---------------------------------------------------------------------------- sections


def bench_daily_local(root: Path, args: argparse.Namespace, lines: list[dict[str, Any]]) -> dict[str, Any]:
    progress(f"generating daily bars: {args.symbols} symbols, {DAILY_START} to {DAILY_END}")
    daily = generate_daily_bars(args.symbols, DAILY_START, DAILY_END, seed=SEED)
    rows = daily.num_rows
    store = MarketDataStore(str(root / "store"))
    folder = store.dataset_path(DAILY)

    progress(f"writing {rows} rows through the store and through pyarrow.dataset.write_dataset")
    ours_write_s, written = once_s(lambda: store.write(DAILY, daily))
    peer_root = root / "peer-hive"
    peer_write_s, _ = once_s(lambda: pads.write_dataset(
        daily, peer_root, format="parquet", partitioning=["symbol"], partitioning_flavor="hive",
        file_options=pads.ParquetFileFormat().make_write_options(compression="zstd"), existing_data_behavior="overwrite_or_ignore"))
    keep(rate_line("daily_write_rows_per_s_local", rows, ours_write_s, "pyarrow.dataset.write_dataset (hive by symbol, zstd)",
                   peer_write_s, repeats=1, note="ours also validates, deduplicates on the key and merges with stored rows; "
                   f"{len(written.partitions)} files"), lines)

    progress("full-universe read: store, pandas.read_csv, pyarrow.dataset")
    ours_s, table, dataset_s, peer_table = paired_median_s(
        lambda: store.read(DAILY), lambda: pads.dataset(folder, format="parquet").to_table(), args.repeats)
    if table.num_rows != rows:
        raise RuntimeError(f"the store returned {table.num_rows} rows, {rows} were written")
    csv_path = root / "daily.csv"
    pacsv.write_csv(daily, csv_path)
    csv_s, frame = median_s(lambda: pd.read_csv(csv_path, parse_dates=["ts"]), max(1, args.repeats - 1))
    check_same("daily universe vs csv", table, frame)
    check_same("daily universe vs pyarrow.dataset", table, peer_table)
    shape = f"{args.symbols} symbols x 22 years, {rows} rows, {len(written.partitions)} files"
    keep(seconds_line("daily_universe_read_s", ours_s, "pandas.read_csv (one CSV file, parse_dates=['ts'])", csv_s,
                      rows=rows, data=shape, cache=WARM, repeats=max(1, args.repeats - 1)), lines)
    keep(seconds_line("daily_universe_read_s", ours_s, "pyarrow.dataset over the same folder (no pruning)", dataset_s,
                      rows=rows, data=shape, cache=WARM, repeats=args.repeats), lines)

    subset = sorted(daily.column("symbol").unique().to_pylist())[: max(1, args.symbols // 5)]
    start, end = ny_day_bounds("2010-01-01", "2017-12-31")
    progress(f"subset read: {len(subset)} symbols, 2010-2017")
    ours_sub_s, sub, peer_sub_s, peer_sub = paired_median_s(
        lambda: store.read(DAILY, subset, start="2010-01-01", end="2017-12-31"),
        lambda: pads.dataset(folder, format="parquet").to_table(filter=in_range("ts", subset, start, end)), args.repeats)
    check_same("daily subset", sub, peer_sub)
    keep(rate_line("daily_rows_per_s_local", sub.num_rows, ours_sub_s,
                   "pyarrow.dataset over the same folder, same filter pushed down", peer_sub_s,
                   data=f"{len(subset)} symbols, 2010-01-01..2017-12-31", cache=WARM, repeats=args.repeats), lines)
    return {"daily_rows": rows, "daily_universe_read_s": round(ours_s, 3), "daily_files": len(written.partitions),
            "daily_table": daily}


def bench_minute_local(root: Path, args: argparse.Namespace, lines: list[dict[str, Any]]) -> dict[str, Any]:
    progress(f"generating minute bars: {args.minute_symbols} symbols, {MINUTE_START} to {MINUTE_END}")
    minute = generate_minute_bars(args.minute_symbols, MINUTE_START, MINUTE_END, seed=SEED)
    store = MarketDataStore(str(root / "store"))
    folder = store.dataset_path(INTRADAY)
    progress(f"writing {minute.num_rows} minute rows")
    write_s, _ = once_s(lambda: store.write(INTRADAY, minute))
    progress(f"  written in {write_s:.1f} s; reading one month and the full year")
    start, end = ny_day_bounds("2016-06-01", "2016-06-30")
    ours_month_s, month, peer_month_s, peer_month = paired_median_s(
        lambda: store.read(INTRADAY, start="2016-06-01", end="2016-06-30"),
        lambda: pads.dataset(folder, format="parquet").to_table(filter=in_range("ts", None, start, end)), args.repeats)
    check_same("minute month", month, peer_month)
    keep(rate_line("minute_month_rows_per_s_local", month.num_rows, ours_month_s,
                   "pyarrow.dataset over the same folder, same filter pushed down", peer_month_s,
                   data=f"{args.minute_symbols} symbols, June 2016 of one stored year", cache=WARM, repeats=args.repeats), lines)
    ours_year_s, year, peer_year_s, peer_year = paired_median_s(
        lambda: store.read(INTRADAY), lambda: pads.dataset(folder, format="parquet").to_table(), args.repeats)
    if year.num_rows != minute.num_rows:
        raise RuntimeError(f"year rows differ: wrote {minute.num_rows}, ours {year.num_rows}")
    check_same("minute year", year, peer_year)
    keep(rate_line("minute_rows_per_s_local", year.num_rows, ours_year_s, "pyarrow.dataset over the same folder (no pruning)",
                   peer_year_s, data=f"{args.minute_symbols} symbols x 1 year", cache=WARM, repeats=args.repeats), lines)
    return {"minute_rows": minute.num_rows, "minute_write_s": round(write_s, 2)}


def real_bars(path: Path) -> pa.Table:
    """The shared daily file as store rows: ``ts`` at midnight New York of ``date``, no vwap or count."""
    source = pq.read_table(path, columns=["symbol", "date", "open", "high", "low", "close", "volume"])
    days = source.column("date").cast(pa.date32()).to_numpy(zero_copy_only=False).astype("datetime64[D]")
    unique, inverse = np.unique(days, return_inverse=True)
    n = source.num_rows
    return pa.table({
        "symbol": source.column("symbol"),
        "ts": pa.array(midnight_ns(unique)[inverse]).cast(BAR_SCHEMA.field("ts").type),
        **{name: source.column(name) for name in ("open", "high", "low", "close", "volume")},
        "vwap": pa.nulls(n, pa.float64()),
        "trade_count": pa.nulls(n, pa.int64()),
    })


def bench_real_local(root: Path, args: argparse.Namespace, lines: list[dict[str, Any]]) -> dict[str, Any]:
    if not SHARED.is_file():
        progress(f"skipping the real-data read: {SHARED} is not present")
        return {"real_daily": "skipped: file absent"}
    progress(f"converting {SHARED.name} into the store")
    bars = real_bars(SHARED)
    store = MarketDataStore(str(root / "real"))
    written = store.write(DAILY, bars)
    folder = store.dataset_path(DAILY)
    data = f"{len(written.partitions)} symbols, 1962-2017, {written.rows_duplicate} duplicate keys dropped"
    ours_s, table, dataset_s, peer_table = paired_median_s(
        lambda: store.read(DAILY), lambda: pads.dataset(folder, format="parquet").to_table(), args.repeats)
    check_same("real daily vs pyarrow.dataset", table, peer_table)
    keep(rate_line("real_daily_rows_per_s_local", table.num_rows, ours_s,
                   "pyarrow.dataset over the same folder (no pruning)", dataset_s, data=data, cache=WARM,
                   repeats=args.repeats, layout="same files for both"), lines)
    single_s, single = median_s(lambda: pq.read_table(SHARED), args.repeats)
    if single.num_rows != table.num_rows + written.rows_duplicate:
        raise RuntimeError(f"real daily: the file has {single.num_rows} rows, the store {table.num_rows} "
                           f"+ {written.rows_duplicate} duplicates")
    keep(rate_line("real_daily_rows_per_s_local", table.num_rows, ours_s,
                   "pyarrow.parquet.read_table of the original single file (a different layout)", single_s,
                   data=data, cache=WARM, repeats=args.repeats, layout="different: one file against one per symbol",
                   note="not a like-for-like read: the peer reads one 4-row-group file and returns it unsorted, in "
                        "the source's own schema; ours opens one file per symbol and returns rows sorted by "
                        "(symbol, ts) in the exact schema. Per-file costs (footer, one zstd call per page) "
                        "dominate files of a few thousand rows"), lines)
    return {"real_rows": table.num_rows}


def bench_s3(daily: pa.Table, args: argparse.Namespace, lines: list[dict[str, Any]]) -> dict[str, Any]:
    try:
        import boto3
        import s3fs
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        progress(f"skipping S3: {exc}")
        return {"s3": f"skipped: {exc}"}
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        options = {"endpoint_url": f"http://{host}:{port}", "key": "bench", "secret": "bench",
                   "client_kwargs": {"region_name": "us-east-1"}}
        boto3.client("s3", endpoint_url=options["endpoint_url"], aws_access_key_id="bench",
                     aws_secret_access_key="bench", region_name="us-east-1").create_bucket(Bucket="bench")
        subset = sorted(daily.column("symbol").unique().to_pylist())[: args.s3_symbols]
        bars = daily.filter(pc.field("symbol").isin(subset))
        store = MarketDataStore("s3://bench/amcp", storage_options=options)
        progress(f"S3 (moto): writing {bars.num_rows} rows of {len(subset)} symbols")
        write_s, _ = once_s(lambda: store.write(DAILY, bars))
        progress(f"  written in {write_s:.1f} s; reading")
        fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
        ours_s, table, peer_s, peer = paired_median_s(
            lambda: store.read(DAILY),
            lambda: pads.dataset("bench/amcp/market-data/equities/daily", filesystem=fs, format="parquet").to_table(),
            args.repeats)
        if table.num_rows != bars.num_rows:
            raise RuntimeError(f"S3 rows differ: wrote {bars.num_rows}, ours {table.num_rows}")
        check_same("S3 daily", table, peer)
        keep(rate_line("daily_rows_per_s_s3", table.num_rows, ours_s, "pyarrow.dataset over s3fs, same prefix (no pruning)",
                       peer_s, data=f"{len(subset)} symbols x 22 years", cache="moto S3 server in this process; " + WARM,
                       repeats=args.repeats,
                       note=f"a {len(subset)}-symbol subset to keep the in-process S3 server quick"), lines)
        sink = pa.BufferOutputStream()
        pacsv.write_csv(bars, sink)
        fs.pipe("bench/daily.csv", sink.getvalue().to_pybytes())
        csv_s, frame = median_s(lambda: pd.read_csv("s3://bench/daily.csv", parse_dates=["ts"],
                                                    storage_options=options), max(1, args.repeats - 1))
        if len(frame) != table.num_rows:
            raise RuntimeError(f"S3 CSV rows differ: {len(frame)} vs {table.num_rows}")
        keep(rate_line("daily_rows_per_s_s3", table.num_rows, ours_s, "pandas.read_csv of the same rows as one S3 object",
                       csv_s, data=f"{len(subset)} symbols x 22 years", cache="moto S3 server in this process; " + WARM,
                       repeats=args.repeats), lines)
        return {"s3_rows": table.num_rows, "s3_write_s": round(write_s, 2)}
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=500, help="symbols of synthetic daily bars (22 years each)")
    parser.add_argument("--s3-symbols", type=int, default=100, help="how many of them to write and read through S3")
    parser.add_argument("--minute-symbols", type=int, default=50, help="symbols of synthetic minute bars (one year)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each read (the median is reported)")
    args = parser.parse_args()
    if min(args.symbols, args.s3_symbols, args.minute_symbols, args.repeats) < 1:
        parser.error("--symbols, --s3-symbols, --minute-symbols and --repeats must be at least 1")

    started = time.perf_counter()
    load_before = load_average_1m()
    lines: list[dict[str, Any]] = []
    root = Path(tempfile.mkdtemp(prefix="amcp-bench-store-"))
    try:
        daily_summary = bench_daily_local(root, args, lines)
        daily = daily_summary.pop("daily_table")
        s3_summary = bench_s3(daily, args, lines)
        del daily
        minute_summary = bench_minute_local(root, args, lines)
        real_summary = bench_real_local(root, args, lines)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    target_met = daily_summary["daily_universe_read_s"] < 2.0
    emit({"bench": BENCH, "summary": True, **daily_summary, **s3_summary, **minute_summary, **real_summary,
          "daily_universe_read_under_2s": target_met, "repeats": args.repeats,
          **host_load(load_before), "wall_s": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
