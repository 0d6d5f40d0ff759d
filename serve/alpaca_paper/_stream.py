"""The ``trade_updates`` websocket of the paper server, with scriptable faults.

Protocol (https://docs.alpaca.markets/docs/websocket-streaming): the client sends
``{"action": "authenticate", "data": {"key_id", "secret_key"}}`` and gets
``{"stream": "authorization", "data": {"action": "authenticate", "status": "authorized"}}`` (or
``"unauthorized"``, and the connection is closed); then ``{"action": "listen", "data": {"streams":
["trade_updates"]}}`` is answered with ``{"stream": "listening", "data": {"streams": [...]}}`` and
from then on every order event arrives as ``{"stream": "trade_updates", "data": {...}}``.

Frames are binary, as on Alpaca's paper endpoint: JSON bytes, or MessagePack for a client whose
first message was MessagePack (Alpaca's streaming supports both codecs). alpaca-py's
``TradingStream`` sends JSON text and parses either kind of frame.

Faults (thread-safe; see :class:`TradeUpdateStream`): drop every connection, deliver the next
events twice or in reverse order, or pause (events produced while paused are lost to the
stream, as they are when a real connection is down; REST still shows them).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from amcp.errors import ExecutionError
from amcp.testing.ws_server import ThreadedWebsocketServer

log = logging.getLogger(__name__)

"""How long a caller's thread waits for the server loop to start or stop."""
_STREAMS = ("trade_updates",)


@dataclass(eq=False)
class _Client:
    """One websocket and its protocol state; ``queue`` holds frames its sender task writes in order."""

    connection: ServerConnection
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    msgpack: bool = False
    authenticated: bool = False
    listening: bool = False


