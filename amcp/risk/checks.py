"""Stateless pieces of the pre-trade checks: order-shape validation, worst-case exposure maths,
reference-price freshness and the messages several checks share.

Nothing here holds state or reads a clock; :mod:`amcp.risk.engine` composes these into the
ordered check chain and keeps the state (trading state, accepted ids, throttle, intents).

Worst-case exposure model
-------------------------
Working orders may or may not fill, so for each symbol the engine keeps the position ``p``
(signed, from the snapshot) and the total quantity of working buy orders ``B`` and sell orders
``S`` (the open orders passed in plus the orders accepted earlier in the same call, each at its
full quantity). Whatever subset of them fills, the resulting position lies in ``[p − S, p + B]``,
so the worst-case absolute position is::

    worst(p, B, S) = max(|p + B|, |p − S|)

and the exposure the working orders can add on top of the position is::

    added_units(p, B, S) = max(0, worst(p, B, S) − |p|)

An order of quantity ``q`` adds ``added_units`` after − before (never negative). An order that
only eats into the position (a sell of at most ``p − S`` against a long, a buy of at most
``−p − B`` against a short) adds nothing: that is what "reducing" means here, and it is how a
reducing order passes the gross exposure and buying power checks.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import Final, TypeGuard

from amcp.domain.enums import DenyReason, OrderClass, OrderSide, OrderType
from amcp.domain.instruments import Instrument, OptionContract
from amcp.domain.messages import SubmitOrder
from amcp.errors import DomainError

ZERO: Final = Decimal(0)
NS_PER_S: Final = 1_000_000_000
_MARKET: Final = OrderType.MARKET

#: order side -> sign of its quantity; a plain "buy"/"sell" string hashes equal to the enum.
SIDE_SIGN: Final[dict[OrderSide, int]] = {OrderSide.BUY: 1, OrderSide.SELL: -1}

#: order type -> (uses limit_price, uses stop_price, is a trailing stop); a price an order type
#: does not use must be absent. A plain "limit" string hashes equal to the enum, so it finds its row.
_PRICES_USED: Final[dict[OrderType, tuple[bool, bool, bool]]] = {
    OrderType.MARKET: (False, False, False),
    OrderType.LIMIT: (True, False, False),
    OrderType.STOP: (False, True, False),
    OrderType.STOP_LIMIT: (True, True, False),
    OrderType.TRAILING_STOP: (False, False, True),
}


def added_units(position: Decimal, pending_buy: Decimal, pending_sell: Decimal) -> Decimal:
    """Return the quantity by which working orders can raise ``|position|`` in the worst case.

    ``max(0, max(|p + B|, |p − S|) − |p|)``: see the module docstring.
    """
    high = abs(position + pending_buy)
    low = abs(position - pending_sell)
    worst = max(low, high)
    base = abs(position)
    return worst - base if worst > base else ZERO


def add_working(
    pending: dict[str, tuple[Decimal, Decimal]], symbol: str, sign: int, quantity: Decimal, position: Decimal
) -> Decimal:
    """Add ``quantity`` to the working buys (``sign`` > 0) or sells of ``symbol`` in ``pending``
    (symbol -> (working buys, working sells)); return the units by which that raises the
    worst-case ``|position|``: ``added_units`` after − before, 0 or more."""
    current = pending.get(symbol)
    if current is None:
        buys = sells = before = ZERO
    else:
        buys, sells = current
        before = added_units(position, buys, sells)
    if sign > 0:
        buys += quantity
    else:
        sells += quantity
    pending[symbol] = (buys, sells)
    return added_units(position, buys, sells) - before


def usable_price(price: object) -> TypeGuard[Decimal]:
    """Return whether ``price`` can value exposure: a finite Decimal > 0."""
    return isinstance(price, Decimal) and price.is_finite() and price > 0


def fresh_price(
    reference: Decimal | None, price_ts_ns: int | None, ts_ns: int, max_age_ns: int
) -> TypeGuard[Decimal]:
    """Return whether a mark ``reference`` taken at ``price_ts_ns`` is usable at ``ts_ns``: a
    positive finite number, timestamped, at most ``max_age_ns`` old."""
    return (
        reference is not None
        and reference.is_finite()
        and reference > ZERO
        and price_ts_ns is not None
        and ts_ns - price_ts_ns <= max_age_ns
    )


def reference_problem(
    symbol: str, reference: Decimal | None, price_ts_ns: int | None, ts_ns: int, max_age_s: float
) -> tuple[DenyReason, str]:
    """Return why the mark ``reference`` of ``symbol``, taken at ``price_ts_ns``, that
    :func:`fresh_price` refused cannot be used at ``ts_ns``: absent, not a positive number,
    without a timestamp, or older than ``max_age_s``."""
    if reference is None:
        return DenyReason.NO_REFERENCE_PRICE, f"no reference price for {symbol} in the portfolio snapshot"
    if not reference.is_finite() or reference <= ZERO:
        return (
            DenyReason.NO_REFERENCE_PRICE,
            f"reference price {reference} for {symbol} is not a positive number",
        )
    if price_ts_ns is None:
        return DenyReason.STALE_REFERENCE_PRICE, (
            f"reference price {reference} for {symbol} has no timestamp (max_price_age_s {max_age_s:g})"
        )
    age_ns = ts_ns - price_ts_ns
    return DenyReason.STALE_REFERENCE_PRICE, (
        f"reference price {reference} for {symbol} is {age_ns / NS_PER_S:g}s old (taken at "
        f"{price_ts_ns}, now {ts_ns}); max_price_age_s {max_age_s:g}"
    )


def throttled_message(throttle: deque[int], max_orders: int, window_s: float, ts_ns: int) -> str:
    """Return the THROTTLED message: ``throttle`` holds the accept stamps inside the trailing window."""
    return (
        f"{len(throttle)} orders accepted in the trailing {window_s:g}s "
        f"(oldest at {throttle[0]}, now {ts_ns}); throttle_max_orders {max_orders}"
    )


def enum_text(value: object) -> object:
    """Return an enum member's value, anything else as is (for messages)."""
    return getattr(value, "value", value)


