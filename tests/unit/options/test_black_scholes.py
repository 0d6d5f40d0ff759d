"""Black-Scholes-Merton prices and greeks against QuantLib 1.44 (the oracle) and 50-digit mpmath.

The grid: spot 100, strikes 30..300 (moneyness 0.3..3), expiries 1 day..5 years
(Actual/365 Fixed), vols 0.01..2.0, calls and puts, two (r, q) pairs, one with r < 0.
Tolerance for QuantLib: ``|ours - ql| <= 1e-10·|ql| + 1e-12·scale`` with ``scale`` the spot
for values quoted in currency, 1 for delta and 1/spot for gamma. Where the two differ more in
relative terms (deep out-of-the-money tails below 1e-12 of spot), QuantLib is the inaccurate
one: its put delta is computed as ``e^(-qT)·(N(d1) - 1)`` and cancels; mpmath decides.
"""

from __future__ import annotations

import itertools

import mpmath
import numpy as np
import pytest
import QuantLib as ql

from amcp.options.black_scholes import GREEKS, bsm_greeks, bsm_price, per_day

SPOT = 100.0
MONEYNESS = (0.3, 0.5, 0.8, 0.95, 1.0, 1.05, 1.25, 2.0, 3.0)
DAYS = (1, 30, 365, 1825)
VOLS = (0.01, 0.2, 2.0)
RATES = ((0.05, 0.03), (-0.01, 0.04))
QL_GREEKS = {"delta": "delta", "gamma": "gamma", "vega": "vega", "theta": "theta", "rho": "rho"}
QL_GREEKS["dividend_rho"] = "dividendRho"
SCALE = {"value": SPOT, "delta": 1.0, "gamma": 1.0 / SPOT, "vega": SPOT, "theta": SPOT, "rho": SPOT}
SCALE |= {"dividend_rho": SPOT, "theta_per_day": SPOT}


class QuantLibMarket:
    """One flat BSM market in QuantLib whose spot, rate, yield and vol quotes can be reset."""

    def __init__(self) -> None:
        self.today = ql.Date(15, 1, 2024)
        ql.Settings.instance().evaluationDate = self.today
        day_count = ql.Actual365Fixed()
        self.spot, self.rate = ql.SimpleQuote(SPOT), ql.SimpleQuote(0.0)
        self.div, self.vol = ql.SimpleQuote(0.0), ql.SimpleQuote(0.2)
        self.process = ql.BlackScholesMertonProcess(
            ql.QuoteHandle(self.spot),
            ql.YieldTermStructureHandle(ql.FlatForward(self.today, ql.QuoteHandle(self.div), day_count)),
            ql.YieldTermStructureHandle(ql.FlatForward(self.today, ql.QuoteHandle(self.rate), day_count)),
            ql.BlackVolTermStructureHandle(
                ql.BlackConstantVol(self.today, ql.NullCalendar(), ql.QuoteHandle(self.vol), day_count)
            ),
        )

    def option(self, strike: float, days: int, is_call: bool, *, american: bool = False) -> ql.VanillaOption:
        """A vanilla option expiring ``days`` after today."""
        right = ql.Option.Call if is_call else ql.Option.Put
        expiry = self.today + days
        exercise = ql.AmericanExercise(self.today, expiry) if american else ql.EuropeanExercise(expiry)
        return ql.VanillaOption(ql.PlainVanillaPayoff(right, strike), exercise)

    def set(self, rate: float, div_yield: float, vol: float, spot: float = SPOT) -> None:
        """Reset the market's quotes."""
        self.spot.setValue(spot)
        self.rate.setValue(rate)
        self.div.setValue(div_yield)
        self.vol.setValue(vol)


def _grid() -> list[tuple[float, float, float, float, float, float, bool]]:
    """(spot, strike, t_years, rate, div_yield, vol, is_call) over the module's grid."""
    rows = []
    for m, days, vol, is_call, (r, q) in itertools.product(MONEYNESS, DAYS, VOLS, (True, False), RATES):
        rows.append((SPOT, SPOT * m, days / 365.0, r, q, vol, is_call))
    return rows


def _columns(rows: list[tuple[float, float, float, float, float, float, bool]]) -> list[np.ndarray]:
    return [np.array([row[i] for row in rows], dtype=np.bool_ if i == 6 else np.float64) for i in range(7)]


