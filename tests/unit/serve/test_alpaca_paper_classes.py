"""AlpacaPaperServer order classes (bracket, oco, oto, mleg), option contracts and account
activities, driven by the real alpaca-py TradingClient and TradingStream."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import (
    ContractType,
    ExerciseStyle,
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionIntent,
    QueryOrderStatus,
    TimeInForce,
)
from alpaca.trading.models import TradeActivity
from alpaca.trading.requests import (
    GetOptionContractsRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    OptionLegRequest,
    StopLossRequest,
    TakeProfitRequest,
)

from amcp.config import FeeConfig, SlippageConfig, VenueConfig
from amcp.domain.instruments import OptionContract
from amcp.errors import ExecutionError
from serve.alpaca_paper import AlpacaPaperServer
from serve.alpaca_paper._orders import PaperApiError
from serve.alpaca_paper.server import ListedOption
from tests.unit.serve.test_alpaca_paper import DAY_NS, KEY, SECRET, T0, _bars, _StreamRunner

NO_FEES = FeeConfig(
    sec_fee_per_million_usd=Decimal(0),
    finra_taf_per_share_usd=Decimal(0),
    option_fee_per_contract_usd=Decimal(0),
    option_taf_per_contract_usd=Decimal(0),
)
EXACT = VenueConfig(participation_rate=None, slippage=SlippageConfig(model="none"), fees=NO_FEES)
FLAT = (100.0, 101.0, 99.0, 100.0, 1e6)  # a bar that opens (and fills market orders) at 100
CALL_190, CALL_200 = "AAPL240119C00190000", "AAPL240119C00200000"
PUT_180, CALL_210 = "AAPL240119P00180000", "AAPL240119C00210000"
QUOTES = {CALL_190: (Decimal("2.00"), Decimal("2.20")), CALL_200: (Decimal("0.90"), Decimal("1.00"))}


@pytest.fixture
def server() -> Iterator[AlpacaPaperServer]:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as running:
        yield running


@pytest.fixture
def client(server: AlpacaPaperServer) -> TradingClient:
    trading = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    trading._retry_wait = 0  # alpaca-py sleeps 3 s between its own retries; the tests need none
    return trading


@pytest.fixture
def stream(server: AlpacaPaperServer) -> Iterator[_StreamRunner]:
    runner = _StreamRunner(server)
    assert server.wait_stream_listening(1, timeout_s=5)
    yield runner
    runner.stop()


@pytest.fixture(autouse=True)
def _no_leaked_event_loop() -> Iterator[None]:
    yield
    asyncio.set_event_loop(None)


def _raw(server: AlpacaPaperServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    return requests.request(method, server.url + path, headers=headers, timeout=5, **kwargs)


def _market(symbol: str, qty: float, side: OrderSide) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY)


def _bracket(
    take_profit: float = 110, stop: float = 95, stop_limit: float | None = None, **extra: Any
) -> MarketOrderRequest:
    extra.setdefault("time_in_force", TimeInForce.GTC)
    return MarketOrderRequest(
        symbol="AAPL",
        qty=10,
        side=OrderSide.BUY,
        order_class=OrderClass.BRACKET,
        take_profit=TakeProfitRequest(limit_price=take_profit),
        stop_loss=StopLossRequest(stop_price=stop, limit_price=stop_limit),
        **extra,
    )


def _spread(
    limit_price: float | None = 1.5, qty: float = 2, **extra: Any
) -> MarketOrderRequest | LimitOrderRequest:
    """A call debit spread: buy the 190 call, sell the 200 call."""
    buy, sell = PositionIntent.BUY_TO_OPEN, PositionIntent.SELL_TO_OPEN
    legs = [
        OptionLegRequest(symbol=CALL_190, ratio_qty=1, side=OrderSide.BUY, position_intent=buy),
        OptionLegRequest(symbol=CALL_200, ratio_qty=1, side=OrderSide.SELL, position_intent=sell),
    ]
    common: dict[str, Any] = {"qty": qty, "order_class": OrderClass.MLEG, "legs": legs,
                              "time_in_force": TimeInForce.DAY, **extra}
    if limit_price is None:
        return MarketOrderRequest(**common)
    return LimitOrderRequest(limit_price=limit_price, **common)


def _events(updates: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(event, client_order_id) of each trade update."""
    return [(u["event"], u["order"]["client_order_id"]) for u in updates]


# ----------------------------------------------------------------------------- bracket


