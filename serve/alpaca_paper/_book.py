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

The broker is three layers, one module each: :mod:`serve.alpaca_paper._catalog` (the shared
state and every answer that changes nothing: orders, account, positions, assets, clock,
calendar, option contracts, activities, buying power), :mod:`serve.alpaca_paper._groups` (the
order classes and lifecycle: legs, venue events, fills, cancels, the bracket/oco/oto/mleg rules)
and this one (the requests that change orders, and simulated time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from amcp.config import AccountConfig, VenueConfig
from amcp.data.calendar import TradingCalendar
from amcp.domain.data import BarBatch
from amcp.domain.enums import OrderStatus, OrderType
from amcp.domain.identifiers import ClientOrderId
from amcp.domain.instruments import Instrument, OptionContract
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.domain.messages import OrderRejected, ReplaceOrder
from amcp.engine.clock import new_york_date
from amcp.errors import AmcpError, ExecutionError
from amcp.execution.fees import AlpacaFeeModel
from amcp.execution.venue import SimulatedVenue
from amcp.portfolio.ledger import Portfolio
from serve.alpaca_paper._groups import ENTRY_TYPES, GROUP_TIME_IN_FORCE, OrderGroups, alpaca_order_id
from serve.alpaca_paper._orders import (
    CODE_UNPROCESSABLE,
    ORDER_CLASSES,
    POSITION_INTENTS,
    ExitTerms,
    PaperApiError,
    PaperOrder,
    invalid,
    parse_enum,
    parse_exits,
    positive,
    rfc3339,
    text,
)

_REPLACE_FIELDS = frozenset({"qty", "time_in_force", "limit_price", "stop_price", "trail", "client_order_id"})


class PaperBroker(OrderGroups):
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
        venue = SimulatedVenue(venue_config, instrument_for)
        fees = AlpacaFeeModel.from_config(venue_config.fees)  # mleg fills, which bypass the venue
        portfolio = Portfolio(account_config, instrument_for)
        super().__init__(
            venue=venue,
            fees=fees,
            start_ts_ns=start_ts_ns,
            portfolio=portfolio,
            account_config=account_config,
            instrument_for=instrument_for,
            symbols=symbols,
            calendar=calendar,
        )
        self._session_day: date | None = None

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

        Fills are booked in the ledger, then every symbol is marked at its close. Open mleg
        orders are matched against the current option quotes; a DAY mleg order works in the
        session of the first batch after its submit (as the venue's DAY orders do) and expires
        before a batch of a later session, or at the end of its own when ``session_closed``.

        Returns:
            The ``trade_updates`` payloads produced, in order.

        Raises:
            ExecutionError: if ``batch`` is not a ``BarBatch`` or is earlier than now.
        """
        if not isinstance(batch, BarBatch):
            raise ExecutionError(f"advance expects a BarBatch, got {type(batch).__name__}")
        self.advance_clock(batch.ts_ns)
        today = new_york_date(batch.ts_ns)
        if today != self._session_day:
            self._portfolio.start_session(batch.ts_ns)
            self._session_day = today
        events = self._void_losing_exits(self._venue.on_bars(batch, session_closed=session_closed))
        updates = self._apply(events)
        updates.extend(self._expire_mleg(today, closing=False))
        updates.extend(self._match_all_mleg())
        if session_closed:
            updates.extend(self._expire_mleg(today, closing=True))
        self._portfolio.mark_batch(batch)
        closes = self._closes
        for symbol, close in zip(batch.symbols, batch.close.tolist(), strict=True):
            if not 0.0 < close < math.inf:
                continue
            last = closes.get(symbol)
            if last is None:
                closes[symbol] = (today, close, None)
            elif last[0] == today:
                closes[symbol] = (today, close, last[2])
            else:
                closes[symbol] = (today, close, last[1])
        return updates

    # ------------------------------------------------------------------ options

    def set_option_quotes(self, quotes: Mapping[str, tuple[Decimal, Decimal]]) -> list[dict[str, Any]]:
        """Set the bid and ask (USD per share) of option contracts, match mleg orders, mark positions.

        Quotes stay until replaced. Positions in a quoted contract are marked at the mid.

        Args:
            quotes: OCC symbol to ``(bid, ask)``, with ``0 <= bid <= ask`` and ``ask > 0``
                (a zero bid: nothing can be sold).

        Returns:
            The ``trade_updates`` payloads of the fills.

        Raises:
            ExecutionError: for a symbol that is not an OCC option symbol or an invalid quote;
                nothing is changed.
        """
        if not isinstance(quotes, Mapping):
            raise ExecutionError(
                f"set_option_quotes expects a mapping of OCC symbol to (bid, ask), got {quotes!r}"
            )
        checked: dict[str, tuple[Decimal, Decimal]] = {}
        for symbol, quote in quotes.items():
            contract = _option_contract(symbol)
            try:
                bid, ask = (Decimal(repr(v)) if isinstance(v, float) else Decimal(v) for v in quote)
            except (TypeError, ValueError, ArithmeticError):
                raise ExecutionError(
                    f"quote of {symbol!r} must be a (bid, ask) pair of numbers, got {quote!r}"
                ) from None
            if not (bid.is_finite() and ask.is_finite() and 0 <= bid <= ask and ask > 0):
                raise ExecutionError(
                    f"quote of {symbol!r} needs 0 <= bid <= ask and ask > 0, got bid {bid}, ask {ask}"
                )
            checked[contract.occ_symbol] = (bid, ask)
        self._option_quotes.update(checked)
        updates = self._match_all_mleg()
        mids = {symbol: (bid + ask) / 2 for symbol, (bid, ask) in checked.items()}
        self._portfolio.mark(mids, self._now_ns)
        return updates

    # ------------------------------------------------------------------ orders

    def submit(
        self, body: Any, reject_reason: str | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Handle ``POST /v2/orders`` for every order class (:mod:`serve.alpaca_paper._groups`).

        Args:
            body: the decoded JSON body.
            reject_reason: if given, the order (with its legs) is accepted (status ``accepted``)
                and at once rejected by the "exchange" with this reason (``rejected`` updates).

        Returns:
            The order as answered (legs nested), and the trade updates produced.

        Raises:
            PaperApiError: 422 for invalid terms or a duplicate ``client_order_id``, 403 for
                insufficient buying power or quantity.
        """
        if not isinstance(body, dict):
            raise invalid(f"the order body must be a JSON object, got {type(body).__name__}")
        order_class = body.get("order_class") or "simple"
        if order_class not in ORDER_CLASSES:
            raise invalid(f"invalid order_class {order_class!r}; expected one of {list(ORDER_CLASSES)}")
        if order_class == "mleg":
            return self._submit_mleg(body, reject_reason)
        if body.get("legs"):
            raise invalid(f"legs are for mleg orders; a {order_class} order takes take_profit and stop_loss")
        exits = parse_exits(body)
        if order_class == "simple" and (exits.take_profit is not None or exits.stop_price is not None):
            raise invalid("take_profit and stop_loss need order_class bracket, oco or oto")
        order, instrument = self._parse_order(body, order_class, exits)
        legs = self._exit_legs(order, exits, instrument)
        if reject_reason is not None:
            return self._reject_group(order, legs, reject_reason)
        event = self._venue_submit(order)
        if isinstance(event, OrderRejected):
            raise invalid(event.reason)
        self._sequence += 1 + len(legs)
        for member in (order, *legs):
            self._store(member)
        updates = self._apply([event])
        if order_class == "oco":
            updates.extend(self._submit_exit(legs[0]))
        return self.order_json(order), updates

    def _parse_order(
        self, body: dict[str, Any], order_class: str, exits: ExitTerms
    ) -> tuple[PaperOrder, Instrument]:
        """The simple order, entry or oco take-profit a body describes, checked (not stored)."""
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
        intent = body.get("position_intent")
        if intent is not None and (not isinstance(intent, str) or POSITION_INTENTS.get(intent) is not side):
            raise invalid(f"invalid position_intent {intent!r} for a {side.value} order; expected one of "
                           f"{[name for name, s in POSITION_INTENTS.items() if s is side]}")
        if order_class != "simple":
            if notional is not None or body.get("extended_hours"):
                raise invalid(f"{order_class} orders take qty, not notional, and no extended_hours")
            if tif not in GROUP_TIME_IN_FORCE:
                raise invalid(f"{order_class} orders need time_in_force day or gtc, got {tif.value!r}")
            allowed = (OrderType.LIMIT,) if order_class == "oco" else ENTRY_TYPES
            if order_type not in allowed:
                raise invalid(f"{order_class} orders need type {' or '.join(t.value for t in allowed)}, "
                               f"got {order_type.value!r}")
        if order_class == "oco":
            if limit is not None and limit != exits.take_profit:
                raise invalid(
                    f"an oco order's limit_price ({text(limit)}) must equal take_profit.limit_price "
                    f"({text(exits.take_profit)}) or be omitted"
                )
            limit = exits.take_profit
        client_order_id = self._client_order_id(body.get("client_order_id"), self._sequence + 1)
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
        sequence = self._sequence + 1
        order = PaperOrder(
            id=alpaca_order_id(sequence),
            client_order_id=client_order_id,
            sequence=sequence,
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
            order_class=order_class,
            position_intent=intent,
        )
        return order, instrument

    def replace(self, order_id: str, body: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Handle ``PATCH /v2/orders/{order_id}``: a new order replaces a working one.

        ``qty`` is the new total quantity (the new order carries the old filled quantity). A
        replaced leg or oco parent passes its place in the group to the new order.

        Returns:
            The new order, and the trade updates (``replaced`` for the old order, ``new`` for the new).

        Raises:
            PaperApiError: 404 for an unknown order; 422 for an order no longer open, invalid
                terms, a duplicate ``client_order_id`` or a change the simulator cannot make
                (an mleg order, a held leg, an entry whose legs are held).
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
        if old.is_mleg:
            raise invalid(f"order {order_id} is part of an mleg order; the paper server cannot replace those")
        held = OrderStatus.HELD
        if old.status is held or any(self._orders[leg_id].status is held for leg_id in old.leg_ids):
            raise invalid(f"order {order_id} is a {old.order_class} order whose exits wait for the entry; "
                           "the paper server cannot replace it until the entry fills")
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
        client_order_id = self._client_order_id(body.get("client_order_id"), self._sequence + 1)
        new_id = alpaca_order_id(self._sequence + 1)
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
            order_class=old.order_class,
            parent_id=old.parent_id,
            leg_ids=list(old.leg_ids),
            position_intent=old.position_intent,
        )
        if old.parent_id is not None:
            parent = self._orders[old.parent_id]
            parent.leg_ids = [new.id if leg_id == old.id else leg_id for leg_id in parent.leg_ids]
        for leg_id in old.leg_ids:
            self._orders[leg_id].parent_id = new.id
        self._store(new)
        return self.order_json(new), self._apply(events)

    def cancel(self, order_id: str) -> list[dict[str, Any]]:
        """Handle ``DELETE /v2/orders/{order_id}``; the cancel takes effect at once.

        Canceling a bracket or oto entry cancels its held exits (or, if it is partly filled,
        releases them for the filled quantity); canceling an oco or mleg order cancels its legs.

        Returns:
            The trade updates (``canceled`` for the order and each leg it takes along).

        Raises:
            PaperApiError: 404 for an unknown order, 422 for one that is no longer open or a
                leg of an mleg order (cancel the mleg order).
        """
        order = self.order(order_id)
        if not order.is_open:
            raise PaperApiError(
                422,
                f"order {order_id} is {order.status.value}, not open: it cannot be canceled",
                CODE_UNPROCESSABLE,
            )
        if order.is_mleg and order.parent_id is not None:
            raise PaperApiError(
                422, f"order {order_id} is a leg of mleg order {order.parent_id}: cancel that order",
                CODE_UNPROCESSABLE,
            )
        return self._cancel_one(order, self._now_ns, "")

    def cancel_all(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Handle ``DELETE /v2/orders``: cancel every open order, legs included.

        Returns:
            Alpaca's multi-status items ``{"id", "status": 200, "body": order}``, and the trade updates.
        """
        updates = self._apply(self._venue.cancel_all(self._now_ns, "cancel all"))
        for order in list(self._orders.values()):
            if order.is_open and not (order.is_mleg and order.parent_id is not None):
                updates.extend(self._cancel_one(order, self._now_ns, "cancel all"))
        items = []
        for update in updates:
            if update["event"] == "canceled":
                order = update["order"]
                items.append({"id": order["id"], "status": 200, "body": order})
        return items, updates


def _option_contract(symbol: object) -> OptionContract:
    """Parse an OCC option symbol.

    Raises:
        ExecutionError: if ``symbol`` is not one.
    """
    if not isinstance(symbol, str):
        raise ExecutionError(f"option quotes are keyed by OCC symbol, got {symbol!r}")
    try:
        return OptionContract.from_occ(symbol)
    except AmcpError as exc:
        raise ExecutionError(f"option quotes are keyed by OCC symbol: {exc}") from None

