"""Implied volatility: round trips, bounds, the py_vollib oracle and real vendor chains.

"Informative" is defined from the rounding of the price itself. ``bsm_price`` computes
``θ·(A - B)`` with ``A = S·e^(-qT)·N(θ·d1)`` and ``B = K·e^(-rT)·N(θ·d2)``; its absolute error is
bounded by the budget ``ε·[(A + B)·(1 + d²) + (1 + |x|)·(S·e^(-qT) + K·e^(-rT))·[in the money]]``
(ε = 2.2e-16; ``(1 + d²)`` is the tail error of ``N`` and of ``d``, the last term the rounding
of the intrinsic value that an in-the-money price carries). A price error ``δP`` moves the
volatility by ``δP/(vega·σ)`` relative, so a point is *informative* when
``C·budget/(vega·σ) ≤ 1e-12`` (``C = 10``; the worst observed ratio of error to prediction is
about 4.3): there the solved volatility must be within 1e-12 relative. Everywhere else the
result must reproduce the price to within ``C·budget`` (repriced at the solved volatility, or
at the intrinsic value, the upper bound or zero for the other statuses).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amcp._typing import BoolArray, FloatArray
from amcp.errors import DataError
from amcp.options._lets_be_rational import normalised_black_and_vega_otm, normalised_implied_volatility
from amcp.options.black_scholes import bsm_greeks, bsm_price, norm_cdf
from amcp.options.implied_vol import IVResult, IVStatus, black76_implied_vol, implied_vol
from tests.conftest import SHARED_DATA, require

EPS = float(np.finfo(np.float64).eps)
SAFETY = 10.0
VOL_TOLERANCE = 1e-12
MINUTE_YEARS = 1.0 / (365.0 * 24.0 * 60.0)
OPTIONS = SHARED_DATA / "options"


class Grid(NamedTuple):
    spot: FloatArray
    strike: FloatArray
    t: FloatArray
    r: FloatArray
    q: FloatArray
    vol: FloatArray
    calls: BoolArray


def random_grid(n: int, seed: int) -> Grid:
    """The issue's grid: σ 0.001..5, ln(K/F) in -5..5, T 1 minute..30 years (log-uniform), r, q ≠ 0."""
    rng = np.random.default_rng(seed)
    t = np.exp(rng.uniform(math.log(MINUTE_YEARS), math.log(30.0), n))
    r = rng.uniform(-0.02, 0.10, n)
    q = rng.uniform(-0.02, 0.08, n)
    spot = np.exp(rng.uniform(math.log(1.0), math.log(5000.0), n))
    strike = spot * np.exp((r - q) * t) * np.exp(rng.uniform(-5.0, 5.0, n))
    vol = np.exp(rng.uniform(math.log(0.001), math.log(5.0), n))
    return Grid(spot, strike, t, r, q, vol, rng.random(n) < 0.5)


def price_budget(g: Grid) -> FloatArray:
    """Absolute rounding budget of ``bsm_price`` at the grid (see the module docstring)."""
    theta = np.where(g.calls, 1.0, -1.0)
    total_sd = g.vol * np.sqrt(g.t)
    d1 = (np.log(g.spot / g.strike) + (g.r - g.q + 0.5 * g.vol**2) * g.t) / total_sd
    d2 = d1 - total_sd
    spot_disc = g.spot * np.exp(-g.q * g.t)
    strike_disc = g.strike * np.exp(-g.r * g.t)
    terms = spot_disc * norm_cdf(theta * d1) + strike_disc * norm_cdf(theta * d2)
    x = np.log(g.spot / g.strike) + (g.r - g.q) * g.t
    in_the_money = theta * x > 0.0
    intrinsic_rounding = np.where(in_the_money, (1.0 + np.abs(x)) * (spot_disc + strike_disc), 0.0)
    tails = 1.0 + np.maximum(d1 * d1, d2 * d2)
    return EPS * (terms * tails + intrinsic_rounding) + 1e-305


