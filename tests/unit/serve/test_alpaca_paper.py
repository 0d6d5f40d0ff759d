"""AlpacaPaperServer: the real alpaca-py TradingClient and TradingStream trade against it unchanged."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from collections.abc import Iterator
from datetime import date
from typing import Any

import msgpack
import numpy as np
import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient
from alpaca.trading.enums import OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import TradeUpdate
from alpaca.trading.requests import (
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
    ReplaceOrderRequest,
)
from alpaca.trading.stream import TradingStream
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from amcp.config import AccountConfig, SlippageConfig, VenueConfig
from amcp.domain.data import BarBatch
from amcp.errors import ExecutionError
from serve.alpaca_paper import AlpacaPaperServer

KEY, SECRET = "test-key", "test-secret"
DAY_NS = 86_400 * 10**9
T0 = 1_704_229_200 * 10**9  # 2024-01-02 16:00 New York: the close of a session
EXACT = VenueConfig(participation_rate=None, slippage=SlippageConfig(model="none"))


def _bars(ts_ns: int, **bars: tuple[float, float, float, float, float]) -> BarBatch:
    """One batch closing at ``ts_ns``: ``AAPL=(open, high, low, close, volume)``."""
    symbols = tuple(bars)
    columns = np.array([bars[s] for s in symbols], dtype=np.float64).T
    return BarBatch(ts_ns, symbols, *(np.ascontiguousarray(column) for column in columns))


@pytest.fixture
def server() -> Iterator[AlpacaPaperServer]:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as running:
        yield running


@pytest.fixture
def client(server: AlpacaPaperServer) -> TradingClient:
    trading = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
    trading._retry_wait = 0  # alpaca-py sleeps 3 s between its own retries; the test needs none
    return trading


class _StreamRunner:
    """alpaca-py's TradingStream in a thread; received updates land in a queue."""

    def __init__(self, server: AlpacaPaperServer) -> None:
        self.server = server
        self.updates: queue.Queue[TradeUpdate] = queue.Queue()
        self.stream = TradingStream(KEY, SECRET, paper=True, url_override=server.ws_url)

        async def on_update(update: TradeUpdate) -> None:
            self.updates.put(update)

        self.stream.subscribe_trade_updates(on_update)
        self.thread = threading.Thread(target=self.stream.run, daemon=True)
        self.thread.start()

    def next(self) -> TradeUpdate:
        return self.updates.get(timeout=5)

    def take(self, count: int) -> list[TradeUpdate]:
        return [self.next() for _ in range(count)]

    def stop(self) -> None:
        if self.stream._loop is not None and self.stream._loop.is_running():
            self.stream.stop()
        self.server.drop_stream()  # wakes the client's blocked recv so it sees the stop at once
        self.thread.join(5)


@pytest.fixture
def stream(server: AlpacaPaperServer) -> Iterator[_StreamRunner]:
    runner = _StreamRunner(server)
    assert server.wait_stream_listening(1, timeout_s=5)
    yield runner
    runner.stop()


def _market(
    symbol: str = "AAPL", qty: float = 10, side: OrderSide = OrderSide.BUY, **extra: Any
) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=side, time_in_force=TimeInForce.DAY, **extra)


def _limit(
    symbol: str, qty: float, limit_price: float, tif: TimeInForce = TimeInForce.GTC, **extra: Any
) -> LimitOrderRequest:
    extra.setdefault("side", OrderSide.BUY)
    return LimitOrderRequest(symbol=symbol, qty=qty, time_in_force=tif, limit_price=limit_price, **extra)


def _raw(server: AlpacaPaperServer, method: str, path: str, **kwargs: Any) -> requests.Response:
    headers = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": SECRET}
    return requests.request(method, server.url + path, headers=headers, timeout=5, **kwargs)


# ----------------------------------------------------------------------------- REST


def test_account_reports_starting_cash_and_reg_t_buying_power(client: TradingClient) -> None:
    account = client.get_account()

    assert (account.cash, account.equity, account.buying_power) == ("100000", "100000", "200000")
    assert (account.multiplier, account.shorting_enabled, account.status.value) == ("2", True, "ACTIVE")


