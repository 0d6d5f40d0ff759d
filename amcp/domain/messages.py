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
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionIntent,
    TimeInForce,
    TradingState,
)
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId
from amcp.errors import DomainError

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


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderLeg:
    """One leg of a multi-leg (``mleg``) option order.

    Attributes:
        symbol: the OCC option symbol of the leg (e.g. ``SPY250117C00480000``).
        side: buy or sell.
        ratio_quantity: contracts of this leg per unit of the parent's quantity (an int >= 1);
            the leg trades ``parent quantity × ratio_quantity`` contracts.
        position_intent: opens or closes a position; when given it must agree with ``side``.

    Raises:
        DomainError: if a field is out of range or the intent contradicts the side.
    """

    symbol: str
    side: OrderSide
    ratio_quantity: int = 1
    position_intent: PositionIntent | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not self.symbol:
            raise DomainError(f"order leg symbol must be a non-empty string, got {self.symbol!r}")
        try:
            object.__setattr__(self, "side", OrderSide(self.side))
            if self.position_intent is not None:
                object.__setattr__(self, "position_intent", PositionIntent(self.position_intent))
        except ValueError as exc:
            raise DomainError(f"order leg {self.symbol}: {exc}") from None
        ratio = self.ratio_quantity
        if type(ratio) is not int or ratio < 1:
            raise DomainError(f"order leg {self.symbol}: ratio_quantity must be an int >= 1, got {ratio!r}")
        if self.position_intent is not None and self.position_intent.side is not self.side:
            raise DomainError(
                f"order leg {self.symbol}: position_intent {self.position_intent.value} contradicts "
                f"side {self.side.value}"
            )


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitOrder:
    """Submit a new order. ``client_order_id`` is derived from the intent, so it is stable.

    ``order_class`` other than ``simple`` (see :class:`OrderClass`) uses the exit prices (USD):
    a ``bracket`` needs ``take_profit_limit_price`` and ``stop_loss_stop_price``
    (``stop_loss_limit_price`` makes the stop a stop-limit); an ``oto`` exactly one of the two
    exits; an ``oco`` is a ``limit`` order whose ``limit_price`` is the take-profit, plus
    ``stop_loss_stop_price``. An ``mleg`` order carries 2-4 ``legs``; its ``symbol`` is the
    underlying root (e.g. ``SPY``), ``quantity`` the number of strategy units, ``limit_price``
    the net price per unit (positive a debit, negative a credit) and ``side`` is not sent.
    """

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
    order_class: OrderClass = OrderClass.SIMPLE
    take_profit_limit_price: Decimal | None = None
    stop_loss_stop_price: Decimal | None = None
    stop_loss_limit_price: Decimal | None = None
    legs: tuple[OrderLeg, ...] = ()


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
class OrderLegAccepted:
    """The venue created and accepted a leg order of the parent ``parent_client_order_id``.

    Bracket, OTO and OCO exits and the legs of a multi-leg order are orders of their own at the
    venue, with ids the venue chose (``client_order_id``, ``venue_order_id``); their fills and
    status changes arrive under those ids. Quantities in shares or contracts, prices in USD.
    """

    client_order_id: ClientOrderId
    parent_client_order_id: ClientOrderId
    venue_order_id: VenueOrderId
    symbol: str
    side: OrderSide
    quantity: Decimal
    ts_ns: int
    order_type: OrderType = OrderType.MARKET
    time_in_force: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None


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
    | OrderLegAccepted
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
