"""The Alpaca broker: alpaca-py's ``TradingClient`` behind amcp's commands and events.

Money is at stake here, so every request has one rule: **an unknown outcome is never treated as
a rejection, and an order is never sent twice.**

- The client order id is derived from the intent (stable across restarts) and is persisted by
  the caller before :meth:`AlpacaBroker.submit` is called. Alpaca refuses a second order with a
  client order id it has seen (HTTP 422), so re-sending the *same* id can never create a second
  order; that is the only kind of re-send this module does.
- alpaca-py retries some requests on 429 and 504 by itself; that retry is switched off here and
  replaced by the policy below, so every decision is ours and visible.
- 429 (rate limited: the request was not processed) is retried after ``Retry-After`` /
  ``X-RateLimit-Reset`` or an exponential backoff.
- A timeout, a dropped connection or a 5xx leaves the order **in flight**. It is resolved by
  looking the order up by its client order id; if the venue does not know it after
  ``lookup_attempts`` tries, the same request (same id) is sent again, and if the outcome is
  still unknown the order stays in flight (``OrderSubmitted`` only) for reconciliation.
- A 422 "client order id must be unique" means an earlier attempt reached the venue: the order
  is looked up and reported as it stands.
- Any other 4xx is a rejection, reported with Alpaca's message.

Order classes (:class:`~amcp.domain.enums.OrderClass`): bracket, OTO and OCO orders are sent
with their ``take_profit`` / ``stop_loss`` objects, multi-leg option orders with their ``legs``
and no top-level symbol or side. Alpaca answers with the exits (or option legs) nested in the
order's ``legs``, each an order of its own with its own ids; every event list built from an
order object ends with one :class:`~amcp.domain.messages.OrderLegAccepted` per leg, so the
caller can register them. :meth:`AlpacaBroker.fill_activities` reads the account's FILL
activities (every execution with its id), for reconciliation.

Requests go through a ``requests.Session`` that takes a token from the rate limiter (Alpaca
allows 200 requests a minute) before every HTTP request. Prices and quantities are sent as
decimal strings, never floats, and read back as ``Decimal``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.client import TradingClient

from amcp.data.ratelimit import RateLimiter, TokenBucket, retry_after_s
from amcp.domain.enums import LiquiditySide, OrderClass, OrderSide, OrderStatus, OrderType, TimeInForce
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId
from amcp.domain.messages import (
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderLegAccepted,
    OrderRejected,
    OrderReplaced,
    OrderStatusChanged,
    OrderSubmitted,
    ReplaceOrder,
    SubmitOrder,
)
from amcp.errors import DomainError, ExecutionError

log = logging.getLogger(__name__)

_UNKNOWN_STATUS = frozenset({500, 502, 503, 504})
_DUPLICATE_HINT = "client_order_id"
# environment variables requests reads per request when ``trust_env`` is on (besides *_proxy)
_REQUESTS_ENV = frozenset({"REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NETRC"})


_ACTIVITY_PAGE_SIZE = 100  # Alpaca's maximum page of account activities


@dataclass(frozen=True)
class BrokerOrder:
    """An order as the broker reports it (exact decimals, prices in USD; times in UTC ns).

    A multi-leg parent has an empty ``symbol`` and no ``side`` (as Alpaca reports it); its
    ``filled_avg_price`` is the net price per unit. ``legs`` are the orders the broker created
    for it (bracket/OTO/OCO exits, option legs), each with its own ids.
    """

    client_order_id: str
    venue_order_id: str
    symbol: str
    side: OrderSide | None
    quantity: Decimal
    filled_quantity: Decimal
    filled_avg_price: Decimal | None
    status: OrderStatus
    order_type: str
    updated_ns: int
    replaced_by: str | None = None
    order_class: OrderClass = OrderClass.SIMPLE
    time_in_force: str = ""
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    legs: tuple[BrokerOrder, ...] = ()


@dataclass(frozen=True)
class BrokerFill:
    """One execution from the account's FILL activities (quantity in shares or contracts,
    price in USD, ``ts_ns`` the transaction time in UTC ns).

    ``execution_id`` is Alpaca's activity id (``<time>::<uuid>``), unique per execution.
    """

    execution_id: str
    venue_order_id: str
    symbol: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    ts_ns: int


@dataclass(frozen=True)
class BrokerAccount:
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    status: str
    trading_blocked: bool


class _PacedSession(requests.Session):
    """Takes a rate-limiter token before every request; counts requests (thread-safe).

    When no environment variable could change a request (no ``*_proxy``, CA bundle or netrc
    setting at construction), the environment is not consulted again on every request
    (``trust_env`` off): requests would otherwise scan ``os.environ`` and stat ``~/.netrc`` per
    call, a few hundred microseconds on the order path.
    """

    def __init__(self, limiter: RateLimiter, timeout_s: float) -> None:
        super().__init__()
        self._limiter = limiter
        self._timeout_s = timeout_s
        self._count_lock = threading.Lock()
        self.requests_sent = 0
        if not any(name.lower().endswith("_proxy") or name in _REQUESTS_ENV for name in os.environ):
            self.trust_env = False

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self._limiter.acquire()
        kwargs.setdefault("timeout", self._timeout_s)
        with self._count_lock:
            self.requests_sent += 1
        return super().request(method, url, *args, **kwargs)


class AlpacaBroker:
    """Submit, cancel and replace orders at Alpaca (or an Alpaca-compatible server).

    Args:
        api_key, secret_key: the account's key pair.
        paper: Alpaca's paper endpoint (ignored when ``url_override`` is given).
        url_override: base URL of an Alpaca-compatible trading API (e.g. amcp's paper server).
        rate_limiter: shared token bucket; default 200 requests a minute.
        timeout_s: HTTP timeout of one request, in seconds.
        max_rate_limit_retries: 429 retries of one request.
        lookup_attempts: lookups by client order id after an unknown outcome, ``lookup_delay_s``
            apart, before the same request is sent again.
        resends: how many times an order whose outcome stays unknown is re-sent (same id).
        sleep, clock_ns: injected for tests.
    """

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        paper: bool = True,
        url_override: str | None = None,
        rate_limiter: RateLimiter | None = None,
        timeout_s: float = 10.0,
        max_rate_limit_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        lookup_attempts: int = 3,
        lookup_delay_s: float = 0.5,
        resends: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        if not api_key or not secret_key:
            raise ExecutionError("alpaca broker: api_key and secret_key are both required (got an empty one)")
        self._client = TradingClient(api_key, secret_key, paper=paper, raw_data=True, url_override=url_override)
        self._client._retry = 0  # our policy only (see the module docstring)
        self._client._retry_codes = []
        self._session = _PacedSession(rate_limiter if rate_limiter is not None else TokenBucket(), timeout_s)
        self._client._session = self._session
        self._max_429 = max_rate_limit_retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._lookup_attempts = lookup_attempts
        self._lookup_delay_s = lookup_delay_s
        self._resends = resends
        self._sleep = sleep
        self._clock_ns = clock_ns
        self.stats: dict[str, int] = {"submits": 0, "unknown_outcomes": 0, "lookups": 0, "resends": 0,
                                      "duplicates_refused": 0, "rate_limited": 0}
        self._stats_lock = threading.Lock()  # several callers may submit at once

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far (every attempt, lookups included)."""
        return self._session.requests_sent

    # ------------------------------------------------------------------ orders

    def submit(self, command: SubmitOrder) -> list[OrderEvent]:
        """Send ``command``; return what is known of its outcome.

        ``[OrderAccepted, …]`` when the venue has it, ``[OrderRejected]`` when it refused it,
        ``[OrderSubmitted]`` when the outcome is still unknown (in flight: reconcile later).
        Never raises for a venue answer; raises :class:`ExecutionError` only for a command it
        cannot express.
        """
        body = order_body(command)
        self._count("submits")
        for attempt in range(self._resends + 1):
            if attempt:
                self._count("resends")
                log.warning("alpaca: re-sending %s with the same client order id (outcome unknown)",
                            command.client_order_id)
            outcome, raw, reason = self._send("POST", "/orders", body)
            if outcome == "ok":
                return events_from_order(raw, self._clock_ns())
            if outcome == "duplicate":
                self._count("duplicates_refused")
                found = self._lookup(command.client_order_id, attempts=self._lookup_attempts)
                if found is not None:
                    return events_from_order(found, self._clock_ns())
                continue
            if outcome == "rejected":
                return [OrderRejected(client_order_id=command.client_order_id, ts_ns=self._clock_ns(), reason=reason)]
            self._count("unknown_outcomes")
            found = self._lookup(command.client_order_id, attempts=self._lookup_attempts)
            if found is not None:
                return events_from_order(found, self._clock_ns())
        return [OrderSubmitted(client_order_id=command.client_order_id, ts_ns=self._clock_ns())]

    def cancel(self, command: CancelOrder) -> list[OrderEvent]:
        """Ask the venue to cancel; the confirmation arrives as a trade update (or via sync)."""
        found = self._lookup(command.client_order_id, attempts=1)
        if found is None:
            return []
        outcome, _, reason = self._send("DELETE", f"/orders/{found['id']}", None)
        if outcome == "ok":
            return [OrderStatusChanged(client_order_id=command.client_order_id, status=OrderStatus.PENDING_CANCEL,
                                       ts_ns=self._clock_ns(), reason=command.reason)]
        log.warning("alpaca: cancel of %s not accepted: %s", command.client_order_id, reason)
        return []

    def replace(self, command: ReplaceOrder) -> list[OrderEvent]:
        """PATCH the order: Alpaca answers with the new order (``new_client_order_id``)."""
        found = self._lookup(command.client_order_id, attempts=1)
        if found is None:
            return []
        body: dict[str, Any] = {"client_order_id": str(command.new_client_order_id)}
        for name, value in (("qty", command.quantity), ("limit_price", command.limit_price),
                            ("stop_price", command.stop_price), ("trail", command.trail_price)):
            if value is not None:
                body[name] = _decimal_text(value)
        outcome, raw, reason = self._send("PATCH", f"/orders/{found['id']}", body)
        if outcome == "ok":
            return [OrderReplaced(client_order_id=command.client_order_id,
                                  new_client_order_id=command.new_client_order_id, ts_ns=self._clock_ns())]
        log.warning("alpaca: replace of %s not accepted: %s", command.client_order_id, reason)
        return []

    def cancel_all(self) -> int:
        """Cancel every open order at the venue; returns how many the venue took."""
        outcome, raw, reason = self._send("DELETE", "/orders", None)
        if outcome != "ok":
            raise ExecutionError(f"alpaca: cancel all failed: {reason}")
        return len(raw) if isinstance(raw, list) else 0

    # ------------------------------------------------------------------ state (for reconciliation)

    def order(self, client_order_id: str) -> BrokerOrder | None:
        found = self._lookup(client_order_id, attempts=1)
        return None if found is None else broker_order(found)

    def open_orders(self) -> list[BrokerOrder]:
        """Working orders, each with its legs nested under it (``nested=true``)."""
        outcome, raw, reason = self._send("GET", "/orders", {"status": "open", "limit": 500, "nested": "true"})
        if outcome != "ok":
            raise ExecutionError(f"alpaca: cannot list open orders: {reason}")
        return [broker_order(o) for o in raw]

    def fill_activities(self, after_ns: int | None = None) -> list[BrokerFill]:
        """Every execution of the account after ``after_ns`` (UTC ns; all when ``None``), oldest first.

        Reads ``GET /v2/account/activities/FILL`` page by page (``direction=asc``, the last id
        of a page as the next ``page_token``) until a short page.

        Raises:
            ExecutionError: if a page cannot be read or an activity is malformed.
        """
        params: dict[str, Any] = {"direction": "asc", "page_size": _ACTIVITY_PAGE_SIZE}
        if after_ns is not None:
            params["after"] = pd.Timestamp(after_ns, unit="ns", tz="UTC").isoformat()
        fills: list[BrokerFill] = []
        while True:
            outcome, raw, reason = self._send("GET", "/account/activities/FILL", params)
            if outcome != "ok" or not isinstance(raw, list):
                raise ExecutionError(f"alpaca: cannot read fill activities: {reason or f'not a list: {raw!r:.200}'}")
            fills.extend(broker_fill(activity) for activity in raw)
            if len(raw) < _ACTIVITY_PAGE_SIZE:
                return fills
            params["page_token"] = str(raw[-1]["id"])

    def positions(self) -> dict[str, Decimal]:
        outcome, raw, reason = self._send("GET", "/positions", None)
        if outcome != "ok":
            raise ExecutionError(f"alpaca: cannot list positions: {reason}")
        return {p["symbol"]: _decimal(p, "qty") for p in raw}

    def account(self) -> BrokerAccount:
        outcome, raw, reason = self._send("GET", "/account", None)
        if outcome != "ok":
            raise ExecutionError(f"alpaca: cannot read the account: {reason}")
        return BrokerAccount(cash=_decimal(raw, "cash"), equity=_decimal(raw, "equity"),
                             buying_power=_decimal(raw, "buying_power"), status=str(raw.get("status", "")),
                             trading_blocked=bool(raw.get("trading_blocked", False)))

    # ------------------------------------------------------------------ transport

    def _lookup(self, client_order_id: str, *, attempts: int) -> dict[str, Any] | None:
        for i in range(max(1, attempts)):
            if i:
                self._sleep(self._lookup_delay_s)
            self._count("lookups")
            outcome, raw, _ = self._send("GET", "/orders:by_client_order_id", {"client_order_id": str(client_order_id)})
            if outcome == "ok":
                return raw
        return None

    def _send(self, method: str, path: str, body: Mapping[str, Any] | None) -> tuple[str, Any, str]:
        """One request, 429s retried. Returns (outcome, json, reason) where outcome is ``ok``,
        ``duplicate``, ``rejected``, ``not_found`` or ``unknown``."""
        for attempt in range(self._max_429 + 1):
            try:
                if method == "GET":
                    return "ok", self._client.get(path, dict(body or {})), ""
                if method == "POST":
                    return "ok", self._client.post(path, dict(body or {})), ""
                if method == "PATCH":
                    return "ok", self._client.patch(path, dict(body or {})), ""
                return "ok", self._client.delete(path), ""
            except APIError as exc:
                status = _status(exc)
                message = f"HTTP {status}: {_message(exc)}"
                if status == 429 and attempt < self._max_429:
                    self._count("rate_limited")
                    self._sleep(self._wait_after_429(exc, attempt))
                    continue
                if status == 429 or status in _UNKNOWN_STATUS or status is None:
                    return "unknown", None, message
                if status == 422 and method == "POST" and _DUPLICATE_HINT in _message(exc).lower():
                    return "duplicate", None, message
                if status == 404:
                    return "not_found", None, message
                return "rejected", None, message
            except (requests.Timeout, requests.ConnectionError) as exc:
                return "unknown", None, f"{type(exc).__name__}: {exc}"
        return "unknown", None, "rate limited"

    def _wait_after_429(self, exc: APIError, attempt: int) -> float:
        response = getattr(getattr(exc, "_http_error", None), "response", None)
        asked = retry_after_s(getattr(response, "headers", None) or {})
        if asked is not None:
            return min(self._max_backoff_s, asked)
        return min(self._max_backoff_s, self._backoff_s * 2**attempt)


# --------------------------------------------------------------------------- translation


def order_body(command: SubmitOrder) -> dict[str, Any]:
    """The JSON body of ``POST /v2/orders`` for ``command`` (decimals as strings).

    A simple order carries no ``order_class``. Bracket/OTO orders add ``take_profit``
    (``limit_price``) and/or ``stop_loss`` (``stop_price``, optional ``limit_price``); an OCO
    order is a limit order whose limit is also sent as ``take_profit.limit_price``. A
    multi-leg order has no top-level ``symbol`` or ``side``: ``legs`` name each contract with
    its ``ratio_qty``, ``side`` and optional ``position_intent``; its ``limit_price`` is the net
    price per unit (negative for a credit).
    """
    order_class = command.order_class
    body: dict[str, Any] = {
        "symbol": command.symbol,
        "qty": _decimal_text(command.quantity),
        "side": command.side.value,
        "type": command.order_type.value,
        "time_in_force": command.time_in_force.value,
        "client_order_id": str(command.client_order_id),
    }
    for name, value in (("limit_price", command.limit_price), ("stop_price", command.stop_price),
                        ("trail_price", command.trail_price), ("trail_percent", command.trail_percent)):
        if value is not None:
            body[name] = _decimal_text(value)
    if order_class is OrderClass.SIMPLE:
        return body
    body["order_class"] = order_class.value
    if order_class is OrderClass.MLEG:
        del body["symbol"], body["side"]
        body["legs"] = [
            {"symbol": leg.symbol, "ratio_qty": str(leg.ratio_quantity), "side": leg.side.value,
             **({"position_intent": leg.position_intent.value} if leg.position_intent is not None else {})}
            for leg in command.legs
        ]
        return body
    take_profit = command.take_profit_limit_price
    if order_class is OrderClass.OCO and take_profit is None:
        take_profit = command.limit_price
    if take_profit is not None:
        body["take_profit"] = {"limit_price": _decimal_text(take_profit)}
    if command.stop_loss_stop_price is not None:
        body["stop_loss"] = {"stop_price": _decimal_text(command.stop_loss_stop_price)}
        if command.stop_loss_limit_price is not None:
            body["stop_loss"]["limit_price"] = _decimal_text(command.stop_loss_limit_price)
    return body


_STATUS_EVENTS = {
    "new": "accepted", "accepted": "accepted", "pending_new": "accepted", "partially_filled": "accepted",
    "filled": "accepted", "done_for_day": "accepted", "held": "accepted", "accepted_for_bidding": "accepted",
    "pending_cancel": "accepted", "pending_replace": "accepted", "calculated": "accepted", "stopped": "accepted",
    "rejected": "rejected", "canceled": "canceled", "expired": "expired", "replaced": "replaced",
}


def events_from_order(raw: Mapping[str, Any], ts_ns: int) -> list[OrderEvent]:
    """Events that bring a local order to the state of the broker's order ``raw``.

    Fills are not synthesised here (the trade-update stream or reconciliation reports them with
    their execution ids); this reports acceptance and any terminal state.
    """
    cid = ClientOrderId(str(raw.get("client_order_id", "")))
    status = str(raw.get("status", ""))
    kind = _STATUS_EVENTS.get(status)
    if kind is None:
        raise ExecutionError(f"alpaca: unknown order status {status!r} for {cid}")
    if kind == "rejected":
        return [OrderRejected(client_order_id=cid, ts_ns=ts_ns, reason=str(raw.get("reject_reason") or "rejected"))]
    events: list[OrderEvent] = [OrderAccepted(client_order_id=cid, venue_order_id=VenueOrderId(str(raw["id"])), ts_ns=ts_ns)]
    if kind == "canceled":
        events.append(OrderCanceled(client_order_id=cid, ts_ns=ts_ns))
    elif kind == "expired":
        events.append(OrderExpired(client_order_id=cid, ts_ns=ts_ns))
    if raw.get("legs"):
        events.extend(leg_events(broker_order(raw), ts_ns))
    return events


_LEG_TYPES = {"": OrderType.MARKET, **{t.value: t for t in OrderType}}


def leg_events(parent: BrokerOrder, ts_ns: int) -> list[OrderLegAccepted]:
    """One :class:`OrderLegAccepted` per leg of ``parent``, in the broker's order.

    A multi-leg option leg has no order type of its own at Alpaca (``""``): it is registered as
    a market order (it fills with its parent, at the parent's net price).

    Raises:
        ExecutionError: if a leg has no side or an order type amcp does not know.
    """
    events: list[OrderLegAccepted] = []
    for leg in parent.legs:
        order_type = _LEG_TYPES.get(leg.order_type)
        if order_type is None or leg.side is None:
            raise ExecutionError(f"alpaca: leg {leg.venue_order_id} of {parent.client_order_id} has type "
                                 f"{leg.order_type!r} and side {leg.side!r}")
        try:
            time_in_force = TimeInForce(leg.time_in_force or "day")
        except ValueError:
            raise ExecutionError(f"alpaca: leg {leg.venue_order_id} has time in force {leg.time_in_force!r}") from None
        events.append(OrderLegAccepted(
            client_order_id=ClientOrderId(leg.client_order_id),
            parent_client_order_id=ClientOrderId(parent.client_order_id),
            venue_order_id=VenueOrderId(leg.venue_order_id),
            symbol=leg.symbol,
            side=leg.side,
            quantity=leg.quantity,
            ts_ns=ts_ns,
            order_type=order_type,
            time_in_force=time_in_force,
            limit_price=leg.limit_price if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
            stop_price=leg.stop_price if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
        ))
    return events


def trade_update_events(message: Mapping[str, Any], strategy_id: str = "") -> list[OrderEvent]:
    """Normalise one ``trade_updates`` message (its ``data``) to domain events.

    ``fill``/``partial_fill`` → :class:`OrderFilled` (``execution_id`` is the trade id, so a
    duplicated message is recognised downstream); ``new``/``accepted`` → accepted; ``canceled``,
    ``expired``, ``rejected``, ``replaced`` → their events; others → a status change.

    Raises:
        ExecutionError: if a field it needs is missing or malformed (the caller records it as an
            anomaly and carries on).
    """
    try:
        return _trade_update_events(message, strategy_id)
    except (DomainError, ValueError, TypeError) as exc:
        raise ExecutionError(f"malformed trade update {str(message.get('event'))!r}: {exc}") from None


def _trade_update_events(message: Mapping[str, Any], strategy_id: str) -> list[OrderEvent]:
    event = str(message.get("event", ""))
    order = message.get("order")
    if not isinstance(order, Mapping):
        raise ExecutionError(f"trade update {event!r} without an order object")
    if not order.get("client_order_id"):
        raise ExecutionError(f"trade update {event!r} without a client_order_id")
    cid = ClientOrderId(str(order["client_order_id"]))
    ts_ns = _ts_ns(message.get("timestamp") or order.get("updated_at"))
    events = _own_trade_update_events(event, order, cid, message, ts_ns, strategy_id)
    if order.get("legs"):
        events.extend(leg_events(broker_order(order), ts_ns))
    return events


def _own_trade_update_events(event: str, order: Mapping[str, Any], cid: ClientOrderId, message: Mapping[str, Any],
                             ts_ns: int, strategy_id: str) -> list[OrderEvent]:
    if event in ("fill", "partial_fill"):
        # a multi-leg parent has no side at Alpaca; its fills carry no position (the store
        # ignores their side), so a buy stands in
        return [OrderFilled(
            client_order_id=cid,
            venue_order_id=VenueOrderId(str(order.get("id", ""))),
            trade_id=TradeId(str(message.get("execution_id") or "")),
            strategy_id=StrategyId(strategy_id or "unknown"),
            symbol=str(order.get("symbol", "")),
            side=OrderSide(str(order.get("side") or "buy") if order.get("order_class") == "mleg"
                           else str(order.get("side"))),
            last_quantity=_decimal(message, "qty"),
            last_price=_decimal(message, "price"),
            fee=Decimal(0),
            liquidity=LiquiditySide.TAKER,
            ts_ns=ts_ns,
        )]
    if event in ("new", "accepted", "pending_new"):
        return [OrderAccepted(client_order_id=cid, venue_order_id=VenueOrderId(str(order.get("id", ""))), ts_ns=ts_ns)]
    if event == "canceled":
        return [OrderCanceled(client_order_id=cid, ts_ns=ts_ns)]
    if event == "expired":
        return [OrderExpired(client_order_id=cid, ts_ns=ts_ns)]
    if event == "rejected":
        return [OrderRejected(client_order_id=cid, ts_ns=ts_ns, reason=str(order.get("reject_reason") or "rejected"))]
    if event == "replaced":
        new_id = order.get("replaced_by_client_order_id") or ""
        return [OrderReplaced(client_order_id=cid, new_client_order_id=ClientOrderId(str(new_id)), ts_ns=ts_ns)] if new_id else []
    try:
        status = OrderStatus(event)
    except ValueError:
        raise ExecutionError(f"trade update with unknown event {event!r} for {cid}") from None
    return [OrderStatusChanged(client_order_id=cid, status=status, ts_ns=ts_ns)]


def broker_order(raw: Mapping[str, Any]) -> BrokerOrder:
    """A :class:`BrokerOrder` from an order JSON object, its ``legs`` included.

    Raises:
        ExecutionError: if a field is missing or malformed.
    """
    try:
        legs = raw.get("legs") or ()
        if not isinstance(legs, (list, tuple)):
            raise ValueError(f"legs is a {type(legs).__name__}, not a list")
        return BrokerOrder(
            client_order_id=str(raw["client_order_id"]),
            venue_order_id=str(raw["id"]),
            symbol=str(raw.get("symbol") or ""),
            side=OrderSide(str(raw["side"])) if raw.get("side") else None,
            quantity=_decimal(raw, "qty"),
            filled_quantity=_decimal(raw, "filled_qty"),
            filled_avg_price=_decimal(raw, "filled_avg_price") if raw.get("filled_avg_price") is not None else None,
            status=OrderStatus(str(raw.get("status"))),
            order_type=str(raw.get("type") or raw.get("order_type") or ""),
            updated_ns=_ts_ns(raw.get("updated_at")),
            replaced_by=str(raw["replaced_by"]) if raw.get("replaced_by") else None,
            order_class=OrderClass(str(raw.get("order_class") or "simple")),
            time_in_force=str(raw.get("time_in_force") or ""),
            limit_price=_decimal(raw, "limit_price") if raw.get("limit_price") is not None else None,
            stop_price=_decimal(raw, "stop_price") if raw.get("stop_price") is not None else None,
            legs=tuple(broker_order(leg) for leg in legs),
        )
    except (KeyError, ValueError) as exc:
        raise ExecutionError(f"alpaca: malformed order object ({type(exc).__name__}: {exc}): {dict(raw)!r:.300}") from None


def broker_fill(raw: Mapping[str, Any]) -> BrokerFill:
    """A :class:`BrokerFill` from one FILL account activity.

    Raises:
        ExecutionError: if a field is missing or malformed.
    """
    try:
        return BrokerFill(
            execution_id=str(raw["id"]),
            venue_order_id=str(raw["order_id"]),
            symbol=str(raw["symbol"]),
            side=OrderSide(str(raw["side"])),
            quantity=_decimal(raw, "qty"),
            price=_decimal(raw, "price"),
            ts_ns=_ts_ns(raw.get("transaction_time")),
        )
    except (KeyError, ValueError) as exc:
        raise ExecutionError(f"alpaca: malformed fill activity ({type(exc).__name__}: {exc}): {dict(raw)!r:.300}") from None


def _decimal_text(value: Decimal) -> str:
    """``Decimal`` as plain text without exponent or trailing zeros (``1E+2`` → ``100``)."""
    return format(value.normalize(), "f")


def _decimal(raw: Mapping[str, Any], name: str) -> Decimal:
    value = raw.get(name)
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ExecutionError(f"alpaca: field {name!r} is not a number (got {value!r})") from None
    if not number.is_finite():
        raise ExecutionError(f"alpaca: field {name!r} is not finite (got {value!r})")
    return number


def _ts_ns(value: Any) -> int:
    if value is None:
        return 0
    try:
        return int(pd.Timestamp(value).value)
    except (ValueError, TypeError):
        raise ExecutionError(f"alpaca: not a timestamp: {value!r}") from None


def _status(exc: APIError) -> int | None:
    try:
        return int(exc.status_code)
    except (TypeError, ValueError, AttributeError):
        return None


def _message(exc: APIError) -> str:
    try:
        return str(exc.message)
    except Exception:  # noqa: BLE001 - alpaca-py parses the body lazily; any failure means no message
        return str(exc)
