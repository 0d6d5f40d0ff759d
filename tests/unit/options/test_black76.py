"""Black-76 against QuantLib's ``blackFormula``, its greeks against finite differences.

Tolerance for QuantLib: ``|ours - ql| <= 1e-10·|ql| + 1e-12·F``, over forwards 100, strikes
30..300, expiries 1 day..5 years, vols 0.01..2.0, rates -1 %..8 %, calls and puts.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import QuantLib as ql

from amcp.errors import DataError
from amcp.options.black76 import BLACK76_GREEKS, black76_greeks, black76_price
from amcp.options.black_scholes import bsm_greeks, bsm_price

FORWARD = 100.0


def _grid() -> list[np.ndarray]:
    rows = list(
        itertools.product(
            (30.0, 50.0, 80.0, 100.0, 120.0, 200.0, 300.0),
            (1 / 365, 30 / 365, 1.0, 5.0),
            (0.01, 0.2, 2.0),
            (-0.01, 0.0, 0.08),
            (True, False),
        )
    )
    strike, t, vol, rate, calls = (np.array(column) for column in zip(*rows, strict=True))
    return [np.full(strike.shape, FORWARD), strike, t, rate, vol, calls.astype(np.bool_)]


def test_prices_match_quantlib_black_formula() -> None:
    forward, strike, t, rate, vol, calls = _grid()
    expected = np.array(
        [
            ql.blackFormula(
                ql.Option.Call if c else ql.Option.Put, k, f, v * math.sqrt(tt), math.exp(-r * tt)
            )
            for f, k, tt, r, v, c in zip(forward, strike, t, rate, vol, calls, strict=True)
        ]
    )
    got = black76_price(forward, strike, t, rate, vol, calls)
    np.testing.assert_array_less(np.abs(got - expected), 1e-10 * np.abs(expected) + 1e-12 * FORWARD)


def test_greeks_match_finite_differences_of_the_price() -> None:
    rng = np.random.default_rng(3)
    n = 300
    f, k = rng.uniform(50, 150, n), rng.uniform(40, 200, n)
    t, r, v = rng.uniform(0.05, 3, n), rng.uniform(-0.01, 0.08, n), rng.uniform(0.05, 1.5, n)
    calls = rng.random(n) < 0.5
    greeks = black76_greeks(f, k, t, r, v, calls)

    def price(**bump: np.ndarray) -> np.ndarray:
        args = {"forward": f, "strike": k, "t_years": t, "rate": r, "vol": v} | bump
        return black76_price(is_call=calls, **args)

    def greek(name: str, **bump: np.ndarray) -> np.ndarray:
        args = {"forward": f, "strike": k, "t_years": t, "rate": r, "vol": v} | bump
        return black76_greeks(is_call=calls, **args)[name]

    h, hf = 1e-6, 1e-4
    bumps = {"forward": (f, hf), "vol": (v, h), "t_years": (t, h), "rate": (r, h)}

    def slope(of: str, wrt: str) -> np.ndarray:
        base, step = bumps[wrt]
        up = price(**{wrt: base + step}) if of == "price" else greek(of, **{wrt: base + step})
        down = price(**{wrt: base - step}) if of == "price" else greek(of, **{wrt: base - step})
        return (up - down) / (2 * step)

    np.testing.assert_allclose(greeks["delta"], slope("price", "forward"), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(greeks["gamma"], slope("delta", "forward"), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(greeks["vega"], slope("price", "vol"), rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(greeks["theta"], -slope("price", "t_years"), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(greeks["rho"], slope("price", "rate"), rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(greeks["vanna"], slope("delta", "vol"), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(greeks["volga"], slope("vega", "vol"), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(greeks["charm"], -slope("delta", "t_years"), rtol=1e-6, atol=1e-8)
    assert tuple(greeks) == BLACK76_GREEKS


def test_black76_on_the_forward_is_bsm_on_the_spot() -> None:
    s, k, t, r, q, v = 100.0, np.array([80.0, 100.0, 125.0]), 0.75, 0.04, 0.015, 0.3
    forward = s * math.exp((r - q) * t)
    for is_call in (True, False):
        np.testing.assert_allclose(
            black76_price(forward, k, t, r, v, is_call), bsm_price(s, k, t, r, q, v, is_call), rtol=1e-13
        )
        # dV/dS = dV/dF · dF/dS, with dF/dS = e^((r-q)T).
        np.testing.assert_allclose(
            black76_greeks(forward, k, t, r, v, is_call)["delta"] * math.exp((r - q) * t),
            bsm_greeks(s, k, t, r, q, v, is_call)["delta"],
            rtol=1e-13,
        )


def test_expired_or_zero_vol_options_are_worth_discounted_intrinsic() -> None:
    strikes = np.array([90.0, 100.0, 110.0])
    np.testing.assert_allclose(
        black76_price(FORWARD, strikes, 1.0, 0.05, 0.0, True), np.exp(-0.05) * np.array([10.0, 0.0, 0.0])
    )
    dead = black76_greeks(FORWARD, strikes, 0.0, 0.05, 0.3, False)
    np.testing.assert_array_equal(dead["delta"], [0.0, 0.0, -1.0])
    assert all(np.isfinite(value).all() for value in dead.values())


def test_invalid_forward_is_rejected_naming_the_argument() -> None:
    with pytest.raises(DataError, match=r"black76: forward must be > 0 \(got -1.0\)"):
        black76_price(-1.0, 100.0, 1.0, 0.05, 0.2, True)
