"""Alpaca's ``trade_updates`` stream, buffered for the OMS, with its sessions counted.

:class:`AlpacaTradeUpdateFeed` runs alpaca-py's ``TradingStream`` (raw mode: the JSON as sent)
in a background thread and buffers each update's ``data`` object. alpaca-py reconnects by itself
after a drop; updates sent while the socket was down are lost, so the feed counts sessions
(successful logins): when :attr:`sessions` grows past one, the consumer must backfill over REST,
which :meth:`amcp.execution.live.LiveExecutionEngine.on_trade_updates` does by reconciling.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from alpaca.trading.stream import TradingStream

from amcp.errors import ExecutionError

_STOP_TIMEOUT_S = 10.0


class AlpacaTradeUpdateFeed:
    """Trade updates of one account, drained by the OMS.

    Args:
        api_key, secret_key: the account's key pair.
        paper: Alpaca's paper endpoint (ignored with ``url_override``).
        url_override: websocket URL of an Alpaca-compatible server.
    """

    def __init__(self, api_key: str, secret_key: str, *, paper: bool = True, url_override: str | None = None) -> None:
        if not api_key or not secret_key:
            raise ExecutionError("trade update feed: api_key and secret_key are both required")
        self._stream = TradingStream(api_key, secret_key, paper=paper, raw_data=True, url_override=url_override)
        self._buffer: deque[Mapping[str, Any]] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._received = 0
        self._sessions = 0
        self._bad = 0
        self._thread: threading.Thread | None = None
        self._stream.subscribe_trade_updates(self._on_message)
        login = self._stream._auth

        async def counted_login() -> None:
            await login()
            with self._lock:
                self._sessions += 1

        self._stream._auth = counted_login  # type: ignore[method-assign]  # alpaca-py 0.44 logs in here on every connect

    async def _on_message(self, message: Any) -> None:
        data = message.get("data") if isinstance(message, Mapping) else None
        with self._lock:
            if isinstance(data, Mapping):
                self._buffer.append(data)
                self._received += 1
                self._arrived.notify_all()
            else:
                self._bad += 1

    def start(self) -> None:
        """Connect in a background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._stream.run, name="alpaca-trade-updates", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the stream and wait for its thread; buffered updates stay drainable.

        alpaca-py's ``stop`` only asks its receive loop to end, which it notices after up to
        5 s without a message; closing the socket as well ends the loop at once.
        """
        loop = getattr(self._stream, "_loop", None)
        if loop is not None and loop.is_running():
            self._stream.stop()
            try:
                asyncio.run_coroutine_threadsafe(self._stream.close(), loop).result(_STOP_TIMEOUT_S)
            except (RuntimeError, concurrent.futures.TimeoutError):  # the loop ended meanwhile
                pass
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_S)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        """Wait until at least ``count`` updates have arrived since the feed started (drained
        or not); return whether they did within ``timeout_s`` seconds."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self._received >= count, timeout_s)

    @property
    def received(self) -> int:
        """Updates received since the feed started (drained or not)."""
        with self._lock:
            return self._received

    def drain(self, max_updates: int | None = None) -> list[Mapping[str, Any]]:
        """The buffered updates in arrival order (at most ``max_updates``)."""
        with self._lock:
            count = len(self._buffer) if max_updates is None else min(max_updates, len(self._buffer))
            return [self._buffer.popleft() for _ in range(count)]

    @property
    def sessions(self) -> int:
        """Successful logins so far; more than one means the stream reconnected (updates may be lost)."""
        with self._lock:
            return self._sessions

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"sessions": self._sessions, "buffered": len(self._buffer), "bad_messages": self._bad}
