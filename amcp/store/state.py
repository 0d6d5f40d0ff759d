"""Durable trading state: orders, fills, account snapshots and P&L in SQL.

:class:`TradingStateStore` keeps what the live trading plane must never lose. An order intent is
written (status ``initialized``) *before* any request leaves the process, marked ``pending_new``
when the request is sent, and then moved only by broker events through the domain status machine
(:data:`amcp.domain.orders.TRANSITIONS`). Bad or out-of-order broker messages never raise: they
come back as an :class:`Applied` with an anomaly code, change nothing, and the refused ones are
kept in the ``trading_anomalies`` table with the full event, so nothing is lost.

SQLAlchemy 2 Core over any SQL URL; SQLite and PostgreSQL behave the same. The schema is owned by
the Alembic migrations shipped in ``amcp/store/migrations`` (run :meth:`TradingStateStore.upgrade`
at start). Money and quantities are ``Decimal`` stored as their exact text (never float);
timestamps are int64 UTC nanoseconds. Every change is one transaction, and every order row carries
a ``version`` (optimistic concurrency): two writers can never both apply conflicting updates; the
loser re-reads and retries, and after :attr:`TradingStateStore.max_attempts` tries gets a
:class:`StoreError` naming the order.

Rules for out-of-order events, derived from ``TRANSITIONS``:

* a transition in the table is applied;
* a broker event for an ``initialized`` order proves the request reached the broker, so the order
  passes through ``pending_new`` first (``initialized`` → ``pending_new`` → target, both legal);
* an event re-stating the current status is a duplicate (``duplicate_event``, nothing changes);
* an event whose status can *reach* the current one (an accept arriving after the first fill, as
  Alpaca can deliver) describes the past: it is stale (``stale_event``): the status is kept and
  only a broker order id not yet known is recorded;
* anything else is an illegal transition (``illegal_transition``), refused and recorded.

Order classes: the exits of a bracket, OTO or OCO order and the legs of a multi-leg (``mleg``)
order are orders the broker created, with ids it chose. :class:`~amcp.domain.messages.OrderLegAccepted`
registers one as an order of its own (a ``SubmitOrder`` built from the leg, tagged
``leg-of:<parent id>``, owned by the parent's strategy, status ``new``), so its own events and
fills apply like any order's. A multi-leg parent's fills move its status and filled quantity
(its net price may be zero or negative, a credit) but carry no position: they are stored with an
empty symbol, and positions come from the legs' fills.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Context, Decimal, InvalidOperation, localcontext
from enum import Enum
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from amcp.domain.enums import LiquiditySide, OrderClass, OrderSide, OrderStatus
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId
from amcp.domain.messages import (
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderEvent,
    OrderExpired,
    OrderFilled,
    OrderLegAccepted,
    OrderRejected,
    OrderReplaced,
    OrderStatusChanged,
    OrderSubmitted,
    SubmitOrder,
)
from amcp.domain.orders import TRANSITIONS, Order
from amcp.domain.serialization import from_record, to_json, to_record
from amcp.errors import DomainError, StoreError
from amcp.store.migrations.schema import (
    ACCOUNT_SNAPSHOTS,
    ANOMALIES,
    FILLS,
    METADATA,
    ORDERS,
    PNL,
    VERSION_TABLE,
)

__all__ = [
    "LEG_TAG_PREFIX",
    "METADATA",
    "VERSION_TABLE",
    "AccountSnapshotRow",
    "Anomaly",
    "AnomalyRow",
    "Applied",
    "FillRow",
    "OrderRow",
    "PnlRow",
    "TradingStateStore",
]

S = OrderStatus
_T = TypeVar("_T")

#: ``SubmitOrder.tag`` of a leg order the broker created: ``leg-of:<parent client order id>``.
LEG_TAG_PREFIX: Final = "leg-of:"

_MIGRATIONS: Final = Path(__file__).with_name("migrations")
_DEFAULT_SQLITE: Final = "amcp_state.sqlite"
_MAX_TS_NS: Final = 2**63 - 1
_MAX_SYMBOL: Final = 64  # the width of the symbol columns
# Sums and products of quantities and prices are exact at this precision (inputs have < 40 digits).
_EXACT: Final = Context(prec=100)
# Average prices are rounded half-even to 28 significant digits when the quotient does not end.
_AVERAGE: Final = Context(prec=28)
_ZERO: Final = Decimal(0)
# PostgreSQL serialization failure and deadlock: the transaction was rolled back and may be retried.
_RETRY_PGCODES: Final = frozenset({"40001", "40P01"})
_FILL_STATUSES: Final = frozenset({S.PARTIALLY_FILLED, S.FILLED})
_TERMINAL: Final = tuple(sorted(status.value for status in S if status.is_terminal))


def _reachable(start: OrderStatus) -> frozenset[OrderStatus]:
    """Statuses reachable from ``start`` in one or more transitions of ``TRANSITIONS``."""
    seen: set[OrderStatus] = set()
    frontier = list(TRANSITIONS[start])
    while frontier:
        status = frontier.pop()
        if status not in seen:
            seen.add(status)
            frontier.extend(TRANSITIONS[status])
    return frozenset(seen)


_REACHABLE: Final = {status: _reachable(status) for status in S}


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


class _VersionConflict(Exception):
    """Another writer changed the order row since it was read (internal; triggers a retry)."""


# --------------------------------------------------------------------------- validation


def _check_ts(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= _MAX_TS_NS:
        raise StoreError(f"{name} must be an int of UTC nanoseconds in [0, 2**63), got {value!r}")
    return value


def _check_decimal(name: str, value: object) -> Decimal:
    if type(value) is int:
        return Decimal(value)
    if not isinstance(value, Decimal) or not value.is_finite():
        raise StoreError(f"{name} must be a finite Decimal (floats are not exact), got {value!r}")
    return value


def _json_text(name: str, value: object) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"{name} must be JSON-serialisable (str, int, float, bool, None, list, dict): {exc}"
        ) from exc


def _fill_problem(order: OrderRow, fill: OrderFilled) -> tuple[Anomaly, str] | None:
    """Why ``fill`` cannot apply to ``order``, or ``None``.

    A multi-leg parent's fill is at the net price per unit (zero or negative for a credit) and
    Alpaca reports it without a symbol or side, so neither the price's sign nor the symbol and
    side are checked for one.
    """
    quantity, price, fee = fill.last_quantity, fill.last_price, fill.fee
    multi_leg = order.command.order_class is OrderClass.MLEG
    if not (isinstance(quantity, Decimal) and quantity.is_finite() and quantity > 0) or not (
        isinstance(price, Decimal) and price.is_finite() and (price > 0 or multi_leg)
    ):
        detail = f"quantity and price must be positive finite Decimals, got {quantity!r} @ {price!r}"
        return Anomaly.INVALID_FILL, detail
    if not (isinstance(fee, Decimal) and fee.is_finite()):
        return Anomaly.INVALID_FILL, f"fee must be a finite Decimal, got {fee!r}"
    if not multi_leg and (fill.side is not order.side or fill.symbol != order.symbol):
        return (
            Anomaly.FILL_MISMATCH,
            f"fill {fill.side.value} {fill.symbol!r} does not match order "
            f"{order.side.value} {order.symbol!r}",
        )
    if order.broker_order_id is not None and fill.venue_order_id != order.broker_order_id:
        return (
            Anomaly.BROKER_ORDER_ID_CONFLICT,
            f"fill carries broker order id {fill.venue_order_id!s}, order has {order.broker_order_id!s}",
        )
    if order.filled_quantity + quantity > order.quantity:
        return (
            Anomaly.OVERFILL,
            f"{order.filled_quantity} filled + {quantity} > order quantity {order.quantity}",
        )
    return None


def _target(event: OrderEvent) -> OrderStatus | None:
    """The status a non-fill event asks for (``OrderAccepted`` means ``new``, as in ``Order.apply``).

    ``None`` when an ``OrderStatusChanged`` carries a value that is no ``OrderStatus``.
    """
    if isinstance(event, OrderAccepted):
        return S.NEW
    if isinstance(event, OrderSubmitted):
        return S.PENDING_NEW
    if isinstance(event, OrderDenied):
        return S.DENIED
    if isinstance(event, OrderRejected):
        return S.REJECTED
    if isinstance(event, OrderCanceled):
        return S.CANCELED
    if isinstance(event, OrderExpired):
        return S.EXPIRED
    if isinstance(event, OrderReplaced):
        return S.REPLACED
    if isinstance(event, OrderStatusChanged):
        try:
            return OrderStatus(event.status)
        except ValueError:
            return None
    raise StoreError(f"cannot apply {type(event).__name__}: not an order event")


def _path_end(current: OrderStatus, target: OrderStatus, from_broker: bool) -> bool:
    """Whether ``target`` is legal from ``current``, allowing the implied ``pending_new`` step."""
    if target in TRANSITIONS[current]:
        return True
    return from_broker and current is S.INITIALIZED and target in TRANSITIONS[S.PENDING_NEW]


_EVENT_TYPES: Final = (
    OrderDenied,
    OrderSubmitted,
    OrderAccepted,
    OrderLegAccepted,
    OrderRejected,
    OrderFilled,
    OrderCanceled,
    OrderExpired,
    OrderReplaced,
    OrderStatusChanged,
)
_LOCAL_EVENTS: Final = (OrderDenied, OrderSubmitted)


# --------------------------------------------------------------------------- the store


class TradingStateStore:
    """Orders, fills, account snapshots and P&L of live trading, durable in SQL.

    Args:
        url: a SQLAlchemy URL. ``None`` reads the ``DATABASE_URL`` environment variable and, when
            that is unset or empty, uses ``sqlite:///amcp_state.sqlite`` in the current directory.
            Use a file for SQLite: an in-memory database is not shared between connections.
        max_attempts: tries of one update that loses to concurrent writers before giving up.

    Raises:
        StoreError: if the URL cannot be parsed or names no installed driver.
    """

    def __init__(self, url: str | None = None, *, max_attempts: int = 8) -> None:
        if url is None:
            url = os.environ.get("DATABASE_URL") or f"sqlite:///{Path.cwd() / _DEFAULT_SQLITE}"
        if type(max_attempts) is not int or max_attempts < 1:
            raise StoreError(f"max_attempts must be an int >= 1, got {max_attempts!r}")
        self.max_attempts = max_attempts
        try:
            parsed = sa.make_url(url)
            self._engine = _create_engine(parsed)
        except Exception as exc:  # noqa: BLE001 - any parse or driver error is a store error here
            shown = url.rsplit("@", 1)[-1]  # never echo credentials
            cause = str(exc).replace(url, shown)
            detail = f"{type(exc).__name__}: {cause}"
            raise StoreError(f"cannot open trading state at {shown!r}: {detail}") from None
        self._url = parsed
        self.url: str = parsed.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"TradingStateStore({self.url!r})"

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    # ------------------------------------------------------------------ migrations
    def _alembic_config(self) -> AlembicConfig:
        config = AlembicConfig()
        config.set_main_option("script_location", str(_MIGRATIONS))
        # ConfigParser interpolates '%': an escaped password must be doubled.
        url = self._url.render_as_string(hide_password=False)
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
        return config

    def current_revision(self) -> str | None:
        """Return the schema's Alembic revision, or ``None`` for a database never migrated.

        Raises:
            StoreError: if the database cannot be read or holds several heads.
        """
        try:
            with self._engine.connect() as connection:
                context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
                return context.get_current_revision()
        except (sa.exc.SQLAlchemyError, CommandError) as exc:
            raise StoreError(f"trading state at {self.url}: cannot read the schema revision: {exc}") from exc

    def upgrade(self) -> str:
        """Migrate the schema to the newest revision shipped with amcp; a no-op when already there.

        Returns:
            The revision the database is at afterwards.

        Raises:
            StoreError: if the database is at a revision this amcp does not know (migrated by a
                newer amcp), or the migration fails.
        """
        config = self._alembic_config()
        script = ScriptDirectory.from_config(config)
        known = {revision.revision for revision in script.walk_revisions()}
        current = self.current_revision()
        if current is not None and current not in known:
            raise StoreError(
                f"trading state at {self.url} is at schema revision {current!r}, which this amcp does not "
                f"know (it knows {sorted(known)}, head {script.get_current_head()!r}); "
                "was it migrated by a newer amcp?"
            )
        try:
            with self._engine.connect() as connection:
                # On SQLite: BEGIN IMMEDIATE, so a second process upgrading at the same time waits
                # and then reads the new revision instead of creating the tables again.
                connection.execution_options(amcp_write=True)
                config.attributes["connection"] = connection
                alembic_command.upgrade(config, "head")
        except (sa.exc.SQLAlchemyError, CommandError) as exc:
            raise StoreError(f"trading state at {self.url}: migration to head failed: {exc}") from exc
        revision = self.current_revision()
        if revision is None:  # pragma: no cover - alembic wrote no version row
            raise StoreError(f"trading state at {self.url}: no schema revision recorded after the migration")
        return revision

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as connection:
            connection.execution_options(amcp_write=True)
            with connection.begin():
                yield connection

    def _retrying(self, what: str, client_order_id: str | None, attempt: Callable[[sa.Connection], _T]) -> _T:
        """Run ``attempt`` in a write transaction, retrying when a concurrent writer got there first."""
        for _ in range(self.max_attempts):
            try:
                with self._write() as connection:
                    return attempt(connection)
            except (_VersionConflict, sa.exc.IntegrityError):
                continue  # rolled back; re-read and decide again
            except sa.exc.DBAPIError as exc:
                if getattr(exc.orig, "pgcode", None) not in _RETRY_PGCODES:
                    raise self._failure(what, exc) from exc
            except sa.exc.SQLAlchemyError as exc:
                raise self._failure(what, exc) from exc
        subject = f"order {client_order_id}" if client_order_id else "the store"
        raise StoreError(
            f"trading state at {self.url}: {what} for {subject} lost to concurrent writers "
            f"{self.max_attempts} times; nothing was applied"
        )

    def _read(self, what: str, query: Callable[[sa.Connection], _T]) -> _T:
        try:
            with self._engine.connect() as connection:
                return query(connection)
        except sa.exc.SQLAlchemyError as exc:
            raise self._failure(what, exc) from exc

    def _failure(self, what: str, exc: Exception) -> StoreError:
        text = str(exc).lower()
        missing_table = isinstance(exc, (sa.exc.OperationalError, sa.exc.ProgrammingError)) and (
            "no such table" in text or "does not exist" in text)
        hint = " (has upgrade() been run?)" if missing_table else ""
        return StoreError(f"trading state at {self.url}: {what} failed{hint}: {exc}")

    # ------------------------------------------------------------------ intents
    def save_intent(self, command: SubmitOrder, *, strategy_id: str | None = None) -> bool:
        """Persist an order intent (status ``initialized``) before any request for it is sent.

        Args:
            command: the order; its ``client_order_id`` keys the row, the whole command is stored.
            strategy_id: if given, must equal ``command.strategy_id`` (a guard against mixing up
                strategies); the stored strategy is always the command's.

        Returns:
            ``True`` if the row was written, ``False`` if the same order was already saved.

        Raises:
            StoreError: if the command is invalid, another order already holds its client order
                id, or the database cannot be written.
        """
        if not isinstance(command, SubmitOrder):
            raise StoreError(f"save_intent needs a SubmitOrder, got {type(command).__name__}")
        client_order_id = command.client_order_id
        if strategy_id is not None and strategy_id != command.strategy_id:
            raise StoreError(
                f"order {client_order_id}: strategy_id {strategy_id!r} differs from the command's "
                f"{command.strategy_id!r}"
            )
        try:
            Order(command)  # the domain's validation: positive Decimal quantity, needed prices
            payload = to_json(command)
        except DomainError as exc:
            raise StoreError(f"cannot save intent {client_order_id}: {exc}") from exc
        created_ns = _check_ts("SubmitOrder.ts_ns", command.ts_ns)
        if not isinstance(command.symbol, str) or not 0 < len(command.symbol) <= _MAX_SYMBOL:
            raise StoreError(
                f"cannot save intent {client_order_id}: symbol must be 1-{_MAX_SYMBOL} characters, "
                f"got {command.symbol!r}"
            )

        def attempt(connection: sa.Connection) -> bool:
            stored = connection.execute(
                sa.select(ORDERS.c.command).where(ORDERS.c.client_order_id == client_order_id)
            ).scalar_one_or_none()
            if stored is not None:
                if _stored_command(client_order_id, stored) != command:
                    raise StoreError(
                        f"client order id {client_order_id} already holds a different order: "
                        f"stored {stored}, given {payload}"
                    )
                return False
            connection.execute(
                ORDERS.insert().values(
                    client_order_id=str(client_order_id),
                    broker_order_id=None,
                    strategy_id=str(command.strategy_id),
                    symbol=command.symbol,
                    side=command.side.value,
                    quantity=command.quantity,
                    status=S.INITIALIZED.value,
                    filled_quantity=_ZERO,
                    filled_notional=_ZERO,
                    average_fill_price=None,
                    fees=_ZERO,
                    replaced_by=None,
                    command=payload,
                    created_ns=created_ns,
                    submitted_ns=None,
                    updated_ns=created_ns,
                    version=1,
                )
            )
            return True

        return self._retrying("save_intent", client_order_id, attempt)

    def mark_submitted(self, client_order_id: str, ts_ns: int) -> None:
        """Mark the order ``pending_new``: its request is being sent and the outcome is unknown.

        Call it before the request leaves the process. A no-op when the order is already past
        ``initialized`` (a broker event arrived first).

        Raises:
            StoreError: if no intent was saved under ``client_order_id``, the order was denied
                (it must never be sent), or the database cannot be written.
        """
        _check_ts("ts_ns", ts_ns)

        def attempt(connection: sa.Connection) -> None:
            order = self._load(connection, client_order_id)
            if order is None:
                raise StoreError(f"mark_submitted: no order {client_order_id!r} was saved")
            if order.status is S.DENIED:
                raise StoreError(f"mark_submitted: order {client_order_id} was denied and must not be sent")
            if order.status is S.INITIALIZED:
                self._update(connection, order, ts_ns, status=S.PENDING_NEW.value, submitted_ns=ts_ns)

        self._retrying("mark_submitted", client_order_id, attempt)

    # ------------------------------------------------------------------ events
    def apply(self, event: OrderEvent) -> Applied:
        """Apply one order event in one transaction; refuse, never raise, on bad broker input.

        Fills are inserted once per (order, trade id); the fill and the order update commit
        together. ``filled_quantity`` only grows and never exceeds the order quantity.

        Returns:
            What happened; see :class:`Anomaly` for the codes and the module docstring for the
            rules on out-of-order events.

        Raises:
            StoreError: if ``event`` is not an order event, the database fails, or concurrent
                writers won :attr:`max_attempts` times.
        """
        if not isinstance(event, _EVENT_TYPES):
            raise StoreError(f"cannot apply {type(event).__name__}: not an order event")
        _check_ts(f"{type(event).__name__}.ts_ns", event.ts_ns)
        what = f"apply {type(event).__name__}"
        return self._retrying(what, event.client_order_id, lambda c: self._apply(c, event))

    def _apply(self, connection: sa.Connection, event: OrderEvent) -> Applied:
        if isinstance(event, OrderLegAccepted):
            return self._apply_leg(connection, event)
        order = self._load(connection, event.client_order_id)
        if order is None:
            detail = f"no order {event.client_order_id!s} was saved"
            self._record(connection, event, Anomaly.UNKNOWN_ORDER, detail)
            return Applied(False, Anomaly.UNKNOWN_ORDER, None, detail)
        if isinstance(event, OrderFilled):
            return self._apply_fill(connection, order, event)
        target = _target(event)
        current = order.status
        if target is None:
            detail = f"unknown status {getattr(event, 'status', None)!r}"
            return self._refuse(connection, order, event, Anomaly.ILLEGAL_TRANSITION, detail)
        broker_id = event.venue_order_id if isinstance(event, OrderAccepted) else None
        if broker_id is not None and broker_id != order.broker_order_id:
            conflict = self._broker_id_conflict(connection, order, broker_id)
            if conflict is not None:
                return self._refuse(connection, order, event, Anomaly.BROKER_ORDER_ID_CONFLICT, conflict)
        learns_id = broker_id is not None and order.broker_order_id is None
        legal = target is not current and _path_end(current, target, not isinstance(event, _LOCAL_EVENTS))
        if target in _FILL_STATUSES and target is not current:
            detail = f"status {target.value} arrived without its fills (filled {order.filled_quantity})"
            return self._refuse(connection, order, event, Anomaly.FILL_STATUS_WITHOUT_FILL, detail)
        if not legal and (target is current or current in _REACHABLE[target]):
            anomaly = Anomaly.DUPLICATE_EVENT if target is current else Anomaly.STALE_EVENT
            detail = f"order is already {current.value}; the event for {target.value} changed no status"
            if learns_id:
                order = self._update(connection, order, event.ts_ns, broker_order_id=str(broker_id))
            return Applied(learns_id, anomaly, order, detail)
        if not legal:
            detail = f"cannot move from {current.value} to {target.value}"
            return self._refuse(connection, order, event, Anomaly.ILLEGAL_TRANSITION, detail)
        values: dict[str, Any] = {"status": target.value}
        if learns_id:
            values["broker_order_id"] = str(broker_id)
        if isinstance(event, OrderReplaced):
            values["replaced_by"] = str(event.new_client_order_id)
        if target is S.PENDING_NEW or (current is S.INITIALIZED and target is not S.DENIED):
            values["submitted_ns"] = order.submitted_ns if order.submitted_ns is not None else event.ts_ns
        return Applied(True, None, self._update(connection, order, event.ts_ns, **values))

    def _apply_fill(self, connection: sa.Connection, order: OrderRow, fill: OrderFilled) -> Applied:
        duplicate = connection.execute(
            sa.select(FILLS.c.seq).where(
                FILLS.c.client_order_id == str(order.client_order_id), FILLS.c.trade_id == str(fill.trade_id)
            )
        ).first()
        if duplicate is not None:
            detail = f"trade {fill.trade_id!s} is already recorded"
            return Applied(False, Anomaly.DUPLICATE_TRADE, order, detail)
        problem = _fill_problem(order, fill)
        if problem is None and order.broker_order_id is None:
            conflict = self._broker_id_conflict(connection, order, fill.venue_order_id)
            problem = None if conflict is None else (Anomaly.BROKER_ORDER_ID_CONFLICT, conflict)
        if problem is not None:
            return self._refuse(connection, order, fill, *problem)
        with localcontext(_EXACT):
            filled = order.filled_quantity + fill.last_quantity
            notional = order.filled_notional + fill.last_quantity * fill.last_price
            fees = order.fees + fill.fee
        target = S.FILLED if filled == order.quantity else S.PARTIALLY_FILLED
        if not _path_end(order.status, target, True):
            detail = f"cannot move from {order.status.value} to {target.value} with trade {fill.trade_id!s}"
            return self._refuse(connection, order, fill, Anomaly.ILLEGAL_TRANSITION, detail)
        with localcontext(_AVERAGE):
            average = notional / filled
        values: dict[str, Any] = {
            "status": target.value,
            "filled_quantity": filled,
            "filled_notional": notional,
            "average_fill_price": average,
            "fees": fees,
        }
        if order.broker_order_id is None:
            values["broker_order_id"] = str(fill.venue_order_id)
        if order.submitted_ns is None:
            values["submitted_ns"] = fill.ts_ns
        # The compare-and-set first: it takes the row lock before the fill's foreign key does, so
        # two PostgreSQL writers queue on the row instead of deadlocking.
        updated = self._update(connection, order, fill.ts_ns, **values)
        multi_leg = order.command.order_class is OrderClass.MLEG
        connection.execute(
            FILLS.insert().values(
                client_order_id=str(order.client_order_id),
                trade_id=str(fill.trade_id),
                broker_order_id=str(fill.venue_order_id),
                strategy_id=str(fill.strategy_id),
                symbol="" if multi_leg else fill.symbol,  # no position: the legs' fills carry it
                side=order.side.value if multi_leg else fill.side.value,
                quantity=fill.last_quantity,
                price=fill.last_price,
                fee=fill.fee,
                liquidity=fill.liquidity.value,
                ts_ns=fill.ts_ns,
            )
        )
        return Applied(True, None, updated)

    def _apply_leg(self, connection: sa.Connection, event: OrderLegAccepted) -> Applied:
        """Register the leg order ``event`` describes, status ``new``; a repeat changes nothing."""
        parent = self._load(connection, event.parent_client_order_id)
        if parent is None:
            detail = f"leg of an unknown parent order {event.parent_client_order_id!s}"
            self._record(connection, event, Anomaly.UNKNOWN_ORDER, detail)
            return Applied(False, Anomaly.UNKNOWN_ORDER, None, detail)
        existing = self._load(connection, event.client_order_id)
        if existing is not None:
            if existing.command.tag == f"{LEG_TAG_PREFIX}{parent.client_order_id}" and existing.broker_order_id in (
                None,
                event.venue_order_id,
            ):
                return Applied(False, Anomaly.DUPLICATE_EVENT, existing, "leg order already registered")
            detail = (
                f"leg {event.venue_order_id!s} of {parent.client_order_id} reuses the client order id of "
                f"order {existing.client_order_id} (broker id {existing.broker_order_id})"
            )
            return self._refuse(connection, existing, event, Anomaly.BROKER_ORDER_ID_CONFLICT, detail)
        holder = connection.execute(
            sa.select(ORDERS.c.client_order_id).where(ORDERS.c.broker_order_id == str(event.venue_order_id))
        ).scalar_one_or_none()
        problem = None if holder is None else f"broker order id {event.venue_order_id!s} already belongs to order {holder}"
        command = SubmitOrder(
            client_order_id=event.client_order_id,
            strategy_id=parent.strategy_id or parent.command.strategy_id,
            symbol=event.symbol,
            side=event.side,
            quantity=event.quantity,
            order_type=event.order_type,
            time_in_force=event.time_in_force,
            limit_price=event.limit_price,
            stop_price=event.stop_price,
            ts_ns=event.ts_ns,
            tag=f"{LEG_TAG_PREFIX}{parent.client_order_id}",
        )
        if problem is None:
            try:
                Order(command)
            except DomainError as exc:
                problem = str(exc)
        if problem is None and not 0 < len(event.symbol) <= _MAX_SYMBOL:
            problem = f"symbol must be 1-{_MAX_SYMBOL} characters, got {event.symbol!r}"
        if problem is not None:
            self._record(connection, event, Anomaly.INVALID_LEG, problem)
            return Applied(False, Anomaly.INVALID_LEG, None, problem)
        connection.execute(
            ORDERS.insert().values(
                client_order_id=str(event.client_order_id),
                broker_order_id=str(event.venue_order_id),
                strategy_id=str(command.strategy_id),
                symbol=event.symbol,
                side=event.side.value,
                quantity=event.quantity,
                status=S.NEW.value,
                filled_quantity=_ZERO,
                filled_notional=_ZERO,
                average_fill_price=None,
                fees=_ZERO,
                replaced_by=None,
                command=to_json(command),
                created_ns=event.ts_ns,
                submitted_ns=event.ts_ns,
                updated_ns=event.ts_ns,
                version=1,
            )
        )
        return Applied(True, None, self._load(connection, event.client_order_id))

    def _broker_id_conflict(self, connection: sa.Connection, order: OrderRow, broker_id: str) -> str | None:
        if order.broker_order_id is not None and order.broker_order_id != broker_id:
            return f"broker order id {broker_id!s} differs from the recorded {order.broker_order_id!s}"
        holder = connection.execute(
            sa.select(ORDERS.c.client_order_id).where(
                ORDERS.c.broker_order_id == str(broker_id),
                ORDERS.c.client_order_id != str(order.client_order_id),
            )
        ).scalar_one_or_none()
        return None if holder is None else f"broker order id {broker_id!s} already belongs to order {holder}"

    def _refuse(
        self, connection: sa.Connection, order: OrderRow, event: OrderEvent, anomaly: Anomaly, detail: str
    ) -> Applied:
        self._record(connection, event, anomaly, detail)
        return Applied(False, anomaly, order, detail)

    def _record(self, connection: sa.Connection, event: OrderEvent, anomaly: Anomaly, detail: str) -> None:
        connection.execute(
            ANOMALIES.insert().values(
                ts_ns=event.ts_ns,
                client_order_id=str(event.client_order_id),
                kind=anomaly.value,
                detail=f"order {event.client_order_id!s}: {detail}",
                event=_json_text("event", to_record(event)),
            )
        )

    def _update(self, connection: sa.Connection, order: OrderRow, ts_ns: int, **values: Any) -> OrderRow:
        """Compare-and-set the order row at ``order.version``; raise ``_VersionConflict`` if it moved."""
        values["version"] = order.version + 1
        values["updated_ns"] = max(order.updated_ns, ts_ns)
        result = connection.execute(
            ORDERS.update()
            .where(ORDERS.c.client_order_id == str(order.client_order_id), ORDERS.c.version == order.version)
            .values(**values)
        )
        if result.rowcount != 1:
            raise _VersionConflict(order.client_order_id)
        updated = self._load(connection, order.client_order_id)
        if updated is None:  # pragma: no cover - the row was just updated in this transaction
            raise _VersionConflict(order.client_order_id)
        return updated

    # ------------------------------------------------------------------ reads
    def _load(self, connection: sa.Connection, client_order_id: str) -> OrderRow | None:
        query = sa.select(ORDERS).where(ORDERS.c.client_order_id == str(client_order_id))
        row = connection.execute(query).first()
        return None if row is None else _order_row(row)

    def order(self, client_order_id: str) -> OrderRow | None:
        """Return the order saved under ``client_order_id``, or ``None``."""
        return self._read("order", lambda c: self._load(c, client_order_id))

    def order_by_broker_id(self, broker_order_id: str) -> OrderRow | None:
        """Return the order the broker knows as ``broker_order_id``, or ``None``."""
        query = sa.select(ORDERS).where(ORDERS.c.broker_order_id == str(broker_order_id))
        return self._read("order_by_broker_id", lambda c: _first(c, query, _order_row))

    def open_orders(self) -> list[OrderRow]:
        """Return every non-terminal order, oldest first, in-flight ones included.

        ``initialized`` and ``pending_new`` orders are in flight: whether the broker has them is
        unknown until an event arrives or they are looked up by client order id.
        """
        query = (
            sa.select(ORDERS)
            .where(ORDERS.c.status.not_in(_TERMINAL))
            .order_by(ORDERS.c.created_ns, ORDERS.c.client_order_id)
        )
        return self._read("open_orders", lambda c: [_order_row(row) for row in c.execute(query)])

    def fills(self, client_order_id: str | None = None, since_ns: int | None = None) -> list[FillRow]:
        """Return fills in time order (``ts_ns``, then insertion).

        Args:
            client_order_id: only this order's fills, if given.
            since_ns: only fills with ``ts_ns >= since_ns`` (UTC ns), if given.
        """
        query = sa.select(FILLS).order_by(FILLS.c.ts_ns, FILLS.c.seq)
        if client_order_id is not None:
            query = query.where(FILLS.c.client_order_id == str(client_order_id))
        if since_ns is not None:
            query = query.where(FILLS.c.ts_ns >= _check_ts("since_ns", since_ns))
        return self._read("fills", lambda c: [_fill_row(row) for row in c.execute(query)])

    def positions(self) -> dict[str, Decimal]:
        """Return the net quantity per symbol from every fill (buys positive, sells negative).

        Flat symbols (net zero) are left out, and so are a multi-leg parent's fills (stored
        without a symbol): its position is its legs' fills.
        """
        query = sa.select(FILLS.c.symbol, FILLS.c.side, FILLS.c.quantity, FILLS.c.trade_id).where(
            FILLS.c.symbol != ""
        )
        net: dict[str, Decimal] = {}
        with localcontext(_EXACT):
            for row in self._read("positions", lambda c: list(c.execute(query))):
                try:
                    signed = OrderSide(row.side).sign * row.quantity
                except ValueError as exc:
                    detail = f"trading_fills row of trade {row.trade_id}: bad side {row.side!r}"
                    raise StoreError(detail) from exc
                net[row.symbol] = net.get(row.symbol, _ZERO) + signed
        return {symbol: quantity for symbol, quantity in sorted(net.items()) if quantity != 0}

    def anomalies(self, client_order_id: str | None = None) -> list[AnomalyRow]:
        """Return the recorded (refused) events in the order they were recorded."""
        query = sa.select(ANOMALIES).order_by(ANOMALIES.c.seq)
        if client_order_id is not None:
            query = query.where(ANOMALIES.c.client_order_id == str(client_order_id))
        return self._read("anomalies", lambda c: [_anomaly_row(row) for row in c.execute(query)])

    # ------------------------------------------------------------------ account and P&L
    def save_account_snapshot(
        self, ts_ns: int, cash: Decimal, equity: Decimal, buying_power: Decimal, raw: Mapping[str, Any]
    ) -> None:
        """Store the broker account at ``ts_ns`` (UTC ns); amounts in USD, ``raw`` as JSON.

        Raises:
            StoreError: if an amount is not a finite Decimal, ``raw`` is not JSON-serialisable,
                or the database cannot be written.
        """
        if not isinstance(raw, Mapping):
            raise StoreError(f"raw must be a mapping (the broker's account payload), got {type(raw)!r}")
        values = {
            "ts_ns": _check_ts("ts_ns", ts_ns),
            "cash": _check_decimal("cash", cash),
            "equity": _check_decimal("equity", equity),
            "buying_power": _check_decimal("buying_power", buying_power),
            "raw": _json_text("raw", dict(raw)),
        }
        insert = ACCOUNT_SNAPSHOTS.insert().values(values)
        self._retrying("save_account_snapshot", None, lambda c: c.execute(insert))

    def latest_account_snapshot(self) -> AccountSnapshotRow | None:
        """Return the snapshot with the greatest ``ts_ns`` (the later-saved on a tie), or ``None``."""
        table = ACCOUNT_SNAPSHOTS
        query = sa.select(table).order_by(table.c.ts_ns.desc(), table.c.seq.desc())
        return self._read("latest_account_snapshot", lambda c: _first(c, query.limit(1), _snapshot_row))

    def save_pnl(self, ts_ns: int, realized: Decimal, unrealized: Decimal, fees: Decimal) -> None:
        """Store realized and unrealized P&L and fees paid (USD) at ``ts_ns`` (UTC ns).

        Raises:
            StoreError: if an amount is not a finite Decimal or the database cannot be written.
        """
        values = {
            "ts_ns": _check_ts("ts_ns", ts_ns),
            "realized": _check_decimal("realized", realized),
            "unrealized": _check_decimal("unrealized", unrealized),
            "fees": _check_decimal("fees", fees),
        }
        insert = PNL.insert().values(values)
        self._retrying("save_pnl", None, lambda c: c.execute(insert))

    def pnl_series(self, since_ns: int | None = None, until_ns: int | None = None) -> list[PnlRow]:
        """Return P&L rows with ``since_ns <= ts_ns <= until_ns`` (bounds optional) in time order."""
        query = sa.select(PNL).order_by(PNL.c.ts_ns, PNL.c.seq)
        if since_ns is not None:
            query = query.where(PNL.c.ts_ns >= _check_ts("since_ns", since_ns))
        if until_ns is not None:
            query = query.where(PNL.c.ts_ns <= _check_ts("until_ns", until_ns))
        def rows(connection: sa.Connection) -> list[PnlRow]:
            return [
                PnlRow(ts_ns=r.ts_ns, realized=r.realized, unrealized=r.unrealized, fees=r.fees)
                for r in connection.execute(query)
            ]

        return self._read("pnl_series", rows)


# --------------------------------------------------------------------------- engine and decoding


def _create_engine(url: sa.URL) -> sa.Engine:
    """Create the engine; on SQLite, enforce foreign keys and take the write lock up front.

    pysqlite's own transaction handling is switched off so a write transaction starts with
    ``BEGIN IMMEDIATE``: two writers then queue on the database lock (up to 30 s) instead of
    failing when both try to upgrade a read lock.
    """
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    def on_begin(connection: sa.Connection) -> None:
        write = connection.get_execution_options().get("amcp_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", on_begin)
    return engine


def _first(
    connection: sa.Connection, query: sa.Select[Any], decode: Callable[[sa.Row[Any]], _T]
) -> _T | None:
    row = connection.execute(query).first()
    return None if row is None else decode(row)


def _stored_command(client_order_id: str, stored: str) -> SubmitOrder | None:
    """The command stored as JSON ``stored`` (fields added since it was written take their defaults)."""
    try:
        command = from_record(json.loads(stored))
    except (ValueError, DomainError) as exc:
        raise StoreError(f"trading_orders row {client_order_id!r}: stored command is malformed: {exc}") from exc
    return command if isinstance(command, SubmitOrder) else None


def _order_row(row: sa.Row[Any]) -> OrderRow:
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


def _fill_row(row: sa.Row[Any]) -> FillRow:
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


def _snapshot_row(row: sa.Row[Any]) -> AccountSnapshotRow:
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


def _anomaly_row(row: sa.Row[Any]) -> AnomalyRow:
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
