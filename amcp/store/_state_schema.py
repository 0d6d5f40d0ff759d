"""The records of the trading state store, and how SQL rows decode into them.

What :class:`~amcp.store.state.TradingStateStore` returns: :class:`OrderRow`, :class:`FillRow`,
:class:`AccountSnapshotRow`, :class:`PnlRow`, :class:`AnomalyRow` and the :class:`Applied`
outcome of an event, with the :class:`Anomaly` codes. The tables these rows come from are
defined in :mod:`amcp.store.migrations.schema`; import the names from :mod:`amcp.store.state`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from enum import Enum
from types import MappingProxyType
from typing import Any

import sqlalchemy as sa

from amcp.domain.enums import LiquiditySide, OrderSide, OrderStatus
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId
from amcp.domain.messages import SubmitOrder
from amcp.domain.serialization import from_record
from amcp.errors import DomainError, StoreError


class Anomaly(str, Enum):
    """Why an event was not (fully) applied. Values compare equal to plain strings."""

    DUPLICATE_TRADE = "duplicate_trade"  # the fill's trade id is already recorded for the order
    DUPLICATE_EVENT = "duplicate_event"  # the event re-states the current status
    STALE_EVENT = "stale_event"  # the event describes a status the order has already left
    ILLEGAL_TRANSITION = "illegal_transition"  # TRANSITIONS forbids it (recorded)
    OVERFILL = "overfill"  # filled quantity would exceed the order quantity (recorded)
    INVALID_FILL = "invalid_fill"  # quantity/price not a positive finite Decimal (recorded)
    FILL_MISMATCH = "fill_mismatch"  # the fill's side or symbol differs from the order (recorded)
    FILL_STATUS_WITHOUT_FILL = "fill_status_without_fill"  # a filled status not as OrderFilled (recorded)
    BROKER_ORDER_ID_CONFLICT = "broker_order_id_conflict"  # broker id differs or is another's (recorded)
    UNKNOWN_ORDER = "unknown_order"  # no intent was saved under the client order id (recorded)
    INVALID_LEG = "invalid_leg"  # a leg order that cannot be registered (recorded)


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderRow:
    """One stored order. Quantities in shares (or contracts), prices and fees in USD.

    Attributes:
        filled_notional: sum of fill quantity × fill price, exact.
        average_fill_price: ``filled_notional / filled_quantity`` (28 significant digits when the
            quotient does not end), ``None`` before the first fill.
        created_ns: ``SubmitOrder.ts_ns`` (UTC ns); ``submitted_ns``: when marked sent;
            ``updated_ns``: the latest event time seen.
        version: incremented by every update (optimistic concurrency).
    """

    client_order_id: ClientOrderId
    broker_order_id: VenueOrderId | None
    strategy_id: StrategyId | None
    symbol: str
    side: OrderSide
    quantity: Decimal
    status: OrderStatus
    filled_quantity: Decimal
    filled_notional: Decimal
    average_fill_price: Decimal | None
    fees: Decimal
    replaced_by: ClientOrderId | None
    command: SubmitOrder
    created_ns: int
    submitted_ns: int | None
    updated_ns: int
    version: int

    @property
    def leaves_quantity(self) -> Decimal:
        """Quantity still open: ``quantity - filled_quantity``."""
        return self.quantity - self.filled_quantity

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


@dataclass(frozen=True, slots=True, kw_only=True)
class FillRow:
    """One stored execution; ``seq`` is the insertion order, ``fee`` in USD."""

    seq: int
    trade_id: TradeId
    client_order_id: ClientOrderId
    broker_order_id: VenueOrderId
    strategy_id: StrategyId
    symbol: str
    side: OrderSide
    quantity: Decimal
    price: Decimal
    fee: Decimal
    liquidity: LiquiditySide
    ts_ns: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSnapshotRow:
    """The broker account at ``ts_ns`` (USD amounts) and the broker's raw payload (read-only)."""

    ts_ns: int
    cash: Decimal
    equity: Decimal
    buying_power: Decimal
    raw: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class PnlRow:
    """Profit and loss at ``ts_ns`` in USD."""

    ts_ns: int
    realized: Decimal
    unrealized: Decimal
    fees: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class AnomalyRow:
    """A refused event, kept with its full record (``event``, as ``to_record`` wrote it)."""

    seq: int
    ts_ns: int
    client_order_id: ClientOrderId | None
    kind: Anomaly
    detail: str
    event: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Applied:
    """The outcome of :meth:`TradingStateStore.apply`.

    Attributes:
        applied: whether the stored order changed.
        anomaly: why the event was not (fully) applied, or ``None``.
        order: the order after the event (``None`` only for ``unknown_order``).
        detail: a sentence naming the values involved, empty when applied cleanly.
    """

    applied: bool
    anomaly: Anomaly | None
    order: OrderRow | None
    detail: str = ""


# --------------------------------------------------------------------------- decoding


