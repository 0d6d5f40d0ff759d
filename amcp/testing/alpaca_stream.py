"""An in-process server that speaks Alpaca's market-data stream protocol, for tests and demos.

The real ``alpaca-py`` clients (``StockDataStream``, ``OptionDataStream``) run against it
unchanged through their ``url_override`` argument::

    with AlpacaStreamServer(api_key="k", secret_key="s") as server:
        stream = StockDataStream("k", "s", url_override=server.url)
        ...
        server.wait_subscribed(["AAPL"], channel="bars")
        server.publish_bar("AAPL", ts_ns, 189.1, 189.5, 188.9, 189.2, 12_000.0)

Protocol (https://docs.alpaca.markets/docs/streaming-market-data): every frame is a list of
messages. On connect the server sends ``[{"T": "success", "msg": "connected"}]``; an
``{"action": "auth", "key", "secret"}`` message is answered with ``authenticated`` or error 402
(and the connection is closed); ``subscribe`` / ``unsubscribe`` with channel lists
(``trades``, ``quotes``, ``bars``, ...) are answered with the client's whole subscription.
Market data uses Alpaca's short field names. A client that sends the header
``Content-Type: application/msgpack`` (alpaca-py always does) gets msgpack binary frames with
timestamps as msgpack Timestamps (nanosecond precision); any other client gets JSON text frames
with RFC-3339 timestamp strings.

The server runs its own asyncio loop in a daemon thread; the ``publish_*`` methods are called
from the test's thread and return once the frame has been handed to every subscribed client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from types import TracebackType
from typing import Any

import msgpack
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from amcp.errors import DataError
from amcp.testing.ws_server import CALL_TIMEOUT_S, ThreadedWebsocketServer

log = logging.getLogger(__name__)

CHANNELS: tuple[str, ...] = ("trades", "quotes", "bars", "updatedBars", "dailyBars", "statuses", "lulds")
"""Subscription channels the server accepts (Alpaca's names)."""

"""How long a test-thread call waits for the server loop before giving up."""


def _rfc3339(ts: msgpack.Timestamp) -> str:
    """Format a msgpack timestamp as Alpaca's JSON does: RFC-3339, UTC, nanosecond digits."""
    whole = datetime.fromtimestamp(ts.seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{ts.nanoseconds:09d}Z"


def _json_default(value: Any) -> Any:
    if isinstance(value, msgpack.Timestamp):
        return _rfc3339(value)
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


@dataclass(eq=False)
class _Client:
    """One connected websocket and its protocol state (touched only under the server's lock)."""

    connection: ServerConnection
    binary: bool
    authenticated: bool = False
    subscriptions: dict[str, set[str]] = field(
        default_factory=lambda: {channel: set() for channel in CHANNELS}
    )

    def wants(self, channel: str, symbol: str) -> bool:
        symbols = self.subscriptions.get(channel, set())
        return symbol in symbols or "*" in symbols


class AlpacaStreamServer(ThreadedWebsocketServer):
    """A fake Alpaca market-data websocket (stocks or options: the protocol is the same).

    Args:
        api_key: the key a client must authenticate with.
        secret_key: the secret a client must authenticate with.
        host: interface to listen on.
        port: TCP port; 0 picks a free one (read it back from :attr:`url`).

    Raises:
        DataError: from :meth:`start` if the server cannot listen.
    """

    error = DataError
    label = "AlpacaStreamServer"

    def __init__(
        self,
        api_key: str = "test-key",
        secret_key: str = "test-secret",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self._api_key = api_key
        self._secret_key = secret_key
        self._clients: set[_Client] = set()
        self._reject_remaining = 0
        self._connections = 0
        self._auths = 0
        self._auth_failures = 0
        self._rejected = 0

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> AlpacaStreamServer:  # type: ignore[override]
        """Start listening in a background thread; return ``self``.

        Raises:
            DataError: if the server is already running or cannot bind ``host:port``.
        """
        super().start()
        return self

    def __enter__(self) -> AlpacaStreamServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- counters

    @property
    def connections(self) -> int:
        """Websocket sessions accepted so far (rejected handshakes not included)."""
        return self._connections

    @property
    def auths(self) -> int:
        """Successful authentications so far."""
        return self._auths

    @property
    def auth_failures(self) -> int:
        """Authentications refused (wrong key or secret) so far."""
        return self._auth_failures

    @property
    def rejected(self) -> int:
        """Handshakes refused by :meth:`reject_connections` so far."""
        return self._rejected

    # ----------------------------------------------------------------- test controls

    def reject_connections(self, count: int) -> None:
        """Refuse the next ``count`` handshakes with HTTP 503 (a venue outage)."""
        if count < 0:
            raise DataError(f"reject_connections: count must be >= 0 (got {count})")
        with self._state:
            self._reject_remaining = count

    def drop_all_connections(self) -> int:
        """Abort every open connection without a closing handshake (a network drop).

        Returns:
            How many connections were dropped.
        """
        return self._abort_all_clients()

    def wait_subscribed(
        self, symbols: Iterable[str], timeout_s: float = 5.0, *, channel: str | None = None
    ) -> bool:
        """Wait until one authenticated connection is subscribed to every symbol.

        Args:
            symbols: symbols that must all be subscribed.
            timeout_s: how long to wait, in seconds.
            channel: the channel they must be subscribed on; ``None`` accepts any channel.

        Returns:
            ``True`` once they are, ``False`` if ``timeout_s`` passed first.
        """
        wanted = set(symbols)
        channels = CHANNELS if channel is None else (channel,)

        def subscribed() -> bool:
            for client in self._clients:
                if not client.authenticated:
                    continue
                have: set[str] = set()
                for name in channels:
                    have |= client.subscriptions.get(name, set())
                if wanted <= have:
                    return True
            return False

        with self._state:
            return self._state.wait_for(subscribed, timeout_s)

    # ----------------------------------------------------------------- publishing

    def publish_bar(
        self,
        symbol: str,
        ts_ns: int,
        open: float,  # noqa: A002 - Alpaca's field
        high: float,
        low: float,
        close: float,
        volume: float,
        vwap: float | None = None,
        trade_count: int | None = None,
    ) -> int:
        """Send a minute bar (``T="b"``) to clients subscribed to ``bars`` for ``symbol``.

        Args:
            symbol: ticker.
            ts_ns: bar start, UTC nanoseconds.
            open: first price; ``high``, ``low``, ``close`` likewise, in dollars.
            volume: shares traded in the bar.
            vwap: volume-weighted average price (``vw``), omitted if ``None``.
            trade_count: number of trades (``n``), omitted if ``None``.

        Returns:
            How many clients the bar was sent to.
        """
        message: dict[str, Any] = {
            "T": "b", "S": symbol, "o": open, "h": high, "l": low, "c": close, "v": volume,
            "t": msgpack.Timestamp.from_unix_nano(ts_ns),
        }  # fmt: skip
        if vwap is not None:
            message["vw"] = vwap
        if trade_count is not None:
            message["n"] = trade_count
        return self.publish_raw("bars", symbol, [message])

    def publish_quote(
        self,
        symbol: str,
        ts_ns: int,
        bid_price: float,
        bid_size: float,
        ask_price: float,
        ask_size: float,
        *,
        bid_exchange: str = "V",
        ask_exchange: str = "V",
        conditions: Sequence[str] = ("R",),
        tape: str = "C",
    ) -> int:
        """Send a quote (``T="q"``) to clients subscribed to ``quotes`` for ``symbol``.

        Prices in dollars, sizes in shares (Alpaca's stock sizes are round lots on some feeds;
        the server sends what it is given). Returns how many clients it was sent to.
        """
        message: dict[str, Any] = {
            "T": "q", "S": symbol, "bx": bid_exchange, "bp": bid_price, "bs": bid_size,
            "ax": ask_exchange, "ap": ask_price, "as": ask_size, "c": list(conditions), "z": tape,
            "t": msgpack.Timestamp.from_unix_nano(ts_ns),
        }  # fmt: skip
        return self.publish_raw("quotes", symbol, [message])

    def publish_trade(
        self,
        symbol: str,
        ts_ns: int,
        price: float,
        size: float,
        *,
        trade_id: int,
        exchange: str = "V",
        conditions: Sequence[str] = ("@",),
        tape: str = "C",
    ) -> int:
        """Send a trade (``T="t"``) to clients subscribed to ``trades`` for ``symbol``.

        Price in dollars, size in shares. Returns how many clients it was sent to.
        """
        message: dict[str, Any] = {
            "T": "t", "S": symbol, "i": trade_id, "x": exchange, "p": price, "s": size,
            "c": list(conditions), "z": tape, "t": msgpack.Timestamp.from_unix_nano(ts_ns),
        }  # fmt: skip
        return self.publish_raw("trades", symbol, [message])

    def publish_raw(self, channel: str, symbol: str, messages: Sequence[dict[str, Any]]) -> int:
        """Send ``messages`` as one frame, unchanged, to clients subscribed to ``channel`` for ``symbol``.

        For malformed or batched frames. Timestamps should be ``msgpack.Timestamp`` values.

        Returns:
            How many clients the frame was sent to.

        Raises:
            DataError: if ``channel`` is not one of :data:`CHANNELS`.
        """
        if channel not in CHANNELS:
            raise DataError(f"publish_raw: unknown channel {channel!r}; expected one of {CHANNELS}")
        with self._state:
            targets = [
                client for client in self._clients if client.authenticated and client.wants(channel, symbol)
            ]
        if not targets:
            return 0
        loop = self._running_loop()
        future = asyncio.run_coroutine_threadsafe(self._send_many(targets, list(messages)), loop)
        return future.result(CALL_TIMEOUT_S)

    # ----------------------------------------------------------------- server side

    def _call_soon(self, callback: Any) -> None:
        self._running_loop().call_soon_threadsafe(callback)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        with self._state:
            if self._reject_remaining <= 0:
                return None
            self._reject_remaining -= 1
            self._rejected += 1
        return connection.respond(
            HTTPStatus.SERVICE_UNAVAILABLE, "rejected by AlpacaStreamServer.reject_connections\n"
        )

    async def _handle(self, connection: ServerConnection) -> None:
        content_type = connection.request.headers.get("Content-Type", "") if connection.request else ""
        client = _Client(connection, binary="msgpack" in content_type.lower())
        with self._state:
            self._clients.add(client)
            self._connections += 1
            self._state.notify_all()
        try:
            await self._send(client, [{"T": "success", "msg": "connected"}])
            async for frame in connection:
                if not await self._on_frame(client, frame):
                    break
        except ConnectionClosed:
            pass
        finally:
            with self._state:
                self._clients.discard(client)
                self._state.notify_all()

    async def _on_frame(self, client: _Client, frame: str | bytes) -> bool:
        """Handle one client frame; return ``False`` to close the connection."""
        try:
            message = msgpack.unpackb(frame) if isinstance(frame, bytes) else json.loads(frame)
        except (ValueError, msgpack.UnpackException):
            await self._error(client, 400, "invalid syntax")
            return True
        if not isinstance(message, dict):
            await self._error(client, 400, "invalid syntax")
            return True
        action = message.get("action")
        if action == "auth":
            return await self._on_auth(client, message)
        if not client.authenticated:
            await self._error(client, 401, "not authenticated")
            return True
        if action in ("subscribe", "unsubscribe"):
            await self._on_subscription(client, message, subscribe=action == "subscribe")
            return True
        await self._error(client, 400, "invalid syntax")
        return True

    async def _on_auth(self, client: _Client, message: dict[str, Any]) -> bool:
        if client.authenticated:
            await self._error(client, 403, "already authenticated")
            return True
        if message.get("key") == self._api_key and message.get("secret") == self._secret_key:
            with self._state:
                client.authenticated = True
                self._auths += 1
                self._state.notify_all()
            await self._send(client, [{"T": "success", "msg": "authenticated"}])
            return True
        with self._state:
            self._auth_failures += 1
        await self._error(client, 402, "auth failed")
        return False

    async def _on_subscription(self, client: _Client, message: dict[str, Any], *, subscribe: bool) -> None:
        requested: dict[str, list[str]] = {}
        for key, value in message.items():
            if key == "action":
                continue
            if key in ("corrections", "cancelErrors"):  # implied by trades; alpaca-py never sends them
                continue
            valid_list = isinstance(value, list) and all(isinstance(symbol, str) for symbol in value)
            if key not in CHANNELS or not valid_list:
                await self._error(client, 400, "invalid syntax")
                return
            requested[key] = value
        with self._state:
            for channel, symbols in requested.items():
                if subscribe:
                    client.subscriptions[channel].update(symbols)
                else:
                    client.subscriptions[channel].difference_update(symbols)
            reply: dict[str, Any] = {"T": "subscription"}
            reply.update({channel: sorted(client.subscriptions[channel]) for channel in CHANNELS})
            self._state.notify_all()
        await self._send(client, [reply])

    async def _error(self, client: _Client, code: int, text: str) -> None:
        await self._send(client, [{"T": "error", "code": code, "msg": text}])

    async def _send(self, client: _Client, messages: list[dict[str, Any]]) -> None:
        if client.binary:
            await client.connection.send(msgpack.packb(messages))
        else:
            await client.connection.send(json.dumps(messages, default=_json_default, separators=(",", ":")))

    async def _send_many(self, clients: list[_Client], messages: list[dict[str, Any]]) -> int:
        sent = 0
        for client in clients:
            try:
                await self._send(client, messages)
            except ConnectionClosed:
                continue
            sent += 1
        return sent
