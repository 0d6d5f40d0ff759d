"""A state change and its audit row commit together, in one transaction, or not at all.

The order path writes the intent (already marked sent) with its ``intent`` audit row in one
commit, and each broker event with its ``event`` audit row in another
(:meth:`TradingStateStore.save_intent` / :meth:`TradingStateStore.apply` with ``audit``, and
:meth:`AuditLog.append_many` with ``connection``). Every test runs on SQLite (a file per test)
and on PostgreSQL (a schema per test).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from amcp.domain import (
    ClientOrderId,
    LiquiditySide,
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderType,
    StrategyId,
    SubmitOrder,
    TradeId,
    VenueOrderId,
)
from amcp.domain.serialization import to_record
from amcp.errors import StoreError
from amcp.store.audit import AuditEntry, AuditLog
from amcp.store.state import Anomaly, Applied, TradingStateStore
from serve.alpaca_paper import AlpacaPaperServer
from tests.unit.execution._invariants import (
    EXACT,
    T0,
    Crash,
    LiveRig,
    bars,
    broker_orders,
    postgres_schema,
    with_schema,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database per test: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.sqlite'}"
        return
    base = request.getfixturevalue("postgres_url")
    with postgres_schema(base) as schema:
        yield with_schema(base, schema)


@pytest.fixture
def stores(url: str) -> Iterator[tuple[TradingStateStore, AuditLog]]:
    store, log = TradingStateStore(url), AuditLog(url)
    store.upgrade()
    yield store, log
    store.close()
    log.close()


def _command(cid: str = "c1", ts_ns: int = 1_000) -> SubmitOrder:
    return SubmitOrder(client_order_id=ClientOrderId(cid), strategy_id=StrategyId("s1"), symbol="AAPL",
                       side=OrderSide.BUY, quantity=Decimal("10"), order_type=OrderType.LIMIT,
                       limit_price=Decimal("95.5"), ts_ns=ts_ns)


def _fill(trade: str, quantity: str, ts_ns: int) -> OrderFilled:
    return OrderFilled(client_order_id=ClientOrderId("c1"), venue_order_id=VenueOrderId("V1"),
                       trade_id=TradeId(trade), strategy_id=StrategyId("s1"), symbol="AAPL",
                       side=OrderSide.BUY,
                       last_quantity=Decimal(quantity), last_price=Decimal("95.25"), fee=Decimal("0.01"),
                       liquidity=LiquiditySide.MAKER, ts_ns=ts_ns)


def _accepted(cid: str = "c1", ts_ns: int = 2_000) -> OrderAccepted:
    return OrderAccepted(client_order_id=ClientOrderId(cid), venue_order_id=VenueOrderId("V1"), ts_ns=ts_ns)


def _intent_audit(log: AuditLog, command: SubmitOrder) -> Any:
    entry = AuditEntry("oms", "intent", to_record(command), command.ts_ns)
    return lambda connection: log.append_many([entry], connection=connection)


def _event_audit(log: AuditLog, event: Any) -> Any:
    def write(connection: sa.Connection, result: Applied) -> None:
        payload = {**to_record(event), "anomaly": result.anomaly.value if result.anomaly else None}
        log.append_many([AuditEntry("oms", "event", payload, event.ts_ns)], connection=connection)

    return write


class _AuditDown(Exception):
    """Raised by an audit hook: the transaction must roll back whole."""


def _failing(*args: Any) -> None:
    raise _AuditDown("audit insert failed")


# --------------------------------------------------------------------------- the store


def test_an_intent_about_to_be_sent_is_saved_pending_new_with_its_audit_row(stores) -> None:
    store, log = stores
    command = _command()

    assert store.save_intent(command, submitted_ns=1_500, audit=_intent_audit(log, command)) is True

    row = store.order("c1")
    assert row is not None and row.status is OrderStatus.PENDING_NEW
    assert (row.submitted_ns, row.updated_ns, row.created_ns) == (1_500, 1_500, 1_000)
    assert [o.client_order_id for o in store.open_orders()] == ["c1"]  # in flight: reconciliation sees it
    assert [(r.action, r.payload["client_order_id"]) for r in log.records()] == [("intent", "c1")]
    assert log.verify().ok


def test_an_intent_whose_audit_row_fails_leaves_neither(stores) -> None:
    store, log = stores
    log.append("oms", "start", {}, 1)  # a chain head the failed append must not move

    with pytest.raises(_AuditDown):
        store.save_intent(_command(), submitted_ns=1_500, audit=_failing)

    assert store.order("c1") is None
    assert [r.action for r in log.records()] == ["start"]
    assert store.save_intent(_command(), submitted_ns=1_600, audit=_intent_audit(log, _command())) is True
    assert [r.action for r in log.records()] == ["start", "intent"] and log.verify().ok


def test_an_intent_saved_before_is_not_written_or_audited_again(stores) -> None:
    store, log = stores
    command = _command()
    store.save_intent(command, submitted_ns=1_500, audit=_intent_audit(log, command))

    assert store.save_intent(command, submitted_ns=1_700, audit=_failing) is False

    row = store.order("c1")
    assert row is not None and row.submitted_ns == 1_500
    assert len(log.records()) == 1
    with pytest.raises(StoreError, match="already holds a different order"):
        store.save_intent(_command(ts_ns=999), submitted_ns=1_700, audit=_failing)


def test_an_event_and_its_audit_row_commit_together_with_the_anomaly(stores) -> None:
    store, log = stores
    store.save_intent(_command(), submitted_ns=1_500)
    accept = _accepted()

    first = store.apply(accept, audit=_event_audit(log, accept))
    again = store.apply(accept, audit=_event_audit(log, accept))

    assert first.applied and first.anomaly is None
    assert again.anomaly is Anomaly.DUPLICATE_EVENT
    assert [r.payload["anomaly"] for r in log.records()] == [None, "duplicate_event"]
    assert log.verify().ok


def test_an_event_whose_audit_row_fails_changes_nothing(stores) -> None:
    store, log = stores
    store.save_intent(_command(), submitted_ns=1_500)
    store.apply(_accepted())

    with pytest.raises(_AuditDown):
        store.apply(_fill("t1", "4", 3_000), audit=_failing)

    row = store.order("c1")
    assert row is not None and row.status is OrderStatus.NEW and row.filled_quantity == 0
    assert store.fills("c1") == [] and log.records() == []


def test_the_order_an_event_returns_is_the_row_stored(stores) -> None:
    """The store builds the updated row instead of reading it back: it must equal the read."""
    store, _ = stores
    store.save_intent(_command())
    events = [
        _accepted(),
        _fill("t1", "4", 3_000),
        _fill("t2", "3.5", 3_100),
        OrderCanceled(client_order_id=ClientOrderId("c1"), ts_ns=3_200),
    ]
    for event in events:
        result = store.apply(event)
        assert result.applied, result
        assert result.order == store.order("c1")
    final = store.order("c1")
    assert final is not None and final.status is OrderStatus.CANCELED
    assert final.filled_quantity == Decimal("7.5")


def test_a_broker_order_id_another_order_holds_is_refused_in_one_read(stores) -> None:
    store, _ = stores
    store.save_intent(_command("c1"))
    store.save_intent(_command("c2"))
    store.apply(_accepted())

    result = store.apply(_accepted("c2", ts_ns=2_100))

    assert result.anomaly is Anomaly.BROKER_ORDER_ID_CONFLICT
    assert "already belongs to order c1" in result.detail


# --------------------------------------------------------------------------- the audit log


def test_a_joint_append_refuses_another_database_and_a_connection_without_a_transaction(
        stores, url: str, tmp_path: Path) -> None:
    _, log = stores
    other = sa.create_engine(f"sqlite:///{tmp_path / 'other.sqlite'}")
    entry = AuditEntry("oms", "intent", {}, 1)
    try:
        with other.begin() as connection, pytest.raises(StoreError, match="another database"):
            log.append_many([entry], connection=connection)
        mine = sa.create_engine(url)
        with mine.connect() as connection, pytest.raises(StoreError, match="needs a transaction"):
            log.append_many([entry], connection=connection)
        mine.dispose()
    finally:
        other.dispose()
    assert log.records() == []


def test_shares_database_compares_urls_and_never_shares_memory(url: str, tmp_path: Path) -> None:
    with AuditLog(url) as log:
        assert log.shares_database(url)
        assert not log.shares_database(f"sqlite:///{tmp_path / 'elsewhere.sqlite'}")
        assert not log.shares_database("not a url")
    with AuditLog("sqlite://") as memory:
        assert not memory.shares_database("sqlite://")


def test_joint_and_own_appends_interleave_into_one_chain(stores) -> None:
    store, log = stores
    for i in range(6):
        command = _command(f"c{i}", ts_ns=1_000 + i)
        store.save_intent(command, submitted_ns=2_000 + i, audit=_intent_audit(log, command))
        log.append("oms", "denied", {"i": i}, 3_000 + i)

    report = log.verify()
    assert report.ok and report.rows == 12
    assert [r.action for r in log.records()] == ["intent", "denied"] * 6


# --------------------------------------------------------------------------- the order path


@pytest.fixture
def rig(url: str) -> Iterator[LiveRig]:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as server:
        server.advance(bars(T0, 100.0))
        live = LiveRig(server, url)
        try:
            yield live
        finally:
            live.close()


@pytest.fixture
def commits() -> Iterator[list[str]]:
    """The URL of every commit any SQLAlchemy engine makes while the test runs."""
    seen: list[str] = []

    def on_commit(connection: sa.Connection) -> None:
        seen.append(str(connection.engine.url))

    sa.event.listen(sa.Engine, "commit", on_commit)
    yield seen
    sa.event.remove(sa.Engine, "commit", on_commit)


def test_an_order_through_the_engine_costs_two_commits_and_is_audited(rig, commits) -> None:
    assert rig.engine.start().ok
    commits.clear()

    events = rig.submit(rig.order("o-1", limit="95"))

    assert [type(e) for e in events] == [OrderAccepted]
    assert len(commits) == 2  # the intent with its audit row, then the accept with its audit row
    actions = [(r.action, r.payload.get("client_order_id")) for r in rig.audit.records()][-2:]
    assert actions == [("intent", "o-1"), ("event", "o-1")]
    rig.check()


def test_an_intent_whose_audit_fails_is_denied_saved_nowhere_and_never_sent(rig, monkeypatch) -> None:
    engine = rig.engine
    assert engine.start().ok
    joint = AuditLog.append_many

    def audit_down(self: AuditLog, entries: Any, *, connection: Any = None) -> Any:
        if connection is not None:
            raise StoreError("audit insert failed")
        return joint(self, entries, connection=connection)

    monkeypatch.setattr(AuditLog, "append_many", audit_down)
    events = rig.submit(rig.order("o-1"))
    monkeypatch.undo()

    assert [type(e).__name__ for e in events] == ["OrderDenied"]
    assert "audit insert failed" in events[0].message
    assert engine.state.order("o-1") is None and broker_orders(rig.inspector) == []
    intents = [r.payload.get("client_order_id") for r in rig.audit.records() if r.action == "intent"]
    assert "o-1" not in intents
    assert not engine.reconciled and engine.reconcile().ok
    rig.check()


def test_a_kill_after_the_intent_commit_is_resent_once_with_the_same_id(rig) -> None:
    first = rig.restart(crash_at="intent_saved")
    assert first.start().ok
    order = rig.order("o-1")
    with pytest.raises(Crash):
        first.submit([order], rig.ctx())
    row = rig.state.order("o-1")
    assert row is not None and row.status is OrderStatus.PENDING_NEW  # marked sent, not yet sent
    assert broker_orders(rig.inspector) == []

    second = rig.restart()
    report = second.start()
    assert report.ok and report.resent == ("o-1",)
    second.resume_pending(rig.ctx())
    assert [o["client_order_id"] for o in broker_orders(rig.inspector)] == ["o-1"]
    rig.advance(99.0)
    rig.pump()
    rig.check()


def test_with_the_audit_log_in_another_database_intent_and_event_are_still_audited(
        url: str, tmp_path: Path, commits) -> None:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as server:
        server.advance(bars(T0, 100.0))
        live = LiveRig(server, url)
        live.audit.close()
        live.audit = AuditLog(f"sqlite:///{tmp_path / 'audit-elsewhere.sqlite'}")
        live.engine = live._new_engine()
        try:
            assert live.engine.start().ok
            commits.clear()
            events = live.submit(live.order("o-1", limit="95"))
            assert [type(e) for e in events] == [OrderAccepted]
            assert len(commits) == 4  # intent, its audit row, accept, its audit row
            assert [r.action for r in live.audit.records()][-2:] == ["intent", "event"]
            assert live.audit.verify().ok
        finally:
            live.close()


def _commit_settings(store: TradingStateStore) -> list[str]:
    """What each write transaction of ``store`` asked of the disk, in order: the SQLite
    ``synchronous`` level set before it, or PostgreSQL's ``synchronous_commit``, read inside it."""
    seen: list[str] = []

    def before(connection: Any, cursor: Any, statement: str, *args: Any) -> None:
        text = statement.strip().upper()
        if text.startswith("PRAGMA SYNCHRONOUS=") or text.startswith("SET LOCAL SYNCHRONOUS_COMMIT"):
            seen.append(text)

    sa.event.listen(store._engine, "before_cursor_execute", before)  # noqa: SLF001 - the store's own engine
    return seen


def test_intents_wait_for_the_disk_and_broker_events_do_not(stores, url: str) -> None:
    """An intent (known only here) is flushed to disk before its request; the broker's answers,
    which reconciliation can recover from the broker, commit without waiting."""
    store, log = stores
    store.close()  # fresh connections: the first write sets its level explicitly
    seen = _commit_settings(store)
    store.save_intents([_command()], submitted_ns=1_500)
    store.apply_many([_accepted()], durable=False)
    store.save_intents([_command("c2")], submitted_ns=1_600)
    if url.startswith("sqlite"):
        assert seen == ["PRAGMA SYNCHRONOUS=FULL", "PRAGMA SYNCHRONOUS=NORMAL", "PRAGMA SYNCHRONOUS=FULL"]
    else:
        assert seen == ["SET LOCAL SYNCHRONOUS_COMMIT TO OFF"]  # only inside the event's transaction
    assert store.order("c1").status is OrderStatus.NEW and store.order("c2") is not None  # accepted = new
