"""Every named strategy against a hand-worked example: legs, P&L at three prices, breakevens and
max profit / max loss (unlimited included).

All examples: underlying XYZ at 100, stock legs at 100, multiplier 100. Values are per share
(the tests multiply by 100), worked out by hand in the comments: ``C(K)``/``P(K)`` is the
expiry value ``max(S-K,0)``/``max(K-S,0)``, "debit d" means the legs cost d per share net.
Calendars and diagonals (two expiries) are in test_strategies_calendars.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from amcp.options.strategies import (
    CATALOG,
    StrategyError,
    assemble,
    breakevens,
    get_spec,
    names,
    pnl_at_expiry,
    profit_bounds,
)

INF = math.inf
AS_OF = datetime(2024, 3, 1, 10, 0, tzinfo=ZoneInfo("America/New_York"))
EXPIRY = date(2024, 4, 19)


@dataclass(frozen=True)
class Case:
    name: str
    strikes: dict[str, float]
    premiums: tuple[float, ...]  # per leg, in the spec's leg order
    points: dict[float, float]  # price -> P&L per share at expiry
    breakevens: tuple[float, ...]
    max_profit: float
    max_loss: float


def K(*strikes: float) -> dict[str, float]:
    return {f"K{i + 1}": k for i, k in enumerate(strikes)}


CASES = [
    # +C100 @3: P&L = C(100) - 3. BE 103; loss capped at the premium, profit unlimited.
    Case("long_call", K(100), (3,), {90: -3, 100: -3, 110: 7}, (103,), INF, -3),
    # +P100 @4: P&L = P(100) - 4. BE 96; best at S=0: 100 - 4 = 96.
    Case("long_put", K(100), (4,), {90: 6, 100: -4, 110: -4}, (96,), 96, -4),
    # -C105 @2: P&L = 2 - C(105). BE 107; loss unlimited.
    Case("naked_call", K(105), (2,), {100: 2, 105: 2, 115: -8}, (107,), 2, -INF),
    # -P95 @2: P&L = 2 - P(95). BE 93; worst at S=0: 2 - 95 = -93.
    Case("naked_put", K(95), (2,), {85: -8, 95: 2, 110: 2}, (93,), 2, -93),
    # -P90 @1.5: P&L = 1.5 - P(90). BE 88.5; worst at 0: -88.5.
    Case("cash_secured_put", K(90), (1.5,), {80: -8.5, 90: 1.5, 100: 1.5}, (88.5,), 1.5, -88.5),
    # +100 sh, -C105 @2: (S-100) + 2 - C(105). BE 98; capped at 5 + 2 = 7; worst at 0: -98.
    Case("covered_call", K(105), (2,), {90: -8, 105: 7, 120: 7}, (98,), 7, -98),
    # -100 sh, -P95 @2: (100-S) + 2 - P(95). BE 102; capped at 7 below 95; loss unlimited upward.
    Case("covered_put", K(95), (2,), {80: 7, 95: 7, 110: -8}, (102,), 7, -INF),
    # -100 sh, +C105 @2: (100-S) - 2 + C(105). BE 98; floor -7 above 105; best at 0: 98.
    Case("protective_call", K(105), (2,), {90: 8, 105: -7, 120: -7}, (98,), 98, -7),
    # +100 sh, +P95 @2: (S-100) - 2 + P(95). BE 102; floor -7 below 95; profit unlimited.
    Case("protective_put", K(95), (2,), {80: -7, 95: -7, 110: 8}, (102,), INF, -7),
    # +100 sh, +P95 @2, -C110 @3: S - 99 between the strikes. BE 99; floor 95-99 = -4; cap 110-99 = 11.
    Case("collar", K(95, 110), (2, 3), {90: -4, 100: 1, 120: 11}, (99,), 11, -4),
    # +100 sh, +P100 @3, -C100 @4: S - 100 + P(100) - C(100) + 1 = +1 everywhere: no breakeven.
    Case("conversion", K(100), (3, 4), {80: 1, 100: 1, 120: 1}, (), 1, 1),
    # -100 sh, -P100 @3, +C100 @4: the mirror: -1 everywhere.
    Case("reverse_conversion", K(100), (3, 4), {80: -1, 100: -1, 120: -1}, (), -1, -1),
    # -P100 @3, +C100 @4: C - P - 1 = S - 101. BE 101; worst at 0: -101.
    Case("synthetic_long_stock", K(100), (3, 4), {90: -11, 101: 0, 110: 9}, (101,), INF, -101),
    # +P100 @3, -C100 @4: 101 - S. BE 101; best at 0: 101.
    Case("synthetic_short_stock", K(100), (3, 4), {90: 11, 101: 0, 110: -9}, (101,), 101, -INF),
    # -P95 @2, +C105 @2.5: -0.5 - P(95) + C(105). BE 105.5 only; worst at 0: -95.5.
    Case("risk_reversal", K(95, 105), (2, 2.5), {90: -5.5, 100: -0.5, 110: 4.5}, (105.5,), INF, -95.5),
    # +C100 @4, -C110 @1: debit 3. BE 103; max 10 - 3 = 7.
    Case("bull_call_spread", K(100, 110), (4, 1), {95: -3, 105: 2, 115: 7}, (103,), 7, -3),
    # -C100 @4, +C110 @1: credit 3. BE 103; max loss 10 - 3 = 7.
    Case("bear_call_spread", K(100, 110), (4, 1), {95: 3, 105: -2, 115: -7}, (103,), 3, -7),
    # +P90 @1, -P100 @4: credit 3. BE 97; max loss 10 - 3 = 7.
    Case("bull_put_spread", K(90, 100), (1, 4), {85: -7, 95: -2, 105: 3}, (97,), 3, -7),
    # -P90 @1, +P100 @4: debit 3. BE 97; max 7.
    Case("bear_put_spread", K(90, 100), (1, 4), {85: 7, 95: 2, 105: -3}, (97,), 7, -3),
    # +P100 @4, +C100 @5: debit 9. BE 91, 109.
    Case("long_straddle", K(100), (4, 5), {80: 11, 100: -9, 115: 6}, (91, 109), INF, -9),
    Case("short_straddle", K(100), (4, 5), {80: -11, 100: 9, 115: -6}, (91, 109), 9, -INF),
    # +P95 @2, +C105 @3: debit 5. BE 90, 110; best at 0: 95 - 5 = 90 on the put side, unlimited above.
    Case("long_strangle", K(95, 105), (2, 3), {85: 5, 100: -5, 115: 5}, (90, 110), INF, -5),
    Case("short_strangle", K(95, 105), (2, 3), {85: -5, 100: 5, 115: -5}, (90, 110), 5, -INF),
    # +C95 @7, +P105 @8: debit 15; the pair is worth 10 between the strikes: -5. BE 105-15 = 90, 95+15 = 110.
    Case("long_guts", K(95, 105), (7, 8), {80: 10, 100: -5, 120: 10}, (90, 110), INF, -5),
    Case("short_guts", K(95, 105), (7, 8), {80: -10, 100: 5, 120: -10}, (90, 110), 5, -INF),
    # +P100 @4, +2 C100 @5: debit 14. BE 100-14 = 86, 100+14/2 = 107.
    Case("strap", K(100), (4, 5), {80: 6, 100: -14, 110: 6}, (86, 107), INF, -14),
    # +2 P100 @4, +C100 @5: debit 13. BE 100-13/2 = 93.5, 113.
    Case("strip", K(100), (4, 5), {90: 7, 100: -13, 120: 7}, (93.5, 113), INF, -13),
    # +C95 @7, -2 C100 @4, +C105 @2: debit 1. Peak 5 - 1 = 4 at 100. BE 96, 104.
    Case("long_call_butterfly", K(95, 100, 105), (7, 4, 2), {90: -1, 100: 4, 102: 2}, (96, 104), 4, -1),
    Case("short_call_butterfly", K(95, 100, 105), (7, 4, 2), {90: 1, 100: -4, 102: -2}, (96, 104), 1, -4),
    # +P95 @1, -2 P100 @3, +P105 @6: debit 1. Peak P(105) - 1 = 4 at 100; at 103: 2 - 1 = 1.
    Case("long_put_butterfly", K(95, 100, 105), (1, 3, 6), {90: -1, 100: 4, 103: 1}, (96, 104), 4, -1),
    Case("short_put_butterfly", K(95, 100, 105), (1, 3, 6), {90: 1, 100: -4, 103: -1}, (96, 104), 1, -4),
    # +C90 @11, -C95 @7, -C105 @2, +C110 @1: debit 3; body worth 5: +2; at 108: 18 - 13 - 3 = 2 -> -1.
    Case("long_call_condor", K(90, 95, 105, 110), (11, 7, 2, 1), {85: -3, 100: 2, 108: -1}, (93, 107), 2, -3),
    Case("short_call_condor", K(90, 95, 105, 110), (11, 7, 2, 1), {85: 3, 100: -2, 108: 1}, (93, 107), 3, -2),
    # +P90 @1, -P95 @2, -P105 @6, +P110 @10: debit 3; at 92: -3 - 13 + 18 = 2 -> -1.
    Case("long_put_condor", K(90, 95, 105, 110), (1, 2, 6, 10), {85: -3, 100: 2, 92: -1}, (93, 107), 2, -3),
    Case("short_put_condor", K(90, 95, 105, 110), (1, 2, 6, 10), {85: 3, 100: -2, 92: 1}, (93, 107), 3, -2),
    # +C95 @7, -2 C100 @4, +C110 @1.5: debit 0.5; peak 4.5 at 100; above 110: 15 - 20 + ... = -5 - 0.5.
    # BE 95.5 and 100 + 4.5 = 104.5.
    Case(
        "call_broken_wing_butterfly",
        K(95, 100, 110),
        (7, 4, 1.5),
        {90: -0.5, 100: 4.5, 120: -5.5},
        (95.5, 104.5),
        4.5,
        -5.5,
    ),
    # +P85 @1.5, -2 P95 @4, +P100 @7: debit 0.5; peak 5 - 0.5 = 4.5 at 95; below 85: -5.5.
    # Between 85 and 95 the P&L is S - 90.5 (BE 90.5); between 95 and 100 it is 99.5 - S (BE 99.5).
    Case(
        "put_broken_wing_butterfly",
        K(85, 95, 100),
        (1.5, 4, 7),
        {80: -5.5, 95: 4.5, 110: -0.5},
        (90.5, 99.5),
        4.5,
        -5.5,
    ),
    # +P90 @1, -P100 @4, -C100 @4.5, +C110 @1.5: credit 6; wings 10: max loss 4. BE 94, 106.
    Case(
        "short_iron_butterfly", K(90, 100, 110), (1, 4, 4.5, 1.5), {85: -4, 100: 6, 105: 1}, (94, 106), 6, -4
    ),
    Case(
        "long_iron_butterfly", K(90, 100, 110), (1, 4, 4.5, 1.5), {85: 4, 100: -6, 105: -1}, (94, 106), 4, -6
    ),
    # +P90 @.5, -P95 @1.5, -C105 @1.5, +C110 @.5: credit 2; wings 5: max loss 3. BE 93, 107.
    Case(
        "short_iron_condor",
        K(90, 95, 105, 110),
        (0.5, 1.5, 1.5, 0.5),
        {80: -3, 100: 2, 108: -1},
        (93, 107),
        2,
        -3,
    ),
    Case(
        "long_iron_condor",
        K(90, 95, 105, 110),
        (0.5, 1.5, 1.5, 0.5),
        {80: 3, 100: -2, 108: 1},
        (93, 107),
        3,
        -2,
    ),
    # +C95 @7, -3 C105 @2, +2 C110 @1: debit 3; peak 10 - 3 = 7 at 105; above 110: -95 + 315 - 220 = 0 -> -3.
    # BE 98 and, on 105..110 where P&L = 217 - 2S, 108.5.
    Case("call_christmas_tree", K(95, 105, 110), (7, 2, 1), {90: -3, 105: 7, 108: 1}, (98, 108.5), 7, -3),
    # +2 P90 @1, -3 P95 @2, +P105 @7: debit 3; peak 7 at 95; on 90..95 P&L = 2S - 183: BE 91.5; BE 102.
    Case("put_christmas_tree", K(90, 95, 105), (1, 2, 7), {85: -3, 95: 7, 92: 1}, (91.5, 102), 7, -3),
    # -P95 @1, +P105 @6, +C95 @7, -C105 @2.2: debit 9.8 for a payoff of 10: +0.2 everywhere.
    Case("box_spread", K(95, 105), (1, 6, 7, 2.2), {80: 0.2, 100: 0.2, 120: 0.2}, (), 0.2, 0.2),
    Case("short_box_spread", K(95, 105), (1, 6, 7, 2.2), {80: -0.2, 100: -0.2, 120: -0.2}, (), -0.2, -0.2),
    # +C100 @4, -C105 @2, -C110 @1: debit 1; 4 on 105..110; above 110: 114 - S. BE 101, 114.
    Case("bull_call_ladder", K(100, 105, 110), (4, 2, 1), {95: -1, 107: 4, 120: -6}, (101, 114), 4, -INF),
    Case("bear_call_ladder", K(100, 105, 110), (4, 2, 1), {95: 1, 107: -4, 120: 6}, (101, 114), INF, -4),
    # +P90 @1, +P95 @2, -P100 @4: credit 1; -4 on 90..95; below 90: 86 - S. BE 86, 99; best at 0: 86.
    Case("bull_put_ladder", K(90, 95, 100), (1, 2, 4), {80: 6, 92: -4, 105: 1}, (86, 99), 86, -4),
    Case("bear_put_ladder", K(90, 95, 100), (1, 2, 4), {80: -6, 92: 4, 105: -1}, (86, 99), 4, -86),
    # -C100 @4, +2 C105 @1.5: credit 1; trough 1 - 5 = -4 at 105; above: S - 109. BE 101, 109.
    Case("call_backspread", K(100, 105), (4, 1.5), {95: 1, 105: -4, 115: 6}, (101, 109), INF, -4),
    Case("short_call_backspread", K(100, 105), (4, 1.5), {95: -1, 105: 4, 115: -6}, (101, 109), 4, -INF),
    # +C95 @6, -2 C105 @2: debit 2; peak 8 at 105; above: 113 - S. BE 97, 113.
    Case("call_ratio_spread", K(95, 105), (6, 2), {90: -2, 105: 8, 120: -7}, (97, 113), 8, -INF),
    # +2 P95 @1.5, -P100 @4: credit 1; trough -4 at 95; below: 91 - S. BE 91, 99; best at 0: 91.
    Case("put_backspread", K(95, 100), (1.5, 4), {85: 6, 95: -4, 105: 1}, (91, 99), 91, -4),
    Case("short_put_backspread", K(95, 100), (1.5, 4), {85: -6, 95: 4, 105: -1}, (91, 99), 4, -91),
    # -2 P95 @2, +P105 @8: debit 4; peak 6 at 95; below: S - 89. BE 89, 101; worst at 0: -89.
    Case("put_ratio_spread", K(95, 105), (2, 8), {80: -9, 95: 6, 110: -4}, (89, 101), 6, -89),
    # -P95 @2, -C105 @2, +C110 @1: credit 3; -2 above 110 (no upside risk beyond it); below: S - 92.
    Case("jade_lizard", K(95, 105, 110), (2, 2, 1), {85: -7, 100: 3, 115: -2}, (92, 108), 3, -92),
    # +P90 @1, -P95 @2, -C105 @2: credit 3; -2 below 90; above 105: 108 - S.
    Case("twisted_sister", K(90, 95, 105), (1, 2, 2), {85: -2, 100: 3, 115: -7}, (92, 108), 3, -INF),
    # -P90 @1.5, +C100 @4, -C110 @1.5: debit 1; below 90: S - 91; cap 9 above 110. BE 101.
    Case("bullish_seagull", K(90, 100, 110), (1.5, 4, 1.5), {80: -11, 95: -1, 115: 9}, (101,), 9, -91),
    # -P90 @1.5, +P100 @4, -C110 @1.5: debit 1; 9 below 90; above 110: 109 - S. BE 99.
    Case("bearish_seagull", K(90, 100, 110), (1.5, 4, 1.5), {80: 9, 105: -1, 120: -11}, (99,), 9, -INF),
]

SINGLE_EXPIRY = {case.name for case in CASES}


def _position(case: Case):
    return assemble(
        case.name,
        underlying="XYZ",
        as_of=AS_OF,
        spot=100.0,
        strikes=case.strikes,
        premiums=case.premiums,
        near_expiry=EXPIRY,
    )


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_expiry_pnl_matches_the_hand_worked_example(case: Case) -> None:
    position = _position(case)
    prices = list(case.points)
    assert pnl_at_expiry(position, prices) == pytest.approx([100 * case.points[p] for p in prices], abs=1e-9)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_breakevens_are_the_hand_worked_roots(case: Case) -> None:
    assert breakevens(_position(case)) == pytest.approx(list(case.breakevens), abs=1e-9)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_max_profit_and_loss_match_including_unlimited_sides(case: Case) -> None:
    bounds = profit_bounds(_position(case))
    assert bounds.max_profit == pytest.approx(100 * case.max_profit)
    assert bounds.max_loss == pytest.approx(100 * case.max_loss)
    assert bounds.profit_unlimited is (case.max_profit == INF)
    assert bounds.loss_unlimited is (case.max_loss == -INF)


def test_catalog_has_at_least_sixty_distinct_names_and_titles() -> None:
    assert len(CATALOG) >= 60
    assert len(set(names())) == len(CATALOG)
    assert len({spec.title for spec in CATALOG.values()}) == len(CATALOG)


def test_every_lean_strategy_is_in_the_catalog_under_its_lean_name() -> None:
    lean = {
        "Covered Call",
        "Covered Put",
        "Protective Call",
        "Protective Put",
        "Protective Collar",
        "Conversion",
        "Reverse Conversion",
        "Naked Call",
        "Naked Put",
        "Bull Call Spread",
        "Bear Call Spread",
        "Bull Put Spread",
        "Bear Put Spread",
        "Straddle",
        "Short Straddle",
        "Strangle",
        "Short Strangle",
        "Butterfly Call",
        "Short Butterfly Call",
        "Butterfly Put",
        "Short Butterfly Put",
        "Call Calendar Spread",
        "Short Call Calendar Spread",
        "Put Calendar Spread",
        "Short Put Calendar Spread",
        "Iron Butterfly",
        "Short Iron Butterfly",
        "Iron Condor",
        "Short Iron Condor",
        "Box Spread",
        "Short Box Spread",
        "Jelly Roll",
        "Short Jelly Roll",
        "Bull Call Ladder",
        "Bear Call Ladder",
        "Bull Put Ladder",
        "Bear Put Ladder",
        "Call Backspread",
        "Put Backspread",
        "Short Call Backspread",
        "Short Put Backspread",
    }
    assert len(lean) == 41
    assert {spec.lean_name for spec in CATALOG.values() if spec.lean_name} == lean


def test_every_catalog_strategy_has_a_hand_worked_example() -> None:
    from tests.unit.options.test_strategies_calendars import MULTI_EXPIRY

    assert SINGLE_EXPIRY | MULTI_EXPIRY == set(CATALOG)
    assert not SINGLE_EXPIRY & MULTI_EXPIRY
    assert all(CATALOG[name].multi_expiry for name in MULTI_EXPIRY)


def test_lean_credit_iron_condor_is_the_short_iron_condor() -> None:
    # LEAN's "Iron Condor": +1 put K1, -1 put K2, -1 call K3, +1 call K4 (a credit).
    spec = get_spec("short_iron_condor")
    assert spec.lean_name == "Iron Condor"
    assert [(leg.right.value, leg.ratio, leg.strike) for leg in spec.legs] == [
        ("put", 1, "K1"),
        ("put", -1, "K2"),
        ("call", -1, "K3"),
        ("call", 1, "K4"),
    ]


def test_unknown_name_raises_with_suggestions() -> None:
    with pytest.raises(StrategyError, match="did you mean"):
        get_spec("condor")


def test_strikes_out_of_order_or_breaking_wing_rules_are_rejected() -> None:
    with pytest.raises(StrategyError, match="ascend"):
        assemble(
            "bull_call_spread",
            underlying="XYZ",
            as_of=AS_OF,
            spot=100,
            strikes=K(110, 100),
            premiums=(1, 4),
            near_expiry=EXPIRY,
        )
    with pytest.raises(StrategyError, match="equal"):
        assemble(
            "long_call_butterfly",
            underlying="XYZ",
            as_of=AS_OF,
            spot=100,
            strikes=K(95, 100, 110),
            premiums=(7, 4, 1),
            near_expiry=EXPIRY,
        )


def test_units_scale_pnl_and_order_legs_reduce_ratios() -> None:
    # A strap of 3 units: 3 puts and 6 calls; the order is 3 × (1 put, 2 calls).
    position = assemble(
        "strap",
        underlying="XYZ",
        as_of=AS_OF,
        spot=100,
        strikes=K(100),
        premiums=(4, 5),
        near_expiry=EXPIRY,
        units=3,
    )
    assert [leg.quantity for leg in position.option_legs] == [3, 6]
    assert float(pnl_at_expiry(position, 80.0)) == pytest.approx(3 * 100 * 6)
    legs = position.order_legs()
    assert [(leg.symbol, leg.side.value, leg.ratio_quantity) for leg in legs] == [
        ("XYZ240419P00100000", "buy", 1),
        ("XYZ240419C00100000", "buy", 2),
    ]
    assert all(leg.position_intent is not None and not leg.position_intent.closes for leg in legs)


def test_short_legs_become_sell_to_open_order_legs() -> None:
    position = assemble(
        "short_iron_condor",
        underlying="XYZ",
        as_of=AS_OF,
        spot=100,
        strikes=K(90, 95, 105, 110),
        premiums=(0.5, 1.5, 1.5, 0.5),
        near_expiry=EXPIRY,
    )
    assert [leg.position_intent.value for leg in position.order_legs()] == [
        "buy_to_open",
        "sell_to_open",
        "sell_to_open",
        "buy_to_open",
    ]
    assert position.net_premium == pytest.approx(-200.0)
    assert np.isclose(position.cost, -200.0)
