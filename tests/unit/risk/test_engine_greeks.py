"""Greek limits: an option order is denied when the net delta, gamma or vega of its underlying would
pass the limit in the worst case over working orders, or when a greek it needs is missing.

Greeks per unit of underlying, multiplier 100 (hand-computed exposures in the comments):
C480 delta 0.50, gamma 0.02, vega 40; C490 delta 0.30, gamma 0.015, vega 35.
One unit of the spread (buy 1 C480, sell 2 C490): delta 50 − 60 = −10 shares, gamma 2 − 3 = −1,
vega 4,000 − 7,000 = −3,000 USD per 1.00 of vol. Three units: −30, −3, −9,000.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from amcp.domain import DenyReason, OrderSide, OrderType, SubmitOrder
from amcp.domain.enums import OrderClass, PositionIntent
from amcp.domain.messages import OrderLeg
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import OptionGreeks, RiskContext, RiskEngine

from ._builders import NOW_NS, engine, order, snapshot

BUY, SELL = OrderSide.BUY, OrderSide.SELL
CALL_480 = "SPY240119C00480000"
CALL_490 = "SPY240119C00490000"
QQQ_CALL = "QQQ240119C00400000"
GREEKS = {CALL_480: OptionGreeks(delta=0.50, gamma=0.02, vega=40.0),
          CALL_490: OptionGreeks(delta=0.30, gamma=0.015, vega=35.0)}
MARKS = {"SPY": "480", "AAPL": "100", CALL_480: "1.05", CALL_490: "0.75", QQQ_CALL: "2.00"}


def spread(quantity: int = 3, **fields: Any) -> SubmitOrder:
    """Buy 1 CALL_480, sell 2 CALL_490 per unit, a net credit of 0.45."""
    limit_price = fields.pop("limit_price", "-0.45")
    legs = fields.pop("legs", (
        OrderLeg(symbol=CALL_480, side=BUY, position_intent=PositionIntent.BUY_TO_OPEN),
        OrderLeg(symbol=CALL_490, side=SELL, ratio_quantity=2, position_intent=PositionIntent.SELL_TO_OPEN),
    ))
    return order("SPY", BUY, quantity, order_type=OrderType.LIMIT, limit_price=limit_price, order_class=OrderClass.MLEG,
                 legs=legs, **fields)


def call(quantity: int, side: OrderSide = BUY, symbol: str = CALL_480) -> SubmitOrder:
    return order(symbol, side, quantity, order_type=OrderType.LIMIT, limit_price=MARKS[symbol])


def ctx(positions: dict[str, int] | None = None, open_orders: tuple[SubmitOrder, ...] = (),
        greeks: Mapping[str, OptionGreeks] = GREEKS, marks: Mapping[str, str] = MARKS) -> RiskContext:
    snap: PortfolioSnapshot = snapshot(prices=dict(marks), positions=positions or {}, buying_power=10**7)
    return RiskContext(ts_ns=NOW_NS, portfolio=snap, open_orders=open_orders, option_greeks=greeks)


def risk_engine(**limits: Any) -> RiskEngine:
    """An engine with ``limits``; equal orders in a row are not duplicate intents here."""
    return engine(duplicate_intent_window_s=0, **limits)


def verdicts(risk: RiskEngine, commands: list[SubmitOrder], context: RiskContext) -> list[tuple[DenyReason | None, str]]:
    accepted, denied = risk.check(commands, context)
    found = {d.client_order_id: (d.reason, d.message) for d in denied}
    return [found.get(c.client_order_id, (None, "")) for c in commands]


def verdict(commands: list[SubmitOrder] | SubmitOrder, context: RiskContext, **limits: Any) -> tuple[DenyReason | None, str]:
    batch = commands if isinstance(commands, list) else [commands]
    return verdicts(risk_engine(**limits), batch, context)[-1]


# --------------------------------------------------------------------------- each greek, at and past its limit


@pytest.mark.parametrize("limits, reason, words", [
    ({"max_net_delta_per_underlying": 30}, None, ""),  # |−30| is at the limit
    ({"max_net_delta_per_underlying": 29}, DenyReason.GREEK_LIMIT,
     "net delta of SPY to 30 shares-equivalent in the worst case (positions 0, working orders 0 to +0, "
     "this order -30); max_net_delta_per_underlying 29"),
    ({"max_net_gamma_per_underlying": 3}, None, ""),
    ({"max_net_gamma_per_underlying": 2.9}, DenyReason.GREEK_LIMIT,
     "net gamma of SPY to 3 shares-equivalent per 1.00 of the underlying"),
    ({"max_net_vega_usd_per_underlying": 9_000}, None, ""),
    ({"max_net_vega_usd_per_underlying": 8_999}, DenyReason.GREEK_LIMIT,
     "net vega of SPY to 9,000 USD per 1.00 of volatility"),
])
def test_each_greek_limit_is_met_at_the_limit_and_denied_past_it(limits: dict[str, float], reason: DenyReason | None,
                                                                 words: str) -> None:
    found, message = verdict(spread(), ctx(), **limits)

    assert found is reason
    assert words in message


def test_a_simple_option_order_is_checked_too() -> None:
    # buy 1 CALL_480: delta 50
    assert verdict(call(1), ctx(), max_net_delta_per_underlying=49)[0] is DenyReason.GREEK_LIMIT
    assert verdict(call(1), ctx(), max_net_delta_per_underlying=50)[0] is None


# --------------------------------------------------------------------------- what the exposure is made of


def test_option_and_stock_positions_on_the_underlying_count() -> None:
    # positions: −2 CALL_490 (−60) + 50 SPY shares (+50) = −10; the spread −30 → −40
    context = ctx({CALL_490: -2, "SPY": 50})

    assert verdict(spread(), context, max_net_delta_per_underlying=40)[0] is None
    reason, message = verdict(spread(), context, max_net_delta_per_underlying=39)
    assert reason is DenyReason.GREEK_LIMIT and "(positions -10, working orders 0 to +0, this order -30)" in message


def test_positions_on_other_underlyings_do_not_count() -> None:
    # 10 QQQ calls without greeks and 1,000 AAPL shares: neither is SPY
    assert verdict(spread(), ctx({QQQ_CALL: 10, "AAPL": 1_000}), max_net_delta_per_underlying=30)[0] is None


def test_working_orders_count_in_the_worst_case_not_netted() -> None:
    # working: buy 1 CALL_480 (+50) and sell 1 CALL_480 (−50): the exposure may be anywhere in −50..+50;
    # the spread (−30) widens that to −80..+20: 80 in the worst case, though the net of all is −30
    working = (call(1, BUY), call(1, SELL))

    reason, message = verdict(spread(), ctx(open_orders=working), max_net_delta_per_underlying=79)

    assert reason is DenyReason.GREEK_LIMIT
    assert "to 80 shares-equivalent in the worst case (positions 0, working orders -50 to +50, this order -30)" in message
    assert verdict(spread(), ctx(open_orders=working), max_net_delta_per_underlying=80)[0] is None


def test_a_working_mleg_order_counts_all_legs_at_once() -> None:
    # a working spread of 2 units: −20 (its legs +100 and −120 fill together, never alone)
    working = (spread(2),)

    assert verdict(spread(), ctx(open_orders=working), max_net_delta_per_underlying=50)[0] is None
    assert verdict(spread(), ctx(open_orders=working), max_net_delta_per_underlying=49)[0] is DenyReason.GREEK_LIMIT


def test_orders_accepted_earlier_in_the_call_are_working_for_later_ones() -> None:
    first, second = spread(), spread()

    results = verdicts(risk_engine(max_net_delta_per_underlying=59), [first, second], ctx())

    assert [reason for reason, _ in results] == [None, DenyReason.GREEK_LIMIT]
    assert "working orders -30 to +0, this order -30" in results[1][1]


def test_an_accepted_stock_order_adds_delta_for_a_later_option_order() -> None:
    stock = order("SPY", BUY, 100, order_type=OrderType.LIMIT, limit_price="480")

    results = verdicts(risk_engine(max_net_delta_per_underlying=120), [stock, call(1)], ctx())

    # the stock order is not checked (100 < 120 anyway); 100 + 50 = 150 > 120 denies the call
    assert [reason for reason, _ in results] == [None, DenyReason.GREEK_LIMIT]


def test_stock_orders_are_not_checked_against_greek_limits() -> None:
    assert verdict(order("SPY", BUY, 1_000, order_type=OrderType.LIMIT, limit_price="480"), ctx(),
                   max_net_delta_per_underlying=10)[0] is None


def test_accepts_of_one_call_are_not_working_orders_of_the_next() -> None:
    risk = risk_engine(max_net_delta_per_underlying=59)
    context = ctx()  # the same context object twice: the fold is reused, the call's accepts are not

    assert [reason for reason, _ in verdicts(risk, [spread()], context)] == [None]
    assert [reason for reason, _ in verdicts(risk, [spread()], context)] == [None]


def test_an_order_that_narrows_the_worst_case_passes_over_the_limit() -> None:
    # 100 SPY shares against a limit of 50: the spread takes the delta from 100 to 70
    assert verdict(spread(), ctx({"SPY": 100}), max_net_delta_per_underlying=50)[0] is None
    # buying more calls takes it from 100 to 150: denied
    assert verdict(call(1), ctx({"SPY": 100}), max_net_delta_per_underlying=50)[0] is DenyReason.GREEK_LIMIT


def test_only_the_limited_greeks_are_checked() -> None:
    # a huge vega but only a delta limit: passes
    assert verdict(call(1), ctx(greeks={CALL_480: OptionGreeks(delta=0.5, gamma=9.0, vega=1e9)}),
                   max_net_delta_per_underlying=50)[0] is None


# --------------------------------------------------------------------------- missing greeks


@pytest.mark.parametrize("context, words", [
    (ctx(greeks={CALL_480: GREEKS[CALL_480]}), f"{CALL_490} has no greeks in the risk context's option_greeks"),
    (ctx(greeks={**GREEKS, CALL_490: OptionGreeks(delta=float("nan"), gamma=0.0, vega=0.0)}),
     f"the delta of {CALL_490} is nan"),
    (ctx({"SPY240119C00500000": 1}), "position 1 SPY240119C00500000 has no greeks"),
    (ctx(open_orders=(order("SPY240119C00500000", BUY, 1, order_type=OrderType.LIMIT, limit_price="0.50",
                            client_order_id="w-1"),)),
     "working order w-1: SPY240119C00500000 has no greeks"),
])
def test_an_exposure_without_greeks_denies_no_greeks(context: RiskContext, words: str) -> None:
    reason, message = verdict(spread(), context, max_net_delta_per_underlying=1_000)

    assert reason is DenyReason.NO_GREEKS
    assert words in message


def test_a_closing_order_without_greeks_is_denied_too() -> None:
    closing = spread(legs=(OrderLeg(symbol=CALL_480, side=SELL, position_intent=PositionIntent.SELL_TO_CLOSE),
                           OrderLeg(symbol=CALL_490, side=BUY, ratio_quantity=2,
                                    position_intent=PositionIntent.BUY_TO_CLOSE)), limit_price="0.45")

    assert verdict(closing, ctx({CALL_480: 3, CALL_490: -6}, greeks={}),
                   max_net_delta_per_underlying=1_000)[0] is DenyReason.NO_GREEKS


def test_without_a_greek_limit_option_orders_need_no_greeks() -> None:
    assert verdicts(risk_engine(), [spread(), call(5)], ctx(greeks={})) == [(None, ""), (None, "")]


def test_option_greeks_default_to_none_given() -> None:
    context = RiskContext(ts_ns=NOW_NS, portfolio=snapshot(prices=dict(MARKS)))

    assert context.option_greeks == {}
    assert verdict(call(1), context, max_net_delta_per_underlying=100)[0] is DenyReason.NO_GREEKS


def test_an_order_an_earlier_check_denies_reports_that_check() -> None:
    # CALL_490 unmarked: the leg's position limit cannot be valued, whatever the greeks say
    unmarked = ctx(marks={symbol: mark for symbol, mark in MARKS.items() if symbol != CALL_490})

    assert verdict(spread(), unmarked, max_net_delta_per_underlying=1)[0] is DenyReason.NO_REFERENCE_PRICE


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_net_vega_usd_per_underlying"):
        engine(max_net_vega_usd_per_underlying=0)


def test_new_greeks_for_the_same_snapshot_are_used() -> None:
    # one CALL_480 held: delta 50 at 0.50, 90 at 0.90; buying one more adds the same again
    held = ctx({CALL_480: 1})
    repriced = RiskContext(ts_ns=NOW_NS, portfolio=held.portfolio,
                           option_greeks={**GREEKS, CALL_480: OptionGreeks(delta=0.90, gamma=0.02, vega=40.0)})
    risk = risk_engine(max_net_delta_per_underlying=150)

    assert [reason for reason, _ in verdicts(risk, [call(1)], held)] == [None]  # 50 + 50
    assert [reason for reason, _ in verdicts(risk, [call(1)], repriced)] == [DenyReason.GREEK_LIMIT]  # 90 + 90
