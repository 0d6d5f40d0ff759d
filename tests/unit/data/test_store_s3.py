"""MarketDataStore on S3 through s3fs, against an in-process moto server used like MinIO."""

from __future__ import annotations

import uuid
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from amcp.data.schemas import BAR_SCHEMA
from amcp.data import store as store_module
from amcp.data.store import MarketDataStore
from amcp.errors import StoreError

DAILY = "equities/daily"
INTRADAY = "equities/intraday"
DAYS = ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07", "2020-01-08"]


@pytest.fixture
def s3_url(s3_server: tuple[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """A fresh prefix in the test bucket, so tests do not see each other's rows."""
    bucket_url, options = s3_server
    return f"{bucket_url}/{uuid.uuid4().hex}", options


def sort_rows(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("symbol", "ascending"), ("ts", "ascending")]))


def test_write_then_read_round_trips(s3_url: tuple[str, dict[str, Any]], make_bars: Any) -> None:
    url, options = s3_url
    store = MarketDataStore(url, storage_options=options)
    table = make_bars(["MSFT", "AAPL", "BRK/B"], DAYS)

    result = store.write(DAILY, table)

    assert result.partitions == ("symbol=AAPL", "symbol=BRK%2FB", "symbol=MSFT")
    assert store.read(DAILY).equals(sort_rows(table))
    assert store.read(DAILY, ["BRK/B"], start="2020-01-06", columns=["ts", "close"]).num_rows == 3
    assert store.symbols(DAILY) == ["AAPL", "BRK/B", "MSFT"]


def test_a_read_fetching_objects_in_several_batches_skips_absent_symbols(
    s3_url: tuple[str, dict[str, Any]], make_bars: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, options = s3_url
    store = MarketDataStore(url, storage_options=options)
    table = make_bars(["AAPL", "IBM", "MSFT"], DAYS)
    store.write(DAILY, table)
    monkeypatch.setattr(store_module, "FETCH_BATCH_FILES", 2)

    read = store.read(DAILY, ["MSFT", "NOPE", "AAPL", "IBM", "ZZZ"])

    assert read.equals(sort_rows(table))


def test_rewrites_are_seen_at_once_by_this_and_other_store_instances(
    s3_url: tuple[str, dict[str, Any]], make_bars: Any
) -> None:
    url, options = s3_url
    writer = MarketDataStore(url, storage_options=options)
    # A separate filesystem instance, as another process would have.
    reader = MarketDataStore(url, storage_options={**options, "skip_instance_cache": True})
    first = make_bars(["AAPL"], DAYS, seed=1)
    second = make_bars(["AAPL"], DAYS[2:], seed=2)
    writer.write(DAILY, first)
    assert reader.read(DAILY, ["AAPL"]).equals(first)
    assert reader.symbols(DAILY) == ["AAPL"]

    again = writer.write(DAILY, first)
    replaced = writer.write(DAILY, second)
    writer.write(DAILY, make_bars(["IBM"], DAYS))

    assert (again.rows_written, again.rows_replaced) == (0, 5)
    assert (replaced.rows_written, replaced.rows_replaced) == (0, 3)
    for store in (writer, reader):
        read = store.read(DAILY, ["AAPL"])
        assert read.slice(0, 2).equals(first.slice(0, 2))
        assert read.slice(2).equals(second)
        assert store.symbols(DAILY) == ["AAPL", "IBM"]


def test_time_range_and_delete(s3_url: tuple[str, dict[str, Any]], make_bars: Any) -> None:
    url, options = s3_url
    store = MarketDataStore(url, storage_options=options)
    table = make_bars(["AAPL", "IBM"], DAYS)
    store.write(DAILY, table)
    ts = table.column("ts").cast(pa.int64()).to_pylist()

    assert store.time_range(DAILY, "AAPL") == (ts[0], ts[4])
    assert store.time_range(DAILY, "NOPE") is None
    assert store.delete(DAILY, ["AAPL"]) == 1
    assert store.symbols(DAILY) == ["IBM"]
    assert store.read(DAILY, ["AAPL"]).num_rows == 0
    assert store.time_range(DAILY, "AAPL") is None


def test_year_partitioned_kind_on_s3(s3_url: tuple[str, dict[str, Any]]) -> None:
    url, options = s3_url
    store = MarketDataStore(url, storage_options=options)
    stamps = [pd.Timestamp(s) for s in ("2012-03-01T15:00Z", "2013-03-01T15:00Z", "2014-03-03T15:00Z")]
    n = len(stamps)
    table = pa.table(
        {
            "symbol": ["SPY"] * n,
            "ts": pa.array(stamps, BAR_SCHEMA.field("ts").type),
            **{name: [1.0, 2.0, 3.0] for name in ("open", "high", "low", "close", "volume", "vwap")},
            "trade_count": pa.array([1, 2, 3], pa.int64()),
        },
        schema=BAR_SCHEMA,
    )

    store.write(INTRADAY, table)

    one_year = store.read(INTRADAY, ["SPY"], start="2013-01-01", end="2013-12-31")
    open_ended = store.read(INTRADAY, ["SPY"], start="2013-01-01")
    assert one_year.column("close").to_pylist() == [2.0]
    assert open_ended.column("close").to_pylist() == [2.0, 3.0]
    assert store.time_range(INTRADAY, "SPY") == (stamps[0].value, stamps[-1].value)


def test_endpoint_in_client_kwargs_works_too(s3_url: tuple[str, dict[str, Any]], make_bars: Any) -> None:
    url, options = s3_url
    nested = {k: v for k, v in options.items() if k not in ("endpoint_url", "client_kwargs")}
    nested["client_kwargs"] = {**options["client_kwargs"], "endpoint_url": options["endpoint_url"]}
    table = make_bars(["AAPL"], DAYS)

    MarketDataStore(url, storage_options=nested).write(DAILY, table)

    assert MarketDataStore(url, storage_options=options).read(DAILY, ["AAPL"]).equals(table)


def test_a_corrupt_object_is_a_store_error_naming_it(
    s3_url: tuple[str, dict[str, Any]], make_bars: Any
) -> None:
    import s3fs

    url, options = s3_url
    store = MarketDataStore(url, storage_options=options)
    store.write(DAILY, make_bars(["AAPL"], DAYS))
    path = f"{url.removeprefix('s3://')}/market-data/equities/daily/symbol=AAPL/part-0.parquet"
    s3fs.S3FileSystem(skip_instance_cache=True, **options).pipe_file(path, b"not parquet")

    with pytest.raises(StoreError, match="symbol=AAPL/part-0.parquet"):
        store.read(DAILY, ["AAPL"])
