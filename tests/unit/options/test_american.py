"""American options: Barone-Adesi-Whaley and the Leisen-Reimer tree against QuantLib 1.44.

* BAW against ``BaroneAdesiWhaleyApproximationEngine``: with QuantLib's own Newton tolerance
  (1e-6) to ``1e-12·S``; converged (our default 1e-12), within the 1e-4·S that QuantLib's early
  stop leaves.
* The tree against ``BinomialVanillaEngine(process, "lr", steps)`` with the same odd steps: prices
  to ``1e-9·max(|ql|, 1)``; delta and gamma, where the option is held at the root, to 1e-9
  relative + 1e-9 absolute.
* Convergence against a 1001-step tree, and European trees against the closed form.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import QuantLib as ql

from amcp.errors import DataError
from amcp.options.american import baw_price, leisen_reimer
from amcp.options.black_scholes import bsm_greeks, bsm_price
from tests.unit.options.test_black_scholes import SPOT, QuantLibMarket

STEPS = 101


Row = tuple[float, float, int, float, float, float, bool]


def _grid(days: tuple[int, ...], rates: tuple[tuple[float, float], ...]) -> list[Row]:
    """(spot, strike, days, rate, div_yield, vol, is_call) rows."""
    moneyness, vols, rights = (0.5, 0.8, 1.0, 1.25, 2.0), (0.05, 0.3, 1.0), (True, False)
    return [
        (SPOT, SPOT * m, d, r, q, vol, c)
        for m, d, vol, c, (r, q) in itertools.product(moneyness, days, vols, rights, rates)
    ]


def _columns(rows: list[Row]) -> list[np.ndarray]:
    s, k, d, r, q, v, c = (np.array(column) for column in zip(*rows, strict=True))
    return [s, k, d / 365.0, r, q, v, c.astype(np.bool_)]


@pytest.fixture(scope="module")
def quantlib_american() -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Grid inputs, QuantLib's BAW prices and its LR tree's (price, delta, gamma); NaN where the
    tree refuses (a probability of exactly 0 or 1)."""
    market = QuantLibMarket()
    baw = ql.BaroneAdesiWhaleyApproximationEngine(market.process)
    tree = ql.BinomialVanillaEngine(market.process, "lr", STEPS)
    rows = _grid((1, 30, 365, 1825), ((0.05, 0.03), (0.02, 0.06), (0.08, 0.0)))
    baw_values, tree_values = [], []
    for _, strike, days, r, q, vol, is_call in rows:
        option = market.option(strike, days, is_call, american=True)
        market.set(r, q, vol)
        option.setPricingEngine(baw)
        baw_values.append(option.NPV())
        option.setPricingEngine(tree)
        try:
            tree_values.append((option.NPV(), option.delta(), option.gamma()))
        except RuntimeError:
            tree_values.append((math.nan, math.nan, math.nan))
    return _columns(rows), np.array(baw_values), np.array(tree_values)


def test_baw_with_quantlibs_tolerance_reproduces_quantlibs_engine(quantlib_american) -> None:
    inputs, expected, _ = quantlib_american
    got = baw_price(*inputs, tolerance=1e-6)
    np.testing.assert_array_less(np.abs(got - expected), 1e-12 * SPOT)


def test_converged_baw_is_within_quantlibs_stopping_error(quantlib_american) -> None:
    inputs, expected, _ = quantlib_american
    got = baw_price(*inputs)
    np.testing.assert_array_less(np.abs(got - expected), 1e-4 * SPOT)
    assert np.abs(got - expected).max() > 1e-9  # the tolerance matters: QuantLib stops early


def test_lr_tree_prices_match_quantlib_lr_engine_with_the_same_steps(quantlib_american) -> None:
    inputs, _, expected = quantlib_american
    ok = np.isfinite(expected[:, 0])
    assert ok.sum() >= 0.9 * ok.size
    got = leisen_reimer(*inputs, steps=STEPS).price
    allowed = 1e-9 * np.maximum(np.abs(expected[ok, 0]), 1.0)
    np.testing.assert_array_less(np.abs(got[ok] - expected[ok, 0]), allowed)


