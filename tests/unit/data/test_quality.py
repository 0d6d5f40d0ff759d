"""Tests for amcp.data.quality: each defect kind found, repaired or refused, and reported."""

from __future__ import annotations

import json
from datetime import date

import numpy as np
import pytest

from amcp.data.quality import DEFECT_KINDS, BarRows, QualityReport, check_quality, day_to_iso
from amcp.errors import DataError

_EPOCH = date(1970, 1, 1)


def _rows(records: list[tuple]) -> BarRows:
    """Build rows from (symbol, iso date, open, high, low, close, volume) tuples."""
    symbols = tuple(sorted({r[0] for r in records}))
    columns = list(zip(*records, strict=True)) if records else [()] * 7
    return BarRows(
        symbols=symbols,
        symbol_index=np.array([symbols.index(s) for s in columns[0]], dtype=np.int64),
        day=np.array([(date.fromisoformat(d) - _EPOCH).days for d in columns[1]], dtype=np.int64),
        open=np.array(columns[2], dtype=np.float64),
        high=np.array(columns[3], dtype=np.float64),
        low=np.array(columns[4], dtype=np.float64),
        close=np.array(columns[5], dtype=np.float64),
        volume=np.array(columns[6], dtype=np.float64),
    )


CLEAN = [
    ("AAA", "2020-01-02", 10.0, 11.0, 9.0, 10.5, 100.0),
    ("AAA", "2020-01-03", 10.5, 11.0, 10.0, 10.8, 100.0),
    ("BBB", "2020-01-02", 20.0, 21.0, 19.0, 20.5, 100.0),
]


def test_clean_rows_pass_unchanged() -> None:
    rows = _rows(CLEAN)

    out, report = check_quality(rows)

    assert report.is_clean
    assert report.rows_in == report.rows_out == 3
    assert set(report.counts) == set(DEFECT_KINDS)
    np.testing.assert_array_equal(out.close, rows.close)
    assert report.summary_line().endswith("clean")


def test_swapped_high_and_low_are_repaired_to_the_row_extremes() -> None:
    rows = _rows(CLEAN + [("BBB", "2020-01-03", 20.3, 20.1, 20.6, 20.4, 100.0)])

    out, report = check_quality(rows)

    assert report.counts["ohlc_inconsistent"] == 1
    assert report.counts["high_below_low"] == 1
    assert report.counts["bad_print"] == 0
    assert report.by_symbol == {"BBB": {"ohlc_inconsistent": 1, "high_below_low": 1}}
    last = len(out) - 1
    assert out.high[last] == 20.6 and out.low[last] == 20.1
    assert report.examples[0]["high"] == 20.1  # examples show values as found


def test_shifted_decimal_high_is_a_bad_print_clamped_not_widened() -> None:
    # BEN in the shared data: a high printed a digit short makes high < low.
    rows = _rows(CLEAN + [("BBB", "2020-01-03", 20.5, 2.05, 20.0, 20.4, 100.0)])

    out, report = check_quality(rows)

    assert report.counts["bad_print"] == 1 and report.counts["high_below_low"] == 1
    last = len(out) - 1
    assert out.high[last] == 20.5 and out.low[last] == 20.0  # not 2.05: the bar keeps its real range


def test_shifted_decimal_close_is_clamped_and_leaves_no_false_move() -> None:
    # EIX in the shared data: close 3.6366 in a bar trading around 36.
    rows = _rows(
        [
            ("EIX", "2012-03-21", 36.0, 36.4, 35.9, 36.2, 100.0),
            ("EIX", "2012-03-22", 36.029, 36.424, 35.936, 3.6366, 100.0),
            ("EIX", "2012-03-23", 36.303, 36.45, 36.269, 36.347, 100.0),
        ]
    )

    out, report = check_quality(rows)

    assert report.counts["bad_print"] == 1
    assert out.close[1] == 35.936 and out.low[1] == 35.936
    assert report.counts["outlier_return"] == 0


def test_row_with_several_wild_fields_is_not_called_a_bad_print() -> None:
    rows = _rows(CLEAN + [("BBB", "2020-01-03", 20.5, 2.05, 200.0, 20.4, 100.0)])

    _, report = check_quality(rows)

    assert report.counts["ohlc_inconsistent"] == 1 and report.counts["bad_print"] == 0


def test_close_outside_the_range_is_inconsistent() -> None:
    rows = _rows(CLEAN + [("BBB", "2020-01-03", 20.5, 21.0, 20.0, 21.5, 100.0)])

    out, report = check_quality(rows)

    assert report.counts["ohlc_inconsistent"] == 1
    assert report.counts["high_below_low"] == 0
    assert out.high[-1] == 21.5 and out.low[-1] == 20.0


def test_open_below_the_low_is_inconsistent() -> None:
    rows = _rows(CLEAN + [("BBB", "2020-01-03", 19.0, 21.0, 20.0, 20.5, 100.0)])

    out, report = check_quality(rows)

    assert report.counts["ohlc_inconsistent"] == 1
    assert out.low[-1] == 19.0


