"""The order management system: every order's state, driven only by events.

The OMS owns :class:`~amcp.domain.orders.Order` objects keyed by client order id. It never
talks to a broker itself: the trading cycle hands it the broker's events. Events that make no
sense (unknown order, illegal transition, overfill, a repeated trade id) never crash the
cycle: they are kept as anomalies with the reason, and the order is left unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Iterable, Sequence

from amcp.domain._fast_init import keyword_constructor
from amcp.domain.identifiers import ClientOrderId
from amcp.domain.messages import (
    CancelOrder,
    OrderDenied,
    OrderEvent,
    OrderFilled,
    OrderSubmitted,
    SubmitOrder,
)
from amcp.domain.orders import Order
from amcp.errors import DomainError, ExecutionError


# OrderSubmitted(...) for the hot path: the same event, without the class-call overhead.
_new_submitted = keyword_constructor(OrderSubmitted)


@dataclass(frozen=True, slots=True)
class Anomaly:
    """An event the OMS refused, and why."""

    event: OrderEvent
    reason: str


class OrderManager:
    """Order book of the trading plane: registration, submission, event application."""

    def __init__(self) -> None:
        self._orders: dict[ClientOrderId, Order] = {}
        self._working: dict[ClientOrderId, Order] = {}
        self._trade_ids: set[str] = set()
        self.anomalies: list[Anomaly] = []

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, client_order_id: object) -> bool:
        return client_order_id in self._orders

    def get(self, client_order_id: str) -> Order | None:
        return self._orders.get(client_order_id)  # type: ignore[call-overload]

    def orders(self) -> list[Order]:
        return list(self._orders.values())

    def working_orders(self) -> list[Order]:
        """Orders that may still fill, in registration order."""
        return list(self._working.values())

    def open_commands(self) -> list[SubmitOrder]:
        """The commands of working orders (their remaining quantity counts toward risk limits)."""
        return [order.command for order in self._working.values()]

    def pending_quantities(self) -> dict[tuple[str, str], Decimal]:
        """Signed unfilled quantity of working orders per (strategy id, symbol)."""
        pending: dict[tuple[str, str], Decimal] = {}
        if not self._working:
            return pending
        for order in self._working.values():
            key = (str(order.command.strategy_id), order.symbol)
            pending[key] = pending.get(key, Decimal(0)) + order.side.sign * order.leaves_quantity
        return pending

    def book_view(self) -> tuple[list[SubmitOrder], dict[tuple[str, str], Decimal]]:
        """Working orders' commands and pending quantities, in one call (one actor hop)."""
        if not self._working:  # the usual case once the cycle's fills are in: nothing working
            return [], {}
        return self.open_commands(), self.pending_quantities()

    # ------------------------------------------------------------------ commands
    def process_decisions(
        self,
        commands: Sequence[SubmitOrder],
        accepted: Sequence[SubmitOrder],
        denied: Sequence[OrderDenied],
        ts_ns: int,
    ) -> list[OrderSubmitted]:
        """Register every sized command, mark the denied ones, submit the accepted ones."""
        self.register(commands)
        self.deny(denied)
        return self.submit(accepted, ts_ns)

    def register(self, commands: Iterable[SubmitOrder]) -> None:
        """Create orders (status initialized) for new commands.

        Raises:
            ExecutionError: if a client order id is already known (risk denies duplicates first).
        """
        for command in commands:
            if command.client_order_id in self._orders:
                raise ExecutionError(f"client order id {command.client_order_id} is already registered")
            self._orders[command.client_order_id] = Order(command)

    def deny(self, denials: Iterable[OrderDenied]) -> None:
        """Mark registered orders as denied by pre-trade risk."""
        for denial in denials:
            order = self._orders.get(denial.client_order_id)
            if order is not None and order.status.value == "initialized":
                order.apply(denial)

    def submit(self, commands: Sequence[SubmitOrder], ts_ns: int) -> list[OrderSubmitted]:
        """Move registered orders to pending_new; returns the events to journal before sending."""
        events = []
        for command in commands:
            client_order_id = command.client_order_id
            event = _new_submitted(client_order_id=client_order_id, ts_ns=ts_ns)
            order = self._orders[client_order_id]
            order.apply(event)
            self._working[client_order_id] = order
            events.append(event)
        return events

    def cancel_all_commands(self, ts_ns: int, reason: str) -> list[CancelOrder]:
        """A cancel for every working order (used by the kill switch)."""
        return [CancelOrder(client_order_id=cid, ts_ns=ts_ns, reason=reason) for cid in self._working]

    # ------------------------------------------------------------------ events
    def apply(self, events: Iterable[OrderEvent]) -> list[OrderFilled]:
        """Apply broker events in order; return the fills that were applied.

        A fill whose trade id was already applied is ignored (brokers resend). Any event the
        order refuses is recorded in :attr:`anomalies` and changes nothing.
        """
        fills: list[OrderFilled] = []
        for event in events:
            order = self._orders.get(event.client_order_id)
            if order is None:
                self.anomalies.append(Anomaly(event, f"unknown client order id {event.client_order_id}"))
                continue
            is_fill = isinstance(event, OrderFilled)
            if is_fill and event.trade_id in self._trade_ids:
                continue
            try:
                order.apply(event)
            except DomainError as exc:
                self.anomalies.append(Anomaly(event, str(exc)))
                continue
            if is_fill:
                self._trade_ids.add(event.trade_id)
                fills.append(event)
            if order.status.is_terminal:
                self._working.pop(order.client_order_id, None)
        return fills
