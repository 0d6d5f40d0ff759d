"""The live order path against the Alpaca-compatible paper server, with faults and crashes.

After every test the invariants of the issue hold (:func:`tests.unit.execution._invariants.check_invariants`):
no duplicate broker order per intent; every broker order known to the database; local positions
equal the broker's; filled quantity never shrinks, never exceeds the order, adds up from the fills
and equals the broker's; the audit chain verifies; nothing was sent while HALTED or un-reconciled.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from amcp.brokers.alpaca import trade_update_events
from amcp.domain.enums import DenyReason, LiquiditySide, OrderSide, OrderType, TimeInForce, TradingState
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId
from amcp.domain.messages import OrderDenied, OrderFilled, SubmitOrder
from serve.alpaca_paper import AlpacaPaperServer
from tests.unit.execution._invariants import (
    EXACT,
    KEY,
    SECRET,
    SYMBOLS,
    T0,
    Crash,
    LiveRig,
    bars,
    broker_orders,
    postgres_schema,
    with_schema,
)

CRASH_POINTS = ("intent_saved", "request_sent", "response_received", "fill_applied")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """A fresh database per test: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.sqlite'}"
        return
    base = request.getfixturevalue("postgres_url")
    with postgres_schema(base) as schema:
        yield with_schema(base, schema)


@pytest.fixture
def rig(db_url) -> Iterator[LiveRig]:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as server:
        server.advance(bars(T0, 100.0))
        live = LiveRig(server, db_url)
        try:
            yield live
        finally:
            live.close()


def _order(rng: random.Random, i: int, now: int) -> SubmitOrder:
    limit = rng.random() < 0.3
    return SubmitOrder(client_order_id=ClientOrderId(f"o-{i}"), strategy_id=StrategyId("s1"),
                       symbol=rng.choice(SYMBOLS), side=OrderSide.BUY, quantity=Decimal(rng.randint(1, 50)),
                       order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                       time_in_force=TimeInForce.GTC if limit else TimeInForce.DAY,
                       limit_price=Decimal("99.5") if limit else None, ts_ns=now)


def _trade_a_day(rig: LiveRig, seed: int, count: int) -> None:
    """Submit ``count`` random orders (seeded) through the engine, then a day passes at 99 USD."""
    rng = random.Random(seed)
    rig.engine.submit([_order(rng, i, rig.now) for i in range(count)], rig.ctx())
    rig.advance(99.0)


def test_nothing_is_sent_before_reconciliation(rig) -> None:
    engine = rig.engine
    events = engine.submit([_order(random.Random(1), 1, rig.now)], rig.ctx())
    assert [type(e) for e in events] == [OrderDenied] and events[0].reason is DenyReason.TRADING_HALTED
    assert broker_orders(rig.inspector) == []


def test_orders_fill_and_the_store_matches_the_broker(rig) -> None:
    engine = rig.engine
    assert engine.start().ok
    _trade_a_day(rig, seed=7, count=6)
    rig.pump()
    assert engine.state.positions()
    rig.check()


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_kill_at_each_point_of_a_submit_loses_and_duplicates_nothing(rig, point) -> None:
    for trial in range(4):
        rng = random.Random(1000 * CRASH_POINTS.index(point) + trial)
        first = rig.restart(crash_at=point, crash_after=rng.randint(0, 2))
        assert first.start().ok
        orders = [_order(rng, 100 * trial + i, rig.now) for i in range(5)]
        with pytest.raises(Crash):
            for order in orders:
                first.submit([order], rig.ctx())
            rig.advance(99.0)
            rig.pump()  # the mid-fill crash happens here
            raise Crash("no crash point was reached")  # every point is reached by construction
        # a new OMS process on the same database: reconcile, then finish the work
        second = rig.restart()
        report = second.start()
        assert report.ok, report.to_dict()
        for order in orders:  # the strategy re-emits the same intents: none is sent twice
            second.submit([order], rig.ctx())
        rig.advance(99.0)
        rig.pump()
        assert second.reconcile().ok
        rig.check()


def test_trade_stream_down_during_fills_is_recovered_by_reconciliation(rig) -> None:
    engine = rig.engine
    engine.start()
    _trade_a_day(rig, seed=3, count=5)
    rig.seen_updates = len(rig.server.trade_updates)  # the stream was down: those updates are lost
    report = engine.reconcile()
    assert report.ok and report.missed_fill_quantity > 0
    rig.check()
    # the lost updates arrive late after all (delayed, not lost): they must not double count
    rig.seen_updates = 0
    rig.pump()
    rig.check()


