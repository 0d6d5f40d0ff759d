"""Bookkeeping shared by the single-symbol execution algorithms (TWAP, VWAP, iceberg).

The child book (ids, quantities, statuses), fill and failure accounting, the end-of-window
rule and the checkpoint format live here; subclasses only decide *when* and *how much* to send.
"""

from __future__ import annotations

import dataclasses
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Final, Self

from pydantic import ValidationError

from amcp.domain.enums import DenyReason, OrderSide, OrderStatus, OrderType, TimeInForce
from amcp.domain.identifiers import ClientOrderId, algo_child_tag
from amcp.domain.instruments import Instrument
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.domain.messages import CancelOrder, OrderDenied, OrderFilled, SubmitOrder
from amcp.domain.objects import to_decimal
from amcp.errors import AmcpError, ExecutionError
from amcp.execution._algo_types import (
    DONE_STATUSES,
    MAX_CHILDREN,
    STATE_VERSION,
    AlgoCommand,
    AlgorithmAnomaly,
    AlgorithmParams,
    AlgorithmStatus,
    ChildOrder,
    ExecutionAlgorithm,
    InstrumentLookup,
    MarketView,
    ParentOrder,
    check_state_header,
    parse_timestamp,
)

_ZERO: Final = Decimal(0)
_BPS: Final = Decimal(10_000)

# A denial for one of these reasons will not go away by asking again with a new id.
_FATAL_DENIALS: Final = frozenset(
    {
        DenyReason.TRADING_HALTED,
        DenyReason.UNKNOWN_INSTRUMENT,
        DenyReason.RESTRICTED_SYMBOL,
        DenyReason.INVALID_QUANTITY,
        DenyReason.INVALID_PRICE,
        DenyReason.MAX_ORDER_QUANTITY,
        DenyReason.REDUCE_ONLY,
    }
)


