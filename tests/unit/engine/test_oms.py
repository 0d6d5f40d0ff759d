"""The OMS applies broker events safely: duplicates ignored, nonsense recorded, never a crash."""

from __future__ import annotations

from decimal import Decimal

import pytest

from amcp.domain import (
    ClientOrderId,
    LiquiditySide,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderSide,
    OrderStatus,
    StrategyId,
    SubmitOrder,
    TradeId,
    VenueOrderId,
)
from amcp.domain.enums import DenyReason
from amcp.domain.messages import OrderDenied
from amcp.errors import ExecutionError
from amcp.execution.oms import OrderManager


def cmd(cid: str, side: OrderSide = OrderSide.BUY, qty: int = 10, strategy: str = "s") -> SubmitOrder:
    return SubmitOrder(client_order_id=ClientOrderId(cid), strategy_id=StrategyId(strategy), symbol="AAPL",
                       side=side, quantity=Decimal(qty), ts_ns=1)


def fill(cid: str, qty: int, trade: str, side: OrderSide = OrderSide.BUY) -> OrderFilled:
    return OrderFilled(client_order_id=ClientOrderId(cid), venue_order_id=VenueOrderId("v"), trade_id=TradeId(trade),
                       strategy_id=StrategyId("s"), symbol="AAPL", side=side, last_quantity=Decimal(qty),
                       last_price=Decimal(100), fee=Decimal(0), liquidity=LiquiditySide.TAKER, ts_ns=2)


def live_oms(*commands: SubmitOrder) -> OrderManager:
    oms = OrderManager()
    oms.process_decisions(commands, commands, [], ts_ns=1)
    oms.apply([OrderAccepted(client_order_id=c.client_order_id, venue_order_id=VenueOrderId("v"), ts_ns=1) for c in commands])
    return oms


def test_decisions_register_deny_and_submit() -> None:
    a, b = cmd("a"), cmd("b")
    denial = OrderDenied(client_order_id=b.client_order_id, ts_ns=1, reason=DenyReason.THROTTLED, message="x")
    oms = OrderManager()
    submitted = oms.process_decisions([a, b], [a], [denial], ts_ns=1)
    assert [e.client_order_id for e in submitted] == ["a"]
    assert oms.get("a").status is OrderStatus.PENDING_NEW
    assert oms.get("b").status is OrderStatus.DENIED
    assert [o.client_order_id for o in oms.working_orders()] == ["a"]


def test_duplicate_registration_is_refused() -> None:
    oms = OrderManager()
    oms.register([cmd("a")])
    with pytest.raises(ExecutionError, match="already registered"):
        oms.register([cmd("a")])


def test_repeated_trade_id_is_applied_once() -> None:
    oms = live_oms(cmd("a"))
    assert len(oms.apply([fill("a", 4, "t1"), fill("a", 4, "t1")])) == 1
    assert oms.get("a").filled_quantity == 4


def test_overfill_and_unknown_order_become_anomalies_not_crashes() -> None:
    oms = live_oms(cmd("a"))
    applied = oms.apply([fill("a", 11, "t1"), fill("zzz", 1, "t2"), fill("a", 10, "t3")])
    assert [f.trade_id for f in applied] == ["t3"]
    assert oms.get("a").status is OrderStatus.FILLED
    reasons = [a.reason for a in oms.anomalies]
    assert any("overfill" in r for r in reasons) and any("unknown client order id zzz" in r for r in reasons)
    assert oms.working_orders() == []


def test_pending_quantities_are_signed_leaves_per_strategy() -> None:
    oms = live_oms(cmd("a", OrderSide.BUY, 10), cmd("b", OrderSide.SELL, 3), cmd("c", OrderSide.BUY, 5, "t"))
    oms.apply([fill("a", 4, "t1")])
    assert oms.pending_quantities() == {("s", "AAPL"): Decimal(3), ("t", "AAPL"): Decimal(5)}


def test_cancel_all_targets_every_working_order() -> None:
    oms = live_oms(cmd("a"), cmd("b"))
    cancels = oms.cancel_all_commands(ts_ns=9, reason="kill")
    assert [c.client_order_id for c in cancels] == ["a", "b"]
    oms.apply([OrderCanceled(client_order_id=c.client_order_id, ts_ns=9) for c in cancels])
    assert oms.working_orders() == [] and oms.get("a").status is OrderStatus.CANCELED
