"""Probability of profit against Monte Carlo, net greeks against per-leg BSM greeks, P&L before expiry."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from vollib.black_scholes_merton import black_scholes_merton

from amcp.options.black_scholes import GREEKS, bsm_greeks
from amcp.options.chain import years_to_expiry
from amcp.options.strategies import (
    StrategyError,
    assemble,
    net_greeks,
    pnl,
    pnl_at_expiry,
    probability_of_profit,
)

NEW_YORK = ZoneInfo("America/New_York")
AS_OF = datetime(2024, 3, 1, 10, 0, tzinfo=NEW_YORK)
EXPIRY = date(2024, 4, 19)
T = years_to_expiry(AS_OF, EXPIRY)
RATE, DIV, VOL = 0.04, 0.01, 0.30


def position(name: str, strikes: dict[str, float], premiums: tuple[float, ...], **kwargs):
    return assemble(
        name,
        underlying="XYZ",
        as_of=AS_OF,
        spot=100.0,
        strikes=strikes,
        premiums=premiums,
        near_expiry=EXPIRY,
        rate=RATE,
        div_yield=DIV,
        vol=VOL,
        **kwargs,
    )


def monte_carlo_pop(payoff, drift: float, samples: int = 400_000) -> tuple[float, float]:
    """Fraction of lognormal terminal prices with a positive payoff, and its standard error."""
    rng = np.random.default_rng(20240301)
    z = rng.standard_normal(samples)
    terminal = 100.0 * np.exp((drift - DIV - 0.5 * VOL**2) * T + VOL * np.sqrt(T) * z)
    wins = payoff(terminal) > 0
    p = float(wins.mean())
    return p, float(np.sqrt(p * (1 - p) / samples))


POP_CASES = [
    # (name, strikes, premiums, per-share expiry payoff written out, drift)
    (
        "bull_call_spread",
        {"K1": 100, "K2": 110},
        (4.0, 1.0),
        lambda s: np.maximum(s - 100, 0) - np.maximum(s - 110, 0) - 3.0,
        None,
    ),
    (
        "short_strangle",
        {"K1": 90, "K2": 110},
        (1.5, 2.0),
        lambda s: 3.5 - np.maximum(90 - s, 0) - np.maximum(s - 110, 0),
        None,
    ),
    (
        "short_iron_condor",
        {"K1": 85, "K2": 90, "K3": 110, "K4": 115},
        (0.5, 1.5, 2.0, 0.8),
        lambda s: (
            2.2
            - np.maximum(90 - s, 0)
            + np.maximum(85 - s, 0)
            - np.maximum(s - 110, 0)
            + np.maximum(s - 115, 0)
        ),
        None,
    ),
    (
        "long_straddle",
        {"K1": 100},
        (4.0, 4.5),
        lambda s: np.maximum(s - 100, 0) + np.maximum(100 - s, 0) - 8.5,
        0.12,
    ),
]


@pytest.mark.parametrize("case", POP_CASES, ids=[c[0] for c in POP_CASES])
def test_probability_of_profit_matches_monte_carlo(case) -> None:
    name, strikes, premiums, payoff, drift = case
    pop = probability_of_profit(position(name, strikes, premiums), VOL, drift=drift)
    expected, error = monte_carlo_pop(payoff, RATE if drift is None else drift)
    assert abs(pop - expected) < 4 * error


def test_probability_of_profit_of_a_long_call_is_the_lognormal_tail_past_its_breakeven() -> None:
    # P(S_T > 103) = N(d) with d = (ln(100/103) + (r - q - σ²/2)T) / (σ√T): the risk-neutral N(d2) at K = 103.
    from math import erf, log, sqrt

    d = (log(100 / 103) + (RATE - DIV - 0.5 * VOL**2) * T) / (VOL * sqrt(T))
    expected = 0.5 * (1 + erf(d / sqrt(2)))
    assert probability_of_profit(position("long_call", {"K1": 100}, (3.0,)), VOL) == pytest.approx(
        expected, 1e-12
    )


def test_probability_of_profit_needs_a_positive_vol() -> None:
    with pytest.raises(StrategyError, match="vol"):
        probability_of_profit(position("long_call", {"K1": 100}, (3.0,)), 0.0)


def test_net_greeks_are_the_per_leg_greeks_times_quantity_and_multiplier_plus_shares() -> None:
    collar = position("collar", {"K1": 95, "K2": 110}, (2.0, 3.0), units=2)
    legs = [(95.0, False, 2), (110.0, True, -2)]
    expected = dict.fromkeys(GREEKS, 0.0)
    for strike, is_call, qty in legs:
        greeks = bsm_greeks(100.0, strike, T, RATE, DIV, VOL, is_call)
        for name in GREEKS:
            expected[name] += qty * 100 * float(greeks[name])
    expected["delta"] += 200  # 2 units × 100 shares
    assert net_greeks(collar) == pytest.approx(expected, rel=1e-12)


def test_net_greeks_of_a_straddle_cancel_to_near_zero_delta_and_double_vega() -> None:
    straddle = position("long_straddle", {"K1": 100}, (4.0, 4.5))
    greeks = net_greeks(straddle, vol=0.25, spot=101.0)
    call = bsm_greeks(101.0, 100.0, T, RATE, DIV, 0.25, True)
    put = bsm_greeks(101.0, 100.0, T, RATE, DIV, 0.25, False)
    assert greeks["delta"] == pytest.approx(100 * float(call["delta"] + put["delta"]), rel=1e-12)
    assert greeks["vega"] == pytest.approx(200 * float(call["vega"]), rel=1e-12)


def test_net_greeks_after_the_near_expiry_keep_only_the_far_legs() -> None:
    calendar = assemble(
        "long_call_calendar",
        underlying="XYZ",
        as_of=AS_OF,
        spot=100.0,
        strikes={"K1": 100},
        premiums=(2.0, 4.0),
        near_expiry=EXPIRY,
        far_expiry=EXPIRY + timedelta(days=28),
        vol=VOL,
        rate=RATE,
        div_yield=DIV,
    )
    later = datetime(2024, 4, 22, 10, 0, tzinfo=NEW_YORK)
    far_t = years_to_expiry(later, EXPIRY + timedelta(days=28))
    greeks = net_greeks(calendar, at=later)
    assert greeks["gamma"] == pytest.approx(
        100 * float(bsm_greeks(100.0, 100.0, far_t, RATE, DIV, VOL, True)["gamma"])
    )


def test_pnl_before_expiry_is_the_black_scholes_value_less_premium() -> None:
    long_call = position("long_call", {"K1": 100}, (3.0,))
    for spot in (90.0, 100.0, 115.0):
        value = black_scholes_merton("c", spot, 100.0, T, RATE, VOL, DIV)
        assert float(pnl(long_call, spot)) == pytest.approx(100 * (value - 3.0), abs=1e-9)
    halfway = datetime(2024, 3, 25, 10, 0, tzinfo=NEW_YORK)
    remaining = years_to_expiry(halfway, EXPIRY)
    value = black_scholes_merton("c", 104.0, 100.0, remaining, RATE, 0.2, DIV)
    assert float(pnl(long_call, 104.0, at=halfway, vol=0.2)) == pytest.approx(100 * (value - 3.0), abs=1e-9)


def test_pnl_at_the_expiry_close_is_the_expiry_payoff() -> None:
    spread = position("bull_call_spread", {"K1": 100, "K2": 110}, (4.0, 1.0))
    close = datetime(2024, 4, 19, 16, 0, tzinfo=NEW_YORK)
    prices = np.array([95.0, 105.0, 120.0])
    assert pnl(spread, prices, at=close) == pytest.approx(pnl_at_expiry(spread, prices))
    assert pnl_at_expiry(spread, prices) == pytest.approx([-300.0, 200.0, 700.0])


def test_a_leg_without_a_volatility_cannot_be_valued_before_expiry() -> None:
    no_vol = assemble(
        "long_call",
        underlying="XYZ",
        as_of=AS_OF,
        spot=100.0,
        strikes={"K1": 100},
        premiums=(3.0,),
        near_expiry=EXPIRY,
    )
    with pytest.raises(StrategyError, match="needs a volatility"):
        pnl(no_vol, 100.0)
    with pytest.raises(StrategyError, match="before the position"):
        pnl(no_vol, 100.0, at=AS_OF - timedelta(days=1), vol=0.2)