def test_market_and_limit_orders_fill_on_the_next_bar_in_rest_and_stream(
    server: AlpacaPaperServer, client: TradingClient, stream: _StreamRunner
) -> None:
    market = client.submit_order(_market(qty=10, client_order_id="m-1"))
    limit = client.submit_order(
        _limit("AAPL", 5, 99.5)
    )
    server.advance(_bars(T0 + DAY_NS, AAPL=(100.0, 101.0, 99.0, 100.5, 1e6)))

    events = stream.take(4)
    orders = {order.client_order_id: order for order in client.get_orders(GetOrdersRequest(status="all"))}
    [position] = client.get_all_positions()
    account = client.get_account()

    assert (market.status, limit.status) == (OrderStatus.NEW, OrderStatus.NEW)
    assert [(e.event, e.order.client_order_id) for e in events] == [
        ("new", "m-1"), ("new", limit.client_order_id), ("fill", "m-1"), ("fill", limit.client_order_id),
    ]  # fmt: skip
    assert [(e.qty, e.price, e.position_qty) for e in events[2:]] == [(10.0, 100.0, 10.0), (5.0, 99.5, 15.0)]
    assert events[2].execution_id is not None and events[2].execution_id != events[3].execution_id
    assert (orders["m-1"].status, orders["m-1"].filled_qty, orders["m-1"].filled_avg_price) == (
        OrderStatus.FILLED, "10", "100",
    )  # fmt: skip
    assert orders[limit.client_order_id].filled_avg_price == "99.5"
    assert (position.symbol, position.qty, position.avg_entry_price, position.current_price) == (
        "AAPL", "15", "99.8333333333", "100.5",
    )  # fmt: skip
    assert account.cash == str(100_000 - 1000 - 497.5)


def test_duplicate_client_order_id_is_refused_422_and_one_order_exists(client: TradingClient) -> None:
    client.submit_order(_market(client_order_id="dup-1"))

    with pytest.raises(APIError) as refused:
        client.submit_order(_market(qty=99, client_order_id="dup-1"))

    assert refused.value.status_code == 422
    assert "dup-1" in refused.value.message
    [order] = client.get_orders(GetOrdersRequest(status="all"))
    assert (order.client_order_id, order.qty) == ("dup-1", "10")


