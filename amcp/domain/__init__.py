"""The domain model: instruments, value types, ids, orders, commands, events, market data."""

from amcp.domain.data import Bar, BarBatch, Quote
from amcp.domain.enums import (
    AssetClass,
    DenyReason,
    LiquiditySide,
    OptionRight,
    OrderSide,
    OrderStatus,
    OrderType,
    TimeInForce,
    TradingState,
)
from amcp.domain.identifiers import (
    ClientOrderId,
    RunId,
    StrategyId,
    TradeId,
    VenueOrderId,
    derive_client_order_id,
)
from amcp.domain.instruments import Equity, Instrument, OptionContract, instrument_for
from amcp.domain.messages import (
    CancelAllOrders,
    CancelOrder,
    Command,
    Intent,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderIntent,
    OrderRejected,
    OrderReplaced,
    OrderStatusChanged,
    OrderSubmitted,
    ReplaceOrder,
    SubmitOrder,
    TargetWeight,
    TradingStateChanged,
)
from amcp.domain.objects import Money, Price, Quantity, to_decimal
from amcp.domain.orders import TRANSITIONS, Order, can_transition

__all__ = [name for name in dir() if not name.startswith("_")]