def test_lr_tree_delta_and_gamma_match_quantlib_where_the_option_is_held(quantlib_american) -> None:
    inputs, _, expected = quantlib_american
    got = leisen_reimer(*inputs, steps=STEPS)
    intrinsic = np.maximum(np.where(inputs[6], 1.0, -1.0) * (inputs[0] - inputs[1]), 0.0)
    held = np.isfinite(expected[:, 0]) & (got.price > intrinsic + 1e-9) & (inputs[2] >= 30 / 365)
    assert held.sum() > 100
    for column, greek in ((1, got.delta), (2, got.gamma)):
        np.testing.assert_allclose(greek[held], expected[held, column], rtol=1e-9, atol=1e-9)


def test_baw_and_the_lr_tree_converge_to_a_1001_step_tree() -> None:
    rows = _grid((30, 365), ((0.05, 0.03), (0.08, 0.0)))
    inputs = _columns(rows)
    fine = leisen_reimer(*inputs, steps=1001).price
    coarse = leisen_reimer(*inputs, steps=STEPS).price
    # Early exercise makes the tree converge at first order: 101 steps are within 0.2 %.
    np.testing.assert_allclose(coarse, fine, rtol=2e-3, atol=1e-4 * SPOT)
    # BAW is an approximation (worst for long-dated, high-vol options held far from the boundary):
    # every price within 5 % (or 0.05 % of spot), nineteen in twenty within 1 %.
    baw = baw_price(*inputs)
    np.testing.assert_allclose(baw, fine, rtol=5e-2, atol=5e-4 * SPOT)
    assert np.mean(np.abs(baw - fine) <= 1e-2 * fine + 5e-4 * SPOT) >= 0.95


def test_european_lr_tree_converges_to_black_scholes_at_second_order() -> None:
    s, k, t, r, q, v = SPOT, np.array([80.0, 95.0, 100.0, 110.0, 150.0]), 0.5, 0.04, 0.01, 0.3
    for is_call in (True, False):
        exact = bsm_price(s, k, t, r, q, v, is_call)
        errors = [
            np.abs(leisen_reimer(s, k, t, r, q, v, is_call, steps=n, american=False).price - exact).max()
            for n in (51, 201)
        ]
        assert errors[1] < 1e-4
        assert errors[1] < errors[0] / 8.0  # 4x the steps: 16x smaller in theory
        tree = leisen_reimer(s, k, t, r, q, v, is_call, steps=801, american=False)
        greeks = bsm_greeks(s, k, t, r, q, v, is_call)
        # The tree's delta is a difference one step off the root: first order in Δt.
        np.testing.assert_allclose(tree.delta, greeks["delta"], atol=5e-4)
        np.testing.assert_allclose(tree.gamma, greeks["gamma"], atol=1e-4)
        np.testing.assert_allclose(tree.theta, greeks["theta"], rtol=5e-3)


def _wide_grid() -> list[np.ndarray]:
    rows = itertools.product(
        (0.3, 0.9, 1.0, 1.1, 3.0),
        (0.0, 1 / 365, 1.0, 5.0),
        (0.0, 1e-9, 0.01, 0.3, 2.0),
        (-0.01, 0.0, 0.05),
        (0.0, 0.04),
        (True, False),
    )
    m, t, v, r, q, c = (np.array(column) for column in zip(*rows, strict=True))
    return [np.full(m.shape, SPOT), SPOT * m, t, r, q, v, c.astype(np.bool_)]


def test_american_is_worth_at_least_european_and_intrinsic_and_never_nan() -> None:
    inputs = _wide_grid()
    european = bsm_price(*inputs)
    intrinsic = np.maximum(np.where(inputs[6], 1.0, -1.0) * (inputs[0] - inputs[1]), 0.0)
    baw = baw_price(*inputs)
    tree = leisen_reimer(*inputs, steps=STEPS)
    european_tree = leisen_reimer(*inputs, steps=STEPS, american=False)
    assert all(np.isfinite(values).all() for values in (baw, *tree))
    assert (baw >= european).all() and (baw >= intrinsic).all()
    assert (tree.price >= european_tree.price).all() and (tree.price >= intrinsic).all()


