"""Tests for amcp.data.table_quality: defects of BAR_SCHEMA tables repaired, quarantined or refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from amcp.data.calendar import TradingCalendar, midnight_ns
from amcp.data.files import read_daily_bar_file
from amcp.data.schemas import BAR_SCHEMA
from amcp.data.table_quality import DEFECT_COLUMN, TABLE_DEFECT_KINDS, TableQualityReport, check_bars
from amcp.errors import DataError

def _bars(rows: list[tuple[str, str, float, float, float, float, float]]) -> pa.Table:
    """BAR_SCHEMA rows from (symbol, iso date, open, high, low, close, volume)."""
    days = np.array([r[1] for r in rows], dtype="datetime64[D]")
    columns = list(zip(*rows, strict=True))
    return pa.Table.from_pydict(
        {
            "symbol": list(columns[0]),
            "ts": pa.array(midnight_ns(days), pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            **{name: list(columns[k]) for k, name in enumerate(("open", "high", "low", "close", "volume"), start=2)},
            "vwap": [None] * len(rows),
            "trade_count": [None] * len(rows),
        },
        schema=BAR_SCHEMA,
    )


def _series(symbol: str, days: np.ndarray, close: float = 10.0) -> list[tuple]:
    return [(symbol, str(d), close, close + 0.5, close - 0.5, close, 1000.0) for d in days]


def _frame(table: pa.Table) -> pd.DataFrame:
    frame = table.select(BAR_SCHEMA.names).to_pandas()
    frame["ts"] = frame["ts"].astype("int64")
    return frame


def _row_hashes(table: pa.Table) -> np.ndarray:
    """A sorted hash per row (all BAR_SCHEMA columns): equal arrays = the same multiset of rows."""
    return np.sort(pd.util.hash_pandas_object(_frame(table), index=False).to_numpy())


# --------------------------------------------------------------------------- the real file


@pytest.fixture(scope="module")
def real(shared_daily: Path) -> pa.Table:
    return read_daily_bar_file(str(shared_daily))


@pytest.fixture(scope="module")
def real_frame(real: pa.Table) -> pd.DataFrame:
    return _frame(real)


@pytest.fixture(scope="module")
def injected(real: pa.Table) -> pa.Table:
    """The real table plus one duplicate, one zero price and one negative volume, on real rows."""
    frame = real.slice(1000, 3).to_pandas()
    frame.loc[1, "open"] = 0.0
    frame.loc[2, "volume"] = -5.0
    extra = pa.Table.from_pandas(frame, schema=BAR_SCHEMA, preserve_index=False)
    # Rows 1 and 2 now repeat the (symbol, ts) of real rows, so they are duplicates of those;
    # row 0 is a plain duplicate. The extras come last, so the extras are the rows "kept".
    return pa.concat_tables([real, extra])


@pytest.fixture(scope="module")
def quarantined(real: pa.Table) -> tuple[pa.Table, pa.Table, TableQualityReport]:
    return check_bars(real, policy="quarantine")


def test_real_file_counts_match_an_independent_pandas_count(
    real_frame: pd.DataFrame, quarantined: tuple[pa.Table, pa.Table, TableQualityReport]
) -> None:
    _, _, report = quarantined
    f = real_frame
    body_high = f[["open", "close"]].max(axis=1)
    body_low = f[["open", "close"]].min(axis=1)
    inconsistent = (f.high < f.low) | (f.high < body_high) | (f.low > body_low)

    assert report.totals["high_below_low"] == int((f.high < f.low).sum()) > 0
    assert report.totals["ohlc_inconsistent"] == int(inconsistent.sum()) > 0
    assert 0 < report.totals["bad_print"] <= report.totals["ohlc_inconsistent"]
    # The shared file has no duplicates, bad prices or bad volumes (checked independently).
    assert report.totals["duplicate"] == int(f.duplicated(["symbol", "ts"]).sum())
    assert report.totals["bad_price"] == int((f[["open", "high", "low", "close"]] <= 0).any(axis=1).sum())
    assert report.totals["bad_volume"] == int((f.volume < 0).sum())
    # Outliers: on the rows that pass, close-to-close per symbol.
    passed = f[~inconsistent].sort_values(["symbol", "ts"])
    moves = passed.groupby("symbol").close.pct_change().abs()
    assert report.totals["outlier_return"] == int((moves > 1.0).sum()) > 0
    assert report.rows_in == len(f)


def test_real_file_gaps_agree_with_the_calendar_per_symbol(
    quarantined: tuple[pa.Table, pa.Table, TableQualityReport],
) -> None:
    clean, _, report = quarantined
    assert report.totals["missing_session"] > 0
    worst = sorted(report.per_symbol.values(), key=lambda q: -q.missing_sessions)[:5]
    some = [q.symbol for q in worst] + ["AAPL", "SPY", "EIX"]
    frame = _frame(clean)

    for symbol in some:
        ts = frame.loc[frame.symbol == symbol, "ts"].to_numpy()
        days = pd.DatetimeIndex(ts).tz_localize("UTC").tz_convert("America/New_York").tz_localize(None)
        days = days.to_numpy().astype("datetime64[D]")
        expected = TradingCalendar().missing_sessions(days[days >= np.datetime64("1990-01-01")]).size
        assert report.per_symbol[symbol].missing_sessions == expected, symbol
        assert report.per_symbol[symbol].counts["missing_session"] == expected


def test_repair_on_real_data_leaves_no_ohlc_inconsistency_and_drops_only_bad_rows(injected: pa.Table) -> None:
    clean, dropped, report = check_bars(injected, policy="repair")

    out = _frame(clean)
    assert not ((out.high < out.low) | (out.high < out[["open", "close"]].max(axis=1))).any()
    assert not (out.low > out[["open", "close"]].min(axis=1)).any()
    # Each injected row repeats a real row's key: the real copies are duplicates (the last
    # copy is kept), then the kept zero-price copy is a bad price and the -5 volume a bad volume.
    assert report.totals["duplicate"] == 3
    assert report.totals["bad_price"] == 1
    assert report.totals["bad_volume"] == 1
    assert report.rows_out == injected.num_rows - 4 == clean.num_rows
    assert sorted(dropped.column(DEFECT_COLUMN).to_pylist()) == ["bad_price"] + ["duplicate"] * 3
    assert (out.volume >= 0).all()
    assert report.per_symbol[str(injected.column("symbol")[-1])].counts["bad_volume"] == 1
    fixed = out[(out.symbol == str(injected.column("symbol")[-1])) & (out.ts == injected.column("ts")[-1].value)]
    assert fixed.volume.tolist() == [0.0]


def test_quarantine_keeps_every_row_exactly_once(injected: pa.Table) -> None:
    clean, quarantine, report = check_bars(injected, policy="quarantine")

    assert clean.num_rows + quarantine.num_rows == injected.num_rows
    assert report.rows_quarantined == quarantine.num_rows
    together = pa.concat_tables([clean, quarantine.drop_columns([DEFECT_COLUMN])])
    np.testing.assert_array_equal(_row_hashes(together), _row_hashes(injected))
    labels = quarantine.column(DEFECT_COLUMN).to_pylist()
    assert labels.count("duplicate") == 3
    assert sum("ohlc_inconsistent" in label for label in labels) == report.totals["ohlc_inconsistent"]


def test_strict_names_the_first_real_defect(real: pa.Table, real_frame: pd.DataFrame) -> None:
    f = real_frame.sort_values(["symbol", "ts"], kind="stable")
    bad = f[(f.high < f.low) | (f.high < f[["open", "close"]].max(axis=1)) | (f.low > f[["open", "close"]].min(axis=1))]
    first = bad.iloc[0]
    day = pd.Timestamp(first.ts, unit="ns", tz="UTC").tz_convert("America/New_York").date().isoformat()

    with pytest.raises(DataError) as error:
        check_bars(real, policy="strict")

    message = str(error.value)
    assert f"ohlc_inconsistent {first.symbol} {day}" in message
    assert f"c={first.close:g}" in message


# --------------------------------------------------------------------------- hand-built tables


def test_one_defect_of_each_kind_gives_exactly_those_counts() -> None:
    days = TradingCalendar().sessions("2020-01-02", "2020-01-10")  # 7 sessions
    rows = (
        _series("AAA", days[:3])
        + [_series("AAA", days[2:3])[0]]  # duplicate of AAA's third session
        + [("AAA", str(days[3]), 10.0, 10.5, 9.5, 10.0, np.nan)]  # bad volume
        + [("BAD", str(days[0]), 10.0, 10.5, -1.0, 10.0, 100.0)]  # bad price (alone, so no gap)
        + _series("BBB", days[:2])
        + [("BBB", str(days[2]), 10.0, 9.5, 10.5, 10.0, 100.0)]  # high < low, no lone outlier field
        + [("BBB", str(days[3]), 10.0, 10.5, 9.5, 1.0, 100.0)]  # close is a bad print (10x low)
        + _series("BBB", days[4:5])
        + _series("CCC", days[:2]) + _series("CCC", days[2:4], close=25.0)  # one +150% move
        + _series("DDD", np.delete(days, 3))  # one missing session
        + _series("EEE", days[:2]) + _series("EEE", np.array(["2020-01-04"], dtype="datetime64[D]"))  # Saturday
    )

    clean, quarantine, report = check_bars(_bars(rows), policy="repair")

    assert report.totals == {
        "duplicate": 1,
        "bad_price": 1,
        "ohlc_inconsistent": 2,
        "high_below_low": 1,
        "bad_print": 1,
        "bad_volume": 1,
        "outlier_return": 1,
        "missing_session": 1,
        "non_session": 1,
    }
    assert report.per_symbol["CCC"].counts["outlier_return"] == 1
    assert report.per_symbol["DDD"].missing_sessions == 1
    assert report.per_symbol["BAD"].rows_out == 0
    assert quarantine.num_rows == 2 and clean.num_rows == len(rows) - 2
    bbb = clean.filter(pa.compute.equal(clean.column("symbol"), "BBB")).to_pandas()
    assert bbb.close.iloc[3] == pytest.approx(9.5)  # the bad print clamped into the others' range
    assert (bbb.high >= bbb.low).all()
    json.dumps(report.to_dict(), allow_nan=False)


def test_quarantine_moves_defective_rows_unchanged_and_passes_the_rest() -> None:
    days = TradingCalendar().sessions("2020-01-02", "2020-01-08")
    rows = _series("AAA", days[:2]) + [("AAA", str(days[2]), 10.0, 9.0, 11.0, 10.0, 100.0)] + _series("AAA", days[3:])

    clean, quarantine, report = check_bars(_bars(rows), policy="quarantine")

    assert quarantine.to_pylist()[0]["high"] == 9.0 and quarantine.to_pylist()[0]["low"] == 11.0
    assert quarantine.column(DEFECT_COLUMN).to_pylist() == ["ohlc_inconsistent,high_below_low"]
    assert clean.num_rows == len(rows) - 1
    # The quarantined session is now missing from the output.
    assert report.per_symbol["AAA"].missing_sessions == 1


def test_dropping_one_session_from_a_complete_series_is_one_missing_session() -> None:
    days = TradingCalendar().sessions("2019-11-01", "2020-02-28")  # spans Thanksgiving, Christmas, New Year
    dropped = days[40]

    _, _, complete = check_bars(_bars(_series("AAA", days)))
    _, _, gapped = check_bars(_bars(_series("AAA", np.delete(days, 40))))

    assert complete.totals["missing_session"] == 0 and complete.totals["non_session"] == 0
    assert gapped.per_symbol["AAA"].missing_sessions == 1
    gap = [e for e in gapped.per_symbol["AAA"].examples if e["kind"] == "missing_session"]
    assert gap == [{"kind": "missing_session", "symbol": "AAA", "date": str(dropped), "sessions": 1}]


def test_strict_passes_clean_rows_and_reports_outliers_only() -> None:
    days = TradingCalendar().sessions("2020-01-02", "2020-01-08")
    table = _bars(_series("AAA", days[:2]) + _series("AAA", days[2:], close=30.0))

    clean, quarantine, report = check_bars(table, policy="strict")

    assert clean.num_rows == table.num_rows and quarantine.num_rows == 0
    assert report.totals["outlier_return"] == 1


def test_strict_refuses_a_duplicate_with_symbol_date_and_values() -> None:
    days = TradingCalendar().sessions("2020-01-02", "2020-01-03")
    table = _bars(_series("AAA", days) + _series("AAA", days[1:]))

    with pytest.raises(DataError, match=r"duplicate=1.*duplicate AAA 2020-01-03 o=10 h=10.5 l=9.5 c=10 v=1000"):
        check_bars(table, policy="strict")


def test_intraday_bars_skip_calendar_checks_and_show_timestamps() -> None:
    start = pd.Timestamp("2013-10-07 13:30", tz="UTC").value
    ts = start + np.array([0, 60, 60, 180]) * 10**9  # a duplicate minute, a missing minute
    table = pa.Table.from_pydict(
        {
            "symbol": ["SPY"] * 4,
            "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "open": [1.0] * 4, "high": [1.0] * 4, "low": [1.0] * 4, "close": [1.0] * 4, "volume": [1.0] * 4,
            "vwap": [None] * 4, "trade_count": [None] * 4,
        },
        schema=BAR_SCHEMA,
    )

    clean, _, report = check_bars(table, daily=False)

    assert report.totals["duplicate"] == 1
    assert report.totals["missing_session"] == 0 and report.totals["non_session"] == 0
    assert report.per_symbol["SPY"].examples[0]["date"] == "2013-10-07T13:31:00+00:00"
    assert clean.num_rows == 3


def test_empty_table_is_clean() -> None:
    clean, quarantine, report = check_bars(BAR_SCHEMA.empty_table())

    assert clean.num_rows == quarantine.num_rows == 0
    assert report.is_clean and set(report.totals) == set(TABLE_DEFECT_KINDS)


def test_invalid_arguments_are_refused() -> None:
    table = _bars(_series("AAA", TradingCalendar().sessions("2020-01-02", "2020-01-03")))

    with pytest.raises(DataError, match="quality policy"):
        check_bars(table, policy="fix")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="max_abs_return"):
        check_bars(table, max_abs_return=0.0)
    with pytest.raises(DataError, match=r"missing column \['trade_count'\]"):
        check_bars(table.drop_columns(["trade_count"]))
