"""How a broker event applies to a stored order, and the checks of the store's inputs.

The rules of :mod:`amcp.store.state` (its module doc states them): the status an event asks for
(:func:`target_status`), whether ``TRANSITIONS`` allows it (:func:`path_end`, :data:`REACHABLE`),
why a fill cannot apply (:func:`fill_problem`), and the validators of timestamps, amounts and
JSON payloads, which raise :class:`~amcp.errors.StoreError` naming the value.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Final

from amcp.domain.enums import OrderClass, OrderStatus
from amcp.domain.messages import (
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderLegAccepted,
    OrderRejected,
    OrderReplaced,
    OrderStatusChanged,
    OrderSubmitted,
)
from amcp.domain.orders import TRANSITIONS
from amcp.errors import StoreError
from amcp.store._state_schema import Anomaly, OrderRow

S = OrderStatus

_MAX_TS_NS: Final = 2**63 - 1  # the largest timestamp stored, UTC ns (the int64 columns' maximum)


def _reachable(start: OrderStatus) -> frozenset[OrderStatus]:
    """Statuses reachable from ``start`` in one or more transitions of ``TRANSITIONS``."""
    seen: set[OrderStatus] = set()
    frontier = list(TRANSITIONS[start])
    while frontier:
        status = frontier.pop()
        if status not in seen:
            seen.add(status)
            frontier.extend(TRANSITIONS[status])
    return frozenset(seen)


#: Every status reachable from each status in one or more transitions.
REACHABLE: Final = {status: _reachable(status) for status in S}


# --------------------------------------------------------------------------- validation


def check_ts(name: str, value: object) -> int:
    """``value`` if it is an int of UTC nanoseconds in ``[0, 2**63)``, else a StoreError naming it."""
    if type(value) is not int or not 0 <= value <= _MAX_TS_NS:
        raise StoreError(f"{name} must be an int of UTC nanoseconds in [0, 2**63), got {value!r}")
    return value


def check_decimal(name: str, value: object) -> Decimal:
    """``value`` as a finite Decimal (an int is converted, a float refused), else a StoreError."""
    if type(value) is int:
        return Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise StoreError(f"{name} must be a finite Decimal (floats are not exact), got {value!r}")
    return value


def json_text(name: str, value: object) -> str:
    """``value`` as compact JSON text with sorted keys, else a StoreError naming ``name``."""
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"{name} must be JSON-serialisable (str, int, float, bool, None, list, dict): {exc}"
        ) from exc


def fill_problem(order: OrderRow, fill: OrderFilled) -> tuple[Anomaly, str] | None:
    """Why ``fill`` cannot apply to ``order``, or ``None``.

    A multi-leg parent's fill is at the net price per unit (zero or negative for a credit) and
    Alpaca reports it without a symbol or side, so neither the price's sign nor the symbol and
    side are checked for one.
    """
    quantity, price, fee = fill.last_quantity, fill.last_price, fill.fee
    multi_leg = order.command.order_class is OrderClass.MLEG
    if not (isinstance(quantity, Decimal) and quantity.is_finite() and quantity > 0) or not (
        isinstance(price, Decimal) and price.is_finite() and (price > 0 or multi_leg)
    ):
        detail = f"quantity and price must be positive finite Decimals, got {quantity!r} @ {price!r}"
        return Anomaly.INVALID_FILL, detail
    if not (isinstance(fee, Decimal) and fee.is_finite()):
        return Anomaly.INVALID_FILL, f"fee must be a finite Decimal, got {fee!r}"
    if not multi_leg and (fill.side is not order.side or fill.symbol != order.symbol):
        return (
            Anomaly.FILL_MISMATCH,
            f"fill {fill.side.value} {fill.symbol!r} does not match order "
            f"{order.side.value} {order.symbol!r}",
        )
    if order.broker_order_id is not None and fill.venue_order_id != order.broker_order_id:
        return (
            Anomaly.BROKER_ORDER_ID_CONFLICT,
            f"fill carries broker order id {fill.venue_order_id!s}, order has {order.broker_order_id!s}",
        )
    if order.filled_quantity + quantity > order.quantity:
        return (
            Anomaly.OVERFILL,
            f"{order.filled_quantity} filled + {quantity} > order quantity {order.quantity}",
        )
    return None


def target_status(event: OrderEvent) -> OrderStatus | None:
    """The status a non-fill event asks for (``OrderAccepted`` means ``new``, as in ``Order.apply``).

    ``None`` when an ``OrderStatusChanged`` carries a value that is no ``OrderStatus``.
    """
    if isinstance(event, OrderAccepted):
        return S.NEW
    if isinstance(event, OrderSubmitted):
        return S.PENDING_NEW
    if isinstance(event, OrderDenied):
        return S.DENIED
    if isinstance(event, OrderRejected):
        return S.REJECTED
    if isinstance(event, OrderCanceled):
        return S.CANCELED
    if isinstance(event, OrderExpired):
        return S.EXPIRED
    if isinstance(event, OrderReplaced):
        return S.REPLACED
    if isinstance(event, OrderStatusChanged):
        try:
            return OrderStatus(event.status)
        except ValueError:
            return None
    raise StoreError(f"cannot apply {type(event).__name__}: not an order event")


def path_end(current: OrderStatus, target: OrderStatus, from_broker: bool) -> bool:
    """Whether ``target`` is legal from ``current``, allowing the implied ``pending_new`` step."""
    if target in TRANSITIONS[current]:
        return True
    return from_broker and current is S.INITIALIZED and target in TRANSITIONS[S.PENDING_NEW]


#: The events :meth:`~amcp.store.state.TradingStateStore.apply` accepts.
EVENT_TYPES: Final = (
    OrderDenied,
    OrderSubmitted,
    OrderAccepted,
    OrderLegAccepted,
    OrderRejected,
    OrderFilled,
    OrderCanceled,
    OrderExpired,
    OrderReplaced,
    OrderStatusChanged,
)
#: Events the trading plane raises itself: they do not prove the request reached the broker.
LOCAL_EVENTS: Final = (OrderDenied, OrderSubmitted)
