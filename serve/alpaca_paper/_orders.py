"""Alpaca's order object and request parsing for the paper server: errors, numbers, JSON.

Pure helpers shared by :mod:`serve.alpaca_paper._book`: :class:`PaperApiError` (an error answer
with Alpaca's ``{"code", "message"}`` body), the parsers of request fields (422 on bad input,
naming the value), Alpaca's decimal-string and timestamp formats, and :class:`PaperOrder`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd

from amcp.data.calendar import EXCHANGE_TIMEZONE
from amcp.domain.enums import OrderSide, OrderStatus, OrderType, TimeInForce
from amcp.errors import ExecutionError
from amcp.portfolio.ledger import LEDGER_CONTEXT

NAMESPACE = uuid.UUID("0b7f3c52-9a8e-4d1b-8f6e-3c2a1d5e7f90")
ZERO = Decimal(0)
AVERAGE_QUANTUM = Decimal("1E-10")
"""Average prices (``filled_avg_price``, ``avg_entry_price``) are rounded half-even to this (USD)."""

OPEN_STATUSES = frozenset(
    {
        OrderStatus.NEW,
        OrderStatus.ACCEPTED,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.PENDING_NEW,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PENDING_REPLACE,
        OrderStatus.HELD,
    }
)
_ENUMS: dict[str, type[OrderSide] | type[OrderType] | type[TimeInForce]] = {
    "side": OrderSide,
    "type": OrderType,
    "time_in_force": TimeInForce,
}

# Alpaca's error codes: HTTP status × 100,000 (+ a detail digit for 422 validation errors).
CODE_INVALID = 40010001
CODE_UNAUTHORIZED = 40110000
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000


class PaperApiError(ExecutionError):
    """A request the paper server answers with an Alpaca error body.

    Attributes:
        status: HTTP status (400, 401, 403, 404, 422, ...).
        code: Alpaca's numeric error code.
        message: the ``message`` of the body, naming the offending value.
        extra: further body fields (e.g. ``buying_power`` and ``cost_basis`` on a 403).
    """

    def __init__(self, status: int, message: str, code: int | None = None, **extra: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code if code is not None else status * 100_000
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """Return Alpaca's JSON error body ``{"code": ..., "message": ..., **extra}``."""
        return {"code": self.code, "message": self.message, **self.extra}


def invalid(message: str) -> PaperApiError:
    return PaperApiError(422, message, CODE_INVALID)


def rfc3339(ts_ns: int) -> str:
    """Format UTC nanoseconds as Alpaca does: ``2024-01-02T14:30:00.123456789Z``."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    whole = pd.Timestamp(seconds, unit="s", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S")
    return f"{whole}.{nanos:09d}Z"


def eastern(ts_ns: int) -> str:
    """Format UTC nanoseconds in New York time with its offset, as ``/v2/clock`` does."""
    return pd.Timestamp(ts_ns, unit="ns", tz="UTC").tz_convert(EXCHANGE_TIMEZONE).isoformat()


def text(value: Decimal | None) -> str | None:
    """Alpaca's decimal string: ``Decimal("1.50")`` -> ``"1.5"``, ``Decimal("1E+2")`` -> ``"100"``."""
    if value is None:
        return None
    rendered = f"{value.normalize(LEDGER_CONTEXT):f}"
    return "0" if rendered in ("-0", "0") else rendered


def _number(body: dict[str, Any], name: str) -> Decimal | None:
    """Return body[name] as a finite Decimal, None if absent; 422 if it is not a number."""
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise invalid(f"invalid {name} {value!r}; expected a number")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        raise invalid(f"invalid {name} {value!r}; expected a number") from None
    if not number.is_finite():
        raise invalid(f"invalid {name} {value!r}; expected a finite number")
    return number


def positive(body: dict[str, Any], name: str) -> Decimal | None:
    number = _number(body, name)
    if number is not None and number <= 0:
        raise invalid(f"{name} must be > 0 (got {body.get(name)!r})")
    return number


def parse_enum(body: dict[str, Any], name: str, default: str | None = None) -> Any:
    kind = _ENUMS[name]
    value = body.get(name, default)
    try:
        return kind(value)
    except ValueError:
        allowed = [member.value for member in kind]
        raise invalid(f"invalid {name} {value!r}; expected one of {allowed}") from None


@dataclass(slots=True)
class PaperOrder:
    """Alpaca's view of one order (mutable; only the broker changes it).

    Quantities are shares or contracts, prices USD; ``*_ns`` are UTC nanoseconds.
    """

    id: str
    client_order_id: str
    sequence: int
    symbol: str
    asset_class: str
    side: OrderSide
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    notional: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    trail_price: Decimal | None
    trail_percent: Decimal | None
    extended_hours: bool
    created_ns: int
    multiplier: Decimal
    status: OrderStatus = OrderStatus.NEW
    updated_ns: int = 0
    filled_quantity: Decimal = ZERO
    filled_value: Decimal = ZERO  # Σ fill qty × price, USD per unit (no multiplier)
    filled_ns: int | None = None
    canceled_ns: int | None = None
    expired_ns: int | None = None
    failed_ns: int | None = None
    replaced_ns: int | None = None
    replaced_by: str | None = None
    replaces: str | None = None
    reason: str = ""
    fills: list[tuple[int, Decimal, Decimal]] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def leaves(self) -> Decimal:
        return self.quantity - self.filled_quantity

    def to_json(self) -> dict[str, Any]:
        """Return the order as Alpaca's REST and stream bodies carry it."""
        mean = None if not self.filled_quantity else average(self.filled_value / self.filled_quantity)
        stamp = rfc3339
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": stamp(self.created_ns),
            "updated_at": stamp(self.updated_ns or self.created_ns),
            "submitted_at": stamp(self.created_ns),
            "filled_at": None if self.filled_ns is None else stamp(self.filled_ns),
            "expired_at": None if self.expired_ns is None else stamp(self.expired_ns),
            "expires_at": None,
            "canceled_at": None if self.canceled_ns is None else stamp(self.canceled_ns),
            "failed_at": None if self.failed_ns is None else stamp(self.failed_ns),
            "replaced_at": None if self.replaced_ns is None else stamp(self.replaced_ns),
            "replaced_by": self.replaced_by,
            "replaces": self.replaces,
            "asset_id": asset_id(self.symbol),
            "symbol": self.symbol,
            "asset_class": self.asset_class,
            "notional": text(self.notional),
            "qty": None if self.notional is not None else text(self.quantity),
            "filled_qty": text(self.filled_quantity),
            "filled_avg_price": None if mean is None else text(mean),
            "order_class": "simple",
            "order_type": self.order_type.value,
            "type": self.order_type.value,
            "side": self.side.value,
            "position_intent": None,
            "time_in_force": self.time_in_force.value,
            "limit_price": text(self.limit_price),
            "stop_price": text(self.stop_price),
            "status": self.status.value,
            "extended_hours": self.extended_hours,
            "legs": None,
            "trail_percent": text(self.trail_percent),
            "trail_price": text(self.trail_price),
            "hwm": None,
            "subtag": None,
            "source": None,
        }


def asset_id(symbol: str) -> str:
    """Return the stable asset UUID the server gives ``symbol``."""
    return str(uuid.uuid5(NAMESPACE, f"asset:{symbol}"))



def average(price: Decimal) -> Decimal:
    """Round an average price half-even to ``AVERAGE_QUANTUM`` (USD)."""
    return price.quantize(AVERAGE_QUANTUM, context=LEDGER_CONTEXT)
