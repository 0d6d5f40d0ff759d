"""Multi-leg (mleg) orders against the per-symbol limits: each leg's position, the gross exposure
the legs add, the marks those limits need, and working mleg orders folded leg by leg."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from amcp.domain import DenyReason, OrderDenied, OrderSide, OrderType, SubmitOrder
from amcp.domain.enums import OrderClass, PositionIntent
from amcp.domain.messages import OrderLeg
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext, RiskEngine

from ._builders import NOW_NS, SECOND_NS, context, engine, order, snapshot

BUY = OrderSide.BUY
SELL = OrderSide.SELL
CALL_480 = "SPY240119C00480000"
CALL_490 = "SPY240119C00490000"
# 3 units of the spread: buy 3 CALL_480 (3 × 1.05 × 100 = 315 USD), sell 6 CALL_490 (6 × 0.75 × 100 = 450 USD)
MARKS = {CALL_480: "1.05", CALL_490: "0.75"}


def spread(
    quantity: int = 3,
    *,
    limit_price: str | None = "-0.45",
    legs: tuple[OrderLeg, ...] | None = None,
    **fields: Any,
) -> SubmitOrder:
    """A call ratio spread on SPY: buy 1 CALL_480, sell 2 CALL_490 per unit (a net credit)."""
    if legs is None:
        legs = (
            OrderLeg(symbol=CALL_480, side=BUY, position_intent=PositionIntent.BUY_TO_OPEN),
            OrderLeg(symbol=CALL_490, side=SELL, ratio_quantity=2, position_intent=PositionIntent.SELL_TO_OPEN),
        )
    order_type = OrderType.MARKET if limit_price is None else OrderType.LIMIT
    return order("SPY", BUY, quantity, order_type=order_type, limit_price=limit_price,
                 order_class=OrderClass.MLEG, legs=legs, **fields)


def marked(**overrides: Any) -> PortfolioSnapshot:
    """A snapshot with the spread's legs (and AAPL) marked now, unless ``prices`` says otherwise."""
    prices: dict[str, Decimal | str | int] = {"AAPL": 100, **MARKS}
    return snapshot(prices=overrides.pop("prices", prices), **overrides)


def decide(risk: RiskEngine, commands: list[SubmitOrder], ctx: RiskContext) -> list[DenyReason | None]:
    """The verdict of each command, in order: None for accepted, else the deny reason."""
    accepted, denied = risk.check(commands, ctx)
    reasons = {d.client_order_id: d.reason for d in denied}
    assert len(accepted) + len(denied) == len(commands)
    return [reasons.get(c.client_order_id) for c in commands]


def only_denial(result: tuple[list[SubmitOrder], list[OrderDenied]]) -> OrderDenied:
    accepted, denied = result
    assert accepted == [] and len(denied) == 1
    return denied[0]


# --------------------------------------------------------------------------- position limit per leg


def test_leg_above_max_position_is_denied_naming_the_leg_and_its_values() -> None:
    risk = engine(max_position_notional_usd=Decimal(449))

    denial = only_denial(risk.check([spread()], context(marked())))

    assert denial.reason is DenyReason.MAX_POSITION
    assert CALL_490 in denial.message and "sell 6" in denial.message and "3 × ratio 2" in denial.message
    assert "to -6" in denial.message and "450" in denial.message
    assert "max_position_notional_usd 449" in denial.message


def test_leg_exactly_at_max_position_passes() -> None:
    risk = engine(max_position_notional_usd=Decimal(450))

    assert decide(risk, [spread()], context(marked())) == [None]


def test_leg_position_limit_counts_the_position_and_working_orders_on_its_side() -> None:
    # CALL_490: short 2, a working sell of 1, the leg sells 6: worst case -9 × 0.75 × 100 = 675 USD
    working = order(CALL_490, SELL, 1, order_type=OrderType.LIMIT, limit_price="0.75")
    portfolio = marked(positions={CALL_490: -2})

    denial = only_denial(engine(max_position_notional_usd=Decimal(674)).check(
        [spread()], context(portfolio, open_orders=(working,))))
    accepted = decide(engine(max_position_notional_usd=Decimal(675)), [spread()],
                      context(portfolio, open_orders=(working,)))

    assert denial.reason is DenyReason.MAX_POSITION
    assert "position -2" in denial.message and "working sells 1" in denial.message and "to -9" in denial.message
    assert accepted == [None]


