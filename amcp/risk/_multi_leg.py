"""Checks of a multi-leg option order (``mleg``) being submitted, after
:func:`amcp.risk.checks.order_class_problem` has found it well formed.

``symbol`` is the root, ``quantity`` strategy units; leg ``i`` trades ``quantity × ratio_i``
contracts of its own symbol on its own side. The checks, in this order:

- UNKNOWN_INSTRUMENT / RESTRICTED_SYMBOL: each leg's symbol must be known and not restricted.
- MAX_ORDER_QUANTITY: ``quantity × largest ratio`` (contracts of the biggest leg).
- TRADING_REDUCING / REDUCE_ONLY: unless every leg's position intent closes, the order counts
  as increasing.
- NO_REFERENCE_PRICE / STALE_REFERENCE_PRICE: a market order is valued at its legs' marks, so
  every leg needs a fresh one. A limit order's legs need one only where a leg is not reducing
  (by the position maths of :mod:`amcp.risk.engine`, per leg symbol): its position limit is in
  USD and cannot be evaluated without a price, so such a leg without a usable fresh mark denies
  the order. A reducing leg needs no mark: it passes the position limit and adds no exposure.
- MAX_ORDER_NOTIONAL: ``quantity × multiplier × |net limit|`` for a limit order, ``quantity ×
  multiplier × Σ ratio × mark`` for a market order (the gross premium, an upper bound of the net).
- MAX_POSITION, per leg that is not reducing: ``|resulting position| × mark × multiplier``, with
  the working orders on the leg's side, as for a simple order.
- MAX_GROSS_EXPOSURE: ``gross_exposure`` + what working orders can add + the sum over the legs of
  the exposure each adds (``added_units`` of the leg × mark × multiplier); an order adding
  nothing passes; an unvaluable working order denies one that adds (NO_REFERENCE_PRICE).
- INSUFFICIENT_BUYING_POWER: a debit (market, or a positive net limit) consumes its notional; a
  credit consumes none (a short leg's margin is the venue's to enforce).
- THROTTLED.
- GREEK_LIMIT / NO_GREEKS, when a greek limit is set: the net greeks of the legs' underlying,
  all legs at once (:mod:`amcp.risk._greeks`).

An accepted mleg order's legs join the working quantity of their symbols for the rest of the
call, so a later order on a leg symbol sees them. How working mleg orders are folded into the
book: :mod:`amcp.risk._book`.
"""

from __future__ import annotations

from collections import deque
from decimal import Decimal
from typing import TYPE_CHECKING, NamedTuple

from amcp.domain.enums import DenyReason, OrderType
from amcp.domain.instruments import Instrument
from amcp.domain.messages import OrderLeg, SubmitOrder
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk._book import CallBook
from amcp.risk._greeks import GreekLimits
from amcp.risk._listings import Listings
from amcp.risk.checks import (
    SIDE_SIGN,
    ZERO,
    added_units,
    enum_text,
    fresh_price,
    reference_problem,
    throttled_message,
)

if TYPE_CHECKING:
    from amcp.config import RiskConfig


class _LegEffect(NamedTuple):
    """One leg of a multi-leg order being checked: its contracts and their position effect."""

    leg: OrderLeg
    sign: int  # +1 a buy, -1 a sell
    multiplier: Decimal
    quantity: Decimal  # contracts: the order's quantity × the leg's ratio
    position: Decimal
    pending_buy: Decimal  # working quantity on the leg's symbol before this order
    pending_sell: Decimal
    working: Decimal  # the working quantity on the leg's side
    resulting: Decimal  # worst-case position after the leg and the working orders on its side
    reducing: bool
    mark: Decimal | None  # None when not needed: a reducing leg of a limit order


