"""MarketDataStore on a local disk: layout, idempotent writes, pruned reads, validation, errors."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from amcp.data.calendar import TradingCalendar, midnight_ns
from amcp.data.schemas import BAR_SCHEMA, CORPORATE_ACTION_SCHEMA, OPTION_CHAIN_SCHEMA
from amcp.data.store import MarketDataStore
from amcp.errors import DataError, StoreError

DAILY = "equities/daily"
INTRADAY = "equities/intraday"
NEW_YORK = "America/New_York"
DAYS = ["2020-01-02", "2020-01-03", "2020-01-06", "2020-01-07", "2020-01-08"]


def sort_rows(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table, [("symbol", "ascending"), ("ts", "ascending")]))


def ns(text: str) -> int:
    return pd.Timestamp(text).as_unit("ns").value


def minute_bars(stamps_utc: list[str], symbol: str = "SPY") -> pa.Table:
    n = len(stamps_utc)
    return pa.table(
        {
            "symbol": [symbol] * n,
            "ts": pa.array([ns(s) for s in stamps_utc], pa.int64()).cast(BAR_SCHEMA.field("ts").type),
            "open": np.arange(n, dtype=float) + 100,
            "high": np.arange(n, dtype=float) + 101,
            "low": np.arange(n, dtype=float) + 99,
            "close": np.arange(n, dtype=float) + 100.5,
            "volume": np.full(n, 10.0),
            "vwap": np.arange(n, dtype=float) + 100.2,
            "trade_count": np.arange(n, dtype=np.int64),
        },
        schema=BAR_SCHEMA,
    )


@pytest.fixture
def store(tmp_path: Path) -> MarketDataStore:
    return MarketDataStore(str(tmp_path / "root"))


def daily_dir(tmp_path: Path) -> Path:
    return tmp_path / "root" / "market-data" / "equities" / "daily"


# ---------------------------------------------------------------- round trip and layout


def test_round_trip_returns_the_rows_sorted_with_the_exact_schema(
    store: MarketDataStore, make_bars: Any
) -> None:
    table = make_bars(["MSFT", "AAPL", "IBM"], DAYS)
    shuffled = table.take(pa.array(np.random.default_rng(3).permutation(table.num_rows)))

    result = store.write(DAILY, shuffled)
    read = store.read(DAILY)

    assert read.schema == BAR_SCHEMA
    assert read.equals(sort_rows(table))
    assert read.column("vwap").null_count == table.column("vwap").null_count > 0
    assert (result.rows_in, result.rows_written, result.rows_replaced) == (15, 15, 0)
    assert result.partitions == ("symbol=AAPL", "symbol=IBM", "symbol=MSFT")


def test_layout_is_one_zstd_file_per_symbol_with_the_schema_and_statistics(
    store: MarketDataStore, make_bars: Any, tmp_path: Path
) -> None:
    store.write(DAILY, make_bars(["AAPL", "IBM"], DAYS))

    folder = daily_dir(tmp_path)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["symbol=AAPL/part-0.parquet", "symbol=IBM/part-0.parquet"]
    metadata = pq.read_metadata(folder / "symbol=AAPL" / "part-0.parquet")
    assert metadata.schema.to_arrow_schema().remove_metadata() == BAR_SCHEMA
    ts_chunk = metadata.row_group(0).column(BAR_SCHEMA.get_field_index("ts"))
    assert ts_chunk.compression == "ZSTD"
    assert ts_chunk.statistics.has_min_max
    stored = pq.read_table(folder / "symbol=AAPL" / "part-0.parquet")
    assert stored.column("symbol").unique().to_pylist() == ["AAPL"]


def chunks_of(path: Path) -> dict[str, Any]:
    row_group = pq.read_metadata(path).row_group(0)
    return {row_group.column(i).path_in_schema: row_group.column(i) for i in range(row_group.num_columns)}


def test_daily_files_dictionary_encode_only_strings_and_delta_encode_the_time_column(
    store: MarketDataStore, make_bars: Any, tmp_path: Path
) -> None:
    store.write(DAILY, make_bars(["AAPL"], DAYS))

    chunks = chunks_of(daily_dir(tmp_path) / "symbol=AAPL" / "part-0.parquet")

    assert chunks["symbol"].has_dictionary_page
    assert not chunks["close"].has_dictionary_page
    assert "DELTA_BINARY_PACKED" in chunks["ts"].encodings
    assert chunks["close"].compression == "ZSTD"


def test_year_partitioned_files_dictionary_encode_prices_too(store: MarketDataStore, tmp_path: Path) -> None:
    store.write(INTRADAY, minute_bars(["2014-06-02T14:30Z", "2014-06-02T14:31Z"]))

    folder = tmp_path / "root" / "market-data" / "equities" / "intraday" / "symbol=SPY" / "year=2014"
    chunks = chunks_of(folder / "part-0.parquet")

    assert chunks["close"].has_dictionary_page
    assert not chunks["ts"].has_dictionary_page
    assert "DELTA_BINARY_PACKED" in chunks["ts"].encodings


def test_rows_of_a_file_not_written_by_the_store_are_sorted_on_read(
    store: MarketDataStore, make_bars: Any, tmp_path: Path
) -> None:
    table = make_bars(["AAPL"], DAYS)
    path = daily_dir(tmp_path) / "symbol=AAPL" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    # reversed rows, two row groups, no sorting declaration
    pq.write_table(table.take(pa.array(range(table.num_rows - 1, -1, -1))), path, row_group_size=2)

    assert store.read(DAILY).equals(table)


def test_intraday_partitions_by_the_utc_year(store: MarketDataStore, tmp_path: Path) -> None:
    # 23:30 New York on New Year's Eve is already the next year in UTC.
    table = minute_bars(["2013-12-31T16:00Z", "2014-01-01T04:30Z", "2014-06-02T14:30Z"])

    result = store.write(INTRADAY, table)

    assert result.partitions == ("symbol=SPY/year=2013", "symbol=SPY/year=2014")
    folder = tmp_path / "root" / "market-data" / "equities" / "intraday" / "symbol=SPY"
    assert pq.read_table(folder / "year=2013" / "part-0.parquet").num_rows == 1
    assert pq.read_table(folder / "year=2014" / "part-0.parquet").num_rows == 2
    assert store.read(INTRADAY, ["SPY"]).equals(table)


def test_memory_url_works_like_a_local_path(make_bars: Any) -> None:
    store = MarketDataStore("memory://amcp-test-store")
    table = make_bars(["AAPL"], DAYS)
    try:
        store.write(DAILY, table)
        assert store.read(DAILY, ["AAPL"]).equals(table)
        assert store.symbols(DAILY) == ["AAPL"]
    finally:
        store.delete(DAILY, ["AAPL"])


# ---------------------------------------------------------------- idempotency


def test_rewriting_the_same_rows_changes_nothing(
    store: MarketDataStore, make_bars: Any, tmp_path: Path
) -> None:
    table = make_bars(["AAPL", "IBM"], DAYS)
    store.write(DAILY, table)
    first_bytes = (daily_dir(tmp_path) / "symbol=AAPL" / "part-0.parquet").read_bytes()

    result = store.write(DAILY, table)

    assert (result.rows_written, result.rows_replaced, result.rows_duplicate) == (0, 10, 0)
    assert store.read(DAILY).equals(table)
    assert (daily_dir(tmp_path) / "symbol=AAPL" / "part-0.parquet").read_bytes() == first_bytes
    assert not [p for p in daily_dir(tmp_path).rglob(".*")], "temporary files were left behind"


def test_an_overlapping_write_replaces_rows_with_the_same_key(store: MarketDataStore, make_bars: Any) -> None:
    days = TradingCalendar().sessions("2020-01-01", "2020-01-31")
    old = make_bars(["AAPL"], days[:10], seed=1)
    new = make_bars(["AAPL"], days[5:15], seed=2)
    store.write(DAILY, old)

    result = store.write(DAILY, new)
    read = store.read(DAILY, ["AAPL"])

    assert (result.rows_written, result.rows_replaced) == (5, 5)
    assert read.num_rows == 15
    assert read.slice(0, 5).equals(old.slice(0, 5))
    assert read.slice(5, 10).equals(new)


def test_duplicate_keys_in_one_batch_keep_the_last_row(store: MarketDataStore, make_bars: Any) -> None:
    first = make_bars(["AAPL"], DAYS[:2], seed=1)
    second = make_bars(["AAPL"], DAYS[1:2], seed=2)

    result = store.write(DAILY, pa.concat_tables([first, second]))
    read = store.read(DAILY, ["AAPL"])

    assert (result.rows_in, result.rows_written, result.rows_replaced, result.rows_duplicate) == (3, 2, 0, 1)
    assert read.slice(0, 1).equals(first.slice(0, 1))
    assert read.slice(1, 1).equals(second)


def test_an_empty_write_touches_nothing(store: MarketDataStore) -> None:
    result = store.write(DAILY, BAR_SCHEMA.empty_table())

    assert (result.rows_in, result.partitions) == (0, ())
    assert store.symbols(DAILY) == []


# ---------------------------------------------------------------- selection


def test_read_selects_symbols_dates_and_columns(store: MarketDataStore, make_bars: Any) -> None:
    table = make_bars(["AAPL", "IBM", "MSFT"], DAYS)
    store.write(DAILY, table)
    ts = table.column("ts").cast(pa.int64()).to_numpy()

    read = store.read(
        DAILY, ["MSFT", "AAPL", "NOPE"], start=date(2020, 1, 3), end="2020-01-07",
        columns=["close", "ts", "symbol"],
    )

    expected = sort_rows(table).filter(
        pc.is_in(pc.field("symbol"), pa.array(["AAPL", "MSFT"]))
        & (pc.field("ts") >= pa.scalar(int(ts[1]), pa.int64()).cast(BAR_SCHEMA.field("ts").type))
        & (pc.field("ts") <= pa.scalar(int(ts[3]), pa.int64()).cast(BAR_SCHEMA.field("ts").type))
    )
    assert read.column_names == ["symbol", "ts", "close"]
    assert read.num_rows == 6
    assert read.equals(expected.select(["symbol", "ts", "close"]))


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (date(2020, 1, 6), date(2020, 1, 6)),
        ("2020-01-06", "2020-01-06"),
        (np.datetime64("2020-01-06"), np.datetime64("2020-01-06")),
        (pd.Timestamp("2020-01-06 00:00", tz=NEW_YORK), pd.Timestamp("2020-01-06 23:00", tz=NEW_YORK)),
        (datetime(2020, 1, 6, 5, tzinfo=UTC), "2020-01-06T12:00:00+00:00"),
        (int(midnight_ns(np.array(["2020-01-06"], dtype="datetime64[D]"))[0]), ns("2020-01-06T05:00Z")),
    ],
)
def test_every_bound_form_selects_the_one_session(
    store: MarketDataStore, make_bars: Any, start: Any, end: Any
) -> None:
    store.write(DAILY, make_bars(["AAPL"], DAYS))

    read = store.read(DAILY, ["AAPL"], start=start, end=end)

    assert read.column("ts").to_pylist() == [pd.Timestamp("2020-01-06 05:00", tz="UTC")]


def test_read_applies_an_extra_filter_and_handles_an_empty_range(
    store: MarketDataStore, make_bars: Any
) -> None:
    table = make_bars(["AAPL", "IBM"], DAYS)
    store.write(DAILY, table)

    read = store.read(DAILY, filter=pc.field("volume") > 500_000)

    assert read.equals(sort_rows(table).filter(pc.field("volume") > 500_000))
    assert store.read(DAILY, ["AAPL"], start="2020-01-08", end="2020-01-02").num_rows == 0
    assert store.read(DAILY, []).schema == BAR_SCHEMA


def test_year_partitioned_read_opens_only_the_overlapping_years(
    store: MarketDataStore, tmp_path: Path
) -> None:
    stamps = ["2012-03-01T15:00Z", "2013-03-01T15:00Z", "2013-10-07T15:00Z", "2014-03-03T15:00Z"]
    store.write(INTRADAY, minute_bars(stamps))
    folder = tmp_path / "root" / "market-data" / "equities" / "intraday" / "symbol=SPY"
    (folder / "year=2012" / "part-0.parquet").write_bytes(b"not parquet")  # any read of 2012 now fails

    bounded = store.read(INTRADAY, ["SPY"], start="2013-01-01", end="2013-12-31")
    open_ended = store.read(INTRADAY, ["SPY"], start="2013-06-01")

    assert bounded.column("ts").to_pylist() == [pd.Timestamp(s) for s in stamps[1:3]]
    assert open_ended.column("ts").to_pylist() == [pd.Timestamp(s) for s in stamps[2:]]
    with pytest.raises(StoreError, match="year=2012"):
        store.read(INTRADAY, ["SPY"], end="2013-12-31")


@pytest.mark.parametrize("symbol", ["BRK.B", "BF-B", "BRK/B", "A=B%20", "ÄB C"])
def test_unsafe_symbol_characters_round_trip(
    store: MarketDataStore, make_bars: Any, tmp_path: Path, symbol: str
) -> None:
    table = make_bars([symbol], DAYS[:2])

    store.write(DAILY, table)

    assert store.symbols(DAILY) == [symbol]
    assert store.read(DAILY, [symbol]).equals(table)
    assert store.time_range(DAILY, symbol) is not None
    assert len([p for p in daily_dir(tmp_path).iterdir()]) == 1  # no nested folder from a "/"


def test_options_read_by_underlying_sorted_by_quote_time_then_contract(store: MarketDataStore) -> None:
    quote_ts = [ns("2016-12-01T16:00Z"), ns("2016-12-01T15:00Z"), ns("2016-12-01T15:00Z")]
    contracts = ["VXX161216C00030000", "VXX161216P00030000", "VXX161216C00030000"]
    n = len(quote_ts)
    columns: dict[str, Any] = {f.name: pa.nulls(n, f.type) for f in OPTION_CHAIN_SCHEMA}
    columns.update(
        underlying=pa.array(["VXX"] * n),
        symbol=pa.array(contracts),
        quote_ts=pa.array(quote_ts, pa.int64()).cast(OPTION_CHAIN_SCHEMA.field("quote_ts").type),
        expiry=pa.array([date(2016, 12, 16)] * n, pa.date32()),
        strike=pa.array([30.0] * n),
        right=pa.array(["C", "P", "C"]),
        bid=pa.array([1.0, 2.0, 3.0]),
    )
    store.write("options/chains", pa.table(columns, schema=OPTION_CHAIN_SCHEMA))

    read = store.read("options/chains", ["VXX"])

    assert read.column("quote_ts").cast(pa.int64()).to_pylist() == sorted(quote_ts)
    assert read.column("symbol").to_pylist() == [contracts[2], contracts[1], contracts[0]]
    assert read.column("bid").to_pylist() == [3.0, 2.0, 1.0]


def test_date_keyed_kind_reads_by_date_and_reports_its_range(store: MarketDataStore) -> None:
    actions = pa.table(
        {
            "symbol": ["AAPL", "AAPL", "AAPL"],
            "ex_date": [date(2014, 6, 9), date(2020, 8, 31), date(2020, 8, 7)],
            "action": ["split", "split", "dividend"],
            "ratio": [7.0, 4.0, None],
            "cash": [None, None, 0.82],
        },
        schema=CORPORATE_ACTION_SCHEMA,
    )
    store.write("reference/corporate_actions", actions)

    read = store.read("reference/corporate_actions", ["AAPL"], start="2020-01-01")
    span = store.time_range("reference/corporate_actions", "AAPL")

    assert read.column("ex_date").to_pylist() == [date(2020, 8, 7), date(2020, 8, 31)]
    expected = midnight_ns(np.array(["2014-06-09", "2020-08-31"], dtype="datetime64[D]"))
    assert span == (int(expected[0]), int(expected[1]))


# ---------------------------------------------------------------- catalogue


def test_time_range_comes_from_the_footers(store: MarketDataStore, make_bars: Any) -> None:
    table = make_bars(["AAPL"], DAYS)
    store.write(DAILY, table)
    store.write(INTRADAY, minute_bars(["2012-03-01T15:00Z", "2013-03-01T15:00Z", "2014-03-03T15:00Z"]))
    ts = table.column("ts").cast(pa.int64()).to_pylist()

    assert store.time_range(DAILY, "AAPL") == (ts[0], ts[-1])
    assert store.time_range(INTRADAY, "SPY") == (ns("2012-03-01T15:00Z"), ns("2014-03-03T15:00Z"))
    assert store.time_range(DAILY, "NOPE") is None


def test_time_range_reads_the_column_when_a_file_has_no_statistics(
    store: MarketDataStore, make_bars: Any, tmp_path: Path
) -> None:
    table = make_bars(["AAPL"], DAYS)
    path = daily_dir(tmp_path) / "symbol=AAPL" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, write_statistics=False)

    ts = table.column("ts").cast(pa.int64()).to_pylist()
    assert store.time_range(DAILY, "AAPL") == (ts[0], ts[-1])


def test_delete_removes_the_symbols(store: MarketDataStore, make_bars: Any) -> None:
    store.write(DAILY, make_bars(["AAPL", "IBM", "MSFT"], DAYS))

    removed = store.delete(DAILY, ["IBM", "MSFT", "NOPE"])

    assert removed == 2
    assert store.symbols(DAILY) == ["AAPL"]
    assert store.read(DAILY, ["IBM"]).num_rows == 0


# ---------------------------------------------------------------- validation


def test_types_are_cast_to_the_schema(store: MarketDataStore, make_bars: Any) -> None:
    table = make_bars(["AAPL"], DAYS)
    new_york_us = pa.timestamp("us", tz="America/New_York")
    loose = table.set_column(
        BAR_SCHEMA.get_field_index("volume"), "volume", table.column("volume").cast(pa.int64())
    ).set_column(BAR_SCHEMA.get_field_index("ts"), "ts", table.column("ts").cast(new_york_us))
    loose = loose.select(list(reversed(loose.column_names)))

    store.write(DAILY, loose)

    assert store.read(DAILY).equals(table)


def test_a_data_frame_is_accepted(store: MarketDataStore, make_bars: Any) -> None:
    table = make_bars(["AAPL", "IBM"], DAYS)
    frame = table.to_pandas()
    frame["trade_count"] = frame["trade_count"].astype("Int64")

    store.write(DAILY, frame.set_index(["symbol", "ts"]))

    assert store.read(DAILY).equals(table)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.drop_columns(["vwap", "open"]), r"missing columns \['open', 'vwap'\]"),
        (lambda t: t.append_column("note", pa.array(["x"] * t.num_rows)), r"unexpected columns \['note'\]"),
        (lambda t: t.set_column(1, "ts", t.column("ts").cast(pa.timestamp("ns"))), "naive timestamps"),
        (lambda t: t.set_column(5, "close", pa.array(["1"] * 10)), "'close' has type string, expected dou"),
        (lambda t: t.set_column(8, "trade_count", pa.array([1.5] * 10)), "'trade_count' cannot be cast"),
        (
            lambda t: t.set_column(0, "symbol", pa.array([None, None] + ["X"] * 8, pa.string())),
            "'symbol' may not be null, but 2 of 10 values are",
        ),
        (lambda t: t.set_column(0, "symbol", pa.array([""] * t.num_rows)), "holds empty strings"),
        (lambda t: t.to_batches()[0], "must be a pyarrow Table or a pandas DataFrame"),
    ],
)
def test_invalid_rows_are_refused_and_nothing_is_written(
    store: MarketDataStore, make_bars: Any, change: Any, message: str
) -> None:
    table = make_bars(["AAPL", "IBM"], DAYS)

    with pytest.raises(DataError, match=message):
        store.write(DAILY, change(table))

    assert store.symbols(DAILY) == []


def test_naive_timestamps_in_a_data_frame_are_refused(store: MarketDataStore, make_bars: Any) -> None:
    frame = make_bars(["AAPL"], DAYS).to_pandas()
    frame["ts"] = frame["ts"].dt.tz_localize(None)

    with pytest.raises(DataError, match="'ts' holds naive timestamps"):
        store.write(DAILY, frame)


def test_bad_read_arguments_are_refused(store: MarketDataStore, make_bars: Any) -> None:
    store.write(DAILY, make_bars(["AAPL"], DAYS))

    with pytest.raises(DataError, match=r"unknown columns \['price'\]; valid columns: \['symbol', 'ts'"):
        store.read(DAILY, columns=["close", "price"])
    with pytest.raises(DataError, match="unknown dataset kind 'equities/weekly'"):
        store.read("equities/weekly")
    with pytest.raises(DataError, match="not one string"):
        store.read(DAILY, "AAPL")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="has no time zone"):
        store.read(DAILY, start=datetime(2020, 1, 3))
    with pytest.raises(DataError, match="not an ISO date"):
        store.read(DAILY, end="2020-13-45")


# ---------------------------------------------------------------- corruption


def test_a_corrupt_file_is_a_store_error_naming_it_and_is_not_overwritten(
    store: MarketDataStore, make_bars: Any, tmp_path: Path
) -> None:
    store.write(DAILY, make_bars(["AAPL", "IBM"], DAYS))
    path = daily_dir(tmp_path) / "symbol=IBM" / "part-0.parquet"
    path.write_bytes(b"garbage that is not parquet")

    with pytest.raises(StoreError, match="symbol=IBM/part-0.parquet"):
        store.read(DAILY)
    with pytest.raises(StoreError, match="symbol=IBM/part-0.parquet"):
        store.write(DAILY, make_bars(["IBM"], DAYS))
    with pytest.raises(StoreError, match="footer"):
        store.time_range(DAILY, "IBM")
    assert path.read_bytes() == b"garbage that is not parquet"
    assert store.read(DAILY, ["AAPL"]).num_rows == 5


# ---------------------------------------------------------------- real data


def test_real_daily_bars_round_trip(store: MarketDataStore, shared_daily: Path) -> None:
    symbols = ["AAPL", "BRK-B", "SPY"]
    source = pq.read_table(shared_daily, filters=pc.field("symbol").isin(symbols))
    assert sorted(set(source.column("symbol").to_pylist())) == symbols
    days = source.column("date").cast(pa.date32()).to_numpy(zero_copy_only=False).astype("datetime64[D]")
    n = source.num_rows
    bars = pa.table(
        {
            "symbol": source.column("symbol"),
            "ts": pa.array(midnight_ns(days)).cast(BAR_SCHEMA.field("ts").type),
            # volume is int64 in the file: the store casts it to float64
            **{name: source.column(name) for name in ("open", "high", "low", "close", "volume")},
            "vwap": pa.nulls(n, pa.float64()),
            "trade_count": pa.nulls(n, pa.int64()),
        }
    )

    result = store.write(DAILY, bars)
    read = store.read(DAILY, symbols)

    assert (result.rows_written, result.rows_duplicate) == (n, 0)
    as_schema = bars.select(BAR_SCHEMA.names).cast(BAR_SCHEMA)
    assert read.equals(sort_rows(as_schema))
    apple = days[source.column("symbol").to_numpy(zero_copy_only=False) == "AAPL"]
    span = midnight_ns(np.array([apple.min(), apple.max()]))
    assert store.time_range(DAILY, "AAPL") == (int(span[0]), int(span[1]))
