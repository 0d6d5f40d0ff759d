"""Orders of a strategy position: its option legs as one multi-leg (``mleg``) order.

:func:`strategy_order` turns a :class:`~amcp.options.strategies.StrategyPosition` into one
``SubmitOrder`` of order class ``mleg``: Alpaca fills the 2-4 legs together or not at all, at
one net price per strategy unit. :func:`strategy_orders` also covers positions that one mleg
order cannot carry: a single option leg becomes a simple option order, and a stock leg (covered
call, collar, protective put) a separate equity order.

Price convention (Alpaca's, and :class:`~amcp.domain.messages.SubmitOrder`'s): an mleg
``limit_price`` is the net price per strategy unit, ``Σ (+1 buy / −1 sell) × ratio × price``
per unit of underlying, **positive for a net debit** (at most that much is paid) and
**negative for a net credit** (at least its absolute value is received). The venue fills a
limit order when the net price the quotes give is at most ``limit_price``: a debit of 1.20
fills at 1.20 or less, a credit of −0.45 at −0.45 or below (0.45 or more received).

Quantities: the order's ``quantity`` is ``g``, the greatest common divisor of the legs'
contract counts, and each leg's ``ratio_quantity`` is its contracts divided by ``g`` (see
:meth:`StrategyPosition.order_legs`), so the legs trade exactly the position's contracts.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Final

from amcp.domain.enums import OrderClass, OrderSide, OrderType, TimeInForce
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.instruments import Equity, OptionContract
from amcp.domain.messages import SubmitOrder
from amcp.domain.objects import round_to_increment, to_decimal
from amcp.errors import DomainError
from amcp.options.strategies._model import StrategyError, StrategyPosition

__all__ = [
    "MAX_MULTI_LEG_LEGS",
    "MULTI_LEG_TICK",
    "StrategyOrderError",
    "net_price",
    "strategy_order",
    "strategy_orders",
]

#: The most legs Alpaca accepts in one ``mleg`` order (and the fewest is two).
MAX_MULTI_LEG_LEGS: Final = 4
#: The increment of an mleg order's net ``limit_price`` (USD per unit of underlying).
MULTI_LEG_TICK: Final = Decimal("0.01")
#: The time in force an mleg order may have at Alpaca.
_MULTI_LEG_TIME_IN_FORCE: Final = frozenset({TimeInForce.DAY, TimeInForce.GTC})
_ORDER_TYPES: Final = frozenset({OrderType.LIMIT, OrderType.MARKET})
_STOCK_SUFFIX: Final = "-stock"


class StrategyOrderError(StrategyError):
    """A strategy position cannot be expressed as the requested order(s)."""


def net_price(position: StrategyPosition) -> Decimal:
    """Return the position's net premium per strategy unit, unrounded (positive: a debit).

    ``Σ quantity_i × premium_i / g`` over the option legs, with ``g`` the greatest common divisor
    of the legs' contract counts (the mleg order's quantity), each premium taken exactly as it
    prints (:func:`~amcp.domain.objects.to_decimal`). The stock leg is not included.
    """
    divisor = math.gcd(*(abs(leg.quantity) for leg in position.option_legs))
    total = sum((leg.quantity * to_decimal(leg.premium) for leg in position.option_legs), Decimal(0))
    return total / divisor


def strategy_order(
    position: StrategyPosition,
    *,
    client_order_id: ClientOrderId,
    strategy_id: StrategyId,
    ts_ns: int,
    limit_price: Decimal | None = None,
    order_type: OrderType = OrderType.LIMIT,
    time_in_force: TimeInForce = TimeInForce.DAY,
    tag: str = "",
) -> SubmitOrder:
    """Return the position's option legs as one multi-leg (``mleg``) opening order.

    The order's ``symbol`` is the legs' option root, its ``quantity`` the number of strategy
    units ``g`` (module docstring), its legs :meth:`StrategyPosition.order_legs` (every intent
    opens). ``side`` is not sent for an mleg order; it is ``buy`` by convention.

    Args:
        position: the position; every leg on one option root, 2-4 distinct contracts, no stock.
        client_order_id: the order's id.
        strategy_id: the strategy sending it.
        ts_ns: the decision time, UTC nanoseconds.
        limit_price: the net price per strategy unit, positive a debit and negative a credit
            (module docstring), nonzero on the 0.01 tick. None, for a limit order: the
            position's :func:`net_price` (its premiums, the mids when built from a chain)
            rounded to the nearest 0.01.
        order_type: ``limit`` or ``market`` (a market order takes no ``limit_price``).
        time_in_force: ``day`` or ``gtc``, the ones Alpaca allows for mleg orders.
        tag: free text carried with the order.

    Raises:
        StrategyOrderError: if the position has a stock leg (use :func:`strategy_orders`),
            fewer than 2 or more than 4 option legs (e.g. a 6-leg structure cannot be one mleg
            order: split it into orders of at most 4 legs, which then fill independently), two
            legs on one contract, legs on different roots, or if the order type, time in force
            or limit price is not allowed (a default limit that rounds to 0.00 included).
    """
    if position.stock is not None:
        raise StrategyOrderError(
            f"{position.name}: has a stock leg of {position.stock.shares} {position.stock.symbol}, "
            "which an mleg option order cannot carry; use strategy_orders for the option order "
            "plus a separate (not atomic) equity order"
        )
    legs = position.option_legs
    if not 2 <= len(legs) <= MAX_MULTI_LEG_LEGS:
        advice = (
            "a single option leg is a simple option order: use strategy_orders"
            if len(legs) == 1
            else "split it into orders of at most 4 legs; they then fill independently, not atomically"
        )
        raise StrategyOrderError(
            f"{position.name}: one mleg order takes 2 to {MAX_MULTI_LEG_LEGS} option legs, the position has "
            f"{len(legs)} ({', '.join(leg.symbol for leg in legs)}); {advice}"
        )
    return _multi_leg_order(
        position, client_order_id, strategy_id, ts_ns, limit_price, order_type, time_in_force, tag
    )


def strategy_orders(
    position: StrategyPosition,
    *,
    client_order_id: ClientOrderId,
    strategy_id: StrategyId,
    ts_ns: int,
    limit_price: Decimal | None = None,
    stock_limit_price: Decimal | None = None,
    order_type: OrderType = OrderType.LIMIT,
    time_in_force: TimeInForce = TimeInForce.DAY,
    tag: str = "",
) -> tuple[SubmitOrder, ...]:
    """Return the orders that open the position: its option order, then its stock order if any.

    The option legs become one order: an mleg order (:func:`strategy_order`) for 2-4 legs, a
    simple option order for a single leg (its side from the leg's sign, its ``limit_price``
    the per-share premium, ``|net price|``). A stock leg becomes a separate equity order of
    ``|shares|`` under the id ``<client_order_id>-stock``.

    **The orders are not atomic**: the venue fills them independently, so one may fill while
    the other does not (a covered call can end as bare stock or a naked call until the other
    order fills or is cancelled). Send them together and watch both.

    Args:
        position: the position.
        client_order_id: the option order's id; the stock order's is derived from it.
        strategy_id: the strategy sending them.
        ts_ns: the decision time, UTC nanoseconds.
        limit_price: the option order's net price per strategy unit in the sign convention of
            the module docstring (for one leg: positive when buying, negative when selling);
            None uses the premiums, rounded to the 0.01 tick (mleg) or the contract's tick.
        stock_limit_price: the stock order's limit (USD per share); None uses the stock leg's
            price rounded to the equity tick. Ignored for market orders.
        order_type: ``limit`` or ``market``, for every order.
        time_in_force: for every order (``day`` or ``gtc`` when there is an mleg order).
        tag: free text carried with every order.

    Raises:
        StrategyOrderError: if there are more than 4 option legs, a price does not fit its
            order, or an order cannot be built (see :func:`strategy_order`).
    """
    legs = position.option_legs
    if len(legs) == 1:
        option = _single_leg_order(
            position, client_order_id, strategy_id, ts_ns, limit_price, order_type, time_in_force, tag
        )
    else:
        if len(legs) > MAX_MULTI_LEG_LEGS:
            raise StrategyOrderError(
                f"{position.name}: one mleg order takes 2 to {MAX_MULTI_LEG_LEGS} option legs, the position "
                f"has {len(legs)}; split it into orders of at most 4 legs, which then fill independently, "
                "not atomically"
            )
        option = _multi_leg_order(
            position, client_order_id, strategy_id, ts_ns, limit_price, order_type, time_in_force, tag
        )
    stock = position.stock
    if stock is None or stock.shares == 0:
        return (option,)
    try:
        stock_id = ClientOrderId(f"{client_order_id}{_STOCK_SUFFIX}")
        instrument = Equity(stock.symbol)
    except DomainError as exc:
        raise StrategyOrderError(f"{position.name}: the stock order cannot be built: {exc}") from exc
    stock_price: Decimal | None = None
    if order_type is OrderType.LIMIT:
        if stock_limit_price is None:
            stock_price = instrument.round_price(to_decimal(stock.price))
        else:
            stock_price = _checked_decimal(position, "stock_limit_price", stock_limit_price)
            if not instrument.is_valid_price(stock_price):
                raise StrategyOrderError(
                    f"{position.name}: stock_limit_price {stock_price} is not a positive price on the "
                    f"{instrument.tick_size(stock_price)} tick of {stock.symbol}"
                )
    equity_order = SubmitOrder(
        client_order_id=stock_id,
        strategy_id=strategy_id,
        symbol=stock.symbol,
        side=OrderSide.BUY if stock.shares > 0 else OrderSide.SELL,
        quantity=Decimal(abs(stock.shares)),
        order_type=order_type,
        time_in_force=time_in_force,
        limit_price=stock_price,
        ts_ns=ts_ns,
        tag=tag,
    )
    return option, equity_order


# ---------------------------------------------------------------------- internals


def _multi_leg_order(
    position: StrategyPosition,
    client_order_id: ClientOrderId,
    strategy_id: StrategyId,
    ts_ns: int,
    limit_price: Decimal | None,
    order_type: OrderType,
    time_in_force: TimeInForce,
    tag: str,
) -> SubmitOrder:
    _check_order_type(position, order_type, limit_price)
    if time_in_force not in _MULTI_LEG_TIME_IN_FORCE:
        raise StrategyOrderError(
            f"{position.name}: an mleg order's time_in_force must be day or gtc, got "
            f"{getattr(time_in_force, 'value', time_in_force)!r}"
        )
    symbols = [leg.symbol for leg in position.option_legs]
    if len(set(symbols)) != len(symbols):
        raise StrategyOrderError(f"{position.name}: an mleg order needs distinct contracts, got {symbols}")
    roots = {_contract(position, symbol).underlying for symbol in symbols}
    if len(roots) != 1:
        raise StrategyOrderError(
            f"{position.name}: the legs of one mleg order must share an option root, got {sorted(roots)}"
        )
    price: Decimal | None = None
    if order_type is OrderType.LIMIT:
        if limit_price is None:
            exact = net_price(position)
            price = round_to_increment(exact, MULTI_LEG_TICK)
            if price == 0:
                raise StrategyOrderError(
                    f"{position.name}: the net premium {exact} per unit rounds to 0.00, and an mleg limit "
                    "must be nonzero; give limit_price or use a market order"
                )
        else:
            price = _checked_decimal(position, "limit_price", limit_price)
            if price == 0 or price % MULTI_LEG_TICK:
                raise StrategyOrderError(
                    f"{position.name}: an mleg limit_price must be a nonzero net price on the "
                    f"{MULTI_LEG_TICK} tick (positive a debit, negative a credit), got {price}"
                )
    divisor = math.gcd(*(abs(leg.quantity) for leg in position.option_legs))
    return SubmitOrder(
        client_order_id=client_order_id,
        strategy_id=strategy_id,
        symbol=roots.pop(),
        side=OrderSide.BUY,
        quantity=Decimal(divisor),
        order_type=order_type,
        time_in_force=time_in_force,
        limit_price=price,
        ts_ns=ts_ns,
        tag=tag,
        order_class=OrderClass.MLEG,
        legs=position.order_legs(),
    )


def _single_leg_order(
    position: StrategyPosition,
    client_order_id: ClientOrderId,
    strategy_id: StrategyId,
    ts_ns: int,
    limit_price: Decimal | None,
    order_type: OrderType,
    time_in_force: TimeInForce,
    tag: str,
) -> SubmitOrder:
    _check_order_type(position, order_type, limit_price)
    [leg] = position.option_legs
    contract = _contract(position, leg.symbol)
    side = OrderSide.BUY if leg.quantity > 0 else OrderSide.SELL
    price: Decimal | None = None
    if order_type is OrderType.LIMIT:
        if limit_price is None:
            price = contract.round_price(to_decimal(leg.premium))
        else:
            net = _checked_decimal(position, "limit_price", limit_price)
            if (net > 0) != (side is OrderSide.BUY) or net == 0:
                raise StrategyOrderError(
                    f"{position.name}: limit_price {net} is a net {'debit' if net > 0 else 'credit'}, but "
                    f"the one leg {side.value}s {leg.symbol}: a buy takes a positive net price, a sell a "
                    "negative one"
                )
            price = abs(net)
        if not contract.is_valid_price(price):
            raise StrategyOrderError(
                f"{position.name}: option limit price {price} for {leg.symbol} is not a positive price on "
                f"its {contract.tick_size(price)} tick"
            )
    return SubmitOrder(
        client_order_id=client_order_id,
        strategy_id=strategy_id,
        symbol=leg.symbol,
        side=side,
        quantity=Decimal(abs(leg.quantity)),
        order_type=order_type,
        time_in_force=time_in_force,
        limit_price=price,
        ts_ns=ts_ns,
        tag=tag,
    )


def _check_order_type(position: StrategyPosition, order_type: OrderType, limit_price: Decimal | None) -> None:
    if order_type not in _ORDER_TYPES:
        raise StrategyOrderError(
            f"{position.name}: a strategy order is limit or market, got {getattr(order_type, 'value', order_type)!r}"
        )
    if order_type is OrderType.MARKET and limit_price is not None:
        raise StrategyOrderError(f"{position.name}: a market order takes no limit_price, got {limit_price}")


def _checked_decimal(position: StrategyPosition, name: str, value: Decimal) -> Decimal:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise StrategyOrderError(f"{position.name}: {name} must be a finite Decimal, got {value!r}")
    return value


def _contract(position: StrategyPosition, symbol: str) -> OptionContract:
    try:
        return OptionContract.from_occ(symbol)
    except DomainError as exc:
        raise StrategyOrderError(f"{position.name}: leg {symbol!r} is not an option contract: {exc}") from exc