def test_504_after_accept_raises_but_the_order_is_found_by_client_order_id(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    client._retry = 0  # see the answer itself, not alpaca-py's retry of it
    server.timeout_after_accept_next(1)

    with pytest.raises(APIError) as unknown:
        client.submit_order(_market(qty=7, client_order_id="lost-ack"))
    found = client.get_order_by_client_id("lost-ack")

    assert unknown.value.status_code == 504
    assert (found.qty, found.status) == ("7", OrderStatus.NEW)
    assert len(client.get_orders(GetOrdersRequest(status="all"))) == 1


def test_alpaca_py_retry_after_504_is_refused_as_duplicate_when_client_order_id_is_set(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    server.timeout_after_accept_next(1)

    with pytest.raises(APIError) as refused:
        client.submit_order(_market(client_order_id="retried"))

    posts = [record.status for record in server.requests if record.method == "POST"]
    assert posts == [504, 422]
    assert refused.value.status_code == 422
    assert len(client.get_orders(GetOrdersRequest(status="all"))) == 1


def test_alpaca_py_retry_after_504_without_client_order_id_places_a_second_order(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    server.timeout_after_accept_next(1)

    second = client.submit_order(_market())

    assert [record.status for record in server.requests if record.method == "POST"] == [504, 200]
    orders = client.get_orders(GetOrdersRequest(status="all"))
    assert len(orders) == 2 and second.id in {order.id for order in orders}


def test_429_is_retried_by_alpaca_py_then_succeeds(server: AlpacaPaperServer, client: TradingClient) -> None:
    server.fail_next(1, 429, {"Retry-After": "0", "X-RateLimit-Reset": "0"}, match="GET /v2/account")

    account = client.get_account()

    assert account.cash == "100000"
    assert [(r.path, r.status) for r in server.requests] == [("/v2/account", 429), ("/v2/account", 200)]


def test_injected_500_changes_nothing_and_carries_headers(server: AlpacaPaperServer) -> None:
    server.fail_next(1, 503, {"Retry-After": "2"})

    answer = _raw(server, "POST", "/v2/orders", json={"symbol": "AAPL", "qty": 1, "side": "buy",
                                                      "type": "market", "time_in_force": "day"})

    assert (answer.status_code, answer.headers["Retry-After"], answer.json()["code"]) == (503, "2", 50300000)
    assert _raw(server, "GET", "/v2/orders", params={"status": "all"}).json() == []


def test_cancel_makes_the_order_canceled_and_a_second_cancel_is_422(
    server: AlpacaPaperServer, client: TradingClient, stream: _StreamRunner
) -> None:
    order = client.submit_order(
        _limit("AAPL", 3, 90, TimeInForce.DAY)
    )
    client.cancel_order_by_id(order.id)
    with pytest.raises(APIError) as again:
        client.cancel_order_by_id(order.id)
    server.advance(_bars(T0 + DAY_NS, AAPL=(100.0, 101.0, 80.0, 100.5, 1e6)))

    assert [e.event for e in stream.take(2)] == ["new", "canceled"]
    assert client.get_order_by_id(order.id).status == OrderStatus.CANCELED
    assert again.value.status_code == 422
    assert client.get_all_positions() == []


def test_replace_creates_a_new_order_and_the_old_one_is_replaced(
    server: AlpacaPaperServer, client: TradingClient, stream: _StreamRunner
) -> None:
    old = client.submit_order(
        _limit("AAPL", 3, 90)
    )
    change = ReplaceOrderRequest(qty=4, limit_price=99, client_order_id="r-2")
    new = client.replace_order_by_id(old.id, change)
    server.advance(_bars(T0 + DAY_NS, AAPL=(100.0, 101.0, 98.0, 100.5, 1e6)))

    events = stream.take(4)
    old_after = client.get_order_by_id(old.id)
    new_after = client.get_order_by_id(new.id)

    assert [(e.event, str(e.order.id)) for e in events] == [
        ("new", str(old.id)), ("replaced", str(old.id)), ("new", str(new.id)), ("fill", str(new.id)),
    ]  # fmt: skip
    assert (old_after.status, old_after.replaced_by) == (OrderStatus.REPLACED, new.id)
    assert (new_after.replaces, new_after.client_order_id, new_after.filled_qty) == (old.id, "r-2", "4")
    assert new_after.filled_avg_price == "99"


def test_cancel_all_answers_multi_status_and_cancels_every_open_order(client: TradingClient) -> None:
    ids = {
        client.submit_order(
            _limit(s, 1, 10)
        ).id
        for s in ("AAPL", "MSFT")
    }

    answers = client.cancel_orders()

    assert {answer.id for answer in answers} == ids
    assert {answer.status for answer in answers} == {200}
    assert {o.status for o in client.get_orders(GetOrdersRequest(status="all"))} == {OrderStatus.CANCELED}
    assert client.get_orders() == []


def test_order_validation_errors_are_alpaca_4xx_bodies(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    base = {"symbol": "AAPL", "side": "buy", "type": "limit", "time_in_force": "day", "limit_price": "10"}

    zero_qty = _raw(server, "POST", "/v2/orders", json={**base, "qty": "0"})
    sub_penny = _raw(server, "POST", "/v2/orders", json={**base, "qty": "1", "limit_price": "10.001"})
    bad_tif = _raw(server, "POST", "/v2/orders", json={**base, "qty": "1", "time_in_force": "week"})
    too_big = _raw(server, "POST", "/v2/orders", json={**base, "qty": "30000"})
    unknown = _raw(server, "GET", "/v2/orders/5d6f1c0e-8a8e-4f7e-9a43-1b2c3d4e5f60")
    no_auth = requests.get(server.url + "/v2/account", timeout=5)

    assert (zero_qty.status_code, zero_qty.json()["code"]) == (422, 40010001)
    assert "qty must be > 0" in zero_qty.json()["message"]
    assert sub_penny.status_code == 422 and "tick" in sub_penny.json()["message"]
    assert bad_tif.status_code == 422 and "'week'" in bad_tif.json()["message"]
    assert (too_big.status_code, too_big.json()["code"]) == (403, 40310000)
    assert too_big.json()["cost_basis"] == "300000" and too_big.json()["buying_power"] == "200000"
    assert (unknown.status_code, no_auth.status_code) == (404, 401)
    assert client.get_orders(GetOrdersRequest(status="all")) == []


def test_open_buy_orders_reserve_buying_power(server: AlpacaPaperServer, client: TradingClient) -> None:
    client.submit_order(
        _limit("AAPL", 1500, 100)
    )

    with pytest.raises(APIError) as refused:
        client.submit_order(
            _limit("MSFT", 600, 100)
        )

    assert refused.value.status_code == 403
    assert client.get_account().buying_power == "50000"


def test_cash_account_cannot_sell_short() -> None:
    with AlpacaPaperServer(start_ts_ns=T0, account_config=AccountConfig(account_type="cash")) as server:
        client = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
        with pytest.raises(APIError) as refused:
            client.submit_order(_market(side=OrderSide.SELL))

    assert refused.value.status_code == 403
    assert "available: 0" in refused.value.message


def test_get_orders_filters_by_status_symbols_side_and_limit(
    server: AlpacaPaperServer, client: TradingClient
) -> None:
    client.submit_order(_market("AAPL", client_order_id="a"))
    client.submit_order(_market("MSFT", client_order_id="b"))
    client.submit_order(
        _limit("MSFT", 1, 500, side=OrderSide.SELL, client_order_id="c")
    )
    server.advance(
        _bars(T0 + DAY_NS, AAPL=(100.0, 101.0, 99.0, 100.5, 1e6), MSFT=(300.0, 301.0, 299.0, 300.0, 1e6))
    )

    def ids(**filters: Any) -> list[str]:
        return [order.client_order_id for order in client.get_orders(GetOrdersRequest(**filters))]

    assert ids() == ["c"]
    assert ids(status=QueryOrderStatus.CLOSED) == ["b", "a"]
    assert ids(status=QueryOrderStatus.ALL, direction="asc") == ["a", "b", "c"]
    assert ids(status=QueryOrderStatus.ALL, symbols=["MSFT"], side=OrderSide.BUY) == ["b"]
    assert ids(status=QueryOrderStatus.ALL, limit=1) == ["c"]


def test_day_order_expires_when_the_session_closes(server: AlpacaPaperServer, client: TradingClient) -> None:
    order = client.submit_order(
        _limit("AAPL", 1, 50, TimeInForce.DAY)
    )

    updates = server.advance(_bars(T0 + DAY_NS, AAPL=(100.0, 101.0, 99.0, 100.5, 1e6)), session_closed=True)

    assert [u["event"] for u in updates] == ["expired"]
    assert client.get_order_by_id(order.id).status == OrderStatus.EXPIRED


def test_rejected_by_the_exchange_after_acceptance(server: AlpacaPaperServer, client: TradingClient) -> None:
    server.reject_next_orders(1, "halted")

    answered = client.submit_order(_market(client_order_id="x"))

    assert answered.status == OrderStatus.ACCEPTED
    assert client.get_order_by_client_id("x").status == OrderStatus.REJECTED
    assert [u["event"] for u in server.trade_updates] == ["rejected"]


def test_positions_clock_calendar_and_assets(server: AlpacaPaperServer, client: TradingClient) -> None:
    client.submit_order(_market(side=OrderSide.SELL, qty=4))
    server.advance(_bars(T0 + DAY_NS, AAPL=(100.0, 101.0, 99.0, 102.0, 1e6)))
    server.advance_clock(T0 + DAY_NS + 17 * 3_600 * 10**9 + 30 * 60 * 10**9)  # Thursday 09:30 New York

    position = client.get_open_position("AAPL")
    clock = client.get_clock()
    days = client.get_calendar(GetCalendarRequest(start=date(2023, 11, 22), end=date(2023, 11, 27)))
    with pytest.raises(APIError) as missing:
        client.get_open_position("MSFT")

    assert (position.side.value, position.qty, position.market_value, position.unrealized_pl) == (
        "short", "-4", "-408", "-8",
    )  # fmt: skip
    assert clock.is_open and clock.next_close.isoformat() == "2024-01-04T16:00:00-05:00"
    assert [(d.date.isoformat(), d.close.strftime("%H:%M")) for d in days] == [
        ("2023-11-22", "16:00"), ("2023-11-24", "13:00"), ("2023-11-27", "16:00"),
    ]  # fmt: skip
    assert client.get_asset("AAPL").symbol == "AAPL"
    assert missing.value.status_code == 404


def test_simulated_time_only_moves_forward(server: AlpacaPaperServer) -> None:
    with pytest.raises(ExecutionError, match="forward"):
        server.advance(_bars(T0 - DAY_NS, AAPL=(1.0, 1.0, 1.0, 1.0, 1.0)))


# ----------------------------------------------------------------------------- stream


def test_stream_drop_then_alpaca_py_reconnects_and_gets_later_events(
    server: AlpacaPaperServer, client: TradingClient, stream: _StreamRunner
) -> None:
    client.submit_order(_market(client_order_id="before"))
    assert stream.next().order.client_order_id == "before"

    assert server.drop_stream() == 1
    assert server.wait_stream_listening(1, timeout_s=10)
    client.submit_order(_market(client_order_id="after"))

    assert stream.next().order.client_order_id == "after"
    assert (server.stream_connections, server.stream_listens) == (2, 2)


def test_duplicated_events_are_delivered_twice(
    server: AlpacaPaperServer, client: TradingClient, stream: _StreamRunner
) -> None:
    server.duplicate_next_events(1)
    client.submit_order(_market(client_order_id="twice"))
    client.submit_order(_market(client_order_id="once"))

    received = [e.order.client_order_id for e in stream.take(3)]

    assert received == ["twice", "twice", "once"]
    assert stream.updates.empty()


def test_reordered_events_arrive_reversed(
    server: AlpacaPaperServer, client: TradingClient, stream: _StreamRunner
) -> None:
    server.reorder_next_events(2)
    client.submit_order(_market(client_order_id="o-1"))
    server.advance(_bars(T0 + DAY_NS, AAPL=(100.0, 101.0, 99.0, 100.5, 1e6)))

    assert [e.event for e in stream.take(2)] == ["fill", "new"]


def test_paused_stream_loses_events_that_rest_still_shows(
    server: AlpacaPaperServer, client: TradingClient, stream: _StreamRunner
) -> None:
    server.pause_stream()
    client.submit_order(_market(client_order_id="silent"))
    server.advance(_bars(T0 + DAY_NS, AAPL=(100.0, 101.0, 99.0, 100.5, 1e6)))
    server.resume_stream()
    client.submit_order(_market(client_order_id="heard"))

    assert stream.next().order.client_order_id == "heard"
    assert client.get_order_by_client_id("silent").status == OrderStatus.FILLED
    assert [u["event"] for u in server.trade_updates] == ["new", "fill", "new"]


def test_stream_refuses_a_wrong_secret_and_listen_before_auth(server: AlpacaPaperServer) -> None:
    with connect(server.ws_url, open_timeout=5) as ws:
        ws.send(json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}}))
        early = json.loads(ws.recv(timeout=5))
        ws.send(json.dumps({"action": "authenticate", "data": {"key_id": KEY, "secret_key": "wrong"}}))
        refused = json.loads(ws.recv(timeout=5))
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)

    assert early["data"]["status"] == "unauthorized"
    assert refused["stream"] == "authorization"
    assert refused["data"] == {"action": "authenticate", "status": "unauthorized"}


