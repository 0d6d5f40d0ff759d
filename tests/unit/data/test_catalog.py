"""The catalog: adjusted bars on read, stored universes, option chains; the backtest loader on the store."""

from __future__ import annotations

from datetime import date

import numpy as np
import pyarrow as pa
import pytest

from amcp.config import DataConfig, StoreConfig
from amcp.data.bars import load_daily_bars
from amcp.data.calendar import day_of_ns
from amcp.data.catalog import MarketDataCatalog
from amcp.data.schemas import CORPORATE_ACTION_SCHEMA
from amcp.data.store import MarketDataStore
from amcp.data.synthetic import generate_daily_bars, generate_option_chains
from amcp.data.universe import PointInTimeUniverse, load_membership_csv
from amcp.errors import DataError
from tests.conftest import SHARED_DATA, require

SPLIT_DAY = date(2016, 3, 1)
DIVIDEND_DAY = date(2016, 9, 1)
DIVIDEND = 0.5


@pytest.fixture()
def catalog(tmp_path) -> MarketDataCatalog:
    store = MarketDataStore(str(tmp_path / "store"))
    store.write("equities/daily", generate_daily_bars(2, date(2016, 1, 1), date(2016, 12, 31), seed=5))
    actions = pa.table(
        {"symbol": ["S0000", "S0000"], "ex_date": [SPLIT_DAY, DIVIDEND_DAY], "action": ["split", "dividend"],
         "ratio": [2.0, None], "cash": [None, DIVIDEND]},
        schema=CORPORATE_ACTION_SCHEMA,
    )
    store.write("reference/corporate_actions", actions)
    return MarketDataCatalog(store)


def _days(table: pa.Table) -> np.ndarray:
    return day_of_ns(table.column("ts").cast(pa.int64()).to_numpy())


def test_raw_read_is_what_was_stored(catalog) -> None:
    raw = catalog.bars(["S0000"], adjustment="raw")
    assert raw.equals(catalog.store.read("equities/daily", ["S0000"]))


def test_split_adjustment_halves_prices_before_the_ex_date_only(catalog) -> None:
    raw = catalog.bars(["S0000"], adjustment="raw")
    split = catalog.bars(["S0000"], adjustment="split")
    before = _days(raw) < np.datetime64(SPLIT_DAY)
    raw_close, adj_close = raw.column("close").to_numpy(), split.column("close").to_numpy()
    np.testing.assert_allclose(adj_close[before], raw_close[before] / 2.0, rtol=1e-15)
    np.testing.assert_array_equal(adj_close[~before], raw_close[~before])
    np.testing.assert_allclose(split.column("volume").to_numpy()[before], raw.column("volume").to_numpy()[before] * 2.0)


def test_all_adjustment_applies_the_dividend_factor_too(catalog) -> None:
    split = catalog.bars(["S0000"], adjustment="split")
    full = catalog.bars(["S0000"], adjustment="all")
    days = _days(split)
    prev_close = split.column("close").to_numpy()[days < np.datetime64(DIVIDEND_DAY)][-1]
    factor = 1.0 - DIVIDEND / prev_close
    before = days < np.datetime64(DIVIDEND_DAY)
    # the dividend's prev close is the raw close (the split happened earlier, so raw == split-adjusted there)
    np.testing.assert_allclose(full.column("close").to_numpy()[before], split.column("close").to_numpy()[before] * factor,
                               rtol=1e-12)
    np.testing.assert_array_equal(full.column("close").to_numpy()[~before], split.column("close").to_numpy()[~before])


def test_symbol_without_actions_and_column_subsets(catalog) -> None:
    raw = catalog.bars(["S0001"], adjustment="raw")
    assert catalog.bars(["S0001"], adjustment="all").equals(raw)
    subset = catalog.bars(["S0000"], adjustment="all", columns=["close"])
    assert subset.column_names == ["close"]
    assert subset.column("close").equals(catalog.bars(["S0000"], adjustment="all").column("close"))
    with pytest.raises(DataError, match="adjustment"):
        catalog.bars(["S0000"], adjustment="dividends")


def test_backtest_loader_reads_adjusted_bars_from_the_store(catalog) -> None:
    config = DataConfig(store=StoreConfig(url=catalog.store.url), symbols=("S0000",), adjustment="split")
    panel, _ = load_daily_bars(config)
    split = catalog.bars(["S0000"], adjustment="split")
    np.testing.assert_array_equal(panel.close[:, 0], split.column("close").to_numpy())
    with pytest.raises(ValueError, match="exactly one of path"):
        DataConfig(path="x.parquet", store=StoreConfig(url="y"))


def test_universe_round_trip_and_unknown_name(catalog) -> None:
    path = SHARED_DATA / "sp500_membership.csv"
    require(path.is_file(), f"{path} is not present")
    sp500 = load_membership_csv(str(path), "sp500")
    catalog.write_universe(sp500)
    stored = catalog.universe("sp500")
    for day in ("2001-06-29", "2010-03-15", "2017-11-10"):
        assert stored.members(day) == sp500.members(day)
    with pytest.raises(DataError, match="sp500"):
        catalog.universe("russell2000")


def test_small_universe_and_option_chain(catalog) -> None:
    universe = PointInTimeUniverse.from_intervals("mine", [("S0000", date(2016, 1, 1), None),
                                                           ("S0001", date(2016, 6, 1), date(2016, 8, 31))])
    catalog.write_universe(universe)
    assert catalog.universe("mine").members(date(2016, 7, 1)) == ["S0000", "S0001"]
    assert catalog.universe("mine").members(date(2016, 9, 1)) == ["S0000"]
    chain = generate_option_chains("S0000", 50.0, date(2016, 12, 30), seed=1, expiries=2, strikes_per_expiry=5)
    catalog.store.write("options/chains", chain)
    assert catalog.option_chain("S0000").num_rows == chain.num_rows
    assert catalog.option_chain("S0000", "2017-01-01").num_rows == 0


def test_store_reads_for_a_backtest_fail_clearly(catalog, tmp_path) -> None:
    empty = DataConfig(store=StoreConfig(url=str(tmp_path / "nothing")))
    with pytest.raises(DataError, match="holds no daily bars"):
        load_daily_bars(empty)
    with pytest.raises(DataError, match=r"unknown symbol.*'s0000'.*did you mean 'S0000'"):
        load_daily_bars(DataConfig(store=StoreConfig(url=catalog.store.url), symbols=("s0000",)))
    with pytest.raises(DataError, match=r"no rows for \['S0000'\]"):
        load_daily_bars(DataConfig(store=StoreConfig(url=catalog.store.url), symbols=("S0000",),
                                   start=date(2030, 1, 1)))
