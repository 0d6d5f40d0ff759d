"""Real restarts of PostgreSQL and Redis under the live OMS: no order without a persisted intent.

``test_faults_services.py`` models a restart as connections cut by a proxy. Here the servers
themselves stop (a fast shutdown), crash (SIGKILL of every server process) and start again on the
same address (:mod:`amcp.testing.services`), under the real engine, the real alpaca-py
``AlpacaBroker`` against the in-process paper server, the trading state and audit log on a
private PostgreSQL and the event stream on a private Redis. The invariants of
``_invariants.py`` hold after every test.

- PostgreSQL down: the submit that meets the outage is denied ``state_unavailable`` and leaves
  the engine un-reconciled, so every later submit is denied ``trading_halted`` until a
  reconciliation succeeds, which it cannot before the restart; no request reaches the paper
  server for any of those intents. After the restart a reconciliation brings trading back.
- Fills arriving while PostgreSQL restarts are recovered by that reconciliation from the
  account's FILL activities, under the executions' own ids.
- Redis down: trading goes on and recorded events wait in the engine's outbox; after the restart
  they are published in order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from amcp.domain.enums import DenyReason, OrderStatus
from amcp.domain.messages import OrderAccepted, OrderDenied, OrderEvent, OrderFilled
from amcp.errors import StoreError
from amcp.store.event_stream import EventConsumer, EventStream
from amcp.testing.services import PrivatePostgres, PrivateRedis
from serve.alpaca_paper import AlpacaPaperServer
from tests.conftest import require
from tests.unit.execution._invariants import EXACT, T0, LiveRig, bars, with_schema

OUTAGES = ["stop", "kill"]  # PrivatePostgres/PrivateRedis methods: a fast shutdown, a SIGKILL crash


@pytest.fixture
def server() -> Iterator[AlpacaPaperServer]:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as running:
        running.advance(bars(T0, 100.0))
        yield running


@pytest.fixture(scope="module")
def postgres() -> Iterator[PrivatePostgres]:
    require(PrivatePostgres.available(),
            "PostgreSQL server binaries (initdb, postgres, pg_isready) or, as root, a 'postgres' user are missing")
    with PrivatePostgres() as running:
        yield running


def _admin(url: str, statement: str) -> None:
    """Run ``statement`` on a fresh engine: a pooled session may have died in a restart."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


