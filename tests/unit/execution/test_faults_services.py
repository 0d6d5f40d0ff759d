"""PostgreSQL and Redis restarts as the OMS sees them: a :class:`TcpProxy` in front of each is cut.

PostgreSQL down: no order leaves without a persisted intent (the submit is denied
``state_unavailable`` and the paper server never sees it); broker events that cannot be recorded
are recovered by the reconciliation that must succeed before anything is sent again. Redis down:
trading goes on, recorded events wait in the engine's outbox, and a consumer group sees each of
them exactly once, in order, after Redis is back. The invariants hold after every test.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa

from amcp.domain.enums import DenyReason, OrderStatus
from amcp.domain.messages import OrderAccepted, OrderDenied, OrderFilled
from amcp.errors import StoreError
from amcp.store.event_stream import EventConsumer, EventStream
from amcp.store.redis_cache import redact_url
from amcp.testing.tcp_proxy import TcpProxy
from serve.alpaca_paper import AlpacaPaperServer
from tests.conftest import require
from tests.unit.execution._invariants import EXACT, T0, LiveRig, bars, postgres_schema, with_schema

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
OUTAGE_SURFACES_S = 2.0  # a dead service must surface within this, not hang the order path


@pytest.fixture
def server() -> Iterator[AlpacaPaperServer]:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as running:
        running.advance(bars(T0, 100.0))
        yield running


@pytest.fixture
def postgres(postgres_url: str) -> Iterator[tuple[TcpProxy, str, str]]:
    """A proxy in front of PostgreSQL and a fresh schema: (proxy, URL through it, direct URL)."""
    base = sa.make_url(postgres_url)
    target = (base.host or "127.0.0.1", base.port or 5432)
    with postgres_schema(postgres_url) as schema, TcpProxy(*target) as proxy:
        through = base.set(port=proxy.port).update_query_dict({"connect_timeout": "2"})
        through_url = through.render_as_string(hide_password=False)
        yield proxy, with_schema(through_url, schema), with_schema(postgres_url, schema)


@pytest.fixture
def redis_target() -> Iterator[tuple[str, int]]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
        reachable = True
    except redis.exceptions.RedisError:
        reachable = False
    require(reachable, f"Redis is not reachable at {redact_url(REDIS_URL)}")
    kwargs = client.connection_pool.connection_kwargs
    yield str(kwargs.get("host", "127.0.0.1")), int(kwargs.get("port", 6379))
    client.close()


def _order_requests(server: AlpacaPaperServer, cid: str) -> list[str]:
    """Every order request the paper server saw for ``cid`` (method, path, status)."""
    return [f"{r.method} {r.path} {r.status}" for r in server.requests
            if r.method == "POST" and r.path == "/v2/orders" and (r.body or {}).get("client_order_id") == cid]


def test_postgres_down_denies_the_submit_state_unavailable_and_sends_nothing(
        server: AlpacaPaperServer, postgres: tuple[TcpProxy, str, str]) -> None:
    proxy, through, direct = postgres
    rig = LiveRig(server, through, check_db_url=direct, store_options={"max_attempts": 2})
    assert rig.engine.start().ok
    assert isinstance(rig.submit(rig.order("up-0"))[0], OrderAccepted)

    proxy.cut()
    started = time.monotonic()
    events = rig.submit(rig.order("down-0"))
    assert time.monotonic() - started < OUTAGE_SURFACES_S
    assert [type(e) for e in events] == [OrderDenied], events
    assert events[0].reason is DenyReason.STATE_UNAVAILABLE and "state store unavailable" in events[0].message
    assert _order_requests(server, "down-0") == []  # no order without a persisted intent
    assert not rig.engine.reconciled
    with pytest.raises(StoreError):  # still down: reconciliation cannot succeed
        rig.engine.reconcile()

    proxy.restore()
    halted = rig.submit(rig.order("back-0"))  # the database is back, but nothing is sent unreconciled
    assert halted[0].reason is DenyReason.TRADING_HALTED and "not reconciled" in halted[0].message
    assert _order_requests(server, "back-0") == []
    assert rig.engine.reconcile().ok
    assert rig.engine.state.order("down-0") is None  # the failed save did not land
    resent = rig.submit(rig.order("down-0"))  # the strategy re-emits the same intent: sent once now
    assert [type(e) for e in resent] == [OrderAccepted], resent
    assert _order_requests(server, "down-0") == ["POST /v2/orders 200"]
    rig.advance(99.0)
    rig.pump()
    rig.check()


def test_fills_that_arrive_while_postgres_is_down_are_recovered_by_reconciliation(
        server: AlpacaPaperServer, postgres: tuple[TcpProxy, str, str]) -> None:
    proxy, through, direct = postgres
    rig = LiveRig(server, through, check_db_url=direct, store_options={"max_attempts": 2})
    assert rig.engine.start().ok
    working = [rig.order("fill-0", quantity=3), rig.order("fill-1", symbol="MSFT", quantity=5),
               rig.order("rest-0", symbol="JPM", quantity=2, limit="95")]
    rig.submit(*working)

    proxy.cut()
    rig.advance(99.0)  # the market orders fill at the broker; the stream delivers the fills
    started = time.monotonic()
    assert rig.pump() == []  # ...which the store cannot record
    assert time.monotonic() - started < OUTAGE_SURFACES_S
    assert not rig.engine.reconciled
    denied = rig.submit(rig.order("while-down"))
    assert denied[0].reason is DenyReason.TRADING_HALTED and _order_requests(server, "while-down") == []

    proxy.restore()
    denied = rig.submit(rig.order("before-reconcile"))  # nothing is sent until reconciled
    assert denied[0].reason is DenyReason.TRADING_HALTED and _order_requests(server, "before-reconcile") == []
    report = rig.engine.reconcile()
    assert report.ok, report.to_dict()
    assert report.missed_fill_quantity == Decimal(8)
    assert rig.engine.state.order("fill-0").status is OrderStatus.FILLED
    assert rig.engine.state.order("rest-0").status is OrderStatus.NEW  # resting, untouched
    rig.check()
    rig.seen_updates = 0  # the lost stream copies arrive late after all: they must not count twice
    late = rig.pump()
    assert not any(isinstance(e, OrderFilled) for e in late)
    rig.check()


def test_redis_down_keeps_trading_and_publishes_the_outbox_in_order_exactly_once(
        server: AlpacaPaperServer, redis_target: tuple[str, int], tmp_path: Path) -> None:
    name = f"test-faults-{uuid.uuid4().hex}"
    with TcpProxy(*redis_target) as proxy:
        stream = EventStream(f"redis://127.0.0.1:{proxy.port}/0", stream=name, socket_timeout_s=0.5)
        direct = EventStream(REDIS_URL, stream=name)
        try:
            rig = LiveRig(server, f"sqlite:///{tmp_path / 'state.sqlite'}", publish=stream.publish)
            assert rig.engine.start().ok
            rig.submit(rig.order("a"))
            assert rig.engine.unpublished == 0 and direct.length() == 1

            proxy.cut()
            started = time.monotonic()
            accepted = rig.submit(rig.order("b", symbol="MSFT"), rig.order("c", symbol="JPM", limit="95"))
            assert time.monotonic() - started < OUTAGE_SURFACES_S
            assert [type(e) for e in accepted] == [OrderAccepted, OrderAccepted]  # trading goes on
            rig.advance(99.0)
            rig.pump()
            waiting = len(rig.recorded) - 1
            assert waiting >= 4 and rig.engine.unpublished == waiting and direct.length() == 1

            proxy.restore()
            rig.submit(rig.order("d", symbol="AAPL", limit="95"))  # the next publish drains the outbox first
            assert rig.engine.unpublished == 0

            consumer = EventConsumer(direct, "oms-readers", "reader-1", start_id="0")
            deliveries = consumer.read(count=1000)
            assert [d.event for d in deliveries] == rig.recorded  # every recorded event, in order
            assert all(d.attempts == 1 for d in deliveries)
            assert consumer.ack([d.id for d in deliveries]) == len(deliveries)
            assert consumer.read(count=1000) == []  # exactly once
            rig.check()
        finally:
            direct.delete()
            direct._redis.delete(f"{name}:dead")
            stream.close()
            direct.close()
