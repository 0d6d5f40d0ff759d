"""Alpaca order classes on the wire: request bodies, nested legs in answers, fill activities.

The request bodies are checked against what alpaca-py itself would send for the same order;
the answers are recorded-style Alpaca order objects (the shapes of Alpaca's API reference).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from alpaca.trading.enums import OrderClass as AlpacaOrderClass
from alpaca.trading.enums import OrderSide as AlpacaSide
from alpaca.trading.enums import PositionIntent as AlpacaIntent
from alpaca.trading.enums import TimeInForce as AlpacaTif
from alpaca.trading.requests import (
    LimitOrderRequest,
    MarketOrderRequest,
    OptionLegRequest,
    StopLossRequest,
    TakeProfitRequest,
)

from amcp.brokers.alpaca import (
    AlpacaBroker,
    broker_order,
    events_from_order,
    order_body,
    trade_update_events,
)
from amcp.domain.enums import OrderClass, OrderSide, OrderType, PositionIntent, TimeInForce
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.messages import OrderAccepted, OrderFilled, OrderLeg, OrderLegAccepted, SubmitOrder
from amcp.domain.serialization import from_record, to_json, to_record
from amcp.errors import DomainError, ExecutionError

T0 = 1_704_229_200 * 10**9
CALL_480 = "SPY240119C00480000"
CALL_490 = "SPY240119C00490000"


def _order(**fields: Any) -> SubmitOrder:
    base: dict[str, Any] = dict(client_order_id=ClientOrderId("c-1"), strategy_id=StrategyId("s1"), symbol="AAPL",
                                side=OrderSide.BUY, quantity=Decimal(10), ts_ns=T0)
    return SubmitOrder(**{**base, **fields})


def _spread(**fields: Any) -> SubmitOrder:
    legs = (OrderLeg(symbol=CALL_480, side=OrderSide.BUY, ratio_quantity=1, position_intent=PositionIntent.BUY_TO_OPEN),
            OrderLeg(symbol=CALL_490, side=OrderSide.SELL, ratio_quantity=2))
    return _order(symbol="SPY", quantity=Decimal(3), order_type=OrderType.LIMIT, limit_price=Decimal("-0.45"),
                  order_class=OrderClass.MLEG, legs=legs, **fields)


def _alpaca_fields(request: Any) -> dict[str, Any]:
    """alpaca-py's JSON body, numbers as amcp writes them (decimal strings)."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, float):
            return format(Decimal(str(value)).normalize(), "f")
        return value
    return plain(request.to_request_fields())


# --------------------------------------------------------------------------- request bodies


def test_bracket_body_is_what_alpaca_py_sends() -> None:
    command = _order(order_type=OrderType.LIMIT, limit_price=Decimal("100.00"), time_in_force=TimeInForce.GTC,
                     order_class=OrderClass.BRACKET, take_profit_limit_price=Decimal("110"),
                     stop_loss_stop_price=Decimal("95"), stop_loss_limit_price=Decimal("94.5"))
    expected = LimitOrderRequest(symbol="AAPL", qty=10, side=AlpacaSide.BUY, time_in_force=AlpacaTif.GTC,
                                 limit_price=100.0, client_order_id="c-1", order_class=AlpacaOrderClass.BRACKET,
                                 take_profit=TakeProfitRequest(limit_price=110.0),
                                 stop_loss=StopLossRequest(stop_price=95.0, limit_price=94.5))

    assert order_body(command) == _alpaca_fields(expected)


def test_oto_and_oco_bodies_are_what_alpaca_py_sends() -> None:
    oto = _order(order_class=OrderClass.OTO, stop_loss_stop_price=Decimal("95"))
    oco = _order(side=OrderSide.SELL, order_type=OrderType.LIMIT, limit_price=Decimal("110"),
                 order_class=OrderClass.OCO, stop_loss_stop_price=Decimal("95"))

    assert order_body(oto) == _alpaca_fields(MarketOrderRequest(
        symbol="AAPL", qty=10, side=AlpacaSide.BUY, time_in_force=AlpacaTif.DAY, client_order_id="c-1",
        order_class=AlpacaOrderClass.OTO, stop_loss=StopLossRequest(stop_price=95.0)))
    assert order_body(oco) == _alpaca_fields(LimitOrderRequest(
        symbol="AAPL", qty=10, side=AlpacaSide.SELL, time_in_force=AlpacaTif.DAY, limit_price=110.0,
        client_order_id="c-1", order_class=AlpacaOrderClass.OCO, take_profit=TakeProfitRequest(limit_price=110.0),
        stop_loss=StopLossRequest(stop_price=95.0)))


