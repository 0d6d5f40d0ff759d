"""Execution algorithms through the live order path: every child passes the pre-trade checks,
is persisted before it is sent, and fills once at the (paper) broker.

Production risk settings are used (the duplicate-intent window on): equal slices of one parent
sent seconds apart are not duplicates of each other, but a child sent again is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from amcp.config import RiskConfig
from amcp.domain.enums import DenyReason, OrderSide
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.messages import OrderAccepted, OrderDenied, SubmitOrder
from amcp.execution.algos import (
    AlgorithmStatus,
    BasketLeg,
    BasketOrder,
    ExecutionAlgorithm,
    ParentOrder,
    create_algorithm,
)
from serve.alpaca_paper import AlpacaPaperServer
from tests.unit.execution._invariants import EXACT, T0, LiveRig, bars

SECOND = 10**9


@pytest.fixture
def rig(tmp_path) -> Iterator[LiveRig]:
    """A live rig with production risk settings (duplicate_intent_window_s = 60), started."""
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as server:
        server.advance(bars(T0, 100.0))
        live = LiveRig(server, f"sqlite:///{tmp_path / 'state.sqlite'}", risk=RiskConfig())
        try:
            assert live.engine.risk._config.duplicate_intent_window_s >= 60
            assert live.engine.start().ok
            yield live
        finally:
            live.close()


def _twap(rig: LiveRig, parent_id: str, symbol: str, side: OrderSide, *, quantity: int, slices: int,
          duration_s: int) -> ExecutionAlgorithm:
    """A TWAP algorithm over ``duration_s`` seconds from now, in ``slices`` children."""
    parent = ParentOrder(parent_id=ClientOrderId(parent_id), strategy_id=StrategyId("s1"), symbol=symbol,
                         side=side, quantity=Decimal(quantity), limit_price=None, start_ns=rig.now,
                         end_ns=rig.now + duration_s * SECOND, algo="twap", params={"slices": slices})
    return create_algorithm(parent)


def _run(rig: LiveRig, algo: ExecutionAlgorithm, ticks: int, step_ns: int) -> list[SubmitOrder]:
    """Drive ``algo`` over ``ticks`` timer ticks ``step_ns`` apart; every child goes through the
    live engine; return the children sent."""
    engine = rig.engine
    sent: list[SubmitOrder] = []
    commands = algo.on_start(rig.now)
    for tick in range(ticks + 1):
        children = [c for c in commands if isinstance(c, SubmitOrder)]
        for event in engine.submit(children, rig.ctx()):
            if isinstance(event, OrderDenied):
                algo.on_denied(event)
            else:
                algo.on_event(event)
        sent.extend(c for c in children if engine.state.order(c.client_order_id) is not None)
        if tick == ticks:
            break
        rig.now += step_ns
        commands = algo.on_timer(rig.now)
    return sent


def _fill_all(rig: LiveRig, algo: ExecutionAlgorithm) -> None:
    """A day later at 100 USD: every working child fills; the algorithm sees the fills."""
    rig.advance(100.0)
    for event in rig.pump():
        algo.on_event(event)


def test_twap_slices_seconds_apart_all_pass_the_duplicate_intent_window(rig) -> None:
    engine = rig.engine
    algo = _twap(rig, "twap-1", "AAPL", OrderSide.BUY, quantity=400, slices=4, duration_s=120)
    sent = _run(rig, algo, ticks=4, step_ns=30 * SECOND)
    # four equal children, 30 s apart, inside the 60 s window: none denied as a duplicate intent
    assert [c.quantity for c in sent] == [Decimal(100)] * 4
    assert len({c.client_order_id for c in sent}) == 4
    assert not [a for a in engine.state.anomalies()]
    _fill_all(rig, algo)
    assert algo.status is AlgorithmStatus.COMPLETED
    assert algo.filled_quantity == Decimal(400)
    assert engine.state.positions() == {"AAPL": Decimal(400)}
    rig.check()


def test_a_child_sent_again_is_refused_and_never_reaches_the_broker(rig) -> None:
    engine = rig.engine
    algo = _twap(rig, "twap-2", "MSFT", OrderSide.SELL, quantity=200, slices=2, duration_s=60)
    first = [c for c in algo.on_start(rig.now) if isinstance(c, SubmitOrder)]
    assert [type(e) for e in engine.submit(first, rig.ctx())] == [OrderAccepted]
    requests_before = len([r for r in rig.server.requests if r.method == "POST"])
    again = engine.submit(first, rig.ctx())  # e.g. a restarted algorithm proposing the same child
    assert [e.reason for e in again] == [DenyReason.DUPLICATE_CLIENT_ORDER_ID]
    assert len([r for r in rig.server.requests if r.method == "POST"]) == requests_before
    rig.check()


def test_a_strategy_repeating_the_same_order_is_still_a_duplicate_intent(rig) -> None:
    engine = rig.engine

    def order(i: int) -> SubmitOrder:
        return SubmitOrder(client_order_id=ClientOrderId(f"loop-{i}"), strategy_id=StrategyId("s1"), symbol="JPM",
                           side=OrderSide.BUY, quantity=Decimal(10), ts_ns=rig.now)

    assert [type(e) for e in engine.submit([order(1)], rig.ctx())] == [OrderAccepted]
    rig.now += 5 * SECOND
    assert [e.reason for e in engine.submit([order(2)], rig.ctx())] == [DenyReason.DUPLICATE_INTENT]
    rig.check()


def test_a_basket_of_twaps_fills_every_leg_through_the_live_engine(rig) -> None:
    engine = rig.engine
    basket = BasketOrder(
        basket_id=ClientOrderId("basket-1"), strategy_id=StrategyId("s1"), start_ns=rig.now,
        end_ns=rig.now + 90 * SECOND, algo="twap", params={"slices": 3},
        legs=(BasketLeg(symbol="AAPL", side=OrderSide.BUY, quantity=Decimal(300)),
              BasketLeg(symbol="MSFT", side=OrderSide.BUY, quantity=Decimal(150))),
    )
    algo = create_algorithm(basket)
    sent = _run(rig, algo, ticks=3, step_ns=30 * SECOND)
    assert sum(c.quantity for c in sent if c.symbol == "AAPL") == Decimal(300)
    assert sum(c.quantity for c in sent if c.symbol == "MSFT") == Decimal(150)
    _fill_all(rig, algo)
    assert algo.status is AlgorithmStatus.COMPLETED
    assert engine.state.positions() == {"AAPL": Decimal(300), "MSFT": Decimal(150)}
    rig.check()
