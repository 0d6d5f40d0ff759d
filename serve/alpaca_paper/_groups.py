"""Order groups and the order lifecycle of the paper broker: the side that changes orders.

:class:`OrderGroups` builds the legs of bracket, oco, oto and mleg orders, sends orders to the
venue, applies the venue's events (accepted, filled, canceled, expired, replaced) to the orders
and the ledger, enforces the group rules below and fills mleg orders at the option quotes. Every
change is answered with its ``trade_updates`` payloads.

Order classes (https://docs.alpaca.markets/docs/orders-at-alpaca):

- ``bracket``: an entry (market or limit, day or gtc) and two exits of the opposite side and the
  same quantity, ``take_profit`` (a limit) and ``stop_loss`` (a stop, or a stop-limit with
  ``stop_loss.limit_price``), answered nested in ``legs`` (take-profit first). The exits are
  ``held`` (the venue does not see them) until the entry is completely filled, then submitted
  (``new``), so they can fill from the next bar on. If the entry ends partly filled (canceled,
  expired) they are submitted for the filled quantity; if it ends unfilled they are canceled.
  The exits are one-cancels-other: the first fill (even partial) of one cancels the other. When
  one bar reaches both, the take-profit stands only if it filled better than its limit (a gap
  through it at the open, which came first); otherwise the stop-loss is taken to have come first
  and the take-profit's fill in that bar is void.
- ``oco``: an exit pair, both working at once: the parent is the take-profit limit
  (``take_profit.limit_price``; a top-level ``limit_price`` must equal it), the one leg the
  stop-loss. Canceling the parent cancels the leg.
- ``oto``: an entry and exactly one held exit (``take_profit`` or ``stop_loss``), as a bracket.
- ``mleg``: 2 to 4 option legs filled together or not at all, never by the venue: at the option
  quotes of :meth:`~serve.alpaca_paper._book.PaperBroker.set_option_quotes` (a buy leg at the
  ask, a sell leg at the bid; quote sizes are not modelled). The net price per strategy unit is
  ``Σ (+1 buy / −1 sell) × ratio_qty × price`` (positive: a debit paid, negative: a credit
  received); a limit order fills when the net price is at most its ``limit_price``. Matching is
  tried on submit, on every quote update and on every bar batch. Leg quantities are
  ``ratio_qty × qty`` contracts; each leg fill moves cash by price × multiplier × quantity.

Every fill event carries an ``execution_id``; every fill of a symbol is also a FILL account
activity with that id. An mleg strategy order's own fill update carries the net price and its
own execution id (it trades no symbol, so it has no activity).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from datetime import date
from decimal import Decimal
from typing import Any

from amcp.config import AccountConfig
from amcp.data.calendar import TradingCalendar
from amcp.domain.enums import LiquiditySide, OrderSide, OrderStatus, OrderType, TimeInForce
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId
from amcp.domain.instruments import Instrument
from amcp.domain.messages import (
    CancelOrder,
    OrderAccepted,
    OrderCanceled,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    SubmitOrder,
)
from amcp.errors import ExecutionError
from amcp.execution.fees import AlpacaFeeModel
from amcp.execution.venue import SimulatedVenue
from amcp.portfolio.ledger import Portfolio
from serve.alpaca_paper._catalog import PaperCatalog
from serve.alpaca_paper._orders import (
    NAMESPACE,
    ZERO,
    ExitTerms,
    FillActivity,
    PaperOrder,
    invalid,
    number,
    parse_enum,
    parse_option_legs,
    positive,
    rfc3339,
    text,
)

_STRATEGY = StrategyId("alpaca-paper")
_MAX_CLIENT_ORDER_ID = 128
GROUP_TIME_IN_FORCE = (TimeInForce.DAY, TimeInForce.GTC)
"""The time in force a bracket, oco, oto or mleg order may have."""
ENTRY_TYPES = (OrderType.MARKET, OrderType.LIMIT)
"""The order types a bracket or oto entry and an mleg order may have."""
_ENTRY_CLASSES = ("bracket", "oto")


class OrderGroups(PaperCatalog):
    """The side of the paper broker that changes orders (module doc).

    Not built alone: :class:`~serve.alpaca_paper._book.PaperBroker` is the class to construct.

    Args:
        venue: matches every order but mleg orders.
        fees: the fee model of mleg fills, which bypass the venue.
        start_ts_ns, portfolio, account_config, instrument_for, symbols, calendar: as
            :class:`~serve.alpaca_paper._catalog.PaperCatalog`.
    """

    def __init__(
        self,
        *,
        venue: SimulatedVenue,
        fees: AlpacaFeeModel,
        start_ts_ns: int,
        portfolio: Portfolio,
        account_config: AccountConfig,
        instrument_for: Callable[[str], Instrument],
        symbols: Collection[str] | None,
        calendar: TradingCalendar | None,
    ) -> None:
        super().__init__(
            start_ts_ns=start_ts_ns,
            portfolio=portfolio,
            account_config=account_config,
            instrument_for=instrument_for,
            symbols=symbols,
            calendar=calendar,
        )
        self._venue = venue
        self._fees = fees
        self._sequence = 0
        self._mleg_trades = 0

    # ------------------------------------------------------------------ group entry

    def _exit_legs(self, order: PaperOrder, exits: ExitTerms, instrument: Instrument) -> list[PaperOrder]:
        """Check the exits of a bracket, oco or oto order against its main order; build its legs.

        Bracket and oto exits take the opposite side and are held; the oco stop-loss keeps the
        side of its take-profit parent and works at once.
        """
        kind = order.order_class
        if kind == "simple":
            return []
        take_profit, stop = exits.take_profit, exits.stop_price
        if kind in ("bracket", "oco") and (take_profit is None or stop is None):
            raise invalid(f"{kind} orders need both take_profit.limit_price and stop_loss.stop_price")
        if kind == "oto" and (take_profit is None) == (stop is None):
            raise invalid("oto orders need exactly one of take_profit and stop_loss")
        for label, price in (
            ("take_profit.limit_price", take_profit),
            ("stop_loss.stop_price", stop),
            ("stop_loss.limit_price", exits.stop_limit),
        ):
            if price is not None and not instrument.is_valid_price(price):
                raise invalid(f"{label} {text(price)} is not on the tick of {order.symbol}")
        exit_side = order.side if kind == "oco" else order.side.opposite
        long_exit = exit_side is OrderSide.SELL  # exits of a long position: profit above, stop below
        if take_profit is not None and stop is not None and (take_profit > stop) != long_exit:
            relation = "above" if long_exit else "below"
            raise invalid(f"{kind} {order.side.value}: take_profit.limit_price ({text(take_profit)}) must be "
                           f"{relation} stop_loss.stop_price ({text(stop)})")
        base = None  # the price the exits must lie on either side of: the entry's limit or last close
        if kind != "oco":
            base = self._reference_price(order.symbol, order.order_type, order.limit_price, None)
        if base is not None:
            for label, price, above in (
                ("take_profit.limit_price", take_profit, long_exit),
                ("stop_loss.stop_price", stop, not long_exit),
            ):
                if price is not None and not (price > base if above else price < base):
                    raise invalid(f"{kind} {order.side.value}: {label} ({text(price)}) must be "
                                   f"{'above' if above else 'below'} the entry's base price {text(base)}")
        status = OrderStatus.NEW if kind == "oco" else OrderStatus.HELD
        terms: list[tuple[OrderType, Decimal | None, Decimal | None]] = []
        if take_profit is not None and kind != "oco":
            terms.append((OrderType.LIMIT, take_profit, None))
        if stop is not None:
            stop_type = OrderType.STOP if exits.stop_limit is None else OrderType.STOP_LIMIT
            terms.append((stop_type, exits.stop_limit, stop))
        legs = []
        for offset, (leg_type, leg_limit, leg_stop) in enumerate(terms, start=2):
            sequence = self._sequence + offset
            leg = PaperOrder(
                id=alpaca_order_id(sequence),
                client_order_id=self._client_order_id(None, sequence),
                sequence=sequence,
                symbol=order.symbol,
                asset_class=order.asset_class,
                side=exit_side,
                order_type=leg_type,
                time_in_force=order.time_in_force,
                quantity=order.quantity,
                notional=None,
                limit_price=leg_limit,
                stop_price=leg_stop,
                trail_price=None,
                trail_percent=None,
                extended_hours=False,
                created_ns=self._now_ns,
                multiplier=order.multiplier,
                status=status,
                order_class=kind,
                parent_id=order.id,
            )
            legs.append(leg)
            order.leg_ids.append(leg.id)
        return legs

    def _submit_mleg(
        self, body: dict[str, Any], reject_reason: str | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Handle an ``order_class: mleg`` submit (module doc)."""
        if body.get("symbol"):
            raise invalid(
                f"an mleg order has no top-level symbol (got {body.get('symbol')!r}); "
                "its legs name the contracts"
            )
        if body.get("notional") is not None or body.get("take_profit") or body.get("stop_loss"):
            raise invalid(
                "an mleg order takes qty (strategy units) and legs; no notional, take_profit or stop_loss"
            )
        quantity = positive(body, "qty")
        if quantity is None or quantity != quantity.to_integral_value():
            raise invalid(
                f"an mleg order needs qty, a whole number of strategy units > 0, got {body.get('qty')!r}"
            )
        order_type = parse_enum(body, "type")
        if order_type not in ENTRY_TYPES:
            raise invalid(f"mleg orders need type market or limit, got {order_type.value!r}")
        tif = parse_enum(body, "time_in_force")
        if tif not in GROUP_TIME_IN_FORCE:
            raise invalid(f"mleg orders need time_in_force day or gtc, got {tif.value!r}")
        limit = number(body, "limit_price")
        if (order_type is OrderType.LIMIT) != (limit is not None):
            raise invalid(
                "an mleg limit order needs limit_price, the net price per unit (positive: a debit, "
                "negative: a credit); a market order takes none"
                f" (got type {order_type.value!r}, limit_price {body.get('limit_price')!r})"
            )
        terms = parse_option_legs(body)
        contracts = [self._option_leg(leg.symbol) for leg in terms]
        multipliers = {contract.multiplier for contract in contracts}
        if len(multipliers) != 1:
            raise invalid(f"the legs of an mleg order must share one multiplier, got {sorted(multipliers)}")
        [multiplier] = multipliers
        legs = [(leg, contract.occ_symbol) for leg, contract in zip(terms, contracts, strict=True)]
        for leg, symbol in legs:
            if leg.side is OrderSide.SELL:  # a cash account may not open a short
                self._check_buying_power(symbol, leg.side, leg.ratio * quantity, None, multiplier)
        net = limit if limit is not None else self._net_price([(t.side, t.ratio, s) for t, s in legs])
        if net is not None and net > 0:
            self._require_buying_power(net * quantity * multiplier)
        sequence = self._sequence + 1
        parent = PaperOrder(
            id=alpaca_order_id(sequence),
            client_order_id=self._client_order_id(body.get("client_order_id"), sequence),
            sequence=sequence,
            symbol="",
            asset_class="us_option",
            side=OrderSide.BUY,  # unused: the strategy has no side (its JSON says "")
            order_type=order_type,
            time_in_force=tif,
            quantity=quantity,
            notional=None,
            limit_price=limit,
            stop_price=None,
            trail_price=None,
            trail_percent=None,
            extended_hours=False,
            created_ns=self._now_ns,
            multiplier=multiplier,
            order_class="mleg",
        )
        children = []
        for offset, (leg, symbol) in enumerate(legs, start=2):
            child = PaperOrder(
                id=alpaca_order_id(self._sequence + offset),
                client_order_id=self._client_order_id(None, self._sequence + offset),
                sequence=self._sequence + offset,
                symbol=symbol,
                asset_class="us_option",
                side=leg.side,
                order_type=order_type,
                time_in_force=tif,
                quantity=leg.ratio * quantity,
                notional=None,
                limit_price=None,
                stop_price=None,
                trail_price=None,
                trail_percent=None,
                extended_hours=False,
                created_ns=self._now_ns,
                multiplier=multiplier,
                order_class="mleg",
                parent_id=parent.id,
                position_intent=leg.position_intent,
                ratio_qty=leg.ratio,
            )
            children.append(child)
            parent.leg_ids.append(child.id)
        if reject_reason is not None:
            return self._reject_group(parent, children, reject_reason)
        self._sequence += 1 + len(children)
        for member in (parent, *children):
            self._store(member)
        answer = self.order_json(parent)
        updates = [self._update("new", member, self._now_ns) for member in (parent, *children)]
        updates.extend(self._match_mleg(parent))
        return answer, updates

    def _reject_group(
        self, order: PaperOrder, legs: list[PaperOrder], reason: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Store an order and its legs as accepted, answer that, then reject them all."""
        self._sequence += 1 + len(legs)
        for member in (order, *legs):
            member.status = OrderStatus.ACCEPTED
            self._store(member)
        answer = self.order_json(order)
        for member in (order, *legs):
            member.status, member.reason = OrderStatus.REJECTED, reason
            member.failed_ns = member.updated_ns = self._now_ns
        return answer, [self._update("rejected", member, self._now_ns) for member in (order, *legs)]

    def _store(self, order: PaperOrder) -> None:
        self._orders[order.id] = order
        self._by_client_id[order.client_order_id] = order

    def _client_order_id(self, value: Any, sequence: int) -> str:
        """``value`` checked as a new client order id, or the default for order ``sequence``."""
        if value is None:
            value = str(uuid.uuid5(NAMESPACE, f"client:{sequence}"))
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be 1 to 128 characters, got {value!r}")
        if value in self._by_client_id:
            raise invalid(f"client_order_id must be unique: {value!r} was already used")
        return value

    # ------------------------------------------------------------------ order lifecycle

    def _venue_submit(self, order: PaperOrder) -> OrderEvent:
        """Send an order to the venue now; return its ``OrderAccepted`` or ``OrderRejected``."""
        command = SubmitOrder(
            client_order_id=ClientOrderId._from_checked_parts(order.id),
            strategy_id=_STRATEGY,
            symbol=order.symbol,
            side=order.side,
            quantity=order.quantity,
            order_type=order.order_type,
            time_in_force=order.time_in_force,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            trail_price=order.trail_price,
            trail_percent=order.trail_percent,
            ts_ns=self._now_ns,
        )
        [event] = self._venue.submit([command], self._now_ns)
        return event

    def _submit_exit(self, leg: PaperOrder) -> list[dict[str, Any]]:
        """Send a leg to the venue (its prices were checked on submit); a refusal rejects the leg."""
        event = self._venue_submit(leg)
        if isinstance(event, OrderRejected):
            leg.status, leg.failed_ns, leg.updated_ns, leg.reason = (
                OrderStatus.REJECTED, self._now_ns, self._now_ns, event.reason
            )
            return [self._update("rejected", leg, self._now_ns)]
        return self._apply([event])

    def _apply(self, events: list[OrderEvent]) -> list[dict[str, Any]]:
        """Apply venue events to the orders and the ledger; return their trade updates.

        An event for an order the book has already ended is void: the book canceled it because
        the other exit of its pair filled, and the venue finished it in the same call.
        """
        updates: list[dict[str, Any]] = []
        for event in events:
            order = self._orders.get(str(event.client_order_id))
            if order is None:
                raise ExecutionError(f"venue event {event!r} names an order the paper broker does not know")
            if not order.is_open:
                continue
            ts = event.ts_ns
            order.updated_ns = max(order.updated_ns, ts)
            if isinstance(event, OrderAccepted):
                order.status = OrderStatus.NEW
                updates.append(self._update("new", order, ts))
            elif isinstance(event, OrderFilled):
                execution_id = str(uuid.uuid5(NAMESPACE, f"execution:{event.trade_id}"))
                updates.append(self._book_fill(order, event, execution_id))
                updates.extend(self._after_fill(order, ts))
            elif isinstance(event, OrderCanceled):
                order.status, order.canceled_ns, order.reason = OrderStatus.CANCELED, ts, event.reason
                updates.append(self._update("canceled", order, ts))
                updates.extend(self._after_end(order, ts))
            elif isinstance(event, OrderExpired):
                order.status, order.expired_ns, order.reason = OrderStatus.EXPIRED, ts, event.reason
                updates.append(self._update("expired", order, ts))
                updates.extend(self._after_end(order, ts))
            elif isinstance(event, OrderReplaced):
                order.status, order.replaced_ns = OrderStatus.REPLACED, ts
                order.replaced_by = str(event.new_client_order_id)
                updates.append(self._update("replaced", order, ts))
            else:
                raise ExecutionError(f"unexpected venue event {event!r}")
        return updates

    def _book_fill(self, order: PaperOrder, fill: OrderFilled, execution_id: str) -> dict[str, Any]:
        """Book one execution of ``order`` in the ledger and the order; record its FILL activity."""
        self._portfolio.apply_fill(fill)
        order.filled_quantity += fill.last_quantity
        order.filled_value += fill.last_quantity * fill.last_price
        order.fills.append((fill.ts_ns, fill.last_quantity, fill.last_price))
        done = order.filled_quantity >= order.quantity
        order.status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        order.updated_ns = max(order.updated_ns, fill.ts_ns)
        if done:
            order.filled_ns = fill.ts_ns
        self._activities.append(
            FillActivity(
                id=execution_id,
                account_id=self._account_id,
                ts_ns=fill.ts_ns,
                price=fill.last_price,
                quantity=fill.last_quantity,
                side=order.side,
                symbol=order.symbol,
                leaves=order.leaves,
                order_id=order.id,
                cumulative=order.filled_quantity,
                order_status=order.status,
            )
        )
        position = self._portfolio.position(order.symbol)
        return self._update(
            "fill" if done else "partial_fill",
            order,
            fill.ts_ns,
            price=text(fill.last_price),
            qty=text(fill.last_quantity),
            position_qty=text(position.quantity if position is not None else ZERO),
            execution_id=execution_id,
        )

    def _after_fill(self, order: PaperOrder, ts_ns: int) -> list[dict[str, Any]]:
        """A completely filled entry releases its exits; a fill of one exit cancels the other."""
        updates: list[dict[str, Any]] = []
        if order.parent_id is None and order.order_class in _ENTRY_CLASSES and not order.is_open:
            updates.extend(self._release_exits(order))
        other = self._other_exit(order)
        if other is not None and other.is_open:
            updates.extend(self._cancel_one(other, ts_ns, "the other exit of the pair filled"))
        return updates

    def _after_end(self, order: PaperOrder, ts_ns: int) -> list[dict[str, Any]]:
        """An entry ended unfilled cancels its held exits (partly filled: releases them for the
        filled quantity); a canceled oco take-profit cancels its stop-loss."""
        if order.parent_id is None and order.order_class in _ENTRY_CLASSES:
            if order.filled_quantity > 0:
                return self._release_exits(order)
            updates = []
            for leg in (self._orders[leg_id] for leg_id in order.leg_ids):
                if leg.status is OrderStatus.HELD:
                    leg.status, leg.canceled_ns, leg.updated_ns = OrderStatus.CANCELED, ts_ns, ts_ns
                    leg.reason = f"entry {order.status.value}"
                    updates.append(self._update("canceled", leg, ts_ns))
            return updates
        if order.order_class == "oco" and order.parent_id is None and order.status is OrderStatus.CANCELED:
            updates = []
            for leg in (self._orders[leg_id] for leg_id in order.leg_ids):
                if leg.is_open:
                    updates.extend(self._cancel_one(leg, ts_ns, "oco parent canceled"))
            return updates
        return []

    def _release_exits(self, entry: PaperOrder) -> list[dict[str, Any]]:
        """Send an entry's held exits to the venue for its filled quantity."""
        updates: list[dict[str, Any]] = []
        for leg in (self._orders[leg_id] for leg_id in entry.leg_ids):
            if leg.status is OrderStatus.HELD:
                leg.quantity = entry.filled_quantity
                leg.status = OrderStatus.ACCEPTED
                updates.extend(self._submit_exit(leg))
        return updates

    def _void_losing_exits(self, events: list[OrderEvent]) -> list[OrderEvent]:
        """Drop the fills of the exit that lost when one bar filled both exits of a pair.

        The take-profit stands if it filled better than its limit (it gapped through the limit
        at the open, before anything else in the bar); otherwise the stop-loss does.
        """
        fills: dict[str, list[OrderFilled]] = {}
        for event in events:
            if isinstance(event, OrderFilled):
                fills.setdefault(str(event.client_order_id), []).append(event)
        losers: set[str] = set()
        for order_id in fills:
            order = self._orders[order_id]
            other = self._other_exit(order)
            if other is None or other.id not in fills or {order.id, other.id} & losers:
                continue
            take_profit, stop_loss = (order, other) if order.order_type is OrderType.LIMIT else (other, order)
            limit = take_profit.limit_price
            gapped = limit is not None and any(
                (fill.last_price - limit) * take_profit.side.sign < 0 for fill in fills[take_profit.id]
            )
            losers.add(stop_loss.id if gapped else take_profit.id)
        if not losers:
            return events
        return [e for e in events if not (isinstance(e, OrderFilled) and str(e.client_order_id) in losers)]

    def _cancel_one(self, order: PaperOrder, ts_ns: int, reason: str) -> list[dict[str, Any]]:
        """Cancel one open order at once, with what that takes along (see
        :meth:`~serve.alpaca_paper._book.PaperBroker.cancel`)."""
        if order.at_venue:
            command = CancelOrder(
                client_order_id=ClientOrderId._from_checked_parts(order.id), ts_ns=ts_ns, reason=reason
            )
            events = self._venue.cancel([command])
            if events:
                return self._apply(events)
        if order.is_mleg:
            return self._end_mleg(order, OrderStatus.CANCELED, ts_ns, reason)
        # held, or already finished at the venue in this same call (a void fill)
        order.status, order.reason = OrderStatus.CANCELED, reason
        order.canceled_ns = order.updated_ns = ts_ns
        return [self._update("canceled", order, ts_ns), *self._after_end(order, ts_ns)]

    # ------------------------------------------------------------------ mleg

    def _match_all_mleg(self) -> list[dict[str, Any]]:
        updates: list[dict[str, Any]] = []
        for order in list(self._orders.values()):
            if order.is_mleg and order.parent_id is None and order.is_open:
                updates.extend(self._match_mleg(order))
        return updates

    def _match_mleg(self, parent: PaperOrder) -> list[dict[str, Any]]:
        """Fill an mleg order and all its legs at the option quotes if its limit allows, else nothing."""
        legs = [self._orders[leg_id] for leg_id in parent.leg_ids]
        net = self._net_price((leg.side, leg.ratio_qty or ZERO, leg.symbol) for leg in legs)
        if net is None or (parent.limit_price is not None and net > parent.limit_price):
            return []
        ts = self._now_ns
        updates: list[dict[str, Any]] = []
        for leg in legs:
            bid, ask = self._option_quotes[leg.symbol]
            price = ask if leg.side is OrderSide.BUY else bid
            self._mleg_trades += 1
            trade_id = f"MLEG-T{self._mleg_trades}"
            fill = OrderFilled(
                client_order_id=ClientOrderId._from_checked_parts(leg.id),
                venue_order_id=VenueOrderId._from_checked_parts(f"MLEG-{parent.sequence}"),
                trade_id=TradeId._from_checked_parts(trade_id),
                strategy_id=_STRATEGY,
                symbol=leg.symbol,
                side=leg.side,
                last_quantity=leg.leaves,
                last_price=price,
                fee=self._fees.fee(self._instrument_for(leg.symbol), leg.side, leg.leaves, price, True),
                liquidity=LiquiditySide.TAKER,
                ts_ns=ts,
            )
            updates.append(self._book_fill(leg, fill, str(uuid.uuid5(NAMESPACE, f"execution:{trade_id}"))))
        quantity = parent.leaves
        parent.filled_quantity += quantity
        parent.filled_value += quantity * net
        parent.fills.append((ts, quantity, net))
        parent.status, parent.filled_ns, parent.updated_ns = OrderStatus.FILLED, ts, ts
        execution_id = str(uuid.uuid5(NAMESPACE, f"execution:MLEG-P{parent.sequence}"))
        updates.append(
            self._update("fill", parent, ts, price=text(net), qty=text(quantity), execution_id=execution_id)
        )
        return updates

    def _expire_mleg(self, today: date, closing: bool) -> list[dict[str, Any]]:
        """Start the session of open DAY mleg orders that have none (``today``) and expire, with
        their legs, those of an earlier session, or of today's when ``closing``."""
        updates: list[dict[str, Any]] = []
        for order in list(self._orders.values()):
            if not (order.is_mleg and order.parent_id is None and order.is_open):
                continue
            if order.time_in_force is not TimeInForce.DAY:
                continue
            if order.session_day is None:
                order.session_day = today
            if closing or order.session_day != today:
                updates.extend(self._end_mleg(order, OrderStatus.EXPIRED, self._now_ns, "day order expired"))
        return updates

    def _end_mleg(
        self, parent: PaperOrder, status: OrderStatus, ts_ns: int, reason: str
    ) -> list[dict[str, Any]]:
        """End an mleg order and its open legs (canceled or expired); one update each, parent first."""
        members = [order for order in (parent, *(self._orders[i] for i in parent.leg_ids)) if order.is_open]
        for order in members:
            order.status, order.updated_ns, order.reason = status, ts_ns, reason
            if status is OrderStatus.CANCELED:
                order.canceled_ns = ts_ns
            else:
                order.expired_ns = ts_ns
        return [self._update(status.value, order, ts_ns) for order in members]

    def _update(self, event: str, order: PaperOrder, ts_ns: int, **fields: str | None) -> dict[str, Any]:
        """A ``trade_updates`` payload: event, order snapshot (legs nested), timestamp and fill fields."""
        return {"event": event, "order": self.order_json(order), "timestamp": rfc3339(ts_ns), **fields}


def alpaca_order_id(sequence: int) -> str:
    """The Alpaca order id (a UUID) of the ``sequence``-th order."""
    return str(uuid.uuid5(NAMESPACE, f"order:{sequence}"))