def quantity_problem(quantity: object, instrument: Instrument) -> str | None:
    """Return why ``quantity`` is not a valid order quantity for ``instrument``, or ``None``."""
    if not isinstance(quantity, Decimal) or not quantity.is_finite():
        return f"quantity {quantity!r} is not a finite Decimal"
    if not instrument.is_valid_quantity(quantity):
        return (
            f"quantity {quantity} must be > 0 and a multiple of the lot size {instrument.lot_size} "
            f"of {instrument.symbol}"
        )
    return None


def _price_value_problem(name: str, value: object, instrument: Instrument) -> str | None:
    if not isinstance(value, Decimal) or not value.is_finite():
        return f"{name} {value!r} is not a finite Decimal"
    if not instrument.is_valid_price(value):
        tick = instrument.tick_size(value)
        return f"{name} {value} must be > 0 and a multiple of the tick {tick} of {instrument.symbol}"
    return None


def price_problem(command: SubmitOrder, instrument: Instrument) -> str | None:
    """Return why the order's prices do not fit its type and the instrument's tick, or ``None``.

    Each order type must carry exactly the prices it uses: ``limit`` a limit price, ``stop`` a
    stop price, ``stop_limit`` both, ``market`` and ``trailing_stop`` neither; a trailing stop
    carries exactly one of ``trail_price`` and ``trail_percent``, positive. Limit and stop
    prices must be positive multiples of the instrument's tick at that price.
    """
    order_type = command.order_type
    limit = command.limit_price
    stop = command.stop_price
    if (
        order_type is _MARKET
        and limit is None
        and stop is None
        and command.trail_price is None
        and command.trail_percent is None
    ):
        return None  # the common case, decided without a lookup
    used = _PRICES_USED.get(order_type)
    if used is None:
        return f"order type {order_type!r} is not supported"
    type_name = getattr(order_type, "value", order_type)
    trailing = used[2]
    for name, value, needed in (("limit_price", limit, used[0]), ("stop_price", stop, used[1])):
        if value is None:
            if needed:
                return f"a {type_name} order needs a {name}"
        elif not needed:
            return f"a {type_name} order must not carry a {name} (got {value})"
        else:
            problem = _price_value_problem(name, value, instrument)
            if problem is not None:
                return problem
    trail_price = command.trail_price
    trail_percent = command.trail_percent
    if not trailing:
        if trail_price is not None or trail_percent is not None:
            return (
                f"a {type_name} order must not carry trail_price/trail_percent "
                f"(got {trail_price}/{trail_percent})"
            )
        return None
    if (trail_price is None) == (trail_percent is None):
        return f"a trailing_stop order needs exactly one of trail_price and trail_percent (got {trail_price}/{trail_percent})"
    trail = trail_price if trail_price is not None else trail_percent
    name = "trail_price" if trail_price is not None else "trail_percent"
    if not isinstance(trail, Decimal) or not trail.is_finite() or trail <= 0:
        return f"{name} {trail!r} must be a positive finite Decimal"
    return None