@pytest.mark.parametrize("bad", [(0.0, 1.0, 1.0, 1.0), (1.0, 1.0, -1.0, 1.0), (1.0, 1.0, 1.0, np.nan)])
def test_non_positive_or_missing_price_drops_the_row(bad: tuple[float, ...]) -> None:
    rows = _rows(CLEAN + [("BBB", "2020-01-03", *bad, 100.0)])

    out, report = check_quality(rows)

    assert report.counts["bad_price"] == 1
    assert report.counts["ohlc_inconsistent"] == 0  # counted once, under its first kind
    assert report.rows_out == 3 and len(out) == 3


def test_duplicates_keep_the_last_row_in_input_order() -> None:
    rows = _rows(
        [
            ("AAA", "2020-01-03", 10.5, 11.0, 10.0, 10.8, 1.0),
            ("AAA", "2020-01-02", 10.0, 11.0, 9.0, 10.5, 2.0),
            ("AAA", "2020-01-03", 10.5, 11.0, 10.0, 10.9, 3.0),
        ]
    )

    out, report = check_quality(rows)

    assert report.counts["duplicate"] == 1
    assert len(out) == 2
    np.testing.assert_array_equal(out.close, [10.5, 10.9])
    np.testing.assert_array_equal(out.volume, [2.0, 3.0])


def test_negative_or_missing_volume_is_set_to_zero() -> None:
    rows = _rows(
        [
            ("AAA", "2020-01-02", 10.0, 11.0, 9.0, 10.5, -5.0),
            ("AAA", "2020-01-03", 10.5, 11.0, 10.0, 10.8, np.nan),
        ]
    )

    out, report = check_quality(rows)

    assert report.counts["bad_volume"] == 2
    np.testing.assert_array_equal(out.volume, [0.0, 0.0])


def test_large_moves_are_reported_not_changed() -> None:
    rows = _rows(
        [
            ("AAA", "2020-01-02", 10.0, 11.0, 9.0, 10.0, 1.0),
            ("AAA", "2020-01-03", 25.0, 31.0, 24.0, 30.0, 1.0),  # +200%
            ("AAA", "2020-01-06", 30.0, 31.0, 29.0, 30.0, 1.0),
            ("BBB", "2020-01-02", 90.0, 91.0, 89.0, 90.0, 1.0),  # symbol change: not a move
        ]
    )

    out, report = check_quality(rows, max_abs_return=1.0)

    assert report.counts["outlier_return"] == 1
    example = next(e for e in report.examples if e["kind"] == "outlier_return")
    assert example["symbol"] == "AAA" and example["date"] == "2020-01-03"
    assert example["prev_close"] == 10.0 and example["return"] == pytest.approx(2.0)
    np.testing.assert_array_equal(out.close, rows.close)


def test_outlier_threshold_is_configurable() -> None:
    rows = _rows(CLEAN)

    _, report = check_quality(rows, max_abs_return=0.02)

    assert report.counts["outlier_return"] == 1  # 10.5 -> 10.8 is +2.9%


def test_strict_raises_with_counts_and_examples() -> None:
    rows = _rows(
        CLEAN
        + [
            ("BBB", "2020-01-03", 20.5, 2.05, 20.0, 20.4, 100.0),
            ("CCC", "2020-01-03", 0.0, 1.0, 1.0, 1.0, 100.0),
        ]
    )

    with pytest.raises(DataError) as info:
        check_quality(rows, policy="strict", source="f.parquet")

    message = str(info.value)
    assert message.startswith("f.parquet: data quality check failed (policy strict)")
    assert "bad_price=1" in message and "ohlc_inconsistent=1" in message
    assert "BBB 2020-01-03" in message and "CCC 2020-01-03" in message


def test_strict_accepts_outliers_and_reports_them() -> None:
    rows = _rows(CLEAN)

    out, report = check_quality(rows, policy="strict", max_abs_return=0.02)

    assert report.policy == "strict"
    assert report.counts["outlier_return"] == 1
    assert len(out) == 3


def test_unknown_policy_is_a_data_error() -> None:
    with pytest.raises(DataError, match="quality policy must be 'repair' or 'strict', got 'fix'"):
        check_quality(_rows(CLEAN), policy="fix")  # type: ignore[arg-type]


def test_report_to_dict_is_strict_json_and_summary_names_defects() -> None:
    rows = _rows(CLEAN + [("BBB", "2020-01-03", 20.5, 21.0, 20.0, np.nan, 100.0)])

    _, report = check_quality(rows, source="x.parquet")
    data = report.to_dict()

    text = json.dumps(data, allow_nan=False)
    assert json.loads(text)["counts"]["bad_price"] == 1
    assert data["examples"][0]["close"] is None
    assert data["rows_dropped"] == 1
    assert {"counts", "by_symbol", "examples", "rows_in", "rows_out", "summary"} <= set(data)
    line = report.summary_line()
    assert line.startswith("data quality [repair] x.parquet: 4 rows in, 3 out")
    assert "bad_price 1 (dropped)" in line


def test_report_is_frozen() -> None:
    _, report = check_quality(_rows(CLEAN))

    with pytest.raises(AttributeError):
        report.rows_in = 0  # type: ignore[misc]
    assert isinstance(report, QualityReport)


def test_empty_rows_are_accepted() -> None:
    out, report = check_quality(_rows([]))

    assert len(out) == 0 and report.rows_in == 0 and report.is_clean


def test_day_to_iso() -> None:
    assert day_to_iso(0) == "1970-01-01"
    assert day_to_iso((date(2017, 11, 10) - _EPOCH).days) == "2017-11-10"