def test_duplicate_and_out_of_order_updates_are_harmless(rig) -> None:
    engine = rig.engine
    engine.start()
    _trade_a_day(rig, seed=4, count=4)
    updates = rig.server.trade_updates
    for update in list(reversed(updates)) + list(updates):
        engine.on_broker_events(trade_update_events(update, "s1"))
    rig.seen_updates = len(updates)
    rig.check()


def test_a_504_after_acceptance_leaves_exactly_one_order(rig) -> None:
    engine = rig.engine
    engine.start()
    rig.server.timeout_after_accept_next(1)
    engine.submit([_order(random.Random(5), 1, rig.now)], rig.ctx())
    rig.advance(99.0)
    rig.pump()
    rig.check()


def test_an_overfill_is_refused_and_halts_the_symbol(rig) -> None:
    engine = rig.engine
    engine.start()
    order = _order(random.Random(6), 1, rig.now)
    engine.submit([order], rig.ctx())
    rig.advance(99.0)
    rig.pump()
    row = engine.state.order(order.client_order_id)
    bogus = OrderFilled(client_order_id=order.client_order_id, venue_order_id=VenueOrderId(str(row.broker_order_id)),
                        trade_id=TradeId("bogus-1"), strategy_id=StrategyId("s1"), symbol=order.symbol,
                        side=order.side, last_quantity=Decimal(1), last_price=Decimal(99), fee=Decimal(0),
                        liquidity=LiquiditySide.TAKER, ts_ns=rig.now)
    assert engine.on_broker_events([bogus]) == []
    assert engine.state.order(order.client_order_id).filled_quantity == order.quantity
    before = len(broker_orders(rig.inspector))
    again = engine.submit([_order(random.Random(6), 2, rig.now)], rig.ctx())
    assert again[0].reason is DenyReason.TRADING_HALTED and "overfill" in again[0].message
    assert len(broker_orders(rig.inspector)) == before
    rig.check()


def test_kill_switch_denies_new_orders_and_cancels_working_ones(rig) -> None:
    engine = rig.engine
    engine.start()
    rng = random.Random(8)
    working = [_order(rng, i, rig.now) for i in range(3)]
    working = [SubmitOrder(**{**{f: getattr(o, f) for f in o.__dataclass_fields__}, "order_type": OrderType.LIMIT,
                              "time_in_force": TimeInForce.GTC, "limit_price": Decimal("90")}) for o in working]
    engine.submit(working, rig.ctx())
    assert len(engine.broker.open_orders()) == 3
    assert engine.kill("operator") == 3
    assert engine.broker.open_orders() == []
    denied = engine.submit([_order(rng, 99, rig.now)], rig.ctx())
    assert denied[0].reason is DenyReason.TRADING_HALTED
    rig.pump()
    rig.check()


def test_an_order_unknown_to_the_database_keeps_the_engine_halted(rig) -> None:
    engine = rig.engine
    engine.start()
    rig.inspector.post("/orders", {"symbol": "AAPL", "qty": "1", "side": "buy", "type": "limit",
                                   "limit_price": "90", "time_in_force": "gtc",
                                   "client_order_id": "placed-by-hand"})
    report = rig.restart().start()
    assert not report.ok and report.orphans == ("placed-by-hand",)


def test_intents_left_unsent_by_a_crash_are_sent_on_resume_once(rig) -> None:
    first = rig.restart(crash_at="request_sent")
    first.start()
    order = _order(random.Random(9), 1, rig.now)
    with pytest.raises(Crash):
        first.submit([order], rig.ctx())
    assert broker_orders(rig.inspector) == []  # the kill came before the request left
    second = rig.restart()
    report = second.start()
    assert report.ok and report.resent == (str(order.client_order_id),)
    assert broker_orders(rig.inspector) == []  # nothing sent while reconciling
    second.resume_pending(rig.ctx())
    assert second.resume_pending(rig.ctx()) == []  # a second resume sends nothing
    assert [o["client_order_id"] for o in broker_orders(rig.inspector)] == [str(order.client_order_id)]
    rig.advance(99.0)
    rig.pump()
    rig.check()


