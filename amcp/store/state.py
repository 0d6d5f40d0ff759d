"""Durable trading state: orders, fills, account snapshots and P&L in SQL.

:class:`TradingStateStore` keeps what the live trading plane must never lose. An order intent is
written (status ``initialized``) *before* any request leaves the process, marked ``pending_new``
when the request is sent (or written ``pending_new`` at once by a sender about to send it), and then
moved only by broker events through the domain status machine
(:data:`amcp.domain.orders.TRANSITIONS`). Bad or out-of-order broker messages never raise: they
come back as an :class:`Applied` with an anomaly code, change nothing, and the refused ones are
kept in the ``trading_anomalies`` table with the full event, so nothing is lost.

SQLAlchemy 2 Core over any SQL URL; SQLite and PostgreSQL behave the same. The schema is owned by
the Alembic migrations shipped in ``amcp/store/migrations`` (run :meth:`TradingStateStore.upgrade`
at start). Money and quantities are ``Decimal`` stored as their exact text (never float);
timestamps are int64 UTC nanoseconds. Every change is one transaction, and every order row carries
a ``version`` (optimistic concurrency): two writers can never both apply conflicting updates; the
loser re-reads and retries, and after :attr:`TradingStateStore.max_attempts` tries gets a
:class:`StoreError` naming the order. :meth:`TradingStateStore.save_intent` and
:meth:`TradingStateStore.apply` take an ``audit`` hook that writes the audit row of the change in
the same transaction (:meth:`amcp.store.audit.AuditLog.append_many` with ``connection``), so the
change and its audit row are durable together, with one commit.

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

The records returned (:class:`OrderRow` and the others in ``__all__``) live in
:mod:`amcp.store._state_schema`, the event rules and input checks in :mod:`amcp.store._state_rules`;
import the records from here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Context, Decimal, localcontext
from pathlib import Path
from typing import Any, Final, TypeVar

import sqlalchemy as sa
from alembic import command as alembic_command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError

from amcp.domain.enums import OrderClass, OrderSide, OrderStatus
from amcp.domain.identifiers import LEG_TAG_PREFIX
from amcp.domain.messages import (
    OrderAccepted,
    OrderEvent,
    OrderFilled,
    OrderLegAccepted,
    OrderReplaced,
    SubmitOrder,
)
from amcp.domain.orders import Order
from amcp.domain.serialization import to_json, to_record
from amcp.errors import DomainError, StoreError
from amcp.store._sqlite import configure_connection
from amcp.store._state_rules import (
    EVENT_TYPES,
    LOCAL_EVENTS,
    REACHABLE,
    check_decimal,
    check_ts,
    fill_problem,
    json_text,
    path_end,
    target_status,
)
from amcp.store._state_schema import (
    AccountSnapshotRow,
    Anomaly,
    AnomalyRow,
    Applied,
    FillRow,
    OrderRow,
    PnlRow,
    anomaly_row,
    fill_row,
    order_row,
    snapshot_row,
    stored_command,
    updated_row,
)
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
    "EventAudit",
    "FillRow",
    "IntentAudit",
    "OrderRow",
    "PnlRow",
    "TradingStateStore",
]

S = OrderStatus
_T = TypeVar("_T")

#: ``SubmitOrder.tag`` of a leg order the broker created: ``leg-of:<parent client order id>``.

_MIGRATIONS: Final = Path(__file__).with_name("migrations")
_DEFAULT_SQLITE: Final = "amcp_state.sqlite"
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
# The order path's statements, built once (SQLAlchemy then reuses their compiled form); values
# are bound at execution. The bind names of the compare-and-set differ from the column names,
# which the executed values name (they become its SET clause).
_LOAD: Final = sa.select(ORDERS).where(ORDERS.c.client_order_id == sa.bindparam("client_order_id"))
_STORED_COMMAND: Final = sa.select(ORDERS.c.command).where(
    ORDERS.c.client_order_id == sa.bindparam("client_order_id"))
_INSERT_ORDER: Final = ORDERS.insert()
_OTHER: Final = ORDERS.alias("other")
# The order, and which other order (if any) holds the broker order id an event brings: one read.
_LOAD_WITH_HOLDER: Final = sa.select(
    ORDERS,
    sa.select(_OTHER.c.client_order_id)
    .where(_OTHER.c.broker_order_id == sa.bindparam("broker_order_id"),
           _OTHER.c.client_order_id != sa.bindparam("client_order_id"))
    .limit(1)
    .scalar_subquery()
    .label("broker_id_holder"),
).where(ORDERS.c.client_order_id == sa.bindparam("client_order_id"))
_COMPARE_AND_SET: Final = ORDERS.update().where(
    ORDERS.c.client_order_id == sa.bindparam("where_client_order_id"),
    ORDERS.c.version == sa.bindparam("where_version"))

#: Writes the audit row of a saved intent inside the store's transaction: called with its
#: connection after the row is written, before the commit (see ``TradingStateStore.save_intent``).
IntentAudit = Callable[[sa.Connection], object]
#: Writes the audit row of an applied (or refused) event inside the store's transaction: called
#: with its connection and the outcome, before the commit (see ``TradingStateStore.apply``).
EventAudit = Callable[[sa.Connection, Applied], object]


class _VersionConflict(Exception):
    """Another writer changed the order row since it was read (internal; triggers a retry)."""


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
        self._sqlite = parsed.get_backend_name() == "sqlite"
        self._insert_intent = _insert_if_absent(parsed.get_backend_name())
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
    def _write(self, durable: bool = True) -> Iterator[sa.Connection]:
        with self._engine.connect() as connection:
            connection.execution_options(amcp_write=True, amcp_durable=durable)
            with connection.begin():
                if not durable and not self._sqlite:
                    connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
                yield connection

    def _retrying(self, what: str, client_order_id: str | None, attempt: Callable[[sa.Connection], _T],
                  durable: bool = True) -> _T:
        """Run ``attempt`` in a write transaction, retrying when a concurrent writer got there first.

        ``durable=False``: the commit returns before the transaction is flushed to disk (PostgreSQL
        ``synchronous_commit off``, SQLite ``synchronous NORMAL``): a crash of the database server
        or of the machine (not of this process) may lose it, whole — never half of it.
        """
        for _ in range(self.max_attempts):
            try:
                with self._write(durable) as connection:
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
    def save_intent(
        self,
        command: SubmitOrder,
        *,
        strategy_id: str | None = None,
        submitted_ns: int | None = None,
        audit: IntentAudit | None = None,
    ) -> bool:
        """Persist an order intent (status ``initialized``) before any request for it is sent.

        Args:
            command: the order; its ``client_order_id`` keys the row, the whole command is stored.
            strategy_id: if given, must equal ``command.strategy_id`` (a guard against mixing up
                strategies); the stored strategy is always the command's.
            submitted_ns: when the caller is about to send the request (UTC ns): the row is
                written ``pending_new`` with this ``submitted_ns`` at once, as
                :meth:`mark_submitted` would leave it, in the same commit. ``None``: ``initialized``.
            audit: called with the transaction's connection after the row is written (only when
                it is), before the commit: what it writes commits with the intent, and if it
                raises nothing is written. It runs again on a retried attempt.

        Returns:
            ``True`` if the row was written, ``False`` if the same order was already saved (then
            nothing is written and ``audit`` is not called).

        Raises:
            StoreError: if the command is invalid, another order already holds its client order
                id, the database cannot be written, or ``audit`` fails (its StoreError as raised).
        """
        if strategy_id is not None and isinstance(command, SubmitOrder) and strategy_id != command.strategy_id:
            raise StoreError(
                f"order {command.client_order_id}: strategy_id {strategy_id!r} differs from the command's "
                f"{command.strategy_id!r}"
            )
        return self.save_intents([command], submitted_ns=submitted_ns, audits=[audit])[0]

    def save_intents(
        self,
        commands: Sequence[SubmitOrder],
        *,
        submitted_ns: int | None = None,
        audits: Sequence[IntentAudit | None] | None = None,
        audit_all: Callable[[sa.Connection, list[bool]], object] | None = None,
    ) -> list[bool]:
        """Persist several intents in ONE transaction (a group commit): all are written or none.

        Each command is treated as by :meth:`save_intent` (``audits[i]`` is ``command[i]``'s
        audit writer); the one commit makes the batch durable before any of its requests is sent.
        ``audit_all``, if given, runs once after every row, with the connection and which rows
        were written: one audit append for the batch (it runs again on a retried attempt).

        Returns:
            Per command, ``True`` if its row was written, ``False`` if it was already saved.

        Raises:
            StoreError: if any command is invalid or its id is held by a different order, the
                database cannot be written, or an audit writer fails; then nothing is written.
        """
        audits = [None] * len(commands) if audits is None else list(audits)
        if len(audits) != len(commands):
            raise StoreError(f"save_intents: {len(commands)} commands but {len(audits)} audit writers")
        if submitted_ns is not None:
            check_ts("submitted_ns", submitted_ns)
        rows = [self._intent_row(command, submitted_ns) for command in commands]

        def attempt(connection: sa.Connection) -> list[bool]:
            written = [self._insert_intent_row(connection, command, row, audit)
                       for command, row, audit in zip(commands, rows, audits)]
            if audit_all is not None:
                audit_all(connection, written)
            return written

        subject = commands[0].client_order_id if len(commands) == 1 else None
        return self._retrying("save_intent" if subject else f"save_intents ({len(commands)})", subject, attempt)

    def _intent_row(self, command: SubmitOrder, submitted_ns: int | None) -> dict[str, Any]:
        """The validated ``orders`` row of a new intent.

        Raises:
            StoreError: if the command is not a valid order.
        """
        if not isinstance(command, SubmitOrder):
            raise StoreError(f"save_intent needs a SubmitOrder, got {type(command).__name__}")
        client_order_id = command.client_order_id
        try:
            Order(command)  # the domain's validation: positive Decimal quantity, needed prices
            payload = to_json(command)
        except DomainError as exc:
            raise StoreError(f"cannot save intent {client_order_id}: {exc}") from exc
        created_ns = check_ts("SubmitOrder.ts_ns", command.ts_ns)
        if not isinstance(command.symbol, str) or not 0 < len(command.symbol) <= _MAX_SYMBOL:
            raise StoreError(
                f"cannot save intent {client_order_id}: symbol must be 1-{_MAX_SYMBOL} characters, "
                f"got {command.symbol!r}"
            )
        return {
            "client_order_id": str(client_order_id),
            "broker_order_id": None,
            "strategy_id": str(command.strategy_id),
            "symbol": command.symbol,
            "side": command.side.value,
            "quantity": command.quantity,
            "status": (S.INITIALIZED if submitted_ns is None else S.PENDING_NEW).value,
            "filled_quantity": _ZERO,
            "filled_notional": _ZERO,
            "average_fill_price": None,
            "fees": _ZERO,
            "replaced_by": None,
            "command": payload,
            "created_ns": created_ns,
            "submitted_ns": submitted_ns,
            "updated_ns": created_ns if submitted_ns is None else max(created_ns, submitted_ns),
            "version": 1,
        }

    def _insert_intent_row(self, connection: sa.Connection, command: SubmitOrder, row: dict[str, Any],
                           audit: IntentAudit | None) -> bool:
        """Insert one intent row unless the same order is saved already; run ``audit`` if written."""
        insert = self._insert_intent
        if insert is None:  # no INSERT ... ON CONFLICT DO NOTHING: look first
            insert = _INSERT_ORDER
            if self._already_saved(connection, command, row["command"]):
                return False
        written = connection.execute(insert, row).rowcount
        if written != 1:  # the id is taken (ON CONFLICT DO NOTHING): by this very order?
            if not self._already_saved(connection, command, row["command"]):
                raise _VersionConflict(command.client_order_id)  # its holder is gone: try again
            return False
        if audit is not None:
            audit(connection)
        return True

    def _already_saved(self, connection: sa.Connection, command: SubmitOrder, payload: str) -> bool:
        """Whether ``command`` is saved already: False if no order holds its client order id.

        Raises:
            StoreError: if another order holds the id.
        """
        client_order_id = command.client_order_id
        bound = {"client_order_id": str(client_order_id)}
        stored = connection.execute(_STORED_COMMAND, bound).scalar_one_or_none()
        if stored is None:
            return False
        if stored_command(client_order_id, stored) != command:
            raise StoreError(
                f"client order id {client_order_id} already holds a different order: "
                f"stored {stored}, given {payload}"
            )
        return True

    def mark_submitted(self, client_order_id: str, ts_ns: int) -> None:
        """Mark the order ``pending_new``: its request is being sent and the outcome is unknown.

        Call it before the request leaves the process. A no-op when the order is already past
        ``initialized`` (a broker event arrived first).

        Raises:
            StoreError: if no intent was saved under ``client_order_id``, the order was denied
                (it must never be sent), or the database cannot be written.
        """
        check_ts("ts_ns", ts_ns)

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
    def apply(self, event: OrderEvent, *, audit: EventAudit | None = None) -> Applied:
        """Apply one order event in one transaction; refuse, never raise, on bad broker input.

        Fills are inserted once per (order, trade id); the fill and the order update commit
        together. ``filled_quantity`` only grows and never exceeds the order quantity.

        Args:
            event: the order event.
            audit: called with the transaction's connection and the outcome (applied or not)
                before the commit: what it writes commits with the event, and if it raises
                nothing is written. It runs again on a retried attempt.

        Returns:
            What happened; see :class:`Anomaly` for the codes and the module docstring for the
            rules on out-of-order events.

        Raises:
            StoreError: if ``event`` is not an order event, the database fails, concurrent
                writers won :attr:`max_attempts` times, or ``audit`` fails (its StoreError as raised).
        """
        return self.apply_many([event], audits=[audit])[0]

    def apply_many(
        self, events: Sequence[OrderEvent], *, audits: Sequence[EventAudit | None] | None = None,
        audit_all: Callable[[sa.Connection, list[Applied]], object] | None = None, durable: bool = True,
    ) -> list[Applied]:
        """Apply several order events, in order, in ONE transaction (a group commit).

        Each event is applied as by :meth:`apply` (``audits[i]`` audits ``events[i]``), seeing
        the ones before it; the batch commits together or not at all (a retry re-runs it whole).
        ``audit_all``, if given, runs once after every event, with the connection and the
        outcomes: one audit append for the batch. ``durable=False`` commits without waiting for
        the disk (see :meth:`_retrying`): for records the broker can give again (its answers and
        fills), which reconciliation recovers should a database crash lose them.

        Raises:
            StoreError: as :meth:`apply`; then none of the events is recorded.
        """
        audits = [None] * len(events) if audits is None else list(audits)
        if len(audits) != len(events):
            raise StoreError(f"apply_many: {len(events)} events but {len(audits)} audit writers")
        for event in events:
            if not isinstance(event, EVENT_TYPES):
                raise StoreError(f"cannot apply {type(event).__name__}: not an order event")
            check_ts(f"{type(event).__name__}.ts_ns", event.ts_ns)
        if not events:
            return []

        def attempt(connection: sa.Connection) -> list[Applied]:
            results: list[Applied] = []
            for event, audit in zip(events, audits):
                applied = self._apply(connection, event)
                if audit is not None:
                    audit(connection, applied)
                results.append(applied)
            if audit_all is not None:
                audit_all(connection, results)
            return results

        first = events[0]
        what = f"apply {type(first).__name__}" if len(events) == 1 else f"apply {len(events)} events"
        return self._retrying(what, first.client_order_id if len(events) == 1 else None, attempt, durable)

    def _apply(self, connection: sa.Connection, event: OrderEvent) -> Applied:
        if isinstance(event, OrderLegAccepted):
            return self._apply_leg(connection, event)
        venue_id = event.venue_order_id if isinstance(event, (OrderAccepted, OrderFilled)) else None
        if venue_id is None:
            order, holder = self._load(connection, event.client_order_id), None
        else:
            order, holder = self._load_with_holder(connection, event.client_order_id, venue_id)
        if order is None:
            detail = f"no order {event.client_order_id!s} was saved"
            self._record(connection, event, Anomaly.UNKNOWN_ORDER, detail)
            return Applied(False, Anomaly.UNKNOWN_ORDER, None, detail)
        if isinstance(event, OrderFilled):
            return self._apply_fill(connection, order, event, holder)
        target = target_status(event)
        current = order.status
        if target is None:
            detail = f"unknown status {getattr(event, 'status', None)!r}"
            return self._refuse(connection, order, event, Anomaly.ILLEGAL_TRANSITION, detail)
        broker_id = event.venue_order_id if isinstance(event, OrderAccepted) else None
        if broker_id is not None and broker_id != order.broker_order_id:
            conflict = _broker_id_conflict(order, broker_id, holder)
            if conflict is not None:
                return self._refuse(connection, order, event, Anomaly.BROKER_ORDER_ID_CONFLICT, conflict)
        learns_id = broker_id is not None and order.broker_order_id is None
        legal = target is not current and path_end(current, target, not isinstance(event, LOCAL_EVENTS))
        if target in _FILL_STATUSES and target is not current:
            detail = f"status {target.value} arrived without its fills (filled {order.filled_quantity})"
            return self._refuse(connection, order, event, Anomaly.FILL_STATUS_WITHOUT_FILL, detail)
        if not legal and (target is current or current in REACHABLE[target]):
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

    def _apply_fill(
        self, connection: sa.Connection, order: OrderRow, fill: OrderFilled, holder: str | None
    ) -> Applied:
        """Apply ``fill``; ``holder`` is the other order holding its broker order id, if any."""
        duplicate = connection.execute(
            sa.select(FILLS.c.seq).where(
                FILLS.c.client_order_id == str(order.client_order_id), FILLS.c.trade_id == str(fill.trade_id)
            )
        ).first()
        if duplicate is not None:
            detail = f"trade {fill.trade_id!s} is already recorded"
            return Applied(False, Anomaly.DUPLICATE_TRADE, order, detail)
        problem = fill_problem(order, fill)
        if problem is None and order.broker_order_id is None:
            conflict = _broker_id_conflict(order, fill.venue_order_id, holder)
            problem = None if conflict is None else (Anomaly.BROKER_ORDER_ID_CONFLICT, conflict)
        if problem is not None:
            return self._refuse(connection, order, fill, *problem)
        with localcontext(_EXACT):
            filled = order.filled_quantity + fill.last_quantity
            notional = order.filled_notional + fill.last_quantity * fill.last_price
            fees = order.fees + fill.fee
        target = S.FILLED if filled == order.quantity else S.PARTIALLY_FILLED
        if not path_end(order.status, target, True):
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
                event=json_text("event", to_record(event)),
            )
        )

    def _update(self, connection: sa.Connection, order: OrderRow, ts_ns: int, **values: Any) -> OrderRow:
        """Compare-and-set the order row at ``order.version``; raise ``_VersionConflict`` if it moved."""
        values["version"] = order.version + 1
        values["updated_ns"] = max(order.updated_ns, ts_ns)
        where = {"where_client_order_id": str(order.client_order_id), "where_version": order.version}
        result = connection.execute(_COMPARE_AND_SET, {**values, **where})
        if result.rowcount != 1:
            raise _VersionConflict(order.client_order_id)
        return updated_row(order, values)  # what a re-read would decode, without the read

    # ------------------------------------------------------------------ reads
    def _load(self, connection: sa.Connection, client_order_id: str) -> OrderRow | None:
        row = connection.execute(_LOAD, {"client_order_id": str(client_order_id)}).first()
        return None if row is None else order_row(row)

    def _load_with_holder(
        self, connection: sa.Connection, client_order_id: str, broker_order_id: str
    ) -> tuple[OrderRow | None, str | None]:
        """The order, and the client order id of another order holding ``broker_order_id`` (None
        if no other order does)."""
        bound = {"client_order_id": str(client_order_id), "broker_order_id": str(broker_order_id)}
        row = connection.execute(_LOAD_WITH_HOLDER, bound).first()
        if row is None:
            return None, None
        return order_row(row), row.broker_id_holder

    def order(self, client_order_id: str) -> OrderRow | None:
        """Return the order saved under ``client_order_id``, or ``None``."""
        return self._read("order", lambda c: self._load(c, client_order_id))

    def order_by_broker_id(self, broker_order_id: str) -> OrderRow | None:
        """Return the order the broker knows as ``broker_order_id``, or ``None``."""
        query = sa.select(ORDERS).where(ORDERS.c.broker_order_id == str(broker_order_id))
        return self._read("order_by_broker_id", lambda c: _first(c, query, order_row))

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
        return self._read("open_orders", lambda c: [order_row(row) for row in c.execute(query)])

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
            query = query.where(FILLS.c.ts_ns >= check_ts("since_ns", since_ns))
        return self._read("fills", lambda c: [fill_row(row) for row in c.execute(query)])

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
        return self._read("anomalies", lambda c: [anomaly_row(row) for row in c.execute(query)])

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
            "ts_ns": check_ts("ts_ns", ts_ns),
            "cash": check_decimal("cash", cash),
            "equity": check_decimal("equity", equity),
            "buying_power": check_decimal("buying_power", buying_power),
            "raw": json_text("raw", dict(raw)),
        }
        insert = ACCOUNT_SNAPSHOTS.insert().values(values)
        self._retrying("save_account_snapshot", None, lambda c: c.execute(insert))

    def latest_account_snapshot(self) -> AccountSnapshotRow | None:
        """Return the snapshot with the greatest ``ts_ns`` (the later-saved on a tie), or ``None``."""
        table = ACCOUNT_SNAPSHOTS
        query = sa.select(table).order_by(table.c.ts_ns.desc(), table.c.seq.desc())
        return self._read("latest_account_snapshot", lambda c: _first(c, query.limit(1), snapshot_row))

    def save_pnl(self, ts_ns: int, realized: Decimal, unrealized: Decimal, fees: Decimal) -> None:
        """Store realized and unrealized P&L and fees paid (USD) at ``ts_ns`` (UTC ns).

        Raises:
            StoreError: if an amount is not a finite Decimal or the database cannot be written.
        """
        values = {
            "ts_ns": check_ts("ts_ns", ts_ns),
            "realized": check_decimal("realized", realized),
            "unrealized": check_decimal("unrealized", unrealized),
            "fees": check_decimal("fees", fees),
        }
        insert = PNL.insert().values(values)
        self._retrying("save_pnl", None, lambda c: c.execute(insert))

    def pnl_series(self, since_ns: int | None = None, until_ns: int | None = None) -> list[PnlRow]:
        """Return P&L rows with ``since_ns <= ts_ns <= until_ns`` (bounds optional) in time order."""
        query = sa.select(PNL).order_by(PNL.c.ts_ns, PNL.c.seq)
        if since_ns is not None:
            query = query.where(PNL.c.ts_ns >= check_ts("since_ns", since_ns))
        if until_ns is not None:
            query = query.where(PNL.c.ts_ns <= check_ts("until_ns", until_ns))
        def rows(connection: sa.Connection) -> list[PnlRow]:
            return [
                PnlRow(ts_ns=r.ts_ns, realized=r.realized, unrealized=r.unrealized, fees=r.fees)
                for r in connection.execute(query)
            ]

        return self._read("pnl_series", rows)


# --------------------------------------------------------------------------- engine


def _create_engine(url: sa.URL) -> sa.Engine:
    """Create the engine; on SQLite, enforce foreign keys and take the write lock up front.

    pysqlite's own transaction handling is switched off so a write transaction starts with
    ``BEGIN IMMEDIATE``: two writers then queue on the database lock (up to 30 s) instead of
    failing when both try to upgrade a read lock. A server database's pooled connections are
    tested before use (``pool_pre_ping``): after a server restart the pool's dead sessions are
    replaced instead of failing the next write.
    """
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url, connect_args={"timeout": 30})

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        configure_connection(dbapi_connection)

    def on_begin(connection: sa.Connection) -> None:
        options = connection.get_execution_options()
        write = options.get("amcp_write", False)
        if write:  # a non-durable write skips the fsync of its commit (WAL: the database stays consistent)
            level = "FULL" if options.get("amcp_durable", True) else "NORMAL"
            info = connection.connection.info
            if info.get("amcp_synchronous") != level:
                connection.exec_driver_sql(f"PRAGMA synchronous={level}")
                info["amcp_synchronous"] = level
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    sa.event.listen(engine, "connect", on_connect)
    sa.event.listen(engine, "begin", on_begin)
    return engine


def _broker_id_conflict(order: OrderRow, broker_id: str, holder: str | None) -> str | None:
    """Why ``order`` cannot take ``broker_id`` (another id recorded, or ``holder``, another order,
    has it), or None."""
    if order.broker_order_id is not None and order.broker_order_id != broker_id:
        return f"broker order id {broker_id!s} differs from the recorded {order.broker_order_id!s}"
    return None if holder is None else f"broker order id {broker_id!s} already belongs to order {holder}"


def _insert_if_absent(backend: str) -> sa.Insert | None:
    """``INSERT INTO trading_orders ... ON CONFLICT (client_order_id) DO NOTHING`` for SQLite and
    PostgreSQL (one statement where looking first takes two); None for other databases."""
    if backend == "sqlite":
        from sqlalchemy.dialects import sqlite

        return sqlite.insert(ORDERS).on_conflict_do_nothing(index_elements=[ORDERS.c.client_order_id])
    if backend == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(ORDERS).on_conflict_do_nothing(index_elements=[ORDERS.c.client_order_id])
    return None


def _first(
    connection: sa.Connection, query: sa.Select[Any], decode: Callable[[sa.Row[Any]], _T]
) -> _T | None:
    row = connection.execute(query).first()
    return None if row is None else decode(row)
