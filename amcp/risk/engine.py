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
13. PRICE_COLLAR              a limit or stop, or a bracket/OCO/OTO exit (``take_profit_limit_price``,
                              ``stop_loss_stop_price``, ``stop_loss_limit_price``), farther than
                              ``price_collar_pct`` from the mark; the message names the price.
14. MAX_ORDER_NOTIONAL        ``quantity × max(mark, limit, stop) × multiplier`` > limit.
15. MAX_POSITION              worst-case resulting |position| × mark × multiplier > limit
                              (reducing orders pass).
16. MAX_GROSS_EXPOSURE        ``gross_exposure`` + exposure working orders can add + this order's
                              added exposure > limit (orders adding nothing pass).
17. INSUFFICIENT_BUYING_POWER added exposure × ``max(mark, limit, stop)`` > ``buying_power`` minus
                              what open orders and orders accepted earlier in the call consume.
18. THROTTLED                 ``throttle_max_orders`` already accepted in the trailing window.
19. GREEK_LIMIT / NO_GREEKS   an option order (simple or mleg) that would take an underlying's net
                              delta, gamma or vega beyond its limit in the worst case, or whose
                              exposure lacks greeks in ``ctx.option_greeks``; only when a greek
                              limit is set (:mod:`amcp.risk._greeks`). It comes after the throttle
                              check, which consumes nothing: a slot is used only on accept.

"Reducing": with position ``p`` and working orders on the same side of the same symbol (open
orders plus earlier accepts in the call, full quantity), a sell of ``q`` reduces iff
``p − working sells − q >= 0`` and a buy iff ``p + working buys + q <= 0``: it can only shrink
the position towards zero, whatever else fills. Crossing zero counts as increasing. Positions
are the firm-wide ``portfolio.positions``. Exposure maths: :mod:`amcp.risk.checks`.

Multi-leg option orders (``mleg``) take their own checks after 5a, in the order listed in
:mod:`amcp.risk._multi_leg`; an accepted one's legs join the working quantity of their symbols
for the rest of the call. Working orders (``ctx.open_orders``) are folded into each call's
book, simple orders at their full quantity and mleg orders leg by leg; a working order that
cannot be valued makes every later order that adds exposure deny with NO_REFERENCE_PRICE. The
fold and its reuse across calls: :mod:`amcp.risk._book`; instrument lookups:
:mod:`amcp.risk._listings`.

Buying power is taken as notional buying power (the leveraged figure Alpaca reports), so an
order consumes its added exposure at a margin requirement of 1.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Final

from amcp.domain._fast_init import fast_init
from amcp.domain.enums import DenyReason, OrderClass, TradingState
from amcp.domain.identifiers import ALGO_CHILD_TAG_PREFIX, ClientOrderId
from amcp.domain.instruments import Instrument
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.domain.messages import OrderDenied, SubmitOrder, TradingStateChanged
from amcp.domain.objects import to_decimal
from amcp.errors import RiskError
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk._book import CallBook, WorkingOrders
from amcp.risk._greeks import NO_GREEKS, GreekLimits, OptionGreeks
from amcp.risk._listings import Listings
from amcp.risk._multi_leg import check_multi_leg
from amcp.risk.checks import (
    NS_PER_S,
    SIDE_SIGN,
    ZERO,
    added_units,
    enum_text,
    fresh_price,
    order_class_problem,
    price_problem,
    quantity_problem,
    reference_problem,
    throttled_message,
    valuation_price,
)