def valuation_price(reference: Decimal, command: SubmitOrder) -> Decimal:
    """Return the price an order's notional is taken at: the worst (highest) of the reference, limit and stop.

    A limit or stop away from the reference can fill there (a buy stop above the market, a sell
    limit above it), so the larger of the prices bounds the notional from above.
    """
    price = reference
    limit = command.limit_price
    if limit is not None and limit > price:
        price = limit
    stop = command.stop_price
    if stop is not None and stop > price:
        price = stop
    return price


_MULTI_LEG_TICK: Final = Decimal("0.01")  # net price increment of a multi-leg option order, USD


def order_class_problem(command: SubmitOrder, instrument: Instrument) -> tuple[DenyReason, str] | None:
    """Return why the order's class does not fit its exits or legs, or ``None``.

    ``invalid_order_class`` for the shape: a ``bracket`` needs a take-profit and a stop-loss, an
    ``oto`` exactly one of them, an ``oco`` is a ``limit`` order (its limit is the take-profit)
    with a stop-loss; only ``mleg`` has legs: 2-4 of them, distinct valid OCC symbols on the
    order's root ``symbol``, ratio an int >= 1, ``market`` or ``limit`` only and no exits. A
    ``simple`` order carries neither exits nor legs. ``invalid_price`` for prices: exits on the
    tick of ``instrument`` and on the right side (a long's take-profit above its stop-loss and
    above a limit or stop entry, its stop-loss below; the reverse for a short; a stop-loss limit
    not better than its stop); a multi-leg limit order's net price nonzero on the cent (negative
    for a credit). ``invalid_quantity``: a multi-leg quantity not a whole number of units.
    """
    order_class = command.order_class
    take_profit = command.take_profit_limit_price
    stop = command.stop_loss_stop_price
    stop_limit = command.stop_loss_limit_price
    name = getattr(order_class, "value", order_class)
    if order_class is OrderClass.MLEG:
        return _multi_leg_problem(command)
    if command.legs:
        return DenyReason.INVALID_ORDER_CLASS, f"a {name} order must not carry legs (only mleg has them)"
    if order_class is OrderClass.SIMPLE:
        if take_profit is not None or stop is not None or stop_limit is not None:
            return DenyReason.INVALID_ORDER_CLASS, (
                f"a simple order must not carry exits (take_profit {take_profit}, stop_loss {stop}/{stop_limit}); "
                "use order_class bracket, oto or oco"
            )
        return None
    if stop_limit is not None and stop is None:
        return DenyReason.INVALID_ORDER_CLASS, f"stop_loss_limit_price {stop_limit} needs a stop_loss_stop_price"
    if order_class is OrderClass.BRACKET and (take_profit is None or stop is None):
        return DenyReason.INVALID_ORDER_CLASS, (
            f"a bracket order needs take_profit_limit_price and stop_loss_stop_price (got {take_profit}, {stop})"
        )
    if order_class is OrderClass.OTO and (take_profit is None) == (stop is None):
        return DenyReason.INVALID_ORDER_CLASS, (
            f"an oto order needs exactly one of take_profit_limit_price and stop_loss_stop_price "
            f"(got {take_profit}, {stop})"
        )
    if order_class is OrderClass.OCO:
        if command.order_type is not OrderType.LIMIT or stop is None:
            return DenyReason.INVALID_ORDER_CLASS, (
                f"an oco order is a limit order (the take-profit) with a stop_loss_stop_price "
                f"(got {getattr(command.order_type, 'value', command.order_type)}, stop {stop})"
            )
        if take_profit is not None and take_profit != command.limit_price:
            return DenyReason.INVALID_ORDER_CLASS, (
                f"an oco order's take-profit is its limit_price {command.limit_price}; "
                f"take_profit_limit_price {take_profit} differs"
            )
        take_profit = command.limit_price
    elif order_class not in (OrderClass.BRACKET, OrderClass.OTO):
        return DenyReason.INVALID_ORDER_CLASS, f"order class {order_class!r} is not supported"
    for label, value in (("take_profit_limit_price", take_profit), ("stop_loss_stop_price", stop),
                         ("stop_loss_limit_price", stop_limit)):
        if value is not None:
            problem = _price_value_problem(label, value, instrument)
            if problem is not None:
                return DenyReason.INVALID_PRICE, problem
    # The exits' side: an oco order is itself the exit (a sell closes a long); a bracket's or
    # oto's exits close the entry (a buy entry is a long).
    long = (command.side is OrderSide.SELL) if order_class is OrderClass.OCO else (command.side is OrderSide.BUY)
    direction = "long" if long else "short"
    if take_profit is not None and stop is not None and (take_profit <= stop if long else take_profit >= stop):
        return DenyReason.INVALID_PRICE, (
            f"a {direction}'s take-profit {take_profit} must be {'above' if long else 'below'} its stop-loss {stop}"
        )
    if stop is not None and stop_limit is not None and (stop_limit > stop if long else stop_limit < stop):
        return DenyReason.INVALID_PRICE, (
            f"a {direction}'s stop-loss limit {stop_limit} must be at or {'below' if long else 'above'} its stop {stop}"
        )
    entry = command.limit_price if command.limit_price is not None else command.stop_price
    if order_class is not OrderClass.OCO and entry is not None:
        if take_profit is not None and (take_profit <= entry if long else take_profit >= entry):
            return DenyReason.INVALID_PRICE, (
                f"a {direction}'s take-profit {take_profit} must be {'above' if long else 'below'} the entry {entry}"
            )
        if stop is not None and (stop >= entry if long else stop <= entry):
            return DenyReason.INVALID_PRICE, (
                f"a {direction}'s stop-loss {stop} must be {'below' if long else 'above'} the entry {entry}"
            )
    return None