@pytest.fixture
def database(postgres: PrivatePostgres) -> Iterator[str]:
    """A fresh schema on the private PostgreSQL (started again if a test left it down); its URL."""
    if not postgres.running:
        postgres.start()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    _admin(postgres.url, f"CREATE SCHEMA {schema}")
    yield with_schema(postgres.url, schema)
    if not postgres.running:
        postgres.start()
    _admin(postgres.url, f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def private_redis() -> Iterator[PrivateRedis]:
    require(PrivateRedis.available(), "redis-server is not on PATH")
    with PrivateRedis() as running:
        yield running


def _order_requests(server: AlpacaPaperServer, cid: str) -> list[str]:
    """Every order request the paper server saw for ``cid`` (method, path, status)."""
    return [f"{r.method} {r.path} {r.status}" for r in server.requests
            if r.method == "POST" and r.path == "/v2/orders" and (r.body or {}).get("client_order_id") == cid]


def _fills(events: list[OrderEvent]) -> list[OrderFilled]:
    return [e for e in events if isinstance(e, OrderFilled)]


@pytest.mark.parametrize("outage", OUTAGES)
def test_postgres_down_denies_every_submit_and_sends_nothing_until_restarted_and_reconciled(
        server: AlpacaPaperServer, postgres: PrivatePostgres, database: str, outage: str) -> None:
    rig = LiveRig(server, database)
    assert rig.engine.start().ok
    assert isinstance(rig.submit(rig.order("up-0", quantity=2))[0], OrderAccepted)
    rig.advance(99.0)
    rig.pump()
    sent = rig.engine.sent

    getattr(postgres, outage)()
    first = rig.submit(rig.order("down-0"))
    assert [type(e) for e in first] == [OrderDenied], first
    assert first[0].reason is DenyReason.STATE_UNAVAILABLE and "state store unavailable" in first[0].message
    assert not rig.engine.reconciled
    later = rig.submit(rig.order("down-1", symbol="MSFT"), rig.order("down-2", symbol="JPM"))
    assert [(type(e), e.reason) for e in later] == [(OrderDenied, DenyReason.TRADING_HALTED)] * 2, later
    with pytest.raises(StoreError):  # still down: reconciliation cannot succeed
        rig.engine.reconcile()
    down = ["down-0", "down-1", "down-2"]
    assert rig.engine.sent == sent and [_order_requests(server, cid) for cid in down] == [[], [], []]

    postgres.start()
    halted = rig.submit(rig.order("back-0"))  # the database is back, but nothing is sent unreconciled
    assert halted[0].reason is DenyReason.TRADING_HALTED and "not reconciled" in halted[0].message
    assert _order_requests(server, "back-0") == []
    assert rig.engine.reconcile().ok
    assert rig.engine.state.order("up-0").status is OrderStatus.FILLED  # committed before the outage
    assert [rig.engine.state.order(cid) for cid in down] == [None, None, None]  # no denied intent landed
    resent = rig.submit(*(rig.order(cid, symbol=s) for cid, s in zip(down, ["AAPL", "MSFT", "JPM"], strict=True)))
    assert [type(e) for e in resent] == [OrderAccepted] * 3, resent
    assert [_order_requests(server, cid) for cid in down] == [["POST /v2/orders 200"]] * 3
    rig.advance(98.0)
    assert len(_fills(rig.pump())) == 3
    rig.check()
    rig.close()


def test_a_postgres_restart_while_idle_costs_nothing(
        server: AlpacaPaperServer, postgres: PrivatePostgres, database: str) -> None:
    """The database restarts between two submits, with no query meanwhile.

    The state store tests pooled connections before use (``pool_pre_ping``), so the sessions the
    restart ended are replaced and the next submit is persisted and sent as if nothing happened.
    """
    rig = LiveRig(server, database)
    assert rig.engine.start().ok
    assert isinstance(rig.submit(rig.order("before"))[0], OrderAccepted)

    postgres.restart()
    after = rig.submit(rig.order("after"))

    assert [type(e) for e in after] == [OrderAccepted], after
    assert _order_requests(server, "after") == ["POST /v2/orders 200"] and rig.engine.reconciled
    rig.advance(99.0)
    rig.pump()
    rig.check()
    rig.close()


@pytest.mark.parametrize("outage", OUTAGES)
def test_fills_arriving_across_a_postgres_restart_are_recorded_by_reconciliation_from_fill_activities(
        server: AlpacaPaperServer, postgres: PrivatePostgres, database: str, outage: str) -> None:
    rig = LiveRig(server, database)
    assert rig.engine.start().ok
    quantities = {"fill-0": 3, "fill-1": 5, "fill-2": 4}
    rig.submit(*(rig.order(cid, symbol=s, quantity=q)
                 for (cid, q), s in zip(quantities.items(), ["AAPL", "MSFT", "JPM"], strict=True)),
               rig.order("rest-0", symbol="JPM", quantity=2, limit="95"))
    rig.pump()  # the stream's copies of the accepts
    rig.advance(99.0)  # the three market orders fill at the broker
    updates = server.trade_updates[rig.seen_updates:]
    rig.seen_updates += len(updates)
    assert [u["event"] for u in updates] == ["fill"] * 3

    recorded = rig.engine.on_trade_updates(updates[:1], "s1")  # the first fill arrives and is recorded
    first = str(updates[0]["order"]["client_order_id"])
    assert [str(e.client_order_id) for e in _fills(recorded)] == [first]
    getattr(postgres, outage)()
    assert rig.engine.on_trade_updates(updates[1:], "s1") == []  # the rest arrive while it is down
    assert not rig.engine.reconciled
    postgres.start()

    report = rig.engine.reconcile()
    assert report.ok, report.to_dict()
    missed = sum(q for cid, q in quantities.items() if cid != first)
    if outage == "stop":  # a clean shutdown flushes every commit
        assert report.missed_fill_quantity == Decimal(missed)
    else:  # events commit without waiting for the disk: the killed server may have lost the first
        # fill too (its whole transaction); reconciliation recovers it from the broker either way
        assert report.missed_fill_quantity in (Decimal(missed), Decimal(missed + quantities[first]))
    activities = rig.inspector.get("/account/activities/FILL", {})
    for cid, quantity in quantities.items():
        row = rig.engine.state.order(cid)
        assert row.status is OrderStatus.FILLED and row.filled_quantity == Decimal(quantity)
        executions = {str(a["id"]) for a in activities if a["order_id"] == row.broker_order_id}
        assert {str(f.trade_id) for f in rig.engine.state.fills(cid)} == executions  # the executions' ids
    assert rig.engine.state.order("rest-0").status is OrderStatus.NEW  # resting, untouched
    assert rig.engine.state.positions() == rig.broker.positions()
    rig.check()

    late = rig.engine.on_trade_updates(updates[1:], "s1")  # the stream's copies arrive after all
    assert _fills(late) == []  # recorded once, under the same execution ids
    rig.check()
    rig.close()


@pytest.mark.parametrize("outage", OUTAGES)
def test_redis_restart_keeps_events_in_the_outbox_and_publishes_them_in_order_afterwards(
        server: AlpacaPaperServer, private_redis: PrivateRedis, database: str, outage: str) -> None:
    """Redis keeps nothing on disk here (as the CI's Redis): the restart empties the stream, so
    what was published before it is gone; everything recorded from the outage on reaches the new
    stream, in order, exactly once."""
    stream = EventStream(private_redis.url, stream=f"test-restart-{uuid.uuid4().hex}", socket_timeout_s=0.5)
    try:
        rig = LiveRig(server, database, publish=stream.publish)
        assert rig.engine.start().ok
        rig.submit(rig.order("a"))
        assert rig.engine.unpublished == 0 and stream.length() == 1

        getattr(private_redis, outage)()
        accepted = rig.submit(rig.order("b", symbol="MSFT"), rig.order("c", symbol="JPM", limit="95"))
        assert [type(e) for e in accepted] == [OrderAccepted, OrderAccepted]  # trading goes on
        rig.advance(99.0)
        rig.pump()
        waiting = rig.recorded[1:]
        assert len(waiting) >= 4 and rig.engine.unpublished == len(waiting)
        assert rig.engine.flush_outbox() == len(waiting)  # still down: nothing leaves the outbox

        private_redis.start()
        assert stream.length() == 0  # the pre-restart entry did not survive
        assert rig.engine.flush_outbox() == 0
        assert [event for _, event in stream.read_range()] == waiting
        rig.submit(rig.order("d", symbol="AAPL", limit="95"))  # published at once
        assert rig.engine.unpublished == 0

        consumer = EventConsumer(stream, "oms-readers", "reader-1", start_id="0")
        deliveries = consumer.read(count=1000)
        assert [d.event for d in deliveries] == rig.recorded[1:]  # every event since the outage, in order
        assert consumer.ack([d.id for d in deliveries]) == len(deliveries)
        assert consumer.read(count=1000) == []  # exactly once
        rig.check()
        rig.close()
    finally:
        stream.delete()
        stream.close()
