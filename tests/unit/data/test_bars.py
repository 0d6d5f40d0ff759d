"""Tests for amcp.data.bars: the Parquet loader, its errors, and BarPanel."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from amcp.config import DataConfig
from amcp.data.bars import BarPanel, load_daily_bars, read_bar_frame, session_close_ns
from amcp.domain.data import BarBatch
from amcp.errors import DataError

REPO = Path(__file__).resolve().parents[3]
SAMPLE = REPO / "data" / "sample" / "daily_bars.parquet"


def _frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["symbol", "date", "open", "high", "low", "close", "volume"])


def _write(path: Path, frame: pd.DataFrame | pa.Table) -> Path:
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path)
    return path


def _good_rows() -> list[tuple]:
    return [
        ("AAA", date(2020, 1, 2), 10.0, 11.0, 9.5, 10.5, 1000),
        ("AAA", date(2020, 1, 3), 10.5, 10.8, 10.1, 10.2, 1200),
        ("AAA", date(2020, 1, 6), 10.2, 10.9, 10.0, 10.7, 900),
        ("BBB", date(2020, 1, 2), 50.0, 51.0, 49.0, 50.5, 300),
        ("BBB", date(2020, 1, 6), 50.5, 52.0, 50.0, 51.5, 400),
        ("CCC", date(2020, 1, 3), 5.0, 5.2, 4.9, 5.1, 7000),
    ]


@pytest.fixture
def bar_file(tmp_path: Path) -> Path:
    return _write(tmp_path / "bars.parquet", _frame(_good_rows()))


# --------------------------------------------------------------------------- loading


def test_load_aligns_symbols_on_the_union_of_sessions(bar_file: Path) -> None:
    panel, report = load_daily_bars(DataConfig(path=str(bar_file)))

    assert panel.symbols == ("AAA", "BBB", "CCC")
    assert len(panel) == 3
    assert panel.close.shape == (3, 3)
    np.testing.assert_array_equal(panel.close[:, 0], [10.5, 10.2, 10.7])
    np.testing.assert_array_equal(panel.close[:, 1], [50.5, np.nan, 51.5])
    np.testing.assert_array_equal(panel.close[:, 2], [np.nan, 5.1, np.nan])
    np.testing.assert_array_equal(panel.volume[:, 0], [1000.0, 1200.0, 900.0])
    assert report.rows_in == report.rows_out == 6
    assert report.is_clean


def test_timestamps_are_the_new_york_close_in_utc(bar_file: Path) -> None:
    panel, _ = load_daily_bars(DataConfig(path=str(bar_file)))

    expected = datetime(2020, 1, 2, 21, 0, tzinfo=UTC)  # EST: 16:00 = 21:00 UTC
    assert int(panel.ts_ns[0]) == int(expected.timestamp()) * 10**9
    assert panel.ts_ns.dtype == np.int64
    assert (np.diff(panel.ts_ns) > 0).all()
    assert str(panel.dates[0]) == "2020-01-02"


def test_session_close_follows_daylight_saving_time() -> None:
    days = np.array([(date(2020, 7, 1) - date(1970, 1, 1)).days, (date(2020, 12, 1) - date(1970, 1, 1)).days])

    ts = session_close_ns(days)

    assert int(ts[0]) == int(datetime(2020, 7, 1, 20, tzinfo=UTC).timestamp()) * 10**9  # EDT
    assert int(ts[1]) == int(datetime(2020, 12, 1, 21, tzinfo=UTC).timestamp()) * 10**9  # EST


def test_symbols_filter_orders_columns_as_configured(bar_file: Path) -> None:
    panel, _ = load_daily_bars(DataConfig(path=str(bar_file), symbols=("CCC", "AAA")))

    assert panel.symbols == ("CCC", "AAA")
    assert len(panel) == 3  # sessions of CCC and AAA only
    np.testing.assert_array_equal(panel.close[:, 1], [10.5, 10.2, 10.7])


def test_start_and_end_are_inclusive(bar_file: Path) -> None:
    config = DataConfig(path=str(bar_file), start=date(2020, 1, 3), end=date(2020, 1, 3))

    panel, report = load_daily_bars(config)

    assert len(panel) == 1
    assert str(panel.dates[0]) == "2020-01-03"
    assert report.rows_in == 2  # AAA and CCC traded that day


def test_string_and_timestamp_dates_load_like_date32(tmp_path: Path) -> None:
    frame = _frame(_good_rows())
    as_text = frame.assign(date=[d.isoformat() for d in frame["date"]])
    as_stamp = frame.assign(date=pd.to_datetime(frame["date"]))
    as_utc = frame.assign(date=pd.to_datetime(frame["date"]).dt.tz_localize("UTC"))
    expected, _ = load_daily_bars(DataConfig(path=str(_write(tmp_path / "d.parquet", frame))))

    for name, variant in {"text": as_text, "stamp": as_stamp, "utc": as_utc}.items():
        path = _write(tmp_path / f"{name}.parquet", variant)
        panel, _ = load_daily_bars(DataConfig(path=str(path), start=date(2020, 1, 3)))
        np.testing.assert_array_equal(panel.ts_ns, expected.ts_ns[1:], err_msg=name)
        np.testing.assert_array_equal(panel.close, expected.close[1:], err_msg=name)


def test_extra_columns_dictionary_symbols_and_integer_prices_are_accepted(tmp_path: Path) -> None:
    frame = _frame(_good_rows()).assign(asset_type="stock")
    frame["symbol"] = frame["symbol"].astype("category")
    frame["open"] = frame["open"].round().astype("int64")
    path = _write(tmp_path / "bars.parquet", frame)

    panel, _ = load_daily_bars(DataConfig(path=str(path)))

    assert panel.symbols == ("AAA", "BBB", "CCC")
    assert panel.open.dtype == np.float64
    assert panel.open[0, 0] == 10.0


def test_unsorted_file_is_sorted_and_loaded(tmp_path: Path) -> None:
    path = _write(tmp_path / "bars.parquet", _frame(_good_rows()[::-1]))

    panel, _ = load_daily_bars(DataConfig(path=str(path)))

    np.testing.assert_array_equal(panel.close[:, 0], [10.5, 10.2, 10.7])


def test_loaded_panel_is_read_only(bar_file: Path) -> None:
    panel, _ = load_daily_bars(DataConfig(path=str(bar_file)))

    with pytest.raises(ValueError):
        panel.close[0, 0] = 1.0


def test_read_bar_frame_returns_typed_rows_in_file_order(bar_file: Path) -> None:
    frame = read_bar_frame(bar_file)

    assert list(frame.columns) == ["symbol", "date", "open", "high", "low", "close", "volume"]
    assert len(frame) == 6
    assert frame["symbol"].tolist() == ["AAA", "AAA", "AAA", "BBB", "BBB", "CCC"]
    assert frame["date"].iloc[0] == pd.Timestamp("2020-01-02")
    assert frame["volume"].dtype == np.float64


def test_read_bar_frame_filters(bar_file: Path) -> None:
    frame = read_bar_frame(bar_file, symbols=["BBB"], end=date(2020, 1, 3))

    assert frame["symbol"].tolist() == ["BBB"]


# --------------------------------------------------------------------------- errors


def test_missing_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.parquet: bar file not found"):
        load_daily_bars(DataConfig(path=str(tmp_path / "nope.parquet")))


def test_directory_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a file"):
        load_daily_bars(DataConfig(path=str(tmp_path)))


def test_empty_file_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.parquet"
    path.write_bytes(b"")

    with pytest.raises(DataError, match=r"empty\.parquet: the file is empty"):
        load_daily_bars(DataConfig(path=str(path)))


def test_random_bytes_are_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "noise.parquet"
    path.write_bytes(np.random.default_rng(0).bytes(4096))

    with pytest.raises(DataError, match=r"noise\.parquet: not a Parquet file") as info:
        load_daily_bars(DataConfig(path=str(path)))
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_truncated_file_is_a_data_error(tmp_path: Path, bar_file: Path) -> None:
    data = bar_file.read_bytes()
    path = tmp_path / "cut.parquet"
    path.write_bytes(data[: len(data) // 2])

    with pytest.raises(DataError, match=r"cut\.parquet: not a Parquet file, or it is corrupt or truncated"):
        load_daily_bars(DataConfig(path=str(path)))


def test_corrupt_page_data_is_a_data_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    n = 5000
    frame = pd.DataFrame(
        {
            "symbol": ["AAA"] * n,
            "date": pd.date_range("2000-01-01", periods=n).date,
            "open": rng.random(n),
            "high": rng.random(n),
            "low": rng.random(n),
            "close": rng.random(n),
            "volume": rng.integers(0, 1000, n),
        }
    )
    pq.write_table(pa.Table.from_pandas(frame), tmp_path / "good.parquet", write_page_checksum=True)
    good = (tmp_path / "good.parquet").read_bytes()
    middle = len(good) // 2
    path = tmp_path / "garbled.parquet"
    path.write_bytes(
        good[:middle] + bytes(b ^ 0xFF for b in good[middle : middle + 2000]) + good[middle + 2000 :]
    )

    with pytest.raises(DataError, match=r"garbled\.parquet"):
        load_daily_bars(DataConfig(path=str(path)))


def test_file_without_rows_is_a_data_error(tmp_path: Path) -> None:
    schema = pa.schema(
        [("symbol", pa.string()), ("date", pa.date32())]
        + [(k, pa.float64()) for k in ("open", "high", "low", "close")]
        + [("volume", pa.int64())]
    )
    path = _write(tmp_path / "none.parquet", schema.empty_table())

    with pytest.raises(DataError, match="no rows"):
        load_daily_bars(DataConfig(path=str(path)))


def test_no_rows_after_the_date_filter_is_a_data_error(bar_file: Path) -> None:
    config = DataConfig(path=str(bar_file), start=date(2021, 1, 1))

    with pytest.raises(DataError, match=r"no rows between 2021-01-01 and the last date"):
        load_daily_bars(config)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "bars.parquet", _frame(_good_rows()).drop(columns=["high", "volume"]))

    with pytest.raises(DataError, match=r"missing required columns \['high', 'volume'\]"):
        load_daily_bars(DataConfig(path=str(path)))


def test_non_numeric_price_column_is_a_data_error(tmp_path: Path) -> None:
    frame = _frame(_good_rows())
    frame["close"] = frame["close"].astype(str)
    path = _write(tmp_path / "bars.parquet", frame)

    with pytest.raises(DataError, match=r"non-numeric price/volume column: \{'close': '(large_)?string'\}"):
        load_daily_bars(DataConfig(path=str(path)))


def test_unparseable_date_text_is_a_data_error(tmp_path: Path) -> None:
    frame = _frame(_good_rows())
    frame["date"] = ["2020-01-02", "2020-01-03", "soon", "2020-01-02", "2020-01-06", "2020-01-03"]
    path = _write(tmp_path / "bars.parquet", frame)

    with pytest.raises(DataError, match="not a YYYY-MM-DD date: 'soon'"):
        load_daily_bars(DataConfig(path=str(path)))


def test_unknown_symbols_are_named_with_some_available(bar_file: Path) -> None:
    config = DataConfig(path=str(bar_file), symbols=("AAA", "ZZZ", "bbb"))

    with pytest.raises(DataError) as info:
        load_daily_bars(config)

    message = str(info.value)
    assert "unknown symbols ['ZZZ', 'bbb']" in message
    assert "AAA, BBB, CCC" in message
    assert "did you mean 'BBB' for 'bbb'?" in message


def test_known_symbol_without_rows_in_the_window_is_a_data_error(bar_file: Path) -> None:
    config = DataConfig(path=str(bar_file), symbols=("AAA", "CCC"), start=date(2020, 1, 6))

    with pytest.raises(DataError, match=r"no rows for symbol \['CCC'\] between 2020-01-06"):
        load_daily_bars(config)


def test_strict_policy_stops_on_a_defect(tmp_path: Path) -> None:
    rows = _good_rows() + [("DDD", date(2020, 1, 2), 10.0, 9.0, 9.5, 9.8, 10)]
    path = _write(tmp_path / "bars.parquet", _frame(rows))

    with pytest.raises(DataError, match=r"ohlc_inconsistent=1 .*DDD 2020-01-02"):
        load_daily_bars(DataConfig(path=str(path), quality_policy="strict"))


def test_file_where_every_row_is_dropped_is_a_data_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "bars.parquet", _frame([("AAA", date(2020, 1, 2), 0.0, 0.0, 0.0, 0.0, 1)]))

    with pytest.raises(DataError, match="no rows left after the quality checks"):
        load_daily_bars(DataConfig(path=str(path)))


# --------------------------------------------------------------------------- panel


@pytest.fixture
def panel(bar_file: Path) -> BarPanel:
    return load_daily_bars(DataConfig(path=str(bar_file)))[0]


def test_batch_is_one_session_of_every_symbol(panel: BarPanel) -> None:
    batch = panel.batch(1)

    assert isinstance(batch, BarBatch)
    assert batch.ts_ns == int(panel.ts_ns[1])
    assert batch.symbols == panel.symbols
    np.testing.assert_array_equal(batch.present, [True, False, True])
    bar = batch.bar(0)
    assert bar is not None and bar.close == 10.2 and bar.symbol == "AAA"
    assert batch.bar(1) is None
    assert panel.batch(-1).ts_ns == int(panel.ts_ns[-1])


def test_batch_out_of_range_raises_index_error(panel: BarPanel) -> None:
    with pytest.raises(IndexError, match="bar index 3 out of range"):
        panel.batch(3)


def test_batches_iterate_in_time_order(panel: BarPanel) -> None:
    assert [b.ts_ns for b in panel.batches()] == panel.ts_ns.tolist()
    assert [b.ts_ns for b in panel.batches(1)] == panel.ts_ns[1:].tolist()
    assert [b.ts_ns for b in panel.batches(0, 2)] == panel.ts_ns[:2].tolist()


def test_slice_keeps_symbols_and_cuts_sessions(panel: BarPanel) -> None:
    part = panel.slice(1, 3)

    assert part.symbols == panel.symbols
    assert len(part) == 2
    np.testing.assert_array_equal(part.close, panel.close[1:3])


def test_select_reorders_and_drops_sessions_without_bars(panel: BarPanel) -> None:
    part = panel.select(["BBB"])

    assert part.symbols == ("BBB",)
    assert len(part) == 2
    np.testing.assert_array_equal(part.close[:, 0], [50.5, 51.5])


def test_select_unknown_symbol_is_a_data_error(panel: BarPanel) -> None:
    with pytest.raises(DataError, match=r"symbols not in this panel: \['XYZ'\]"):
        panel.select(["AAA", "XYZ"])


def test_panel_rejects_non_increasing_timestamps() -> None:
    grid = np.ones((2, 1))
    with pytest.raises(DataError, match="strictly increasing"):
        BarPanel(("A",), np.array([5, 5], dtype=np.int64), grid, grid, grid, grid, grid)


def test_panel_rejects_misshapen_arrays() -> None:
    grid = np.ones((2, 1))
    with pytest.raises(DataError, match=r"BarPanel.volume must be a float64 array of shape \(2, 1\)"):
        BarPanel(("A",), np.array([1, 2], dtype=np.int64), grid, grid, grid, grid, np.ones((2, 2)))


# --------------------------------------------------------------------------- real data


def test_bundled_sample_loads_and_reports_its_real_defects() -> None:
    panel, report = load_daily_bars(DataConfig(path=str(SAMPLE)))

    assert len(panel.symbols) == 35 and {"SPY", "AAPL", "BEN", "EIX"} <= set(panel.symbols)
    assert len(panel) == 1980
    assert str(panel.dates[0]) == "2010-01-04" and str(panel.dates[-1]) == "2017-11-10"
    assert report.counts["ohlc_inconsistent"] == 5
    assert report.counts["high_below_low"] == 3
    assert report.counts["bad_print"] == 5  # shifted decimals in BEN highs and EIX closes, clamped
    assert report.counts["outlier_return"] == 0  # so they leave no false 900% moves behind
    assert set(report.by_symbol) == {"BEN", "EIX"}
    assert SAMPLE.stat().st_size < 2_000_000


def test_full_shared_file_is_repaired_clean(shared_daily: Path) -> None:
    # Arrange: the expected defect counts, computed independently with pandas.
    columns = ["symbol", "date", "open", "high", "low", "close", "volume"]
    raw = pq.read_table(shared_daily, columns=columns, read_dictionary=["symbol"]).to_pandas(date_as_object=False)
    o, h, l, c = (raw[k] for k in ("open", "high", "low", "close"))
    priced = (o > 0) & (h > 0) & (l > 0) & (c > 0)
    inconsistent = priced & ((h < l) | (h < np.maximum(o, c)) | (l > np.minimum(o, c)))
    duplicate = raw.duplicated(["symbol", "date"], keep="last")
    kept = raw[priced & ~duplicate].sort_values(["symbol", "date"])
    moves = kept.groupby("symbol", observed=True)["close"].pct_change()

    # Act
    panel, report = load_daily_bars(DataConfig(path=str(shared_daily)))

    # Assert: every defect found and the panel clean.
    assert report.rows_in == len(raw) == 3_797_457
    assert report.counts["ohlc_inconsistent"] == int(inconsistent.sum()) > 0
    assert report.counts["high_below_low"] == int((priced & (h < l)).sum()) > 0
    assert report.counts["bad_price"] == int((~priced).sum())
    assert report.counts["duplicate"] == int(duplicate.sum())
    assert report.counts["bad_volume"] == int((raw["volume"] < 0).sum())
    assert 0 < report.counts["bad_print"] <= report.counts["ohlc_inconsistent"]
    # Clamping bad prints removes the false moves they caused; real large moves stay reported.
    assert 0 < report.counts["outlier_return"] <= int((moves.abs() > 1.0).sum())
    assert report.rows_out == report.rows_in - report.counts["bad_price"] - report.counts["duplicate"]
    assert len(panel.symbols) == raw["symbol"].nunique()
    present = ~np.isnan(panel.close)
    assert int(present.sum()) == report.rows_out
    with np.errstate(invalid="ignore"):
        assert not (panel.high < panel.low).any()
        assert not (panel.high < np.maximum(panel.open, panel.close)).any()
        assert not (panel.low > np.minimum(panel.open, panel.close)).any()
        assert not (panel.low <= 0).any()
        assert not (panel.volume < 0).any()
