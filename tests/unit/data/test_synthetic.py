"""Tests for amcp.data.synthetic (daily/minute bars, option chains) and the BSM pricer it uses."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pytest

from amcp.data.calendar import TradingCalendar, midnight_ns
from amcp.data.schemas import BAR_SCHEMA, OPTION_CHAIN_SCHEMA
from amcp.data.synthetic import (
    MarketModel,
    generate_daily_bars,
    generate_minute_bars,
    generate_option_chains,
    iter_daily_bars,
    listed_expiries,
    stress_regime,
)
from amcp.domain.enums import OptionRight
from amcp.domain.instruments import OptionContract
from amcp.errors import DataError
from amcp.options.black_scholes import bsm_greeks, bsm_price, norm_cdf
from tests.conftest import SHARED_DATA, require

HAUG = SHARED_DATA / "reference" / "haug_bsm_values.csv"
JAN, FEB = date(2020, 1, 1), date(2020, 2, 1)

# A market with none of the stylised facts: constant variance, no regimes, no jumps.
PLAIN = MarketModel(
    stress_vol_multiplier=1.0,
    stress_drift=0.10,
    vol_of_variance=0.0,
    calm_jump_intensity=0.0,
    stress_jump_intensity=0.0,
)


def _matrix(table: pa.Table, column: str) -> np.ndarray:
    """(symbols, sessions) matrix of a column of a full, sorted daily table."""
    n_symbols = len(set(table.column("symbol").to_pylist()))
    return table.column(column).to_numpy().reshape(n_symbols, -1)


def _log_returns(table: pa.Table) -> np.ndarray:
    return np.diff(np.log(_matrix(table, "close")), axis=1)


def _mean_pairwise_correlation(returns: np.ndarray) -> float:
    corr = np.corrcoef(returns)
    return float(corr[np.triu_indices_from(corr, k=1)].mean())


def _abs_autocorrelation(returns: np.ndarray, lag: int) -> float:
    a = np.abs(returns) - np.abs(returns).mean(axis=1, keepdims=True)
    return float(np.mean((a[:, lag:] * a[:, :-lag]).sum(axis=1) / (a * a).sum(axis=1)))


def _kurtosis(returns: np.ndarray) -> float:
    centred = returns - returns.mean(axis=1, keepdims=True)
    return float(np.mean((centred**4).mean(axis=1) / (centred**2).mean(axis=1) ** 2))


# --------------------------------------------------------------------------- Black-Scholes-Merton


def _haug_rows() -> list[dict[str, str]]:
    require(HAUG.is_file(), f"the shared reference file {HAUG} is not present")
    with HAUG.open() as handle:
        rows = list(csv.DictReader(handle))
    return [row for row in rows if row["kind"] in ("value", "delta", "gamma", "vega", "theta", "rho")]


def test_bsm_prices_and_greeks_match_haug_published_values() -> None:
    rows = _haug_rows()
    assert len(rows) >= 40
    for row in rows:
        args = [float(row[key]) for key in ("spot", "strike", "t", "r", "q", "vol")]
        is_call = row["type"] == "call"
        got = bsm_price(*args, is_call) if row["kind"] == "value" else bsm_greeks(*args, is_call)[row["kind"]]
        assert abs(float(got) - float(row["expected"])) <= float(row["tol"]), row


def test_norm_cdf_agrees_with_erfc_to_double_precision() -> None:
    x = np.linspace(-12.0, 12.0, 4801)
    expected = np.array([0.5 * math.erfc(-v / math.sqrt(2.0)) for v in x])
    got = norm_cdf(x)
    assert np.max(np.abs(got - expected)) < 1e-15
    lower = x < -1.0
    assert np.max(np.abs(got[lower] / expected[lower] - 1.0)) < 1e-12


def test_bsm_satisfies_put_call_parity_over_a_grid() -> None:
    rng = np.random.default_rng(7)
    s, k = rng.uniform(5, 500, 500), rng.uniform(5, 500, 500)
    t, r = rng.uniform(0.01, 3, 500), rng.uniform(-0.01, 0.1, 500)
    q, v = rng.uniform(0, 0.06, 500), rng.uniform(0.05, 1.2, 500)
    call, put = bsm_price(s, k, t, r, q, v, True), bsm_price(s, k, t, r, q, v, False)
    np.testing.assert_allclose(call - put, s * np.exp(-q * t) - k * np.exp(-r * t), atol=1e-9 * s.max())


def test_bsm_greeks_match_finite_differences() -> None:
    rng = np.random.default_rng(11)
    n = 200
    s, k = rng.uniform(50, 150, n), rng.uniform(60, 140, n)
    t, r = rng.uniform(0.1, 2, n), rng.uniform(0, 0.08, n)
    q, v = rng.uniform(0, 0.04, n), rng.uniform(0.1, 0.6, n)
    calls = rng.random(n) < 0.5
    greeks = bsm_greeks(s, k, t, r, q, v, calls)

    def price(**bump: np.ndarray) -> np.ndarray:
        args = {"spot": s, "strike": k, "t_years": t, "rate": r, "div_yield": q, "vol": v} | bump
        return bsm_price(is_call=calls, **args)

    h = 1e-4
    np.testing.assert_allclose(greeks["delta"], (price(spot=s + h) - price(spot=s - h)) / (2 * h), atol=1e-6)
    hs = 1e-2
    second = (price(spot=s + hs) - 2 * price() + price(spot=s - hs)) / hs**2
    np.testing.assert_allclose(greeks["gamma"], second, atol=1e-5)
    np.testing.assert_allclose(greeks["vega"], (price(vol=v + h) - price(vol=v - h)) / (2 * h), atol=1e-5)
    decay = -(price(t_years=t + h) - price(t_years=t - h)) / (2 * h)
    np.testing.assert_allclose(greeks["theta"], decay, atol=1e-5)
    np.testing.assert_allclose(greeks["rho"], (price(rate=r + h) - price(rate=r - h)) / (2 * h), atol=1e-5)


def test_bsm_at_expiry_or_zero_vol_is_discounted_forward_intrinsic() -> None:
    strikes = np.array([90.0, 100.0, 110.0])
    np.testing.assert_allclose(bsm_price(100.0, strikes, 0.0, 0.05, 0.0, 0.3, True), [10.0, 0.0, 0.0])
    np.testing.assert_allclose(bsm_price(100.0, strikes, 0.0, 0.05, 0.0, 0.3, False), [0.0, 0.0, 10.0])
    forward_value = 100.0 * math.exp(-0.02) - 110.0 * math.exp(-0.05)
    assert float(bsm_price(100.0, 110.0, 1.0, 0.05, 0.02, 0.0, False)) == pytest.approx(-forward_value)
    dead = bsm_greeks(100.0, 90.0, 0.0, 0.05, 0.0, 0.0, True)
    assert float(dead["delta"]) == 1.0 and float(dead["gamma"]) == 0.0 and float(dead["vega"]) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"vol": -0.2}, "vol must be >= 0 (got -0.2)"),
        ({"spot": 0.0}, "spot must be > 0 (got 0.0)"),
        ({"t_years": float("nan")}, "t_years must be finite"),
        ({"is_call": 1}, "is_call must be boolean"),
    ],
)
def test_bsm_rejects_bad_inputs_naming_the_value(kwargs: dict[str, object], fragment: str) -> None:
    args: dict[str, object] = {"spot": 100.0, "strike": 100.0, "t_years": 1.0, "rate": 0.01, "div_yield": 0.0}
    args["vol"] = 0.2
    args |= kwargs
    is_call = args.pop("is_call", True)
    with pytest.raises(DataError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        bsm_price(is_call=is_call, **args)


# --------------------------------------------------------------------------- daily bars


def test_daily_bars_are_deterministic_per_seed_and_differ_across_seeds() -> None:
    first = generate_daily_bars(4, date(2020, 1, 1), date(2020, 6, 30), seed=5)
    again = generate_daily_bars(4, date(2020, 1, 1), date(2020, 6, 30), seed=5)
    other = generate_daily_bars(4, date(2020, 1, 1), date(2020, 6, 30), seed=6)
    assert first.equals(again)
    assert not np.array_equal(first.column("close").to_numpy(), other.column("close").to_numpy())


def test_daily_bars_have_the_bar_schema_default_names_and_sort_order() -> None:
    table = generate_daily_bars(12, date(2021, 3, 1), date(2021, 3, 31), seed=1)
    assert table.schema.equals(BAR_SCHEMA)
    symbols = table.column("symbol").to_pylist()
    assert sorted(set(symbols)) == [f"S{i:04d}" for i in range(12)]
    keys = list(zip(symbols, table.column("ts").cast(pa.int64()).to_pylist(), strict=True))
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    wide = generate_daily_bars(10_001, date(2021, 3, 1), date(2021, 3, 2), seed=1)
    assert wide.column("symbol")[0].as_py() == "S00000"


def test_daily_bars_are_ohlc_consistent_and_positive() -> None:
    model = replace(MarketModel(), initial_price=2.0, initial_price_dispersion=1.5)  # some prices cross $1
    table = generate_daily_bars(30, date(2008, 1, 1), date(2010, 12, 31), seed=3, model=model)
    o, h, low, c = (table.column(name).to_numpy() for name in ("open", "high", "low", "close"))
    vwap, volume, trades = (table.column(name).to_numpy() for name in ("vwap", "volume", "trade_count"))
    assert (low > 0).all()
    assert (low <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all()
    assert ((low <= vwap) & (vwap <= h)).all()
    assert (volume > 0).all() and (volume == np.rint(volume)).all() and (trades > 0).all()
    assert (h > low).mean() > 0.95
    cents = c[c >= 1.0]
    np.testing.assert_allclose(cents, np.round(cents, 2), atol=1e-9)
    assert (c < 1.0).any(), "the test should cover sub-dollar prices"


def test_daily_sessions_are_the_nyse_calendar() -> None:
    table = generate_daily_bars(2, date(2012, 10, 1), date(2012, 12, 31), seed=2)
    ts = table.column("ts").cast(pa.int64()).to_numpy()[: table.num_rows // 2]
    sessions = TradingCalendar().sessions(date(2012, 10, 1), date(2012, 12, 31))
    np.testing.assert_array_equal(ts, midnight_ns(sessions))
    days = {np.datetime64(day, "D") for day in sessions}
    for closed in ("2012-10-29", "2012-10-30", "2012-11-22", "2012-12-25"):  # Sandy, Thanksgiving, Christmas
        assert np.datetime64(closed) not in days
    assert np.datetime64("2012-10-31") in days
    first = table.column("ts")[0].as_py()
    assert (first.year, first.month, first.day, first.hour) == (2012, 10, 1, 4)  # midnight EDT in UTC


def test_iter_chunks_concatenate_to_the_full_table() -> None:
    args = (7, date(2019, 1, 1), date(2019, 12, 31))
    full = generate_daily_bars(*args, seed=9)
    chunks = list(iter_daily_bars(*args, seed=9, chunk_symbols=3))
    assert [len(set(chunk.column("symbol").to_pylist())) for chunk in chunks] == [3, 3, 1]
    assert pa.concat_tables(chunks).equals(full)


def test_a_symbols_bars_do_not_depend_on_the_universe_size() -> None:
    small = generate_daily_bars(3, date(2019, 1, 1), date(2019, 3, 31), seed=4)
    large = generate_daily_bars(40, date(2019, 1, 1), date(2019, 3, 31), seed=4)
    assert large.slice(0, small.num_rows).equals(small)


def test_given_symbols_are_sorted_and_must_be_unique() -> None:
    symbols = ["MSFT", "AAPL", "IBM"]
    table = generate_daily_bars(3, date(2019, 1, 2), date(2019, 1, 4), seed=1, symbols=symbols)
    assert table.column("symbol").to_pylist() == ["AAPL"] * 3 + ["IBM"] * 3 + ["MSFT"] * 3
    with pytest.raises(DataError, match="repeated: AAPL"):
        generate_daily_bars(2, date(2019, 1, 2), date(2019, 1, 4), seed=1, symbols=["AAPL", "AAPL"])
    with pytest.raises(DataError, match="2 names but n_symbols is 3"):
        generate_daily_bars(3, date(2019, 1, 2), date(2019, 1, 4), seed=1, symbols=["A", "B"])


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: generate_daily_bars(0, JAN, FEB, seed=1), "n_symbols must be an integer >= 1"),
        (lambda: generate_daily_bars(2, FEB, JAN, seed=1), "start 2020-02-01 is after end 2020-01-01"),
        (lambda: generate_daily_bars(2, JAN, FEB, seed=-1), r"seed must be a non-negative .* \(got -1\)"),
        (lambda: generate_minute_bars(2, JAN, FEB, seed=1, symbols=["A", ""]), "non-empty string"),
        (lambda: iter_daily_bars(2, JAN, FEB, seed=1, chunk_symbols=0), r"chunk_symbols must .* \(got 0\)"),
    ],
)
def test_generator_rejects_bad_arguments(call: Callable[[], object], fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        call()


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"calm_to_stress_probability": 1.5}, r"calm_to_stress_probability: expected in \(0, 1\) \(got 1\.5"),
        ({"long_run_variance": 0.0}, r"long_run_variance: expected > 0 \(got 0.0\)"),
        ({"leverage_correlation": -1.2}, "leverage_correlation"),
        ({"jump_std": float("nan")}, "jump_std: expected a finite number"),
        ({"n_sectors": 0}, "n_sectors: expected an integer >= 1"),
        ({"market_loading": 0.9, "sector_loading": 0.5}, "loadings"),
    ],
)
def test_market_model_rejects_bad_parameters_naming_them(change: dict[str, float], fragment: str) -> None:
    with pytest.raises(DataError, match=fragment):
        MarketModel(**change)


def test_cross_sectional_correlation_is_in_the_documented_band_and_comes_from_the_factors() -> None:
    returns = _log_returns(generate_daily_bars(30, date(2014, 1, 1), date(2016, 12, 31), seed=21))
    model = MarketModel()
    realised = _mean_pairwise_correlation(returns)
    # Documented: a little below expected_shock_correlation (~0.37 by default), within 0.2-0.5.
    assert 0.2 <= realised <= model.expected_shock_correlation + 0.03
    independent = replace(model, market_loading=0.0, sector_loading=0.0, loading_dispersion=0.0)
    flat_table = generate_daily_bars(30, date(2014, 1, 1), date(2016, 12, 31), seed=21, model=independent)
    flat = _mean_pairwise_correlation(_log_returns(flat_table))
    assert abs(flat) < 0.05


def test_returns_show_volatility_clustering_and_fat_tails_that_a_plain_model_lacks() -> None:
    args = (20, date(2005, 1, 1), date(2012, 12, 31))
    returns = _log_returns(generate_daily_bars(*args, seed=13))
    assert _abs_autocorrelation(returns, 1) > 0.1 and _abs_autocorrelation(returns, 10) > 0.05
    assert _kurtosis(returns) > 4.0
    plain = _log_returns(generate_daily_bars(*args, seed=13, model=PLAIN))
    assert abs(_abs_autocorrelation(plain, 1)) < 0.03
    assert _kurtosis(plain) < 3.3


def test_volume_rises_with_absolute_return() -> None:
    table = generate_daily_bars(10, date(2015, 1, 1), date(2017, 12, 31), seed=8)
    returns = np.abs(_log_returns(table))
    log_volume = np.log(_matrix(table, "volume"))[:, 1:]
    correlations = [np.corrcoef(r, v)[0, 1] for r, v in zip(returns, log_volume, strict=True)]
    assert min(correlations) > 0.2


def test_stress_regime_occupies_its_stationary_fraction_and_raises_volatility() -> None:
    model = MarketModel()
    fractions, stress_lengths = [], []
    for seed in range(20):
        _, stress = stress_regime(date(2003, 1, 1), date(2024, 12, 31), seed=seed, model=model)
        fractions.append(stress.mean())
        edges = np.flatnonzero(np.diff(np.concatenate([[0], stress.astype(np.int8), [0]])))
        stress_lengths.extend(edges[1::2] - edges[::2])
    assert abs(np.mean(fractions) - model.stress_probability) < 0.03
    assert abs(np.mean(stress_lengths) - 1.0 / model.stress_to_calm_probability) < 4.0

    start, end = date(2000, 1, 1), date(2009, 12, 31)
    sessions, stress = stress_regime(start, end, seed=3, model=model)
    returns = _log_returns(generate_daily_bars(15, start, end, seed=3, model=model))
    dispersion = np.abs(returns).mean(axis=0)
    assert sessions.size == returns.shape[1] + 1
    assert dispersion[stress[1:]].mean() > 1.4 * dispersion[~stress[1:]].mean()


# --------------------------------------------------------------------------- minute bars


def test_minute_bars_cover_each_session_and_early_closes_are_shorter() -> None:
    start, end = date(2019, 11, 26), date(2019, 12, 2)  # Thanksgiving week: closed 28th, 13:00 close 29th
    table = generate_minute_bars(2, start, end, seed=4)
    assert table.schema.equals(BAR_SCHEMA)
    opens, closes = TradingCalendar().opens_closes_ns(start, end)
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    per_symbol = ts.size // 2
    np.testing.assert_array_equal(ts[:per_symbol], ts[per_symbol:])
    days = [(o, c) for o, c in zip(opens, closes, strict=True)]
    counts = [int(((ts[:per_symbol] >= o) & (ts[:per_symbol] < c)).sum()) for o, c in days]
    assert counts == [390, 390, 210, 390]
    assert per_symbol == sum(counts)
    for o, c in days:
        inside = ts[:per_symbol][(ts[:per_symbol] >= o) & (ts[:per_symbol] < c)]
        assert inside[0] == o and inside[-1] == c - 60_000_000_000
        assert np.all(np.diff(inside) == 60_000_000_000)
    first = table.column("ts")[0].as_py()
    assert (first.hour, first.minute) == (14, 30)  # 09:30 EST in UTC


def test_minute_bars_bridge_the_daily_open_and_close_consistently() -> None:
    start, end = date(2021, 6, 1), date(2021, 6, 30)
    minutes = generate_minute_bars(3, start, end, seed=12)
    daily = generate_daily_bars(3, start, end, seed=12)
    n_days = daily.num_rows // 3
    o, h, low, c = (
        minutes.column(name).to_numpy().reshape(3, n_days, 390) for name in ("open", "high", "low", "close")
    )
    np.testing.assert_array_equal(o[:, :, 0], _matrix(daily, "open"))
    np.testing.assert_array_equal(c[:, :, -1], _matrix(daily, "close"))
    np.testing.assert_array_equal(o[:, :, 1:], c[:, :, :-1])
    assert (low <= np.minimum(o, c)).all() and (np.maximum(o, c) <= h).all() and (low > 0).all()
    volume = minutes.column("volume").to_numpy().reshape(3, n_days, 390)
    np.testing.assert_allclose(volume.sum(axis=2), _matrix(daily, "volume"), rtol=0.01)
    edges = np.concatenate([volume[:, :, :30], volume[:, :, -30:]], axis=2).mean()
    assert edges > 1.5 * volume[:, :, 150:240].mean()  # U-shaped intraday volume
    assert (minutes.column("trade_count").to_numpy() > 0).all()


# --------------------------------------------------------------------------- option chains


def _chain(**kwargs: object) -> tuple[pa.Table, dict[str, np.ndarray]]:
    args: dict[str, object] = {"underlying": "XYZ", "spot": 180.0, "quote_date": date(2023, 3, 1), "seed": 3}
    args |= kwargs
    table = generate_option_chains(**args)  # type: ignore[arg-type]
    columns = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    quote = args["quote_date"]
    expiries = table.column("expiry").to_pylist()
    columns["t"] = np.array([(day - quote).days / 365.0 for day in expiries])  # type: ignore[operator]
    columns["is_call"] = columns["right"] == "C"
    return table, columns


def test_option_chain_has_the_schema_and_parseable_occ_symbols() -> None:
    table, col = _chain()
    assert table.schema.equals(OPTION_CHAIN_SCHEMA)
    assert table.num_rows == 8 * 21 * 2
    assert col["symbol"].tolist() == sorted(col["symbol"].tolist())
    for symbol, expiry, strike, right in zip(
        col["symbol"], table.column("expiry").to_pylist(), col["strike"], col["right"], strict=True
    ):
        contract = OptionContract.from_occ(symbol)
        assert (contract.underlying, contract.expiry, float(contract.strike)) == ("XYZ", expiry, strike)
        assert contract.right is (OptionRight.CALL if right == "C" else OptionRight.PUT)
    quote_ts = table.column("quote_ts")[0].as_py()
    assert (quote_ts.hour, quote_ts.minute) == (21, 0)  # 16:00 EST in UTC


def test_option_expiries_are_listed_style_sessions() -> None:
    # Good Friday 2024-03-29 is a holiday: that weekly expiry moves to Thursday the 28th.
    expiries = listed_expiries(date(2024, 3, 25), 8)
    assert expiries[0] == date(2024, 3, 28)
    assert expiries == sorted(set(expiries)) and all(day > date(2024, 3, 25) for day in expiries)
    sessions = {day.astype(date) for day in TradingCalendar().sessions(date(2024, 3, 25), date(2025, 3, 31))}
    assert all(day in sessions for day in expiries)
    assert all(day.weekday() == 4 or day + timedelta(days=1) not in sessions for day in expiries)
    assert date(2024, 4, 19) in expiries and date(2024, 5, 17) in expiries  # third Fridays
    assert expiries[-1] == date(2024, 7, 19)


def test_option_iv_has_negative_skew_at_one_standard_deviation() -> None:
    _, col = _chain()
    for expiry in np.unique(col["expiry"]):
        rows = col["expiry"] == expiry
        t = col["t"][rows][0]
        forward = 180.0 * math.exp(0.04 * t)
        sd = 0.25 * math.sqrt(t)
        strikes, ivs = col["strike"][rows], col["iv"][rows]

        def iv_near(target: float, strikes: np.ndarray = strikes, ivs: np.ndarray = ivs) -> float:
            return float(ivs[np.argmin(np.abs(strikes - target))])

        put_wing, call_wing = iv_near(forward * math.exp(-sd)), iv_near(forward * math.exp(sd))
        atm = iv_near(forward)
        assert put_wing > atm > call_wing, expiry


@pytest.mark.parametrize("term_slope", [0.04, -0.04])
def test_option_atm_term_structure_has_the_configured_sign(term_slope: float) -> None:
    _, col = _chain(term_slope=term_slope, rate=0.0)
    expiries = np.unique(col["expiry"])
    atm = []
    for expiry in expiries:
        rows = col["expiry"] == expiry
        atm.append(col["iv"][rows][np.argmin(np.abs(col["strike"][rows] - 180.0))])
    steps = np.sign(np.diff(atm))
    assert (steps == np.sign(term_slope)).all()


def test_option_quotes_respect_no_arbitrage_bounds_and_parity_within_the_spread() -> None:
    _, col = _chain(div_yield=0.01)
    s, k, t, calls = 180.0, col["strike"], col["t"], col["is_call"]
    spot_disc, strike_disc = s * np.exp(-0.01 * t), k * np.exp(-0.04 * t)
    model = bsm_price(s, k, t, 0.04, 0.01, col["iv"], calls)
    bid, ask = col["bid"], col["ask"]
    assert (bid >= 0).all() and (bid < ask).all()
    assert ((ask - bid) >= np.where(bid < 3.0, 0.01, 0.05) - 1e-9).all()
    assert ((bid <= model + 1e-9) & (model <= ask + 1e-9)).all()
    lower = np.maximum(np.where(calls, spot_disc - strike_disc, strike_disc - spot_disc), 0.0)
    upper = np.where(calls, spot_disc, strike_disc)
    assert ((lower - 1e-9 <= model) & (model <= upper)).all()
    assert ((ask >= lower) & (bid <= upper)).all()
    assert ((bid <= col["last"]) & (col["last"] <= ask)).all()
    call_rows, put_rows = np.flatnonzero(calls), np.flatnonzero(~calls)
    key = lambda rows: np.lexsort((k[rows], col["expiry"][rows]))  # noqa: E731
    c, p = call_rows[key(call_rows)], put_rows[key(put_rows)]
    parity = spot_disc[c] - strike_disc[c]
    assert ((bid[c] - ask[p] <= parity + 1e-9) & (parity <= ask[c] - bid[p] + 1e-9)).all()


def test_option_greeks_and_activity_behave_like_a_vendor_chain() -> None:
    _, col = _chain()
    calls = col["is_call"]
    assert ((col["delta"][calls] > 0) & (col["delta"][calls] < 1)).all()
    assert ((col["delta"][~calls] < 0) & (col["delta"][~calls] > -1)).all()
    assert (col["gamma"] >= 0).all() and (col["vega"] >= 0).all()
    forward = 180.0 * np.exp(0.04 * col["t"])
    out_of_money = np.where(calls, col["strike"] > forward, col["strike"] < forward)
    relative_spread = (col["ask"] - col["bid"]) / (0.5 * (col["ask"] + col["bid"]))
    for expiry in np.unique(col["expiry"]):
        rows = (col["expiry"] == expiry) & calls
        distance = np.abs(np.log(col["strike"][rows] / 180.0))
        near, far = distance <= np.quantile(distance, 0.3), distance >= np.quantile(distance, 0.7)
        assert col["open_interest"][rows][near].mean() > col["open_interest"][rows][far].mean()
        otm = (col["expiry"] == expiry) & out_of_money
        moneyness = np.abs(np.log(col["strike"][otm] / forward[otm]))
        assert np.corrcoef(moneyness, relative_spread[otm])[0, 1] > 0.5, expiry


def test_option_chain_is_deterministic_and_rejects_bad_input() -> None:
    assert _chain()[0].equals(_chain()[0])
    early_close, _ = _chain(quote_date=date(2023, 11, 24))
    ts = early_close.column("quote_ts")[0].as_py()
    assert (ts.hour, ts.minute) == (18, 0)  # 13:00 EST close
    with pytest.raises(DataError, match="2023-03-04 is not an NYSE session"):
        _chain(quote_date=date(2023, 3, 4))
    with pytest.raises(DataError, match="bad underlying 'xyz'"):
        _chain(underlying="xyz")
    with pytest.raises(DataError, match=r"atm_vol must be in \(0, 5\] \(got -0.1\)"):
        _chain(atm_vol=-0.1)