class SingleParentAlgorithm(ExecutionAlgorithm):
    """Bookkeeping shared by the single-symbol algorithms (TWAP, VWAP, iceberg).

    Invariant, checked before every child is proposed: ``filled + Σ working leaves + new child
    ≤ parent quantity``. Subclasses implement :meth:`_due` (children due at a tick) and may
    implement :meth:`_after_fill`, :meth:`_observe` and the ``_extra_state`` pair.

    Args:
        parent: the parent order; ``parent.algo`` must name this class's algorithm.
        instrument_for: maps the symbol to its instrument (lot and tick sizes).

    Raises:
        ExecutionError: if the parent or its params are invalid for this algorithm.
    """

    algo_name: ClassVar[str]
    params_model: ClassVar[type[AlgorithmParams]] = AlgorithmParams

    def __init__(
        self, parent: ParentOrder, instrument_for: InstrumentLookup = default_instrument_for
    ) -> None:
        if not isinstance(parent, ParentOrder):
            raise ExecutionError(f"expected a ParentOrder, got {type(parent).__name__}")
        if parent.algo != self.algo_name:
            raise ExecutionError(
                f"parent {parent.parent_id} names algo {parent.algo!r}; {type(self).__name__} runs "
                f"{self.algo_name!r}"
            )
        try:
            instrument = instrument_for(parent.symbol)
        except (AmcpError, LookupError, ValueError, TypeError) as exc:
            raise ExecutionError(
                f"parent {parent.parent_id}: no instrument for symbol {parent.symbol!r}: {exc}"
            ) from exc
        self._instrument = instrument
        self._lot = instrument.lot_size
        if not instrument.is_valid_quantity(parent.quantity):
            raise ExecutionError(
                f"parent {parent.parent_id}: quantity {parent.quantity} is not a positive multiple of "
                f"the {parent.symbol} lot {self._lot}"
            )
        if parent.limit_price is not None and not instrument.is_valid_price(parent.limit_price):
            raise ExecutionError(
                f"parent {parent.parent_id}: limit_price {parent.limit_price} is not on the "
                f"{parent.symbol} tick {instrument.tick_size(parent.limit_price)}"
            )
        try:
            self._params = self.params_model.model_validate(dict(parent.params))
        except ValidationError as exc:
            raise ExecutionError(
                f"parent {parent.parent_id}: invalid {self.algo_name} params {dict(parent.params)!r}: {exc}"
            ) from exc
        if self._params.order_type == "market" and parent.limit_price is not None:
            raise ExecutionError(
                f"parent {parent.parent_id} has limit_price {parent.limit_price}: its children must be "
                "limit orders, not order_type 'market'"
            )
        self._parent = parent
        self._tif = TimeInForce(self._params.time_in_force)
        self._status = AlgorithmStatus.PENDING
        self._stop_reason = ""
        self._children: dict[ClientOrderId, ChildOrder] = {}
        self._next_index = 0
        self._filled = _ZERO
        self._notional = _ZERO
        self._trade_ids: set[str] = set()
        self._failures = 0
        self._last_ts_ns: int | None = None
        self._anomalies: list[AlgorithmAnomaly] = []

    # ------------------------------------------------------------------ views
    @property
    def parent(self) -> ParentOrder:
        return self._parent

    @property
    def instrument(self) -> Instrument:
        return self._instrument

    @property
    def params(self) -> AlgorithmParams:
        """The validated parameters."""
        return self._params

    @property
    def status(self) -> AlgorithmStatus:
        return self._status

    @property
    def stop_reason(self) -> str:
        """Why the algorithm stopped sending children ("" while running or once completed early)."""
        return self._stop_reason

    @property
    def filled_quantity(self) -> Decimal:
        return self._filled

    @property
    def remaining_quantity(self) -> Decimal:
        return max(self._parent.quantity - self._filled, _ZERO)

    @property
    def working_quantity(self) -> Decimal:
        """Sum of the working children's leaves quantities."""
        return sum((child.leaves_quantity for child in self._children.values()), _ZERO)

    @property
    def working_children(self) -> tuple[ChildOrder, ...]:
        return tuple(child for child in self._children.values() if child.is_working)

    @property
    def children(self) -> tuple[ChildOrder, ...]:
        """Every child proposed so far, in index order."""
        return tuple(self._children.values())

    @property
    def next_child_id(self) -> ClientOrderId:
        """The id the next child will carry."""
        return self._parent.child_id(self._next_index)

    @property
    def average_price(self) -> Decimal | None:
        """Quantity-weighted average fill price (USD), or ``None`` before the first fill."""
        return None if self._filled == 0 else self._notional / self._filled

    @property
    def failures(self) -> int:
        """Denied plus venue-rejected children so far."""
        return self._failures

    @property
    def anomalies(self) -> tuple[AlgorithmAnomaly, ...]:
        return tuple(self._anomalies)

    def owns(self, client_order_id: str) -> bool:
        return client_order_id in self._children

    # ------------------------------------------------------------------ time
    def on_start(self, ts_ns: int, market: Mapping[str, MarketView] | None = None) -> list[AlgoCommand]:
        """Start the algorithm; children are sent from ``parent.start_ns`` on.

        Raises:
            ExecutionError: if it was started before (a restored algorithm is already started).
        """
        if self._status is not AlgorithmStatus.PENDING:
            raise ExecutionError(
                f"algorithm for parent {self._parent.parent_id} is already {self._status.value}; "
                "on_start is called once"
            )
        self._status = AlgorithmStatus.RUNNING
        return self.on_timer(ts_ns, market)

    def on_timer(self, ts_ns: int, market: Mapping[str, MarketView] | None = None) -> list[AlgoCommand]:
        """Advance to ``ts_ns``; at or after ``end_ns`` stop (cancelling working children per
        ``cancel_at_end``), else return the children now due.

        Raises:
            ExecutionError: if not started, or ``ts_ns`` is earlier than a previous tick.
        """
        ts_ns = parse_timestamp(ts_ns)
        if self._status is AlgorithmStatus.PENDING:
            raise ExecutionError(
                f"algorithm for parent {self._parent.parent_id} has not been started: call on_start"
            )
        if self._last_ts_ns is not None and ts_ns < self._last_ts_ns:
            raise ExecutionError(
                f"parent {self._parent.parent_id}: timer went back from {self._last_ts_ns} to {ts_ns} ns"
            )
        self._last_ts_ns = ts_ns
        if self._status is not AlgorithmStatus.RUNNING:
            return []
        if ts_ns >= self._parent.end_ns:
            return self._end_window(ts_ns)
        if ts_ns < self._parent.start_ns:
            return []
        view = (market or {}).get(self._parent.symbol)
        self._observe(ts_ns, view)
        return list(self._due(ts_ns, view))

    # ------------------------------------------------------------------ events
    def on_fill(self, event: OrderFilled) -> list[AlgoCommand]:
        """Apply a child fill.

        A repeated trade id is ignored. A fill on the wrong symbol or side, or with a
        non-positive quantity, is recorded as an anomaly and not counted. A fill larger than the
        child's leaves, or on a child already ended, is counted (the shares did trade) and
        recorded as an anomaly.

        Raises:
            ExecutionError: if the fill names a client order id that is not a child of this parent.
        """
        child = self._child(event.client_order_id)
        if event.trade_id in self._trade_ids:
            return []
        if event.symbol != self._parent.symbol or event.side is not self._parent.side:
            self._anomaly(
                event.ts_ns,
                child.client_order_id,
                f"fill {event.trade_id} is {event.side.value} {event.symbol}, the parent is "
                f"{self._parent.side.value} {self._parent.symbol}: not counted",
            )
            return []
        quantity = event.last_quantity
        if not quantity > 0:
            reason = f"fill {event.trade_id} has quantity {quantity}: not counted"
            self._anomaly(event.ts_ns, child.client_order_id, reason)
            return []
        self._trade_ids.add(str(event.trade_id))
        if not child.is_working:
            reason = f"fill {event.trade_id} of {quantity} on a {child.status.value} child"
            self._anomaly(event.ts_ns, child.client_order_id, reason)
        elif quantity > child.leaves_quantity:
            self._anomaly(
                event.ts_ns,
                child.client_order_id,
                f"fill {event.trade_id} of {quantity} exceeds the child's leaves {child.leaves_quantity}",
            )
        filled = child.filled_quantity + quantity
        status = child.status
        if child.is_working:
            status = OrderStatus.FILLED if filled >= child.quantity else OrderStatus.PARTIALLY_FILLED
        child = dataclasses.replace(child, filled_quantity=filled, status=status)
        self._children[child.client_order_id] = child
        self._filled += quantity
        self._notional += quantity * event.last_price
        if self._filled > self._parent.quantity:
            self._anomaly(
                event.ts_ns,
                child.client_order_id,
                f"parent overfilled: {self._filled} filled of {self._parent.quantity}",
            )
        commands: list[AlgoCommand] = []
        if self._filled >= self._parent.quantity:
            commands.extend(self._cancel_working(event.ts_ns, "parent filled"))
        elif status is OrderStatus.FILLED and self._status is AlgorithmStatus.RUNNING:
            if self._parent.start_ns <= event.ts_ns < self._parent.end_ns:
                commands.extend(self._after_fill(child, event.ts_ns))
        self._settle()
        return commands

    def on_child_done(self, client_order_id: str, status: OrderStatus | str, ts_ns: int) -> list[AlgoCommand]:
        """Record that a child ended; its unfilled quantity returns to the pool.

        ``canceled`` and ``expired`` need nothing more; ``rejected`` counts as a failure (see
        ``failure_policy``); ``filled`` is a no-op (fills drive the quantities). A repeated end
        is ignored.

        Raises:
            ExecutionError: if the id is not a child's, or ``status`` is not an end status.
        """
        child = self._child(client_order_id)
        try:
            done = OrderStatus(status)
        except ValueError:
            raise ExecutionError(f"child {client_order_id}: unknown order status {status!r}") from None
        if done not in DONE_STATUSES:
            raise ExecutionError(
                f"child {client_order_id}: on_child_done takes canceled, expired, rejected or filled, got "
                f"{done.value!r} (denials go to on_denied)"
            )
        if done is OrderStatus.FILLED or not child.is_working:
            return []
        self._children[child.client_order_id] = dataclasses.replace(child, status=done)
        commands: list[AlgoCommand] = []
        if done is OrderStatus.REJECTED:
            reason = f"child {client_order_id} rejected"
            commands.extend(self._fail(ts_ns, child.client_order_id, reason, fatal=False))
        self._settle()
        return commands

    def on_denied(self, denied: OrderDenied) -> list[AlgoCommand]:
        """Record that risk refused a child; the id is never reused.

        ``duplicate_client_order_id`` means an order with this id may already be live (a child
        re-proposed after a restart): the child stays working until its outcome is reported.
        Reasons that cannot pass on a retry (halted, restricted, invalid, too large,
        reduce-only, unknown instrument) stop the algorithm; others count as a failure and the
        quantity is tried again at the next opportunity (a new slice for TWAP/VWAP, the next
        tick for an iceberg), until ``max_failures``.

        Raises:
            ExecutionError: if the id is not a child's.
        """
        child = self._child(denied.client_order_id)
        try:
            reason = DenyReason(denied.reason)
        except ValueError:
            raise ExecutionError(
                f"denial of {denied.client_order_id} has unknown reason {denied.reason!r}"
            ) from None
        if child.status is not OrderStatus.PENDING_NEW or child.filled_quantity > 0:
            self._anomaly(
                denied.ts_ns,
                child.client_order_id,
                f"denial ({reason.value}) for a child already {child.status.value}: ignored",
            )
            return []
        if reason is DenyReason.DUPLICATE_CLIENT_ORDER_ID:
            self._anomaly(
                denied.ts_ns,
                child.client_order_id,
                "denied as a duplicate id: the order may be live, kept as working until its "
                "outcome is reported",
            )
            return []
        self._children[child.client_order_id] = dataclasses.replace(child, status=OrderStatus.DENIED)
        commands = self._fail(
            denied.ts_ns,
            child.client_order_id,
            f"child {child.client_order_id} denied ({reason.value}): {denied.message}",
            fatal=reason in _FATAL_DENIALS,
        )
        self._settle()
        return list(commands)

    def cancel(self, ts_ns: int, reason: str = "parent canceled") -> list[CancelOrder]:
        """Stop sending children and cancel every working child.

        Safe to repeat: each call asks again for every child still working (a cancel that was
        lost is re-sent; the venue ignores a cancel for an order that has ended).
        """
        if self._status.is_done:
            return []
        commands = self._stop(ts_ns, reason)
        asked = {command.client_order_id for command in commands}
        again = [
            CancelOrder(client_order_id=child.client_order_id, ts_ns=ts_ns, reason=reason)
            for child in self._children.values()
            if child.is_working and child.client_order_id not in asked
        ]
        return commands + again

    # ------------------------------------------------------------------ hooks
    @abstractmethod
    def _due(self, ts_ns: int, market: MarketView | None) -> Sequence[SubmitOrder]:
        """Children due at ``ts_ns`` (called only while running, inside the window)."""

    def _after_fill(self, child: ChildOrder, ts_ns: int) -> Sequence[SubmitOrder]:
        """Children to send when ``child`` has just filled completely (default: none)."""
        return ()

    def _observe(self, ts_ns: int, market: MarketView | None) -> None:
        """See the market at a tick inside the window, before ``_due`` (default: ignore)."""

    def _extra_state(self) -> dict[str, Any]:
        """Subclass state to checkpoint (JSON-able)."""
        return {}

    def _load_extra(self, extra: Mapping[str, Any]) -> None:
        """Restore what :meth:`_extra_state` wrote."""

    # ------------------------------------------------------------------ helpers for subclasses
    def _available(self) -> Decimal:
        """Quantity that may be sent now: ``parent − filled − working leaves`` (never negative)."""
        return max(self._parent.quantity - self._filled - self.working_quantity, _ZERO)

    def _round_lot(self, quantity: Decimal) -> Decimal:
        """Round ``quantity`` down to the lot (0 when below one lot)."""
        if quantity <= 0:
            return _ZERO
        return self._instrument.round_quantity(quantity, "down")

    def _child_terms(self, ts_ns: int, market: MarketView | None) -> tuple[OrderType, Decimal | None] | None:
        """Order type and limit price (USD) for a new child, or ``None`` (recorded) if unpriceable.

        Market children when the params say so (or by default with no parent limit);
        otherwise a limit at the marketable price ``reference × (1 ± offset)`` rounded away from
        the reference to the tick, never beyond the parent's limit; at the parent's limit when
        no reference price is known.
        """
        parent = self._parent
        order_type = self._params.order_type or ("market" if parent.limit_price is None else "limit")
        if order_type == "market":
            return OrderType.MARKET, None
        reference = None if market is None else market.reference_price
        price: Decimal | None = None
        if reference is not None and reference > 0:
            offset = to_decimal(self._params.limit_offset_bps or 0.0) / _BPS
            buy = parent.side is OrderSide.BUY
            raw = reference * (1 + offset) if buy else reference * (1 - offset)
            price = self._instrument.round_price(raw, "up" if buy else "down")
            if parent.limit_price is not None:
                price = min(price, parent.limit_price) if buy else max(price, parent.limit_price)
        elif parent.limit_price is not None:
            price = parent.limit_price
        if price is None or price <= 0:
            self._anomaly(ts_ns, "", f"no reference price for a limit child of {parent.symbol}: nothing sent")
            return None
        return OrderType.LIMIT, price

    def _new_child(
        self, ts_ns: int, quantity: Decimal, order_type: OrderType, limit_price: Decimal | None
    ) -> SubmitOrder | None:
        """Record and return a child of ``quantity`` rounded down to the lot and capped by
        :meth:`_available`, or ``None`` when that leaves less than one lot."""
        quantity = self._round_lot(min(quantity, self._available()))
        if quantity <= 0:
            return None
        if self._next_index >= MAX_CHILDREN:
            self._stop(ts_ns, f"child limit {MAX_CHILDREN} reached")
            return None
        parent = self._parent
        client_order_id = parent.child_id(self._next_index)
        self._children[client_order_id] = ChildOrder(
            client_order_id=client_order_id,
            index=self._next_index,
            quantity=quantity,
            filled_quantity=_ZERO,
            status=OrderStatus.PENDING_NEW,
            order_type=order_type,
            limit_price=limit_price,
            ts_ns=ts_ns,
        )
        self._next_index += 1
        return SubmitOrder(
            client_order_id=client_order_id,
            strategy_id=parent.strategy_id,
            symbol=parent.symbol,
            side=parent.side,
            quantity=quantity,
            order_type=order_type,
            time_in_force=self._tif,
            limit_price=limit_price,
            ts_ns=ts_ns,
            tag=algo_child_tag(self.algo_name, parent.parent_id),
        )

    def _anomaly(self, ts_ns: int, client_order_id: str, reason: str) -> None:
        self._anomalies.append(AlgorithmAnomaly(ts_ns, str(client_order_id), reason))

    # ------------------------------------------------------------------ lifecycle
    def _child(self, client_order_id: str) -> ChildOrder:
        child = self._children.get(client_order_id)  # type: ignore[call-overload]
        if child is None:
            raise ExecutionError(
                f"{str(client_order_id)!r} is not a child of parent {self._parent.parent_id} "
                f"({len(self._children)} children, next {self.next_child_id})"
            )
        return child

    def _fail(self, ts_ns: int, client_order_id: str, reason: str, fatal: bool) -> list[CancelOrder]:
        self._failures += 1
        self._anomaly(ts_ns, client_order_id, reason)
        if self._status is not AlgorithmStatus.RUNNING:
            return []
        if fatal or self._params.failure_policy == "stop" or self._failures >= self._params.max_failures:
            limit = self._params.max_failures
            return self._stop(ts_ns, f"{reason} (failure {self._failures} of at most {limit})")
        return []

    def _end_window(self, ts_ns: int) -> list[AlgoCommand]:
        unfilled = self._parent.quantity - self._filled
        reason = f"window ended at {self._parent.end_ns} with {unfilled} unfilled"
        if self._params.cancel_at_end:
            return list(self._stop(ts_ns, reason))
        self._stop_reason = reason
        self._status = AlgorithmStatus.FINISHING
        self._settle()
        return []

    def _stop(self, ts_ns: int, reason: str) -> list[CancelOrder]:
        if not self._stop_reason:
            self._stop_reason = reason
        if self._status in (AlgorithmStatus.PENDING, AlgorithmStatus.RUNNING):
            self._status = AlgorithmStatus.FINISHING
        cancels = self._cancel_working(ts_ns, reason)
        self._settle()
        return cancels

    def _cancel_working(self, ts_ns: int, reason: str) -> list[CancelOrder]:
        cancels: list[CancelOrder] = []
        for child in list(self._children.values()):
            if child.is_working and not child.cancel_requested:
                self._children[child.client_order_id] = dataclasses.replace(child, cancel_requested=True)
                cancels.append(CancelOrder(client_order_id=child.client_order_id, ts_ns=ts_ns, reason=reason))
        return cancels

    def _settle(self) -> None:
        if self._status.is_done:
            return
        if self._filled >= self._parent.quantity:
            self._status = AlgorithmStatus.COMPLETED
        elif self._status is AlgorithmStatus.FINISHING and not any(
            child.is_working for child in self._children.values()
        ):
            self._status = AlgorithmStatus.STOPPED

    # ------------------------------------------------------------------ checkpoint
    @property
    def state(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "algo": self.algo_name,
            "parent": self._parent.to_record(self._params.model_dump(mode="json", exclude_unset=True)),
            "status": self._status.value,
            "stop_reason": self._stop_reason,
            "next_index": self._next_index,
            "children": [child.to_record() for child in self._children.values()],
            "filled": str(self._filled),
            "notional": str(self._notional),
            "trade_ids": sorted(self._trade_ids),
            "failures": self._failures,
            "last_ts_ns": self._last_ts_ns,
            "anomalies": [[a.ts_ns, a.client_order_id, a.reason] for a in self._anomalies],
            "extra": self._extra_state(),
        }

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], instrument_for: InstrumentLookup = default_instrument_for
    ) -> Self:
        """Rebuild from :attr:`state`: same children, same fills, same next child id.

        Every child id is re-derived from the parent and must match the checkpoint.

        Raises:
            ExecutionError: if the state is malformed, inconsistent, of another version or
                another algorithm.
        """
        return cls._restore(state, instrument_for)

    @classmethod
    def _restore(cls, state: Mapping[str, Any], instrument_for: InstrumentLookup) -> Self:
        check_state_header(state, cls.algo_name)
        try:
            algorithm = cls(ParentOrder.from_record(state["parent"]), instrument_for)
            algorithm._status = AlgorithmStatus(state["status"])
            algorithm._stop_reason = str(state["stop_reason"])
            algorithm._next_index = _count(state["next_index"], "next_index")
            for record in state["children"]:
                child = ChildOrder.from_record(record)
                algorithm._children[child.client_order_id] = child
            algorithm._filled = to_decimal(state["filled"])
            algorithm._notional = to_decimal(state["notional"])
            algorithm._trade_ids = {str(trade_id) for trade_id in state["trade_ids"]}
            algorithm._failures = _count(state["failures"], "failures")
            last = state["last_ts_ns"]
            algorithm._last_ts_ns = None if last is None else int(last)
            algorithm._anomalies = [
                AlgorithmAnomaly(int(ts_ns), str(client_order_id), str(reason))
                for ts_ns, client_order_id, reason in state["anomalies"]
            ]
            algorithm._load_extra(state["extra"])
        except ExecutionError:
            raise
        except (KeyError, TypeError, ValueError, ArithmeticError, AmcpError) as exc:
            raise ExecutionError(
                f"{cls.algo_name} checkpoint state is malformed: {type(exc).__name__}: {exc}"
            ) from exc
        algorithm._check_restored()
        return algorithm

    def _check_restored(self) -> None:
        parent = self._parent
        filled = _ZERO
        for position, child in enumerate(self._children.values()):
            expected = parent.child_id(child.index)
            if child.client_order_id != expected or child.index >= self._next_index:
                raise ExecutionError(
                    f"checkpoint child {position} has id {child.client_order_id} and index {child.index}; "
                    f"parent {parent.parent_id} derives {expected} (next index {self._next_index})"
                )
            filled += child.filled_quantity
        if filled != self._filled:
            raise ExecutionError(
                f"checkpoint of parent {parent.parent_id} says {self._filled} filled but its "
                f"children add to {filled}"
            )


def _count(value: object, what: str) -> int:
    if type(value) is not int or value < 0:
        raise ExecutionError(f"checkpoint {what} must be a non-negative int, got {value!r}")
    return value
