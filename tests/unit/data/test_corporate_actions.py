"""Tests for amcp.data.corporate_actions: backward split/dividend adjustment of raw bars."""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from amcp.data.calendar import midnight_ns
from amcp.data.corporate_actions import adjust_bars, adjustment_factors, compute_adjustment
from amcp.data.schemas import BAR_SCHEMA, CORPORATE_ACTION_SCHEMA
from amcp.errors import DataError


def _bars(rows: list[tuple[str, str, float, float]]) -> pa.Table:
    """BAR_SCHEMA rows from (symbol, iso date, close, volume); open/high/low/vwap = close."""
    symbols = [r[0] for r in rows]
    days = np.array([r[1] for r in rows], dtype="datetime64[D]")
    close = np.array([r[2] for r in rows], dtype=np.float64)
    volume = np.array([r[3] for r in rows], dtype=np.float64)
    return pa.Table.from_pydict(
        {
            "symbol": symbols,
            "ts": pa.array(midnight_ns(days), pa.int64()).cast(pa.timestamp("ns", tz="UTC")),
            "open": close,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": volume,
            "vwap": close,
            "trade_count": pa.array([7] * len(rows), pa.int64()),
        },
        schema=BAR_SCHEMA,
    )


def _actions(rows: list[tuple[str, str, str, float | None, float | None]]) -> pa.Table:
    """CORPORATE_ACTION_SCHEMA rows from (symbol, iso ex-date, action, ratio, cash)."""
    return pa.Table.from_pydict(
        {
            "symbol": [r[0] for r in rows],
            "ex_date": [date.fromisoformat(r[1]) for r in rows],
            "action": [r[2] for r in rows],
            "ratio": [r[3] for r in rows],
            "cash": [r[4] for r in rows],
        },
        schema=CORPORATE_ACTION_SCHEMA,
    )


NO_ACTIONS = _actions([])

# Raw prices of a 2-for-1 split on 2020-01-06 (a Monday): 100 -> 50.
SPLIT_BARS = _bars(
    [
        ("AAA", "2020-01-02", 100.0, 1000.0),
        ("AAA", "2020-01-03", 102.0, 1000.0),
        ("AAA", "2020-01-06", 51.0, 2000.0),
        ("AAA", "2020-01-07", 52.0, 2000.0),
    ]
)


def test_two_for_one_split_halves_earlier_prices_and_doubles_earlier_volume() -> None:
    actions = _actions([("AAA", "2020-01-06", "split", 2.0, None)])

    out = adjust_bars(SPLIT_BARS, actions, mode="split")

    # Bars before 2020-01-06: prices x 1/2 (100 -> 50, 102 -> 51), volume x 2 (1000 -> 2000).
    assert out.column("close").to_pylist() == [50.0, 51.0, 51.0, 52.0]
    assert out.column("volume").to_pylist() == [2000.0, 2000.0, 2000.0, 2000.0]
    assert out.column("vwap").to_pylist() == [50.0, 51.0, 51.0, 52.0]
    np.testing.assert_allclose(out.column("high").to_numpy()[:2], [50.5, 51.51])
    assert out.column("trade_count").to_pylist() == [7, 7, 7, 7]
    assert out.schema == BAR_SCHEMA


def test_split_makes_the_close_to_close_return_across_the_ex_date_continuous() -> None:
    # Raw closes grow 1% a day; a 3-for-1 split on the 4th session divides the raw close by 3.
    days = np.array(["2021-03-01", "2021-03-02", "2021-03-03", "2021-03-04", "2021-03-05"])
    path = 90.0 * 1.01 ** np.arange(5)
    raw = np.where(np.arange(5) >= 3, path / 3.0, path)
    bars = _bars([("XYZ", d, c, 100.0) for d, c in zip(days, raw, strict=True)])
    actions = _actions([("XYZ", "2021-03-04", "split", 3.0, None)])

    close = adjust_bars(bars, actions, mode="split").column("close").to_numpy()

    raw_returns = raw[1:] / raw[:-1] - 1.0
    assert raw_returns[2] == pytest.approx(1.01 / 3 - 1)  # the raw series jumps by -66%
    np.testing.assert_allclose(close[1:] / close[:-1] - 1.0, 0.01, rtol=1e-12)
    np.testing.assert_allclose(close[3:], raw[3:])  # latest prices unchanged


def test_cash_dividend_scales_earlier_prices_by_one_minus_dividend_over_previous_close() -> None:
    bars = _bars(
        [
            ("DIV", "2020-01-02", 40.0, 500.0),
            ("DIV", "2020-01-03", 50.0, 500.0),
            ("DIV", "2020-01-06", 49.0, 500.0),
        ]
    )
    # Dividend 1.0 ex 2020-01-06; the close before is 50.0 -> factor 1 - 1/50 = 0.98.
    actions = _actions([("DIV", "2020-01-06", "dividend", None, 1.0)])

    price, volume = adjustment_factors(bars, actions, mode="all")

    np.testing.assert_allclose(price, [0.98, 0.98, 1.0])
    np.testing.assert_array_equal(volume, [1.0, 1.0, 1.0])
    close = adjust_bars(bars, actions).column("close").to_numpy()
    np.testing.assert_allclose(close, [39.2, 49.0, 49.0])