def informative(g: Grid, budget: FloatArray) -> BoolArray:
    """Where the price pins σ to 1e-12: ``C·budget/(vega·σ) ≤ 1e-12``."""
    vega = bsm_greeks(g.spot, g.strike, g.t, g.r, g.q, g.vol, g.calls)["vega"]
    return SAFETY * budget <= VOL_TOLERANCE * vega * g.vol


def repriced(g: Grid, result: IVResult) -> FloatArray:
    """The price each result stands for: ``bsm_price`` at the solved vol, or the bound its status names."""
    spot_disc = g.spot * np.exp(-g.q * g.t)
    strike_disc = g.strike * np.exp(-g.r * g.t)
    intrinsic = np.maximum(np.where(g.calls, spot_disc - strike_disc, strike_disc - spot_disc), 0.0)
    status = result.status
    ok = status == IVStatus.OK
    out = np.full(status.shape, np.nan)
    out[ok] = bsm_price(g.spot[ok], g.strike[ok], g.t[ok], g.r[ok], g.q[ok], result.vol[ok], g.calls[ok])
    at_bound = (status == IVStatus.AT_INTRINSIC) | (status == IVStatus.BELOW_INTRINSIC)
    out[at_bound] = intrinsic[at_bound]
    above = status == IVStatus.ABOVE_MAXIMUM
    out[above] = np.where(g.calls, spot_disc, strike_disc)[above]
    out[status == IVStatus.INVALID_INPUT] = 0.0  # only a rounding-negative price may be "invalid" here
    return out


def check_round_trip(g: Grid) -> tuple[float, float]:
    """Price the grid, solve it back, assert both criteria; return the informative fraction and max error."""
    price = bsm_price(*g)
    result = implied_vol(price, *g[:5], g.calls)
    budget = price_budget(g)
    sharp = informative(g, budget)
    rel_err = np.abs(result.vol / g.vol - 1.0)
    assert np.all(result.status[sharp] == IVStatus.OK)
    assert np.all(rel_err[sharp] <= VOL_TOLERANCE), float(np.max(rel_err[sharp]))
    deviation = np.abs(repriced(g, result) - price)
    loose = ~sharp
    worst = int(np.argmax(np.where(loose, deviation / budget, 0.0)))
    assert np.all(deviation[loose] <= SAFETY * budget[loose]), (price[worst], result.vol[worst], g.vol[worst])
    return float(sharp.mean()), float(np.max(rel_err[sharp], initial=0.0))


# --- round trips -----------------------------------------------------------------------------


def test_round_trip_on_the_issue_grid_is_exact_where_informative_and_reprices_elsewhere() -> None:
    grid = random_grid(200_000, seed=1)
    share, worst = check_round_trip(grid)
    # Most of this grid (σ√T down to 1e-6 at |ln K/F| up to 5) prices to exactly 0 or intrinsic;
    # the informative share is about 14 %, and within it the error is ~2e-13 at worst.
    assert 0.10 < share < 0.20
    assert worst < 5e-13


def test_round_trip_on_a_trading_grid_is_exact_on_most_of_it() -> None:
    rng = np.random.default_rng(2)
    n = 100_000
    t = np.exp(rng.uniform(math.log(1.0 / 365.0), math.log(3.0), n))
    vol = rng.uniform(0.05, 1.5, n)
    r = rng.uniform(0.0, 0.06, n)
    q = rng.uniform(0.0, 0.04, n)
    spot = np.full(n, 100.0)
    moneyness = rng.uniform(-2.5, 2.5, n) * vol * np.sqrt(t)
    strike = spot * np.exp((r - q) * t + moneyness)
    share, _ = check_round_trip(Grid(spot, strike, t, r, q, vol, rng.random(n) < 0.5))
    # About 78 %: the rest are mostly in-the-money options within days of expiry, whose price is
    # nearly all intrinsic value; the rounding of that intrinsic value alone moves σ by > 1e-12.
    assert share > 0.7


