"""Ingestion: quality on the way in, quarantine, per-symbol failures, resume after a crash."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from amcp.data.alpaca_source import AlpacaHistoricalSource
from amcp.data.ingest import (
    IngestCheckpoint,
    QualityPolicy,
    Quarantine,
    date_windows,
    ingest_alpaca_symbol,
    job_key,
    store_bars,
    summarize,
)
from amcp.data.ratelimit import TokenBucket
from amcp.data.store import MarketDataStore
from amcp.data.synthetic import generate_daily_bars
from amcp.errors import DataError, StoreError
from amcp.testing.alpaca_rest import AlpacaMarketDataServer

KIND = "equities/daily"


def _bars(symbols: int = 2, start: date = date(2015, 1, 1), end: date = date(2016, 12, 31), seed: int = 3) -> pa.Table:
    return generate_daily_bars(symbols, start, end, seed=seed)


def _with_defects(table: pa.Table, symbol: str) -> pa.Table:
    """Make row 10 of ``symbol`` have high < low and row 20 a non-positive close."""
    rows = table.to_pylist()
    idx = [i for i, r in enumerate(rows) if r["symbol"] == symbol]
    bad_hl, bad_px = rows[idx[10]], rows[idx[20]]
    bad_hl["high"], bad_hl["low"] = bad_hl["low"] - 1.0, bad_hl["high"] + 1.0
    bad_px["close"] = -1.0
    return pa.Table.from_pylist(rows, schema=table.schema)


@pytest.fixture()
def store(tmp_path) -> MarketDataStore:
    return MarketDataStore(str(tmp_path / "root"))


def test_date_windows_cover_the_range_without_overlap() -> None:
    windows = date_windows(date(2020, 1, 1), date(2021, 3, 1), 100)
    assert windows[0][0] == date(2020, 1, 1) and windows[-1][1] == date(2021, 3, 1)
    for (lo, hi), (next_lo, _) in zip(windows, windows[1:]):
        assert (hi - lo).days == 99 and next_lo == hi + timedelta(days=1)


def test_job_key_is_stable_and_sensitive() -> None:
    a = job_key({"source": {"symbols": ["A", "B"]}, "kind": KIND})
    assert a == job_key({"kind": KIND, "source": {"symbols": ["A", "B"]}})
    assert a != job_key({"source": {"symbols": ["A", "C"]}, "kind": KIND})


def test_repair_writes_fixed_rows_and_counts_defects_per_symbol(store) -> None:
    table = _with_defects(_bars(), "S0001")
    results = store_bars(store, KIND, table, QualityPolicy("repair"), None, daily=True)
    bad, good = results["S0001"], results["S0000"]
    assert bad.quality.get("high_below_low") == 1 and bad.quality.get("bad_price") == 1
    assert not good.quality.get("bad_price") and good.error is None
    stored = store.read(KIND, ["S0001"])
    assert stored.num_rows == bad.rows_in - 1  # the bad-price row dropped, the inverted one fixed
    assert bad.rows_written == stored.num_rows and bad.rows_dropped == 1
    hi, lo = stored.column("high").to_numpy(), stored.column("low").to_numpy()
    assert (hi >= lo).all()
    assert (stored.column("close").to_numpy() > 0).all()


def test_rewrite_is_idempotent(store) -> None:
    table = _bars()
    first = store_bars(store, KIND, table, QualityPolicy("repair"), None, daily=True)
    again = store_bars(store, KIND, table, QualityPolicy("repair"), None, daily=True)
    assert sum(r.rows_written for r in first.values()) == table.num_rows
    assert sum(r.rows_written for r in again.values()) == 0
    assert sum(r.rows_replaced for r in again.values()) == table.num_rows
    assert store.read(KIND).num_rows == table.num_rows


def test_quarantine_sets_bad_rows_aside_unchanged(store, tmp_path) -> None:
    table = _with_defects(_bars(), "S0001")
    quarantine = Quarantine(store.url, None, "job1")
    results = store_bars(store, KIND, table, QualityPolicy("quarantine"), quarantine, daily=True)
    held = quarantine.read(KIND)
    assert results["S0001"].rows_quarantined == held.num_rows == 2
    assert set(held.column("defect").to_pylist()) >= {"bad_price"}
    # every input row is either stored or quarantined, exactly once
    assert store.read(KIND).num_rows + held.num_rows == table.num_rows
    assert -1.0 in held.column("close").to_pylist()  # unchanged


def test_strict_fails_only_the_defective_symbol(store) -> None:
    table = _with_defects(_bars(), "S0001")
    results = store_bars(store, KIND, table, QualityPolicy("strict"), None, daily=True)
    assert results["S0001"].error and "S0001" in results["S0001"].error
    assert results["S0000"].error is None
    assert store.symbols(KIND) == ["S0000"]
    summary = summarize(list(results.values()))
    assert [f["symbol"] for f in summary["failures"]] == ["S0001"]


def test_checkpoint_round_trip_and_bad_file(store) -> None:
    cp = IngestCheckpoint(store.url, None, "k")
    assert cp.done("BRK/B") == set()
    cp.mark("BRK/B", "2020-01-01_2020-12-31")
    cp.mark("BRK/B", "2021-01-01_2021-12-31")
    assert cp.done("BRK/B") == {"2020-01-01_2020-12-31", "2021-01-01_2021-12-31"}
    path = cp._file("BRK/B")
    with cp._fs.open(path, "wb") as handle:
        handle.write(b"{not json")
    with pytest.raises(StoreError, match="unreadable"):
        cp.done("BRK/B")
    cp.clear()
    assert cp.done("BRK/B") == set()


class _FlakyFetch:
    """Serves rows of ``table`` by window; raises on the windows listed in ``fail_on``."""

    def __init__(self, table: pa.Table, fail_on: set[int] = frozenset()) -> None:
        self.table = table
        self.fail_on = set(fail_on)
        self.calls: list[tuple[date, date]] = []

    def __call__(self, symbol: str, lo: date, hi: date) -> pa.Table:
        self.calls.append((lo, hi))
        if len(self.calls) - 1 in self.fail_on:
            raise DataError(f"connection reset while fetching {symbol}")
        ts = self.table.column("ts").cast(pa.int64()).to_numpy()
        lo_ns = np.datetime64(lo, "ns").astype(np.int64)
        hi_ns = np.datetime64(hi + timedelta(days=1), "ns").astype(np.int64)
        mask = (ts >= lo_ns) & (ts < hi_ns) & (self.table.column("symbol").to_numpy(zero_copy_only=False) == symbol)
        return self.table.filter(pa.array(mask))


def test_crash_mid_symbol_then_resume_fetches_only_the_rest(store) -> None:
    table = _bars(1, date(2012, 1, 1), date(2016, 12, 31))
    windows = date_windows(date(2012, 1, 1), date(2016, 12, 31), 365)
    cp = IngestCheckpoint(store.url, None, "job")
    policy = QualityPolicy("repair")

    crashing = _FlakyFetch(table, fail_on={2})
    first = ingest_alpaca_symbol(store, crashing, cp, "S0000", windows, KIND, policy, None, daily=True, today=date(2030, 1, 1))
    assert first.error and windows[2][0].isoformat() in first.error and "connection reset" in first.error
    assert len(cp.done("S0000")) == 2

    resumed = _FlakyFetch(table)
    second = ingest_alpaca_symbol(store, resumed, cp, "S0000", windows, KIND, policy, None, daily=True, today=date(2030, 1, 1))
    assert second.error is None
    assert resumed.calls == list(windows[2:])  # finished windows are not fetched again
    assert second.windows_skipped == 2
    stored = store.read(KIND, ["S0000"])
    assert stored.num_rows == table.num_rows
    assert pc.count_distinct(stored.column("ts")).as_py() == table.num_rows


def test_window_reaching_today_is_not_marked_finished(store) -> None:
    table = _bars(1, date(2016, 1, 1), date(2016, 12, 31))
    windows = date_windows(date(2016, 1, 1), date(2016, 12, 31), 200)
    cp = IngestCheckpoint(store.url, None, "job")
    ingest_alpaca_symbol(store, _FlakyFetch(table), cp, "S0000", windows, KIND, QualityPolicy(), None,
                         daily=True, today=date(2016, 12, 31))
    assert cp.done("S0000") == {f"{windows[0][0]}_{windows[0][1]}"}


def test_alpaca_ingest_survives_429s_and_resumes_after_a_partition(store) -> None:
    """The real alpaca-py client against an Alpaca-compatible server: retries, then a broker
    partition longer than the retry budget stops the symbol, and a rerun resumes."""
    table = _bars(1, date(2014, 1, 1), date(2016, 12, 31))
    windows = date_windows(date(2014, 1, 1), date(2016, 12, 31), 365)
    cp = IngestCheckpoint(store.url, None, "alpaca")
    with AlpacaMarketDataServer() as server:
        server.add_bars(table, "1Day")
        sleeps: list[float] = []
        source = AlpacaHistoricalSource("test-key", "test-secret", url_override=server.url, max_retries=2,
                                        rate_limiter=TokenBucket(6000, burst=100), sleep=sleeps.append, seed=1)

        def fetch(symbol: str, lo: date, hi: date) -> pa.Table:
            return source.bars([symbol], lo, hi, "1Day")

        server.fail_next(2, 429)
        ingest_alpaca_symbol(store, fetch, cp, "S0000", windows[:1], KIND, QualityPolicy(), None,
                             daily=True, today=date(2030, 1, 1))
        assert len(sleeps) == 2  # two backoffs, then success
        server.fail_next(10, 503)  # a partition: more failures than retries
        failed = ingest_alpaca_symbol(store, fetch, cp, "S0000", windows, KIND, QualityPolicy(), None,
                                      daily=True, today=date(2030, 1, 1))
        assert failed.error and "503" in failed.error
        server.clear_log()
        server._fail_next.clear()  # the partition heals
        done = ingest_alpaca_symbol(store, fetch, cp, "S0000", windows, KIND, QualityPolicy(), None,
                                    daily=True, today=date(2030, 1, 1))
        assert done.error is None and done.windows_skipped == 1 and done.windows == len(windows) - 1
        assert server.request_count == len(windows) - 1  # one page per remaining window
        source.close()
    stored = store.read(KIND, ["S0000"])
    expected = table.select(stored.column_names)
    assert stored.equals(expected.cast(stored.schema))


def test_checkpoint_file_is_json_listing_windows(store) -> None:
    cp = IngestCheckpoint(store.url, None, "k2")
    cp.mark("AAPL", "w1")
    with cp._fs.open(cp._file("AAPL"), "rb") as handle:
        assert json.loads(handle.read()) == {"done": ["w1"]}


def test_trades_ingest_into_the_tick_dataset_without_bar_checks(store) -> None:
    from amcp.data.schemas import TICK_SCHEMA

    n = 50
    base = np.datetime64("2016-06-01T14:30:00", "ns").astype(np.int64)
    trades = pa.table(
        {"symbol": ["S0000"] * n, "ts": pa.array(base + np.arange(n) * 1_000_000_007, pa.int64()).cast(TICK_SCHEMA.field("ts").type),
         "trade_id": pa.array(np.arange(n), pa.int64()), "price": 100.0 + np.arange(n) / 100, "size": [100.0] * n,
         "exchange": ["V"] * n, "conditions": ["@"] * n, "tape": ["C"] * n},
        schema=TICK_SCHEMA,
    )
    windows = date_windows(date(2016, 6, 1), date(2016, 6, 2), 1)
    cp = IngestCheckpoint(store.url, None, "ticks")
    with AlpacaMarketDataServer() as server:
        server.add_trades(trades)
        source = AlpacaHistoricalSource("test-key", "test-secret", url_override=server.url,
                                        rate_limiter=TokenBucket(6000, burst=100), page_limit=20)
        result = ingest_alpaca_symbol(store, lambda s, lo, hi: source.trades([s], lo, hi), cp, "S0000", windows,
                                      "equities/tick", QualityPolicy(), None, daily=False, today=date(2030, 1, 1))
        source.close()
    assert result.error is None and result.rows_written == n and result.windows == 2
    stored = store.read("equities/tick", ["S0000"])
    assert stored.column("trade_id").to_pylist() == list(range(n))
    assert stored.column("ts").equals(trades.column("ts"))  # nanoseconds kept


def test_a_failing_write_fails_only_its_symbol(store) -> None:
    table = _bars()
    store_bars(store, KIND, table, QualityPolicy("repair"), None, daily=True)
    path = f"{store.dataset_path(KIND)}/symbol=S0001/part-0.parquet"
    with open(path, "wb") as handle:
        handle.write(b"not parquet")  # the merge must read the stored file, and cannot
    results = store_bars(store, KIND, table, QualityPolicy("repair"), None, daily=True)
    assert results["S0001"].error and "write failed" in results["S0001"].error
    assert results["S0000"].error is None and results["S0000"].rows_replaced == results["S0000"].rows_in
    assert summarize(list(results.values()))["failures"][0]["symbol"] == "S0001"
