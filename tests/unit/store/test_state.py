"""The trading state store keeps orders and fills exactly, refuses bad events and migrates cleanly.

Every test that touches a database runs on SQLite (a file per test) and on PostgreSQL (a schema
per test, dropped afterwards).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from threading import Barrier
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from amcp.domain import (
    ClientOrderId,
    DenyReason,
    LiquiditySide,
    OrderAccepted,
    OrderCanceled,
    OrderDenied,
    OrderFilled,
    OrderReplaced,
    OrderSide,
    OrderStatus,
    OrderStatusChanged,
    OrderType,
    StrategyId,
    SubmitOrder,
    TradeId,
    VenueOrderId,
)
from amcp.errors import StoreError
from amcp.store.state import METADATA, VERSION_TABLE, Anomaly, Applied, OrderRow, TradingStateStore

StoreFactory = Callable[..., TradingStateStore]


# --------------------------------------------------------------------------- fixtures


@contextmanager
def _postgres_schema(base_url: str) -> Iterator[str]:
    """Yield a URL whose search_path is a fresh schema; drop the schema afterwards."""
    schema = f"amcp_state_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        url = sa.make_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.sqlite'}"
        return
    with _postgres_schema(request.getfixturevalue("postgres_url")) as url:
        yield url


@pytest.fixture
def postgres_state_url(postgres_url: str) -> Iterator[str]:
    with _postgres_schema(postgres_url) as url:
        yield url


def _factory(url: str) -> Iterator[StoreFactory]:
    opened: list[TradingStateStore] = []

    def make(*, upgrade: bool = True, **options: Any) -> TradingStateStore:
        store = TradingStateStore(url, **options)
        opened.append(store)
        if upgrade:
            store.upgrade()
        return store

    yield make
    for store in opened:
        store.close()


@pytest.fixture
def make_store(database_url: str) -> Iterator[StoreFactory]:
    yield from _factory(database_url)


@pytest.fixture
def store(make_store: StoreFactory) -> TradingStateStore:
    return make_store()


# --------------------------------------------------------------------------- builders


def submit(
    client_order_id: str = "c1",
    quantity: str = "200",
    side: OrderSide = OrderSide.BUY,
    symbol: str = "AAPL",
    ts_ns: int = 1_000,
) -> SubmitOrder:
    return SubmitOrder(
        client_order_id=ClientOrderId(client_order_id),
        strategy_id=StrategyId("momentum-1"),
        symbol=symbol,
        side=side,
        quantity=Decimal(quantity),
        order_type=OrderType.LIMIT,
        limit_price=Decimal("10.05"),
        ts_ns=ts_ns,
    )


def fill(
    trade_id: str,
    quantity: str,
    price: str,
    *,
    client_order_id: str = "c1",
    venue_order_id: str = "V1",
    side: OrderSide = OrderSide.BUY,
    symbol: str = "AAPL",
    fee: str = "0",
    ts_ns: int = 3_000,
) -> OrderFilled:
    return OrderFilled(
        client_order_id=ClientOrderId(client_order_id),
        venue_order_id=VenueOrderId(venue_order_id),
        trade_id=TradeId(trade_id),
        strategy_id=StrategyId("momentum-1"),
        symbol=symbol,
        side=side,
        last_quantity=Decimal(quantity),
        last_price=Decimal(price),
        fee=Decimal(fee),
        liquidity=LiquiditySide.TAKER,
        ts_ns=ts_ns,
    )


def accepted(client_order_id: str = "c1", venue_order_id: str = "V1", ts_ns: int = 2_000) -> OrderAccepted:
    return OrderAccepted(
        client_order_id=ClientOrderId(client_order_id),
        venue_order_id=VenueOrderId(venue_order_id),
        ts_ns=ts_ns,
    )


def denied(client_order_id: str = "c1", ts_ns: int = 1_500) -> OrderDenied:
    cid = ClientOrderId(client_order_id)
    return OrderDenied(client_order_id=cid, ts_ns=ts_ns, reason=DenyReason.THROTTLED, message="throttled")


def status_changed(status: OrderStatus, ts_ns: int, client_order_id: str = "c1") -> OrderStatusChanged:
    return OrderStatusChanged(client_order_id=ClientOrderId(client_order_id), status=status, ts_ns=ts_ns)


def stored(store: TradingStateStore, client_order_id: str) -> OrderRow:
    order = store.order(client_order_id)
    assert order is not None, f"order {client_order_id} is not stored"
    return order


def order_of(result: Applied) -> OrderRow:
    assert result.order is not None, f"no order in {result}"
    return result.order


def sent(store: TradingStateStore, command: SubmitOrder) -> None:
    """Save the intent and mark it sent, as the OMS does before the request leaves."""
    assert store.save_intent(command) is True
    store.mark_submitted(command.client_order_id, command.ts_ns + 1)


# --------------------------------------------------------------------------- migrations


def test_upgrade_builds_the_schema_the_metadata_describes(
    make_store: StoreFactory, database_url: str
) -> None:
    store = make_store(upgrade=False)
    assert store.current_revision() is None

    revision = store.upgrade()

    assert revision == "0001" == store.current_revision()
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            assert compare_metadata(context, METADATA) == []
            # The comparison does see a difference when there is one.
            connection.execute(sa.text("DROP INDEX ix_trading_orders_status"))
            assert [diff[0] for diff in compare_metadata(context, METADATA)] == ["add_index"]
            connection.rollback()
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op_that_keeps_the_data(make_store: StoreFactory) -> None:
    store = make_store()
    store.save_intent(submit())

    assert make_store(upgrade=False).upgrade() == "0001"

    assert store.order("c1") is not None
    assert store.current_revision() == "0001"


def test_database_at_an_unknown_revision_is_a_clear_store_error(
    make_store: StoreFactory, database_url: str
) -> None:
    make_store()
    engine = sa.create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'ffff9999'"))
    engine.dispose()

    with pytest.raises(StoreError, match=r"revision 'ffff9999'.*does not know.*newer amcp"):
        make_store(upgrade=False).upgrade()


def test_store_used_before_upgrade_says_so(make_store: StoreFactory) -> None:
    store = make_store(upgrade=False)

    with pytest.raises(StoreError, match=r"open_orders failed \(has upgrade\(\) been run\?\)"):
        store.open_orders()


def test_url_defaults_to_database_url_then_a_sqlite_file_in_the_cwd(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'from-env.sqlite'}")
    assert TradingStateStore().url == f"sqlite:///{tmp_path / 'from-env.sqlite'}"

    monkeypatch.delenv("DATABASE_URL")
    store = TradingStateStore()
    store.upgrade()
    store.close()
    assert (tmp_path / "amcp_state.sqlite").is_file()


def test_unparseable_url_is_a_store_error_that_hides_credentials() -> None:
    with pytest.raises(StoreError, match="cannot open trading state at 'not a url'"):
        TradingStateStore("not a url")
    for url in ("nodriver://user:s3cret@host/db", "bad url user:s3cret@host/db"):
        with pytest.raises(StoreError, match="'host/db'") as caught:
            TradingStateStore(url)
        assert "s3cret" not in str(caught.value) and caught.value.__cause__ is None


# --------------------------------------------------------------------------- intents


def test_save_intent_twice_keeps_one_row(store: TradingStateStore) -> None:
    command = submit()

    assert store.save_intent(command) is True
    assert store.save_intent(command) is False

    rows = store.open_orders()
    assert [row.client_order_id for row in rows] == ["c1"]
    assert rows[0].status is OrderStatus.INITIALIZED
    assert rows[0].command == command
    assert rows[0].strategy_id == "momentum-1" and rows[0].quantity == Decimal("200")


def test_a_different_order_under_a_saved_client_order_id_is_refused(store: TradingStateStore) -> None:
    store.save_intent(submit(quantity="200"))

    with pytest.raises(StoreError, match="c1 already holds a different order"):
        store.save_intent(submit(quantity="300"))

    assert stored(store, "c1").quantity == Decimal("200")


def test_invalid_intent_is_refused_before_anything_is_written(store: TradingStateStore) -> None:
    with pytest.raises(StoreError, match=r"cannot save intent c1: .*quantity must be > 0"):
        store.save_intent(submit(quantity="0"))
    with pytest.raises(StoreError, match="strategy_id 'other' differs"):
        store.save_intent(submit(), strategy_id="other")

    assert store.order("c1") is None


def test_mark_submitted_refuses_unknown_and_denied_orders(store: TradingStateStore) -> None:
    with pytest.raises(StoreError, match="no order 'nope' was saved"):
        store.mark_submitted("nope", 5)
    store.save_intent(submit())
    assert store.apply(denied()).applied

    with pytest.raises(StoreError, match="c1 was denied and must not be sent"):
        store.mark_submitted("c1", 1_600)


# --------------------------------------------------------------------------- lifecycle


def test_full_lifecycle_ends_filled_with_exact_average_price(store: TradingStateStore) -> None:
    sent(store, submit(quantity="200"))
    assert stored(store, "c1").status is OrderStatus.PENDING_NEW

    assert order_of(store.apply(accepted())).status is OrderStatus.NEW
    first = store.apply(fill("T1", "100", "10.00", fee="0.01"))
    second = store.apply(fill("T2", "50", "10.03", fee="0.02", ts_ns=3_100))
    last = store.apply(fill("T3", "50", "10.02", ts_ns=3_200))

    assert order_of(first).status is OrderStatus.PARTIALLY_FILLED
    assert order_of(second).average_fill_price == Decimal("10.01")
    order = last.order
    assert last.applied and last.anomaly is None and order is not None
    assert order.status is OrderStatus.FILLED and order.filled_quantity == Decimal("200")
    # (1000 + 501.50 + 501.00) / 200 = 10.0125, exactly.
    assert order.average_fill_price == Decimal("10.0125")
    assert order.fees == Decimal("0.03")
    assert order.broker_order_id == "V1" and order.submitted_ns == 1_001 and order.updated_ns == 3_200
    assert store.order_by_broker_id("V1") == order
    assert [f.trade_id for f in store.fills("c1")] == ["T1", "T2", "T3"]
    assert [f.trade_id for f in store.fills(since_ns=3_100)] == ["T2", "T3"]
    assert store.open_orders() == []


def test_repeated_trade_id_is_ignored_and_reported(store: TradingStateStore) -> None:
    sent(store, submit())
    store.apply(fill("T1", "100", "10"))

    result = store.apply(fill("T1", "100", "10"))

    assert not result.applied and result.anomaly == "duplicate_trade"
    assert order_of(result).filled_quantity == Decimal("100")
    assert len(store.fills()) == 1


def test_overfill_is_refused_recorded_and_changes_nothing(store: TradingStateStore) -> None:
    sent(store, submit(quantity="200"))
    store.apply(fill("T1", "150", "10"))

    result = store.apply(fill("T2", "60", "11"))

    assert not result.applied and result.anomaly is Anomaly.OVERFILL
    assert "150 filled + 60 > order quantity 200" in result.detail
    order = store.order("c1")
    assert order is not None and order.filled_quantity == Decimal("150")
    assert order.average_fill_price == Decimal(10)
    assert [f.trade_id for f in store.fills()] == ["T1"]
    [recorded] = store.anomalies("c1")
    assert recorded.kind is Anomaly.OVERFILL and recorded.event["trade_id"] == "T2"
    assert recorded.event["last_quantity"] == "60"


def test_illegal_transition_is_refused_not_raised(store: TradingStateStore) -> None:
    sent(store, submit(quantity="10"))
    store.apply(fill("T1", "10", "10"))

    result = store.apply(OrderCanceled(client_order_id=ClientOrderId("c1"), ts_ns=9_000))

    assert not result.applied and result.anomaly is Anomaly.ILLEGAL_TRANSITION
    assert result.detail == "cannot move from filled to canceled"
    assert stored(store, "c1").status is OrderStatus.FILLED
    assert [a.kind for a in store.anomalies()] == [Anomaly.ILLEGAL_TRANSITION]


def test_accept_of_a_denied_order_is_illegal(store: TradingStateStore) -> None:
    store.save_intent(submit())
    store.apply(denied())

    result = store.apply(accepted())

    assert result.anomaly is Anomaly.ILLEGAL_TRANSITION and not result.applied
    assert order_of(result).status is OrderStatus.DENIED and order_of(result).broker_order_id is None


def test_fill_before_accept_applies_and_the_late_accept_is_stale(store: TradingStateStore) -> None:
    # pending_new -> partially_filled is in TRANSITIONS; the accept (-> new) then describes the past.
    sent(store, submit(quantity="200"))

    early = store.apply(fill("T1", "50", "10", venue_order_id="V7"))
    late = store.apply(accepted(venue_order_id="V7", ts_ns=2_500))

    assert early.applied and order_of(early).status is OrderStatus.PARTIALLY_FILLED
    assert order_of(early).broker_order_id == "V7"
    assert not late.applied and late.anomaly is Anomaly.STALE_EVENT
    assert order_of(late).status is OrderStatus.PARTIALLY_FILLED and order_of(late).filled_quantity == 50
    assert store.anomalies() == []  # stale events are normal on Alpaca's stream, not recorded


def test_late_accept_after_the_final_fill_is_stale_not_reopening(store: TradingStateStore) -> None:
    sent(store, submit(quantity="10"))
    store.apply(fill("T1", "10", "10"))

    late = store.apply(accepted())

    assert late.anomaly is Anomaly.STALE_EVENT and order_of(late).status is OrderStatus.FILLED


def test_broker_event_before_mark_submitted_implies_the_submission(store: TradingStateStore) -> None:
    # The stream can beat mark_submitted; initialized -> pending_new -> partially_filled are both legal.
    store.save_intent(submit())

    result = store.apply(fill("T1", "20", "10", ts_ns=2_222))
    store.mark_submitted("c1", 2_300)

    assert result.applied and order_of(result).status is OrderStatus.PARTIALLY_FILLED
    assert stored(store, "c1").status is OrderStatus.PARTIALLY_FILLED
    assert stored(store, "c1").submitted_ns == 2_222


def test_repeated_status_is_a_duplicate_and_refused_cancel_returns_to_new(store: TradingStateStore) -> None:
    sent(store, submit())
    store.apply(accepted())
    pending = status_changed(OrderStatus.PENDING_CANCEL, 4_000)
    store.apply(pending)

    again = store.apply(pending)
    back = store.apply(status_changed(OrderStatus.NEW, 4_100))

    assert again.anomaly is Anomaly.DUPLICATE_EVENT and not again.applied
    assert back.applied and order_of(back).status is OrderStatus.NEW
    assert order_of(back).version == 5  # insert, submitted, new, pending_cancel, new


def test_bad_broker_messages_are_recorded_not_raised(store: TradingStateStore) -> None:
    sent(store, submit(symbol="AAPL"))
    store.apply(accepted(venue_order_id="V1"))

    wrong_symbol = store.apply(fill("T1", "1", "10", symbol="MSFT"))
    wrong_broker_id = store.apply(fill("T2", "1", "10", venue_order_id="V2"))
    non_positive = store.apply(fill("T3", "-1", "10"))
    filled_status = store.apply(status_changed(OrderStatus.FILLED, 5_000))
    bogus_status = store.apply(status_changed("bogus", 5_100))  # type: ignore[arg-type]
    unknown = store.apply(accepted(client_order_id="ghost", venue_order_id="V9"))

    results = (wrong_symbol, wrong_broker_id, non_positive, filled_status, bogus_status, unknown)
    assert [r.anomaly for r in results] == [
        Anomaly.FILL_MISMATCH,
        Anomaly.BROKER_ORDER_ID_CONFLICT,
        Anomaly.INVALID_FILL,
        Anomaly.FILL_STATUS_WITHOUT_FILL,
        Anomaly.ILLEGAL_TRANSITION,
        Anomaly.UNKNOWN_ORDER,
    ]
    assert not any(r.applied for r in results) and unknown.order is None
    assert bogus_status.detail == "unknown status 'bogus'"
    order = stored(store, "c1")
    assert store.fills() == [] and order.filled_quantity == 0 and order.status is OrderStatus.NEW
    assert [a.client_order_id for a in store.anomalies()] == ["c1"] * 5 + ["ghost"]


def test_broker_order_id_of_another_order_is_refused(store: TradingStateStore) -> None:
    sent(store, submit("c1"))
    sent(store, submit("c2"))
    store.apply(accepted("c1", "V1"))

    result = store.apply(accepted("c2", "V1"))

    assert result.anomaly is Anomaly.BROKER_ORDER_ID_CONFLICT
    assert "already belongs to order c1" in result.detail
    assert stored(store, "c2").broker_order_id is None


def test_replace_ends_the_old_order_and_names_the_new_one(store: TradingStateStore) -> None:
    sent(store, submit())
    store.apply(accepted())

    replaced = OrderReplaced(
        client_order_id=ClientOrderId("c1"), new_client_order_id=ClientOrderId("c1-r1"), ts_ns=6_000
    )

    result = store.apply(replaced)

    assert order_of(result).status is OrderStatus.REPLACED and order_of(result).replaced_by == "c1-r1"


def test_open_orders_include_in_flight_ones(store: TradingStateStore) -> None:
    store.save_intent(submit("a-initialized", ts_ns=1))
    sent(store, submit("b-pending", ts_ns=2))
    sent(store, submit("c-new", ts_ns=3))
    store.apply(accepted("c-new", "V3"))
    sent(store, submit("d-filled", quantity="5", ts_ns=4))
    store.apply(fill("T4", "5", "10", client_order_id="d-filled", venue_order_id="V4"))
    store.save_intent(submit("e-denied", ts_ns=5))
    store.apply(denied("e-denied", ts_ns=6))

    rows = store.open_orders()

    assert [(r.client_order_id, r.status.value) for r in rows] == [
        ("a-initialized", "initialized"),
        ("b-pending", "pending_new"),
        ("c-new", "new"),
    ]


def test_positions_are_net_fills_signed_by_side(store: TradingStateStore) -> None:
    trades = [
        ("AAPL", OrderSide.BUY, "10"),
        ("AAPL", OrderSide.SELL, "4"),
        ("MSFT", OrderSide.SELL, "3.5"),
        ("SPY", OrderSide.BUY, "2"),
        ("SPY", OrderSide.SELL, "2"),
    ]
    for n, (symbol, side, quantity) in enumerate(trades):
        cid, vid = f"o{n}", f"V{n}"
        sent(store, submit(cid, quantity=quantity, side=side, symbol=symbol))
        execution = fill(
            f"T{n}", quantity, "1", side=side, symbol=symbol, client_order_id=cid, venue_order_id=vid
        )
        assert store.apply(execution).applied

    assert store.positions() == {"AAPL": Decimal("6"), "MSFT": Decimal("-3.5")}  # SPY is flat


# --------------------------------------------------------------------------- concurrency


def test_two_writers_racing_never_lose_or_double_a_fill(make_store: StoreFactory) -> None:
    first, second = make_store(max_attempts=200), make_store(upgrade=False, max_attempts=200)
    sent(first, submit(quantity="30"))
    start = Barrier(2)

    def run(store: TradingStateStore, trades: range) -> list[Any]:
        start.wait()
        return [store.apply(fill(f"T{n}", "1", f"10.{n:02d}", ts_ns=10_000 + n)).anomaly for n in trades]

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(run, first, range(0, 20)), pool.submit(run, second, range(10, 30))]
        outcomes = [anomaly for future in futures for anomaly in future.result()]

    # Trades 10..19 went to both writers: each was applied once and reported once as a duplicate.
    assert outcomes.count(None) == 30 and outcomes.count(Anomaly.DUPLICATE_TRADE) == 10
    order = first.order("c1")
    assert order is not None and order.status is OrderStatus.FILLED and order.filled_quantity == 30
    assert sorted(f.trade_id for f in second.fills()) == sorted(f"T{n}" for n in range(30))
    # Average of 10.00, 10.01, ..., 10.29 = 10.145 exactly.
    assert order.average_fill_price == Decimal("10.145")


@pytest.fixture
def make_postgres_store(postgres_state_url: str) -> Iterator[StoreFactory]:
    yield from _factory(postgres_state_url)


def _interleave(loser: TradingStateStore, winner: TradingStateStore, winning_fill: OrderFilled) -> list[str]:
    """Make ``winner`` apply ``winning_fill`` just before ``loser`` first updates the order row."""
    updates: list[str] = []

    def before_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE TRADING_ORDERS"):
            updates.append(statement)
            if len(updates) == 1:
                assert winner.apply(winning_fill).applied

    sa.event.listen(loser._engine, "before_cursor_execute", before_execute)
    return updates


def test_conflicting_update_loses_retries_and_keeps_both_fills(make_postgres_store: StoreFactory) -> None:
    # PostgreSQL only: on SQLite the write lock queues writers, so the conflict cannot be staged.
    loser, winner = make_postgres_store(), make_postgres_store(upgrade=False)
    sent(loser, submit(quantity="10"))
    updates = _interleave(loser, winner, fill("T-winner", "4", "10"))

    result = loser.apply(fill("T-loser", "6", "11"))

    assert len(updates) == 2  # the first compare-and-set found a newer version and was retried
    assert result.applied and order_of(result).status is OrderStatus.FILLED
    assert order_of(result).average_fill_price == Decimal("10.6")
    assert sorted(f.trade_id for f in winner.fills()) == ["T-loser", "T-winner"]


def test_writer_out_of_attempts_gets_a_store_error_naming_the_order(
    make_postgres_store: StoreFactory,
) -> None:
    loser, winner = make_postgres_store(max_attempts=1), make_postgres_store(upgrade=False)
    sent(loser, submit(quantity="10"))
    _interleave(loser, winner, fill("T-winner", "4", "10"))

    with pytest.raises(StoreError, match="apply OrderFilled for order c1 lost to concurrent writers 1 times"):
        loser.apply(fill("T-loser", "6", "11"))

    assert [f.trade_id for f in winner.fills()] == ["T-winner"]
    assert stored(winner, "c1").filled_quantity == 4


# --------------------------------------------------------------------------- account and P&L


def test_account_snapshots_round_trip_exactly_and_the_latest_wins(store: TradingStateStore) -> None:
    assert store.latest_account_snapshot() is None
    raw = {"account_number": "PA123", "cash": "100000.1234567891", "pattern_day_trader": False}
    store.save_account_snapshot(2_000, Decimal("100000.1234567891"), Decimal("1E+5"), Decimal("0.10"), raw)
    store.save_account_snapshot(1_000, Decimal("1"), Decimal("1"), Decimal("1"), {})

    latest = store.latest_account_snapshot()

    assert latest is not None and latest.ts_ns == 2_000
    assert str(latest.cash) == "100000.1234567891" and str(latest.equity) == "1E+5"
    assert str(latest.buying_power) == "0.10"
    assert dict(latest.raw) == raw


def test_pnl_round_trips_exactly_in_time_order(store: TradingStateStore) -> None:
    store.save_pnl(30, Decimal("1.005"), Decimal("-0.0000001"), Decimal("0.01"))
    store.save_pnl(10, Decimal("0"), Decimal("12345678901234567890.123456789"), Decimal("0"))
    store.save_pnl(20, Decimal("-7.50"), Decimal("0"), Decimal("0.02"))

    series = store.pnl_series()

    assert [row.ts_ns for row in series] == [10, 20, 30]
    assert series[0].unrealized == Decimal("12345678901234567890.123456789")
    assert str(series[1].realized) == "-7.50" and series[2].unrealized == Decimal("-1E-7")
    assert [row.ts_ns for row in store.pnl_series(since_ns=15, until_ns=25)] == [20]


def test_inexact_or_unserialisable_amounts_are_refused(store: TradingStateStore) -> None:
    with pytest.raises(StoreError, match=r"realized must be a finite Decimal .* got 1.5"):
        store.save_pnl(1, 1.5, Decimal(0), Decimal(0))  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="cash must be a finite Decimal"):
        store.save_account_snapshot(1, Decimal("NaN"), Decimal(0), Decimal(0), {})
    with pytest.raises(StoreError, match="raw must be JSON-serialisable"):
        store.save_account_snapshot(1, Decimal(0), Decimal(0), Decimal(0), {"when": object()})
    with pytest.raises(StoreError, match=r"ts_ns must be an int of UTC nanoseconds .* got -1"):
        store.save_pnl(-1, Decimal(0), Decimal(0), Decimal(0))

    assert store.pnl_series() == [] and store.latest_account_snapshot() is None
