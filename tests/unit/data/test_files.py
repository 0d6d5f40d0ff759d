"""Tests for amcp.data.files: CSV/Parquet bar files to BAR_SCHEMA rows, with clear errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amcp.data.calendar import midnight_ns
from amcp.data.files import read_daily_bar_file, read_intraday_bar_file
from amcp.data.schemas import BAR_SCHEMA
from amcp.errors import DataError
from tests.conftest import SHARED_DATA, require

MINUTE_FILE = SHARED_DATA / "intraday" / "us_equities_minute_2013-10.parquet"


def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _ts(*iso: str) -> list[int]:
    return pd.DatetimeIndex(list(iso)).tz_localize("UTC").as_unit("ns").asi8.tolist()


def test_shared_daily_file_becomes_bar_rows_stamped_at_new_york_midnight(shared_daily: Path) -> None:
    source = pq.read_table(shared_daily, columns=["symbol", "date", "close", "volume"])

    bars = read_daily_bar_file(str(shared_daily))

    assert bars.schema == BAR_SCHEMA
    assert bars.num_rows == source.num_rows
    assert bars.column("symbol").equals(source.column("symbol"))
    days = source.column("date").cast(pa.int32()).to_numpy().astype("datetime64[D]")
    np.testing.assert_array_equal(bars.column("ts").cast(pa.int64()).to_numpy(), midnight_ns(days))
    np.testing.assert_array_equal(bars.column("close").to_numpy(), source.column("close").to_numpy())
    np.testing.assert_array_equal(bars.column("volume").to_numpy(), source.column("volume").to_numpy().astype(float))
    assert bars.column("vwap").null_count == bars.num_rows


def test_shared_minute_file_keeps_its_utc_timestamps() -> None:
    require(MINUTE_FILE.is_file(), f"the shared minute file {MINUTE_FILE} is not present")
    source = pq.read_table(MINUTE_FILE)

    bars = read_intraday_bar_file(str(MINUTE_FILE), symbol="SPY")

    spy = source.filter(pa.compute.equal(source.column("symbol"), "SPY"))
    assert bars.schema == BAR_SCHEMA
    assert bars.num_rows == spy.num_rows > 0
    assert set(bars.column("symbol").to_pylist()) == {"SPY"}
    expected_ns = spy.column("ts").cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64())
    assert bars.column("ts").cast(pa.int64()).equals(expected_ns)
    np.testing.assert_array_equal(bars.column("high").to_numpy(), spy.column("high").to_numpy())


def test_single_symbol_csv_with_capitalised_headers_takes_the_given_symbol(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "aapl.csv",
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2020-01-02,74.06,75.15,73.80,75.09,73.4,135480400\n"
        "2020-01-03,74.29,75.14,74.13,74.36,72.7,146322800\n",
    )

    bars = read_daily_bar_file(path, symbol="AAPL")

    assert bars.column("symbol").to_pylist() == ["AAPL", "AAPL"]
    assert bars.column("ts").cast(pa.int64()).to_pylist() == _ts("2020-01-02 05:00", "2020-01-03 05:00")
    assert bars.column("close").to_pylist() == [75.09, 74.36]  # "Adj Close" is ignored
    assert bars.column("volume").to_pylist() == [135480400.0, 146322800.0]


def test_symbol_argument_filters_a_multi_symbol_file(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "bars.csv",
        "symbol,date,open,high,low,close,volume,vwap,trade_count\n"
        "AAA,2020-01-02,1,2,0.5,1.5,10,1.2,3\n"
        "BBB,2020-01-02,5,6,4,5.5,20,,\n"
        "BBB,2020-01-03,5,6,4,5.6,20,5.1,7\n",
    )

    everything = read_daily_bar_file(path)
    bbb = read_daily_bar_file(path, symbol="BBB")

    assert everything.column("symbol").to_pylist() == ["AAA", "BBB", "BBB"]
    assert everything.column("trade_count").to_pylist() == [3, None, 7]
    assert bbb.column("close").to_pylist() == [5.5, 5.6]
    assert bbb.column("vwap").to_pylist() == [None, 5.1]
    with pytest.raises(DataError, match=r"no rows for symbol 'BBC'.*did you mean 'BBB'"):
        read_daily_bar_file(path, symbol="BBC")


def test_column_map_renames_file_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "ticker,day,o,h,l,px_last,shares\nAAA,2020-01-02,1,2,0.5,1.5,10\n")

    bars = read_daily_bar_file(
        path,
        column_map={"day": "date", "o": "open", "h": "high", "l": "low", "px_last": "close", "shares": "volume"},
    )

    assert bars.to_pylist()[0] | {"ts": None} == {
        "symbol": "AAA",
        "ts": None,
        "open": 1.0,
        "high": 2.0,
        "low": 0.5,
        "close": 1.5,
        "volume": 10.0,
        "vwap": None,
        "trade_count": None,
    }


def test_missing_column_lists_the_file_columns_and_suggests_a_close_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "symbol,date,open,high,low,closing,volume\nAAA,2020-01-02,1,2,0.5,1.5,10\n")

    with pytest.raises(DataError) as error:
        read_daily_bar_file(path)

    message = str(error.value)
    assert "missing column ['close']" in message
    assert "'closing'" in message and "the file has ['symbol', 'date'" in message
    assert "did you mean 'closing' for 'close'" in message


def test_unparseable_date_names_the_value_and_row(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "x.csv",
        "symbol,date,open,high,low,close,volume\n"
        "AAA,2020-01-02,1,2,0.5,1.5,10\n"
        "AAA,2020-02-30,1,2,0.5,1.5,10\n",
    )

    with pytest.raises(DataError, match=r"'2020-02-30' at data row 2 \(line 3\)"):
        read_daily_bar_file(path)


def test_non_numeric_price_names_the_value_and_row(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "x.csv",
        "symbol,date,open,high,low,close,volume\n"
        "AAA,2020-01-02,1,2,0.5,1.5,10\n"
        "AAA,2020-01-03,1,2,0.5,1.5,10\n"
        "AAA,2020-01-06,1,2,0.5,1.5O,10\n",
    )

    with pytest.raises(DataError, match=r"column 'close' has a value that is not a number: '1.5O' at data row 3"):
        read_daily_bar_file(path)


def test_empty_cells_become_nulls_not_errors(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "symbol,date,open,high,low,close,volume\nAAA,2020-01-02,,2,0.5,1.5,\n")

    bars = read_daily_bar_file(path)

    assert bars.column("open").to_pylist() == [None]
    assert bars.column("volume").to_pylist() == [None]


def test_file_without_symbol_column_needs_symbol_argument(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.csv", "date,open,high,low,close,volume\n2020-01-02,1,2,0.5,1.5,10\n")

    with pytest.raises(DataError, match="no symbol column"):
        read_daily_bar_file(path)


def test_gzipped_csv_is_read(tmp_path: Path) -> None:
    path = tmp_path / "x.csv.gz"
    path.write_bytes(gzip.compress(b"symbol,date,open,high,low,close,volume\nAAA,2020-01-02,1,2,0.5,1.5,10\n"))

    bars = read_daily_bar_file(str(path))

    assert bars.column("close").to_pylist() == [1.5]


def test_daily_timestamps_with_a_zone_take_their_new_york_date(tmp_path: Path) -> None:
    # Alpaca stamps a daily bar at 00:00 New York = 05:00 UTC in winter.
    path = tmp_path / "x.parquet"
    stamps = pa.array(_ts("2020-01-02 05:00", "2020-07-01 04:00"), pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
    pq.write_table(
        pa.table({"symbol": ["A", "A"], "timestamp": stamps, "open": [1.0, 1.0], "high": [2.0, 2.0],
                  "low": [0.5, 0.5], "close": [1.5, 1.5], "volume": [10, 10]}),
        path,
    )

    bars = read_daily_bar_file(str(path))

    assert bars.column("ts").equals(pa.chunked_array([stamps]))


def test_intraday_csv_offsets_are_converted_and_naive_times_taken_as_utc(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "m.csv",
        "symbol,timestamp,open,high,low,close,volume\n"
        "SPY,2013-10-07T09:30:00-04:00,1,2,0.5,1.5,10\n"
        "SPY,2013-10-07 13:31:00,1,2,0.5,1.5,10\n"
        "SPY,2013-10-07T13:32:00Z,1,2,0.5,1.5,10\n",
    )

    bars = read_intraday_bar_file(path)

    assert bars.column("ts").cast(pa.int64()).to_pylist() == _ts(
        "2013-10-07 13:30", "2013-10-07 13:31", "2013-10-07 13:32"
    )


def test_intraday_file_with_dates_only_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.parquet"
    pq.write_table(
        pa.table({"symbol": ["A"], "date": pa.array([0], pa.int32()).cast(pa.date32()), "open": [1.0],
                  "high": [2.0], "low": [0.5], "close": [1.5], "volume": [10]}),
        path,
    )

    with pytest.raises(DataError, match="must hold timestamps"):
        read_intraday_bar_file(str(path))


def test_unknown_extension_and_missing_file_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown file type"):
        read_daily_bar_file(str(tmp_path / "bars.xlsx"))
    with pytest.raises(DataError, match="file not found"):
        read_daily_bar_file(str(tmp_path / "bars.csv"))
    with pytest.raises(DataError, match="file not found"):
        read_daily_bar_file(str(tmp_path / "bars.parquet"))


def test_trade_count_must_be_whole_and_nan_counts_are_missing(tmp_path: Path) -> None:
    good = tmp_path / "good.parquet"
    pq.write_table(
        pa.table({"symbol": ["A", "A"], "date": ["2020-01-02", "2020-01-03"], "open": [1.0, 1.0],
                  "high": [2.0, 2.0], "low": [0.5, 0.5], "close": [1.5, 1.5], "volume": [10, 10],
                  "trade_count": [3.0, float("nan")]}),
        good,
    )
    bad = _write(
        tmp_path,
        "bad.csv",
        "symbol,date,open,high,low,close,volume,trade_count\n"
        "A,2020-01-02,1,2,0.5,1.5,10,3\n"
        "A,2020-01-03,1,2,0.5,1.5,10,2.5\n",
    )

    assert read_daily_bar_file(str(good)).column("trade_count").to_pylist() == [3, None]
    with pytest.raises(DataError, match=r"'trade_count' has a value that is not an integer: '2.5' at data row 2"):
        read_daily_bar_file(bad)
