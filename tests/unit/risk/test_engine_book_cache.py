"""The fold of working orders is reused across calls only while it is still right: a new set of
open orders or a new portfolio snapshot refolds, and reusing it changes no decision."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from amcp.domain import ClientOrderId, DenyReason, OrderSide, OrderType, SubmitOrder
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext, RiskEngine

from ._builders import NOW_NS, SECOND_NS, context, engine, order, snapshot

BUY = OrderSide.BUY
SELL = OrderSide.SELL


def verdicts(
    risk: RiskEngine, commands: list[SubmitOrder], ctx: RiskContext
) -> list[tuple[str, str | None, str]]:
    """(client order id, deny reason or None, message) of each command, in order."""
    accepted, denied = risk.check(commands, ctx)
    by_id = {d.client_order_id: d for d in denied}
    assert len(accepted) + len(denied) == len(commands)
    out: list[tuple[str, str | None, str]] = []
    for command in commands:
        denial = by_id.get(command.client_order_id)
        out.append((command.client_order_id, None if denial is None else denial.reason.value,
                    "" if denial is None else denial.message))
    return out


def working_buy(quantity: int = 5, client_order_id: str = "w-1") -> SubmitOrder:
    """A resting AAPL buy limit at the mark (100): it consumes quantity × 100 USD of buying power."""
    return order("AAPL", BUY, quantity, client_order_id=client_order_id, order_type=OrderType.LIMIT,
                 limit_price="100")


def test_new_open_orders_are_folded_again() -> None:
    risk = engine(max_position_notional_usd=Decimal(1200))
    portfolio = snapshot()
    opening = order("AAPL", BUY, 3)  # 3 alone is 300 USD; with 10 working, 1300 > 1200

    busy = risk.check([opening], context(portfolio, open_orders=(working_buy(10),)))
    quiet = risk.check([order("AAPL", BUY, 4)], context(portfolio, open_orders=(working_buy(1, "w-2"),)))

    assert [d.reason for d in busy[1]] == [DenyReason.MAX_POSITION]
    assert quiet[1] == [] and len(quiet[0]) == 1


def test_a_new_portfolio_with_the_same_open_orders_is_folded_again() -> None:
    risk = engine(max_gross_exposure_usd=Decimal(1000))
    working = (working_buy(5),)
    flat = snapshot()  # the working buy adds 500 USD of exposure
    short = snapshot(positions={"AAPL": -5}, gross_exposure=500)  # the working buy only covers the short

    on_flat = verdicts(risk, [order("AAPL", BUY, 6, client_order_id="a")], context(flat, open_orders=working))
    on_short = verdicts(risk, [order("AAPL", SELL, 4, client_order_id="b")], context(short, open_orders=working))

    # flat: 500 working + 600 > 1000; short: the working buy adds nothing, the sell 400: 500 + 400
    assert on_flat[0][1] == DenyReason.MAX_GROSS_EXPOSURE.value and "working orders 500" in on_flat[0][2]
    assert on_short == [("b", None, "")]


def test_open_orders_changed_in_place_are_folded_again() -> None:
    risk = engine(max_position_notional_usd=Decimal(1000), duplicate_intent_window_s=0)
    open_orders: list[SubmitOrder] = [working_buy(2)]
    ctx = RiskContext(ts_ns=NOW_NS, portfolio=snapshot(), open_orders=open_orders)
    first = verdicts(risk, [order("AAPL", BUY, 8, client_order_id="a")], ctx)  # 2 + 8 = 10: 1000 USD

    open_orders.append(working_buy(1, "w-2"))  # the same list, one more working order
    second = verdicts(risk, [order("AAPL", BUY, 8, client_order_id="b")], ctx)  # 2 + 1 + 8 = 11

    open_orders[0] = working_buy(3, "w-3")  # the same length, another order in place of the first
    third = verdicts(risk, [order("AAPL", BUY, 7, client_order_id="c")], ctx)  # 3 + 1 + 7 = 11

    assert first == [("a", None, "")]
    assert second[0][1] == DenyReason.MAX_POSITION.value and "working buys 3" in second[0][2]
    assert third[0][1] == DenyReason.MAX_POSITION.value and "working buys 4" in third[0][2]


def _portfolio() -> PortfolioSnapshot:
    return snapshot(prices={"AAPL": 100, "MSFT": 200}, positions={"MSFT": 10}, buying_power=2000,
                    gross_exposure=2000)


def _open_orders() -> tuple[SubmitOrder, ...]:
    return (working_buy(5), order("MSFT", SELL, 4, client_order_id="w-msft", order_type=OrderType.LIMIT,
                                  limit_price="200"))


def _batches() -> list[list[SubmitOrder]]:
    """Three calls; the second and third would be judged differently if a call saw what an
    earlier call accepted (buying power used, working sells of MSFT)."""
    return [
        [order("AAPL", BUY, 10, client_order_id="a1"),
         order("MSFT", SELL, 6, client_order_id="a2", reduce_only=True)],
        [order("AAPL", BUY, 16, client_order_id="b1"), order("AAPL", BUY, 12, client_order_id="b2"),
         order("MSFT", SELL, 6, client_order_id="b3", reduce_only=True)],
        [order("AAPL", BUY, 15, client_order_id="c1"), order("AAPL", BUY, 14, client_order_id="c2")],
    ]


LIMITS = {"max_gross_exposure_usd": Decimal(5000), "duplicate_intent_window_s": 0}


def test_calls_with_one_context_decide_as_calls_with_fresh_equal_contexts() -> None:
    # each call: buying power 2000 − the working AAPL buy's 500 = 1500; gross 2000 + 500 working;
    # MSFT long 10 with 4 working sells, so a reduce-only sell of 6 still reduces
    reused, fresh = engine(**LIMITS), engine(**LIMITS)
    shared = context(_portfolio(), open_orders=_open_orders())

    with_shared = [verdicts(reused, batch, RiskContext(ts_ns=NOW_NS + i * SECOND_NS, portfolio=shared.portfolio,
                                                       open_orders=shared.open_orders))
                   for i, batch in enumerate(_batches())]
    with_fresh = [verdicts(fresh, batch, context(_portfolio(), ts_ns=NOW_NS + i * SECOND_NS,
                                                 open_orders=_open_orders()))
                  for i, batch in enumerate(_batches())]

    assert with_shared == with_fresh
    reasons = [[v[1] for v in call] for call in with_shared]
    # each call starts from the working orders alone: 1600 > 1500 USD, then 1200 fits; in the last
    # call 1500 fits, then 2000 + 500 + 1500 + 1400 > 5000 of gross exposure
    assert reasons == [
        [None, None],
        [DenyReason.INSUFFICIENT_BUYING_POWER.value, None, None],
        [None, DenyReason.MAX_GROSS_EXPOSURE.value],
    ]


def test_the_same_context_object_again_and_again_decides_the_same() -> None:
    ctx = context(_portfolio(), open_orders=_open_orders())
    batch = _batches()[1]
    risk = engine(**LIMITS)

    calls = [verdicts(risk, [replace(c, client_order_id=ClientOrderId(f"{c.client_order_id}-{n}")) for c in batch],
                      ctx) for n in range(3)]

    assert [v[1] for v in calls[0]] == [DenyReason.INSUFFICIENT_BUYING_POWER.value, None, None]
    assert [[v[1:] for v in call] for call in calls[1:]] == [[v[1:] for v in calls[0]]] * 2