def test_bracket_answers_held_legs_that_are_released_when_the_entry_fills(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    parent = client.submit_order(_bracket(client_order_id="b-1"))
    take_profit, stop_loss = parent.legs or []

    filled = server.advance(_bars(T0 + DAY_NS, AAPL=FLAT))

    assert (parent.order_class, parent.status, parent.side) == (
        OrderClass.BRACKET, OrderStatus.NEW, OrderSide.BUY,
    )  # fmt: skip
    legs = (take_profit, stop_loss)
    assert [(leg.type, leg.side, leg.qty, leg.status, leg.order_class) for leg in legs] == [
        (OrderType.LIMIT, OrderSide.SELL, "10", OrderStatus.HELD, OrderClass.BRACKET),
        (OrderType.STOP, OrderSide.SELL, "10", OrderStatus.HELD, OrderClass.BRACKET),
    ]  # fmt: skip
    assert (take_profit.limit_price, stop_loss.stop_price) == ("110", "95")
    assert len({parent.id, take_profit.id, stop_loss.id}) == 3
    assert len({parent.client_order_id, take_profit.client_order_id, stop_loss.client_order_id}) == 3
    assert _events(filled) == [
        ("fill", "b-1"), ("new", take_profit.client_order_id), ("new", stop_loss.client_order_id),
    ]  # fmt: skip
    assert [leg["status"] for leg in filled[0]["order"]["legs"]] == ["held", "held"]
    assert [leg.status for leg in client.get_order_by_id(parent.id).legs or []] == [OrderStatus.NEW] * 2


@pytest.mark.parametrize(
    ("bar", "winner", "price", "cash"),
    [
        ((105.0, 111.0, 104.0, 110.5, 1e6), "take_profit", "110", "100100"),
        ((97.0, 98.0, 90.0, 92.0, 1e6), "stop_loss", "95", "99950"),
        ((105.0, 112.0, 94.0, 96.0, 1e6), "stop_loss", "95", "99950"),  # both reached: the stop first
        ((112.0, 113.0, 90.0, 95.0, 1e6), "take_profit", "112", "100120"),  # gap through the limit
    ],
    ids=["take-profit", "stop-loss", "both-reached-stop-first", "gap-through-take-profit"],
)
def test_one_bracket_exit_fills_and_cancels_the_other(
    server: AlpacaPaperServer,
    client: TradingClient,
    bar: tuple[float, ...],
    winner: str,
    price: str,
    cash: str,
) -> None:
    parent = client.submit_order(_bracket())
    legs = dict(zip(("take_profit", "stop_loss"), parent.legs or [], strict=True))
    loser = legs["stop_loss" if winner == "take_profit" else "take_profit"]
    server.advance(_bars(T0 + DAY_NS, AAPL=FLAT))

    updates = server.advance(_bars(T0 + 2 * DAY_NS, AAPL=bar))

    assert _events(updates) == [("fill", legs[winner].client_order_id), ("canceled", loser.client_order_id)]
    assert updates[0]["price"] == price and updates[0]["execution_id"]
    nested = client.get_order_by_id(parent.id).legs or []
    assert {leg.client_order_id: leg.status for leg in nested} == {
        legs[winner].client_order_id: OrderStatus.FILLED, loser.client_order_id: OrderStatus.CANCELED,
    }  # fmt: skip
    assert client.get_all_positions() == []
    assert client.get_account().cash == cash


def test_canceling_an_unfilled_bracket_entry_cancels_its_held_legs(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    parent = client.submit_order(
        LimitOrderRequest(symbol="AAPL", qty=5, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                          limit_price=90, order_class=OrderClass.BRACKET,
                          take_profit=TakeProfitRequest(limit_price=99),
                          stop_loss=StopLossRequest(stop_price=85, limit_price=84))
    )  # fmt: skip

    client.cancel_order_by_id(parent.id)
    flat = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    nested = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL, nested=True))

    assert [u["event"] for u in server.trade_updates] == ["new", "canceled", "canceled", "canceled"]
    assert [(o.status, o.legs) for o in flat] == [(OrderStatus.CANCELED, None)] * 3
    [group] = nested
    assert group.id == parent.id
    assert [(leg.type, leg.status, leg.limit_price) for leg in group.legs or []] == [
        (OrderType.LIMIT, OrderStatus.CANCELED, "99"), (OrderType.STOP_LIMIT, OrderStatus.CANCELED, "84"),
    ]  # fmt: skip
    assert client.get_orders(GetOrdersRequest(nested=True)) == []