def stored_command(client_order_id: str, stored: str) -> SubmitOrder | None:
    """The command stored as JSON ``stored`` (fields added since it was written take their defaults)."""
    try:
        command = from_record(json.loads(stored))
    except (ValueError, DomainError) as exc:
        raise StoreError(f"trading_orders row {client_order_id!r}: stored command is malformed: {exc}") from exc
    return command if isinstance(command, SubmitOrder) else None


def order_row(row: sa.Row[Any]) -> OrderRow:
    """Decode a ``trading_orders`` row; StoreError if it is malformed."""
    try:
        command = from_record(json.loads(row.command))
        if not isinstance(command, SubmitOrder):
            raise DomainError(f"stored command is a {type(command).__name__}, expected SubmitOrder")
        return OrderRow(
            client_order_id=ClientOrderId(row.client_order_id),
            broker_order_id=None if row.broker_order_id is None else VenueOrderId(row.broker_order_id),
            strategy_id=None if row.strategy_id is None else StrategyId(row.strategy_id),
            symbol=row.symbol,
            side=OrderSide(row.side),
            quantity=row.quantity,
            status=OrderStatus(row.status),
            filled_quantity=row.filled_quantity,
            filled_notional=row.filled_notional,
            average_fill_price=row.average_fill_price,
            fees=row.fees,
            replaced_by=None if row.replaced_by is None else ClientOrderId(row.replaced_by),
            command=command,
            created_ns=row.created_ns,
            submitted_ns=row.submitted_ns,
            updated_ns=row.updated_ns,
            version=row.version,
        )
    except (ValueError, DomainError, InvalidOperation) as exc:
        raise StoreError(f"trading_orders row {row.client_order_id!r} is malformed: {exc}") from exc


# How a column value written by an update decodes into an OrderRow field (as order_row does).
_DECODE_UPDATED: dict[str, Callable[[Any], Any]] = {
    "status": OrderStatus,
    "broker_order_id": lambda v: None if v is None else VenueOrderId(v),
    "replaced_by": lambda v: None if v is None else ClientOrderId(v),
    "filled_quantity": Decimal,
    "filled_notional": Decimal,
    "average_fill_price": lambda v: None if v is None else Decimal(v),
    "fees": Decimal,
    "submitted_ns": lambda v: v,
    "updated_ns": lambda v: v,
    "version": lambda v: v,
}


def updated_row(order: OrderRow, values: Mapping[str, Any]) -> OrderRow:
    """``order`` after an update that wrote ``values`` (column name → value as bound), decoded as
    :func:`order_row` would decode the row read back (Decimals are stored as their exact text, so
    ``Decimal(str(d))`` is ``d``); saves re-reading the row just written.

    Raises:
        StoreError: if ``values`` names a column an update may not change (a programming error).
    """
    unknown = sorted(set(values) - set(_DECODE_UPDATED))
    if unknown:
        raise StoreError(f"order {order.client_order_id}: an update may not write {unknown}")
    decoded = {
        name: _DECODE_UPDATED[name](str(value) if isinstance(value, Decimal) else value)
        for name, value in values.items()
    }
    return replace(order, **decoded)


def fill_row(row: sa.Row[Any]) -> FillRow:
    """Decode a ``trading_fills`` row; StoreError if it is malformed."""
    try:
        return FillRow(
            seq=row.seq,
            trade_id=TradeId(row.trade_id),
            client_order_id=ClientOrderId(row.client_order_id),
            broker_order_id=VenueOrderId(row.broker_order_id),
            strategy_id=StrategyId(row.strategy_id),
            symbol=row.symbol,
            side=OrderSide(row.side),
            quantity=row.quantity,
            price=row.price,
            fee=row.fee,
            liquidity=LiquiditySide(row.liquidity),
            ts_ns=row.ts_ns,
        )
    except (ValueError, DomainError, InvalidOperation) as exc:
        raise StoreError(f"trading_fills row {row.seq} (trade {row.trade_id!r}) is malformed: {exc}") from exc


def snapshot_row(row: sa.Row[Any]) -> AccountSnapshotRow:
    """Decode a ``trading_account_snapshots`` row; StoreError if its ``raw`` is not JSON."""
    try:
        raw = json.loads(row.raw)
    except ValueError as exc:
        raise StoreError(f"trading_account_snapshots row {row.seq}: raw is not JSON: {exc}") from exc
    return AccountSnapshotRow(
        ts_ns=row.ts_ns,
        cash=row.cash,
        equity=row.equity,
        buying_power=row.buying_power,
        raw=MappingProxyType(raw),
    )


def anomaly_row(row: sa.Row[Any]) -> AnomalyRow:
    """Decode a ``trading_anomalies`` row; StoreError if it is malformed."""
    try:
        return AnomalyRow(
            seq=row.seq,
            ts_ns=row.ts_ns,
            client_order_id=None if row.client_order_id is None else ClientOrderId(row.client_order_id),
            kind=Anomaly(row.kind),
            detail=row.detail,
            event=MappingProxyType(json.loads(row.event)),
        )
    except (ValueError, DomainError) as exc:
        raise StoreError(f"trading_anomalies row {row.seq} is malformed: {exc}") from exc
