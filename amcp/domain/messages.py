"""Commands, intents and events: typed, immutable messages.

Commands are imperative (``SubmitOrder``), events are past tense (``OrderFilled``). Strategies
emit intents (``OrderIntent``, ``TargetWeight``); sizing turns intents into ``SubmitOrder``
commands; risk answers with ``OrderDenied`` or lets them through; the venue answers with
order events. Every message is a frozen, slotted dataclass: picklable for Ray, JSON-able for
the journal through :func:`amcp.domain.serialization.to_record`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from amcp.domain._fast_init import fast_init
from amcp.domain.enums import (
    DenyReason,
    LiquiditySide,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    TradingState,
)
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId

# --------------------------------------------------------------------------- intents


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderIntent:
    """A strategy's wish to trade an explicit quantity."""

    strategy_id: StrategyId
    symbol: str
    side: OrderSide
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    reduce_only: bool = False
    tag: str = ""


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TargetWeight:
    """A strategy's wish to hold ``weight`` × its capital in ``symbol`` (negative = short)."""

    strategy_id: StrategyId
    symbol: str
    weight: float
    tag: str = ""


Intent = OrderIntent | TargetWeight

# --------------------------------------------------------------------------- commands


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOrder:
    """Submit a new order. ``client_order_id`` is derived from the intent, so it is stable."""

    client_order_id: ClientOrderId
    strategy_id: StrategyId
    symbol: str
    side: OrderSide
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None
    trail_percent: Decimal | None = None
    reduce_only: bool = False
    ts_ns: int
    tag: str = ""


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOrder:
    client_order_id: ClientOrderId
    ts_ns: int
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class ReplaceOrder:
    """Replace a working order with a new one (Alpaca PATCH): new id, new quantity or prices."""

    client_order_id: ClientOrderId
    new_client_order_id: ClientOrderId
    ts_ns: int
    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    trail_price: Decimal | None = None


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class CancelAllOrders:
    ts_ns: int
    reason: str = ""


Command = SubmitOrder | CancelOrder | ReplaceOrder | CancelAllOrders

# --------------------------------------------------------------------------- order events


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderDenied:
    """Pre-trade risk refused the order; it never left the process."""

    client_order_id: ClientOrderId
    ts_ns: int
    reason: DenyReason
    message: str
    strategy_id: StrategyId | None = None
    symbol: str = ""


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderSubmitted:
    """The order was sent to the venue (status pending_new)."""

    client_order_id: ClientOrderId
    ts_ns: int


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderAccepted:
    """The venue acknowledged the order (status new)."""

    client_order_id: ClientOrderId
    venue_order_id: VenueOrderId
    ts_ns: int


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRejected:
    """The venue refused the order."""

    client_order_id: ClientOrderId
    ts_ns: int
    reason: str


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderFilled:
    """One execution against the order. ``fee`` is in USD and already rounded to the cent."""

    client_order_id: ClientOrderId
    venue_order_id: VenueOrderId
    trade_id: TradeId
    strategy_id: StrategyId
    symbol: str
    side: OrderSide
    last_quantity: Decimal
    last_price: Decimal
    fee: Decimal
    liquidity: LiquiditySide
    ts_ns: int


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCanceled:
    client_order_id: ClientOrderId
    ts_ns: int
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderExpired:
    """Time in force ran out (day at the close, ioc/fok/opg/cls after their chance)."""

    client_order_id: ClientOrderId
    ts_ns: int
    reason: str = ""


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderReplaced:
    """The order was replaced by ``new_client_order_id`` (the old one ends as replaced)."""

    client_order_id: ClientOrderId
    new_client_order_id: ClientOrderId
    ts_ns: int


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class OrderStatusChanged:
    """Any other broker status change (pending_cancel, done_for_day, held, stopped, …)."""

    client_order_id: ClientOrderId
    status: OrderStatus
    ts_ns: int
    reason: str = ""


OrderEvent = (
    OrderDenied
    | OrderSubmitted
    | OrderAccepted
    | OrderRejected
    | OrderFilled
    | OrderCanceled
    | OrderExpired
    | OrderReplaced
    | OrderStatusChanged
)

# --------------------------------------------------------------------------- system events


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class TradingStateChanged:
    previous: TradingState
    state: TradingState
    ts_ns: int
    reason: str