def check_multi_leg(
    command: SubmitOrder,
    snapshot: PortfolioSnapshot,
    ts_ns: int,
    book: CallBook,
    *,
    listings: Listings,
    config: RiskConfig,
    max_price_age_ns: int,
    reducing_reason: str | None,
    throttle: deque[int],
    greeks: GreekLimits | None = None,
) -> tuple[DenyReason, str] | None:
    """Run the checks of a well-formed multi-leg order; see the module docstring.

    On accept, each leg's contracts and what the order consumes are added to ``book``; the
    caller records the order's id, throttle slot and intent.

    Args:
        command: the ``mleg`` order, already found well formed.
        snapshot: the portfolio snapshot of the call (positions, marks, exposure, buying power).
        ts_ns: now, UTC nanoseconds.
        book: the call's book of working orders and earlier accepts.
        listings: the engine's instrument lookups.
        config: the engine's config; the limits are read from it.
        max_price_age_ns: ``config.max_price_age_s`` in nanoseconds.
        reducing_reason: why trading is REDUCING, or ``None`` when it is not.
        throttle: the accept stamps inside the trailing throttle window.
        greeks: the engine's greek limits, None when none is set; checked last.

    Returns:
        ``None`` to accept, else the reason code and a message naming the values.
    """
    legs = command.legs
    quantity = command.quantity
    instruments: list[Instrument] = []
    for leg in legs:
        listing = listings[leg.symbol]
        if isinstance(listing, str):
            return DenyReason.UNKNOWN_INSTRUMENT, listing
        if listing[1] is not None:
            return DenyReason.RESTRICTED_SYMBOL, listing[1]
        instruments.append(listing[0])
    largest = max(leg.ratio_quantity for leg in legs)
    if quantity * largest > config.max_order_quantity:
        return DenyReason.MAX_ORDER_QUANTITY, (
            f"mleg {quantity} × ratio {largest} = {quantity * largest} contracts of one leg exceeds "
            f"max_order_quantity {config.max_order_quantity}"
        )
    if not all(leg.position_intent is not None and leg.position_intent.closes for leg in legs):
        if reducing_reason is not None:
            return DenyReason.TRADING_REDUCING, (
                f"trading is reducing ({reducing_reason}): an mleg order on {command.symbol} "
                "whose legs do not all close positions"
            )
        if command.reduce_only:
            return DenyReason.REDUCE_ONLY, (
                f"reduce_only mleg order on {command.symbol} has legs that do not close positions"
            )

    # Each leg's position effect, worst case over working orders on its side, and its mark
    # where one is needed: a market order is valued at its legs' marks, and a leg that is not
    # reducing has a position limit that only a price can evaluate.
    net_limit = command.limit_price if command.order_type is OrderType.LIMIT else None
    market = net_limit is None
    effects: list[_LegEffect] = []
    premium = ZERO  # Σ ratio × mark over the legs, a market order's valuation
    for leg, instrument in zip(legs, instruments):
        symbol = leg.symbol
        sign = SIDE_SIGN.get(leg.side)
        if sign is None:
            return DenyReason.INVALID_ORDER_CLASS, (
                f"mleg leg {symbol}: side {leg.side!r} is neither buy nor sell"
            )
        leg_quantity = quantity * leg.ratio_quantity
        position = snapshot.positions.get(symbol, ZERO)
        pending = book.pending.get(symbol)
        pending_buy, pending_sell = (ZERO, ZERO) if pending is None else pending
        if sign > 0:
            working, resulting = pending_buy, position + pending_buy + leg_quantity
            reducing = resulting <= ZERO
        else:
            working, resulting = pending_sell, position - pending_sell - leg_quantity
            reducing = resulting >= ZERO
        mark: Decimal | None = None
        if market or not reducing:
            mark = snapshot.prices.get(symbol)
            mark_ts_ns = snapshot.price_ts_ns.get(symbol)
            if not fresh_price(mark, mark_ts_ns, ts_ns, max_price_age_ns):
                reason, problem = reference_problem(symbol, mark, mark_ts_ns, ts_ns, config.max_price_age_s)
                need = (
                    "a market mleg order is valued at its legs' marks"
                    if market
                    else f"the position limit of mleg leg {enum_text(leg.side)} {leg_quantity} {symbol} "
                    f"(position {position} to {resulting}) needs its mark"
                )
                return reason, f"{need}: {problem}"
            if market:
                premium += leg.ratio_quantity * mark
        effects.append(_LegEffect(leg, sign, instrument.multiplier, leg_quantity, position, pending_buy,
                                  pending_sell, working, resulting, reducing, mark))

    multiplier = instruments[0].multiplier
    if net_limit is None:
        price, basis = premium, f"Σ ratio × mark {premium}"
    else:
        price, basis = abs(net_limit), f"|net limit {net_limit}|"
    notional = quantity * price * multiplier
    if notional > config.max_order_notional_usd:
        return DenyReason.MAX_ORDER_NOTIONAL, (
            f"mleg order notional {notional} USD ({quantity} × {basis} × {multiplier}) on {command.symbol} "
            f"exceeds max_order_notional_usd {config.max_order_notional_usd}"
        )

    gross_added = ZERO
    for effect in effects:
        if effect.reducing or effect.mark is None:
            continue  # a reducing leg passes its position limit and adds no exposure
        leg, mark = effect.leg, effect.mark
        position_notional = abs(effect.resulting) * mark * effect.multiplier
        if position_notional > config.max_position_notional_usd:
            side_name = enum_text(leg.side)
            return DenyReason.MAX_POSITION, (
                f"mleg leg {side_name} {effect.quantity} {leg.symbol} ({command.quantity} × ratio "
                f"{leg.ratio_quantity}) would take the position {effect.position} (working "
                f"{side_name}s {effect.working}) to {effect.resulting}, {position_notional} USD at "
                f"{mark} × {effect.multiplier}; max_position_notional_usd {config.max_position_notional_usd}"
            )
        buys, sells = _with_leg(effect)
        before = added_units(effect.position, effect.pending_buy, effect.pending_sell)
        gross_added += (added_units(effect.position, buys, sells) - before) * mark * effect.multiplier
    if gross_added > ZERO:
        if book.unpriced is not None:
            return DenyReason.NO_REFERENCE_PRICE, (
                f"{book.unpriced} has no reference price, so gross exposure cannot be valued for the "
                f"mleg order on {command.symbol}"
            )
        gross = snapshot.gross_exposure + book.added_gross + gross_added
        if gross > config.max_gross_exposure_usd:
            return DenyReason.MAX_GROSS_EXPOSURE, (
                f"gross exposure would be {gross} USD (positions {snapshot.gross_exposure} + working "
                f"orders {book.added_gross} + this mleg order's legs {gross_added}); "
                f"max_gross_exposure_usd {config.max_gross_exposure_usd}"
            )

    cost = notional if net_limit is None or net_limit > ZERO else ZERO  # a credit costs none
    remaining = snapshot.buying_power - book.buying_power_used
    if cost > remaining:
        return DenyReason.INSUFFICIENT_BUYING_POWER, (
            f"mleg debit on {command.symbol} needs {cost} USD of buying power; {remaining} USD remains "
            f"(buying power {snapshot.buying_power} − working orders {book.buying_power_used})"
        )
    if len(throttle) >= config.throttle_max_orders:
        return DenyReason.THROTTLED, throttled_message(
            throttle, config.throttle_max_orders, config.throttle_window_s, ts_ns
        )
    if greeks is not None:
        verdict = greeks.check(command)
        if verdict is not None:
            return verdict

    # Accepted: each leg's contracts work on its symbol for later commands of this call.
    for effect in effects:
        book.pending[effect.leg.symbol] = _with_leg(effect)
    book.added_gross += gross_added
    book.buying_power_used += cost
    return None


def _with_leg(effect: _LegEffect) -> tuple[Decimal, Decimal]:
    """The (working buys, working sells) of a leg's symbol once the leg's contracts work too."""
    if effect.sign > 0:
        return effect.pending_buy + effect.quantity, effect.pending_sell
    return effect.pending_buy, effect.pending_sell + effect.quantity