if TYPE_CHECKING:
    from amcp.config import RiskConfig

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
            exposure and buying power (an ``mleg`` order leg by leg). Treated as immutable, like
            ``portfolio``: their fold is cached while the same objects are passed.
        session_date: the trading session; when it changes, the daily-loss state resets.
        option_greeks: OCC symbol -> :class:`OptionGreeks` per unit of underlying, for the greek
            limits (e.g. from option snapshots or :func:`amcp.options.black_scholes.bsm_greeks`);
            read only when a limit is set. Treated as immutable, like ``portfolio``.
    """

    ts_ns: int
    portfolio: PortfolioSnapshot
    open_orders: Sequence[SubmitOrder] = ()
    session_date: date | None = None
    option_greeks: Mapping[str, OptionGreeks] = NO_GREEKS


class _Source(Enum):
    """Who put the engine in its current trading state."""

    NONE = "none"
    LOSS_LIMIT = "loss_limit"
    KILL_SWITCH = "kill_switch"
    MANUAL = "manual"


_LOSS_LIMIT: Final = _Source.LOSS_LIMIT


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
        # Limits as exact Decimals and integer nanoseconds, converted once.
        self._max_order_quantity = config.max_order_quantity
        self._max_order_notional = config.max_order_notional_usd
        self._collar = to_decimal(config.price_collar_pct)
        self._max_price_age_ns = round(config.max_price_age_s * NS_PER_S)
        self._max_position = config.max_position_notional_usd
        self._max_gross = config.max_gross_exposure_usd
        self._intent_window_ns = round(config.duplicate_intent_window_s * NS_PER_S)
        self._throttle_max = config.throttle_max_orders
        self._throttle_window_ns = round(config.throttle_window_s * NS_PER_S)
        self._reduce_fraction = to_decimal(config.daily_loss_reduce_pct)
        self._halt_fraction = to_decimal(config.daily_loss_halt_pct)

        self._state = _ACTIVE
        self._state_reason = "initial state"
        self._source = _Source.NONE
        self._kill_switch = False
        self._loss_level = _ACTIVE
        self._session_date: date | None = None

        self._listings = Listings(
            instrument_for, frozenset(s.strip().upper() for s in config.restricted_symbols)
        )
        self._working_orders = WorkingOrders(self._listings)
        self._greeks = GreekLimits.from_config(config, self._listings)  # None: no greek limit set
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
        book = self._working_orders.book(ctx.portfolio, ctx.open_orders)
        if self._greeks is not None:
            self._greeks.start(ctx.portfolio, ctx.option_greeks, ctx.open_orders)
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
        self, command: SubmitOrder, ctx: RiskContext, book: CallBook
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
                    f"{command.strategy_id} {enum_text(side)} {quantity} {symbol} "
                    f"{enum_text(command.order_type)} limit {command.limit_price} stop {command.stop_price} "
                    f"was accepted {(ts_ns - last_ns) / NS_PER_S:g}s ago (at {last_ns}); "
                    f"duplicate_intent_window_s {self._config.duplicate_intent_window_s:g}"
                )

        listing = self._listings[symbol]
        if isinstance(listing, str):
            return DenyReason.UNKNOWN_INSTRUMENT, listing
        instrument, restricted = listing
        if restricted is not None:
            return DenyReason.RESTRICTED_SYMBOL, restricted
        exits: tuple[tuple[str, Decimal | None], ...] = ()
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
                verdict = check_multi_leg(
                    command,
                    ctx.portfolio,
                    ts_ns,
                    book,
                    listings=self._listings,
                    config=self._config,
                    max_price_age_ns=self._max_price_age_ns,
                    reducing_reason=self._state_reason if self._state is _REDUCING else None,
                    throttle=self._throttle,
                    greeks=self._greeks,
                )
                if verdict is None:
                    self._accepted_ids.add(client_order_id)
                    self._throttle.append(ts_ns)
                    if intent is not None:
                        self._intents[intent] = ts_ns
                        self._intent_log.append((ts_ns, intent))
                return verdict
            exits = (
                ("take_profit_limit_price", command.take_profit_limit_price),
                ("stop_loss_stop_price", command.stop_loss_stop_price),
                ("stop_loss_limit_price", command.stop_loss_limit_price),
            )

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
        pending_buy, pending_sell = (ZERO, ZERO) if pending is None else pending
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
        price_ts_ns = snapshot.price_ts_ns.get(symbol)
        if not fresh_price(reference, price_ts_ns, ts_ns, self._max_price_age_ns):
            return reference_problem(symbol, reference, price_ts_ns, ts_ns, self._config.max_price_age_s)

        limit_price = command.limit_price
        stop_price = command.stop_price
        if limit_price is not None or stop_price is not None or exits:
            band = reference * self._collar
            for name, value in (("limit_price", limit_price), ("stop_price", stop_price), *exits):
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
            return DenyReason.THROTTLED, throttled_message(
                self._throttle, self._throttle_max, self._config.throttle_window_s, ts_ns
            )
        if self._greeks is not None:
            verdict = self._greeks.check(command)
            if verdict is not None:
                return verdict

        # Accepted: record it so later commands of this call and later calls see it.
        if sign > 0:
            book.pending[symbol] = (pending_buy + quantity, pending_sell)
        else:
            book.pending[symbol] = (pending_buy, pending_sell + quantity)
        if added > ZERO:
            book.added_gross += gross_added
            book.buying_power_used += cost
        self._accepted_ids.add(client_order_id)
        self._throttle.append(ts_ns)
        if intent is not None:
            self._intents[intent] = ts_ns
            self._intent_log.append((ts_ns, intent))
        return None

    # ------------------------------------------------------------------ helpers

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


def _denied(command: SubmitOrder, ts_ns: int, reason: DenyReason, message: str) -> OrderDenied:
    return OrderDenied(
        client_order_id=command.client_order_id,
        ts_ns=ts_ns,
        reason=reason,
        message=message,
        strategy_id=command.strategy_id,
        symbol=command.symbol,
    )
