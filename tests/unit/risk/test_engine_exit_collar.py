"""The price collar applies to the exits of bracket, OCO and OTO orders as to a limit or stop."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from amcp.domain import DenyReason, OrderSide, OrderType, SubmitOrder
from amcp.domain.enums import OrderClass

from ._builders import context, engine, order, snapshot

BUY = OrderSide.BUY
SELL = OrderSide.SELL
# AAPL is marked at 100 and the default price_collar_pct is 10%: exits from 90 to 110 pass.


def bracket(**exits: Any) -> SubmitOrder:
    """A market buy of 10 AAPL with a take-profit at 105 and a stop-loss at 95 unless told otherwise."""
    fields: dict[str, Any] = {"take_profit_limit_price": Decimal(105), "stop_loss_stop_price": Decimal(95)}
    fields.update({name: Decimal(value) if value is not None else None for name, value in exits.items()})
    return order("AAPL", BUY, 10, order_class=OrderClass.BRACKET, **fields)


@pytest.mark.parametrize(
    ("command", "name", "value"),
    [
        (bracket(take_profit_limit_price="110.01"), "take_profit_limit_price", "110.01"),
        (bracket(stop_loss_stop_price="89.99"), "stop_loss_stop_price", "89.99"),
        (bracket(stop_loss_limit_price="89.99"), "stop_loss_limit_price", "89.99"),
        (order("AAPL", BUY, 10, order_class=OrderClass.OTO, take_profit_limit_price=Decimal(111)),
         "take_profit_limit_price", "111"),
        (order("AAPL", BUY, 10, order_class=OrderClass.OTO, stop_loss_stop_price=Decimal(89)),
         "stop_loss_stop_price", "89"),
        # an oco sell closes a long: its limit is the take-profit, the stop-loss below
        (order("AAPL", SELL, 10, order_type=OrderType.LIMIT, limit_price="105", order_class=OrderClass.OCO,
               stop_loss_stop_price=Decimal(89)), "stop_loss_stop_price", "89"),
    ],
    ids=["bracket-take-profit", "bracket-stop", "bracket-stop-limit", "oto-take-profit", "oto-stop", "oco-stop"],
)
def test_exit_outside_the_collar_is_denied_naming_the_price(command: SubmitOrder, name: str, value: str) -> None:
    portfolio = snapshot(positions={"AAPL": 10})  # the oco sell closes it

    accepted, denied = engine().check([command], context(portfolio))

    assert accepted == []
    assert [d.reason for d in denied] == [DenyReason.PRICE_COLLAR]
    assert f"{name} {value} is" in denied[0].message
    assert "reference price 100" in denied[0].message and "90" in denied[0].message and "110" in denied[0].message


def test_exits_at_the_edge_of_the_collar_pass() -> None:
    command = bracket(take_profit_limit_price="110", stop_loss_stop_price="90", stop_loss_limit_price="90")

    accepted, denied = engine().check([command], context())

    assert (accepted, denied) == ([command], [])


def test_exits_of_a_short_bracket_are_collared_too() -> None:
    short = order("AAPL", SELL, 10, order_class=OrderClass.BRACKET,
                  take_profit_limit_price=Decimal(95), stop_loss_stop_price=Decimal("110.5"))

    accepted, denied = engine().check([short], context())

    assert accepted == []
    assert [d.reason for d in denied] == [DenyReason.PRICE_COLLAR]
    assert "stop_loss_stop_price 110.5" in denied[0].message


def test_a_wider_collar_lets_the_same_exit_pass() -> None:
    command = bracket(take_profit_limit_price="111")

    narrow = engine().check([command], context())
    wide = engine(price_collar_pct=0.2).check([command], context())

    assert [d.reason for d in narrow[1]] == [DenyReason.PRICE_COLLAR]
    assert wide == ([command], [])