def exact_price(spot: float, strike: float, t: float, r: float, q: float, vol: float, call: bool) -> float:
    """The Black-Scholes-Merton price to 40 digits (mpmath), rounded once to double."""
    import mpmath

    with mpmath.workdps(40):
        s, k, tt, rr, qq, v = (mpmath.mpf(value) for value in (spot, strike, t, r, q, vol))
        sd = v * mpmath.sqrt(tt)
        d1 = (mpmath.log(s / k) + (rr - qq + v * v / 2) * tt) / sd
        d2 = d1 - sd
        theta = 1 if call else -1
        spot_leg = s * mpmath.exp(-qq * tt) * mpmath.ncdf(theta * d1)
        strike_leg = k * mpmath.exp(-rr * tt) * mpmath.ncdf(theta * d2)
        value = theta * (spot_leg - strike_leg)
        return float(value)


def test_exactly_rounded_prices_give_vols_within_1e12_across_regimes() -> None:
    rng = np.random.default_rng(3)
    n = 600
    t = np.exp(rng.uniform(math.log(1.0 / 365.0), math.log(30.0), n))
    vol = np.exp(rng.uniform(math.log(0.01), math.log(3.0), n))
    r = rng.uniform(-0.02, 0.10, n)
    q = rng.uniform(-0.02, 0.08, n)
    spot = np.full(n, 50.0)
    # Out of the money by up to 6 total standard deviations (prices down to ~1e-9 of spot).
    z = rng.uniform(0.0, 6.0, n)
    calls = rng.random(n) < 0.5
    strike = spot * np.exp((r - q) * t + np.where(calls, z, -z) * vol * np.sqrt(t))
    price = np.array([exact_price(*row) for row in zip(spot, strike, t, r, q, vol, calls, strict=True)])
    result = implied_vol(price, spot, strike, t, r, q, calls)
    assert np.all(result.status == IVStatus.OK)
    # A correctly rounded price is off by ≤ ε/2 relative, which moves σ by ε/(2E) with
    # E = vega·σ/price; E ≥ 0.01 keeps that below 1.2e-14. (This drops one point of the 600:
    # σ√T ≈ 11.7, a price 1e-7 below its upper bound.)
    elasticity = bsm_greeks(spot, strike, t, r, q, vol, calls)["vega"] * vol / price
    sharp = elasticity >= 0.01
    assert sharp.mean() > 0.9
    assert np.max(np.abs(result.vol / vol - 1.0)[sharp]) <= VOL_TOLERANCE


@pytest.mark.parametrize("x", [0.0, -1e-12, -1e-6, -0.01, -0.5, -2.0, -10.0, -50.0, -200.0, -500.0])
def test_normalised_inversion_is_accurate_from_the_smallest_normal_price_to_the_upper_bound(x: float) -> None:
    b_max = math.exp(0.5 * x)
    betas = np.concatenate(
        [
            np.exp(np.linspace(math.log(2.3e-308), math.log(b_max), 1500))[:-1],
            b_max * (1.0 - np.logspace(-12, -0.01, 200)),
        ]
    )
    for beta in betas:
        s = normalised_implied_volatility(beta, x, b_max)
        assert math.isfinite(s) and s > 0.0
        b, vega = normalised_black_and_vega_otm(x, s, b_max)
        elasticity = vega * s / beta
        if elasticity > 1e-3:  # the price's relative rounding moves s by ε/elasticity < 1e-13
            assert abs(b / beta - 1.0) / elasticity <= VOL_TOLERANCE, (beta, s, b)


@settings(max_examples=300, deadline=None)
@given(
    log_moneyness=st.floats(-5.0, 5.0),
    log_t=st.floats(math.log(MINUTE_YEARS), math.log(30.0)),
    log_vol=st.floats(math.log(0.001), math.log(5.0)),
    spot=st.floats(0.01, 1e5),
    r=st.floats(-0.05, 0.15),
    q=st.floats(-0.05, 0.15),
    call=st.booleans(),
)
def test_round_trip_property_holds_for_any_option(
    log_moneyness: float, log_t: float, log_vol: float, spot: float, r: float, q: float, call: bool
) -> None:
    t = math.exp(log_t)
    strike = spot * math.exp((r - q) * t + log_moneyness)
    row = [np.array([value]) for value in (spot, strike, t, r, q, math.exp(log_vol))]
    check_round_trip(Grid(*row, np.array([call])))


# --- bounds and statuses ---------------------------------------------------------------------