class TradeUpdateStream(ThreadedWebsocketServer):
    """Serves ``trade_updates`` on ``ws://host:port`` (any path) from a background thread.

    :meth:`publish` is called from any thread, never blocks on the network, and keeps the order
    of events across calls: each client's frames go through one FIFO queue.

    Args:
        api_key: the ``key_id`` a client must authenticate with.
        secret_key: the ``secret_key`` it must send.
        host: interface to bind.
        port: TCP port; 0 picks a free one.
    """

    error = ExecutionError
    label = "trade_updates stream"

    def __init__(self, api_key: str, secret_key: str, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(host=host, port=port)
        self._api_key = api_key
        self._secret_key = secret_key
        self._state = threading.Condition()
        self._clients: set[_Client] = set()
        self._paused = False
        self._duplicate_remaining = 0
        self._reorder_size = 0
        self._held: list[dict[str, Any]] = []
        self._connections = 0
        self._auth_failures = 0
        self._listens = 0
        self._sent = 0

    # ----------------------------------------------------------------- lifecycle

    # ----------------------------------------------------------------- counters

    @property
    def connections(self) -> int:
        """Websocket sessions accepted so far."""
        return self._connections

    @property
    def auth_failures(self) -> int:
        """Authentications refused so far."""
        return self._auth_failures

    @property
    def listens(self) -> int:
        """``listen`` requests for ``trade_updates`` answered so far (one per (re)connection)."""
        return self._listens

    @property
    def frames_sent(self) -> int:
        """``trade_updates`` frames queued to clients so far (duplicates counted)."""
        return self._sent

    def wait_listening(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        """Wait until ``count`` or more connections are listening to ``trade_updates``.

        Returns:
            True once they are, False if ``timeout_s`` seconds passed first.
        """
        with self._state:
            return self._state.wait_for(
                lambda: sum(client.listening for client in self._clients) >= count, timeout_s
            )

    # ----------------------------------------------------------------- faults

    def drop(self) -> int:
        """Abort every connection without a closing handshake (a network drop).

        Returns:
            How many connections were dropped.
        """
        return self._abort_all_clients()

    def pause(self) -> None:
        """Stop delivering: events published until :meth:`resume` are lost to the stream."""
        with self._state:
            self._paused = True

    def resume(self) -> None:
        """Deliver events again (the lost ones are not replayed)."""
        with self._state:
            self._paused = False

    def duplicate_next(self, count: int) -> None:
        """Deliver each of the next ``count`` events twice, back to back."""
        _check_count("duplicate_next_events", count)
        with self._state:
            self._duplicate_remaining = count

    def reorder_next(self, count: int) -> None:
        """Hold the next ``count`` events and deliver them in reverse order once all have arrived.

        Held events wait for more events to complete the group, or for :meth:`release_held`.
        """
        _check_count("reorder_next_events", count)
        with self._state:
            self._reorder_size = count

    def release_held(self) -> int:
        """Deliver the events a reorder is holding (reversed) and end the reorder.

        Returns:
            How many events were released.
        """
        with self._state:
            held, self._held, self._reorder_size = self._held, [], 0
            self._deliver(held[::-1])
            return len(held)

    # ----------------------------------------------------------------- publishing

    def publish(self, updates: Sequence[dict[str, Any]]) -> None:
        """Queue ``trade_updates`` payloads (the message's ``data``) for every listening client.

        Faults apply here, in this order: pause (lost), duplicate, reorder.
        """
        with self._state:
            if self._paused or not updates:
                return
            out: list[dict[str, Any]] = []
            for update in updates:
                copies = 1
                if self._duplicate_remaining > 0:
                    self._duplicate_remaining -= 1
                    copies = 2
                for _ in range(copies):
                    if self._reorder_size > 0:
                        self._held.append(update)
                        if len(self._held) == self._reorder_size:
                            out.extend(self._held[::-1])
                            self._held, self._reorder_size = [], 0
                    else:
                        out.append(update)
            self._deliver(out)

    def _deliver(self, updates: list[dict[str, Any]]) -> None:
        """Queue the frames of ``updates`` to listening clients; call with ``_state`` held."""
        loop = self._loop
        if not updates or loop is None or loop.is_closed():
            return
        targets = [client for client in self._clients if client.listening]
        if not targets:
            return
        messages = [{"stream": "trade_updates", "data": update} for update in updates]
        self._sent += len(messages) * len(targets)
        for client in targets:
            frames = [_encode(message, client.msgpack) for message in messages]
            # call_soon_threadsafe keeps FIFO order, and we call it holding the lock.
            loop.call_soon_threadsafe(_put_all, client.queue, frames)

    # ----------------------------------------------------------------- server side

    async def _handle(self, connection: ServerConnection) -> None:
        client = _Client(connection)
        with self._state:
            self._clients.add(client)
            self._connections += 1
            self._state.notify_all()
        sender = asyncio.create_task(self._send_loop(client))
        try:
            async for frame in connection:
                if not await self._on_frame(client, frame):
                    break
        except ConnectionClosed:
            pass
        finally:
            with self._state:
                self._clients.discard(client)
                self._state.notify_all()
            client.queue.put_nowait(None)
            await sender

    async def _send_loop(self, client: _Client) -> None:
        while True:
            frame = await client.queue.get()
            if frame is None:
                return
            try:
                await client.connection.send(frame)
            except ConnectionClosed:
                return

    async def _on_frame(self, client: _Client, frame: str | bytes) -> bool:
        """Handle one client message; return False to close the connection."""
        message = _decode(frame)
        if message is None and isinstance(frame, bytes):
            try:
                message = msgpack.unpackb(frame)
                client.msgpack = True
            except (ValueError, msgpack.UnpackException):
                message = None
        if not isinstance(message, dict):
            await self._reply(client, _error("invalid syntax"))
            return True
        action = message.get("action")
        data = message.get("data") if isinstance(message.get("data"), dict) else {}
        if action in ("authenticate", "auth"):
            ok = data.get("key_id") == self._api_key and data.get("secret_key") == self._secret_key
            status = "authorized" if ok else "unauthorized"
            with self._state:
                client.authenticated = ok
                self._auth_failures += 0 if ok else 1
            await self._reply(client, _authorization("authenticate", status))
            return ok
        if not client.authenticated:
            await self._reply(client, _authorization(str(action), "unauthorized"))
            return True
        if action == "listen":
            streams = data.get("streams")
            if not isinstance(streams, list):
                await self._reply(client, _error("invalid syntax"))
                return True
            chosen = [name for name in _STREAMS if name in streams]
            await self._reply(client, {"stream": "listening", "data": {"streams": chosen}})
            with self._state:  # after the reply is queued: no update can overtake it
                client.listening = bool(chosen)
                self._listens += 1 if chosen else 0
                self._state.notify_all()
            return True
        await self._reply(client, _error(f"unknown action {action!r}"))
        return True

    async def _reply(self, client: _Client, message: dict[str, Any]) -> None:
        client.queue.put_nowait(_encode(message, client.msgpack))


def _authorization(action: str, status: str) -> dict[str, Any]:
    return {"stream": "authorization", "data": {"action": action, "status": status}}


def _error(message: str) -> dict[str, Any]:
    return {"stream": "error", "data": {"error_message": message}}


def _put_all(queue: asyncio.Queue[bytes | None], frames: list[bytes]) -> None:
    for frame in frames:
        queue.put_nowait(frame)


def _encode(message: dict[str, Any], use_msgpack: bool) -> bytes:
    if use_msgpack:
        return bytes(msgpack.packb(message))
    return json.dumps(message, separators=(",", ":")).encode()


def _decode(frame: str | bytes) -> Any:
    try:
        return json.loads(frame)
    except (ValueError, UnicodeDecodeError):
        return None


def _check_count(name: str, count: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ExecutionError(f"{name}: count must be an int >= 0, got {count!r}")