def test_partly_filled_entry_canceled_releases_exits_for_the_filled_quantity() -> None:
    config = EXACT.model_copy(update={"participation_rate": 0.001})  # 4 of 10 shares per 4,000-share bar
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=config) as server:
        client = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
        parent = client.submit_order(_bracket())
        partial = server.advance(_bars(T0 + DAY_NS, AAPL=(100.0, 101.0, 99.0, 100.0, 4000.0)))

        client.cancel_order_by_id(parent.id)
        legs = client.get_order_by_id(parent.id).legs or []

    assert [u["event"] for u in partial] == ["partial_fill"]
    assert [(leg.status, leg.qty) for leg in legs] == [(OrderStatus.NEW, "4")] * 2


# ----------------------------------------------------------------------------- oco and oto


def test_oco_stop_fill_cancels_the_take_profit(server: AlpacaPaperServer, client: TradingClient) -> None:
    client.submit_order(_market("AAPL", 10, OrderSide.BUY))
    server.advance(_bars(T0 + DAY_NS, AAPL=FLAT))
    oco = client.submit_order(
        LimitOrderRequest(symbol="AAPL", qty=10, side=OrderSide.SELL, time_in_force=TimeInForce.GTC,
                          order_class=OrderClass.OCO, take_profit=TakeProfitRequest(limit_price=110),
                          stop_loss=StopLossRequest(stop_price=95, limit_price=94))
    )  # fmt: skip
    [stop] = oco.legs or []

    updates = server.advance(_bars(T0 + 2 * DAY_NS, AAPL=(97.0, 98.0, 93.0, 94.0, 1e6)))

    assert (oco.order_class, oco.type, oco.limit_price, oco.status) == (
        OrderClass.OCO, OrderType.LIMIT, "110", OrderStatus.NEW,
    )  # fmt: skip
    assert (stop.type, stop.side, stop.stop_price, stop.limit_price, stop.status) == (
        OrderType.STOP_LIMIT, OrderSide.SELL, "95", "94", OrderStatus.NEW,
    )  # fmt: skip
    assert _events(updates) == [("fill", stop.client_order_id), ("canceled", oco.client_order_id)]
    assert client.get_all_positions() == []


def test_canceling_an_oco_take_profit_cancels_its_stop(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    oco = client.submit_order(
        LimitOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY,
                          order_class=OrderClass.OCO, take_profit=TakeProfitRequest(limit_price=90),
                          stop_loss=StopLossRequest(stop_price=105))
    )  # fmt: skip

    client.cancel_order_by_id(oco.id)

    orders = client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))
    assert [(o.order_class, o.status) for o in orders] == [
        (OrderClass.OCO, OrderStatus.CANCELED), (OrderClass.OCO, OrderStatus.CANCELED),
    ]  # fmt: skip