def solve_one(
    price: float, t: float = 0.5, is_call: bool = True, spot: float = 100.0, strike: float = 90.0
) -> IVResult:
    return implied_vol(price, spot, strike, t, 0.03, 0.01, is_call)


def test_price_below_intrinsic_is_nan_below_intrinsic() -> None:
    intrinsic = 100.0 * math.exp(-0.01 * 0.5) - 90.0 * math.exp(-0.03 * 0.5)
    result = solve_one(intrinsic * 0.999)
    assert np.isnan(result.vol) and result.status == IVStatus.BELOW_INTRINSIC
    put = solve_one(1e-3, is_call=False, spot=80.0)  # a put 10 in the money for a tenth of a cent
    assert np.isnan(put.vol) and put.status == IVStatus.BELOW_INTRINSIC


def test_price_at_or_above_the_upper_bound_is_nan_above_maximum() -> None:
    call_bound = 100.0 * math.exp(-0.01 * 0.5)
    put_bound = 90.0 * math.exp(-0.03 * 0.5)
    for price, is_call in [(call_bound, True), (call_bound * 1.01, True), (put_bound, False), (95.0, False)]:
        result = solve_one(price, is_call=is_call)
        assert np.isnan(result.vol) and result.status == IVStatus.ABOVE_MAXIMUM, (price, is_call)


def test_price_at_intrinsic_gives_zero_vol_at_intrinsic() -> None:
    intrinsic = 100.0 * math.exp(-0.01 * 0.5) - 90.0 * math.exp(-0.03 * 0.5)
    for price, is_call, strike in [(intrinsic, True, 90.0), (0.0, True, 120.0), (0.0, False, 90.0)]:
        result = solve_one(price, is_call=is_call, strike=strike)
        assert result.vol == 0.0 and result.status == IVStatus.AT_INTRINSIC, (price, is_call, strike)


@pytest.mark.parametrize("t", [0.0, -0.25])
def test_non_positive_time_is_nan_non_positive_time(t: float) -> None:
    result = solve_one(10.0, t=t)
    assert np.isnan(result.vol) and result.status == IVStatus.NON_POSITIVE_TIME


@pytest.mark.parametrize(
    "args",
    [
        (math.nan, 100.0, 90.0, 0.5, 0.03, 0.01),
        (-0.5, 100.0, 90.0, 0.5, 0.03, 0.01),
        (10.0, -100.0, 90.0, 0.5, 0.03, 0.01),
        (10.0, 0.0, 90.0, 0.5, 0.03, 0.01),
        (10.0, 100.0, 0.0, 0.5, 0.03, 0.01),
        (10.0, 100.0, math.inf, 0.5, 0.03, 0.01),
        (10.0, 100.0, 90.0, math.nan, 0.03, 0.01),
        (10.0, 100.0, 90.0, 0.5, math.nan, 0.01),
        (10.0, 100.0, 90.0, 0.5, 0.03, -math.inf),
        (10.0, 100.0, 1e-230, 0.5, 0.03, 0.01),  # ln(F/K) ≈ 534: beyond the solver's domain
    ],
)
def test_bad_inputs_are_nan_invalid_input(args: tuple[float, ...]) -> None:
    result = implied_vol(*args, True)
    assert np.isnan(result.vol) and result.status == IVStatus.INVALID_INPUT


def test_statuses_are_element_wise_in_one_call() -> None:
    price = np.array([8.0, 0.5, 200.0, 8.0, math.nan, 0.0])
    t = np.array([0.5, 0.5, 0.5, 0.0, 0.5, 0.5])
    result = implied_vol(price, 100.0, 95.0, t, 0.02, 0.0, np.array([True, True, True, True, True, False]))
    expected = [IVStatus.OK, IVStatus.BELOW_INTRINSIC, IVStatus.ABOVE_MAXIMUM, IVStatus.NON_POSITIVE_TIME,
                IVStatus.INVALID_INPUT, IVStatus.AT_INTRINSIC]  # fmt: skip
    assert result.status.tolist() == expected
    assert result.vol[0] > 0.0 and np.isnan(result.vol[1:5]).all() and result.vol[5] == 0.0


# --- API ---------------------------------------------------------------------------------------


