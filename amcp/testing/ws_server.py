"""A ``websockets`` asyncio server on its own event loop in a daemon thread.

The base of the Alpaca-compatible stream servers (market data in :mod:`amcp.testing.alpaca_stream`,
trade updates in ``serve.alpaca_paper``): start/close, the bound URL, and the loop they schedule
work on. A subclass implements :meth:`_handle` (one connection) and may refuse handshakes in
:meth:`_process_request`.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, ClassVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from amcp.errors import AmcpError

CALL_TIMEOUT_S = 5.0
"""How long start/close wait for the server's thread."""


class ThreadedWebsocketServer:
    """Serve websockets on ``host:port`` (0 picks a free port) from a background thread.

    Class attributes:
        error: the exception raised for a start/URL misuse (the subclass's package error).
        label: the server's name in messages and its thread's name.
    """

    error: ClassVar[type[AmcpError]] = AmcpError
    label: ClassVar[str] = "websocket server"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._start_error: BaseException | None = None
        # the subclass's client records (each with a ``connection``), guarded by ``_state``
        self._state = threading.Condition()
        self._clients: set[Any] = set()

    def start(self) -> None:
        """Start listening in a daemon thread.

        Raises:
            error: if already running or ``host:port`` cannot be bound.
        """
        if self._thread is not None:
            raise self.error(f"{self.label}: already running at {self.url}")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name=self.label, daemon=True)
        self._thread.start()
        ready.wait(CALL_TIMEOUT_S)
        if self._start_error is not None or self._port is None:
            self._thread.join(CALL_TIMEOUT_S)
            self._thread = None
            raise self.error(
                f"{self.label}: cannot listen on {self._host}:{self._requested_port} (got {self._start_error!r})"
            )

    def close(self) -> None:
        """Close every connection and stop (idempotent)."""
        if self._thread is None:
            return
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        self._thread.join(CALL_TIMEOUT_S * 2)
        self._thread = None

    @property
    def url(self) -> str:
        """``ws://host:port`` of the running server (any path is accepted)."""
        if self._port is None:
            raise self.error(f"{self.label}: not started; call start() or use it as a context manager")
        return f"ws://{self._host}:{self._port}"

    def _abort_all_clients(self) -> int:
        """Forget every client and abort its connection without a closing handshake (a network
        drop); return how many there were."""
        with self._state:
            clients = list(self._clients)
            self._clients.clear()
            self._state.notify_all()
        loop = self._loop
        if loop is not None and not loop.is_closed():
            for client in clients:
                loop.call_soon_threadsafe(client.connection.transport.abort)
        return len(clients)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The server's event loop, to schedule work on from other threads."""
        if self._loop is None or self._thread is None:
            raise self.error(f"{self.label}: not started")
        return self._loop

    # ------------------------------------------------------------------ the thread

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # noqa: BLE001 - reported to start() in the caller's thread
            self._start_error = exc
            ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        server: Server
        async with serve(self._handle, self._host, self._requested_port,
                         process_request=self._process_request) as server:
            self._port = int(next(iter(server.sockets)).getsockname()[1])
            ready.set()
            await self._stopping.wait()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Refuse a handshake by returning a response; ``None`` accepts it."""
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        raise NotImplementedError