@pytest.fixture(scope="module")
def quantlib_grid() -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Our grid's inputs and QuantLib's AnalyticEuropeanEngine results on it."""
    market = QuantLibMarket()
    engine = ql.AnalyticEuropeanEngine(market.process)
    rows = _grid()
    expected: dict[str, list[float]] = {name: [] for name in ("value", *QL_GREEKS, "theta_per_day")}
    for _, strike, t, r, q, vol, is_call in rows:
        option = market.option(strike, round(t * 365.0), is_call)
        option.setPricingEngine(engine)
        market.set(r, q, vol)
        expected["value"].append(option.NPV())
        for ours, theirs in QL_GREEKS.items():
            expected[ours].append(getattr(option, theirs)())
        expected["theta_per_day"].append(option.thetaPerDay())
    return _columns(rows), {name: np.array(values) for name, values in expected.items()}


def _assert_close(name: str, got: np.ndarray, expected: np.ndarray, inputs: list[np.ndarray]) -> None:
    allowed = 1e-10 * np.abs(expected) + 1e-12 * SCALE[name]
    bad = np.abs(got - expected) > allowed
    assert not bad.any(), (name, [col[bad][:3] for col in inputs], got[bad][:3], expected[bad][:3])


def test_prices_match_quantlib_analytic_engine_over_the_grid(quantlib_grid) -> None:
    inputs, expected = quantlib_grid
    _assert_close("value", bsm_price(*inputs), expected["value"], inputs)


@pytest.mark.parametrize("name", list(QL_GREEKS))
def test_first_order_greeks_match_quantlib_analytic_engine(quantlib_grid, name: str) -> None:
    inputs, expected = quantlib_grid
    _assert_close(name, bsm_greeks(*inputs)[name], expected[name], inputs)


def test_theta_per_day_is_theta_over_365_as_quantlib(quantlib_grid) -> None:
    inputs, expected = quantlib_grid
    _assert_close("theta_per_day", per_day(bsm_greeks(*inputs)["theta"]), expected["theta_per_day"], inputs)


def test_second_order_greeks_match_finite_differences_of_quantlib_greeks() -> None:
    # QuantLib offers no vanna, volga or charm: difference its delta and vega instead.
    market = QuantLibMarket()
    engine = ql.AnalyticEuropeanEngine(market.process)
    rows = [row for row in _grid() if row[5] * np.sqrt(row[2]) >= 0.01]
    inputs = _columns(rows)
    ours = bsm_greeks(*inputs)
    for i, (_, strike, t, r, q, vol, is_call) in enumerate(rows):
        days = round(t * 365.0)
        option = market.option(strike, days, is_call)
        option.setPricingEngine(engine)

        def greek(
            name: str, *, vol_bump: float = 0.0, spot: float = SPOT, o: ql.VanillaOption = option
        ) -> float:
            market.set(r, q, vol + vol_bump, spot)
            return float(getattr(o, name)())

        h_vol, h_spot = 1e-6, 1e-6 * SPOT
        vanna_from_delta = (greek("delta", vol_bump=h_vol) - greek("delta", vol_bump=-h_vol)) / (2 * h_vol)
        vega_up, vega_down = greek("vega", spot=SPOT + h_spot), greek("vega", spot=SPOT - h_spot)
        vanna_from_vega = (vega_up - vega_down) / (2 * h_spot)
        volga = (greek("vega", vol_bump=h_vol) - greek("vega", vol_bump=-h_vol)) / (2 * h_vol)
        later = market.option(strike, days + 1, is_call)
        later.setPricingEngine(engine)
        # charm = -∂Δ/∂T: QuantLib dates move by whole days, so a 1-day difference against charm
        # at its midpoint (T + ½ day); the tight check of charm is the next test.
        charm = -(greek("delta", o=later) - greek("delta")) * 365.0
        midpoint = bsm_greeks(SPOT, strike, t + 0.5 / 365.0, r, q, vol, is_call)["charm"]
        context = rows[i]
        assert ours["vanna"][i] == pytest.approx(vanna_from_delta, rel=1e-6, abs=1e-7), context
        assert ours["vanna"][i] == pytest.approx(vanna_from_vega, rel=1e-6, abs=1e-7), context
        assert ours["volga"][i] == pytest.approx(volga, rel=1e-6, abs=1e-5), context
        if days >= 30:  # a 1-day step is no derivative of a 1-day option
            assert float(midpoint) == pytest.approx(charm, rel=1e-3, abs=1e-6), context


def test_second_order_greeks_match_finite_differences_of_first_order_greeks() -> None:
    rng = np.random.default_rng(5)
    n = 400
    s, k = rng.uniform(50, 150, n), rng.uniform(40, 200, n)
    t, r = rng.uniform(0.05, 3, n), rng.uniform(-0.01, 0.08, n)
    q, v = rng.uniform(0, 0.05, n), rng.uniform(0.05, 1.5, n)
    calls = rng.random(n) < 0.5
    greeks = bsm_greeks(s, k, t, r, q, v, calls)

    def first(name: str, **bump: np.ndarray) -> np.ndarray:
        args = {"spot": s, "strike": k, "t_years": t, "rate": r, "div_yield": q, "vol": v} | bump
        return bsm_greeks(is_call=calls, **args)[name]

    h = 1e-6
    vanna = (first("delta", vol=v + h) - first("delta", vol=v - h)) / (2 * h)
    volga = (first("vega", vol=v + h) - first("vega", vol=v - h)) / (2 * h)
    charm = -(first("delta", t_years=t + h) - first("delta", t_years=t - h)) / (2 * h)
    np.testing.assert_allclose(greeks["vanna"], vanna, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(greeks["volga"], volga, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(greeks["charm"], charm, rtol=1e-6, atol=1e-8)
    rho_q = (bsm_price(s, k, t, r, q + h, v, calls) - bsm_price(s, k, t, r, q - h, v, calls)) / (2 * h)
    np.testing.assert_allclose(greeks["dividend_rho"], rho_q, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("strike", "days", "vol", "is_call"), [(300.0, 30, 0.2, True), (40.0, 365, 0.1, False)]
)
def test_deep_out_of_the_money_prices_keep_relative_precision_against_mpmath(
    strike: float, days: int, vol: float, is_call: bool
) -> None:
    mpmath.mp.dps = 50
    s, k, t, r, q, sigma = (mpmath.mpf(x) for x in (SPOT, strike, days / 365.0, 0.05, 0.02, vol))
    d1 = (mpmath.log(s / k) + (r - q + sigma**2 / 2) * t) / (sigma * mpmath.sqrt(t))
    d2 = d1 - sigma * mpmath.sqrt(t)
    sign = 1 if is_call else -1
    forward_leg = s * mpmath.e ** (-q * t) * mpmath.ncdf(sign * d1)
    exact = sign * (forward_leg - k * mpmath.e ** (-r * t) * mpmath.ncdf(sign * d2))
    got = float(bsm_price(SPOT, strike, days / 365.0, 0.05, 0.02, vol, is_call))
    assert 0.0 < float(exact) < 1e-9
    assert got == pytest.approx(float(exact), rel=1e-11)


def test_greeks_return_every_documented_key_with_the_broadcast_shape() -> None:
    greeks = bsm_greeks(np.full((2, 1), 100.0), np.array([90.0, 100.0, 110.0]), 0.5, 0.03, 0.01, 0.25, True)
    assert tuple(greeks) == GREEKS
    assert all(value.shape == (2, 3) for value in greeks.values())


def test_degenerate_inputs_give_finite_limits_never_nan() -> None:
    strikes = np.array([30.0, 90.0, 100.0, 110.0, 300.0])
    for t, vol in [(0.0, 0.3), (1.0, 0.0), (1.0, 5e-324), (1e-300, 0.2), (1 / 365, 0.01), (50.0, 3.0)]:
        for is_call in (True, False):
            args = (SPOT, strikes, t, 0.05, 0.02, vol, is_call)
            values = [bsm_price(*args), *bsm_greeks(*args).values()]
            assert all(np.isfinite(v).all() for v in values), (t, vol, is_call)


def test_zero_vol_second_order_greeks_are_the_limits_of_the_intrinsic_value() -> None:
    dead = bsm_greeks(SPOT, np.array([90.0, 110.0]), 1.0, 0.05, 0.02, 0.0, True)
    np.testing.assert_array_equal(dead["vanna"], [0.0, 0.0])
    np.testing.assert_array_equal(dead["volga"], [0.0, 0.0])
    # In the money the value is S·e^(-qT) - K·e^(-rT): delta e^(-qT), whose ∂/∂t is q·e^(-qT).
    np.testing.assert_allclose(dead["charm"], [0.02 * np.exp(-0.02), 0.0], rtol=1e-15)
    np.testing.assert_allclose(dead["dividend_rho"], [-SPOT * np.exp(-0.02), 0.0], rtol=1e-15)
    # As σ → 0 the live formulas tend to the limits.
    nearly = bsm_greeks(SPOT, np.array([90.0, 110.0]), 1.0, 0.05, 0.02, 1e-6, True)
    np.testing.assert_allclose(nearly["charm"], dead["charm"], atol=1e-12)