def _multi_leg_problem(command: SubmitOrder) -> tuple[DenyReason, str] | None:
    legs = command.legs
    if not 2 <= len(legs) <= 4:
        return DenyReason.INVALID_ORDER_CLASS, f"an mleg order needs 2-4 legs, got {len(legs)}"
    exits = (command.take_profit_limit_price, command.stop_loss_stop_price, command.stop_loss_limit_price)
    if any(value is not None for value in exits):
        return DenyReason.INVALID_ORDER_CLASS, f"an mleg order carries no exits (got {exits})"
    symbols = [leg.symbol for leg in legs]
    if len(set(symbols)) != len(symbols):
        return DenyReason.INVALID_ORDER_CLASS, f"an mleg order's legs must have distinct symbols, got {symbols}"
    for leg in legs:
        try:
            contract = OptionContract.from_occ(leg.symbol)
        except DomainError as exc:
            return DenyReason.INVALID_ORDER_CLASS, f"mleg leg: {exc}"
        if contract.occ_symbol != leg.symbol:
            return DenyReason.INVALID_ORDER_CLASS, (
                f"mleg leg {leg.symbol!r} is not written as OCC writes it: {contract.occ_symbol!r}"
            )
        if contract.underlying != command.symbol:
            return DenyReason.INVALID_ORDER_CLASS, (
                f"mleg leg {leg.symbol} is on {contract.underlying}, the order on the root {command.symbol}"
            )
        if type(leg.ratio_quantity) is not int or leg.ratio_quantity < 1:
            return DenyReason.INVALID_ORDER_CLASS, f"mleg leg {leg.symbol}: ratio {leg.ratio_quantity!r} is not an int >= 1"
    quantity = command.quantity
    if not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity <= 0 or quantity % 1:
        return DenyReason.INVALID_QUANTITY, f"an mleg order's quantity {quantity!r} must be a whole number of units > 0"
    order_type = command.order_type
    if order_type is not OrderType.MARKET and order_type is not OrderType.LIMIT:
        return DenyReason.INVALID_ORDER_CLASS, (
            f"an mleg order is market or limit, not {getattr(order_type, 'value', order_type)}"
        )
    extra = (command.stop_price, command.trail_price, command.trail_percent)
    if any(value is not None for value in extra):
        return DenyReason.INVALID_PRICE, f"an mleg order has no stop or trail (got {extra})"
    limit = command.limit_price
    if order_type is OrderType.MARKET:
        return None if limit is None else (DenyReason.INVALID_PRICE, f"a market mleg order must not carry a limit_price (got {limit})")
    if not isinstance(limit, Decimal) or not limit.is_finite() or limit == 0 or limit % _MULTI_LEG_TICK:
        return DenyReason.INVALID_PRICE, (
            f"an mleg limit order needs a nonzero net limit_price on the {_MULTI_LEG_TICK} tick "
            f"(positive a debit, negative a credit), got {limit!r}"
        )
    return None
