"""Value types and the interface of the execution algorithms.

Public names are re-exported by :mod:`amcp.execution.algos` (read its docstring for the
model): the parent order, the child order snapshot, the market view a timer tick carries, the
lifecycle status, the shared parameters, and the :class:`ExecutionAlgorithm` interface that
single-symbol algorithms and baskets implement.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from amcp.domain.enums import OrderSide, OrderStatus, OrderType
from amcp.domain.identifiers import ClientOrderId, StrategyId, derive_client_order_id
from amcp.domain.instruments import Instrument
from amcp.domain.instruments import instrument_for as default_instrument_for
from amcp.domain.messages import (
    CancelOrder,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderStatusChanged,
    SubmitOrder,
)
from amcp.domain.objects import to_decimal
from amcp.errors import AmcpError, ExecutionError

STATE_VERSION: Final = 1
"""Version of the checkpoint dictionary written by ``state``; ``from_state`` refuses others."""

MAX_CHILDREN: Final = 1_000_000
"""Children one parent may send; the bound keeps every derived child id within 128 characters."""

_ZERO: Final = Decimal(0)
_ID_LIMIT: Final = 128
# derive_client_order_id(parent, start_ns, index, symbol) = parent-start-index-<8 hex>
_ID_OVERHEAD: Final = 3 + len(str(MAX_CHILDREN - 1)) + 8

AlgoCommand = SubmitOrder | CancelOrder
"""What an algorithm proposes: new children (to be risk-checked by the caller) and cancels."""

InstrumentLookup = Callable[[str], Instrument]

DONE_STATUSES: Final = frozenset(
    {OrderStatus.CANCELED, OrderStatus.EXPIRED, OrderStatus.REJECTED, OrderStatus.FILLED}
)
"""Statuses ``on_child_done`` accepts."""

class AlgorithmStatus(str, Enum):
    """Lifecycle of a parent order's algorithm.

    PENDING: built, ``on_start`` not called yet. RUNNING: may send children. FINISHING: sends no
    new children (window over, canceled or failed) and waits for working children to end.
    COMPLETED: filled exactly the parent quantity. STOPPED: ended short of it.
    """

    PENDING = "pending"
    RUNNING = "running"
    FINISHING = "finishing"
    COMPLETED = "completed"
    STOPPED = "stopped"

    @property
    def is_done(self) -> bool:
        return self in (AlgorithmStatus.COMPLETED, AlgorithmStatus.STOPPED)


@dataclass(frozen=True, slots=True)
class MarketView:
    """What an algorithm may see of one symbol at a timer tick (point in time: the past only).

    Attributes:
        reference_price: last trade or mid price (USD), used to price marketable-limit children.
        volume: shares (contracts) traded since the previous timer tick, for participation caps.
    """

    reference_price: Decimal | None = None
    volume: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentOrder:
    """An order to work over a time window by sending child orders.

    Attributes:
        parent_id: the parent's id; every child id is derived from it (never sent itself).
        strategy_id: the strategy the children trade for.
        symbol: instrument symbol (ticker or OCC option symbol).
        side: buy or sell.
        quantity: total shares (contracts) to trade, on the instrument's lot.
        limit_price: worst price any child may trade at (USD), or ``None`` for no limit.
        start_ns: UTC nanoseconds at which the window opens (no children before).
        end_ns: UTC nanoseconds at which the window closes (no children at or after).
        algo: the algorithm's name: ``"twap"``, ``"vwap"`` or ``"iceberg"``.
        params: the algorithm's parameters (see each algorithm's ``*Params`` model).

    Raises:
        ExecutionError: if a field is invalid; the message names the field and the value.
    """

    parent_id: ClientOrderId
    strategy_id: StrategyId
    symbol: str
    side: OrderSide
    quantity: Decimal
    limit_price: Decimal | None
    start_ns: int
    end_ns: int
    algo: str
    params: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        try:
            parent_id = ClientOrderId(self.parent_id)
            strategy_id = StrategyId(self.strategy_id)
        except AmcpError as exc:
            raise ExecutionError(f"parent order has an invalid id: {exc}") from exc
        if len(parent_id) + len(str(self.start_ns)) + _ID_OVERHEAD > _ID_LIMIT:
            raise ExecutionError(
                f"parent_id {str(parent_id)!r} is too long ({len(parent_id)} characters): child ids "
                f"derived from it must fit in {_ID_LIMIT} characters"
            )
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ExecutionError(
                f"parent {parent_id}: symbol must be a non-empty string, got {self.symbol!r}"
            )
        try:
            side = OrderSide(self.side)
        except ValueError:
            raise ExecutionError(
                f"parent {parent_id}: side must be 'buy' or 'sell', got {self.side!r}"
            ) from None
        quantity = _decimal(self.quantity, f"parent {parent_id}: quantity")
        if quantity <= 0:
            raise ExecutionError(f"parent {parent_id}: quantity must be > 0, got {quantity}")
        limit = None
        if self.limit_price is not None:
            limit = _decimal(self.limit_price, f"parent {parent_id}: limit_price")
        if limit is not None and limit <= 0:
            raise ExecutionError(f"parent {parent_id}: limit_price must be > 0, got {limit}")
        for name in ("start_ns", "end_ns"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ExecutionError(
                    f"parent {parent_id}: {name} must be a non-negative int (UTC ns), got {value!r}"
                )
        if self.end_ns <= self.start_ns:
            raise ExecutionError(
                f"parent {parent_id}: end_ns {self.end_ns} must be after start_ns {self.start_ns}"
            )
        if not isinstance(self.algo, str) or not self.algo:
            raise ExecutionError(f"parent {parent_id}: algo must be a name such as 'twap', got {self.algo!r}")
        if not isinstance(self.params, Mapping):
            raise ExecutionError(
                f"parent {parent_id}: params must be a mapping, got {type(self.params).__name__}"
            )
        object.__setattr__(self, "parent_id", parent_id)
        object.__setattr__(self, "strategy_id", strategy_id)
        object.__setattr__(self, "side", side)
        object.__setattr__(self, "quantity", quantity)
        object.__setattr__(self, "limit_price", limit)
        # A private copy; a read-only mappingproxy would not pickle for Ray.
        object.__setattr__(self, "params", dict(self.params))

    def child_id(self, index: int) -> ClientOrderId:
        """Return the client order id of child ``index`` (0-based): the same on every restart."""
        return derive_client_order_id(self.parent_id, self.start_ns, index, self.symbol)

    def to_record(self, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Return a JSON-able dict (Decimals as strings); ``params`` replaces the raw params."""
        return {
            "parent_id": str(self.parent_id),
            "strategy_id": str(self.strategy_id),
            "symbol": self.symbol,
            "side": self.side.value,
            "quantity": str(self.quantity),
            "limit_price": None if self.limit_price is None else str(self.limit_price),
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "algo": self.algo,
            "params": dict(self.params if params is None else params),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ParentOrder:
        """Rebuild a parent from :meth:`to_record` output.

        Raises:
            ExecutionError: if a key is missing or a value is invalid.
        """
        try:
            return cls(
                parent_id=record["parent_id"],
                strategy_id=record["strategy_id"],
                symbol=record["symbol"],
                side=record["side"],
                quantity=record["quantity"],
                limit_price=record["limit_price"],
                start_ns=record["start_ns"],
                end_ns=record["end_ns"],
                algo=record["algo"],
                params=record.get("params", {}),
            )
        except (KeyError, TypeError) as exc:
            raise ExecutionError(f"parent order record is missing or has a malformed key: {exc!r}") from exc


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildOrder:
    """One child order as the algorithm last knew it.

    ``status`` is ``pending_new`` from the moment it is proposed until a fill or its end is
    reported; ``denied`` when risk refused it.
    """

    client_order_id: ClientOrderId
    index: int
    quantity: Decimal
    filled_quantity: Decimal
    status: OrderStatus
    order_type: OrderType
    limit_price: Decimal | None
    ts_ns: int
    cancel_requested: bool = False

    @property
    def is_working(self) -> bool:
        return self.status.is_working

    @property
    def leaves_quantity(self) -> Decimal:
        """Quantity that may still fill: ``quantity − filled`` while working, else 0."""
        return max(self.quantity - self.filled_quantity, _ZERO) if self.status.is_working else _ZERO

    def to_record(self) -> dict[str, Any]:
        return {
            "client_order_id": str(self.client_order_id),
            "index": self.index,
            "quantity": str(self.quantity),
            "filled_quantity": str(self.filled_quantity),
            "status": self.status.value,
            "order_type": self.order_type.value,
            "limit_price": None if self.limit_price is None else str(self.limit_price),
            "ts_ns": self.ts_ns,
            "cancel_requested": self.cancel_requested,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ChildOrder:
        limit = record["limit_price"]
        return cls(
            client_order_id=ClientOrderId(record["client_order_id"]),
            index=int(record["index"]),
            quantity=to_decimal(record["quantity"]),
            filled_quantity=to_decimal(record["filled_quantity"]),
            status=OrderStatus(record["status"]),
            order_type=OrderType(record["order_type"]),
            limit_price=None if limit is None else to_decimal(limit),
            ts_ns=int(record["ts_ns"]),
            cancel_requested=bool(record["cancel_requested"]),
        )


@dataclass(frozen=True, slots=True)
class AlgorithmAnomaly:
    """An input the algorithm could not reconcile (kept, never raised), and why."""

    ts_ns: int
    client_order_id: str
    reason: str


class AlgorithmParams(BaseModel):
    """Parameters every single-symbol algorithm accepts; unknown keys are rejected.

    Attributes:
        order_type: child order type; default ``market`` for a parent without a limit price and
            ``limit`` for one with (a limited parent never sends market children).
        limit_offset_bps: marketable-limit children: limit = reference × (1 ± bps/10⁴), buys
            above and sells below the reference, never beyond the parent's limit.
        time_in_force: children's time in force.
        failure_policy: after a denied or rejected child, ``retry`` with a new id at the next
            opportunity (until ``max_failures``) or ``stop`` at once.
        max_failures: denials plus rejections after which the algorithm stops.
        cancel_at_end: cancel working children when the window ends (else let them work on).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    order_type: Literal["market", "limit"] | None = None
    limit_offset_bps: float | None = Field(None, ge=0, le=1_000)
    time_in_force: Literal["day", "gtc", "ioc"] = "day"
    failure_policy: Literal["retry", "stop"] = "retry"
    max_failures: int = Field(3, ge=1, le=1_000)
    cancel_at_end: bool = True


class ExecutionAlgorithm(ABC):
    """A parent order worked by child orders: a pure state machine with no clock and no I/O.

    The caller feeds it time (``on_timer``) and the outcomes of its children (fills, ends,
    risk denials) and sends what it proposes: every ``SubmitOrder`` through the pre-trade risk
    checks first, every ``CancelOrder`` straight to the venue.
    """

    @abstractmethod
    def on_start(self, ts_ns: int, market: Mapping[str, MarketView] | None = None) -> list[AlgoCommand]:
        """Start the algorithm at ``ts_ns`` (UTC ns); return the first children, if due."""

    @abstractmethod
    def on_timer(self, ts_ns: int, market: Mapping[str, MarketView] | None = None) -> list[AlgoCommand]:
        """Advance to ``ts_ns`` (UTC ns, never decreasing); return children now due, or cancels."""

    @abstractmethod
    def on_fill(self, event: OrderFilled) -> list[AlgoCommand]:
        """Apply one child fill (repeated trade ids are ignored); return follow-up commands."""

    @abstractmethod
    def on_child_done(self, client_order_id: str, status: OrderStatus | str, ts_ns: int) -> list[AlgoCommand]:
        """Record that a child ended (canceled, expired, rejected); its leaves return to the pool."""

    @abstractmethod
    def on_denied(self, denied: OrderDenied) -> list[AlgoCommand]:
        """Record that pre-trade risk refused a child; retry later with a new id or stop."""

    @abstractmethod
    def cancel(self, ts_ns: int, reason: str = "parent canceled") -> list[CancelOrder]:
        """Stop sending children and cancel the working ones (idempotent)."""

    @abstractmethod
    def owns(self, client_order_id: str) -> bool:
        """Whether ``client_order_id`` is one of this algorithm's children."""

    @property
    @abstractmethod
    def filled_quantity(self) -> Decimal:
        """Shares (contracts) filled so far."""

    @property
    @abstractmethod
    def remaining_quantity(self) -> Decimal:
        """Parent quantity not yet filled (working children included)."""

    @property
    @abstractmethod
    def working_children(self) -> tuple[ChildOrder, ...]:
        """Children that may still fill, in the order they were sent."""

    @property
    @abstractmethod
    def status(self) -> AlgorithmStatus:
        """Where the algorithm is in its lifecycle."""

    @property
    def done(self) -> bool:
        """Whether the algorithm has ended (completed or stopped) and will propose nothing more."""
        return self.status.is_done

    @property
    @abstractmethod
    def state(self) -> dict[str, Any]:
        """A JSON-able checkpoint; ``from_state`` rebuilds an algorithm that continues identically."""

    @classmethod
    def from_state(
        cls, state: Mapping[str, Any], instrument_for: InstrumentLookup = default_instrument_for
    ) -> ExecutionAlgorithm:
        """Rebuild an algorithm from its ``state`` checkpoint (same children, same next id).

        Called on the base class it picks the algorithm class named in the state.

        Raises:
            ExecutionError: if the state is malformed, of another version or another algorithm.
        """
        from amcp.execution.algos import algorithm_from_state  # the registry lives in the public module

        algorithm = algorithm_from_state(state, instrument_for)
        if not isinstance(algorithm, cls):
            raise ExecutionError(f"state is a {type(algorithm).__name__} checkpoint, not a {cls.__name__}")
        return algorithm

    def on_event(self, event: OrderEvent) -> list[AlgoCommand]:
        """Dispatch a child's order event to the matching handler.

        Fills go to ``on_fill``, denials to ``on_denied``; cancels, expiries, rejections and
        terminal status changes to ``on_child_done``. Acknowledgements change nothing.
        """
        if isinstance(event, OrderFilled):
            return self.on_fill(event)
        if isinstance(event, OrderDenied):
            return self.on_denied(event)
        if isinstance(event, OrderCanceled):
            return self.on_child_done(event.client_order_id, OrderStatus.CANCELED, event.ts_ns)
        if isinstance(event, OrderExpired):
            return self.on_child_done(event.client_order_id, OrderStatus.EXPIRED, event.ts_ns)
        if isinstance(event, OrderRejected):
            return self.on_child_done(event.client_order_id, OrderStatus.REJECTED, event.ts_ns)
        if isinstance(event, OrderStatusChanged) and event.status in DONE_STATUSES:
            return self.on_child_done(event.client_order_id, event.status, event.ts_ns)
        return []


def check_state_header(state: Mapping[str, Any], algo_name: str) -> None:
    """Check a checkpoint's version and algorithm name.

    Raises:
        ExecutionError: if ``state`` is not a mapping, or its version or algorithm differ.
    """
    if not isinstance(state, Mapping):
        raise ExecutionError(f"checkpoint state must be a mapping, got {type(state).__name__}")
    if state.get("version") != STATE_VERSION:
        raise ExecutionError(f"checkpoint state version {state.get('version')!r} is not {STATE_VERSION}")
    if state.get("algo") != algo_name:
        raise ExecutionError(f"checkpoint state is for algo {state.get('algo')!r}, expected {algo_name!r}")


def _decimal(value: object, what: str) -> Decimal:
    try:
        return to_decimal(value)  # type: ignore[arg-type]
    except AmcpError as exc:
        raise ExecutionError(f"{what} must be a finite number, got {value!r}") from exc


def parse_timestamp(value: object) -> int:
    """Return ``value`` as an int of UTC nanoseconds.

    Raises:
        ExecutionError: if it is not an integer (a bool included).
    """
    if isinstance(value, bool):
        raise ExecutionError(f"ts_ns must be an integer (UTC ns), got {value!r}")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ExecutionError(f"ts_ns must be an integer (UTC ns), got {value!r}") from None
