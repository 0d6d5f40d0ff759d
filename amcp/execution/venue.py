"""A deterministic, seeded simulated venue (Alpaca-like) driven by bars and quotes.

The venue holds working orders and fills them against the market data it is given. It reads no
clock: every timestamp comes in with the call (UTC nanoseconds). The same config, seed and
inputs always give the same events.

Arrival. An accepted order reaches the matching engine at ``arrival_ts = ts_ns + latency``
(:mod:`amcp.execution.latency`). It may fill only against a bar with ``batch.ts_ns >
arrival_ts`` (a bar's ``ts_ns`` is its close time) or a quote with ``quote.ts_ns > arrival_ts``;
the first price such a bar shows it is the bar's open. Cancels and replaces act at once.

Validation (``OrderRejected`` with a reason, never an exception): the symbol must build an
instrument; the quantity must be a positive multiple of the lot; the limit and stop prices the
order type needs must be present, positive and on the instrument's tick (prices the type does
not use are ignored); a trailing stop needs exactly one of ``trail_price > 0`` and
``0 < trail_percent < 100``; OPG and CLS take only market and limit orders; a client order id
the venue has accepted before (working or finished) is a duplicate.

Fill rules against a bar (``o h l c v``; a symbol whose OHLC has a NaN has no bar; ``v`` NaN
or 0 means nothing trades, no stop triggers, and a one-shot order has used its chance):

- market: ``o``; slippage applies.
- limit buy: ``o <= limit`` -> ``o``; elif ``l <= limit`` -> ``limit``. Sells mirror. No slippage.
- stop buy: ``o >= stop`` -> ``o``; elif ``h >= stop`` -> ``stop``; slippage applies. Sells
  mirror. Once triggered, a remainder is a market order (fills at later opens).
- stop-limit: triggers as a stop; triggered at the open it is a limit order against the whole
  bar; triggered intrabar it fills at ``stop`` if the limit allows it (buy: ``limit >= stop``),
  elif at ``limit`` if the bar reaches it. No slippage. The trigger persists across bars.
- trailing stop: sell ``stop = hwm − trail_price`` or ``hwm × (1 − trail_percent/100)``
  rounded down to the tick (buys: low-water mark, plus, rounded up). The mark starts at the
  first eligible bar's open; each bar is first checked as a stop order with the current stop,
  then the mark moves to the bar's high (buys: low).
- opg: only at the open of its first bar (market-on-open, or limit-on-open for a limit order);
  cls: only at the close of its first bar. The unfilled rest is canceled.

Quantity: per symbol per bar, all fills together are capped at ``floor(participation_rate ×
volume)`` rounded down to the lot (no cap when ``participation_rate`` is None); orders are
served first come first served by arrival time. FOK fills only when the whole remaining
quantity fits, else it is canceled with no fill.

Quotes: a buy sees the ask (a sell the bid) as a one-price bar, capped by the ask (bid) size,
shared FIFO by every order of that side on that quote. Quote fills carry no slippage (the
spread is the cost). OPG and CLS orders ignore quotes.

Time in force: DAY works in the America/New_York session date of its first eligible bar or
quote; it expires at the end of an ``on_bars(..., session_closed=True)`` call, or before any
later bar or quote dated another day. GTC works until filled or canceled. IOC, FOK, OPG and
CLS have one chance: the first eligible bar in which their symbol has a bar (or, for IOC and
FOK, a quote with a price on their side); the rest is canceled ("ioc remainder",
"fok not filled", "opg remainder", "cls remainder").

Liquidity: market and stop fills are TAKER; limit fills are MAKER unless marketable when the
order first saw a price (its first eligible bar's open or first quote) or, for a stop-limit,
when it triggered. Fees come from :class:`amcp.execution.fees.AlpacaFeeModel`.

Event order within one call: orders in arrival order (ties in submission order), each with its
expiry, fill and one-shot cancel; then the session-close expiries in submission order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_FLOOR, Decimal

from amcp.config import VenueConfig
from amcp.domain._fast_init import keyword_constructor
from amcp.domain.data import BarBatch, Quote
from amcp.domain.enums import LiquiditySide, OrderSide, OrderType, TimeInForce
from amcp.domain.identifiers import ClientOrderId, TradeId, VenueOrderId
from amcp.domain.instruments import Instrument, instrument_for
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
from amcp.domain.objects import to_decimal
from amcp.engine.clock import NewYorkDays
from amcp.errors import AmcpError, ExecutionError
from amcp.execution.fees import AlpacaFeeModel
from amcp.execution.latency import LatencyModel
from amcp.execution.slippage import SlippageModel

_ZERO = Decimal(0)
_HUNDRED = Decimal(100)
_ONE_SHOT = {
    TimeInForce.IOC: "ioc remainder",
    TimeInForce.FOK: "fok not filled",
    TimeInForce.OPG: "opg remainder",
    TimeInForce.CLS: "cls remainder",
}
_AUCTION = (TimeInForce.OPG, TimeInForce.CLS)
_TAKER, _MAKER = LiquiditySide.TAKER, LiquiditySide.MAKER
_BUY = OrderSide.BUY
_DAY, _FOK, _OPG = TimeInForce.DAY, TimeInForce.FOK, TimeInForce.OPG
_MARKET, _LIMIT, _STOP = OrderType.MARKET, OrderType.LIMIT, OrderType.STOP
_STOP_LIMIT, _TRAILING_STOP = OrderType.STOP_LIMIT, OrderType.TRAILING_STOP

# price, slippage applies, liquidity
_Match = tuple[Decimal, bool, LiquiditySide]
_UNASSIGNED = VenueOrderId("SIM-0")  # a checked order's venue id until it is accepted
# OrderAccepted(...) and OrderFilled(...) for the hot path: the same events, built faster.
_new_accepted = keyword_constructor(OrderAccepted)
_new_filled = keyword_constructor(OrderFilled)


class _Prices:
    """What one order sees of one bar (or of one side of a quote, as a one-price bar).

    Built from floats, each an exact ``Decimal`` (the float's shortest repr): the open at once
    (almost every order reads it), the others on first read. ``volume`` is 0 when the float
    volume is not finite.
    """

    __slots__ = ("_decimals", "_floats", "from_quote", "open", "traded")

    def __init__(
        self, open_: float, high: float, low: float, close: float, volume: float, from_quote: bool
    ) -> None:
        finite_volume = math.isfinite(volume)
        self.open = Decimal(repr(float(open_)))
        self._floats = (open_, high, low, close, volume)
        self._decimals: list[Decimal | None] = [self.open, None, None, None, None if finite_volume else _ZERO]
        self.from_quote = from_quote
        self.traded = finite_volume and volume > 0  # volume > 0: something traded

    def _decimal(self, k: int) -> Decimal:
        value = self._decimals[k]
        if value is None:
            value = self._decimals[k] = Decimal(repr(float(self._floats[k])))
        return value

    @property
    def high(self) -> Decimal:
        return self._decimal(1)

    @property
    def low(self) -> Decimal:
        return self._decimal(2)

    @property
    def close(self) -> Decimal:
        return self._decimal(3)

    @property
    def volume(self) -> Decimal:
        return self._decimal(4)


@dataclass(slots=True)
class _Working:
    """A working order and its matching state."""

    command: SubmitOrder
    client_order_id: ClientOrderId  # the command's
    instrument: Instrument
    venue_order_id: VenueOrderId
    sequence: int
    arrival_ts_ns: int
    side: OrderSide
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    filled: Decimal = _ZERO
    triggered: bool = False
    watermark: Decimal | None = None
    session_date: date | None = None
    seen_price: bool = False

    @property
    def leaves(self) -> Decimal:
        return self.quantity - self.filled


class SimulatedVenue:
    """A simulated Alpaca-like venue: validates orders, then fills them against bars and quotes.

    Args:
        config: seed, participation cap, fees, slippage and latency.
        instrument_for: maps an order's symbol to its instrument (tick and lot sizes);
            raising any ``AmcpError``, ``LookupError``, ``ValueError`` or ``TypeError`` rejects
            the order.
    """

    def __init__(
        self, config: VenueConfig, instrument_for: Callable[[str], Instrument] = instrument_for
    ) -> None:
        self._config = config
        self._instrument_for = instrument_for
        self._participation = (
            None if config.participation_rate is None else to_decimal(config.participation_rate)
        )
        self._fees = AlpacaFeeModel.from_config(config.fees)
        self._slippage = SlippageModel(config.slippage)
        self._slips = not self._slippage.is_zero
        self._latency = LatencyModel(config.latency, config.seed)
        self._working: dict[str, _Working] = {}  # insertion order = submission order
        self._finished: set[str] = set()
        self._order_count = 0
        self._trade_count = 0
        self._index_symbols: tuple[str, ...] | None = None
        self._index: dict[str, int] = {}
        self._instruments: dict[str, Instrument] = {}  # instrument_for's answers, by symbol
        self._days = NewYorkDays()

    # ------------------------------------------------------------------ commands
    def submit(self, commands: Sequence[SubmitOrder], ts_ns: int) -> list[OrderEvent]:
        """Validate and accept (or reject) each command, in order.

        Args:
            commands: orders to submit.
            ts_ns: the time they are sent (UTC ns); arrival is this plus a latency sample.

        Returns:
            One ``OrderAccepted`` (venue id ``SIM-<n>``) or ``OrderRejected`` per command. An id
            the venue has already accepted is rejected as a duplicate. Never raises on bad input.
        """
        events: list[OrderEvent] = []
        for command in commands:
            result = self._check(command)
            if isinstance(result, str):
                events.append(
                    OrderRejected(client_order_id=command.client_order_id, ts_ns=ts_ns, reason=result)
                )
                continue
            events.append(self._accept(result, ts_ns))
        return events

    def cancel(self, commands: Sequence[CancelOrder]) -> list[OrderEvent]:
        """Cancel working orders at once.

        Returns:
            ``OrderCanceled`` (at the command's ``ts_ns`` and with its reason) for each command
            naming a working order. A command naming an unknown or finished order changes
            nothing and produces no event (the order's own events already say how it ended).
        """
        events: list[OrderEvent] = []
        for command in commands:
            order = self._working.get(command.client_order_id)
            if order is not None:
                events.append(self._cancel(order, command.ts_ns, command.reason))
        return events

    def cancel_all(self, ts_ns: int, reason: str = "") -> list[OrderEvent]:
        """Cancel every working order, in submission order.

        Returns:
            One ``OrderCanceled`` per working order.
        """
        return [self._cancel(order, ts_ns, reason) for order in list(self._working.values())]

    def replace(self, commands: Sequence[ReplaceOrder]) -> list[OrderEvent]:
        """Replace working orders with new ones (Alpaca PATCH semantics).

        The new order copies the old command with the new id, ``ts_ns`` and the given fields.
        ``quantity`` is the new total: the new order carries the old filled quantity, so its
        leaves are ``quantity − filled``. It arrives after a fresh latency sample; a stop
        trigger and a trailing mark carry over unless the stop or trail changes. A
        ``trail_price`` replaces a percentage trail with an absolute one.

        Returns:
            Per command: ``[OrderReplaced(old -> new), OrderAccepted(new)]`` on success;
            ``[OrderRejected(new id)]`` when the new terms are invalid (bad price or quantity,
            a quantity not above the filled quantity, a price the order type does not use, a
            new id already known), the old order working on unchanged; nothing when the old
            order is unknown or no longer working.
        """
        events: list[OrderEvent] = []
        for command in commands:
            events.extend(self._replace_one(command))
        return events

    # ------------------------------------------------------------------ views
    def open_orders(self) -> list[SubmitOrder]:
        """Return the commands of working orders, in submission order (replacements last)."""
        return [order.command for order in self._working.values()]

    def leaves_quantity(self, client_order_id: str) -> Decimal:
        """Return the quantity still to fill: 0 for a finished order.

        Raises:
            ExecutionError: if the venue never accepted an order with this id.
        """
        order = self._working.get(client_order_id)
        if order is not None:
            return order.leaves
        if client_order_id in self._finished:
            return _ZERO
        raise ExecutionError(f"order {client_order_id!r} is unknown to the simulated venue")

    # ------------------------------------------------------------------ market data
    def on_bars(self, batch: BarBatch, session_closed: bool = False) -> list[OrderEvent]:
        """Match working orders against one batch of bars.

        Args:
            batch: every symbol's bar closing at ``batch.ts_ns``.
            session_closed: whether the session ends with this batch (DAY orders expire).

        Returns:
            Fills, expiries and one-shot cancels, in the order described in the module doc.
        """
        events: list[OrderEvent] = []
        if not self._working:
            return events
        ts_ns = batch.ts_ns
        index = self._index if batch.symbols is self._index_symbols else self._symbol_index(batch.symbols)
        day = self._days.date_of(ts_ns)
        prices: dict[int, _Prices | None] = {}
        capacity: dict[object, Decimal | None] = {}
        for order in self._fifo(self._working.values()):
            if ts_ns <= order.arrival_ts_ns or self._expire_if_new_session(order, day, ts_ns, events):
                continue
            i = index.get(order.command.symbol)
            if i is None:
                i = index.get(order.instrument.symbol)
            if i is not None and i not in prices:
                prices[i] = _bar_prices(batch, i)
            self._work(order, None if i is None else prices[i], capacity, i, ts_ns, events)
        if session_closed and self._working:
            for order in list(self._working.values()):
                if order.time_in_force is _DAY and order.session_date is not None:
                    self._finish(order)
                    events.append(
                        OrderExpired(client_order_id=order.client_order_id, ts_ns=ts_ns, reason="session closed")
                    )
        return events

    def on_quotes(self, quotes: Sequence[Quote]) -> list[OrderEvent]:
        """Match working orders against quotes, one quote after another.

        Returns:
            Fills, expiries and IOC/FOK cancels (OPG and CLS orders ignore quotes).
        """
        events: list[OrderEvent] = []
        if not self._working:
            return events
        by_symbol: dict[str, list[_Working]] = {}
        for order in self._fifo(self._working.values()):
            for symbol in {order.command.symbol, order.instrument.symbol}:
                by_symbol.setdefault(symbol, []).append(order)
        for quote in quotes:
            day = self._days.date_of(quote.ts_ns)
            sides = {
                OrderSide.BUY: _quote_prices(quote.ask_price, quote.ask_size),
                OrderSide.SELL: _quote_prices(quote.bid_price, quote.bid_size),
            }
            capacity: dict[object, Decimal | None] = {}
            for order in by_symbol.get(quote.symbol, ()):
                if (
                    order.client_order_id not in self._working
                    or quote.ts_ns <= order.arrival_ts_ns
                    or order.time_in_force in _AUCTION
                    or self._expire_if_new_session(order, day, quote.ts_ns, events)
                ):
                    continue
                self._work(order, sides[order.side], capacity, order.side, quote.ts_ns, events)
        return events

    # ------------------------------------------------------------------ validation
    def _check(self, command: SubmitOrder) -> _Working | str:
        """Return the working order a command describes, or the reason to reject it."""
        try:
            return self._check_terms(command)
        except ArithmeticError as exc:  # e.g. a quantity too large for decimal arithmetic
            return f"quantity or price out of range: {exc!r}"

    def _check_terms(self, command: SubmitOrder) -> _Working | str:
        if command.client_order_id in self._working or command.client_order_id in self._finished:
            return f"duplicate client_order_id {command.client_order_id!r}"
        try:
            instrument = self._instrument(command.symbol)
        except (AmcpError, LookupError, ValueError, TypeError) as exc:
            return f"unknown instrument {command.symbol!r}: {exc}"
        side, order_type, tif = command.side, command.order_type, command.time_in_force
        try:
            if type(side) is not OrderSide:
                side = OrderSide(side)
            if type(order_type) is not OrderType:
                order_type = OrderType(order_type)
            if type(tif) is not TimeInForce:
                tif = TimeInForce(tif)
        except ValueError as exc:
            return f"invalid side, order type or time in force: {exc}"
        quantity = command.quantity
        if type(quantity) is not Decimal or not quantity.is_finite():  # else it is its own Decimal
            quantity = _as_decimal(quantity)
        if quantity is None or quantity <= _ZERO:
            return f"quantity must be > 0, got {command.quantity!r}"
        if not instrument.is_valid_quantity(quantity):
            return f"quantity {quantity} is not a multiple of the lot size {instrument.lot_size}"
        if tif in _AUCTION and order_type not in (_MARKET, _LIMIT):
            return f"time in force {tif.value} needs a market or limit order, got {order_type.value}"
        limit = stop = trail_price = trail_percent = None
        if order_type in (_LIMIT, _STOP_LIMIT):
            limit = _as_decimal(command.limit_price)
            if command.limit_price is None or limit is None or not instrument.is_valid_price(limit):
                got = command.limit_price
                return f"{order_type.value} order needs a positive limit_price on the tick, got {got!r}"
        if order_type in (_STOP, _STOP_LIMIT):
            stop = _as_decimal(command.stop_price)
            if command.stop_price is None or stop is None or not instrument.is_valid_price(stop):
                got = command.stop_price
                return f"{order_type.value} order needs a positive stop_price on the tick, got {got!r}"
        if order_type is _TRAILING_STOP:
            if (command.trail_price is None) == (command.trail_percent is None):
                return "a trailing_stop order needs exactly one of trail_price, trail_percent"
            trail_price = _as_decimal(command.trail_price)
            trail_percent = _as_decimal(command.trail_percent)
            if command.trail_price is not None and (trail_price is None or trail_price <= 0):
                return f"trail_price must be > 0, got {command.trail_price!r}"
            if command.trail_percent is not None and (
                trail_percent is None or not 0 < trail_percent < _HUNDRED
            ):
                return f"trail_percent must be in (0, 100), got {command.trail_percent!r}"
        # command, client_order_id, instrument, venue_order_id, sequence, arrival_ts_ns, side,
        # order_type, time_in_force, quantity, limit_price, stop_price, trail_price, trail_percent
        return _Working(
            command,
            command.client_order_id,
            instrument,
            _UNASSIGNED,
            0,
            0,
            side,
            order_type,
            tif,
            quantity,
            limit,
            stop,
            trail_price,
            trail_percent,
        )

    def _instrument(self, symbol: str) -> Instrument:
        """Return ``instrument_for(symbol)``, remembered per symbol (the lookup is pure)."""
        if type(symbol) is not str:
            return self._instrument_for(symbol)
        instrument = self._instruments.get(symbol)
        if instrument is None:
            instrument = self._instruments[symbol] = self._instrument_for(symbol)
        return instrument

    def _accept(self, order: _Working, ts_ns: int) -> OrderAccepted:
        count = self._order_count = self._order_count + 1
        order.sequence = count
        order.venue_order_id = venue_order_id = VenueOrderId._from_checked_parts(f"SIM-{count}")
        order.arrival_ts_ns = ts_ns + self._latency.sample_ns()
        self._working[order.client_order_id] = order
        return _new_accepted(client_order_id=order.client_order_id, venue_order_id=venue_order_id, ts_ns=ts_ns)

    def _replace_one(self, command: ReplaceOrder) -> list[OrderEvent]:
        old = self._working.get(command.client_order_id)
        if old is None:
            return []
        new_id, ts_ns = command.new_client_order_id, command.ts_ns
        unused = [
            name
            for name, value, types in (
                ("limit_price", command.limit_price, (OrderType.LIMIT, OrderType.STOP_LIMIT)),
                ("stop_price", command.stop_price, (OrderType.STOP, OrderType.STOP_LIMIT)),
                ("trail_price", command.trail_price, (OrderType.TRAILING_STOP,)),
            )
            if value is not None and old.order_type not in types
        ]
        if unused:
            reason = f"a {old.order_type.value} order has no {', '.join(unused)} to replace"
            return [OrderRejected(client_order_id=new_id, ts_ns=ts_ns, reason=reason)]
        changes: dict[str, object] = {"client_order_id": new_id, "ts_ns": ts_ns}
        for name in ("quantity", "limit_price", "stop_price", "trail_price"):
            if getattr(command, name) is not None:
                changes[name] = getattr(command, name)
        if command.trail_price is not None:
            changes["trail_percent"] = None
        result = self._check(dataclasses.replace(old.command, **changes))  # type: ignore[arg-type]
        if isinstance(result, str):
            return [OrderRejected(client_order_id=new_id, ts_ns=ts_ns, reason=result)]
        if result.quantity <= old.filled:
            reason = f"new quantity {result.quantity} must exceed the filled quantity {old.filled}"
            return [OrderRejected(client_order_id=new_id, ts_ns=ts_ns, reason=reason)]
        result.filled = old.filled
        result.session_date = old.session_date
        if result.stop_price == old.stop_price:
            result.triggered = old.triggered
        if (result.trail_price, result.trail_percent) == (old.trail_price, old.trail_percent):
            result.watermark = old.watermark
        self._finish(old)
        replaced = OrderReplaced(client_order_id=old.client_order_id, new_client_order_id=new_id, ts_ns=ts_ns)
        return [replaced, self._accept(result, ts_ns)]

    # ------------------------------------------------------------------ matching
    def _work(
        self,
        order: _Working,
        prices: _Prices | None,
        capacity: dict[object, Decimal | None],
        key: object,
        ts_ns: int,
        events: list[OrderEvent],
    ) -> None:
        """Give one order its look at one bar or quote side, then end a one-shot order."""
        if prices is None:
            return
        if prices.traded:
            match = _match(order, prices)
            if match is not None:
                self._fill(order, match, prices, capacity, key, ts_ns, events)
        order.seen_price = True
        reason = _ONE_SHOT.get(order.time_in_force)
        if reason is not None and order.client_order_id in self._working:
            events.append(self._cancel(order, ts_ns, reason))

    def _fill(
        self,
        order: _Working,
        match: _Match,
        prices: _Prices,
        capacity: dict[object, Decimal | None],
        key: object,
        ts_ns: int,
        events: list[OrderEvent],
    ) -> None:
        price, slip, liquidity = match
        if key in capacity:
            available = capacity[key]
        elif self._participation is None and not prices.from_quote:
            available = capacity[key] = None  # no cap (what _initial_capacity returns)
        else:
            available = capacity[key] = self._initial_capacity(order.instrument, prices)
        leaves = order.quantity - order.filled
        quantity = leaves if available is None else min(leaves, available)
        if quantity <= _ZERO or (order.time_in_force is _FOK and quantity < leaves):
            return
        if slip and self._slips and not prices.from_quote:
            price = self._slippage.apply(
                order.instrument,
                order.side,
                price,
                quantity,
                prices.high,
                prices.low,
                prices.close,
                prices.volume,
            )
        fee = self._fees.fee(
            order.instrument, order.side, quantity, price, first_fill_of_order=not order.filled
        )
        self._trade_count += 1
        events.append(
            _new_filled(
                client_order_id=order.client_order_id,
                venue_order_id=order.venue_order_id,
                trade_id=TradeId._from_checked_parts(f"SIM-T{self._trade_count}"),
                strategy_id=order.command.strategy_id,
                symbol=order.command.symbol,
                side=order.side,
                last_quantity=quantity,
                last_price=price,
                fee=fee,
                liquidity=liquidity,
                ts_ns=ts_ns,
            )
        )
        order.filled += quantity
        if available is not None:
            capacity[key] = available - quantity
        if order.quantity - order.filled <= _ZERO:
            self._finish(order)

    def _initial_capacity(self, instrument: Instrument, prices: _Prices) -> Decimal | None:
        """Quantity one bar (or one quote side) can fill across all orders; None for no cap."""
        if prices.from_quote:
            return instrument.round_quantity(prices.volume, "down")
        if self._participation is None:
            return None
        whole = (self._participation * prices.volume).to_integral_value(rounding=ROUND_FLOOR)
        return instrument.round_quantity(whole, "down")

    # ------------------------------------------------------------------ bookkeeping
    def _cancel(self, order: _Working, ts_ns: int, reason: str) -> OrderCanceled:
        self._finish(order)
        return OrderCanceled(client_order_id=order.client_order_id, ts_ns=ts_ns, reason=reason)

    def _finish(self, order: _Working) -> None:
        del self._working[order.client_order_id]
        self._finished.add(order.client_order_id)

    def _expire_if_new_session(
        self, order: _Working, day: date, ts_ns: int, events: list[OrderEvent]
    ) -> bool:
        """Start a DAY order's session, or expire it if ``day`` is a later session; True if expired."""
        if order.time_in_force is not _DAY:
            return False
        if order.session_date is None:
            order.session_date = day
            return False
        if day == order.session_date:
            return False
        self._finish(order)
        events.append(
            OrderExpired(client_order_id=order.client_order_id, ts_ns=ts_ns, reason="day order expired")
        )
        return True

    def _symbol_index(self, symbols: tuple[str, ...]) -> dict[str, int]:
        if symbols is not self._index_symbols:
            self._index = {symbol: i for i, symbol in enumerate(symbols)}
            self._index_symbols = symbols
        return self._index

    @staticmethod
    def _fifo(orders: Collection[_Working]) -> Iterable[_Working]:
        if len(orders) == 1:
            return list(orders)
        return sorted(orders, key=_arrival_order)


# ---------------------------------------------------------------------- pure matching rules


def _arrival_order(order: _Working) -> tuple[int, int]:
    return order.arrival_ts_ns, order.sequence


def _match(order: _Working, p: _Prices) -> _Match | None:
    """Return the price, whether slippage applies and the liquidity of a fill, or None.

    Moves the order's stop trigger and trailing mark as a side effect.
    """
    kind = order.order_type
    if kind is _MARKET and order.time_in_force not in _AUCTION:  # the common case first
        return p.open, True, _TAKER
    buy = order.side is _BUY
    if order.time_in_force in _AUCTION:
        price = p.open if order.time_in_force is _OPG else p.close
        if kind is _MARKET:
            return price, True, _TAKER
        return (price, False, _TAKER) if _limit_ok(buy, price, _limit(order)) else None
    if kind is _LIMIT:
        return _limit_fill(buy, _limit(order), p, _MAKER if order.seen_price else _TAKER)
    if kind is _STOP_LIMIT:
        return _stop_limit_fill(order, buy, p)
    # stop or trailing stop: once triggered, the remainder is a market order
    if order.triggered:
        return p.open, True, _TAKER
    stop = _stop(order) if kind is _STOP else _trailing_stop(order, p.open)
    result: _Match | None = None
    if _stop_hit(buy, p.open, stop):
        result = (p.open, True, _TAKER)
    elif _stop_hit(buy, p.high if buy else p.low, stop):
        result = (stop, True, _TAKER)
    if result is not None:
        order.triggered = True
    elif kind is _TRAILING_STOP and order.watermark is not None:
        order.watermark = min(order.watermark, p.low) if buy else max(order.watermark, p.high)
    return result


def _stop_limit_fill(order: _Working, buy: bool, p: _Prices) -> _Match | None:
    limit, stop = _limit(order), _stop(order)
    if order.triggered:
        return _limit_fill(buy, limit, p, _MAKER)
    if _stop_hit(buy, p.open, stop):
        order.triggered = True
        return _limit_fill(buy, limit, p, _TAKER)
    if not _stop_hit(buy, p.high if buy else p.low, stop):
        return None
    order.triggered = True
    if _limit_ok(buy, stop, limit):
        return stop, False, _TAKER
    if _limit_ok(buy, p.low if buy else p.high, limit):
        return limit, False, _MAKER
    return None


def _trailing_stop(order: _Working, first_open: Decimal) -> Decimal:
    """Return a trailing stop's current stop price, starting its mark at ``first_open``."""
    if order.watermark is None:
        order.watermark = first_open
    mark = order.watermark
    sign = 1 if order.side is _BUY else -1
    if order.trail_price is not None:
        raw = mark + sign * order.trail_price
    else:
        raw = mark * (1 + sign * _required(order.trail_percent, "trail_percent", order) / _HUNDRED)
    return order.instrument.round_price(raw, "up" if sign > 0 else "down")


def _required(value: Decimal | None, name: str, order: _Working) -> Decimal:
    if value is None:  # submit validation makes this unreachable
        raise ExecutionError(f"order {order.client_order_id}: {order.order_type.value} order without {name}")
    return value


def _limit(order: _Working) -> Decimal:
    return _required(order.limit_price, "limit_price", order)


def _stop(order: _Working) -> Decimal:
    return _required(order.stop_price, "stop_price", order)


def _limit_ok(buy: bool, price: Decimal, limit: Decimal) -> bool:
    return price <= limit if buy else price >= limit


def _stop_hit(buy: bool, price: Decimal, stop: Decimal) -> bool:
    return price >= stop if buy else price <= stop


def _limit_fill(buy: bool, limit: Decimal, p: _Prices, at_open: LiquiditySide) -> _Match | None:
    """A limit order against a bar: the open if marketable, else the limit if the bar reaches it."""
    if _limit_ok(buy, p.open, limit):
        return p.open, False, at_open
    if _limit_ok(buy, p.low if buy else p.high, limit):
        return limit, False, _MAKER
    return None


def _bar_prices(batch: BarBatch, i: int) -> _Prices | None:
    isfinite = math.isfinite
    open_, high, low, close = batch.open.item(i), batch.high.item(i), batch.low.item(i), batch.close.item(i)
    if not (isfinite(open_) and isfinite(high) and isfinite(low) and isfinite(close)) or open_ <= 0:
        return None
    return _Prices(open_, high, low, close, float(batch.volume.item(i)), False)


def _quote_prices(price: float, size: float) -> _Prices | None:
    if not math.isfinite(price) or price <= 0:
        return None
    value = float(price)
    volume = float(size) if math.isfinite(size) and size > 0 else math.nan
    return _Prices(value, value, value, value, volume, True)


def _as_decimal(value: object) -> Decimal | None:
    """Return ``value`` as a finite Decimal, or None if it is not a finite number."""
    try:
        return to_decimal(value)  # type: ignore[arg-type]
    except (AmcpError, TypeError, ValueError, ArithmeticError):
        return None