def test_msgpack_client_gets_msgpack_trade_updates(server: AlpacaPaperServer, client: TradingClient) -> None:
    with connect(server.ws_url, open_timeout=5) as ws:
        ws.send(msgpack.packb({"action": "authenticate", "data": {"key_id": KEY, "secret_key": SECRET}}))
        authorized = msgpack.unpackb(ws.recv(timeout=5))
        ws.send(msgpack.packb({"action": "listen", "data": {"streams": ["trade_updates", "bogus"]}}))
        listening = msgpack.unpackb(ws.recv(timeout=5))
        client.submit_order(_market(client_order_id="mp"))
        update = msgpack.unpackb(ws.recv(timeout=5))

    assert authorized["data"]["status"] == "authorized"
    assert listening == {"stream": "listening", "data": {"streams": ["trade_updates"]}}
    assert (update["stream"], update["data"]["event"], update["data"]["order"]["client_order_id"]) == (
        "trade_updates", "new", "mp",
    )  # fmt: skip


def test_fault_arguments_are_checked(server: AlpacaPaperServer) -> None:
    with pytest.raises(ExecutionError, match="400-599"):
        server.fail_next(1, 200)
    with pytest.raises(ExecutionError, match="count"):
        server.duplicate_next_events(-1)


@pytest.fixture(autouse=True)
def _no_leaked_event_loop() -> Iterator[None]:
    yield
    asyncio.set_event_loop(None)