def test_inputs_broadcast_and_scalars_give_zero_dimensional_results() -> None:
    strikes = np.array([[80.0], [100.0], [120.0]])
    t = np.array([0.25, 1.0])
    price = bsm_price(100.0, strikes, t, 0.01, 0.0, 0.3, True)
    result = implied_vol(price, 100.0, strikes, t, 0.01, 0.0, True)
    assert result.vol.shape == (3, 2) and result.status.shape == (3, 2)
    assert result.status.dtype == np.int64
    assert np.allclose(result.vol, 0.3, rtol=1e-13, atol=0.0)
    scalar = implied_vol(10.0, 100.0, 100.0, 1.0, 0.0, 0.0, True)
    assert scalar.vol.shape == () and scalar.status.shape == ()


@pytest.mark.parametrize("scale", [1e-200, 1e-3, 1e3, 1e200])
def test_prices_at_any_scale_solve_alike(scale: float) -> None:
    # S·K underflows at 1e-200 and overflows at 1e200; the normalisation must not care.
    spot, strike = 1.1 * scale, 1.0 * scale
    price = bsm_price(spot, strike, 0.75, 0.02, 0.01, 0.35, False)
    result = implied_vol(price, spot, strike, 0.75, 0.02, 0.01, False)
    assert result.status == IVStatus.OK
    assert abs(float(result.vol) / 0.35 - 1.0) < 1e-13


def test_parallel_gives_the_same_result_as_serial() -> None:
    grid = random_grid(20_000, seed=4)
    price = bsm_price(*grid)
    serial = implied_vol(price, *grid[:5], grid.calls)
    parallel = implied_vol(price, *grid[:5], grid.calls, parallel=True)
    assert np.array_equal(serial.vol, parallel.vol, equal_nan=True)
    assert np.array_equal(serial.status, parallel.status)


def test_black76_is_bsm_on_the_forward_with_a_discounted_price() -> None:
    rng = np.random.default_rng(5)
    forward = rng.uniform(50.0, 150.0, 1000)
    t = rng.uniform(0.05, 3.0, 1000)
    vol = rng.uniform(0.05, 1.0, 1000)
    sd = vol * np.sqrt(t)
    strike = forward * np.exp(rng.uniform(-2.0, 2.0, 1000) * sd)
    calls = rng.random(1000) < 0.5
    theta = np.where(calls, 1.0, -1.0)
    d1 = (np.log(forward / strike) + 0.5 * sd * sd) / sd
    undiscounted = theta * (forward * norm_cdf(theta * d1) - strike * norm_cdf(theta * (d1 - sd)))
    price = np.exp(-0.04 * t) * undiscounted
    result = black76_implied_vol(price, forward, strike, t, 0.04, calls)
    assert np.all(result.status == IVStatus.OK)
    assert np.max(np.abs(result.vol / vol - 1.0)) < 1e-12


def test_non_boolean_is_call_and_unbroadcastable_shapes_raise_data_error() -> None:
    with pytest.raises(DataError, match="is_call must be boolean"):
        implied_vol(10.0, 100.0, 100.0, 1.0, 0.0, 0.0, 1)
    with pytest.raises(DataError, match="do not broadcast"):
        implied_vol(np.ones(3), 100.0, np.ones(2), 1.0, 0.0, 0.0, True)
    with pytest.raises(DataError, match="price must be numeric"):
        implied_vol("ten", 100.0, 100.0, 1.0, 0.0, 0.0, True)


# --- py_vollib (Jäckel's reference, via py_lets_be_rational) ----------------------------------


def vollib_status_and_vol(
    price: float, spot: float, strike: float, t: float, r: float, q: float, call: bool
) -> tuple[int, float]:
    """py_vollib's (Jäckel's reference) answer, its exceptions mapped onto :class:`IVStatus`."""
    from py_lets_be_rational.exceptions import AboveMaximumException, BelowIntrinsicException
    from vollib.black_scholes_merton.implied_volatility import implied_volatility
    from vollib.helpers.exceptions import PriceIsAboveMaximum, PriceIsBelowIntrinsic

    try:
        vol = implied_volatility(price, spot, strike, t, r, q, "c" if call else "p")
    except (BelowIntrinsicException, PriceIsBelowIntrinsic):
        return IVStatus.BELOW_INTRINSIC, math.nan
    except (AboveMaximumException, PriceIsAboveMaximum):
        return IVStatus.ABOVE_MAXIMUM, math.nan
    return (IVStatus.AT_INTRINSIC if vol == 0.0 else IVStatus.OK), vol