def test_split_mode_ignores_dividends_and_raw_mode_ignores_everything() -> None:
    actions = _actions(
        [("AAA", "2020-01-06", "split", 2.0, None), ("AAA", "2020-01-03", "dividend", None, 1.0)]
    )

    split_price, _ = adjustment_factors(SPLIT_BARS, actions, mode="split")
    raw_price, raw_volume = adjustment_factors(SPLIT_BARS, actions, mode="raw")

    np.testing.assert_allclose(split_price, [0.5, 0.5, 1.0, 1.0])
    np.testing.assert_array_equal(raw_price, np.ones(4))
    np.testing.assert_array_equal(raw_volume, np.ones(4))
    assert adjust_bars(SPLIT_BARS, actions, mode="raw").equals(SPLIT_BARS)


def test_factors_compound_across_a_split_and_a_dividend() -> None:
    actions = _actions(
        [("AAA", "2020-01-06", "split", 2.0, None), ("AAA", "2020-01-03", "dividend", None, 2.0)]
    )

    price, volume = adjustment_factors(SPLIT_BARS, actions, mode="all")

    # Dividend 2.0 ex 2020-01-03, raw close before = 100 -> 0.98, applies to 01-02 only.
    # Split 2:1 ex 2020-01-06 -> 0.5, applies to 01-02 and 01-03.
    np.testing.assert_allclose(price, [0.98 * 0.5, 0.5, 1.0, 1.0])
    np.testing.assert_allclose(volume, [2.0, 2.0, 1.0, 1.0])


def test_reverse_split_multiplies_earlier_prices_and_divides_earlier_volume() -> None:
    bars = _bars([("REV", "2020-01-02", 1.0, 10_000.0), ("REV", "2020-01-03", 10.0, 1_000.0)])
    actions = _actions([("REV", "2020-01-03", "split", 0.1, None)])  # 1-for-10

    out = adjust_bars(bars, actions)

    np.testing.assert_allclose(out.column("close").to_numpy(), [10.0, 10.0])
    np.testing.assert_allclose(out.column("volume").to_numpy(), [1_000.0, 1_000.0])


def test_many_symbols_in_any_row_order_are_adjusted_independently() -> None:
    bars = _bars(
        [
            ("BBB", "2020-01-03", 30.0, 10.0),
            ("AAA", "2020-01-06", 51.0, 2000.0),
            ("BBB", "2020-01-02", 20.0, 10.0),
            ("AAA", "2020-01-02", 100.0, 1000.0),
            ("CCC", "2020-01-02", 5.0, 1.0),
        ]
    )
    actions = _actions(
        [
            ("AAA", "2020-01-06", "split", 2.0, None),
            ("BBB", "2020-01-03", "split", 4.0, None),
            ("ZZZ", "2020-01-03", "split", 4.0, None),  # no bars: ignored
        ]
    )

    price, volume = adjustment_factors(bars, actions)

    np.testing.assert_allclose(price, [1.0, 1.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(volume, [1.0, 1.0, 4.0, 2.0, 1.0])


def test_empty_actions_are_the_identity() -> None:
    out = adjust_bars(SPLIT_BARS, NO_ACTIONS)

    assert out.equals(SPLIT_BARS)


def test_dividend_without_a_prior_bar_or_above_the_close_is_skipped_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    actions = _actions(
        [
            ("AAA", "2020-01-02", "dividend", None, 1.0),  # no bar before the first session
            ("AAA", "2020-01-07", "dividend", None, 60.0),  # 60 >= previous close 51
        ]
    )

    with caplog.at_level(logging.WARNING, logger="amcp.data.corporate_actions"):
        price, _ = adjustment_factors(SPLIT_BARS, actions)
    result = compute_adjustment(SPLIT_BARS, actions)

    np.testing.assert_array_equal(price, np.ones(4))
    assert [(s.ex_date.isoformat(), s.prev_close) for s in result.skipped] == [
        ("2020-01-02", None),
        ("2020-01-07", 51.0),
    ]
    assert "no bar before" in result.skipped[0].reason
    assert len([r for r in caplog.records if "not applied" in r.getMessage()]) == 2


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        (("AAA", "2020-01-06", "merger", 1.0, None), "unknown action 'merger'"),
        (("AAA", "2020-01-06", "split", 0.0, None), "positive ratio"),
        (("AAA", "2020-01-06", "split", None, None), "positive ratio"),
        (("AAA", "2020-01-06", "dividend", None, -1.0), "non-negative cash"),
    ],
)
def test_invalid_actions_are_refused(row: tuple, needle: str) -> None:
    with pytest.raises(DataError, match=needle):
        adjustment_factors(SPLIT_BARS, _actions([row]), mode="all")


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(DataError, match="adjustment mode"):
        adjustment_factors(SPLIT_BARS, NO_ACTIONS, mode="total")  # type: ignore[arg-type]
