"""Calendars and diagonals (two expiries) against hand-worked examples.

At the near expiry the near legs are worth their intrinsic value and the far legs their
Black-Scholes value with the remaining 91 days. The far values come from vollib (py_vollib's successor, an
independent implementation), with r = q = 0 and σ = 20 %. The bounds are worked out by hand from
the limits S → 0 and S → ∞ (with r = q = 0: a far call tends to S − K, a far put to K − S at
S = 0) and from where the P&L peaks (at a short strike, where the slope changes from the far
leg's delta to delta − 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from vollib.black_scholes_merton import black_scholes_merton

from amcp.options.strategies import assemble, breakevens, pnl_at_expiry, profit_bounds

AS_OF = datetime(2024, 5, 1, 10, 0, tzinfo=ZoneInfo("America/New_York"))
NEAR, FAR = date(2024, 6, 21), date(2024, 9, 20)  # 91 days apart, both in daylight time
TAU = 91 / 365
VOL = 0.20


def far_value(flag: str, spot: float, strike: float) -> float:
    return black_scholes_merton(flag, spot, strike, TAU, 0.0, VOL, 0.0)


@dataclass(frozen=True)
class Case:
    name: str
    strikes: dict[str, float]
    premiums: tuple[float, ...]
    # (flag, strike, signed contracts) of the far legs and of the near legs, and the net debit
    far: tuple[tuple[str, float, int], ...]
    near: tuple[tuple[str, float, int], ...]
    debit: float
    peak_at: tuple[float, ...]  # the prices where the maximum may lie (worked out by hand)
    max_loss: float | None  # per share, worked by hand (None: the value at trough_at)
    trough_at: float | None = None


def oracle_pnl(case: Case, spot: float) -> float:
    """Per-share P&L at the near expiry, by hand formula and py_vollib."""
    value = -case.debit
    for flag, strike, count in case.far:
        value += count * far_value(flag, spot, strike)
    for flag, strike, count in case.near:
        value += count * max(spot - strike if flag == "c" else strike - spot, 0.0)
    return value


CASES = [
    # -C100 near @2, +C100 far @4.5: debit 2.5. Peak at 100: C_far(100) - 2.5 ≈ 3.9878·… (ATM, σ√τ ≈ 0.0999).
    # Both tails tend to -2.5 (S→0: both worthless; S→∞: C_far - (S-100) → 0).
    Case("long_call_calendar", {"K1": 100}, (2, 4.5), (("c", 100, 1),), (("c", 100, -1),), 2.5, (100,), -2.5),
    # The mirror: tails +2.5 (the maximum, approached), trough at 100 of 2.5 - C_far(100).
    Case(
        "short_call_calendar", {"K1": 100}, (2, 4.5), (("c", 100, -1),), (("c", 100, 1),), -2.5, (), None, 100
    ),
    # -P100 near @1.8, +P100 far @4: debit 2.2; tails -2.2 (S→0: P_far → 100 cancels the near put).
    Case("long_put_calendar", {"K1": 100}, (1.8, 4), (("p", 100, 1),), (("p", 100, -1),), 2.2, (100,), -2.2),
    Case(
        "short_put_calendar", {"K1": 100}, (1.8, 4), (("p", 100, -1),), (("p", 100, 1),), -2.2, (), None, 100
    ),
    # +P near @3, -C near @3.5, -P far @4.5, +C far @5.2: debit 0.2. With r = q = 0 put-call parity makes
    # C_far - P_far = S - 100 and the near synthetic short pays 100 - S: the P&L is -0.2 at every price.
    Case(
        "jelly_roll",
        {"K1": 100},
        (3, 3.5, 4.5, 5.2),
        (("c", 100, 1), ("p", 100, -1)),
        (("p", 100, 1), ("c", 100, -1)),
        0.2,
        (100,),
        -0.2,
    ),
    Case(
        "short_jelly_roll",
        {"K1": 100},
        (3, 3.5, 4.5, 5.2),
        (("c", 100, -1), ("p", 100, 1)),
        (("p", 100, -1), ("c", 100, 1)),
        -0.2,
        (100,),
        0.2,
    ),
    # +C95 far @8, -C105 near @1.5: debit 6.5. S→0: -6.5; S→∞: (S-95) - (S-105) - 6.5 = 3.5. Peak at 105.
    Case(
        "call_diagonal",
        {"K1": 95, "K2": 105},
        (8, 1.5),
        (("c", 95, 1),),
        (("c", 105, -1),),
        6.5,
        (105,),
        -6.5,
    ),
    # -P95 near @1.5, +P105 far @8: debit 6.5. S→0: 105 - 95 - 6.5 = 3.5; S→∞: -6.5. Peak at 95.
    Case(
        "put_diagonal", {"K1": 95, "K2": 105}, (1.5, 8), (("p", 105, 1),), (("p", 95, -1),), 6.5, (95,), -6.5
    ),
    # +C80 far @21, -C110 near @1: debit 20. S→0: -20; S→∞: 30 - 20 = 10. Peak at 110.
    Case(
        "poor_mans_covered_call",
        {"K1": 80, "K2": 110},
        (21, 1),
        (("c", 80, 1),),
        (("c", 110, -1),),
        20,
        (110,),
        -20,
    ),
    # -P95 near @1, +P95 far @2.5, -C105 near @1.2, +C105 far @2.8: debit 3.1; both tails -3.1. Between the
    # strikes the P&L is the convex far put + far call, so the peak is at 95 or 105
    # (slope 1 + Δp > 0 below 95, Δc - 1 < 0 above 105).
    Case(
        "double_calendar",
        {"K1": 95, "K2": 105},
        (1, 2.5, 1.2, 2.8),
        (("p", 95, 1), ("c", 105, 1)),
        (("p", 95, -1), ("c", 105, -1)),
        3.1,
        (95, 105),
        -3.1,
    ),
    # +P90 far @1.6, -P95 near @1, -C105 near @1.2, +C110 far @1.7: debit 1.1.
    # S→0: 90 - 95 - 1.1 = -6.1; S→∞: (S-110) - (S-105) - 1.1 = -6.1. Peak at 95 or 105 (as the double
    # calendar: convex between the short strikes).
    Case(
        "double_diagonal",
        {"K1": 90, "K2": 95, "K3": 105, "K4": 110},
        (1.6, 1, 1.2, 1.7),
        (("p", 90, 1), ("c", 110, 1)),
        (("p", 95, -1), ("c", 105, -1)),
        1.1,
        (95, 105),
        -6.1,
    ),
]

MULTI_EXPIRY = {case.name for case in CASES}


def _position(case: Case):
    return assemble(
        case.name,
        underlying="XYZ",
        as_of=AS_OF,
        spot=100.0,
        strikes=case.strikes,
        premiums=case.premiums,
        near_expiry=NEAR,
        far_expiry=FAR,
        vol=VOL,
    )


def _oracle_roots(case: Case) -> list[float]:
    grid = np.linspace(0.5, 400.0, 8000)
    values = np.array([oracle_pnl(case, s) for s in grid])
    roots = []
    for i in np.flatnonzero(np.sign(values[:-1]) * np.sign(values[1:]) < 0):
        low, high = grid[i], grid[i + 1]
        for _ in range(60):
            mid = 0.5 * (low + high)
            if np.sign(oracle_pnl(case, mid)) == np.sign(oracle_pnl(case, low)):
                low = mid
            else:
                high = mid
        roots.append(0.5 * (low + high))
    return roots


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_pnl_at_the_near_expiry_values_far_legs_by_black_scholes(case: Case) -> None:
    position = _position(case)
    for spot in (85.0, 100.0, 112.0):
        assert float(pnl_at_expiry(position, spot)) == pytest.approx(100 * oracle_pnl(case, spot), abs=1e-6)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_breakevens_are_the_roots_of_the_near_expiry_pnl(case: Case) -> None:
    assert breakevens(_position(case)) == pytest.approx(_oracle_roots(case), abs=1e-6)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_max_profit_and_loss_at_the_near_expiry(case: Case) -> None:
    bounds = profit_bounds(_position(case))
    assert not bounds.profit_unlimited and not bounds.loss_unlimited
    grid = np.linspace(0.5, 400.0, 40_001)
    values = [oracle_pnl(case, s) for s in grid]
    peak = max(oracle_pnl(case, s) for s in case.peak_at) if case.peak_at else max(values)
    assert bounds.max_profit == pytest.approx(100 * peak, abs=1e-3)
    trough = case.max_loss if case.max_loss is not None else oracle_pnl(case, case.trough_at)
    assert bounds.max_loss == pytest.approx(100 * trough, abs=1e-3)


def test_calendar_peak_is_the_atm_far_call_less_the_debit() -> None:
    # C(100, 100, τ=91/365, σ=.2, r=q=0) = 100·(2·N(σ√τ/2) − 1), σ√τ = 0.2·√(91/365) = 0.099863.
    sd = 0.2 * math.sqrt(91 / 365)
    atm_call = 100 * math.erf(sd / 2 / math.sqrt(2))  # 2·N(x) − 1 = erf(x/√2)
    bounds = profit_bounds(_position(CASES[0]))
    assert bounds.max_profit == pytest.approx(100 * (atm_call - 2.5), abs=1e-6)
