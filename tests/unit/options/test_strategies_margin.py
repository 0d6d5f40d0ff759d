"""Reg-T strategy-based margin, on examples in the style of the CBOE Margin Manual.

Each example states the position and works the CBOE rule by hand; requirements in dollars for
the whole position (multiplier 100).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from amcp.domain.enums import OptionRight
from amcp.options.strategies import (
    AtmSteps,
    OptionLegSpec,
    StrategyError,
    StrategySpec,
    assemble,
    cash_secured_put_collateral,
    reg_t_margin,
)

AS_OF = datetime(2024, 3, 1, 10, 0, tzinfo=ZoneInfo("America/New_York"))
EXPIRY = date(2024, 4, 19)


def position(name: str, spot: float, strikes: dict[str, float], premiums: tuple[float, ...], **kwargs):
    return assemble(
        name,
        underlying="XYZ",
        as_of=AS_OF,
        spot=spot,
        strikes=strikes,
        premiums=premiums,
        near_expiry=EXPIRY,
        **kwargs,
    )


def test_naked_call_is_twenty_percent_less_out_of_the_money_plus_premium() -> None:
    # Short 1 XYZ 80 call at 3.50, XYZ at 78: 20% × 7,800 = 1,560 − OTM 200 = 1,360 (> 10% × 7,800 = 780)
    # + premium 350 = 1,710. Proceeds applied: buying power 1,360.
    margin = reg_t_margin(position("naked_call", 78.0, {"K1": 80}, (3.5,)))
    assert margin.requirement == pytest.approx(1710.0)
    assert margin.buying_power == pytest.approx(1360.0)
    assert margin.naked == ("XYZ240419C00080000",)


def test_naked_put_is_twenty_percent_less_out_of_the_money_plus_premium() -> None:
    # Short 1 XYZ 50 put at 1.50, XYZ at 52: 20% × 5,200 = 1,040 − OTM 200 = 840 (> 10% × 5,000 = 500)
    # + premium 150 = 990.
    assert reg_t_margin(position("naked_put", 52.0, {"K1": 50}, (1.5,))).requirement == pytest.approx(990.0)


def test_far_out_of_the_money_naked_put_pays_the_ten_percent_minimum() -> None:
    # Short 1 XYZ 70 put at 0.20, XYZ at 100: 2,000 − 3,000 < 0, so 10% × 7,000 = 700 + 20 = 720.
    assert reg_t_margin(position("naked_put", 100.0, {"K1": 70}, (0.2,))).requirement == pytest.approx(720.0)


def test_credit_spread_requires_its_width_and_debit_spread_nothing() -> None:
    # Bear call 100/110 for a 3.00 credit: requirement = width 1,000; buying power 1,000 − 300 = 700.
    credit = reg_t_margin(position("bear_call_spread", 100.0, {"K1": 100, "K2": 110}, (4.0, 1.0)))
    assert (credit.requirement, credit.buying_power) == pytest.approx((1000.0, 700.0))
    # Bull call 100/110 for a 3.00 debit: paid in full, no requirement.
    debit = reg_t_margin(position("bull_call_spread", 100.0, {"K1": 100, "K2": 110}, (4.0, 1.0)))
    assert (debit.requirement, debit.buying_power) == pytest.approx((0.0, 300.0))


def test_iron_condor_requires_the_wider_wing_only() -> None:
    # Short 85/90 put spread and 105/115 call spread for 2.00: widths 500 and 1,000 -> 1,000; BP 800.
    margin = reg_t_margin(
        position("short_iron_condor", 100.0, {"K1": 85, "K2": 90, "K3": 105, "K4": 115}, (0.5, 1.5, 1.5, 0.5))
    )
    assert (margin.requirement, margin.buying_power) == pytest.approx((1000.0, 800.0))


def test_short_strangle_is_the_greater_naked_side_plus_the_other_premium() -> None:
    # XYZ 100. Short 105 call at 3: 2,000 − 500 = 1,500 + 300 = 1,800. Short 95 put at 2: 2,000 − 500 = 1,500
    # + 200 = 1,700. Requirement 1,800 + the put's 200 = 2,000; BP 2,000 − 500 = 1,500. Three units: 6,000.
    margin = reg_t_margin(position("short_strangle", 100.0, {"K1": 95, "K2": 105}, (2.0, 3.0)))
    assert (margin.requirement, margin.buying_power) == pytest.approx((2000.0, 1500.0))
    tripled = reg_t_margin(position("short_strangle", 100.0, {"K1": 95, "K2": 105}, (2.0, 3.0), units=3))
    assert tripled.requirement == pytest.approx(6000.0)


def test_covered_call_margins_the_stock_and_covers_the_call() -> None:
    # 100 XYZ at 100 (50% = 5,000) and a covered 105 call at 2: requirement 5,000; proceeds applied: 4,800.
    margin = reg_t_margin(position("covered_call", 100.0, {"K1": 105}, (2.0,)))
    assert (margin.requirement, margin.stock_requirement, margin.buying_power) == pytest.approx(
        (5000.0, 5000.0, 4800.0)
    )
    assert margin.covered == ("XYZ240419C00105000",) and margin.naked == ()


def test_ratio_spread_is_one_vertical_and_one_naked_call() -> None:
    # +1 95 call at 6, −2 105 calls at 2, XYZ 100: the 95/105 debit vertical needs nothing; the other 105 call
    # is naked: 2,000 − 500 = 1,500 + 200 = 1,700. BP = 1,700 + the 200 debit = 1,900.
    margin = reg_t_margin(position("call_ratio_spread", 100.0, {"K1": 95, "K2": 105}, (6.0, 2.0)))
    assert (margin.requirement, margin.buying_power) == pytest.approx((1700.0, 1900.0))
    assert margin.naked == ("XYZ240419C00105000",)


def test_jade_lizard_is_the_naked_put_when_it_exceeds_the_call_spread() -> None:
    # −95 put at 2 (naked: 1,500 + 200 = 1,700) vs the 105/110 call spread (width 500): 1,700; BP 1,700 − 300.
    margin = reg_t_margin(position("jade_lizard", 100.0, {"K1": 95, "K2": 105, "K3": 110}, (2.0, 2.0, 1.0)))
    assert (margin.requirement, margin.buying_power) == pytest.approx((1700.0, 1400.0))


def test_long_options_and_long_butterflies_are_paid_in_full() -> None:
    straddle = reg_t_margin(position("long_straddle", 100.0, {"K1": 100}, (4.0, 5.0)))
    assert (straddle.requirement, straddle.buying_power) == pytest.approx((0.0, 900.0))
    fly = reg_t_margin(
        position("long_call_butterfly", 100.0, {"K1": 95, "K2": 100, "K3": 105}, (7.0, 4.0, 2.0))
    )
    assert (fly.requirement, fly.buying_power) == pytest.approx((0.0, 100.0))


def test_short_box_requires_its_width() -> None:
    # Short 95/105 box for a 9.80 credit: the legs owe 10 at expiry whatever the price: 1,000; BP 20.
    margin = reg_t_margin(position("short_box_spread", 100.0, {"K1": 95, "K2": 105}, (1.0, 6.0, 7.0, 2.2)))
    assert (margin.requirement, margin.buying_power) == pytest.approx((1000.0, 20.0))


def test_calendar_long_far_is_paid_in_full_and_short_far_is_naked() -> None:
    far = EXPIRY + timedelta(days=28)
    # Long calendar: the far long covers the near short: the 2.50 debit only.
    long_cal = reg_t_margin(position("long_call_calendar", 100.0, {"K1": 100}, (2.0, 4.5), far_expiry=far))
    assert (long_cal.requirement, long_cal.buying_power) == pytest.approx((0.0, 250.0))
    # Short calendar: the near long expires first, so the far 100 call at 4.50 is naked: 2,000 + 450 = 2,450.
    short_cal = reg_t_margin(position("short_call_calendar", 100.0, {"K1": 100}, (2.0, 4.5), far_expiry=far))
    assert (short_cal.requirement, short_cal.buying_power) == pytest.approx((2450.0, 2200.0))


def test_call_diagonal_with_the_long_strike_below_the_short_needs_nothing() -> None:
    # Long far 95 call at 8, short near 105 call at 1.50: the long covers the short (95 <= 105);
    # only the 6.50 debit is paid.
    diagonal = position(
        "call_diagonal", 100.0, {"K1": 95, "K2": 105}, (8.0, 1.5), far_expiry=EXPIRY + timedelta(days=28)
    )
    margin = reg_t_margin(diagonal)
    assert (margin.requirement, margin.buying_power) == pytest.approx((0.0, 650.0))


def test_diagonal_with_the_long_strike_above_the_short_requires_the_strike_difference() -> None:
    # Short near 100 call at 4, long far 105 call at 3: max(0, 105 − 100) × 100 = 500; BP 500 − 100 = 400.
    spec = StrategySpec(
        name="bear_call_diagonal",
        title="Bear Call Diagonal",
        lean_name=None,
        outlook="bearish",
        legs=(
            OptionLegSpec(OptionRight.CALL, -1, "K1", "near"),
            OptionLegSpec(OptionRight.CALL, 1, "K2", "far"),
        ),
        default_strikes={"K1": AtmSteps(0), "K2": AtmSteps(1)},
    )
    margin = reg_t_margin(
        position(spec, 100.0, {"K1": 100, "K2": 105}, (4.0, 3.0), far_expiry=EXPIRY + timedelta(days=28))
    )
    assert (margin.requirement, margin.buying_power) == pytest.approx((500.0, 400.0))


def test_a_cash_secured_put_holds_the_strike_less_the_premium_in_cash() -> None:
    # Sell 2 XYZ 50 puts at 1.20, XYZ at 52: 2 × 100 × 50 = 10,000 − premium 2 × 100 × 1.20 = 240
    # → 9,760 of cash (the Reg-T margin account would need only the naked-put requirement).
    csp = position("cash_secured_put", 52.0, {"K1": 50}, (1.2,), units=2)
    assert cash_secured_put_collateral(csp) == pytest.approx(9760.0)
    assert reg_t_margin(csp).requirement < 9760.0


def test_only_short_puts_can_be_cash_secured() -> None:
    covered = position("covered_call", 52.0, {"K1": 55}, (0.9,), stock_price=52.0)
    with pytest.raises(StrategyError, match="only a position of short puts"):
        cash_secured_put_collateral(covered)
