"""The order state machine: every legal transition works, every illegal one is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from amcp.domain import (
    ClientOrderId,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderStatusChanged,
    OrderSubmitted,
    OrderType,
    StrategyId,
    SubmitOrder,
    TradeId,
    VenueOrderId,
)
from amcp.domain.orders import TRANSITIONS, can_transition
from amcp.errors import DomainError, InvalidTransitionError

CID = ClientOrderId("o-1")


def command(**overrides: object) -> SubmitOrder:
    fields: dict[str, object] = dict(
        client_order_id=CID, strategy_id=StrategyId("s"), symbol="AAPL", side=OrderSide.BUY,
        quantity=Decimal(10), ts_ns=1,
    )
    fields.update(overrides)
    return SubmitOrder(**fields)  # type: ignore[arg-type]


def fill(quantity: str, price: str = "100", trade: str = "t1", side: OrderSide = OrderSide.BUY) -> OrderFilled:
    return OrderFilled(
        client_order_id=CID, venue_order_id=VenueOrderId("v1"), trade_id=TradeId(trade), strategy_id=StrategyId("s"),
        symbol="AAPL", side=side, last_quantity=Decimal(quantity), last_price=Decimal(price), fee=Decimal("0.01"),
        liquidity=LiquiditySide.TAKER, ts_ns=5,
    )


def order_in(status: OrderStatus) -> Order:
    """An order forced into ``status`` (filled quantity consistent with partially_filled)."""
    order = Order(command())
    order.status = status
    if status is OrderStatus.PARTIALLY_FILLED:
        order.filled_quantity = Decimal(4)
    return order


ALL_PAIRS = [(a, b) for a in OrderStatus for b in OrderStatus]
LEGAL = [(a, b) for a, b in ALL_PAIRS if can_transition(a, b)]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if not can_transition(a, b)]


def event_to(target: OrderStatus, order: Order):
    """The event that drives an order to ``target``."""
    from amcp.domain import OrderCanceled, OrderDenied, OrderExpired, OrderRejected, OrderReplaced
    from amcp.domain.enums import DenyReason

    if target is OrderStatus.FILLED:
        return fill(str(order.leaves_quantity))
    if target is OrderStatus.PARTIALLY_FILLED:
        return fill("1")
    simple = {
        OrderStatus.DENIED: OrderDenied(client_order_id=CID, ts_ns=2, reason=DenyReason.THROTTLED, message="x"),
        OrderStatus.PENDING_NEW: OrderSubmitted(client_order_id=CID, ts_ns=2),
        OrderStatus.NEW: OrderAccepted(client_order_id=CID, venue_order_id=VenueOrderId("v1"), ts_ns=2),
        OrderStatus.REJECTED: OrderRejected(client_order_id=CID, ts_ns=2, reason="x"),
        OrderStatus.CANCELED: OrderCanceled(client_order_id=CID, ts_ns=2),
        OrderStatus.EXPIRED: OrderExpired(client_order_id=CID, ts_ns=2),
        OrderStatus.REPLACED: OrderReplaced(client_order_id=CID, new_client_order_id=ClientOrderId("o-2"), ts_ns=2),
    }
    return simple.get(target) or OrderStatusChanged(client_order_id=CID, status=target, ts_ns=2)


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)


@pytest.mark.parametrize(("source", "target"), LEGAL, ids=[f"{a.value}->{b.value}" for a, b in LEGAL])
def test_legal_transition_is_applied(source: OrderStatus, target: OrderStatus) -> None:
    order = order_in(source)
    order.apply(event_to(target, order))
    assert order.status is target


@pytest.mark.parametrize(("source", "target"), ILLEGAL, ids=[f"{a.value}->{b.value}" for a, b in ILLEGAL])
def test_illegal_transition_is_refused_and_changes_nothing(source: OrderStatus, target: OrderStatus) -> None:
    order = order_in(source)
    before = (order.status, order.filled_quantity, list(order.status_history))
    with pytest.raises(InvalidTransitionError, match=f"from {source.value} to {target.value}"):
        order.apply(event_to(target, order))
    assert (order.status, order.filled_quantity, order.status_history) == before


def test_terminal_statuses_have_no_way_out() -> None:
    for status in OrderStatus:
        assert (not TRANSITIONS[status]) == status.is_terminal


def test_partial_then_full_fill_tracks_average_price() -> None:
    order = Order(command())
    order.apply(OrderSubmitted(client_order_id=CID, ts_ns=2))
    order.apply(OrderAccepted(client_order_id=CID, venue_order_id=VenueOrderId("v1"), ts_ns=3))
    order.apply(fill("4", "100", "t1"))
    assert order.status is OrderStatus.PARTIALLY_FILLED and order.leaves_quantity == 6
    order.apply(fill("6", "110", "t2"))
    assert order.status is OrderStatus.FILLED
    assert order.average_fill_price == Decimal(106)
    assert order.fees == Decimal("0.02")


def test_overfill_is_refused() -> None:
    order = order_in(OrderStatus.NEW)
    with pytest.raises(DomainError, match="overfill"):
        order.apply(fill("11"))
    assert order.filled_quantity == 0 and order.status is OrderStatus.NEW


def test_fill_for_other_side_is_refused() -> None:
    order = order_in(OrderStatus.NEW)
    with pytest.raises(DomainError, match="does not match"):
        order.apply(fill("1", side=OrderSide.SELL))


def test_event_for_another_order_is_refused() -> None:
    order = order_in(OrderStatus.NEW)
    with pytest.raises(DomainError, match="applied to order"):
        order.apply(OrderSubmitted(client_order_id=ClientOrderId("other"), ts_ns=1))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"quantity": Decimal(0)}, "quantity must be > 0"),
        ({"order_type": OrderType.LIMIT}, "needs limit_price"),
        ({"order_type": OrderType.STOP}, "needs stop_price"),
        ({"order_type": OrderType.STOP_LIMIT, "limit_price": Decimal(1)}, "needs stop_price"),
        ({"order_type": OrderType.TRAILING_STOP}, "exactly one of trail_price"),
        ({"order_type": OrderType.TRAILING_STOP, "trail_price": Decimal(1), "trail_percent": Decimal(1)}, "exactly one"),
    ],
)
def test_malformed_order_is_refused_at_construction(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(DomainError, match=message):
        Order(command(**overrides))
