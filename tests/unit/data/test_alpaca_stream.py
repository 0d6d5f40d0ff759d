"""AlpacaStreamServer speaks Alpaca's stream protocol to plain websocket clients and to alpaca-py."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
import pytest
from alpaca.data.live.stock import StockDataStream
from alpaca.data.models import Bar as AlpacaBar
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from amcp.errors import DataError
from amcp.testing.alpaca_stream import AlpacaStreamServer

KEY, SECRET = "test-key", "test-secret"
TS_NS = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z


@pytest.fixture
def server() -> Iterator[AlpacaStreamServer]:
    with AlpacaStreamServer(KEY, SECRET) as running:
        yield running


@contextmanager
def _json_client(server: AlpacaStreamServer) -> Iterator[ClientConnection]:
    with connect(server.url + "/v2/iex", open_timeout=5) as client:
        assert json.loads(client.recv(timeout=5)) == [{"T": "success", "msg": "connected"}]
        yield client


def _recv_json(client: ClientConnection) -> list[dict[str, Any]]:
    return json.loads(client.recv(timeout=5))


def _login(client: ClientConnection, key: str = KEY, secret: str = SECRET) -> list[dict[str, Any]]:
    client.send(json.dumps({"action": "auth", "key": key, "secret": secret}))
    return _recv_json(client)


def test_json_client_logs_in_subscribes_and_gets_rfc3339_trades(server: AlpacaStreamServer) -> None:
    with _json_client(server) as client:
        assert _login(client) == [{"T": "success", "msg": "authenticated"}]
        client.send(json.dumps({"action": "subscribe", "trades": ["AAPL"], "bars": ["MSFT"]}))
        [reply] = _recv_json(client)

        sent_to = server.publish_trade("AAPL", TS_NS, 189.25, 100.0, trade_id=42, exchange="V")
        [trade] = _recv_json(client)

    assert reply["T"] == "subscription"
    assert (reply["trades"], reply["bars"], reply["quotes"]) == (["AAPL"], ["MSFT"], [])
    assert sent_to == 1
    assert trade == {
        "T": "t", "S": "AAPL", "i": 42, "x": "V", "p": 189.25, "s": 100.0, "c": ["@"], "z": "C",
        "t": "2023-11-14T22:13:20.123456789Z",
    }  # fmt: skip


def test_wrong_secret_is_refused_with_402_and_closed(server: AlpacaStreamServer) -> None:
    with _json_client(server) as client:
        reply = _login(client, secret="wrong")
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)

    assert reply == [{"T": "error", "code": 402, "msg": "auth failed"}]
    assert (server.auths, server.auth_failures) == (0, 1)


def test_subscribe_before_login_is_refused_with_401(server: AlpacaStreamServer) -> None:
    with _json_client(server) as client:
        client.send(json.dumps({"action": "subscribe", "bars": ["AAPL"]}))
        reply = _recv_json(client)

    assert reply == [{"T": "error", "code": 401, "msg": "not authenticated"}]


def test_unknown_channel_is_invalid_syntax_and_subscribes_nothing(server: AlpacaStreamServer) -> None:
    with _json_client(server) as client:
        _login(client)
        client.send(json.dumps({"action": "subscribe", "candles": ["AAPL"]}))
        reply = _recv_json(client)

        assert server.publish_bar("AAPL", TS_NS, 1.0, 1.0, 1.0, 1.0, 1.0) == 0
    assert reply == [{"T": "error", "code": 400, "msg": "invalid syntax"}]


def test_data_goes_only_to_subscribers_of_that_symbol_and_channel(server: AlpacaStreamServer) -> None:
    with _json_client(server) as client:
        _login(client)
        client.send(json.dumps({"action": "subscribe", "quotes": ["AAPL"]}))
        _recv_json(client)
        client.send(json.dumps({"action": "unsubscribe", "quotes": ["AAPL"]}))
        [after_unsubscribe] = _recv_json(client)

        counts = (
            server.publish_quote("AAPL", TS_NS, 1.0, 1.0, 2.0, 1.0),
            server.publish_bar("AAPL", TS_NS, 1.0, 1.0, 1.0, 1.0, 1.0),
        )
    assert after_unsubscribe["quotes"] == []
    assert counts == (0, 0)


def test_msgpack_client_gets_binary_frames_with_nanosecond_timestamps(server: AlpacaStreamServer) -> None:
    msgpack_header = {"Content-Type": "application/msgpack"}
    with connect(server.url, additional_headers=msgpack_header, open_timeout=5) as client:
        connected = msgpack.unpackb(client.recv(timeout=5))
        client.send(msgpack.packb({"action": "auth", "key": KEY, "secret": SECRET}))
        client.recv(timeout=5)
        client.send(msgpack.packb({"action": "subscribe", "bars": ["*"]}))
        client.recv(timeout=5)
        server.publish_bar("SPY", TS_NS, 450.5, 451.0, 450.0, 450.75, 1_000.0, vwap=450.6, trade_count=7)
        frame = client.recv(timeout=5)

    [bar] = msgpack.unpackb(frame)
    assert connected == [{"T": "success", "msg": "connected"}]
    assert isinstance(frame, bytes)
    assert bar["t"].to_unix_nano() == TS_NS
    assert (bar["S"], bar["o"], bar["h"], bar["l"], bar["c"], bar["v"], bar["vw"], bar["n"]) == (
        "SPY", 450.5, 451.0, 450.0, 450.75, 1_000.0, 450.6, 7,
    )  # fmt: skip


def test_rejected_handshake_gets_503_then_the_next_one_connects(server: AlpacaStreamServer) -> None:
    server.reject_connections(1)

    with pytest.raises(InvalidStatus) as refused, connect(server.url, open_timeout=5):
        pass
    with _json_client(server):
        pass

    assert refused.value.response.status_code == 503
    assert (server.rejected, server.connections) == (1, 1)


def test_drop_all_connections_closes_the_socket_and_forgets_subscriptions(server: AlpacaStreamServer) -> None:
    with _json_client(server) as client:
        _login(client)
        client.send(json.dumps({"action": "subscribe", "bars": ["AAPL"]}))
        _recv_json(client)

        dropped = server.drop_all_connections()
        with pytest.raises(ConnectionClosed):
            client.recv(timeout=5)

    assert dropped == 1
    assert server.wait_subscribed(["AAPL"], timeout_s=0.05) is False


def test_publish_raw_rejects_unknown_channel(server: AlpacaStreamServer) -> None:
    with pytest.raises(DataError, match="candles"):
        server.publish_raw("candles", "AAPL", [{"T": "b"}])


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(DataError, match="not started"):
        _ = AlpacaStreamServer().url


def test_real_alpaca_stock_stream_parses_our_bar_into_its_model(server: AlpacaStreamServer) -> None:
    received: list[Any] = []
    arrived = threading.Event()

    async def on_bar(bar: Any) -> None:
        received.append(bar)
        arrived.set()

    stream = StockDataStream(KEY, SECRET, url_override=server.url)
    stream.subscribe_bars(on_bar, "AAPL")
    thread = threading.Thread(target=lambda: asyncio.run(stream._run_forever()), daemon=True)
    thread.start()
    try:
        assert server.wait_subscribed(["AAPL"], timeout_s=5, channel="bars")
        server.publish_bar("AAPL", TS_NS, 189.1, 189.5, 188.9, 189.2, 12_000.0, vwap=189.3, trade_count=55)
        arrived.wait(5)
    finally:
        loop = stream._loop
        asyncio.run_coroutine_threadsafe(stream.stop_ws(), loop).result(5)
        asyncio.run_coroutine_threadsafe(stream.close(), loop).result(5)
        thread.join(5)

    [bar] = received
    assert isinstance(bar, AlpacaBar)
    assert (bar.symbol, bar.open, bar.high, bar.low, bar.close, bar.volume, bar.vwap, bar.trade_count) == (
        "AAPL", 189.1, 189.5, 188.9, 189.2, 12_000.0, 189.3, 55,
    )  # fmt: skip
    assert bar.timestamp.isoformat() == "2023-11-14T22:13:20.123456+00:00"