def test_reducing_leg_passes_the_position_limit_and_needs_no_mark() -> None:
    # long 10 CALL_480 and short 10 CALL_490: selling 3 and buying 6 back only shrink both
    closing = (
        OrderLeg(symbol=CALL_480, side=SELL, position_intent=PositionIntent.SELL_TO_CLOSE),
        OrderLeg(symbol=CALL_490, side=BUY, ratio_quantity=2, position_intent=PositionIntent.BUY_TO_CLOSE),
    )
    portfolio = snapshot(prices={"AAPL": 100}, positions={CALL_480: 10, CALL_490: -10})

    verdicts = decide(engine(max_position_notional_usd=Decimal(1)), [spread(legs=closing, limit_price="0.30")],
                      context(portfolio))

    assert verdicts == [None]


# --------------------------------------------------------------------------- marks the limits need


def test_limit_order_leg_that_opens_without_a_mark_is_denied_naming_the_leg() -> None:
    portfolio = marked(prices={"AAPL": 100, CALL_480: "1.05"})  # CALL_490 unmarked

    denial = only_denial(engine().check([spread()], context(portfolio)))

    assert denial.reason is DenyReason.NO_REFERENCE_PRICE
    assert "position limit of mleg leg sell 6 " + CALL_490 in denial.message
    assert f"no reference price for {CALL_490}" in denial.message


def test_limit_order_leg_that_opens_with_a_stale_mark_is_denied_with_its_age() -> None:
    stamps = {"AAPL": NOW_NS, CALL_480: NOW_NS, CALL_490: NOW_NS - 5 * SECOND_NS}
    portfolio = marked(price_ts_ns=stamps)

    denial = only_denial(engine(max_price_age_s=1).check([spread()], context(portfolio)))

    assert denial.reason is DenyReason.STALE_REFERENCE_PRICE
    assert CALL_490 in denial.message and "5s old" in denial.message


def test_market_order_needs_every_leg_marked_even_a_reducing_one() -> None:
    portfolio = marked(prices={"AAPL": 100, CALL_490: "0.75"}, positions={CALL_480: -3})  # the buy leg reduces

    denial = only_denial(engine().check([spread(limit_price=None)], context(portfolio)))

    assert denial.reason is DenyReason.NO_REFERENCE_PRICE
    assert "valued at its legs' marks" in denial.message and CALL_480 in denial.message


# --------------------------------------------------------------------------- gross exposure


def test_legs_adding_exposure_above_max_gross_are_denied_with_the_sum_of_the_legs() -> None:
    portfolio = marked(gross_exposure=1000)  # + 315 + 450 = 1765

    denial = only_denial(engine(max_gross_exposure_usd=Decimal(1764)).check([spread()], context(portfolio)))
    verdict = decide(engine(max_gross_exposure_usd=Decimal(1765)), [spread()], context(portfolio))

    assert denial.reason is DenyReason.MAX_GROSS_EXPOSURE
    assert "1765" in denial.message and "positions 1000" in denial.message and "legs 765" in denial.message
    assert verdict == [None]


def test_only_the_exposure_a_leg_adds_counts_toward_gross() -> None:
    # long 3 CALL_490: selling 6 takes it to -3, so the leg adds 0 units (|-3| = |3|)
    portfolio = marked(gross_exposure=1000, positions={CALL_490: 3})

    verdicts = decide(engine(max_gross_exposure_usd=Decimal(1315)), [spread()], context(portfolio))
    denial = only_denial(engine(max_gross_exposure_usd=Decimal(1314)).check([spread()], context(portfolio)))

    assert verdicts == [None]
    assert denial.reason is DenyReason.MAX_GROSS_EXPOSURE and "legs 315" in denial.message


# --------------------------------------------------------------------------- accepted legs join the book


