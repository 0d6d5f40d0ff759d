"""The paper broker behind :class:`~serve.alpaca_paper.server.AlpacaPaperServer`: pure state, no I/O.

A :class:`PaperBroker` holds a :class:`~amcp.execution.venue.SimulatedVenue` (matching) and a
:class:`~amcp.portfolio.ledger.Portfolio` (cash, positions, buying power), keeps Alpaca's view of
every order, and turns requests and venue events into Alpaca JSON: the bodies of the REST answers
and the ``data`` of ``trade_updates`` messages. It reads no clock (simulated time is ``now_ns``,
moved by :meth:`PaperBroker.advance` and :meth:`PaperBroker.advance_clock`), takes no lock (the
server serialises calls) and raises :class:`PaperApiError` for every answer that is not a 2xx.

The venue knows an order by its Alpaca order id (a UUID string), never by the client's
``client_order_id``: any client id Alpaca accepts (up to 128 characters) works, and uniqueness of
client ids is checked here, as Alpaca does (HTTP 422), which is what makes a retried submit safe.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Collection, Mapping
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
import pandas as pd

from amcp.config import AccountConfig, VenueConfig
from amcp.data.calendar import EXCHANGE_TIMEZONE, TradingCalendar
from amcp.domain.data import BarBatch
from amcp.domain.enums import OrderSide, OrderStatus, OrderType
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.instruments import Instrument, OptionContract
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.domain.messages import (
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    ReplaceOrder,
    SubmitOrder,
)
from amcp.engine.clock import new_york_date
from amcp.errors import AmcpError, ExecutionError
from amcp.execution.venue import SimulatedVenue
from amcp.portfolio.ledger import Portfolio
from serve.alpaca_paper._orders import (
    CODE_FORBIDDEN,
    CODE_INVALID,
    CODE_NOT_FOUND,
    CODE_UNPROCESSABLE,
    NAMESPACE,
    ZERO,
    PaperApiError,
    PaperOrder,
    asset_id,
    average,
    eastern,
    invalid,
    parse_enum,
    positive,
    rfc3339,
    text,
)

_STRATEGY = StrategyId("alpaca-paper")
_MAX_CLIENT_ORDER_ID = 128
_DEFAULT_ORDER_LIMIT = 50
_MAX_ORDER_LIMIT = 500
_EXCHANGE = "NASDAQ"
"""The ``exchange`` every asset and position reports (the server has no listing data)."""
_REPLACE_FIELDS = frozenset({"qty", "time_in_force", "limit_price", "stop_price", "trail", "client_order_id"})


class PaperBroker:
    """Alpaca's trading API over a simulated venue and a ledger, in simulated time.

    Args:
        start_ts_ns: the simulated clock's start, UTC nanoseconds; orders submitted before the
            first :meth:`advance` are stamped with it.
        venue_config: the venue's fills, fees, slippage and latency.
        account_config: starting cash, account type (margin or cash) and margin multiplier.
        instrument_for: maps a symbol to its instrument (tick and lot sizes); a symbol it
            refuses is unknown (404 on ``/v2/assets``, 422 on an order).
        symbols: the tradable universe; ``None`` accepts every symbol ``instrument_for`` does.
        calendar: the exchange calendar of ``/v2/clock`` and ``/v2/calendar``.
    """

    def __init__(
        self,
        *,
        start_ts_ns: int,
        venue_config: VenueConfig,
        account_config: AccountConfig,
        instrument_for: Callable[[str], Instrument] = default_instrument_for,
        symbols: Collection[str] | None = None,
        calendar: TradingCalendar | None = None,
    ) -> None:
        if not isinstance(start_ts_ns, int) or isinstance(start_ts_ns, bool) or start_ts_ns < 0:
            raise ExecutionError(
                f"start_ts_ns must be a non-negative int of UTC nanoseconds, got {start_ts_ns!r}"
            )
        self._now_ns = start_ts_ns
        self._instrument_for = instrument_for
        self._universe = None if symbols is None else frozenset(symbols)
        self._venue = SimulatedVenue(venue_config, instrument_for)
        self._portfolio = Portfolio(account_config, instrument_for)
        self._account = account_config
        self._calendar = calendar
        self._orders: dict[str, PaperOrder] = {}
        self._by_client_id: dict[str, PaperOrder] = {}
        self._sequence = 0
        self._executions = 0
        # symbol: (New York day of its last close, that close, the previous day's close)
        self._closes: dict[str, tuple[date, float, float | None]] = {}
        self._session_day: date | None = None
        self._account_id = str(uuid.uuid5(NAMESPACE, "account"))

    # ------------------------------------------------------------------ clock

    @property
    def now_ns(self) -> int:
        """The simulated time, UTC nanoseconds."""
        return self._now_ns

    @property
    def portfolio(self) -> Portfolio:
        """The ledger (read it; do not book fills into it)."""
        return self._portfolio

    def advance_clock(self, ts_ns: int) -> None:
        """Move simulated time to ``ts_ns`` without market data.

        Raises:
            ExecutionError: if ``ts_ns`` is earlier than the current simulated time.
        """
        if not isinstance(ts_ns, int) or isinstance(ts_ns, bool) or ts_ns < self._now_ns:
            raise ExecutionError(
                f"simulated time moves forward only: got {ts_ns!r}, "
                f"now is {self._now_ns} ({rfc3339(self._now_ns)})"
            )
        self._now_ns = ts_ns

    def advance(self, batch: BarBatch, session_closed: bool = False) -> list[dict[str, Any]]:
        """Move simulated time to ``batch.ts_ns`` (a bar close) and match working orders against it.

        Fills are booked in the ledger, then every symbol is marked at its close.

        Returns:
            The ``trade_updates`` payloads produced, in order.

        Raises:
            ExecutionError: if ``batch`` is not a ``BarBatch`` or is earlier than now.
        """
        if not isinstance(batch, BarBatch):
            raise ExecutionError(f"advance expects a BarBatch, got {type(batch).__name__}")
        self.advance_clock(batch.ts_ns)
        day = new_york_date(batch.ts_ns)
        if day != self._session_day:
            self._portfolio.start_session(batch.ts_ns)
            self._session_day = day
        updates = self._apply(self._venue.on_bars(batch, session_closed=session_closed))
        self._portfolio.mark_batch(batch)
        closes = self._closes
        for symbol, close in zip(batch.symbols, batch.close.tolist(), strict=True):
            if not 0.0 < close < math.inf:
                continue
            last = closes.get(symbol)
            if last is None:
                closes[symbol] = (day, close, None)
            elif last[0] == day:
                closes[symbol] = (day, close, last[2])
            else:
                closes[symbol] = (day, close, last[1])
        return updates

    # ------------------------------------------------------------------ orders

    def submit(
        self, body: Any, reject_reason: str | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Handle ``POST /v2/orders``.

        Args:
            body: the decoded JSON body.
            reject_reason: if given, the order is accepted (status ``accepted``) and at once
                rejected by the "exchange" with this reason (a ``rejected`` trade update).

        Returns:
            The order as answered, and the trade updates produced.

        Raises:
            PaperApiError: 422 for invalid terms or a duplicate ``client_order_id``, 403 for
                insufficient buying power or quantity.
        """
        if not isinstance(body, dict):
            raise invalid(f"the order body must be a JSON object, got {type(body).__name__}")
        order_class = body.get("order_class", "simple") or "simple"
        if order_class != "simple" or body.get("legs") or body.get("take_profit") or body.get("stop_loss"):
            raise invalid(
                f"order_class {order_class!r} is not supported by the paper server; only simple orders"
            )
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol.strip():
            raise invalid(f"invalid symbol {symbol!r}; expected a ticker or an OCC option symbol")
        symbol = symbol.strip().upper()
        side = parse_enum(body, "side")
        order_type = parse_enum(body, "type")
        tif = parse_enum(body, "time_in_force")
        quantity, notional = positive(body, "qty"), positive(body, "notional")
        if (quantity is None) == (notional is None):
            raise invalid(f"exactly one of qty and notional is required (got qty={body.get('qty')!r}, "
                           f"notional={body.get('notional')!r})")
        if notional is not None and order_type is not OrderType.MARKET:
            raise invalid(f"notional orders must be market orders (got type {order_type.value!r})")
        limit, stop = positive(body, "limit_price"), positive(body, "stop_price")
        trail_price, trail_percent = positive(body, "trail_price"), positive(body, "trail_percent")
        client_order_id = body.get("client_order_id")
        if client_order_id is None:
            client_order_id = str(uuid.uuid5(NAMESPACE, f"client:{self._sequence + 1}"))
        if not isinstance(client_order_id, str) or not 0 < len(client_order_id) <= _MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be 1 to 128 characters, got {client_order_id!r}")
        if client_order_id in self._by_client_id:
            raise invalid(f"client_order_id must be unique: {client_order_id!r} was already used")
        instrument = self._instrument(symbol, 422)
        price = self._reference_price(symbol, order_type, limit, stop)
        if notional is not None:
            if price is None:
                raise invalid(f"no price for {symbol} yet: a notional order needs one (advance a bar first)")
            quantity = instrument.round_quantity(notional / price, "down")
            if quantity <= 0:
                raise invalid(
                    f"notional {text(notional)} buys less than one lot of {symbol} at {text(price)}"
                )
        if quantity is None:  # unreachable: exactly one of qty and notional was checked above
            raise invalid("qty is missing")
        self._check_buying_power(symbol, side, quantity, price, instrument.multiplier)
        self._sequence += 1
        order_id = str(uuid.uuid5(NAMESPACE, f"order:{self._sequence}"))
        order = PaperOrder(
            id=order_id,
            client_order_id=client_order_id,
            sequence=self._sequence,
            symbol=symbol,
            asset_class="us_option" if isinstance(instrument, OptionContract) else "us_equity",
            side=side,
            order_type=order_type,
            time_in_force=tif,
            quantity=quantity,
            notional=notional,
            limit_price=limit if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None,
            stop_price=stop if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) else None,
            trail_price=trail_price if order_type is OrderType.TRAILING_STOP else None,
            trail_percent=trail_percent if order_type is OrderType.TRAILING_STOP else None,
            extended_hours=bool(body.get("extended_hours", False)),
            created_ns=self._now_ns,
            multiplier=instrument.multiplier,
        )
        if reject_reason is not None:
            order.status = OrderStatus.ACCEPTED
            answer = order.to_json()
            self._store(order)
            order.status, order.failed_ns, order.updated_ns = OrderStatus.REJECTED, self._now_ns, self._now_ns
            order.reason = reject_reason
            return answer, [self._update("rejected", order, self._now_ns)]
        command = SubmitOrder(
            client_order_id=ClientOrderId._from_checked_parts(order_id),
            strategy_id=_STRATEGY,
            symbol=symbol,
            side=side,
            quantity=quantity,
            order_type=order_type,
            time_in_force=tif,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            trail_price=order.trail_price,
            trail_percent=order.trail_percent,
            ts_ns=self._now_ns,
        )
        [event] = self._venue.submit([command], self._now_ns)
        if isinstance(event, OrderRejected):
            self._sequence -= 1
            raise invalid(event.reason)
        self._store(order)
        updates = self._apply([event])
        return order.to_json(), updates

    def replace(self, order_id: str, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Handle ``PATCH /v2/orders/{order_id}``: a new order replaces a working one.

        ``qty`` is the new total quantity (the new order carries the old filled quantity).

        Returns:
            The new order, and the trade updates (``replaced`` for the old order, ``new`` for the new).

        Raises:
            PaperApiError: 404 for an unknown order; 422 for an order no longer open, invalid
                terms, a duplicate ``client_order_id`` or a change the simulator cannot make.
        """
        old = self.order(order_id)
        if not isinstance(body, dict) or not body:
            raise invalid(f"the replace body must be a non-empty JSON object, got {body!r}")
        if not old.is_open:
            raise PaperApiError(
                422,
                f"order {order_id} is {old.status.value}, not open: it cannot be replaced",
                CODE_UNPROCESSABLE,
            )
        unknown = sorted(set(body) - _REPLACE_FIELDS)
        if unknown:
            raise invalid(f"unknown replace fields {unknown}")
        tif = body.get("time_in_force")
        if tif is not None and tif != old.time_in_force.value:
            raise invalid(f"changing time_in_force ({old.time_in_force.value} -> {tif!r}) is not supported "
                           "by the paper server")
        quantity = positive(body, "qty")
        trail = positive(body, "trail")
        if trail is not None and old.trail_percent is not None:
            raise invalid("replacing a trail_percent is not supported by the paper server")
        client_order_id = body.get("client_order_id")
        if client_order_id is None:
            client_order_id = str(uuid.uuid5(NAMESPACE, f"client:{self._sequence + 1}"))
        if not isinstance(client_order_id, str) or not 0 < len(client_order_id) <= _MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be 1 to 128 characters, got {client_order_id!r}")
        if client_order_id in self._by_client_id:
            raise invalid(f"client_order_id must be unique: {client_order_id!r} was already used")
        new_id = str(uuid.uuid5(NAMESPACE, f"order:{self._sequence + 1}"))
        command = ReplaceOrder(
            client_order_id=ClientOrderId._from_checked_parts(old.id),
            new_client_order_id=ClientOrderId._from_checked_parts(new_id),
            ts_ns=self._now_ns,
            quantity=quantity,
            limit_price=positive(body, "limit_price"),
            stop_price=positive(body, "stop_price"),
            trail_price=trail,
        )
        events = self._venue.replace([command])
        if not events:  # the venue no longer works it: finished in the same instant
            raise PaperApiError(422, f"order {order_id} is no longer open", CODE_UNPROCESSABLE)
        if isinstance(events[0], OrderRejected):
            raise invalid(events[0].reason)
        self._sequence += 1
        new = PaperOrder(
            id=new_id,
            client_order_id=client_order_id,
            sequence=self._sequence,
            symbol=old.symbol,
            asset_class=old.asset_class,
            side=old.side,
            order_type=old.order_type,
            time_in_force=old.time_in_force,
            quantity=quantity if quantity is not None else old.quantity,
            notional=None,
            limit_price=command.limit_price if command.limit_price is not None else old.limit_price,
            stop_price=command.stop_price if command.stop_price is not None else old.stop_price,
            trail_price=trail if trail is not None else old.trail_price,
            trail_percent=old.trail_percent,
            extended_hours=old.extended_hours,
            created_ns=self._now_ns,
            multiplier=old.multiplier,
            filled_quantity=old.filled_quantity,
            filled_value=old.filled_value,
            replaces=old.id,
        )
        self._store(new)
        return new.to_json(), self._apply(events)

    def cancel(self, order_id: str) -> list[dict[str, Any]]:
        """Handle ``DELETE /v2/orders/{order_id}``; the cancel takes effect at once.

        Returns:
            The trade updates (one ``canceled``).

        Raises:
            PaperApiError: 404 for an unknown order, 422 for one that is no longer open.
        """
        order = self.order(order_id)
        if not order.is_open:
            raise PaperApiError(
                422,
                f"order {order_id} is {order.status.value}, not open: it cannot be canceled",
                CODE_UNPROCESSABLE,
            )
        command = CancelOrder(client_order_id=ClientOrderId._from_checked_parts(order.id), ts_ns=self._now_ns)
        return self._apply(self._venue.cancel([command]))

    def cancel_all(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Handle ``DELETE /v2/orders``: cancel every open order.

        Returns:
            Alpaca's multi-status items ``{"id", "status": 200, "body": order}``, and the trade updates.
        """
        updates = self._apply(self._venue.cancel_all(self._now_ns, "cancel all"))
        items = []
        for update in updates:
            order = update["order"]
            items.append({"id": order["id"], "status": 200, "body": order})
        return items, updates

    def order(self, order_id: str) -> PaperOrder:
        """Return the order with this Alpaca id.

        Raises:
            PaperApiError: 404 if there is none.
        """
        order = self._orders.get(order_id.lower())
        if order is None:
            raise PaperApiError(404, f"order not found: {order_id!r}", CODE_NOT_FOUND)
        return order

    def order_by_client_id(self, client_order_id: str | None) -> PaperOrder:
        """Return the order with this ``client_order_id``.

        Raises:
            PaperApiError: 422 if the parameter is missing, 404 if no order has it.
        """
        if not client_order_id:
            raise invalid("missing required parameter 'client_order_id'")
        order = self._by_client_id.get(client_order_id)
        if order is None:
            message = f"order not found for client_order_id {client_order_id!r}"
            raise PaperApiError(404, message, CODE_NOT_FOUND)
        return order

    def list_orders(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Handle ``GET /v2/orders`` (``status``, ``limit``, ``after``, ``until``, ``direction``,
        ``side``, ``symbols``; ``after`` and ``until`` are exclusive bounds on ``submitted_at``).

        Raises:
            PaperApiError: 422 for an invalid parameter.
        """
        status = query.get("status") or "open"
        if status not in ("open", "closed", "all"):
            raise invalid(f"invalid status {status!r}; expected open, closed or all")
        direction = query.get("direction") or "desc"
        if direction not in ("asc", "desc"):
            raise invalid(f"invalid direction {direction!r}; expected asc or desc")
        limit_text = query.get("limit")
        try:
            limit = _DEFAULT_ORDER_LIMIT if not limit_text else int(limit_text)
        except ValueError:
            raise invalid(f"invalid limit {limit_text!r}; expected an integer") from None
        if not 1 <= limit <= _MAX_ORDER_LIMIT:
            raise invalid(f"invalid limit {limit}; expected 1 to {_MAX_ORDER_LIMIT}")
        after, until = _instant(query, "after"), _instant(query, "until")
        side = query.get("side")
        if side is not None and side not in ("buy", "sell"):
            raise invalid(f"invalid side {side!r}; expected buy or sell")
        symbols = {s.strip().upper() for s in query.get("symbols", "").split(",") if s.strip()}
        chosen = [
            order
            for order in self._orders.values()
            if (status == "all" or order.is_open == (status == "open"))
            and (after is None or order.created_ns > after)
            and (until is None or order.created_ns < until)
            and (side is None or order.side.value == side)
            and (not symbols or order.symbol in symbols)
        ]
        chosen.sort(key=lambda order: order.sequence, reverse=direction == "desc")
        return [order.to_json() for order in chosen[:limit]]

    # ------------------------------------------------------------------ account

    def account(self) -> dict[str, Any]:
        """Return ``GET /v2/account``: the ledger's cash, equity and buying power (open buy orders
        reserved), long and short market values and margin."""
        p = self._portfolio
        long_value = short_value = ZERO
        for position in p.positions().values():
            if position.quantity > 0:
                long_value += position.market_value
            else:
                short_value += position.market_value
        buying_power = max(ZERO, p.buying_power - self._reserved())
        margin = self._account.account_type == "margin"
        initial = p.initial_margin_requirement
        return {
            "id": self._account_id,
            "account_number": "PA" + self._account_id.replace("-", "")[:10].upper(),
            "status": "ACTIVE",
            "crypto_status": "INACTIVE",
            "currency": "USD",
            "buying_power": text(buying_power),
            "regt_buying_power": text(buying_power),
            "daytrading_buying_power": "0",
            "non_marginable_buying_power": text(max(ZERO, p.cash)),
            "options_buying_power": text(max(ZERO, p.cash)),
            "cash": text(p.cash),
            "accrued_fees": "0",
            "pending_transfer_out": None,
            "pending_transfer_in": "0",
            "portfolio_value": text(p.equity),
            "pattern_day_trader": False,
            "trading_blocked": False,
            "transfers_blocked": False,
            "account_blocked": False,
            "created_at": rfc3339(0),
            "trade_suspended_by_user": False,
            "multiplier": text(self._account.margin_multiplier) if margin else "1",
            "shorting_enabled": margin,
            "equity": text(p.equity),
            "last_equity": text(p.start_of_day_equity),
            "long_market_value": text(long_value),
            "short_market_value": text(short_value),
            "initial_margin": text(initial),
            "maintenance_margin": text(initial),
            "last_maintenance_margin": "0",
            "sma": "0",
            "daytrade_count": 0,
            "options_approved_level": 2,
            "options_trading_level": 2,
        }

    def positions(self) -> list[dict[str, Any]]:
        """Return ``GET /v2/positions``: open positions, by symbol."""
        return [self._position_json(symbol) for symbol in sorted(self._portfolio.positions())]

    def position(self, symbol: str) -> dict[str, Any]:
        """Return ``GET /v2/positions/{symbol}``.

        Raises:
            PaperApiError: 404 if no position is open in ``symbol``.
        """
        symbol = symbol.strip().upper()
        if symbol not in self._portfolio.positions():
            raise PaperApiError(404, f"position does not exist: {symbol!r}", CODE_NOT_FOUND)
        return self._position_json(symbol)

    def asset(self, symbol: str) -> dict[str, Any]:
        """Return ``GET /v2/assets/{symbol}``.

        Raises:
            PaperApiError: 404 for a symbol outside the universe.
        """
        symbol = symbol.strip().upper()
        instrument = self._instrument(symbol, 404)
        option = isinstance(instrument, OptionContract)
        return {
            "id": asset_id(symbol),
            "class": "us_option" if option else "us_equity",
            "exchange": _EXCHANGE,
            "symbol": symbol,
            "name": symbol,
            "status": "active",
            "tradable": True,
            "marginable": not option,
            "shortable": not option,
            "easy_to_borrow": not option,
            "fractionable": bool(instrument.lot_size < 1),
            "min_order_size": text(instrument.lot_size),
            "min_trade_increment": text(instrument.lot_size),
            "price_increment": "0.01",
            "maintenance_margin_requirement": 30,
            "attributes": [],
        }

    def clock(self) -> dict[str, Any]:
        """Return ``GET /v2/clock`` at the simulated time (New York offsets, as Alpaca)."""
        opens, closes = self._sessions_around(self._now_ns)
        now = self._now_ns
        is_open = bool(np.any((opens <= now) & (now < closes)))
        next_open = opens[opens > now]
        next_close = closes[closes > now]
        if next_open.size == 0 or next_close.size == 0:
            raise PaperApiError(500, f"the calendar has no session after {rfc3339(now)}")
        return {
            "timestamp": eastern(now),
            "is_open": is_open,
            "next_open": eastern(int(next_open[0])),
            "next_close": eastern(int(next_close[0])),
        }

    def calendar(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Return ``GET /v2/calendar?start=&end=`` (dates inclusive; the whole calendar by default).

        Raises:
            PaperApiError: 422 for a date that is not ``YYYY-MM-DD``.
        """
        start = _day(query, "start") or date(1990, 1, 1)
        end = _day(query, "end") or date(2100, 1, 1)
        opens, closes = self._trading_calendar().opens_closes_ns(start, end)
        if opens.size == 0:
            return []
        local_open = _new_york(opens)
        local_close = _new_york(closes)
        days = local_open.strftime("%Y-%m-%d")
        open_text, close_text = local_open.strftime("%H:%M"), local_close.strftime("%H:%M")
        return [
            {"date": d, "open": o, "close": c, "session_open": "0400", "session_close": "2000"}
            for d, o, c in zip(days, open_text, close_text, strict=True)
        ]

    # ------------------------------------------------------------------ internals

    def _store(self, order: PaperOrder) -> None:
        self._orders[order.id] = order
        self._by_client_id[order.client_order_id] = order

    def _instrument(self, symbol: str, status: int) -> Instrument:
        if self._universe is not None and symbol not in self._universe:
            raise PaperApiError(status, f"asset not found: {symbol!r} is not in the paper server's universe",
                                CODE_NOT_FOUND if status == 404 else CODE_INVALID)
        try:
            return self._instrument_for(symbol)
        except (AmcpError, LookupError, ValueError, TypeError) as exc:
            raise PaperApiError(status, f"asset not found: {symbol!r} ({exc})",
                                CODE_NOT_FOUND if status == 404 else CODE_INVALID) from None

    def _mark(self, symbol: str) -> Decimal | None:
        last = self._closes.get(symbol)
        return None if last is None else Decimal(repr(last[1]))

    def _reference_price(
        self, symbol: str, order_type: OrderType, limit: Decimal | None, stop: Decimal | None
    ) -> Decimal | None:
        """The price buying power is checked at: limit, else stop, else the last close (or None)."""
        if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and limit is not None:
            return limit
        if order_type is OrderType.STOP and stop is not None:
            return stop
        return self._mark(symbol)

    def _reserved(self) -> Decimal:
        """USD held for open orders that add exposure: leaves × reference price × multiplier."""
        total = ZERO
        for order in self._orders.values():
            if order.is_open and order.side is OrderSide.BUY:
                price = self._reference_price(
                    order.symbol, order.order_type, order.limit_price, order.stop_price
                )
                if price is not None:
                    total += order.leaves * price * order.multiplier
        return total

    def _check_buying_power(
        self, symbol: str, side: OrderSide, quantity: Decimal, price: Decimal | None, multiplier: Decimal
    ) -> None:
        """403 when the order needs more than the buying power left (or, in a cash account, shares
        it does not hold). A buy with no known price is not checked (see the module doc)."""
        held = self._portfolio.positions().get(symbol)
        held_quantity = held.quantity if held is not None else ZERO
        if side is OrderSide.SELL:
            selling = sum(
                (
                    o.leaves
                    for o in self._orders.values()
                    if o.is_open and o.symbol == symbol and o.side is side
                ),
                ZERO,
            )
            available = max(ZERO, held_quantity - selling)
            opening = quantity - available  # the part that would open or add to a short
            if opening <= 0:
                return
            if self._account.account_type == "cash":
                raise PaperApiError(
                    403,
                    f"insufficient qty available for order (requested: {text(quantity)}, available: "
                    f"{text(available)}); a cash account cannot sell short",
                    CODE_FORBIDDEN,
                )
            quantity = opening
        if price is None:
            return
        cost = quantity * price * multiplier
        buying_power = max(ZERO, self._portfolio.buying_power - self._reserved())
        if cost > buying_power:
            raise PaperApiError(
                403,
                f"insufficient buying power: the order needs {text(cost)} USD, "
                f"{text(buying_power)} USD is available",
                CODE_FORBIDDEN,
                buying_power=text(buying_power) or "0",
                cost_basis=text(cost) or "0",
            )

    def _apply(self, events: list[OrderEvent]) -> list[dict[str, Any]]:
        """Apply venue events to the orders and the ledger; return their trade updates."""
        updates: list[dict[str, Any]] = []
        for event in events:
            order = self._orders.get(str(event.client_order_id))
            if order is None:
                raise ExecutionError(f"venue event {event!r} names an order the paper broker does not know")
            ts = event.ts_ns
            order.updated_ns = max(order.updated_ns, ts)
            if isinstance(event, OrderAccepted):
                order.status = OrderStatus.NEW
                updates.append(self._update("new", order, ts))
            elif isinstance(event, OrderFilled):
                self._portfolio.apply_fill(event)
                order.filled_quantity += event.last_quantity
                order.filled_value += event.last_quantity * event.last_price
                order.fills.append((ts, event.last_quantity, event.last_price))
                done = order.filled_quantity >= order.quantity
                order.status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
                if done:
                    order.filled_ns = ts
                position = self._portfolio.position(order.symbol)
                self._executions += 1
                updates.append(
                    self._update(
                        "fill" if done else "partial_fill",
                        order,
                        ts,
                        price=text(event.last_price),
                        qty=text(event.last_quantity),
                        position_qty=text(position.quantity if position is not None else ZERO),
                        execution_id=str(uuid.uuid5(NAMESPACE, f"execution:{event.trade_id}")),
                    )
                )
            elif isinstance(event, OrderCanceled):
                order.status, order.canceled_ns, order.reason = OrderStatus.CANCELED, ts, event.reason
                updates.append(self._update("canceled", order, ts))
            elif isinstance(event, OrderExpired):
                order.status, order.expired_ns, order.reason = OrderStatus.EXPIRED, ts, event.reason
                updates.append(self._update("expired", order, ts))
            elif isinstance(event, OrderReplaced):
                order.status, order.replaced_ns = OrderStatus.REPLACED, ts
                order.replaced_by = str(event.new_client_order_id)
                updates.append(self._update("replaced", order, ts))
            else:
                raise ExecutionError(f"unexpected venue event {event!r}")
        return updates

    @staticmethod
    def _update(event: str, order: PaperOrder, ts_ns: int, **fields: str | None) -> dict[str, Any]:
        """A ``trade_updates`` payload: event, order snapshot, timestamp and fill fields."""
        return {"event": event, "order": order.to_json(), "timestamp": rfc3339(ts_ns), **fields}

    def _position_json(self, symbol: str) -> dict[str, Any]:
        position = self._portfolio.positions()[symbol]
        last = self._closes.get(symbol)
        current = position.last_price
        lastday = Decimal(repr(last[2])) if last is not None and last[2] is not None else current
        quantity = position.quantity
        cost = abs(position.cost_basis)
        market_value = position.market_value
        unrealized = position.unrealized_pnl
        intraday = (current - lastday) * quantity * position.multiplier
        lastday_value = abs(lastday * quantity * position.multiplier)
        instrument = self._instrument_for(symbol)
        return {
            "asset_id": asset_id(symbol),
            "symbol": symbol,
            "exchange": _EXCHANGE,
            "asset_class": "us_option" if isinstance(instrument, OptionContract) else "us_equity",
            "asset_marginable": not isinstance(instrument, OptionContract),
            "avg_entry_price": text(average(position.average_price)),
            "qty": text(quantity),
            "qty_available": text(quantity),
            "side": "long" if quantity > 0 else "short",
            "market_value": text(market_value),
            "cost_basis": text(position.cost_basis),
            "unrealized_pl": text(unrealized),
            "unrealized_plpc": text(_ratio(unrealized, cost)),
            "unrealized_intraday_pl": text(intraday),
            "unrealized_intraday_plpc": text(_ratio(intraday, lastday_value)),
            "current_price": text(current),
            "lastday_price": text(lastday),
            "change_today": text(_ratio(current - lastday, lastday)),
        }

    def _trading_calendar(self) -> TradingCalendar:
        if self._calendar is None:
            self._calendar = TradingCalendar()
        return self._calendar

    def _sessions_around(self, ts_ns: int) -> tuple[np.ndarray, np.ndarray]:
        day = new_york_date(ts_ns)
        return self._trading_calendar().opens_closes_ns(day - timedelta(days=7), day + timedelta(days=21))


def _new_york(ts_ns: np.ndarray) -> pd.DatetimeIndex:
    """UTC nanoseconds as New York local times."""
    return pd.DatetimeIndex(ts_ns.view("datetime64[ns]")).tz_localize("UTC").tz_convert(EXCHANGE_TIMEZONE)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    if not denominator:
        return ZERO
    return (numerator / denominator).quantize(Decimal("1E-10"), rounding=ROUND_DOWN).normalize()


def _instant(query: Mapping[str, str], name: str) -> int | None:
    value = query.get(name)
    if not value:
        return None
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        raise invalid(f"invalid {name} {value!r}; expected an RFC-3339 timestamp") from None
    if stamp is pd.NaT:
        raise invalid(f"invalid {name} {value!r}; expected an RFC-3339 timestamp")
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return int(stamp.value)


def _day(query: Mapping[str, str], name: str) -> date | None:
    value = query.get(name)
    if not value:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        raise invalid(f"invalid {name} {value!r}; expected YYYY-MM-DD") from None
