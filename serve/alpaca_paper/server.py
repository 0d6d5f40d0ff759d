"""An Alpaca-compatible paper trading server: REST + ``trade_updates``, replayed history, faults.

Unmodified alpaca-py code trades against it through ``url_override``::

    with AlpacaPaperServer(start_ts_ns=panel.ts_ns[0]) as server:
        client = TradingClient("test-key", "test-secret", paper=True, url_override=server.url)
        stream = TradingStream("test-key", "test-secret", paper=True, url_override=server.ws_url)
        client.submit_order(MarketOrderRequest(symbol="AAPL", qty=10, side="buy", time_in_force="day"))
        server.advance(panel.batch(1))          # the next bar: the order fills at its open

Time is simulated: it moves only with :meth:`AlpacaPaperServer.advance` (a bar batch, stamped at
its close) or :meth:`AlpacaPaperServer.advance_clock`. Orders are matched by
:class:`~amcp.execution.venue.SimulatedVenue` (fill rules, latency, participation cap, fees and
slippage from ``VenueConfig``) and booked in :class:`~amcp.portfolio.ledger.Portfolio`.

REST endpoints (JSON as Alpaca sends it; errors as ``{"code": ..., "message": ...}``):
``GET /v2/account``; ``POST|GET|DELETE /v2/orders``; ``GET /v2/orders:by_client_order_id``;
``GET|PATCH|DELETE /v2/orders/{id}``; ``GET /v2/positions`` and ``/v2/positions/{symbol}``;
``GET /v2/clock``; ``GET /v2/calendar``; ``GET /v2/assets/{symbol}``;
``GET /v2/options/contracts`` and ``/v2/options/contracts/{symbol_or_id}`` (the list given to
:meth:`~AlpacaPaperServer.set_option_contracts`); ``GET /v2/account/activities`` and
``/v2/account/activities/{activity_type}`` (FILL activities, one per execution, ``id`` = the
trade update's ``execution_id``). Every request needs the
configured ``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY`` headers (401 otherwise). A reused
``client_order_id`` is refused with 422, as Alpaca does, so a retried submit cannot duplicate an
order. Orders take effect at once: a submit answers ``new``, a cancel ``204`` and the order is
``canceled`` (Alpaca may pass through ``pending_*`` states; this server never does).

Order classes ``simple``, ``bracket``, ``oco``, ``oto`` and ``mleg`` (multi-leg options, filled
at the quotes of :meth:`~AlpacaPaperServer.set_option_quotes`) are served as described in
:mod:`serve.alpaca_paper._groups`. A submit answers the order with its ``legs`` nested, as do
``GET /v2/orders/{id}`` and ``orders:by_client_order_id``; ``GET /v2/orders`` nests them only
with ``nested=true`` (otherwise every leg is an order of its own). Every fault below applies to
them as to simple orders (a rejected order takes its legs along).

Buying power: a buy (or the part of a sell that opens a short) must cost no more than the
ledger's buying power less the open buy orders' reservation, priced at the limit (or stop)
price, else the last close; 403 otherwise. An order for a symbol with no close yet (nothing
advanced) is priced only if it has a limit or stop price; a market order then goes unchecked.

Faults, all thread-safe: ``latency_s``; :meth:`~AlpacaPaperServer.fail_next` (e.g. 429 with
``Retry-After``, 500, 503, before the request is handled);
:meth:`~AlpacaPaperServer.timeout_after_accept_next` (handled, stored, answered 504: the unknown
outcome); :meth:`~AlpacaPaperServer.reject_next_orders`
(accepted, then rejected by the "exchange"); and the stream's :meth:`~AlpacaPaperServer.drop_stream`,
:meth:`~AlpacaPaperServer.duplicate_next_events`, :meth:`~AlpacaPaperServer.reorder_next_events`,
:meth:`~AlpacaPaperServer.pause_stream` / :meth:`~AlpacaPaperServer.resume_stream`. Every request
is logged (:attr:`~AlpacaPaperServer.requests`) and every trade update produced, delivered or
not, is kept (:attr:`~AlpacaPaperServer.trade_updates`).

Note that alpaca-py itself retries a 429 or 504 answer (3 times, 3 s apart), re-sending the same
body: with a ``client_order_id`` the re-sent submit after an accepted 504 is refused 422; without
one it places a second order.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from decimal import Decimal
from dataclasses import dataclass
from typing import Any, NamedTuple, Self
from urllib.parse import unquote

from amcp.config import AccountConfig, VenueConfig
from amcp.data.bars import BarPanel
from amcp.data.calendar import TradingCalendar
from amcp.domain.data import BarBatch
from amcp.domain.instruments import Instrument, OptionContract
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.errors import ExecutionError
from amcp.testing.http_server import (
    HttpAnswer,
    HttpRequest,
    ThreadedJsonHttpServer,
    json_answer,
    status_phrase,
)
from serve.alpaca_paper._book import PaperBroker
from serve.alpaca_paper._orders import CODE_UNAUTHORIZED, ListedOption, PaperApiError
from serve.alpaca_paper._stream import TradeUpdateStream

__all__ = ["AlpacaPaperServer", "ListedOption", "RequestRecord"]

logger = logging.getLogger(__name__)

_MUTATING = ("POST", "PATCH", "DELETE")


class RequestRecord(NamedTuple):
    """One request the server answered.

    Attributes:
        method: HTTP method.
        path: URL path, e.g. ``/v2/orders``.
        query: query parameters (last value per key).
        body: the decoded JSON body, None if there was none.
        status: the HTTP status answered.
    """

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int


@dataclass(frozen=True)
class _Failure:
    status: int
    headers: dict[str, str]
    message: str
    match: str | None


class AlpacaPaperServer(ThreadedJsonHttpServer):
    """Alpaca's trading REST API and ``trade_updates`` stream over a simulated venue (module doc).

    Args:
        start_ts_ns: the simulated clock's start, UTC nanoseconds.
        api_key: the key id clients must send (REST header and stream ``key_id``).
        secret_key: the secret they must send.
        venue_config: fills, latency, fees and slippage; default ``VenueConfig()``.
        account_config: starting cash and account type; default ``AccountConfig()``.
        instrument_for: maps a symbol to its instrument (tick and lot sizes).
        symbols: the tradable universe; None accepts any symbol ``instrument_for`` accepts.
        calendar: exchange calendar for the clock and calendar endpoints; default NYSE.
        host: interface to bind (REST and stream).
        latency_s: seconds every REST request sleeps before it is handled.

    Raises:
        ExecutionError: if ``start_ts_ns`` is not a non-negative int.
    """

    error = ExecutionError
    label = "alpaca paper server"
    server_version = "amcp-alpaca-paper/1"
    protocol_version = "HTTP/1.1"
    http_methods = frozenset({"GET", "POST", "PATCH", "DELETE"})

    def __init__(
        self,
        *,
        start_ts_ns: int,
        api_key: str = "test-key",
        secret_key: str = "test-secret",
        venue_config: VenueConfig | None = None,
        account_config: AccountConfig | None = None,
        instrument_for: Callable[[str], Instrument] = default_instrument_for,
        symbols: Collection[str] | None = None,
        calendar: TradingCalendar | None = None,
        host: str = "127.0.0.1",
        latency_s: float = 0.0,
    ) -> None:
        super().__init__(host=host, latency_s=latency_s)
        self.api_key = api_key
        self.secret_key = secret_key
        self._lock = threading.RLock()  # the broker, the fault queues and the logs
        self._broker = PaperBroker(
            start_ts_ns=start_ts_ns,
            venue_config=venue_config if venue_config is not None else VenueConfig(),
            account_config=account_config if account_config is not None else AccountConfig(),
            instrument_for=instrument_for,
            symbols=symbols,
            calendar=calendar,
        )
        self._stream = TradeUpdateStream(api_key, secret_key, host=host)
        self._failures: list[_Failure] = []
        self._timeouts: list[str | None] = []
        self._rejects: list[str] = []
        self._log: list[RequestRecord] = []
        self._updates: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        """Start the REST server and the stream in background threads; return ``self``.

        Raises:
            ExecutionError: if already started, or a port cannot be bound.
        """
        super().start()
        try:
            self._stream.start()
        except ExecutionError:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop both servers and drop every connection (idempotent)."""
        self._stream.close()
        super().close()

    @property
    def ws_url(self) -> str:
        """``ws://host:port``: pass it as ``TradingStream(..., url_override=server.ws_url)``."""
        return self._stream.url

    # ----------------------------------------------------------------- simulated time

    @property
    def now_ns(self) -> int:
        """The simulated time, UTC nanoseconds."""
        return self._broker.now_ns

    def advance(self, batch: BarBatch, session_closed: bool = False) -> list[dict[str, Any]]:
        """Move time to ``batch.ts_ns`` and fill working orders against its bars; push the updates.

        Args:
            batch: every symbol's bar closing at ``batch.ts_ns``.
            session_closed: whether the session ends with this batch (DAY orders expire).

        Returns:
            The ``trade_updates`` payloads produced (before any stream fault).

        Raises:
            ExecutionError: if ``batch`` is not a ``BarBatch`` or lies before the current time.
        """
        with self._lock:
            updates = self._broker.advance(batch, session_closed)
            self._publish(updates)
        return updates

    def advance_panel(self, panel: BarPanel, start: int = 0, stop: int | None = None) -> list[dict[str, Any]]:
        """:meth:`advance` through sessions ``start`` to ``stop`` (exclusive) of a daily panel.

        Each daily batch closes its session, so DAY orders expire at its end.

        Returns:
            Every ``trade_updates`` payload produced, in order.
        """
        updates: list[dict[str, Any]] = []
        for batch in panel.batches(start, stop):
            updates.extend(self.advance(batch, session_closed=True))
        return updates

    def advance_clock(self, ts_ns: int) -> None:
        """Move simulated time to ``ts_ns`` without market data (for the clock and order stamps).

        Raises:
            ExecutionError: if ``ts_ns`` lies before the current time.
        """
        with self._lock:
            self._broker.advance_clock(ts_ns)

    # ----------------------------------------------------------------- options

    def set_option_quotes(self, quotes: Mapping[str, tuple[Decimal, Decimal]]) -> list[dict[str, Any]]:
        """Set option bids and asks (USD per share), fill the mleg orders they allow; push the updates.

        Args:
            quotes: OCC symbol to ``(bid, ask)``; they stay until replaced. Positions in a
                quoted contract are marked at the mid.

        Returns:
            The ``trade_updates`` payloads produced (before any stream fault).

        Raises:
            ExecutionError: for a symbol that is not an OCC symbol, or not ``0 <= bid <= ask``,
                ``ask > 0``; nothing changes.
        """
        with self._lock:
            updates = self._broker.set_option_quotes(quotes)
            self._publish(updates)
        return updates

    def set_option_contracts(self, contracts: Iterable[str | OptionContract | ListedOption]) -> None:
        """Replace the contracts ``/v2/options/contracts`` lists; mleg legs must then be listed.

        Args:
            contracts: OCC symbols, ``OptionContract`` instruments, or :class:`ListedOption`
                records (status, exercise style, underlying symbol, close price).

        Raises:
            ExecutionError: for an item that is none of those, or a contract listed twice.
        """
        with self._lock:
            self._broker.set_option_contracts(contracts)

    # ----------------------------------------------------------------- REST faults

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        headers: Mapping[str, str] | None = None,
        *,
        match: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests with ``status`` before handling them (nothing changes).

        Args:
            count: how many requests fail.
            status: HTTP status, e.g. 429, 500, 503.
            headers: extra response headers, e.g. ``{"Retry-After": "1"}`` or ``X-RateLimit-Reset``.
            match: only requests whose ``"METHOD /path"`` starts with this fail (e.g.
                ``"POST /v2/orders"``); others pass.

        Raises:
            ExecutionError: if ``count`` < 0 or ``status`` is not 4xx or 5xx.
        """
        _check_count("fail_next", count)
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ExecutionError(f"fail_next: status must be an HTTP error 400-599, got {status!r}")
        failure = _Failure(status, dict(headers or {}), status_phrase(status), match)
        with self._lock:
            self._failures.extend([failure] * count)

    def timeout_after_accept_next(self, count: int = 1, *, match: str | None = "POST /v2/orders") -> None:
        """Handle the next ``count`` matching requests in full, then answer 504 instead of the result.

        The submit (or cancel, or replace) took effect, but the client cannot know: the unknown
        outcome that must be resolved by ``client_order_id``, never by resending blindly.

        Args:
            count: how many requests.
            match: the ``"METHOD /path"`` prefix they must have; None for any mutating request.
        """
        _check_count("timeout_after_accept_next", count)
        with self._lock:
            self._timeouts.extend([match] * count)

    def reject_next_orders(self, count: int = 1, reason: str = "rejected by the exchange") -> None:
        """Accept the next ``count`` submitted orders (status ``accepted``), then reject them at once.

        The submit is answered 200 and a ``rejected`` trade update follows.
        """
        _check_count("reject_next_orders", count)
        with self._lock:
            self._rejects.extend([reason] * count)

    # ----------------------------------------------------------------- stream faults

    def drop_stream(self) -> int:
        """Abort every ``trade_updates`` connection (the client must reconnect). Returns how many."""
        return self._stream.drop()

    def pause_stream(self) -> None:
        """Lose every trade update produced until :meth:`resume_stream` (REST still shows the orders)."""
        self._stream.pause()

    def resume_stream(self) -> None:
        """Deliver trade updates again; those produced while paused are not replayed."""
        self._stream.resume()

    def duplicate_next_events(self, count: int = 1) -> None:
        """Deliver each of the next ``count`` trade updates twice."""
        self._stream.duplicate_next(count)

    def reorder_next_events(self, count: int = 2) -> None:
        """Deliver the next ``count`` trade updates in reverse order (held until all ``count`` arrive,
        or until :meth:`release_held_events`)."""
        self._stream.reorder_next(count)

    def release_held_events(self) -> int:
        """Deliver the updates an unfinished reorder holds; return how many."""
        return self._stream.release_held()

    def wait_stream_listening(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        """Wait until ``count`` connections listen to ``trade_updates``; False after ``timeout_s`` seconds."""
        return self._stream.wait_listening(count, timeout_s)

    @property
    def stream_connections(self) -> int:
        """``trade_updates`` websocket sessions accepted so far."""
        return self._stream.connections

    @property
    def stream_listens(self) -> int:
        """``listen`` requests answered so far (one per connection that subscribed)."""
        return self._stream.listens

    # ----------------------------------------------------------------- logs

    @property
    def requests(self) -> list[RequestRecord]:
        """Every REST request answered so far, in order (a copy)."""
        with self._lock:
            return list(self._log)

    @property
    def trade_updates(self) -> list[dict[str, Any]]:
        """Every ``trade_updates`` payload produced so far, delivered or not (a copy)."""
        with self._lock:
            return list(self._updates)

    def clear_requests(self) -> None:
        """Forget the request log."""
        with self._lock:
            self._log.clear()

    # ----------------------------------------------------------------- serving

    def _publish(self, updates: list[dict[str, Any]]) -> None:
        """Log and stream updates; call with the lock held (keeps their order across threads)."""
        self._updates.extend(updates)
        self._stream.publish(updates)

    def _record(self, method: str, path: str, query: dict[str, str], body: Any, status: int) -> None:
        with self._lock:
            self._log.append(RequestRecord(method, path, query, body, status))

    def _take_failure(self, line: str) -> _Failure | None:
        with self._lock:
            for k, failure in enumerate(self._failures):
                if failure.match is None or line.startswith(failure.match):
                    return self._failures.pop(k)
        return None

    def _take_timeout(self, method: str, line: str) -> bool:
        with self._lock:
            for k, match in enumerate(self._timeouts):
                if (match is None and method in _MUTATING) or (match is not None and line.startswith(match)):
                    del self._timeouts[k]
                    return True
        return False

    def _answer(self, request: HttpRequest) -> HttpAnswer:
        """Inject the next matching failure, else check the key pair and answer :meth:`handle`
        (or 504 after it, for a timeout fault); every answer is logged."""
        method, path, query = request.method, request.path, request.query
        body: Any = None
        bad_body = False
        if request.body:
            try:
                body = json.loads(request.body)
            except (ValueError, UnicodeDecodeError):
                bad_body = True
        line = f"{method} {path}"
        failure = self._take_failure(line)
        if failure is not None:
            error = PaperApiError(failure.status, failure.message)
            return self._reply(request, body, failure.status, error.body(), failure.headers)
        key, secret = request.headers.get("APCA-API-KEY-ID"), request.headers.get("APCA-API-SECRET-KEY")
        if key != self.api_key or secret != self.secret_key:
            error = PaperApiError(401, "request is not authorized", CODE_UNAUTHORIZED)
            return self._reply(request, body, 401, error.body())
        try:
            if bad_body:
                raise PaperApiError(400, f"request body is not valid JSON: {request.body[:200]!r}")
            status, answer = self.handle(method, path, query, body)
        except PaperApiError as exc:
            status, answer = exc.status, exc.body()
        except Exception as exc:  # noqa: BLE001 - a server bug must answer 500, not hang the client
            logger.exception("alpaca paper server: error serving %s %s", method, request.target)
            status, answer = 500, PaperApiError(500, f"internal error: {exc!r}").body()
        if self._take_timeout(method, line):
            status, answer = 504, PaperApiError(504, "gateway timeout").body()
        return self._reply(request, body, status, answer)

    def _reply(
        self,
        request: HttpRequest,
        body: Any,
        status: int,
        answer: Any,
        headers: Mapping[str, str] | None = None,
    ) -> HttpAnswer:
        """``answer`` as JSON, logged with the request's decoded ``body``."""
        reply = json_answer(status, answer, headers)
        self._record(request.method, request.path, request.query, body, status)
        return reply

    def handle(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        """Route one authorised request; return ``(status, JSON body)``.

        Raises:
            PaperApiError: for every error answer.
        """
        parts = [unquote(part) for part in path.split("/") if part]
        if not parts or parts[0] != "v2":
            raise PaperApiError(404, f"endpoint not found: {method} {path}")
        rest = parts[1:]
        broker = self._broker
        with self._lock:
            if rest == ["account"] and method == "GET":
                return 200, broker.account()
            if rest[:2] == ["account", "activities"] and len(rest) <= 3 and method == "GET":
                return 200, broker.activities(query, rest[2] if len(rest) == 3 else None)
            if rest == ["orders"]:
                if method == "POST":
                    reject = self._rejects.pop(0) if self._rejects else None
                    answer, updates = broker.submit(body, reject)
                    self._publish(updates)
                    return 200, answer
                if method == "GET":
                    return 200, broker.list_orders(query)
                if method == "DELETE":
                    items, updates = broker.cancel_all()
                    self._publish(updates)
                    return 207, items
            if rest == ["orders:by_client_order_id"] and method == "GET":
                return 200, broker.order_json(broker.order_by_client_id(query.get("client_order_id")))
            if len(rest) == 2 and rest[0] == "orders":
                if method == "GET":
                    return 200, broker.order_json(broker.order(rest[1]))
                if method == "PATCH":
                    answer, updates = broker.replace(rest[1], body)
                    self._publish(updates)
                    return 200, answer
                if method == "DELETE":
                    self._publish(broker.cancel(rest[1]))
                    return 204, None
            if rest == ["positions"] and method == "GET":
                return 200, broker.positions()
            if len(rest) == 2 and rest[0] == "positions" and method == "GET":
                return 200, broker.position(rest[1])
            if rest == ["clock"] and method == "GET":
                return 200, broker.clock()
            if rest == ["calendar"] and method == "GET":
                return 200, broker.calendar(query)
            if len(rest) == 2 and rest[0] == "assets" and method == "GET":
                return 200, broker.asset(rest[1])
            if rest == ["options", "contracts"] and method == "GET":
                return 200, broker.option_contracts(query)
            if len(rest) == 3 and rest[:2] == ["options", "contracts"] and method == "GET":
                return 200, broker.option_contract(rest[2])
        raise PaperApiError(404, f"endpoint not found: {method} {path}")


def _check_count(name: str, count: int) -> None:
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ExecutionError(f"{name}: count must be an int >= 0, got {count!r}")

