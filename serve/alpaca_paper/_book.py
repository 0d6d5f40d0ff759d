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
  quotes of :meth:`PaperBroker.set_option_quotes` (a buy leg at the ask, a sell leg at the bid;
  quote sizes are not modelled). The net price per strategy unit is
  ``Σ (+1 buy / −1 sell) × ratio_qty × price`` (positive: a debit paid, negative: a credit
  received); a limit order fills when the net price is at most its ``limit_price``. Matching is
  tried on submit, on every quote update and on every bar batch. Leg quantities are
  ``ratio_qty × qty`` contracts; each leg fill moves cash by price × multiplier × quantity.

Every fill event carries an ``execution_id``; every fill of a symbol is also a FILL account
activity with that id. An mleg strategy order's own fill update carries the net price and its
own execution id (it trades no symbol, so it has no activity).
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

import numpy as np
import pandas as pd

from amcp.config import AccountConfig, VenueConfig
from amcp.data.calendar import EXCHANGE_TIMEZONE, TradingCalendar
from amcp.domain.data import BarBatch
from amcp.domain.enums import LiquiditySide, OrderSide, OrderStatus, OrderType, TimeInForce
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId
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
from amcp.execution.fees import AlpacaFeeModel
from amcp.execution.venue import SimulatedVenue
from amcp.portfolio.ledger import Portfolio
from serve.alpaca_paper._orders import (
    CODE_FORBIDDEN,
    CODE_INVALID,
    CODE_NOT_FOUND,
    CODE_UNPROCESSABLE,
    NAMESPACE,
    ORDER_CLASSES,
    POSITION_INTENTS,
    ZERO,
    ExitTerms,
    FillActivity,
    ListedOption,
    PaperApiError,
    PaperOrder,
    activity_types,
    asset_id,
    average,
    day,
    eastern,
    instant,
    invalid,
    listed_option,
    number,
    parse_enum,
    parse_exits,
    parse_option_legs,
    positive,
    rfc3339,
    select_activities,
    select_contracts,
    text,
)