def test_oto_exit_is_held_until_the_entry_fills_then_works(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    parent = client.submit_order(
        LimitOrderRequest(symbol="AAPL", qty=3, side=OrderSide.BUY, time_in_force=TimeInForce.GTC,
                          limit_price=100, order_class=OrderClass.OTO,
                          stop_loss=StopLossRequest(stop_price=95))
    )  # fmt: skip
    [stop] = parent.legs or []

    entry = server.advance(_bars(T0 + DAY_NS, AAPL=FLAT))
    exit_ = server.advance(_bars(T0 + 2 * DAY_NS, AAPL=(96.0, 97.0, 94.0, 95.5, 1e6)))

    assert (stop.order_class, stop.type, stop.side, stop.status) == (
        OrderClass.OTO, OrderType.STOP, OrderSide.SELL, OrderStatus.HELD,
    )  # fmt: skip
    assert _events(entry) == [("fill", parent.client_order_id), ("new", stop.client_order_id)]
    assert [(u["event"], u["price"]) for u in exit_] == [("fill", "95")]
    assert client.get_account().cash == str(100_000 - 300 + 285)


# ----------------------------------------------------------------------------- mleg


def test_mleg_limit_waits_for_a_reachable_net_price_then_fills_every_leg_at_once(
    server: AlpacaPaperServer, client: TradingClient, stream: _StreamRunner
) -> None:
    server.set_option_quotes({**QUOTES, CALL_200: (Decimal("0.50"), Decimal("0.60"))})
    order = client.submit_order(_spread(limit_price=1.5, client_order_id="spread"))
    waiting = client.get_order_by_id(order.id)

    updates = server.set_option_quotes(QUOTES)  # net 2.20 − 0.90 = 1.30 ≤ 1.5
    received = stream.take(6)
    positions = {p.symbol: p.qty for p in client.get_all_positions()}
    account = client.get_account()
    filled = client.get_order_by_id(order.id)

    assert (order.order_class, order.symbol, order.side, order.qty, order.limit_price) == (
        OrderClass.MLEG, None, None, "2", "1.5",
    )  # fmt: skip
    legs = order.legs or []
    assert [(leg.symbol, leg.ratio_qty, leg.qty, leg.type, leg.position_intent) for leg in legs] == [
        (CALL_190, "1", "2", None, PositionIntent.BUY_TO_OPEN),
        (CALL_200, "1", "2", None, PositionIntent.SELL_TO_OPEN),
    ]  # fmt: skip
    assert waiting.status == OrderStatus.NEW
    assert [(u["event"], u["order"]["symbol"], u["price"]) for u in updates] == [
        ("fill", CALL_190, "2.2"), ("fill", CALL_200, "0.9"), ("fill", "", "1.3"),
    ]  # fmt: skip
    assert len({u["execution_id"] for u in updates}) == 3
    assert [(e.event, e.order.client_order_id) for e in received[:3]] == [
        ("new", "spread"), ("new", order.legs[0].client_order_id), ("new", order.legs[1].client_order_id),
    ]  # fmt: skip
    assert received[5].order.legs is not None and received[5].execution_id is not None
    assert (filled.status, filled.filled_qty, filled.filled_avg_price) == (OrderStatus.FILLED, "2", "1.3")
    assert positions == {CALL_190: "2", CALL_200: "-2"}
    assert account.cash == "99740"  # 100,000 − 2 × 100 × 2.20 + 2 × 100 × 0.90


@pytest.mark.parametrize(
    ("sides", "limit_price", "fills"),
    [
        ((OrderSide.BUY, OrderSide.SELL), 1.30, True),
        ((OrderSide.BUY, OrderSide.SELL), 1.29, False),
        ((OrderSide.SELL, OrderSide.BUY), -1.00, True),  # a credit of 2.00 − 1.00 = 1.00
        ((OrderSide.SELL, OrderSide.BUY), -1.01, False),
        ((OrderSide.BUY, OrderSide.SELL), None, True),  # market
    ],
)
def test_mleg_fills_on_submit_when_the_net_price_is_at_most_the_limit(
    server: AlpacaPaperServer, client: TradingClient, sides: tuple[OrderSide, OrderSide],
    limit_price: float | None, fills: bool,
) -> None:
    server.set_option_quotes(QUOTES)
    symbols = (CALL_190, CALL_200)
    legs = [OptionLegRequest(symbol=s, ratio_qty=1, side=d) for s, d in zip(symbols, sides, strict=True)]

    order = client.submit_order(_spread(limit_price=limit_price, qty=1, legs=legs))

    status = client.get_order_by_id(order.id).status
    assert status == (OrderStatus.FILLED if fills else OrderStatus.NEW)
    assert len(client.get_all_positions()) == (2 if fills else 0)


def test_day_mleg_expires_with_its_legs_at_the_session_close(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    order = client.submit_order(_spread())

    updates = server.advance(_bars(T0 + DAY_NS, AAPL=FLAT), session_closed=True)

    assert [(u["event"], u["order"]["order_class"]) for u in updates] == [("expired", "mleg")] * 3
    assert client.get_order_by_id(order.id).status == OrderStatus.EXPIRED


def test_canceling_an_mleg_order_cancels_its_legs_and_a_leg_alone_is_refused(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    order = client.submit_order(_spread())
    leg = (order.legs or [])[0]

    with pytest.raises(APIError) as refused:
        client.cancel_order_by_id(leg.id)
    client.cancel_order_by_id(order.id)

    assert refused.value.status_code == 422 and str(order.id) in refused.value.message
    assert [u["event"] for u in server.trade_updates] == ["new"] * 3 + ["canceled"] * 3


# ----------------------------------------------------------------------------- validation


BRACKET = {"symbol": "AAPL", "qty": "10", "side": "buy", "type": "limit", "limit_price": "100",
           "time_in_force": "gtc", "order_class": "bracket"}  # fmt: skip
MLEG_LEGS = [{"symbol": CALL_190, "ratio_qty": "1", "side": "buy"},
             {"symbol": CALL_200, "ratio_qty": "1", "side": "sell"}]  # fmt: skip
MLEG = {"qty": "1", "type": "limit", "limit_price": "1", "time_in_force": "day", "order_class": "mleg",
        "legs": MLEG_LEGS}  # fmt: skip
EXITS = {"take_profit": {"limit_price": "110"}, "stop_loss": {"stop_price": "95"}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**BRACKET, **EXITS, "take_profit": {"limit_price": "90"}}, "must be above"),
        ({**BRACKET, **EXITS, "side": "sell"}, "must be below"),
        ({**BRACKET, **EXITS, "take_profit": {"limit_price": "99"}}, "base price 100"),
        ({**BRACKET, "take_profit": {"limit_price": "110"}}, "need both"),
        ({**BRACKET, **EXITS, "time_in_force": "ioc"}, "day or gtc"),
        ({**BRACKET, **EXITS, "take_profit": {"limit_price": "110.001"}}, "tick"),
        ({**BRACKET, **EXITS, "take_profit": {"limit_price": "abc"}}, "take_profit.limit_price"),
        ({**BRACKET, **EXITS, "order_class": "oto"}, "exactly one"),
        ({**BRACKET, "order_class": "simple", "take_profit": {"limit_price": "110"}}, "order_class bracket"),
        ({**BRACKET, "order_class": "ladder"}, "invalid order_class"),
        ({**MLEG, "legs": MLEG_LEGS[:1]}, "2 to 4 legs, got 1 legs"),
        ({**MLEG, "legs": [{"symbol": s, "ratio_qty": 1, "side": "buy"} for s in
                           (CALL_190, CALL_200, PUT_180, CALL_210, "AAPL240119C00220000")]}, "got 5 legs"),
        ({**MLEG, "legs": [MLEG_LEGS[0], {"symbol": "AAPL240119C00250000", "ratio_qty": 1, "side": "sell"}]},
         "unknown option contract"),
        ({**MLEG, "legs": [MLEG_LEGS[0], {**MLEG_LEGS[1], "symbol": "MSFT"}]}, "not an option"),
        ({**MLEG, "legs": [MLEG_LEGS[0], {**MLEG_LEGS[1], "position_intent": "buy_to_open"}]}, "contradicts"),
        ({**MLEG, "legs": [MLEG_LEGS[0], {**MLEG_LEGS[1], "ratio_qty": "1.5"}]}, "whole number"),
        ({**MLEG, "legs": [MLEG_LEGS[0], MLEG_LEGS[0]]}, "distinct"),
        ({**MLEG, "symbol": "AAPL"}, "no top-level symbol"),
        ({**MLEG, "type": "market"}, "market order takes none"),
        ({**MLEG, "legs": "two"}, "2 to 4 legs"),
    ],
)
def test_bad_order_class_bodies_are_422_and_place_nothing(
    server: AlpacaPaperServer, body: dict[str, Any], message: str
) -> None:
    server.set_option_contracts([CALL_190, CALL_200, PUT_180, CALL_210, "AAPL240119C00220000"])

    answer = _raw(server, "POST", "/v2/orders", json=body)

    assert answer.status_code == 422, answer.text
    assert message in answer.json()["message"]
    assert _raw(server, "GET", "/v2/orders", params={"status": "all"}).json() == []