def test_baw_converges_for_random_chains_and_a_call_with_a_vanishing_dividend() -> None:
    # q → 0 sends a call's critical price to infinity (here S* is about 6.3e6).
    tiny_dividend = (SPOT, 124.13145088385231, 2.5126978403478124, 0.044034065388748656, 1.7353458796e-06)
    value = float(baw_price(*tiny_dividend, 0.6274376074976026, True))
    european = float(bsm_price(*tiny_dividend, 0.6274376074976026, True))
    assert european <= value <= european + 1e-6
    rng = np.random.default_rng(9)
    n = 20_000
    k, t = rng.uniform(30, 300, n), rng.uniform(1 / 365, 5, n)
    r, q, v = rng.uniform(0, 0.1, n), rng.uniform(0, 0.1, n) ** 3, rng.uniform(0.01, 2.0, n)
    calls = rng.random(n) < 0.5
    prices = baw_price(SPOT, k, t, r, q, v, calls)
    assert (prices >= bsm_price(SPOT, k, t, r, q, v, calls)).all()


def test_american_call_without_dividends_is_the_european_call() -> None:
    k, t, r, v = np.array([50.0, 90.0, 100.0, 120.0, 250.0]), np.array([[1 / 365], [1.0], [5.0]]), 0.05, 0.4
    args = (SPOT, k, t, r, 0.0, v, True)
    np.testing.assert_array_equal(baw_price(*args), bsm_price(*args))
    american = leisen_reimer(SPOT, k, t, r, 0.0, v, True, steps=STEPS)
    european = leisen_reimer(SPOT, k, t, r, 0.0, v, True, steps=STEPS, american=False)
    np.testing.assert_allclose(american.price, european.price, rtol=1e-13, atol=1e-13)
    assert american.price.shape == (3, 5)


def test_deep_in_the_money_put_is_exercised_at_once_with_delta_minus_one() -> None:
    tree = leisen_reimer(SPOT, 200.0, 1.0, 0.05, 0.0, 0.2, False, steps=STEPS)
    assert float(tree.price) == pytest.approx(100.0, abs=1e-12)
    assert (float(tree.delta), float(tree.gamma), float(tree.theta)) == (-1.0, 0.0, 0.0)
    assert float(baw_price(SPOT, 200.0, 1.0, 0.05, 0.0, 0.2, False)) == pytest.approx(100.0, abs=1e-12)


def test_zero_vol_american_takes_the_best_deterministic_exercise_time() -> None:
    # Put, r > 0: K·e^(-rτ) - S falls with τ, so exercise now.
    assert float(baw_price(SPOT, 110.0, 1.0, 0.05, 0.0, 0.0, False)) == pytest.approx(10.0, abs=1e-12)
    # Call, r = 5 %, q = 2 %: S·e^(-qτ) - K·e^(-rτ) peaks where q·S·e^(-qτ) = r·K·e^(-rτ).
    best = math.log(0.05 / 0.02) / 0.03
    peak = SPOT * (math.exp(-0.02 * best) - math.exp(-0.05 * best))
    tree = leisen_reimer(SPOT, SPOT, 50.0, 0.05, 0.02, 0.0, True, steps=STEPS)
    assert float(tree.price) == pytest.approx(peak, rel=1e-14)
    assert float(tree.delta) == pytest.approx(math.exp(-0.02 * best), rel=1e-14)
    assert float(baw_price(SPOT, SPOT, 50.0, 0.05, 0.02, 0.0, True)) == pytest.approx(peak, rel=1e-14)


def test_negative_rate_american_call_is_priced_by_the_tree_and_exceeds_european() -> None:
    args = (SPOT, 90.0, 5.0, -0.01, 0.0, 0.2, True)
    tree = leisen_reimer(*args, steps=201).price
    assert float(baw_price(*args)) == float(tree)
    assert float(tree) > float(bsm_price(*args)) + 0.1


@pytest.mark.parametrize("steps", [2, 100, 1, 0, 101.0, True])
def test_tree_rejects_steps_that_are_not_odd_integers_of_at_least_3(steps: object) -> None:
    with pytest.raises(DataError, match="steps must be an odd integer >= 3"):
        leisen_reimer(SPOT, SPOT, 1.0, 0.05, 0.0, 0.2, True, steps=steps)  # type: ignore[arg-type]


def test_invalid_inputs_raise_naming_the_argument() -> None:
    with pytest.raises(DataError, match=r"baw: strike must be > 0"):
        baw_price(SPOT, 0.0, 1.0, 0.05, 0.0, 0.2, True)
    with pytest.raises(DataError, match=r"leisen_reimer: vol must be finite"):
        leisen_reimer(SPOT, SPOT, 1.0, 0.05, 0.0, math.nan, True)
