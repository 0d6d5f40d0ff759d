"""The risk engine's per-call book: the working orders folded into working quantity per symbol,
the gross exposure they can add and the buying power they consume.

Working orders (``ctx.open_orders``) are folded into each call's book: each simple order at
its full quantity, valued at the mark (its limit, then stop, when unmarked); a working mleg
order leg by leg, each leg's added exposure at the leg's mark, consuming the buying power its
own check charged. A working order that cannot be valued (an unknown symbol, no price at all;
for an mleg order, a leg that adds exposure or belongs to a market order without a usable mark,
or no legs at all) makes every later order that adds exposure deny with NO_REFERENCE_PRICE. The
fold is reused while a call passes the same portfolio snapshot object and the same order
objects; each call starts from its own copy, so orders accepted by one call are not working
orders of the next (pass them in ``open_orders``), while their ids, intents and throttle slots
are remembered by the engine.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Final

from amcp.domain.enums import OrderClass, OrderType
from amcp.domain.identifiers import ClientOrderId
from amcp.domain.messages import SubmitOrder
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk._listings import Listings
from amcp.risk.checks import SIDE_SIGN, ZERO, add_working, enum_text, usable_price, valuation_price

_MLEG: Final = OrderClass.MLEG


class CallBook:
    """Scratch state of one ``check`` call: working quantity per symbol and what it consumes.

    ``pending`` maps a symbol to an immutable (working buy quantity, working sell quantity)
    pair that is replaced, never changed in place, so :meth:`copy` is a shallow dict copy.
    """

    __slots__ = ("added_gross", "buying_power_used", "open_ids", "pending", "unpriced")

    def __init__(self) -> None:
        self.pending: dict[str, tuple[Decimal, Decimal]] = {}  # symbol -> (working buys, working sells)
        self.added_gross = ZERO  # USD the working orders can add to gross exposure
        self.buying_power_used = ZERO  # USD of buying power the working orders consume
        self.unpriced: str | None = None  # a working order whose exposure cannot be valued
        self.open_ids: set[ClientOrderId] | frozenset[ClientOrderId] = frozenset()

    def copy(self) -> CallBook:
        """Return a book a call may change without changing this one (``open_ids`` is shared, read only)."""
        book = CallBook.__new__(CallBook)
        book.pending = self.pending.copy()
        book.added_gross = self.added_gross
        book.buying_power_used = self.buying_power_used
        book.unpriced = self.unpriced
        book.open_ids = self.open_ids
        return book


class WorkingOrders:
    """Hands each call a book holding the working orders, reusing the last fold while it still fits."""

    __slots__ = ("_folded", "_listings")

    def __init__(self, listings: Listings) -> None:
        self._listings = listings
        # The last fold: (portfolio, open orders, book).
        self._folded: tuple[PortfolioSnapshot, tuple[SubmitOrder, ...], CallBook] | None = None

    def book(self, portfolio: PortfolioSnapshot, open_orders: Sequence[SubmitOrder]) -> CallBook:
        """Return a per-call book holding ``open_orders`` (each at its full quantity).

        The fold depends only on ``open_orders`` and ``portfolio`` (positions, marks), so the
        last one is kept and reused while a call passes the same snapshot object and the same
        order objects in the same order (the snapshot is immutable; a list of orders changed in
        place no longer matches). Each call gets its own copy: what it accepts stays in that
        call, exactly as if the working orders were folded afresh.
        """
        if not open_orders:
            return CallBook()
        folded = self._folded
        if folded is not None and folded[0] is portfolio:
            orders = folded[1]
            if open_orders is orders or (
                len(open_orders) == len(orders) and all(map(operator.is_, open_orders, orders))
            ):
                return folded[2].copy()
        orders = tuple(open_orders)
        book = fold_working_orders(orders, portfolio, self._listings)
        self._folded = (portfolio, orders, book)
        return book.copy()


def fold_working_orders(
    open_orders: Sequence[SubmitOrder], portfolio: PortfolioSnapshot, listings: Listings
) -> CallBook:
    """Fold working orders into a fresh book; see the module docstring."""
    book = CallBook()
    book.open_ids = {order.client_order_id for order in open_orders}
    positions = portfolio.positions
    prices = portfolio.prices
    for order in open_orders:
        quantity = order.quantity
        if not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity <= 0:
            continue  # cannot fill, adds nothing
        if order.order_class is _MLEG:
            _fold_multi_leg(order, book, positions, prices, listings)
            continue
        sign = SIDE_SIGN.get(order.side)
        if sign is None:
            continue  # cannot fill, adds nothing
        symbol = order.symbol
        added = add_working(book.pending, symbol, sign, quantity, positions.get(symbol, ZERO))
        if added <= 0:
            continue
        listing = listings[symbol]
        reference = prices.get(symbol)
        if reference is None:
            reference = order.limit_price if order.limit_price is not None else order.stop_price
        if not isinstance(listing, str) and usable_price(reference):
            multiplier = listing[0].multiplier
            book.added_gross += added * reference * multiplier
            book.buying_power_used += added * valuation_price(reference, order) * multiplier
        elif book.unpriced is None:
            book.unpriced = (
                f"working order {order.client_order_id} ({enum_text(order.side)} {quantity} {symbol})"
            )
    return book


def _fold_multi_leg(
    order: SubmitOrder,
    book: CallBook,
    positions: Mapping[str, Decimal],
    prices: Mapping[str, Decimal],
    listings: Listings,
) -> None:
    """Fold a working ``mleg`` order leg by leg: each leg's contracts are working quantity
    of its symbol, the exposure a leg adds is valued at its mark, and the order consumes the
    buying power its own check charged (its debit; a credit consumes none)."""
    quantity = order.quantity
    net_limit = order.limit_price if order.order_type is OrderType.LIMIT else None
    market = net_limit is None
    problem: str | None = None if order.legs else "it carries no legs"
    premium = ZERO  # Σ ratio × mark: what a market order is valued at
    multiplier = ZERO
    for leg in order.legs:
        symbol = leg.symbol
        sign = SIDE_SIGN.get(leg.side)
        listing = listings[symbol]
        if sign is None or isinstance(listing, str):
            problem = problem or f"leg {symbol} ({enum_text(leg.side)}) cannot be valued"
            continue
        multiplier = listing[0].multiplier
        contracts = quantity * leg.ratio_quantity
        added = add_working(book.pending, symbol, sign, contracts, positions.get(symbol, ZERO))
        if added <= 0 and not market:
            continue  # no exposure added, no mark needed
        mark = prices.get(symbol)
        if not usable_price(mark):
            problem = problem or f"leg {symbol} has no reference price"
            continue
        if market:
            premium += leg.ratio_quantity * mark
        if added > 0:
            book.added_gross += added * mark * multiplier
    if problem is not None:
        if book.unpriced is None:
            book.unpriced = f"working mleg order {order.client_order_id} on {order.symbol} ({problem})"
        return
    net = premium if net_limit is None else net_limit
    if net > ZERO:
        book.buying_power_used += quantity * net * multiplier