def test_accepted_legs_count_toward_later_orders_of_the_same_call() -> None:
    risk = engine(max_position_notional_usd=Decimal(700))
    first = spread()
    more = order(CALL_480, BUY, 4, order_type=OrderType.LIMIT, limit_price="1.05")  # 3 + 4 = 7 × 105 = 735

    accepted, denied = risk.check([first, more], context(marked()))

    assert accepted == [first]
    assert [d.reason for d in denied] == [DenyReason.MAX_POSITION]
    assert "working buys 3" in denied[0].message and "to 7" in denied[0].message


def test_accepted_legs_add_to_the_gross_exposure_of_the_call() -> None:
    risk = engine(max_gross_exposure_usd=Decimal(1500), duplicate_intent_window_s=0)

    verdicts = decide(risk, [spread(), spread()], context(marked()))  # 765, then 765 + 765 = 1530

    assert verdicts == [None, DenyReason.MAX_GROSS_EXPOSURE]


# --------------------------------------------------------------------------- working mleg orders


def test_working_mleg_order_counts_its_legs_exposure_not_its_root() -> None:
    portfolio = marked(prices={"AAPL": 100, "SPY": 300, **MARKS})
    ctx = context(portfolio, open_orders=(spread(),))
    opening = order(CALL_480, BUY, 3, order_type=OrderType.LIMIT, limit_price="1.05")  # adds 315
    root = order("SPY", BUY, 1)  # 300 USD; the working spread holds no SPY shares

    gross = only_denial(engine(max_gross_exposure_usd=Decimal(1000)).check([opening], ctx))
    verdicts = decide(engine(max_position_notional_usd=Decimal(301)), [root], ctx)

    assert gross.reason is DenyReason.MAX_GROSS_EXPOSURE
    assert "working orders 765" in gross.message and "this order 315" in gross.message
    assert verdicts == [None]


def test_working_mleg_order_counts_toward_the_leg_position_limit() -> None:
    ctx = context(marked(), open_orders=(spread(),))
    more = order(CALL_490, SELL, 1, order_type=OrderType.LIMIT, limit_price="0.75")  # -6 - 1 = -7 × 75 = 525

    denial = only_denial(engine(max_position_notional_usd=Decimal(500)).check([more], ctx))

    assert denial.reason is DenyReason.MAX_POSITION and "working sells 6" in denial.message


def test_working_mleg_debit_consumes_buying_power_and_a_credit_none() -> None:
    debit = spread(limit_price="0.45")  # 3 × 0.45 × 100 = 135 USD
    credit = spread()
    opening = order("AAPL", BUY, 1, order_type=OrderType.LIMIT, limit_price="100")  # needs 100

    after_debit = only_denial(engine().check([opening], context(marked(buying_power=200), open_orders=(debit,))))
    after_credit = decide(engine(), [opening], context(marked(buying_power=200), open_orders=(credit,)))

    assert after_debit.reason is DenyReason.INSUFFICIENT_BUYING_POWER
    assert "working orders 135" in after_debit.message
    assert after_credit == [None]


def test_working_mleg_order_whose_opening_leg_is_unmarked_blocks_added_exposure() -> None:
    portfolio = marked(prices={"AAPL": 100, CALL_480: "1.05"}, positions={"AAPL": 5})  # CALL_490 unmarked
    working = spread(client_order_id="w-spread")
    opening = order("AAPL", BUY, 1)
    reducing = order("AAPL", SELL, 1)

    accepted, denied = engine().check([reducing, opening], context(portfolio, open_orders=(working,)))

    assert accepted == [reducing]
    assert [d.reason for d in denied] == [DenyReason.NO_REFERENCE_PRICE]
    assert "w-spread" in denied[0].message and CALL_490 in denied[0].message


def test_working_market_mleg_order_consumes_its_gross_premium_of_buying_power() -> None:
    working = spread(limit_price=None)  # 3 × (1 × 1.05 + 2 × 0.75) × 100 = 765 USD
    opening = order("AAPL", BUY, 1, order_type=OrderType.LIMIT, limit_price="100")

    denial = only_denial(engine().check([opening], context(marked(buying_power=800), open_orders=(working,))))

    assert denial.reason is DenyReason.INSUFFICIENT_BUYING_POWER
    assert "35" in denial.message and "working orders 765" in denial.message