def test_trade_stream_reconnect_triggers_a_rest_backfill(rig) -> None:
    """The real TradingStream: updates lost while the stream was down are recovered after it
    reconnects, because the engine reconciles when the session count grows."""
    import time

    from amcp.brokers.trade_stream import AlpacaTradeUpdateFeed

    engine = rig.engine
    engine.start()
    feed = AlpacaTradeUpdateFeed(KEY, SECRET, url_override=rig.server.ws_url)
    feed.start()
    try:
        assert rig.server.wait_stream_listening(1, timeout_s=5)

        def pump_until(condition, timeout_s: float = 10.0) -> None:
            deadline = time.monotonic() + timeout_s
            while not condition():
                assert time.monotonic() < deadline, feed.stats()
                engine.on_trade_updates(feed.drain(), "s1", feed.sessions)
                time.sleep(0.05)

        rng = random.Random(10)
        engine.submit([_order(rng, 1, rig.now)], rig.ctx())
        rig.advance(99.0)
        pump_until(lambda: bool(engine.state.positions()))
        rig.server.pause_stream()  # the stream is down: these fills never reach the client
        engine.submit([_order(rng, 2, rig.now), _order(rng, 3, rig.now)], rig.ctx())
        rig.advance(98.0)
        rig.server.resume_stream()
        rig.server.drop_stream()  # alpaca-py reconnects and logs in again
        pump_until(lambda: feed.sessions >= 2 and engine.state.order("o-3").filled_quantity > 0)
        assert engine.reconciled
        # o-3's fill never reached the client over the stream: it came from the REST backfill
        # (account activities), under the broker's own execution id
        backfills = [r for r in rig.audit.records() if r.action == "reconcile"
                     and Decimal(r.payload["missed_fill_quantity"]) > 0]
        assert backfills, "the reconnect should have reconciled o-3's missed fill over REST"
        paused = [u["execution_id"] for u in rig.server.trade_updates
                  if u["order"]["client_order_id"] == "o-3" and u["event"] == "fill"]
        assert [str(f.trade_id) for f in engine.state.fills("o-3")] == paused
        rig.seen_updates = len(rig.server.trade_updates)
        rig.check()
    finally:
        feed.stop()


def test_the_plane_hops_send_only_what_this_engines_checks_accepted(rig) -> None:
    engine = rig.engine
    assert engine.start().ok
    checked = _order(random.Random(3), 1, rig.now)
    unchecked = _order(random.Random(4), 2, rig.now)
    accepted, denied = engine.check([checked], rig.ctx())
    assert accepted == [checked] and denied == []
    events = engine.send_checked([unchecked, checked])
    assert isinstance(events[0], OrderDenied) and events[0].reason is DenyReason.NOT_CHECKED
    assert [o["client_order_id"] for o in broker_orders(rig.inspector)] == ["o-1"]
    # accepted once, sent once: a second send_checked of the same command is refused
    assert engine.send_checked([checked])[0].reason is DenyReason.NOT_CHECKED
    rig.check()


def test_an_intent_the_database_cannot_persist_is_denied_and_never_sent(rig, monkeypatch) -> None:
    from amcp.errors import StoreError

    engine = rig.engine
    assert engine.start().ok

    def down(*args: Any, **kwargs: Any) -> bool:
        raise StoreError("connection refused")

    monkeypatch.setattr(engine.state, "save_intents", down)
    events = engine.submit([_order(random.Random(5), 1, rig.now)], rig.ctx())
    assert [e.reason for e in events] == [DenyReason.STATE_UNAVAILABLE]
    assert broker_orders(rig.inspector) == []
    monkeypatch.undo()
    # nothing more is sent until a reconciliation succeeds
    assert engine.submit([_order(random.Random(6), 2, rig.now)], rig.ctx())[0].reason is DenyReason.TRADING_HALTED
    assert engine.reconcile().ok
    assert not isinstance(engine.submit([_order(random.Random(6), 2, rig.now)], rig.ctx())[0], OrderDenied)
    rig.check()


def test_events_wait_in_order_while_the_event_stream_is_down(rig) -> None:
    published: list[Any] = []
    up = {"ok": False}

    def publish(event: Any) -> None:
        if not up["ok"]:
            raise ConnectionError("redis down")
        published.append(event)

    engine = rig.engine
    engine._publish = publish
    assert engine.start().ok
    recorded = engine.submit([_order(random.Random(8), i, rig.now) for i in range(3)], rig.ctx())
    assert engine.unpublished == len(recorded) > 0 and published == []
    up["ok"] = True
    assert engine.flush_outbox() == 0
    assert published == recorded


def test_account_sync_stores_a_snapshot_equal_to_the_broker(rig) -> None:
    engine = rig.engine
    assert engine.start().ok
    engine.submit([_order(random.Random(9), 1, rig.now)], rig.ctx())
    rig.advance(99.0)
    rig.pump()
    account = engine.sync_account()
    snapshot = engine.state.latest_account_snapshot()
    remote = rig.inspector.get("/account")
    assert snapshot.cash == account.cash == Decimal(remote["cash"]) < Decimal(100_000)
    assert snapshot.equity == Decimal(remote["equity"])
    assert engine.risk.state is TradingState.ACTIVE  # the paper account is not blocked