def test_option_quotes_are_checked(server: AlpacaPaperServer) -> None:
    with pytest.raises(ExecutionError, match="OCC"):
        server.set_option_quotes({"AAPL": (Decimal(1), Decimal(2))})
    with pytest.raises(ExecutionError, match="bid <= ask"):
        server.set_option_quotes({CALL_190: (Decimal(3), Decimal(2))})


# ----------------------------------------------------------------------------- faults


def test_rejected_bracket_rejects_its_legs(server: AlpacaPaperServer, client: TradingClient) -> None:
    server.reject_next_orders(1, "halted")

    answered = client.submit_order(_bracket(client_order_id="r"))

    assert answered.status == OrderStatus.ACCEPTED
    events = [(u["event"], u["order"]["order_class"]) for u in server.trade_updates]
    assert events == [("rejected", "bracket")] * 3
    assert {o.status for o in client.get_orders(GetOrdersRequest(status=QueryOrderStatus.ALL))} == {
        OrderStatus.REJECTED
    }


def test_mleg_submit_lost_to_a_504_is_found_by_client_order_id_with_its_legs(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    client._retry = 0
    server.timeout_after_accept_next(1)

    with pytest.raises(APIError) as unknown:
        client.submit_order(_spread(client_order_id="lost-spread"))
    found = client.get_order_by_client_id("lost-spread")

    assert unknown.value.status_code == 504
    assert (found.order_class, len(found.legs or [])) == (OrderClass.MLEG, 2)


def test_duplicated_leg_events_reach_alpaca_py_twice(
    server: AlpacaPaperServer, client: TradingClient, stream: _StreamRunner
) -> None:
    client.submit_order(_bracket(client_order_id="d"))
    assert stream.next().order.client_order_id == "d"
    server.duplicate_next_events(2)

    server.advance(_bars(T0 + DAY_NS, AAPL=FLAT))
    received = stream.take(4)

    assert [e.event for e in received] == ["fill", "fill", "new", "new"]
    assert received[0].execution_id == received[1].execution_id is not None


# ----------------------------------------------------------------------------- option contracts


def _listed(server: AlpacaPaperServer) -> None:
    server.set_option_contracts(
        [CALL_200, CALL_190, PUT_180, "AAPL240216C00190000", "MSFT240119C00400000",
         ListedOption(OptionContract.from_occ("SPXW240119C04800000"), underlying_symbol="SPX",
                      style="european"),
         ListedOption(OptionContract.from_occ(CALL_210), status="inactive")]
    )  # fmt: skip


def test_option_contracts_filter_like_alpaca(server: AlpacaPaperServer, client: TradingClient) -> None:
    _listed(server)

    def symbols(**filters: Any) -> list[str]:
        answer = client.get_option_contracts(GetOptionContractsRequest(**filters))
        return [contract.symbol for contract in answer.option_contracts or []]

    assert symbols(underlying_symbols=["AAPL"]) == ["AAPL240119C00190000", "AAPL240119C00200000",
                                                    "AAPL240119P00180000", "AAPL240216C00190000"]  # fmt: skip
    assert symbols(underlying_symbols=["AAPL", "MSFT"], type=ContractType.PUT) == [PUT_180]
    assert symbols(expiration_date_gte=date(2024, 2, 1)) == ["AAPL240216C00190000"]
    assert symbols(expiration_date=date(2024, 1, 19), strike_price_gte="195", strike_price_lte="400") == [
        CALL_200, "MSFT240119C00400000",
    ]  # fmt: skip
    assert symbols(underlying_symbols=["SPX"], style=ExerciseStyle.EUROPEAN) == ["SPXW240119C04800000"]
    assert symbols(root_symbol="SPXW") == ["SPXW240119C04800000"]
    assert symbols(status="inactive") == [CALL_210]


def test_option_contracts_page_with_next_page_token(server: AlpacaPaperServer, client: TradingClient) -> None:
    _listed(server)
    pages: list[list[str]] = []
    token: str | None = None

    while True:
        answer = client.get_option_contracts(GetOptionContractsRequest(limit=2, page_token=token))
        pages.append([contract.symbol for contract in answer.option_contracts or []])
        token = answer.next_page_token
        if token is None:
            break

    assert [len(page) for page in pages] == [2, 2, 2]
    assert sum(pages, []) == sorted(sum(pages, []))


def test_option_contract_by_symbol_or_id(server: AlpacaPaperServer, client: TradingClient) -> None:
    _listed(server)

    by_symbol = client.get_option_contract(CALL_190)
    by_id = client.get_option_contract(by_symbol.id)
    with pytest.raises(APIError) as missing:
        client.get_option_contract("AAPL240119C00999000")
    bad_type = _raw(server, "GET", "/v2/options/contracts", params={"type": "straddle"})
    bad_token = _raw(server, "GET", "/v2/options/contracts", params={"page_token": "nope"})

    assert by_id == by_symbol
    assert (by_symbol.type, by_symbol.strike_price, by_symbol.size, by_symbol.expiration_date) == (
        ContractType.CALL, 190.0, "100", date(2024, 1, 19),
    )  # fmt: skip
    assert (by_symbol.root_symbol, by_symbol.underlying_symbol, by_symbol.tradable) == ("AAPL", "AAPL", True)
    assert missing.value.status_code == 404
    assert (bad_type.status_code, bad_token.status_code) == (422, 422)


# ----------------------------------------------------------------------------- activities


def _trade_a_little(server: AlpacaPaperServer, client: TradingClient) -> list[str]:
    """Three fills on day 1, two on day 2; return the fills' execution ids in time order."""
    buy, sell = OrderSide.BUY, OrderSide.SELL
    for symbol, qty, side in (("AAPL", 10, buy), ("MSFT", 2, buy), ("AAPL", 4, sell)):
        client.submit_order(_market(symbol, qty, side))
    server.advance(_bars(T0 + DAY_NS, AAPL=FLAT, MSFT=(300.0, 301.0, 299.0, 300.0, 1e6)))
    server.set_option_quotes(QUOTES)
    client.submit_order(_spread(limit_price=None, qty=1))
    return [u["execution_id"] for u in server.trade_updates if u["event"] in ("fill", "partial_fill")
            and u["order"]["symbol"]]  # fmt: skip


def test_fill_activities_carry_the_trade_update_execution_ids_and_page(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    execution_ids = _trade_a_little(server, client)
    pages: list[list[dict[str, Any]]] = []
    token = None

    while True:
        params = {"direction": "asc", "page_size": 2, **({"page_token": token} if token else {})}
        page = _raw(server, "GET", "/v2/account/activities/FILL", params=params).json()
        if not page:
            break
        pages.append(page)
        token = page[-1]["id"]
    activities = [TradeActivity(**item) for page in pages for item in page]
    newest_first = _raw(server, "GET", "/v2/account/activities").json()

    assert [len(page) for page in pages] == [2, 2, 1]
    assert [a.id for a in activities] == execution_ids
    assert [item["id"] for item in newest_first] == execution_ids[::-1]
    fields = [(a.symbol, a.side, a.qty, a.price, a.cum_qty, a.leaves_qty, a.type.value) for a in activities]
    assert set(fields[:3]) == {
        ("AAPL", OrderSide.BUY, 10, 100, 10, 0, "fill"),
        ("MSFT", OrderSide.BUY, 2, 300, 2, 0, "fill"),
        ("AAPL", OrderSide.SELL, 4, 100, 4, 0, "fill"),
    }  # fmt: skip
    assert {a.symbol for a in activities[3:]} == {CALL_190, CALL_200}


def test_activities_filter_by_date_and_time_and_type(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    _trade_a_little(server, client)

    def count(path: str = "/v2/account/activities", **params: Any) -> int | str:
        answer = _raw(server, "GET", path, params=params)
        return len(answer.json()) if answer.status_code == 200 else f"{answer.status_code}"

    assert count(date="2024-01-03") == 5
    assert count(date="2024-01-02") == 0
    assert count(after="2024-01-03T00:00:00Z", until="2024-01-04T00:00:00Z") == 5
    assert count(until="2024-01-03T00:00:00Z") == 0
    assert count(activity_types="FILL,DIV") == 5
    assert count("/v2/account/activities/DIV") == 0
    assert count("/v2/account/activities/BOGUS") == "422"
    assert count(date="2024-01-03", after="2024-01-02") == "422"
    assert count(page_size=101) == "422"
    assert count(page_token="not-an-id") == "422"
    assert count(direction="sideways") == "422"


# ----------------------------------------------------------------------------- robustness

_ABOVE, _BELOW = st.sampled_from(["101", "105", "110"]), st.sampled_from(["90", "95", "99"])


def _equity_order(
    order_class: str,
    side: str,
    qty: str,
    order_type: str,
    tif: str,
    above: str,
    below: str,
    stop_limit: bool,
    exits: str,
) -> dict[str, Any]:
    """A well-formed simple, bracket, oto or oco body: prices on the right side of 100 for ``side``."""
    long_exit = (side == "sell") if order_class == "oco" else (side == "buy")
    take_profit, stop = (above, below) if long_exit else (below, above)
    body: dict[str, Any] = {
        "symbol": "AAPL", "qty": qty, "side": side, "time_in_force": tif, "order_class": order_class,
        "type": "limit" if order_class == "oco" else order_type,
    }  # fmt: skip
    if body["type"] == "limit" and order_class != "oco":
        body["limit_price"] = "100"
    stop_loss = {"stop_price": stop, **({"limit_price": stop} if stop_limit else {})}
    if order_class in ("bracket", "oco") or (order_class == "oto" and exits == "take_profit"):
        body["take_profit"] = {"limit_price": take_profit}
    if order_class in ("bracket", "oco") or (order_class == "oto" and exits == "stop_loss"):
        body["stop_loss"] = stop_loss
    return body


_LEGS = st.lists(
    st.fixed_dictionaries({"symbol": st.sampled_from([CALL_190, CALL_200, PUT_180]),
                           "ratio_qty": st.sampled_from([1, 2]), "side": st.sampled_from(["buy", "sell"])}),
    min_size=2, max_size=3, unique_by=lambda leg: leg["symbol"],
)  # fmt: skip
_VALID_BODY = st.one_of(
    st.builds(
        _equity_order,
        st.sampled_from(["simple", "bracket", "oto", "oco"]),
        st.sampled_from(["buy", "sell"]),
        st.sampled_from(["1", "5", "10"]),
        st.sampled_from(["market", "limit"]),
        st.sampled_from(["day", "gtc"]),
        _ABOVE,
        _BELOW,
        st.booleans(),
        st.sampled_from(["take_profit", "stop_loss"]),
    ),
    st.fixed_dictionaries({
        "order_class": st.just("mleg"), "qty": st.sampled_from(["1", "3"]), "legs": _LEGS,
        "type": st.just("limit"), "limit_price": st.sampled_from(["-1.2", "0.5", "1.3", "2.5"]),
        "time_in_force": st.sampled_from(["day", "gtc"]),
    }),
)  # fmt: skip
_BAD_VALUE = st.sampled_from([None, 0, -1, "abc", "1e20", "nan", [1], {"a": 1}, True, "", "week", 7])
_MUTATION = st.tuples(
    st.sampled_from([
        "order_class", "symbol", "qty", "notional", "side", "type", "time_in_force", "limit_price",
        "stop_price", "take_profit", "stop_loss", "legs", "position_intent", "client_order_id",
    ]),
    _BAD_VALUE,
)  # fmt: skip
_BARS = st.lists(
    st.sampled_from([FLAT, (105.0, 111.0, 104.0, 110.0, 1e6), (97.0, 98.0, 90.0, 92.0, 1e6),
                     (105.0, 112.0, 94.0, 96.0, 1e6), (112.0, 113.0, 90.0, 95.0, 1e6)]),
    min_size=1, max_size=3,
)  # fmt: skip


CREDIT_QUOTES = {PUT_180: (Decimal("0.40"), Decimal("0.45")), CALL_200: (Decimal("1.5"), Decimal("1.6"))}
OPEN = ("new", "held", "accepted", "partially_filled")


def _mutated(body: dict[str, Any], mutation: tuple[str, Any] | None) -> dict[str, Any]:
    return body if mutation is None else {**body, mutation[0]: mutation[1]}


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    bodies=st.lists(st.builds(_mutated, _VALID_BODY, st.none() | _MUTATION), min_size=1, max_size=4),
    bars=_BARS,
    credit=st.booleans(),
)
def test_any_order_body_is_answered_with_a_4xx_or_works_and_the_book_stays_consistent(
    bodies: list[dict[str, Any]], bars: list[tuple[float, ...]], credit: bool
) -> None:
    server = AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT)
    server.advance(_bars(T0, AAPL=FLAT))
    server.set_option_quotes(QUOTES)
    statuses = []

    for body in bodies:
        try:
            statuses.append(server.handle("POST", "/v2/orders", {}, body)[0])
        except PaperApiError as exc:
            statuses.append(exc.status)
    for k, bar in enumerate(bars, start=1):
        server.advance(_bars(T0 + k * DAY_NS, AAPL=bar))
        if credit:
            server.set_option_quotes(CREDIT_QUOTES)
    server.handle("DELETE", "/v2/orders", {}, None)
    _, orders = server.handle("GET", "/v2/orders", {"status": "all", "nested": "true", "limit": "500"}, None)
    _, activities = server.handle("GET", "/v2/account/activities", {}, None)

    assert all(status == 200 or 400 <= status < 500 for status in statuses), statuses
    assert all(u["execution_id"] for u in server.trade_updates if u["event"] in ("fill", "partial_fill"))
    members = [order for parent in orders for order in (parent, *(parent["legs"] or []))]
    assert not [order["id"] for order in members if order["status"] in OPEN]
    filled = {order["id"]: Decimal(order["filled_qty"]) for order in members if order["symbol"]}
    booked: dict[str, Decimal] = {}
    for activity in activities:
        booked[activity["order_id"]] = booked.get(activity["order_id"], Decimal(0)) + Decimal(activity["qty"])
    assert {k: v for k, v in filled.items() if v} == booked
    for parent in orders:  # an exit pair never fills both, an mleg order fills all legs or none
        legs = parent["legs"] or []
        if parent["order_class"] == "bracket":
            assert sum(leg["status"] == "filled" for leg in legs) <= 1
        if parent["order_class"] == "oco":
            assert sum(order["status"] == "filled" for order in (parent, *legs)) <= 1
        if parent["order_class"] == "mleg":
            assert len({leg["status"] for leg in legs} | {parent["status"]}) == 1