def test_multi_leg_body_has_legs_and_no_symbol_or_side() -> None:
    expected = LimitOrderRequest(qty=3, time_in_force=AlpacaTif.DAY, limit_price=-0.45, client_order_id="c-1",
                                 order_class=AlpacaOrderClass.MLEG, legs=[
                                     OptionLegRequest(symbol=CALL_480, ratio_qty=1, side=AlpacaSide.BUY,
                                                      position_intent=AlpacaIntent.BUY_TO_OPEN),
                                     OptionLegRequest(symbol=CALL_490, ratio_qty=2, side=AlpacaSide.SELL)])
    body = order_body(_spread())

    assert "symbol" not in body and "side" not in body
    assert body == _alpaca_fields(expected)


def test_simple_body_is_unchanged() -> None:
    assert "order_class" not in order_body(_order())


# --------------------------------------------------------------------------- the domain side


def test_submit_order_with_legs_round_trips_through_records() -> None:
    command = _spread(take_profit_limit_price=None)

    record = to_record(command)

    assert record["legs"][1] == {"type": "OrderLeg", "symbol": CALL_490, "side": "sell", "ratio_quantity": 2,
                                 "position_intent": None}
    assert from_record(record) == command
    assert from_record({k: v for k, v in to_record(_order()).items() if k not in ("order_class", "legs")}) == _order()
    assert to_json(command) == to_json(from_record(record))


@pytest.mark.parametrize("fields, match", [
    ({"ratio_quantity": 0}, "ratio_quantity"),
    ({"ratio_quantity": True}, "ratio_quantity"),
    ({"position_intent": "sell_to_open"}, "contradicts"),
    ({"position_intent": "buy_to_hold"}, "buy_to_hold"),
    ({"symbol": ""}, "symbol"),
])
def test_an_invalid_leg_is_a_domain_error(fields: dict[str, Any], match: str) -> None:
    with pytest.raises(DomainError, match=match):
        OrderLeg(**{"symbol": CALL_480, "side": OrderSide.BUY, **fields})


def test_a_leg_list_holding_another_message_is_refused() -> None:
    record = to_record(_spread())
    record["legs"] = [to_record(_order())]

    with pytest.raises(DomainError, match="holds"):
        from_record(record)


# --------------------------------------------------------------------------- answers with legs


