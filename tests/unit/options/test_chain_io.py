"""Option chains from vendor files, alpaca-py objects and the market-data store."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from alpaca.data.models.snapshots import OptionsSnapshot
from alpaca.trading.models import OptionContract as AlpacaOptionContract

from amcp.data.store import MarketDataStore
from amcp.errors import DataError
from amcp.options.chain_io import (
    DropReason,
    chain_from_alpaca,
    chain_from_vendor_csv,
    chains_from_vendor_frame,
    read_chain,
    write_chain,
)
from tests.conftest import SHARED_DATA, require

NEW_YORK = ZoneInfo("America/New_York")
VXX_FILE = SHARED_DATA / "options" / "vxx_chains_2016-12.parquet"
AGILENT_FILE = SHARED_DATA / "options" / "agilent_chain_2016-01-05.csv"


@pytest.fixture(scope="module")
def vxx_frame() -> pd.DataFrame:
    require(VXX_FILE.is_file(), f"the shared real data file {VXX_FILE} is not present")
    return pd.read_parquet(VXX_FILE)


# ------------------------------------------------------------------------------ vendor files


def test_vendor_frame_gives_one_chain_per_quote_date_at_the_new_york_close(vxx_frame: pd.DataFrame) -> None:
    loaded = chains_from_vendor_frame(vxx_frame, rate=0.005)

    counts = vxx_frame.groupby("quotedate").size()
    assert len(loaded.chains) == len(counts) == 20
    for (underlying, day), chain in loaded.chains.items():
        assert underlying == "VXX" and len(chain) == counts[f"{day:%m/%d/%Y}"]
        assert chain.as_of == datetime.combine(day, time(16), tzinfo=NEW_YORK)
        assert chain.rate == 0.005 and chain.div_yield == 0.0
    assert loaded.report.rows_in == loaded.report.rows_kept == len(vxx_frame)
    assert loaded.report.dropped == {}


def test_vendor_rows_keep_their_values_and_take_the_expiry_from_the_occ_symbol(
    vxx_frame: pd.DataFrame,
) -> None:
    row = vxx_frame[(vxx_frame.optionroot == "VXX161216P00025000") & (vxx_frame.quotedate == "12/01/2016")]
    row = row.iloc[0]
    assert row.expiration == "12/17/2016"  # the vendor's Saturday; the symbol's Friday is the last trade day

    chain = chains_from_vendor_frame(vxx_frame).chains[("VXX", date(2016, 12, 1))]

    (i,) = np.flatnonzero(chain.symbol == "VXX161216P00025000")
    assert chain.expiry[i] == np.datetime64("2016-12-16")
    assert chain.t_years[i] == pytest.approx(15 / 365)
    assert not chain.is_call[i] and chain.strike[i] == 25.0 and chain.spot == row.underlying_last
    assert (chain.bid[i], chain.ask[i], chain.volume[i]) == (row.bid, row.ask, row.volume)
    assert (chain.open_interest[i], chain.vendor_iv[i]) == (row.openinterest, row.impliedvol)


def test_vendor_zero_ask_last_and_iv_mean_none_but_a_zero_bid_is_kept(vxx_frame: pd.DataFrame) -> None:
    chain = chains_from_vendor_frame(vxx_frame).chains[("VXX", date(2016, 12, 1))]
    day = vxx_frame[vxx_frame.quotedate == "12/01/2016"].set_index("optionroot")

    for symbol, bid, ask, last, iv in zip(chain.symbol, chain.bid, chain.ask, chain.last, chain.vendor_iv,
                                          strict=True):
        source = day.loc[symbol]
        assert bid == source.bid
        assert np.isnan(ask) if source.ask == 0 else ask == source.ask
        assert np.isnan(last) if source["last"] == 0 else last == source["last"]
        assert np.isnan(iv) if source.impliedvol == 0 else iv == source.impliedvol
    assert (chain.bid == 0).any() and np.isnan(chain.last).any()


def _good_rows() -> pd.DataFrame:
    rows = []
    for right, letter in (("put", "P"), ("call", "C")):
        for strike in (40.0, 45.0):
            rows.append({"underlying": "XYZ", "underlying_last": 42.5, " exchange": "*",
                         "optionroot": f"XYZ240119{letter}{int(strike * 1000):08d}", "type": right,
                         "expiration": "01/19/2024", "quotedate": "01/05/2024", "strike": strike, "last": 1.1,
                         "bid": 1.0, "ask": 1.2, "volume": 10, "openinterest": 100, "impliedvol": 0.3})
    return pd.DataFrame(rows)


BAD_ROWS: dict[DropReason, dict[str, Any]] = {
    DropReason.BAD_DATE: {"quotedate": "2024-13-45"},
    DropReason.BAD_SYMBOL: {"optionroot": "XYZ-JAN-40-PUT"},
    DropReason.ADJUSTED_CONTRACT: {"optionroot": "XYZ1240119P00040000"},
    DropReason.SYMBOL_MISMATCH: {"strike": 41.0},
    DropReason.BAD_RIGHT: {"type": "straddle"},
    DropReason.BAD_STRIKE: {"strike": -40.0, "optionroot": "XYZ240119P00040000"},
    DropReason.BAD_SPOT: {"underlying_last": 0.0},
    DropReason.BAD_NUMBER: {"volume": -3},
    DropReason.CROSSED_QUOTE: {"bid": 1.5, "ask": 1.2},
    DropReason.EXPIRED: {"quotedate": "01/22/2024"},
    DropReason.SPOT_MISMATCH: {"underlying_last": 43.0},
    DropReason.DUPLICATE: {},
}


@pytest.mark.parametrize("reason", list(BAD_ROWS), ids=[r.value for r in BAD_ROWS])
def test_each_bad_vendor_row_is_dropped_with_its_reason(reason: DropReason) -> None:
    good = _good_rows()
    bad = good.iloc[[0]].assign(**BAD_ROWS[reason])
    if reason is DropReason.EXPIRED:  # its own quote date: a chain of its own, were it kept
        bad = bad.assign(quotedate="01/22/2024")
    frame = pd.concat([good, bad], ignore_index=True)

    loaded = chains_from_vendor_frame(frame, source="test.csv")

    assert loaded.report.dropped == {reason: 1}
    assert loaded.report.rows_in == 5 and loaded.report.rows_kept == 4
    assert loaded.report.examples[reason].startswith("row 4 (")
    assert f"{reason.value} 1" in loaded.report.summary()
    (chain,) = loaded.chains.values()
    assert len(chain) == 4 and chain.spot == 42.5


def test_vendor_frame_missing_columns_are_named() -> None:
    with pytest.raises(DataError, match=r"f\.parquet: missing column\(s\) \['bid', 'ask'\]"):
        chains_from_vendor_frame(_good_rows().drop(columns=["bid", "ask"]), source="f.parquet")
    with pytest.raises(DataError, match="expected a pandas DataFrame"):
        chains_from_vendor_frame([1, 2, 3])  # type: ignore[arg-type]


def test_agilent_csv_loads_as_one_chain() -> None:
    require(AGILENT_FILE.is_file(), f"the shared real data file {AGILENT_FILE} is not present")

    chain, report = chain_from_vendor_csv(AGILENT_FILE, rate=0.002)

    assert (chain.underlying, chain.spot, len(chain)) == ("A", 40.55, 208)
    assert chain.as_of == datetime(2016, 1, 5, 16, tzinfo=NEW_YORK)
    assert len(chain.expiries) == 7 and chain.expiries[0] == np.datetime64("2016-01-15")
    assert int(chain.is_call.sum()) == 104
    assert report.rows_kept == 208 and report.dropped == {}


def test_csv_malformed_value_drops_its_row_and_mixed_dates_are_refused(tmp_path: Path) -> None:
    require(AGILENT_FILE.is_file(), f"the shared real data file {AGILENT_FILE} is not present")
    lines = AGILENT_FILE.read_text().splitlines()
    bad = lines[1].split(",")
    bad[9] = "n/a?"  # Bid
    path = tmp_path / "chain.csv"
    path.write_text("\n".join([lines[0], *lines[2:], ",".join(bad)]) + "\n")

    chain, report = chain_from_vendor_csv(path)

    assert report.dropped == {DropReason.BAD_NUMBER: 1} and len(chain) == 207
    assert "bid 'n/a?'" in report.examples[DropReason.BAD_NUMBER]
    other_day = lines[1].replace("01/05/2016", "01/04/2016")
    path.write_text("\n".join([*lines, other_day]) + "\n")
    with pytest.raises(DataError, match="expected the chain of one underlying on one date, found"):
        chain_from_vendor_csv(path)
    with pytest.raises(DataError, match="cannot read"):
        chain_from_vendor_csv(tmp_path / "absent.csv")


# ------------------------------------------------------------------------------ Alpaca

AS_OF = datetime(2024, 1, 5, 20, 0, tzinfo=timezone.utc)  # 15:00 New York


def _contract(symbol: str, *, underlying: str = "XYZ", size: str = "100", open_interest: str | None = "250",
              root: str = "XYZ") -> AlpacaOptionContract:
    parsed_date = date(2000 + int(symbol[-15:-13]), int(symbol[-13:-11]), int(symbol[-11:-9]))
    return AlpacaOptionContract(
        id=str(uuid.uuid4()), symbol=symbol, name=symbol, status="active", tradable=True,
        expiration_date=parsed_date, root_symbol=root, underlying_symbol=underlying,
        underlying_asset_id=uuid.uuid4(), type="call" if symbol[-9] == "C" else "put", style="american",
        strike_price=int(symbol[-8:]) / 1000, size=size, open_interest=open_interest,
        open_interest_date=date(2024, 1, 4), close_price=None)


def _snapshot(symbol: str, bid: float, ask: float, *, quote_at: datetime = AS_OF - timedelta(minutes=1),
              last: float | None = 1.05, iv: float | None = 0.31) -> OptionsSnapshot:
    raw: dict[str, Any] = {"latestQuote": {"t": quote_at.isoformat(), "bp": bid, "bs": 5, "bx": "C",
                                           "ap": ask, "as": 7, "ax": "C", "c": "A"}}
    if last is not None:
        traded_at = (AS_OF - timedelta(hours=1)).isoformat()
        raw["latestTrade"] = {"t": traded_at, "p": last, "s": 2, "x": "C", "c": "I"}
    if iv is not None:
        raw["impliedVolatility"] = iv
        raw["greeks"] = {"delta": 0.5, "gamma": 0.1, "rho": 0.01, "theta": -0.1, "vega": 0.2}
    return OptionsSnapshot(symbol, raw)


def test_chain_from_alpaca_fills_quotes_open_interest_and_vendor_iv() -> None:
    contracts = [_contract("XYZ240119C00045000"), _contract("XYZ240119P00040000", open_interest=None),
                 _contract("XYZ240216C00045000")]
    snapshots = {"XYZ240119C00045000": _snapshot("XYZ240119C00045000", 1.0, 1.2),
                 "XYZ240119P00040000": _snapshot("XYZ240119P00040000", 0.0, 0.05, last=None, iv=None)}

    chain, report = chain_from_alpaca("xyz", 42.5, contracts, snapshots, AS_OF, rate=0.05)

    assert report.dropped == {} and report.rows_kept == 3
    assert chain.symbol.tolist() == ["XYZ240119P00040000", "XYZ240119C00045000", "XYZ240216C00045000"]
    assert chain.as_of == AS_OF and chain.spot == 42.5 and chain.rate == 0.05
    np.testing.assert_array_equal(chain.bid, [0.0, 1.0, np.nan])
    np.testing.assert_array_equal(chain.ask, [0.05, 1.2, np.nan])  # the unquoted contract stays, unquoted
    np.testing.assert_allclose(chain.spread, [0.05, 0.2, np.nan])
    np.testing.assert_array_equal(chain.last, [np.nan, 1.05, np.nan])
    np.testing.assert_array_equal(chain.open_interest, [np.nan, 250.0, 250.0])
    np.testing.assert_array_equal(chain.vendor_iv, [np.nan, 0.31, np.nan])
    assert np.isnan(chain.volume).all()  # alpaca-py's snapshot keeps no daily bar
    assert chain.t_years[0] == pytest.approx((14 * 86_400 + 3_600) / (365 * 86_400))


def test_chain_from_alpaca_drops_bad_contracts_and_future_quotes() -> None:
    contracts = [_contract("XYZ240119C00045000"),
                 _contract("ABC240119C00045000", underlying="ABC", root="ABC"),
                 _contract("XYZ1240119C00045000", root="XYZ1"),
                 _contract("XYZ240119C00050000", size="10"),
                 _contract("XYZ240119C00055000"),
                 _contract("XYZ240119C00060000"),
                 _contract("XYZ240105C00060000")]
    snapshots = {"XYZ240119C00045000": _snapshot("XYZ240119C00045000", 1.0, 1.2),
                 "XYZ240119C00055000": _snapshot("XYZ240119C00055000", 1.0, 1.2,
                                                 quote_at=AS_OF + timedelta(seconds=1)),
                 "XYZ240119C00060000": _snapshot("XYZ240119C00060000", 0.5, 0.4),
                 "XYZ240119C00099000": _snapshot("XYZ240119C00099000", 0.0, 0.01)}

    chain, report = chain_from_alpaca("XYZ", 42.5, contracts, snapshots, AS_OF)

    assert chain.symbol.tolist() == ["XYZ240105C00060000", "XYZ240119C00045000"]
    assert report.dropped == {DropReason.ADJUSTED_CONTRACT: 2, DropReason.CROSSED_QUOTE: 1,
                              DropReason.OTHER_UNDERLYING: 1, DropReason.AFTER_AS_OF: 1,
                              DropReason.NO_CONTRACT: 1}
    assert report.rows_in == 8 and report.rows_kept == 2
    assert "XYZ240119C00099000" in report.examples[DropReason.NO_CONTRACT]
    with pytest.raises(DataError, match="timezone-aware"):
        chain_from_alpaca("XYZ", 42.5, contracts, snapshots, AS_OF.replace(tzinfo=None))
    with pytest.raises(DataError, match="spot must be a number > 0"):
        chain_from_alpaca("XYZ", float("nan"), contracts, snapshots, AS_OF)
    with pytest.raises(DataError, match="no valid contract"):
        chain_from_alpaca("XYZ", 42.5, contracts[1:2], {}, AS_OF)


# ------------------------------------------------------------------------------ store


def _assert_same_chain(left: Any, right: Any) -> None:
    for name in ("underlying", "as_of", "spot", "rate", "div_yield", "multiplier"):
        assert getattr(left, name) == getattr(right, name), name
    for name in ("expiry", "t_years", "strike", "is_call", "bid", "ask", "last", "volume", "open_interest",
                 "symbol", "vendor_iv"):
        np.testing.assert_array_equal(getattr(left, name), getattr(right, name), err_msg=name)


def test_chain_round_trips_through_the_store(vxx_frame: pd.DataFrame, tmp_path: Path) -> None:
    chains = chains_from_vendor_frame(vxx_frame, rate=0.005, div_yield=0.0).chains
    first, second = chains[("VXX", date(2016, 12, 1))], chains[("VXX", date(2016, 12, 2))]
    store = MarketDataStore(str(tmp_path))

    written = write_chain(store, first)
    write_chain(str(tmp_path), second)
    again = write_chain(store, first)

    assert written.rows_written == len(first) and written.partitions == ("underlying=VXX/year=2016",)
    assert again.rows_replaced == len(first) and again.rows_written == 0
    assert (tmp_path / "market-data/options/chains/underlying=VXX/year=2016/part-0.parquet").is_file()
    for chain in (first, second):
        loaded, report = read_chain(str(tmp_path), "VXX", chain.as_of.date(), rate=0.005)
        _assert_same_chain(loaded, chain)
        assert report.dropped == {} and report.rows_kept == len(chain)


def test_read_chain_takes_each_contracts_latest_quote_and_needs_a_spot(tmp_path: Path) -> None:
    contracts = [_contract("XYZ240119C00045000"), _contract("XYZ240119P00040000")]
    morning = AS_OF - timedelta(hours=2)
    snapshots = {c.symbol: _snapshot(c.symbol, 1.0, 1.2, quote_at=morning, last=None) for c in contracts}
    early, _ = chain_from_alpaca("XYZ", 42.5, contracts, snapshots, morning)
    late, _ = chain_from_alpaca("XYZ", 43.0, contracts, {}, AS_OF)
    write_chain(str(tmp_path), early)
    write_chain(str(tmp_path), late)

    chain, _ = read_chain(str(tmp_path), "XYZ", date(2024, 1, 5))

    assert chain.as_of == AS_OF and chain.spot == 43.0 and np.isnan(chain.bid).all()
    chain, _ = read_chain(str(tmp_path), "xyz", date(2024, 1, 5), spot=44.0)
    assert chain.spot == 44.0
    with pytest.raises(DataError, match="no option quotes stored"):
        read_chain(str(tmp_path), "XYZ", date(2024, 1, 8))
