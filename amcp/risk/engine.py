"""The pre-trade risk engine: an ordered chain of checks and the firm-wide trading state.

``RiskEngine.check`` answers each ``SubmitOrder`` with accept or ``OrderDenied`` (a reason code
and a message naming the values), never an exception, in the manner of NautilusTrader's
``RiskEngine._deny_order``. Every decision is a function of the engine's own state and the
explicit :class:`RiskContext` (time included): the engine reads no clock and does no I/O, so the
same object runs in a unit test, a backtest and, wrapped by ``ray.remote``, the live RiskActor.

Check order (the first failing check denies; cheap and structural first, then state, then
market data, then portfolio limits, and the rate limit last so that only an order that would
otherwise be accepted uses up the throttle budget):

1.  TRADING_HALTED            state HALTED denies everything, reductions included.
2.  DUPLICATE_CLIENT_ORDER_ID id accepted before by this engine, or a working (open) order's id.
3.  DUPLICATE_INTENT          same (strategy, symbol, side, quantity, type, limit, stop) accepted
                              less than ``duplicate_intent_window_s`` ago (0 disables); an
                              execution algorithm's child (tag ``algo:…``) is keyed by its own
                              derived id as well, so equal slices of one parent pass.
4.  UNKNOWN_INSTRUMENT        ``instrument_for`` raises, or the symbol is not written the way the
                              instrument writes it (``aapl`` for ``AAPL``).
5.  RESTRICTED_SYMBOL         the symbol, or an option's underlying, is restricted.
5a. INVALID_ORDER_CLASS       (and INVALID_PRICE / INVALID_QUANTITY) exits or legs that do not fit
                              the order class (:func:`amcp.risk.checks.order_class_problem`). A
                              multi-leg (``mleg``) order then takes its own checks, see below.
6.  INVALID_QUANTITY          not a finite Decimal > 0 on the lot, or a side that is not buy/sell.
7.  INVALID_PRICE             prices missing/extra for the order type, not > 0, not on the tick.
8.  MAX_ORDER_QUANTITY        quantity > ``max_order_quantity``.
9.  TRADING_REDUCING          state REDUCING and the order is not reducing (see below).
10. REDUCE_ONLY               ``reduce_only`` and the order is not reducing.
11. NO_REFERENCE_PRICE        no usable mark for the symbol in ``portfolio.prices``.
12. STALE_REFERENCE_PRICE     ``ts_ns − price_ts_ns > max_price_age_s`` (or no mark timestamp).
13. PRICE_COLLAR              a limit or stop farther than ``price_collar_pct`` from the mark.
14. MAX_ORDER_NOTIONAL        ``quantity × max(mark, limit, stop) × multiplier`` > limit.
15. MAX_POSITION              worst-case resulting |position| × mark × multiplier > limit
                              (reducing orders pass).
16. MAX_GROSS_EXPOSURE        ``gross_exposure`` + exposure working orders can add + this order's
                              added exposure > limit (orders adding nothing pass).
17. INSUFFICIENT_BUYING_POWER added exposure × ``max(mark, limit, stop)`` > ``buying_power`` minus
                              what open orders and orders accepted earlier in the call consume.
18. THROTTLED                 ``throttle_max_orders`` already accepted in the trailing window.

"Reducing": with position ``p`` and working orders on the same side of the same symbol (open
orders plus earlier accepts in the call, full quantity), a sell of ``q`` reduces iff
``p − working sells − q >= 0`` and a buy iff ``p + working buys + q <= 0``: it can only shrink
the position towards zero, whatever else fills. Crossing zero counts as increasing. Positions
are the firm-wide ``portfolio.positions``. Exposure maths: :mod:`amcp.risk.checks`.

Multi-leg option orders (``mleg``: ``symbol`` is the root, ``quantity`` strategy units): each
leg's symbol must be known and not restricted; ``quantity × largest ratio`` (contracts of the
biggest leg) against ``max_order_quantity``; unless every leg's position intent closes, the order
counts as increasing for REDUCING and ``reduce_only``. Its notional is ``quantity × 100 ×
|net limit|`` for a limit order; a market order is valued at ``quantity × 100 × Σ ratio × mark``
over its legs (the gross premium, an upper bound of the net), so every leg needs a fresh mark
(NO_REFERENCE_PRICE / STALE_REFERENCE_PRICE otherwise). A debit (market, or a positive net
limit) consumes that notional of buying power; a credit consumes none. Position and gross
exposure limits are per symbol and are not applied to the legs of a multi-leg order.

Buying power is taken as notional buying power (the leveraged figure Alpaca reports), so an
order consumes its added exposure at a margin requirement of 1.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Final

from amcp.domain._fast_init import fast_init
from amcp.domain.enums import DenyReason, OrderClass, OrderType, TradingState
from amcp.domain.identifiers import ALGO_CHILD_TAG_PREFIX, ClientOrderId
from amcp.domain.instruments import Instrument, OptionContract
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.domain.messages import OrderDenied, SubmitOrder, TradingStateChanged
from amcp.domain.objects import to_decimal
from amcp.errors import DomainError, RiskError
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.checks import (
    SIDE_SIGN,
    ZERO,
    added_units,
    order_class_problem,
    price_problem,
    quantity_problem,
    valuation_price,
)

if TYPE_CHECKING:
    from amcp.config import RiskConfig

_NS_PER_S: Final = 1_000_000_000
_SEVERITY: Final = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}

_ACTIVE: Final = TradingState.ACTIVE
_SIMPLE: Final = OrderClass.SIMPLE
_MLEG: Final = OrderClass.MLEG
_REDUCING: Final = TradingState.REDUCING
_HALTED: Final = TradingState.HALTED


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class RiskContext:
    """Everything a risk decision may depend on besides the engine's own state.

    Attributes:
        ts_ns: now, UTC nanoseconds; the engine never reads a clock.
        portfolio: positions, equity, buying power, gross exposure, and ``prices`` with
            ``price_ts_ns`` as the reference prices.
        open_orders: working orders; each counts at its full quantity toward position,
            exposure and buying power.
        session_date: the trading session; when it changes, the daily-loss state resets.
    """

    ts_ns: int
    portfolio: PortfolioSnapshot
    open_orders: Sequence[SubmitOrder] = ()
    session_date: date | None = None


class _Source(Enum):
    """Who put the engine in its current trading state."""

    NONE = "none"
    LOSS_LIMIT = "loss_limit"
    KILL_SWITCH = "kill_switch"
    MANUAL = "manual"


# An instrument lookup, cached per symbol: (instrument, restricted message or None), or the
# UNKNOWN_INSTRUMENT message.
_Listing = tuple[Instrument, str | None] | str


_LOSS_LIMIT: Final = _Source.LOSS_LIMIT


class _CallBook:
    """Scratch state of one ``check`` call: working quantity per symbol and what it consumes."""

    __slots__ = ("added_gross", "buying_power_used", "open_ids", "pending", "unpriced")

    def __init__(self) -> None:
        self.pending: dict[str, list[Decimal]] = {}  # symbol -> [working buy qty, working sell qty]
        self.added_gross = ZERO  # USD the working orders can add to gross exposure
        self.buying_power_used = ZERO  # USD of buying power the working orders consume
        self.unpriced: str | None = None  # a working order whose exposure cannot be valued
        self.open_ids: set[ClientOrderId] | frozenset[ClientOrderId] = frozenset()


class RiskEngine:
    """Pre-trade checks and the firm-wide trading state (ACTIVE, REDUCING, HALTED).

    State kept between calls: the trading state and who set it, the kill switch, the daily-loss
    level reached this session, every client order id accepted, the accept timestamps inside
    the throttle window and the intents inside the duplicate-intent window.
    """

    def __init__(
        self,
        config: RiskConfig,
        instrument_for: Callable[[str], Instrument] = default_instrument_for,
    ) -> None:
        self._config = config
        self._instrument_for = instrument_for
        # Limits as exact Decimals and integer nanoseconds, converted once.
        self._max_order_quantity = config.max_order_quantity
        self._max_order_notional = config.max_order_notional_usd
        self._collar = to_decimal(config.price_collar_pct)
        self._max_price_age_ns = round(config.max_price_age_s * _NS_PER_S)
        self._max_position = config.max_position_notional_usd
        self._max_gross = config.max_gross_exposure_usd
        self._intent_window_ns = round(config.duplicate_intent_window_s * _NS_PER_S)
        self._throttle_max = config.throttle_max_orders
        self._throttle_window_ns = round(config.throttle_window_s * _NS_PER_S)
        self._restricted = frozenset(s.strip().upper() for s in config.restricted_symbols)
        self._reduce_fraction = to_decimal(config.daily_loss_reduce_pct)
        self._halt_fraction = to_decimal(config.daily_loss_halt_pct)

        self._state = _ACTIVE
        self._state_reason = "initial state"
        self._source = _Source.NONE
        self._kill_switch = False
        self._loss_level = _ACTIVE
        self._session_date: date | None = None

        self._listings: dict[str, _Listing] = {}
        self._accepted_ids: set[ClientOrderId] = set()
        self._throttle: deque[int] = deque()
        self._intents: dict[tuple[object, ...], int] = {}
        self._intent_log: deque[tuple[int, tuple[object, ...]]] = deque()

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> TradingState:
        """The current trading state."""
        return self._state

    @property
    def kill_switch_engaged(self) -> bool:
        """Whether the kill switch holds the engine HALTED."""
        return self._kill_switch

    def update(self, ctx: RiskContext) -> list[TradingStateChanged]:
        """Apply the session reset and the daily loss limit; return the state changes.

        ``loss = (start_of_day_equity − equity) / start_of_day_equity``. At or above
        ``daily_loss_halt_pct`` the state becomes HALTED, at or above ``daily_loss_reduce_pct``
        REDUCING. The level reached is sticky for the session (a bounce does not lift it), and a
        level is acted on once: after a manual override only a more severe level moves the state
        again. While the kill switch is engaged the level is recorded but the state stays HALTED.
        When ``session_date`` changes the level resets and, if the loss limit set the current
        state, the state returns to ACTIVE. With a start-of-day equity <= 0 the loss is undefined
        and the limit does not act.
        """
        events: list[TradingStateChanged] = []
        ts_ns = ctx.ts_ns
        session = ctx.session_date
        if session is not None and session != self._session_date:
            previous_session = self._session_date
            self._session_date = session
            if previous_session is not None:
                self._loss_level = _ACTIVE
                if self._source is _LOSS_LIMIT and not self._kill_switch:
                    events += self._move(
                        _ACTIVE,
                        _Source.NONE,
                        ts_ns,
                        f"new session {session} after {previous_session}: daily loss limit reset",
                    )
        snapshot = ctx.portfolio
        start = snapshot.start_of_day_equity
        if start <= ZERO:
            return events
        drop = start - snapshot.equity
        if drop <= ZERO:  # no loss: below both limits, which are positive fractions of start
            return events
        if drop >= self._halt_fraction * start:
            verdict, limit_name, limit = _HALTED, "daily_loss_halt_pct", self._halt_fraction
        elif drop >= self._reduce_fraction * start:
            verdict, limit_name, limit = _REDUCING, "daily_loss_reduce_pct", self._reduce_fraction
        else:
            return events
        if _SEVERITY[verdict] <= _SEVERITY[self._loss_level]:
            return events
        self._loss_level = verdict
        if not self._kill_switch and _SEVERITY[verdict] > _SEVERITY[self._state]:
            reason = (
                f"daily loss {drop / start:.4%} (start-of-day equity {start} USD, equity "
                f"{snapshot.equity} USD) >= {limit_name} {limit:.2%}"
            )
            events += self._move(verdict, _Source.LOSS_LIMIT, ts_ns, reason)
        return events

    def engage_kill_switch(self, ts_ns: int, reason: str) -> list[TradingStateChanged]:
        """Halt all trading until :meth:`reset_kill_switch`; idempotent."""
        if self._kill_switch:
            return []
        self._kill_switch = True
        return self._move(_HALTED, _Source.KILL_SWITCH, ts_ns, f"kill switch engaged: {reason}")

    def reset_kill_switch(self, ts_ns: int, reason: str) -> list[TradingStateChanged]:
        """Release the kill switch: back to ACTIVE, or to the level the daily loss limit reached
        this session (REDUCING or HALTED). Idempotent: a no-op when not engaged."""
        if not self._kill_switch:
            return []
        self._kill_switch = False
        level = self._loss_level
        source = _Source.LOSS_LIMIT if level is not _ACTIVE else _Source.NONE
        return self._move(
            level, source, ts_ns, f"kill switch reset: {reason}; daily loss limit level is {level.value}"
        )

    def set_state(self, state: TradingState, ts_ns: int, reason: str) -> list[TradingStateChanged]:
        """Set the trading state by hand (an operator's override). A manual state survives a
        session change; a later, more severe daily-loss level still moves it.

        Raises:
            RiskError: if ``state`` is not a trading state, or the kill switch is engaged and
                ``state`` is not HALTED (reset the kill switch instead).
        """
        try:
            target = TradingState(state)
        except ValueError:
            raise RiskError(
                f"not a trading state: {state!r} (expected one of {[s.value for s in TradingState]})"
            ) from None
        if self._kill_switch:
            if target is not _HALTED:
                raise RiskError(
                    f"cannot set trading state {target.value}: the kill switch is engaged "
                    f"({self._state_reason}); call reset_kill_switch first"
                )
            return []
        return self._move(target, _Source.MANUAL, ts_ns, f"set manually: {reason}")

    def _move(
        self, state: TradingState, source: _Source, ts_ns: int, reason: str
    ) -> list[TradingStateChanged]:
        self._source = source
        if state is self._state:
            return []
        previous = self._state
        self._state = state
        self._state_reason = reason
        return [TradingStateChanged(previous=previous, state=state, ts_ns=ts_ns, reason=reason)]

    # ------------------------------------------------------------------ checks

    def check(
        self, commands: Sequence[SubmitOrder], ctx: RiskContext
    ) -> tuple[list[SubmitOrder], list[OrderDenied]]:
        """Run the pre-trade checks on each command, in order; see the module docstring.

        Accepted orders accumulate within the call: a later command sees the exposure, buying
        power, throttle slot, client order id and intent of every earlier accepted one. Never
        raises on a bad command: it is denied with a reason code and a message naming the values.

        Returns:
            The accepted commands (same objects, same order) and one ``OrderDenied`` per denied
            command, stamped ``ctx.ts_ns``.
        """
        accepted: list[SubmitOrder] = []
        denied: list[OrderDenied] = []
        if not commands:
            return accepted, denied
        ts_ns = ctx.ts_ns
        if self._state is _HALTED:
            message = f"trading is halted: {self._state_reason}"
            for command in commands:
                denied.append(_denied(command, ts_ns, DenyReason.TRADING_HALTED, message))
            return accepted, denied
        self._expire(ts_ns)
        book = self._book(ctx)
        for command in commands:
            verdict = self._check_one(command, ctx, book)
            if verdict is None:
                accepted.append(command)
            else:
                denied.append(_denied(command, ts_ns, verdict[0], verdict[1]))
        return accepted, denied

    def release(self, command: SubmitOrder) -> None:
        """Forget that ``command`` was accepted: it was never sent (the intent could not be
        persisted, or trading stopped between the check and the send), so checking it again —
        the same id, the same intent — must not be refused as a duplicate. Its throttle slot
        stays used (conservative)."""
        self._accepted_ids.discard(command.client_order_id)
        if self._intent_window_ns:
            self._intents.pop(_intent_key(command), None)

    def _check_one(
        self, command: SubmitOrder, ctx: RiskContext, book: _CallBook
    ) -> tuple[DenyReason, str] | None:
        ts_ns = ctx.ts_ns
        client_order_id = command.client_order_id
        if client_order_id in self._accepted_ids:
            return (
                DenyReason.DUPLICATE_CLIENT_ORDER_ID,
                f"client_order_id {client_order_id} was already accepted",
            )
        if client_order_id in book.open_ids:
            return (
                DenyReason.DUPLICATE_CLIENT_ORDER_ID,
                f"client_order_id {client_order_id} is a working order",
            )

        symbol = command.symbol
        side = command.side
        quantity = command.quantity
        intent: tuple[object, ...] | None = None
        if self._intent_window_ns:
            intent = _intent_key(command)
            last_ns = self._intents.get(intent)
            if last_ns is not None and ts_ns - last_ns < self._intent_window_ns:
                return DenyReason.DUPLICATE_INTENT, (
                    f"{command.strategy_id} {_text(side)} {quantity} {symbol} {_text(command.order_type)} "
                    f"limit {command.limit_price} stop {command.stop_price} was accepted "
                    f"{(ts_ns - last_ns) / _NS_PER_S:g}s ago (at {last_ns}); duplicate_intent_window_s "
                    f"{self._config.duplicate_intent_window_s:g}"
                )

        listing = self._listings.get(symbol)
        if listing is None:
            listing = self._listing(symbol)
        if isinstance(listing, str):
            return DenyReason.UNKNOWN_INSTRUMENT, listing
        instrument, restricted = listing
        if restricted is not None:
            return DenyReason.RESTRICTED_SYMBOL, restricted
        if (
            command.order_class is not _SIMPLE
            or command.legs
            or command.take_profit_limit_price is not None
            or command.stop_loss_stop_price is not None
        ):
            verdict = order_class_problem(command, instrument)
            if verdict is not None:
                return verdict
            if command.order_class is _MLEG:
                verdict = self._check_multi_leg(command, ctx, book)
                if verdict is None:
                    self._accepted_ids.add(client_order_id)
                    self._throttle.append(ts_ns)
                    if intent is not None:
                        self._intents[intent] = ts_ns
                        self._intent_log.append((ts_ns, intent))
                return verdict

        sign = SIDE_SIGN.get(side)
        if sign is None:
            return DenyReason.INVALID_QUANTITY, f"side {side!r} is neither buy nor sell"
        side_name = "buy" if sign > 0 else "sell"
        problem = quantity_problem(quantity, instrument)
        if problem is not None:
            return DenyReason.INVALID_QUANTITY, problem
        problem = price_problem(command, instrument)
        if problem is not None:
            return DenyReason.INVALID_PRICE, problem
        if quantity > self._max_order_quantity:
            return DenyReason.MAX_ORDER_QUANTITY, (
                f"quantity {quantity} {symbol} exceeds max_order_quantity {self._max_order_quantity}"
            )

        # Position effect, worst case over working orders on the same side.
        snapshot = ctx.portfolio
        position = snapshot.positions.get(symbol, ZERO)
        pending = book.pending.get(symbol)
        pending_buy, pending_sell = (ZERO, ZERO) if pending is None else (pending[0], pending[1])
        if sign > 0:
            working = pending_buy
            resulting = position + pending_buy + quantity
            reducing = resulting <= ZERO
        else:
            working = pending_sell
            resulting = position - pending_sell - quantity
            reducing = resulting >= ZERO
        if not reducing:
            if self._state is _REDUCING:
                return DenyReason.TRADING_REDUCING, (
                    f"trading is reducing ({self._state_reason}): {side_name} {quantity} {symbol} "
                    f"would take the position {position} (working {side_name}s {working}) to {resulting}"
                )
            if command.reduce_only:
                return DenyReason.REDUCE_ONLY, (
                    f"reduce_only {side_name} {quantity} {symbol} would take the position {position} "
                    f"(working {side_name}s {working}) to {resulting}"
                )

        # Reference price: present, usable, fresh.
        reference = snapshot.prices.get(symbol)
        if reference is None:
            return DenyReason.NO_REFERENCE_PRICE, f"no reference price for {symbol} in the portfolio snapshot"
        if not reference.is_finite() or reference <= ZERO:
            return (
                DenyReason.NO_REFERENCE_PRICE,
                f"reference price {reference} for {symbol} is not a positive number",
            )
        price_ts_ns = snapshot.price_ts_ns.get(symbol)
        if price_ts_ns is None:
            return DenyReason.STALE_REFERENCE_PRICE, (
                f"reference price {reference} for {symbol} has no timestamp (max_price_age_s "
                f"{self._config.max_price_age_s:g})"
            )
        age_ns = ts_ns - price_ts_ns
        if age_ns > self._max_price_age_ns:
            return DenyReason.STALE_REFERENCE_PRICE, (
                f"reference price {reference} for {symbol} is {age_ns / _NS_PER_S:g}s old (taken at "
                f"{price_ts_ns}, now {ts_ns}); max_price_age_s {self._config.max_price_age_s:g}"
            )

        limit_price = command.limit_price
        stop_price = command.stop_price
        if limit_price is not None or stop_price is not None:
            band = reference * self._collar
            for name, value in (("limit_price", limit_price), ("stop_price", stop_price)):
                if value is not None and abs(value - reference) > band:
                    return DenyReason.PRICE_COLLAR, (
                        f"{name} {value} is {abs(value - reference) / reference:.2%} from the reference "
                        f"price {reference} of {symbol}; price_collar_pct {self._collar:.2%} allows "
                        f"{reference - band} to {reference + band}"
                    )

        multiplier = instrument.multiplier
        price = reference if limit_price is None and stop_price is None else valuation_price(reference, command)
        notional = quantity * price * multiplier
        if notional > self._max_order_notional:
            return DenyReason.MAX_ORDER_NOTIONAL, (
                f"order notional {notional} USD ({quantity} × {price} × {multiplier}) {symbol} exceeds "
                f"max_order_notional_usd {self._max_order_notional}"
            )

        if not reducing:
            position_notional = abs(resulting) * reference * multiplier
            if position_notional > self._max_position:
                return DenyReason.MAX_POSITION, (
                    f"{side_name} {quantity} {symbol} would take the position {position} (working "
                    f"{side_name}s {working}) to {resulting}, {position_notional} USD at {reference} × "
                    f"{multiplier}; max_position_notional_usd {self._max_position}"
                )

        # Exposure the order adds on top of the position and the working orders.
        # With no working order on the symbol the working orders add nothing: added_units is 0.
        before = ZERO if pending is None else added_units(position, pending_buy, pending_sell)
        if sign > 0:
            after = added_units(position, pending_buy + quantity, pending_sell)
        else:
            after = added_units(position, pending_buy, pending_sell + quantity)
        added = after - before
        gross_added = ZERO
        cost = ZERO
        if added > ZERO:
            if book.unpriced is not None:
                return DenyReason.NO_REFERENCE_PRICE, (
                    f"{book.unpriced} has no reference price, so gross exposure and buying power "
                    f"cannot be valued for {side_name} {quantity} {symbol}"
                )
            gross_added = added * reference * multiplier
            gross = snapshot.gross_exposure + book.added_gross + gross_added
            if gross > self._max_gross:
                return DenyReason.MAX_GROSS_EXPOSURE, (
                    f"gross exposure would be {gross} USD (positions {snapshot.gross_exposure} + working "
                    f"orders {book.added_gross} + this order {gross_added}); max_gross_exposure_usd "
                    f"{self._max_gross}"
                )
            cost = added * price * multiplier
            remaining = snapshot.buying_power - book.buying_power_used
            if cost > remaining:
                return DenyReason.INSUFFICIENT_BUYING_POWER, (
                    f"{side_name} {quantity} {symbol} needs {cost} USD of buying power ({added} × "
                    f"{price} × {multiplier}); {remaining} USD remains (buying power "
                    f"{snapshot.buying_power} − working orders {book.buying_power_used})"
                )

        if len(self._throttle) >= self._throttle_max:
            return DenyReason.THROTTLED, (
                f"{len(self._throttle)} orders accepted in the trailing {self._config.throttle_window_s:g}s "
                f"(oldest at {self._throttle[0]}, now {ts_ns}); throttle_max_orders {self._throttle_max}"
            )

        # Accepted: record it so later commands of this call and later calls see it.
        if pending is None:
            book.pending[symbol] = [quantity, ZERO] if sign > 0 else [ZERO, quantity]
        else:
            pending[0 if sign > 0 else 1] += quantity
        if added > ZERO:
            book.added_gross += gross_added
            book.buying_power_used += cost
        self._accepted_ids.add(client_order_id)
        self._throttle.append(ts_ns)
        if intent is not None:
            self._intents[intent] = ts_ns
            self._intent_log.append((ts_ns, intent))
        return None

    def _check_multi_leg(
        self, command: SubmitOrder, ctx: RiskContext, book: _CallBook
    ) -> tuple[DenyReason, str] | None:
        """The checks of a well-formed multi-leg order (see the module docstring); on accept,
        what it consumes is added to ``book``."""
        legs = command.legs
        quantity = command.quantity
        for leg in legs:
            listing = self._listings.get(leg.symbol) or self._listing(leg.symbol)
            if isinstance(listing, str):
                return DenyReason.UNKNOWN_INSTRUMENT, listing
            if listing[1] is not None:
                return DenyReason.RESTRICTED_SYMBOL, listing[1]
        largest = max(leg.ratio_quantity for leg in legs)
        if quantity * largest > self._max_order_quantity:
            return DenyReason.MAX_ORDER_QUANTITY, (
                f"mleg {quantity} × ratio {largest} = {quantity * largest} contracts of one leg exceeds "
                f"max_order_quantity {self._max_order_quantity}"
            )
        if not all(leg.position_intent is not None and leg.position_intent.closes for leg in legs):
            if self._state is _REDUCING:
                return DenyReason.TRADING_REDUCING, (
                    f"trading is reducing ({self._state_reason}): an mleg order on {command.symbol} whose legs "
                    "do not all close positions"
                )
            if command.reduce_only:
                return DenyReason.REDUCE_ONLY, (
                    f"reduce_only mleg order on {command.symbol} has legs that do not close positions"
                )
        multiplier = OptionContract.from_occ(legs[0].symbol).multiplier
        limit = command.limit_price
        snapshot = ctx.portfolio
        if command.order_type is OrderType.LIMIT and limit is not None:
            price, basis = abs(limit), f"|net limit {limit}|"
        else:
            price = ZERO
            for leg in legs:
                mark = snapshot.prices.get(leg.symbol)
                if mark is None or not mark.is_finite() or mark <= ZERO:
                    return DenyReason.NO_REFERENCE_PRICE, (
                        f"a market mleg order is valued at its legs' marks; {leg.symbol} has none usable ({mark})"
                    )
                mark_ts_ns = snapshot.price_ts_ns.get(leg.symbol)
                if mark_ts_ns is None or ctx.ts_ns - mark_ts_ns > self._max_price_age_ns:
                    return DenyReason.STALE_REFERENCE_PRICE, (
                        f"mark {mark} of mleg leg {leg.symbol} taken at {mark_ts_ns}, now {ctx.ts_ns}; "
                        f"max_price_age_s {self._config.max_price_age_s:g}"
                    )
                price += leg.ratio_quantity * mark
            basis = f"Σ ratio × mark {price}"
        notional = quantity * price * multiplier
        if notional > self._max_order_notional:
            return DenyReason.MAX_ORDER_NOTIONAL, (
                f"mleg order notional {notional} USD ({quantity} × {basis} × {multiplier}) on {command.symbol} "
                f"exceeds max_order_notional_usd {self._max_order_notional}"
            )
        cost = notional if limit is None or limit > ZERO else ZERO
        remaining = snapshot.buying_power - book.buying_power_used
        if cost > remaining:
            return DenyReason.INSUFFICIENT_BUYING_POWER, (
                f"mleg debit on {command.symbol} needs {cost} USD of buying power; {remaining} USD remains "
                f"(buying power {snapshot.buying_power} − working orders {book.buying_power_used})"
            )
        if len(self._throttle) >= self._throttle_max:
            return DenyReason.THROTTLED, (
                f"{len(self._throttle)} orders accepted in the trailing {self._config.throttle_window_s:g}s "
                f"(oldest at {self._throttle[0]}, now {ctx.ts_ns}); throttle_max_orders {self._throttle_max}"
            )
        book.buying_power_used += cost
        return None

    # ------------------------------------------------------------------ helpers

    def _listing(self, symbol: str) -> _Listing:
        """Look up (and cache) the instrument of ``symbol`` and whether it is restricted."""
        listing: _Listing
        try:
            instrument = self._instrument_for(symbol)
        except (DomainError, LookupError) as exc:
            listing = f"unknown instrument {symbol!r}: {exc}"
        else:
            canonical = instrument.symbol
            if canonical != symbol:
                listing = f"symbol {symbol!r} is not written as its instrument writes it: {canonical!r}"
            elif canonical in self._restricted:
                listing = (instrument, f"{canonical} is a restricted symbol")
            elif isinstance(instrument, OptionContract) and instrument.underlying in self._restricted:
                listing = (
                    instrument,
                    f"{canonical} is an option on the restricted symbol {instrument.underlying}",
                )
            else:
                listing = (instrument, None)
        self._listings[symbol] = listing
        return listing

    def _expire(self, ts_ns: int) -> None:
        """Drop throttle stamps and intents that have left their windows at ``ts_ns``."""
        throttle = self._throttle
        horizon = ts_ns - self._throttle_window_ns
        while throttle and throttle[0] <= horizon:
            throttle.popleft()
        log = self._intent_log
        if log:
            horizon = ts_ns - self._intent_window_ns
            intents = self._intents
            while log and log[0][0] <= horizon:
                stamp, intent = log.popleft()
                if intents.get(intent) == stamp:
                    del intents[intent]

    def _book(self, ctx: RiskContext) -> _CallBook:
        """Fold the working orders into a fresh per-call book (each at its full quantity)."""
        book = _CallBook()
        open_orders = ctx.open_orders
        if not open_orders:
            return book
        book.open_ids = {order.client_order_id for order in open_orders}
        positions = ctx.portfolio.positions
        prices = ctx.portfolio.prices
        pending_by_symbol = book.pending
        for order in open_orders:
            sign = SIDE_SIGN.get(order.side)
            quantity = order.quantity
            if sign is None or not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity <= 0:
                continue  # cannot fill, adds nothing
            symbol = order.symbol
            pending = pending_by_symbol.get(symbol)
            if pending is None:
                pending = pending_by_symbol[symbol] = [ZERO, ZERO]
            position = positions.get(symbol, ZERO)
            before = added_units(position, pending[0], pending[1])
            pending[0 if sign > 0 else 1] += quantity
            added = added_units(position, pending[0], pending[1]) - before
            if added <= 0:
                continue
            listing = self._listings.get(symbol) or self._listing(symbol)
            reference = prices.get(symbol)
            if reference is None:
                reference = order.limit_price if order.limit_price is not None else order.stop_price
            if (
                isinstance(listing, str)
                or not isinstance(reference, Decimal)
                or not reference.is_finite()
                or reference <= 0
            ):
                if book.unpriced is None:
                    book.unpriced = (
                        f"working order {order.client_order_id} ({_text(order.side)} {quantity} {symbol})"
                    )
                continue
            multiplier = listing[0].multiplier
            book.added_gross += added * reference * multiplier
            book.buying_power_used += added * valuation_price(reference, order) * multiplier
        return book


def _intent_key(command: SubmitOrder) -> tuple[object, ...]:
    """What makes two commands the same intent for the duplicate-intent check."""
    intent: tuple[object, ...] = (
        command.strategy_id,
        command.symbol,
        command.side,
        command.quantity,
        command.order_type,
        command.limit_price,
        command.stop_price,
    )
    if command.tag.startswith(ALGO_CHILD_TAG_PREFIX):
        # equal slices of one parent are not duplicates: a child is its derived id
        intent = (*intent, command.client_order_id)
    if command.order_class is not _SIMPLE:
        intent = (*intent, command.order_class, command.legs, command.take_profit_limit_price,
                  command.stop_loss_stop_price, command.stop_loss_limit_price)
    return intent


def _text(value: object) -> object:
    """An enum member's value, anything else as is (for messages)."""
    return getattr(value, "value", value)


def _denied(command: SubmitOrder, ts_ns: int, reason: DenyReason, message: str) -> OrderDenied:
    return OrderDenied(
        client_order_id=command.client_order_id,
        ts_ns=ts_ns,
        reason=reason,
        message=message,
        strategy_id=command.strategy_id,
        symbol=command.symbol,
    )
