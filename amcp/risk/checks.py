"""Stateless pieces of the pre-trade checks: order-shape validation and worst-case exposure maths.

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

from decimal import Decimal
from typing import Final

from amcp.domain.enums import OrderSide, OrderType
from amcp.domain.instruments import Instrument
from amcp.domain.messages import SubmitOrder

ZERO: Final = Decimal(0)
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
