"""Cut the bundled daily-bar sample, data/sample/daily_bars.parquet, from the shared data set.

Run from the repository root (the shared data sits beside the checkout, in ../shared/data):

    .venv/bin/python scripts/make_sample.py
    .venv/bin/python scripts/make_sample.py --source /path/to/us_equities_daily.parquet

It keeps 32 large, liquid stocks and SPY from 2010-01-01 to 2017-11-10, plus two symbols (BEN,
EIX) that carry real vendor defects in that window (a high below its low, a close below its low,
digits shifted by a factor of ten), so the default run shows the loader repairing and reporting
real bad rows. The output is sorted by (symbol, date) and written with zstd compression, so the
same source and pyarrow version give the same bytes. It prints one JSON line: rows, symbols,
bytes and the defects the amcp quality check finds in the sample.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "us_equities_daily.parquet"
DEFAULT_OUT = ROOT / "data" / "sample" / "daily_bars.parquet"

START = date(2010, 1, 1)
END = date(2017, 11, 10)
CORE_SYMBOLS = [
    *("AAPL", "MSFT", "AMZN", "GOOGL", "JPM", "XOM", "JNJ", "PG", "KO", "PEP", "WMT", "HD", "INTC"),
    *("CSCO", "ORCL", "IBM", "BAC", "WFC", "C", "GE", "CVX", "PFE", "MRK", "T", "VZ", "DIS", "MCD"),
    *("NKE", "BA", "CAT", "MMM", "UNH", "SPY"),
]
# Symbols with real defects in the window (found by scanning the shared file with amcp's checks):
# BEN 2011-02-14 and 2011-05-04: high shifted a digit (3.7481 against a low of ~37);
# EIX 2010-07-12: high below low; 2012-03-08 and 2012-03-22: close a tenth of its value.
DEFECT_SYMBOLS = ("BEN", "EIX")

SCHEMA = pa.schema(
    [
        ("symbol", pa.string()),
        ("date", pa.date32()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
    ]
)


def cut(source: Path, symbols: list[str]) -> pa.Table:
    """Read ``symbols`` between START and END from ``source``, sorted by (symbol, date)."""
    table = pq.read_table(
        source,
        columns=SCHEMA.names,
        filters=[("symbol", "in", symbols), ("date", ">=", START), ("date", "<=", END)],
    )
    table = table.select(SCHEMA.names).cast(SCHEMA)
    return table.sort_by([("symbol", "ascending"), ("date", "ascending")])


def ohlc_defects(table: pa.Table) -> dict[str, int]:
    """Count rows per symbol whose OHLC is inconsistent or whose price is not positive."""
    o, h, l, c = (table.column(k).to_numpy() for k in ("open", "high", "low", "close"))
    bad = (h < l) | (h < np.maximum(o, c)) | (l > np.minimum(o, c)) | ~((o > 0) & (h > 0) & (l > 0) & (c > 0))
    names, counts = np.unique(
        np.asarray(table.column("symbol").to_pylist(), dtype=object)[bad], return_counts=True
    )
    return {str(n): int(k) for n, k in zip(names, counts, strict=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source", type=Path, default=DEFAULT_SOURCE, help="the shared us_equities_daily.parquet"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where to write the sample")
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"source not found: {args.source}", file=sys.stderr)
        return 2

    symbols = CORE_SYMBOLS + list(DEFECT_SYMBOLS)
    table = cut(args.source, symbols)
    found = set(pc.unique(table.column("symbol")).to_pylist())
    missing = sorted(set(symbols) - found)
    if missing:
        print(f"symbols not in {args.source}: {missing}", file=sys.stderr)
        return 1
    defects = ohlc_defects(table)
    lacking = [s for s in DEFECT_SYMBOLS if s not in defects]
    if lacking:
        print(f"expected defects in {lacking} but found none: pick other symbols", file=sys.stderr)
        return 1

    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        args.out,
        compression="zstd",
        compression_level=19,
        use_dictionary=["symbol"],
        write_page_checksum=True,
    )

    sys.path.insert(0, str(ROOT))
    from amcp.config import DataConfig
    from amcp.data.bars import load_daily_bars

    panel, report = load_daily_bars(DataConfig(path=str(args.out)))
    print(
        json.dumps(
            {
                "out": str(args.out),
                "rows": table.num_rows,
                "symbols": len(found),
                "sessions": len(panel),
                "bytes": args.out.stat().st_size,
                "ohlc_defects_by_symbol": defects,
                "quality": report.counts,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