_STRATEGY = StrategyId("alpaca-paper")
_MAX_CLIENT_ORDER_ID = 128
_DEFAULT_ORDER_LIMIT = 50
_MAX_ORDER_LIMIT = 500
_EXCHANGE = "NASDAQ"
"""The ``exchange`` every asset and position reports (the server has no listing data)."""
_REPLACE_FIELDS = frozenset({"qty", "time_in_force", "limit_price", "stop_price", "trail", "client_order_id"})
_GROUP_TIME_IN_FORCE = (TimeInForce.DAY, TimeInForce.GTC)
_ENTRY_TYPES = (OrderType.MARKET, OrderType.LIMIT)
_ENTRY_CLASSES = ("bracket", "oto")
_TRUE, _FALSE = ("true", "1"), ("false", "0", "")


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
        self._fees = AlpacaFeeModel.from_config(venue_config.fees)  # mleg fills, which bypass the venue
        self._portfolio = Portfolio(account_config, instrument_for)
        self._account = account_config
        self._calendar = calendar
        self._orders: dict[str, PaperOrder] = {}
        self._by_client_id: dict[str, PaperOrder] = {}
        self._sequence = 0
        self._mleg_trades = 0
        self._activities: list[FillActivity] = []
        self._option_quotes: dict[str, tuple[Decimal, Decimal]] = {}  # OCC symbol: (bid, ask) USD
        self._listings: list[ListedOption] | None = None  # None: no list given, any OCC symbol trades
        self._listing_by_key: dict[str, ListedOption] = {}  # by symbol and by id
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

    def set_option_contracts(self, contracts: Iterable[str | OptionContract | ListedOption]) -> None:
        """Replace the list ``/v2/options/contracts`` serves; mleg legs must then be listed and active.

        Args:
            contracts: OCC symbols, :class:`OptionContract` instruments or :class:`ListedOption`
                records (status, style, underlying, close price).

        Raises:
            ExecutionError: for an item that is none of those, or a symbol listed twice.
        """
        listings = sorted((listed_option(item) for item in contracts), key=lambda listing: listing.symbol)
        by_key: dict[str, ListedOption] = {}
        for listing in listings:
            if listing.symbol in by_key:
                raise ExecutionError(f"option contract {listing.symbol} is listed twice")
            by_key[listing.symbol] = by_key[listing.id] = listing
        self._listings, self._listing_by_key = listings, by_key

    def option_contracts(self, query: Mapping[str, str]) -> dict[str, Any]:
        """Answer ``GET /v2/options/contracts`` (see :func:`~serve.alpaca_paper._orders.select_contracts`)."""
        return select_contracts(self._listings or [], query)

    def option_contract(self, symbol_or_id: str) -> dict[str, Any]:
        """Answer ``GET /v2/options/contracts/{symbol_or_id}``.

        Raises:
            PaperApiError: 404 if no listed contract has this symbol or id.
        """
        listing = self._listing_by_key.get(symbol_or_id.strip().upper()) or self._listing_by_key.get(
            symbol_or_id.strip().lower()
        )
        if listing is None:
            raise PaperApiError(404, f"option contract not found: {symbol_or_id!r}", CODE_NOT_FOUND)
        return listing.to_json()

    # ------------------------------------------------------------------ activities

    def activities(self, query: Mapping[str, str], activity_type: str | None = None) -> list[dict[str, Any]]:
        """Answer ``GET /v2/account/activities[/{activity_type}]`` (FILL activities only exist).

        Raises:
            PaperApiError: 422 for an unknown type or an invalid parameter.
        """
        types = activity_types(query, None if activity_type is None else activity_type.strip().upper())
        return select_activities(self._activities, query, types)

    # ------------------------------------------------------------------ orders

    def submit(
        self, body: Any, reject_reason: str | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Handle ``POST /v2/orders`` for every order class (module doc).

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
            if tif not in _GROUP_TIME_IN_FORCE:
                raise invalid(f"{order_class} orders need time_in_force day or gtc, got {tif.value!r}")
            allowed = (OrderType.LIMIT,) if order_class == "oco" else _ENTRY_TYPES
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
            id=_order_id(sequence),
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
                id=_order_id(sequence),
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
        if order_type not in _ENTRY_TYPES:
            raise invalid(f"mleg orders need type market or limit, got {order_type.value!r}")
        tif = parse_enum(body, "time_in_force")
        if tif not in _GROUP_TIME_IN_FORCE:
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
            id=_order_id(sequence),
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
                id=_order_id(self._sequence + offset),
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
        new_id = _order_id(self._sequence + 1)
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

    def order(self, order_id: str) -> PaperOrder:
        """Return the order with this Alpaca id.

        Raises:
            PaperApiError: 404 if there is none.
        """
        order = self._orders.get(order_id.lower())
        if order is None:
            raise PaperApiError(404, f"order not found: {order_id!r}", CODE_NOT_FOUND)
        return order

    def order_json(self, order: PaperOrder, nested: bool = True) -> dict[str, Any]:
        """Return an order's Alpaca JSON, its legs nested unless ``nested`` is False."""
        if not nested or not order.leg_ids:
            return order.to_json()
        return order.to_json([self._orders[leg_id].to_json() for leg_id in order.leg_ids])

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
        ``side``, ``symbols``, ``nested``; ``after`` and ``until`` are exclusive bounds on
        ``submitted_at``).

        Without ``nested`` every order, legs included, is an item of its own with ``legs``
        null. With ``nested=true`` legs appear only inside their parent, and a parent and its
        legs count as one item: open if any of them is, matching ``side`` or ``symbols`` if
        any of them does.

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
        after, until = instant(query, "after"), instant(query, "until")
        side = query.get("side")
        if side is not None and side not in ("buy", "sell"):
            raise invalid(f"invalid side {side!r}; expected buy or sell")
        nested_text = (query.get("nested") or "").lower()
        if nested_text not in _TRUE + _FALSE:
            raise invalid(f"invalid nested {query.get('nested')!r}; expected true or false")
        nested = nested_text in _TRUE
        symbols = {s.strip().upper() for s in query.get("symbols", "").split(",") if s.strip()}

        def member_matches(order: PaperOrder) -> bool:
            own_side = not (order.is_mleg and order.parent_id is None)  # an mleg strategy has none
            return (side is None or (own_side and order.side.value == side)) and (
                not symbols or order.symbol in symbols
            )

        chosen = []
        for order in self._orders.values():
            if nested and order.parent_id is not None:
                continue
            group = [order, *(self._orders[i] for i in order.leg_ids)] if nested else [order]
            is_open = any(member.is_open for member in group)
            if (
                (status == "all" or is_open == (status == "open"))
                and (after is None or order.created_ns > after)
                and (until is None or order.created_ns < until)
                and any(member_matches(member) for member in group)
            ):
                chosen.append(order)
        chosen.sort(key=lambda order: order.sequence, reverse=direction == "desc")
        return [self.order_json(order, nested) for order in chosen[:limit]]

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
        start = day(query, "start") or date(1990, 1, 1)
        end = day(query, "end") or date(2100, 1, 1)
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

    def _client_order_id(self, value: Any, sequence: int) -> str:
        """``value`` checked as a new client order id, or the default for order ``sequence``."""
        if value is None:
            value = str(uuid.uuid5(NAMESPACE, f"client:{sequence}"))
        if not isinstance(value, str) or not 0 < len(value) <= _MAX_CLIENT_ORDER_ID:
            raise invalid(f"client_order_id must be 1 to 128 characters, got {value!r}")
        if value in self._by_client_id:
            raise invalid(f"client_order_id must be unique: {value!r} was already used")
        return value

    def _instrument(self, symbol: str, status: int) -> Instrument:
        if self._universe is not None and symbol not in self._universe:
            raise PaperApiError(status, f"asset not found: {symbol!r} is not in the paper server's universe",
                                CODE_NOT_FOUND if status == 404 else CODE_INVALID)
        try:
            return self._instrument_for(symbol)
        except (AmcpError, LookupError, ValueError, TypeError) as exc:
            raise PaperApiError(status, f"asset not found: {symbol!r} ({exc})",
                                CODE_NOT_FOUND if status == 404 else CODE_INVALID) from None

    def _option_leg(self, symbol: str) -> OptionContract:
        """The contract an mleg leg names: an option in the universe and, if a list was given,
        listed and active."""
        instrument = self._instrument(symbol, 422)
        if not isinstance(instrument, OptionContract):
            raise invalid(f"mleg leg symbol {symbol!r} is not an option contract (an OCC symbol)")
        if self._listings is not None:
            listing = self._listing_by_key.get(instrument.occ_symbol)
            if listing is None:
                raise invalid(f"unknown option contract {symbol!r}: not among the {len(self._listings)} "
                               "contracts the paper server lists")
            if listing.status != "active":
                raise invalid(f"option contract {symbol!r} is {listing.status}, not tradable")
        return instrument

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

    def _net_price(self, legs: Iterable[tuple[OrderSide, Decimal, str]]) -> Decimal | None:
        """Net USD per share of one strategy unit at the option quotes (buy at the ask, sell at
        the bid; positive: a debit), None if a leg has no quote or no bid to sell into."""
        net = ZERO
        for side, ratio, symbol in legs:
            quote = self._option_quotes.get(symbol)
            price = None if quote is None else quote[1] if side is OrderSide.BUY else quote[0]
            if price is None or price <= 0:
                return None
            net += side.sign * ratio * price
        return net

    def _reserved(self) -> Decimal:
        """USD held for open orders that add exposure: leaves × reference price × multiplier.

        Exits (oco orders, bracket and oto legs) reserve nothing; an mleg order reserves its net
        debit (at its limit, else at the quotes) and its legs nothing.
        """
        total = ZERO
        for order in self._orders.values():
            if not order.is_open or order.order_class == "oco" or order.parent_id is not None:
                continue
            if order.is_mleg:
                net = order.limit_price
                if net is None:
                    legs = [self._orders[leg_id] for leg_id in order.leg_ids]
                    net = self._net_price((leg.side, leg.ratio_qty or ZERO, leg.symbol) for leg in legs)
                if net is not None and net > 0:
                    total += net * order.leaves * order.multiplier
            elif order.side is OrderSide.BUY:
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
            available = max(ZERO, held_quantity - self._selling(symbol))
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
        self._require_buying_power(quantity * price * multiplier)

    def _selling(self, symbol: str) -> Decimal:
        """Quantity open sell orders of ``symbol`` may still sell: an exit pair counts once (only
        one of its exits can fill), held exits not at all (their position does not exist yet)."""
        total, counted = ZERO, set()
        for order in self._orders.values():
            if not order.is_open or order.status is OrderStatus.HELD or order.symbol != symbol:
                continue
            if order.side is not OrderSide.SELL or order.id in counted:
                continue
            other = self._other_exit(order)
            if other is not None and other.is_open:
                counted.add(other.id)
                total += max(order.leaves, other.leaves)
            else:
                total += order.leaves
        return total

    def _require_buying_power(self, cost: Decimal) -> None:
        """403 unless ``cost`` (USD) fits in the buying power left after open orders' reservations."""
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

    def _other_exit(self, order: PaperOrder) -> PaperOrder | None:
        """The other order of an exit pair (oco take-profit and stop-loss, bracket legs), if any."""
        if order.order_class == "oco":
            if order.parent_id is not None:
                return self._orders[order.parent_id]
            return self._orders[order.leg_ids[0]] if order.leg_ids else None
        if order.order_class == "bracket" and order.parent_id is not None:
            for leg_id in self._orders[order.parent_id].leg_ids:
                if leg_id != order.id:
                    return self._orders[leg_id]
        return None

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
        """Cancel one open order at once, with what that takes along (see :meth:`cancel`)."""
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
        session = new_york_date(ts_ns)
        calendar = self._trading_calendar()
        return calendar.opens_closes_ns(session - timedelta(days=7), session + timedelta(days=21))


def _new_york(ts_ns: np.ndarray) -> pd.DatetimeIndex:
    """UTC nanoseconds as New York local times."""
    return pd.DatetimeIndex(ts_ns.view("datetime64[ns]")).tz_localize("UTC").tz_convert(EXCHANGE_TIMEZONE)


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    if not denominator:
        return ZERO
    return (numerator / denominator).quantize(Decimal("1E-10"), rounding=ROUND_DOWN).normalize()


def _order_id(sequence: int) -> str:
    """The Alpaca order id (a UUID) of the ``sequence``-th order."""
    return str(uuid.uuid5(NAMESPACE, f"order:{sequence}"))


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