def _raw(cid: str, oid: str, *, symbol: str = "AAPL", side: str = "buy", qty: str = "10", status: str = "new",
         order_type: str = "market", order_class: str = "simple", limit: str | None = None,
         stop: str | None = None, filled: str = "0", avg: str | None = None,
         legs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An Alpaca order object (the fields amcp reads, as Alpaca writes them)."""
    return {"id": oid, "client_order_id": cid, "symbol": symbol, "side": side, "qty": qty, "filled_qty": filled,
            "filled_avg_price": avg, "status": status, "type": order_type, "order_type": order_type,
            "order_class": order_class, "time_in_force": "gtc", "limit_price": limit, "stop_price": stop,
            "updated_at": "2024-01-02T21:00:00Z", "replaced_by": None, "legs": legs}


BRACKET = _raw("c-1", "o-1", order_type="limit", limit="100", order_class="bracket", legs=[
    _raw("tp-1", "o-2", side="sell", status="held", order_type="limit", limit="110", order_class="bracket"),
    _raw("sl-1", "o-3", side="sell", status="held", order_type="stop", stop="95", order_class="bracket"),
])
MLEG = _raw("c-1", "o-1", symbol="", side="", qty="3", order_type="limit", limit="-0.45", order_class="mleg",
            status="filled", filled="3", avg="-0.45", legs=[
                _raw("leg-a", "o-a", symbol=CALL_480, qty="3", order_type="", order_class="mleg", status="filled",
                     filled="3", avg="1.05"),
                _raw("leg-b", "o-b", symbol=CALL_490, side="sell", qty="6", order_type="", order_class="mleg",
                     status="filled", filled="6", avg="0.75")])


def test_a_bracket_answer_reports_its_exits_as_leg_orders() -> None:
    events = events_from_order(BRACKET, T0)

    assert type(events[0]) is OrderAccepted
    legs = [e for e in events if isinstance(e, OrderLegAccepted)]
    assert [(e.client_order_id, e.parent_client_order_id, e.venue_order_id, e.side, e.order_type,
             e.limit_price, e.stop_price) for e in legs] == [
        ("tp-1", "c-1", "o-2", OrderSide.SELL, OrderType.LIMIT, Decimal(110), None),
        ("sl-1", "c-1", "o-3", OrderSide.SELL, OrderType.STOP, None, Decimal(95)),
    ]
    assert all(e.quantity == Decimal(10) and e.time_in_force is TimeInForce.GTC for e in legs)


def test_a_multi_leg_order_has_no_side_and_legs_without_a_type() -> None:
    parsed = broker_order(MLEG)

    assert parsed.side is None and parsed.symbol == "" and parsed.order_class is OrderClass.MLEG
    assert parsed.filled_avg_price == Decimal("-0.45")
    assert [(leg.symbol, leg.side, leg.quantity) for leg in parsed.legs] == [
        (CALL_480, OrderSide.BUY, Decimal(3)), (CALL_490, OrderSide.SELL, Decimal(6))]
    legs = [e for e in events_from_order(MLEG, T0) if isinstance(e, OrderLegAccepted)]
    assert [e.order_type for e in legs] == [OrderType.MARKET, OrderType.MARKET]


def test_a_multi_leg_parent_fill_update_is_a_fill_plus_its_legs() -> None:
    update = {"event": "fill", "execution_id": "x-1", "qty": "3", "price": "-0.45",
              "timestamp": "2024-01-02T21:00:00Z", "order": MLEG}

    events = trade_update_events(update, "s1")

    fill = events[0]
    assert isinstance(fill, OrderFilled) and fill.last_price == Decimal("-0.45") and fill.symbol == ""
    assert [type(e) for e in events[1:]] == [OrderLegAccepted, OrderLegAccepted]


def test_a_leg_with_an_unknown_type_is_a_malformed_update() -> None:
    bad = {**BRACKET, "legs": [{**BRACKET["legs"][0], "type": "pegged"}]}

    with pytest.raises(ExecutionError, match="pegged"):
        trade_update_events({"event": "new", "order": bad, "timestamp": "2024-01-02T21:00:00Z"})


# --------------------------------------------------------------------------- fill activities


class _ActivityServer:
    """Stands in for alpaca-py's client: serves ``GET /account/activities/FILL`` pages."""

    def __init__(self, activities: list[dict[str, Any]]) -> None:
        self.activities = activities
        self.calls: list[dict[str, Any]] = []

    def get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        assert path == "/account/activities/FILL"
        self.calls.append(dict(params))
        start = 0
        if "page_token" in params:
            start = next(i for i, a in enumerate(self.activities) if a["id"] == params["page_token"]) + 1
        return self.activities[start:start + params["page_size"]]


def _activity(i: int) -> dict[str, Any]:
    return {"id": f"20240102160000{i:03d}::e-{i}", "activity_type": "FILL", "transaction_time": "2024-01-02T21:00:00Z",
            "type": "partial_fill", "price": "100.5", "qty": "1", "side": "buy", "symbol": "AAPL",
            "leaves_qty": "0", "order_id": "o-1", "cum_qty": str(i + 1)}


def test_fill_activities_page_through_every_execution_oldest_first() -> None:
    broker = AlpacaBroker("key", "secret", url_override="http://127.0.0.1:9")
    server = _ActivityServer([_activity(i) for i in range(230)])
    broker._client = server  # type: ignore[assignment]

    fills = broker.fill_activities(after_ns=T0)

    assert [f.execution_id for f in fills] == [a["id"] for a in server.activities]
    assert [c.get("page_token") for c in server.calls] == [None, server.activities[99]["id"],
                                                           server.activities[199]["id"]]
    assert server.calls[0]["direction"] == "asc" and server.calls[0]["after"].startswith("2024-01-02T21:00:00")
    assert (fills[0].venue_order_id, fills[0].side, fills[0].quantity, fills[0].price) == (
        "o-1", OrderSide.BUY, Decimal(1), Decimal("100.5"))


def test_a_malformed_activity_is_an_execution_error() -> None:
    broker = AlpacaBroker("key", "secret", url_override="http://127.0.0.1:9")
    broker._client = _ActivityServer([{**_activity(0), "qty": "lots"}])  # type: ignore[assignment]

    with pytest.raises(ExecutionError, match="qty"):
        broker.fill_activities()