def test_agrees_with_py_vollib_on_statuses_and_values() -> None:
    pytest.importorskip("vollib")
    rng = np.random.default_rng(6)
    n = 3000
    t = np.exp(rng.uniform(math.log(1.0 / 365.0), math.log(5.0), n))
    vol = rng.uniform(0.05, 1.5, n)
    r = rng.uniform(0.0, 0.06, n)
    q = rng.uniform(0.0, 0.04, n)
    spot = np.full(n, 100.0)
    strike = spot * np.exp((r - q) * t + rng.uniform(-2.0, 2.0, n) * vol * np.sqrt(t))
    calls = rng.random(n) < 0.5
    price = bsm_price(spot, strike, t, r, q, vol, calls)
    # A fifth of the prices pushed clearly below intrinsic or above the upper bound, some to 0.
    spot_disc, strike_disc = spot * np.exp(-q * t), strike * np.exp(-r * t)
    intrinsic = np.maximum(np.where(calls, spot_disc - strike_disc, strike_disc - spot_disc), 0.0)
    bound = np.where(calls, spot_disc, strike_disc)
    kind = rng.integers(0, 10, n)
    price = np.where(kind == 0, intrinsic * 0.9, price)
    price = np.where(kind == 1, bound * 1.001, price)
    price = np.where((kind == 2) & (intrinsic == 0.0), 0.0, price)
    ours = implied_vol(price, spot, strike, t, r, q, calls)
    theirs = [vollib_status_and_vol(*row) for row in zip(price, spot, strike, t, r, q, calls, strict=True)]
    their_status = np.array([status for status, _ in theirs])
    their_vol = np.array([value for _, value in theirs])
    # An in-the-money price at 0.9 × intrinsic of 0 is 0: both call it at intrinsic.
    assert np.array_equal(ours.status, their_status)
    solved = ours.status == IVStatus.OK
    assert solved.sum() > 0.7 * n
    assert np.max(np.abs(ours.vol[solved] / their_vol[solved] - 1.0)) <= VOL_TOLERANCE


# --- real vendor chains --------------------------------------------------------------------


RATE_2016 = 0.0075  # about the 2016 one-year Treasury yield; the vendors' r and q are unknown


def vxx_chain() -> pd.DataFrame:
    path = OPTIONS / "vxx_chains_2016-12.parquet"
    require(path.is_file(), f"the shared real data file {path} is not present")
    frame = pd.read_parquet(path)
    quote = pd.to_datetime(frame["quotedate"], format="%m/%d/%Y")
    expiry = pd.to_datetime(frame["expiration"], format="%m/%d/%Y")
    frame["t_years"] = (expiry - quote).dt.days.to_numpy() / 365.0
    return frame


def assert_every_row_has_a_consistent_status(result: IVResult, n: int) -> None:
    assert result.vol.shape == (n,)
    assert set(np.unique(result.status)) <= {int(s) for s in IVStatus}
    has_vol = (result.status == IVStatus.OK) | (result.status == IVStatus.AT_INTRINSIC)
    assert np.all(np.isfinite(result.vol) == has_vol)


