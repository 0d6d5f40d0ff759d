"""Enumerations of the domain. Values are the strings Alpaca uses wherever Alpaca has one."""

from __future__ import annotations

from enum import Enum


class AssetClass(str, Enum):
    US_EQUITY = "us_equity"
    US_OPTION = "us_option"


class OptionRight(str, Enum):
    CALL = "call"
    PUT = "put"


class OrderSide(str, Enum):
    BUY = "buy"
    SELL = "sell"

    @property
    def sign(self) -> int:
        """+1 for a buy, -1 for a sell."""
        return 1 if self._value_ == "buy" else -1

    @property
    def opposite(self) -> OrderSide:
        return OrderSide.SELL if self is OrderSide.BUY else OrderSide.BUY


class OrderType(str, Enum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"
    TRAILING_STOP = "trailing_stop"


class OrderClass(str, Enum):
    """Alpaca's order classes.

    ``simple``: one order. ``bracket``: an entry plus a take-profit limit and a stop-loss stop,
    the exits one-cancels-other. ``oto``: an entry plus one exit. ``oco``: a take-profit limit
    and a stop-loss stop on an existing position, one cancelling the other. ``mleg``: a
    multi-leg option order (2-4 legs) filled as one unit.
    """

    SIMPLE = "simple"
    BRACKET = "bracket"
    OCO = "oco"
    OTO = "oto"
    MLEG = "mleg"


class PositionIntent(str, Enum):
    """What an option leg does to the position (Alpaca's ``position_intent``)."""

    BUY_TO_OPEN = "buy_to_open"
    BUY_TO_CLOSE = "buy_to_close"
    SELL_TO_OPEN = "sell_to_open"
    SELL_TO_CLOSE = "sell_to_close"

    @property
    def side(self) -> OrderSide:
        """The order side the intent implies."""
        return OrderSide.BUY if self._value_.startswith("buy") else OrderSide.SELL

    @property
    def closes(self) -> bool:
        """Whether the intent closes (reduces) a position."""
        return self._value_.endswith("_to_close")


class TimeInForce(str, Enum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"
    OPG = "opg"
    CLS = "cls"


class OrderStatus(str, Enum):
    """Alpaca's order statuses, plus two local ones that never reach a broker.

    ``initialized`` is an order built from an intent and not yet checked; ``denied`` is one the
    pre-trade risk checks refused. Every other value is Alpaca's own.
    """

    INITIALIZED = "initialized"
    DENIED = "denied"
    PENDING_NEW = "pending_new"
    ACCEPTED = "accepted"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    HELD = "held"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    DONE_FOR_DAY = "done_for_day"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    REJECTED = "rejected"
    STOPPED = "stopped"
    SUSPENDED = "suspended"
    CALCULATED = "calculated"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def is_working(self) -> bool:
        """Whether the order may still fill at the venue."""
        return self in _WORKING


_TERMINAL = frozenset(
    {
        OrderStatus.DENIED,
        OrderStatus.FILLED,
        OrderStatus.CANCELED,
        OrderStatus.EXPIRED,
        OrderStatus.REPLACED,
        OrderStatus.REJECTED,
    }
)
_WORKING = frozenset(
    {
        OrderStatus.PENDING_NEW,
        OrderStatus.ACCEPTED,
        OrderStatus.ACCEPTED_FOR_BIDDING,
        OrderStatus.HELD,
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.DONE_FOR_DAY,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PENDING_REPLACE,
        OrderStatus.STOPPED,
        OrderStatus.SUSPENDED,
        OrderStatus.CALCULATED,
    }
)


class LiquiditySide(str, Enum):
    MAKER = "maker"
    TAKER = "taker"


class TradingState(str, Enum):
    """Firm-wide trading state kept by the risk engine.

    ACTIVE: all orders allowed. REDUCING: only orders that reduce an existing position.
    HALTED: no new orders at all.
    """

    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class DenyReason(str, Enum):
    """Reason codes for a pre-trade denial; each names one check."""

    INVALID_QUANTITY = "invalid_quantity"
    INVALID_PRICE = "invalid_price"
    INVALID_ORDER_CLASS = "invalid_order_class"
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    MAX_ORDER_QUANTITY = "max_order_quantity"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    PRICE_COLLAR = "price_collar"
    STALE_REFERENCE_PRICE = "stale_reference_price"
    NO_REFERENCE_PRICE = "no_reference_price"
    MAX_POSITION = "max_position"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    INSUFFICIENT_BUYING_POWER = "insufficient_buying_power"
    DUPLICATE_CLIENT_ORDER_ID = "duplicate_client_order_id"
    DUPLICATE_INTENT = "duplicate_intent"
    THROTTLED = "throttled"
    RESTRICTED_SYMBOL = "restricted_symbol"
    REDUCE_ONLY = "reduce_only"
    TRADING_REDUCING = "trading_reducing"
    TRADING_HALTED = "trading_halted"
    GREEK_LIMIT = "greek_limit"
    NO_GREEKS = "no_greeks"
    STATE_UNAVAILABLE = "state_unavailable"
    NOT_CHECKED = "not_checked"
