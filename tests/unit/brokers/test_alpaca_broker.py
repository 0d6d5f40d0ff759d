"""AlpacaBroker against the Alpaca-compatible paper server: never a lost or duplicated order."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pytest

from amcp.brokers.alpaca import AlpacaBroker, order_body, trade_update_events
from amcp.config import SlippageConfig, VenueConfig
from amcp.data.ratelimit import TokenBucket
from amcp.domain.data import BarBatch
from amcp.domain.enums import OrderSide, OrderType, TimeInForce
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.messages import (
    CancelOrder,
    OrderAccepted,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    OrderSubmitted,
    ReplaceOrder,
    SubmitOrder,
)
from amcp.errors import ExecutionError
from serve.alpaca_paper import AlpacaPaperServer

KEY, SECRET = "test-key", "test-secret"
DAY_NS = 86_400 * 10**9
T0 = 1_704_229_200 * 10**9  # 2024-01-02 16:00 New York
EXACT = VenueConfig(participation_rate=None, slippage=SlippageConfig(model="none"))


def _bars(ts_ns: int, **bars: tuple[float, float, float, float, float]) -> BarBatch:
    symbols = tuple(bars)
    columns = np.array([bars[s] for s in symbols], dtype=np.float64).T
    return BarBatch(ts_ns, symbols, *(np.ascontiguousarray(column) for column in columns))


def _submit(cid: str = "c-1", qty: str = "10", order_type: OrderType = OrderType.MARKET,
            limit: str | None = None) -> SubmitOrder:
    return SubmitOrder(client_order_id=ClientOrderId(cid), strategy_id=StrategyId("s1"), symbol="AAPL",
                       side=OrderSide.BUY, quantity=Decimal(qty), order_type=order_type,
                       time_in_force=TimeInForce.GTC if limit else TimeInForce.DAY,
                       limit_price=Decimal(limit) if limit else None, ts_ns=T0)


@pytest.fixture
def server() -> Iterator[AlpacaPaperServer]:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as running:
        running.advance(_bars(T0, AAPL=(100.0, 101.0, 99.0, 100.0, 1e6)))
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def broker(server: AlpacaPaperServer, sleeps: list[float]) -> Iterator[AlpacaBroker]:
    yield AlpacaBroker(KEY, SECRET, url_override=server.url, rate_limiter=TokenBucket(60_000, burst=1000),
                       sleep=sleeps.append, lookup_delay_s=0.01)


def _orders_for(server: AlpacaPaperServer, cid: str) -> int:
    return sum(1 for r in server.requests if r.method == "POST" and r.path == "/v2/orders"
               and isinstance(r.body, dict) and r.body.get("client_order_id") == cid and r.status == 200)


def _venue_orders(broker: AlpacaBroker, cid: str) -> int:
    return sum(1 for o in broker.open_orders() if o.client_order_id == cid)


def test_order_body_keeps_decimals_exact() -> None:
    body = order_body(_submit(qty="0.1", order_type=OrderType.LIMIT, limit="123.4500"))
    assert body["qty"] == "0.1" and body["limit_price"] == "123.45" and body["client_order_id"] == "c-1"


def test_submit_is_accepted_and_fills_on_the_next_bar(server, broker) -> None:
    events = broker.submit(_submit())
    assert [type(e) for e in events] == [OrderAccepted]
    assert broker.order("c-1").status.value in ("new", "accepted")
    server.advance(_bars(T0 + DAY_NS, AAPL=(102.0, 103.0, 101.0, 102.5, 1e6)))
    filled = broker.order("c-1")
    assert filled.filled_quantity == Decimal(10) and filled.filled_avg_price == Decimal("102")
    assert broker.positions() == {"AAPL": Decimal(10)}
    fills = [e for u in server.trade_updates for e in trade_update_events(u) if isinstance(e, OrderFilled)]
    assert [(f.last_quantity, f.last_price) for f in fills] == [(Decimal(10), Decimal("102"))]


def test_a_504_after_acceptance_is_resolved_by_lookup_not_by_resending(server, broker) -> None:
    server.timeout_after_accept_next(1)
    events = broker.submit(_submit("c-504"))
    assert [type(e) for e in events] == [OrderAccepted]
    assert broker.stats["unknown_outcomes"] == 1 and broker.stats["resends"] == 0
    posts = [r for r in server.requests if r.method == "POST" and r.path == "/v2/orders"]
    assert len(posts) == 1  # never sent twice
    assert _venue_orders(broker, "c-504") == 1


def test_a_5xx_before_acceptance_resends_the_same_id_once(server, broker) -> None:
    server.fail_next(1, 503, match="POST /v2/orders")
    events = broker.submit(_submit("c-503"))
    assert [type(e) for e in events] == [OrderAccepted]
    assert broker.stats["resends"] == 1
    assert _venue_orders(broker, "c-503") == 1


def test_unknown_outcome_that_never_resolves_stays_in_flight(server, broker) -> None:
    server.fail_next(50, 503, match="POST /v2/orders")
    events = broker.submit(_submit("c-dark"))
    assert [type(e) for e in events] == [OrderSubmitted]  # in flight, never "rejected"
    assert broker.order("c-dark") is None


def test_429_storm_is_waited_out_and_creates_one_order(server, broker, sleeps) -> None:
    server.fail_next(3, 429, headers={"Retry-After": "2"}, match="POST /v2/orders")
    events = broker.submit(_submit("c-429"))
    assert [type(e) for e in events] == [OrderAccepted]
    assert sleeps[:3] == [2.0, 2.0, 2.0]
    assert _venue_orders(broker, "c-429") == 1


def test_resubmitting_the_same_intent_never_creates_a_second_order(server, broker) -> None:
    first = broker.submit(_submit("c-dup", order_type=OrderType.LIMIT, limit="90"))
    again = broker.submit(_submit("c-dup", order_type=OrderType.LIMIT, limit="90"))
    assert [type(e) for e in first] == [type(e) for e in again] == [OrderAccepted]
    assert first[0].venue_order_id == again[0].venue_order_id
    assert broker.stats["duplicates_refused"] == 1
    assert _venue_orders(broker, "c-dup") == 1


def test_a_refused_order_is_rejected_with_the_venues_reason(server, broker) -> None:
    events = broker.submit(_submit("c-big", qty="100000000"))
    assert [type(e) for e in events] == [OrderRejected]
    assert "403" in events[0].reason


def test_cancel_and_replace(server, broker) -> None:
    broker.submit(_submit("c-lim", order_type=OrderType.LIMIT, limit="90"))
    replaced = broker.replace(ReplaceOrder(client_order_id=ClientOrderId("c-lim"),
                                           new_client_order_id=ClientOrderId("c-lim-2"), ts_ns=T0,
                                           limit_price=Decimal("91")))
    assert [type(e) for e in replaced] == [OrderReplaced]
    new = broker.order("c-lim-2")
    assert new is not None and new.status.value in ("new", "accepted")
    broker.cancel(CancelOrder(client_order_id=ClientOrderId("c-lim-2"), ts_ns=T0))
    assert broker.order("c-lim-2").status.value == "canceled"
    assert broker.open_orders() == []


def test_trade_updates_normalise_and_reject_malformed_messages(server, broker) -> None:
    broker.submit(_submit("c-tu"))
    server.advance(_bars(T0 + DAY_NS, AAPL=(102.0, 103.0, 101.0, 102.5, 1e6)))
    kinds = Counter(type(e).__name__ for u in server.trade_updates for e in trade_update_events(u))
    assert kinds["OrderAccepted"] == 1 and kinds["OrderFilled"] == 1
    with pytest.raises(ExecutionError, match="without an order"):
        trade_update_events({"event": "fill"})
    with pytest.raises(ExecutionError, match="not a number"):
        trade_update_events({"event": "fill", "order": {"client_order_id": "x", "id": "v1", "side": "buy"},
                             "qty": "ten", "price": "1", "execution_id": "e1"})
    with pytest.raises(ExecutionError, match="malformed trade update"):
        trade_update_events({"event": "fill", "order": {"client_order_id": "x", "side": "buy"}, "qty": "1",
                             "price": "1", "execution_id": "e1"})  # no venue order id


def test_account_reflects_fills(server, broker) -> None:
    before = broker.account()
    broker.submit(_submit("c-acct"))
    server.advance(_bars(T0 + DAY_NS, AAPL=(102.0, 103.0, 101.0, 102.5, 1e6)))
    after = broker.account()
    assert before.cash - after.cash == Decimal(1020)


def test_429_with_only_a_reset_header_waits_until_the_reset(server, broker, sleeps) -> None:
    import time

    server.fail_next(1, 429, headers={"X-RateLimit-Reset": str(int(time.time()) + 3)}, match="POST /v2/orders")
    assert [type(e) for e in broker.submit(_submit("c-reset"))] == [OrderAccepted]
    assert 1.0 < sleeps[0] <= 3.0