def test_vxx_mids_solve_with_a_status_for_every_row_and_match_the_vendor_within_the_spread() -> None:
    frame = vxx_chain()
    spot = frame["underlying_last"].to_numpy()
    strike = frame["strike"].to_numpy()
    t = frame["t_years"].to_numpy()
    calls = (frame["type"] == "call").to_numpy()
    bid, ask = frame["bid"].to_numpy(), frame["ask"].to_numpy()
    vendor = frame["impliedvol"].to_numpy()
    mid = implied_vol(0.5 * (bid + ask), spot, strike, t, RATE_2016, 0.0, calls)
    assert_every_row_has_a_consistent_status(mid, len(frame))
    at_bid = implied_vol(bid, spot, strike, t, RATE_2016, 0.0, calls).vol
    at_ask = implied_vol(ask, spot, strike, t, RATE_2016, 0.0, calls).vol
    # The vendor's IV is valid where it is not floored (0.01, 0.09), the bid is positive and a
    # week or more remains. Its r, q, clock and (American) model are unknown, so it agrees with
    # ours to the quote's own uncertainty — half the bid-ask spread in vol — plus 3 vol points
    # for those conventions, on 95 % of rows; median disagreement under 3 vol points.
    valid = (bid > 0) & (vendor > 0.0101) & (vendor != 0.09) & (t >= 7 / 365) & (mid.status == IVStatus.OK)
    valid &= np.isfinite(at_bid) & np.isfinite(at_ask)
    assert valid.sum() > 15_000
    gap = np.abs(mid.vol - vendor)[valid]
    half_spread = 0.5 * (at_ask - at_bid)[valid]
    assert np.median(gap) < 0.03
    assert np.mean(gap <= half_spread + 0.03) >= 0.95


def test_vxx_vendor_vols_reprice_and_solve_back() -> None:
    frame = vxx_chain()
    live = (frame["impliedvol"] > 0) & (frame["t_years"] > 0)
    g = Grid(
        frame["underlying_last"].to_numpy()[live],
        frame["strike"].to_numpy()[live],
        frame["t_years"].to_numpy()[live],
        np.full(int(live.sum()), RATE_2016),
        np.zeros(int(live.sum())),
        frame["impliedvol"].to_numpy()[live],
        (frame["type"] == "call").to_numpy()[live],
    )
    share, _ = check_round_trip(g)
    assert share > 0.5


def test_agilent_bid_and_ask_vols_average_to_the_vendor_mean() -> None:
    path = OPTIONS / "agilent_chain_2016-01-05.csv"
    require(path.is_file(), f"the shared real data file {path} is not present")
    frame = pd.read_csv(path)
    quote = pd.to_datetime(frame["DataDate"], format="%m/%d/%Y")
    expiry = pd.to_datetime(frame["Expiration"], format="%m/%d/%Y")
    t = (expiry - quote).dt.days.to_numpy() / 365.0
    spot, strike = frame["UnderlyingPrice"].to_numpy(), frame["Strike"].to_numpy()
    calls = (frame["Type"] == "call").to_numpy()
    bid, ask = frame["Bid"].to_numpy(), frame["Ask"].to_numpy()
    mid = implied_vol(0.5 * (bid + ask), spot, strike, t, RATE_2016, 0.0, calls)
    assert_every_row_has_a_consistent_status(mid, len(frame))
    at_bid = implied_vol(bid, spot, strike, t, RATE_2016, 0.0, calls)
    at_ask = implied_vol(ask, spot, strike, t, RATE_2016, 0.0, calls)
    # The vendor's IVMean is the mean of its bid and ask IVs; compare like with like where the
    # vendor's bid IV is valid (> 0). Its r, q (Agilent paid a ~1.2 % dividend) and model are
    # unknown: allow half the bid-ask spread in vol plus 2 vol points (the worst row uses 1.3).
    valid = (frame["IVBid"].to_numpy() > 0) & (at_bid.status == IVStatus.OK) & (at_ask.status == IVStatus.OK)
    assert valid.sum() > 100
    ours = 0.5 * (at_bid.vol + at_ask.vol)[valid]
    vendor = frame["IVMean"].to_numpy()[valid]
    spread = (at_ask.vol - at_bid.vol)[valid]
    assert np.median(np.abs(ours - vendor)) < 0.015
    assert np.all(np.abs(ours - vendor) <= 0.5 * spread + 0.02)


def test_status_codes_are_the_documented_values() -> None:
    assert {s.name: int(s) for s in IVStatus} == {
        "OK": 0, "BELOW_INTRINSIC": 1, "ABOVE_MAXIMUM": 2, "NON_POSITIVE_TIME": 3, "INVALID_INPUT": 4,
        "AT_INTRINSIC": 5,
    }  # fmt: skip
