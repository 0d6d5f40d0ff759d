"""Benchmark at scale: 5,000 symbols × 22 years of synthetic daily bars in the store.

Run:
    .venv/bin/python benchmarks/data_store_scale.py [--symbols 5000]

Generates the universe in chunks of 500 symbols (``amcp.data.synthetic.iter_daily_bars``, bounded
memory), writes it through ``MarketDataStore.write`` and, for the peer, through
``pyarrow.dataset.write_dataset`` (hive-partitioned by symbol, zstd — the same layout), then
reads (a) the full universe and (b) 500 symbols over 5 years from each. The peer reads with
``pyarrow.dataset`` over its hive folder with no pruning (read everything, filter afterwards):
what a user without a catalog does. Reads are timed once each after one warm-up (page cache
warm for both), and both sides are checked to return the same number of rows and the same sum
of ``close``. Prints JSON lines (``ratio`` > 1 = ours better) and a summary line; progress on
stderr. Needs about 2 GB of disk and 4 GB of memory at 5,000 symbols; several minutes on two cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, line, load_average_1m, progress  # noqa: E402

from amcp.data.store import MarketDataStore  # noqa: E402
from amcp.data.synthetic import iter_daily_bars  # noqa: E402

BENCH = "data_store_scale"
START, END = date(1996, 1, 1), date(2017, 12, 31)
SUBSET_START, SUBSET_END = date(2013, 1, 1), date(2017, 12, 31)
SEED = 11


def _timed(fn: Any) -> tuple[float, Any]:
    fn()  # warm-up
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def _same(ours: pa.Table, peer: pa.Table, what: str) -> None:
    if ours.num_rows != peer.num_rows:
        raise SystemExit(f"{what}: ours returned {ours.num_rows} rows, the peer {peer.num_rows}")
    a, b = pc.sum(ours.column("close")).as_py(), pc.sum(peer.column("close")).as_py()
    if abs(a - b) > 1e-9 * max(abs(a), 1.0):
        raise SystemExit(f"{what}: sums of close differ: {a} vs {b}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="amcp-scale-"))
    try:
        store = MarketDataStore(str(work / "ours"))
        peer_root = work / "peer"
        rows = 0
        write_ours = write_peer = 0.0
        for i, chunk in enumerate(iter_daily_bars(args.symbols, START, END, seed=SEED, chunk_symbols=500)):
            started = time.perf_counter()
            store.write("equities/daily", chunk)
            write_ours += time.perf_counter() - started
            started = time.perf_counter()
            pads.write_dataset(chunk, peer_root, format="parquet", partitioning=["symbol"], partitioning_flavor="hive",
                               existing_data_behavior="overwrite_or_ignore", basename_template=f"part-{i}-{{i}}.parquet",
                               file_options=pads.ParquetFileFormat().make_write_options(compression="zstd"))
            write_peer += time.perf_counter() - started
            rows += chunk.num_rows
            progress(f"wrote {rows:,} rows ({(i + 1) * 500:,} symbols)")
        emit(line(BENCH, "scale_write_rows_per_s", rows / write_ours, "pyarrow.dataset.write_dataset",
                  rows / write_peer, "rows/s", True, digits=4, rows=rows, symbols=args.symbols))

        peer_dataset = pads.dataset(peer_root, format="parquet", partitioning="hive")
        seconds, ours = _timed(lambda: store.read("equities/daily"))
        peer_seconds, peer = _timed(lambda: peer_dataset.to_table())
        _same(ours, peer, "full universe")
        emit(line(BENCH, "scale_universe_read_s", seconds, "pyarrow.dataset (no pruning)", peer_seconds, "s", False,
                  digits=4, rows=ours.num_rows, symbols=args.symbols, cache="warm"))
        del ours, peer

        symbols = [f"S{k:04d}" for k in range(0, args.symbols, max(1, args.symbols // 500))][:500]
        lo = pa.scalar(pa.scalar(SUBSET_START).cast(pa.timestamp("ns", tz="UTC")))
        hi = pa.scalar(pa.scalar(date(SUBSET_END.year + 1, 1, 1)).cast(pa.timestamp("ns", tz="UTC")))

        def peer_subset() -> pa.Table:
            table = peer_dataset.to_table()
            mask = pc.and_(pc.is_in(table.column("symbol"), pa.array(symbols)),
                           pc.and_(pc.greater_equal(table.column("ts"), lo), pc.less(table.column("ts"), hi)))
            return table.filter(mask)

        seconds, ours = _timed(lambda: store.read("equities/daily", symbols, SUBSET_START, SUBSET_END))
        peer_seconds, peer = _timed(peer_subset)
        _same(ours, peer, "subset")
        emit(line(BENCH, "scale_subset_rows_per_s", ours.num_rows / seconds, "pyarrow.dataset (no pruning)",
                  peer.num_rows / peer_seconds, "rows/s", True, digits=4, rows=ours.num_rows, symbols=len(symbols),
                  window=f"{SUBSET_START}..{SUBSET_END}", cache="warm"))
        files = sum(1 for _ in (work / "ours").rglob("*.parquet"))
        size = sum(p.stat().st_size for p in (work / "ours").rglob("*.parquet"))
        emit({"bench": BENCH, "summary": True, "rows": rows, "symbols": args.symbols, "files": files,
              "store_mb": round(size / 2**20, 1), "cpus": os.cpu_count(), "loadavg": load_average_1m()})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
