"""Orders and their state machine.

The transition table mirrors Alpaca's order lifecycle
(https://docs.alpaca.markets/docs/orders-at-alpaca#order-lifecycle) with two local states in
front: ``initialized`` (built from an intent) and ``denied`` (refused by pre-trade risk).
Any transition not in the table raises :class:`InvalidTransitionError`; an overfill raises too.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

from amcp.domain.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from amcp.domain.identifiers import ClientOrderId, VenueOrderId
from amcp.domain.messages import (
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    OrderStatusChanged,
    OrderSubmitted,
    SubmitOrder,
)
from amcp.errors import DomainError, InvalidTransitionError

S = OrderStatus
_ZERO = Decimal(0)

_FILLS: Final = {S.PARTIALLY_FILLED, S.FILLED}
_END: Final = {S.CANCELED, S.EXPIRED}
_NEEDS_LIMIT: Final = (OrderType.LIMIT, OrderType.STOP_LIMIT)
_NEEDS_STOP: Final = (OrderType.STOP, OrderType.STOP_LIMIT)
_TRAILING_STOP: Final = OrderType.TRAILING_STOP
_INITIALIZED, _FILLED, _PARTIALLY_FILLED = S.INITIALIZED, S.FILLED, S.PARTIALLY_FILLED
_PENDING_NEW, _NEW = S.PENDING_NEW, S.NEW

#: status -> statuses it may move to.
TRANSITIONS: Final[dict[OrderStatus, frozenset[OrderStatus]]] = {
    S.INITIALIZED: frozenset({S.DENIED, S.PENDING_NEW}),
    S.PENDING_NEW: frozenset(
        {S.ACCEPTED, S.ACCEPTED_FOR_BIDDING, S.HELD, S.NEW, S.REJECTED, S.PENDING_CANCEL, *_FILLS, *_END}
    ),
    S.ACCEPTED: frozenset({S.NEW, S.REJECTED, S.PENDING_CANCEL, S.PENDING_REPLACE, *_FILLS, *_END}),
    S.ACCEPTED_FOR_BIDDING: frozenset({S.ACCEPTED, S.NEW, S.REJECTED, S.PENDING_CANCEL, *_FILLS, *_END}),
    S.HELD: frozenset({S.ACCEPTED, S.NEW, S.PENDING_CANCEL, S.REJECTED, *_FILLS, *_END}),
    S.NEW: frozenset(
        {
            S.PENDING_CANCEL,
            S.PENDING_REPLACE,
            S.REPLACED,
            S.DONE_FOR_DAY,
            S.STOPPED,
            S.SUSPENDED,
            S.CALCULATED,
            S.REJECTED,
            *_FILLS,
            *_END,
        }
    ),
    S.PARTIALLY_FILLED: frozenset(
        {
            S.PENDING_CANCEL,
            S.PENDING_REPLACE,
            S.REPLACED,
            S.DONE_FOR_DAY,
            S.STOPPED,
            S.SUSPENDED,
            S.CALCULATED,
            *_FILLS,
            *_END,
        }
    ),
    # A refused cancel or replace returns the order to new / partially_filled.
    S.PENDING_CANCEL: frozenset({S.NEW, *_FILLS, *_END}),
    S.PENDING_REPLACE: frozenset({S.NEW, S.REPLACED, S.PENDING_CANCEL, *_FILLS, *_END}),
    S.DONE_FOR_DAY: frozenset({S.NEW, S.PENDING_CANCEL, S.PENDING_REPLACE, *_FILLS, *_END}),
    S.STOPPED: frozenset({S.PENDING_CANCEL, *_FILLS, *_END}),
    S.SUSPENDED: frozenset({S.NEW, S.PENDING_CANCEL, *_FILLS, *_END}),
    S.CALCULATED: frozenset({S.DONE_FOR_DAY, *_FILLS, *_END}),
    S.DENIED: frozenset(),
    S.FILLED: frozenset(),
    S.CANCELED: frozenset(),
    S.EXPIRED: frozenset(),
    S.REPLACED: frozenset(),
    S.REJECTED: frozenset(),
}


def can_transition(current: OrderStatus, target: OrderStatus) -> bool:
    """Return whether ``current`` may move to ``target``."""
    return target in TRANSITIONS[current]


class Order:
    """One order and its lifecycle. Mutated only through :meth:`apply`.

    Attributes:
        status: the current status.
        filled_quantity: total quantity filled so far; never exceeds ``quantity``.
        average_fill_price: quantity-weighted average price of fills, or ``None``.
    """

    __slots__ = (
        "command",
        "status",
        "filled_quantity",
        "average_fill_price",
        "venue_order_id",
        "fees",
        "status_history",
        "replaced_by",
        "_notional",
    )

    def __init__(self, command: SubmitOrder) -> None:
        if not isinstance(command.quantity, Decimal) or command.quantity <= _ZERO:
            raise DomainError(f"order {command.client_order_id}: quantity must be > 0, got {command.quantity!r}")
        order_type = command.order_type
        if command.limit_price is None and order_type in _NEEDS_LIMIT:
            raise DomainError(f"order {command.client_order_id}: a {command.order_type.value} order needs limit_price")
        if command.stop_price is None and order_type in _NEEDS_STOP:
            raise DomainError(f"order {command.client_order_id}: a {command.order_type.value} order needs stop_price")
        if order_type is _TRAILING_STOP and (command.trail_price is None) == (command.trail_percent is None):
            raise DomainError(
                f"order {command.client_order_id}: a trailing_stop order needs exactly one of trail_price, trail_percent"
            )
        self.command = command
        self.status = _INITIALIZED
        self.filled_quantity = _ZERO
        self.average_fill_price: Decimal | None = None
        self.venue_order_id: VenueOrderId | None = None
        self.fees = _ZERO
        self.status_history: list[OrderStatus] = [_INITIALIZED]
        self.replaced_by: ClientOrderId | None = None
        self._notional = _ZERO

    # ------------------------------------------------------------------ views
    @property
    def client_order_id(self) -> ClientOrderId:
        return self.command.client_order_id

    @property
    def symbol(self) -> str:
        return self.command.symbol

    @property
    def side(self) -> OrderSide:
        return self.command.side

    @property
    def quantity(self) -> Decimal:
        return self.command.quantity

    @property
    def order_type(self) -> OrderType:
        return self.command.order_type

    @property
    def time_in_force(self) -> TimeInForce:
        return self.command.time_in_force

    @property
    def leaves_quantity(self) -> Decimal:
        return self.command.quantity - self.filled_quantity

    @property
    def is_working(self) -> bool:
        return self.status.is_working

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def __repr__(self) -> str:
        return (
            f"Order({self.client_order_id}, {self.side.value} {self.quantity} {self.symbol} "
            f"{self.order_type.value}, {self.status.value}, filled={self.filled_quantity})"
        )

    # ------------------------------------------------------------------ transitions
    def _move(self, target: OrderStatus) -> None:
        if target not in TRANSITIONS[self.status]:
            raise InvalidTransitionError(
                f"order {self.client_order_id}: cannot move from {self.status.value} to {target.value}"
            )
        self.status = target
        self.status_history.append(target)

    def apply(self, event: OrderEvent) -> None:
        """Apply one event, moving the status and fill totals.

        Raises:
            InvalidTransitionError: if the event implies a transition the table forbids.
            DomainError: if the event is for another order, or a fill would overfill.
        """
        if event.client_order_id != self.command.client_order_id:
            raise DomainError(f"event for {event.client_order_id} applied to order {self.client_order_id}")
        # The event types are unrelated classes: the order of the tests (most frequent first) is free.
        if isinstance(event, OrderFilled):
            self._apply_fill(event)
        elif isinstance(event, OrderAccepted):
            self._move(_NEW)
            self.venue_order_id = event.venue_order_id
        elif isinstance(event, OrderSubmitted):
            self._move(_PENDING_NEW)
        elif isinstance(event, OrderDenied):
            self._move(S.DENIED)
        elif isinstance(event, OrderRejected):
            self._move(S.REJECTED)
        elif isinstance(event, OrderCanceled):
            self._move(S.CANCELED)
        elif isinstance(event, OrderExpired):
            self._move(S.EXPIRED)
        elif isinstance(event, OrderReplaced):
            self._move(S.REPLACED)
            self.replaced_by = event.new_client_order_id
        elif isinstance(event, OrderStatusChanged):
            if event.status in _FILLS:
                raise DomainError(f"order {self.client_order_id}: fills must arrive as OrderFilled events")
            self._move(event.status)
        else:  # pragma: no cover - exhaustive over OrderEvent
            raise DomainError(f"unknown order event {type(event).__name__}")

    def _apply_fill(self, fill: OrderFilled) -> None:
        if fill.last_quantity <= 0 or fill.last_price <= 0:
            raise DomainError(
                f"order {self.client_order_id}: fill quantity and price must be > 0, "
                f"got {fill.last_quantity} @ {fill.last_price}"
            )
        command = self.command
        if fill.side is not command.side or fill.symbol != command.symbol:
            raise DomainError(
                f"order {self.client_order_id}: fill {fill.side.value} {fill.symbol} does not match "
                f"order {self.side.value} {self.symbol}"
            )
        quantity = command.quantity
        total = self.filled_quantity + fill.last_quantity
        if total > quantity:
            raise DomainError(
                f"order {self.client_order_id}: overfill, {self.filled_quantity} filled + {fill.last_quantity} "
                f"> order quantity {self.quantity}"
            )
        self._move(_FILLED if total == quantity else _PARTIALLY_FILLED)
        self._notional += fill.last_quantity * fill.last_price
        self.filled_quantity = total
        self.average_fill_price = self._notional / total
        self.fees += fill.fee
