"""EventStream and EventConsumer against the machine's Redis: round trip, groups, redelivery, dead letters."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis

from amcp.domain import messages
from amcp.domain.enums import (
    DenyReason,
    LiquiditySide,
    OrderClass,
    OrderSide,
    OrderStatus,
    OrderType,
    PositionIntent,
    TimeInForce,
    TradingState,
)
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId
from amcp.domain.serialization import to_json
from amcp.errors import StoreError
from amcp.store.event_stream import EventConsumer, EventStream
from amcp.store.redis_cache import redact_url
from tests.conftest import require

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
T0 = 1_700_000_040_123_456_789
COID = ClientOrderId("momentum-1-1700000040123456789-0-9f86d081")
STRATEGY = StrategyId("momentum-1")


@pytest.fixture(scope="module")
def raw_redis() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
        reachable = True
    except redis.exceptions.RedisError:
        reachable = False
    require(reachable, f"Redis is not reachable at {redact_url(REDIS_URL)}")
    yield client
    client.close()


@pytest.fixture
def stream(raw_redis: redis.Redis) -> Iterator[EventStream]:
    name = f"test-events-{uuid.uuid4().hex}"
    event_stream = EventStream(REDIS_URL, stream=name)
    yield event_stream
    raw_redis.delete(name, f"{name}:dead")
    event_stream.close()


def _one_of_each() -> list[Any]:
    """One instance of every message class, with values that a lossy encoding would change."""
    return [
        messages.OrderIntent(
            strategy_id=STRATEGY,
            symbol="AAPL",
            side=OrderSide.BUY,
            quantity=Decimal("10.500"),
            order_type=OrderType.TRAILING_STOP,
            time_in_force=TimeInForce.GTC,
            trail_percent=Decimal("0.25"),
            reduce_only=True,
            tag="breakout",
        ),
        messages.TargetWeight(strategy_id=STRATEGY, symbol="MSFT", weight=0.1 + 0.2, tag="rebalance"),
        messages.SubmitOrder(
            client_order_id=COID,
            strategy_id=STRATEGY,
            symbol="AAPL",
            side=OrderSide.SELL,
            quantity=Decimal("0.000000001"),
            order_type=OrderType.STOP_LIMIT,
            time_in_force=TimeInForce.IOC,
            limit_price=Decimal("189.1200"),
            stop_price=Decimal("1E+3"),
            ts_ns=2**63 - 1,
            tag="exit",
        ),
        messages.CancelOrder(client_order_id=COID, ts_ns=T0, reason="user request"),
        messages.ReplaceOrder(
            client_order_id=COID,
            new_client_order_id=ClientOrderId("momentum-1-replace-1"),
            ts_ns=T0 + 1,
            quantity=Decimal("7"),
            limit_price=Decimal("189.13"),
        ),
        messages.CancelAllOrders(ts_ns=T0 + 2, reason="kill switch"),
        messages.OrderDenied(
            client_order_id=COID,
            ts_ns=T0 + 3,
            reason=DenyReason.PRICE_COLLAR,
            message="limit 250.00 is 32% from reference 189.12",
            strategy_id=STRATEGY,
            symbol="AAPL",
        ),
        messages.OrderSubmitted(client_order_id=COID, ts_ns=T0 + 4),
        messages.OrderAccepted(
            client_order_id=COID, venue_order_id=VenueOrderId("61e69015-8549-4bfd"), ts_ns=T0 + 5
        ),
        messages.OrderRejected(client_order_id=COID, ts_ns=T0 + 6, reason="insufficient qty — ünïcode"),
        messages.OrderFilled(
            client_order_id=COID,
            venue_order_id=VenueOrderId("61e69015-8549-4bfd"),
            trade_id=TradeId("t-1"),
            strategy_id=STRATEGY,
            symbol="AAPL",
            side=OrderSide.BUY,
            last_quantity=Decimal("3.25"),
            last_price=Decimal("189.1234"),
            fee=Decimal("0.00"),
            liquidity=LiquiditySide.MAKER,
            ts_ns=T0 + 7,
        ),
        messages.OrderCanceled(client_order_id=COID, ts_ns=T0 + 8),
        messages.OrderExpired(client_order_id=COID, ts_ns=T0 + 9, reason="day order at the close"),
        messages.OrderReplaced(
            client_order_id=COID, new_client_order_id=ClientOrderId("momentum-1-replace-1"), ts_ns=T0 + 10
        ),
        messages.OrderStatusChanged(client_order_id=COID, status=OrderStatus.PENDING_CANCEL, ts_ns=T0 + 11),
        messages.TradingStateChanged(
            previous=TradingState.ACTIVE, state=TradingState.HALTED, ts_ns=T0 + 12, reason="drawdown"
        ),
        messages.OrderLeg(symbol="SPY260116C00500000", side=OrderSide.SELL, ratio_quantity=2,
                          position_intent=PositionIntent.SELL_TO_OPEN),
        messages.SubmitOrder(  # a multi-leg order: the legs travel as nested records
            client_order_id=ClientOrderId("condor-1"),
            strategy_id=STRATEGY,
            symbol="SPY",
            side=OrderSide.BUY,
            quantity=Decimal("3"),
            order_type=OrderType.LIMIT,
            limit_price=Decimal("-1.25"),
            order_class=OrderClass.MLEG,
            legs=(
                messages.OrderLeg(symbol="SPY260116C00500000", side=OrderSide.BUY,
                                  position_intent=PositionIntent.BUY_TO_OPEN),
                messages.OrderLeg(symbol="SPY260116C00510000", side=OrderSide.SELL, ratio_quantity=2,
                                  position_intent=PositionIntent.SELL_TO_OPEN),
            ),
            ts_ns=T0 + 13,
        ),
        messages.OrderLegAccepted(
            client_order_id=ClientOrderId("leg-7a1"),
            parent_client_order_id=COID,
            venue_order_id=VenueOrderId("8f2e-leg"),
            symbol="AAPL",
            side=OrderSide.SELL,
            quantity=Decimal("10"),
            order_type=OrderType.STOP,
            stop_price=Decimal("180.05"),
            time_in_force=TimeInForce.GTC,
            ts_ns=T0 + 14,
        ),
    ]


def _cancels(n: int) -> list[messages.CancelOrder]:
    return [messages.CancelOrder(client_order_id=ClientOrderId(f"order-{i}"), ts_ns=T0 + i) for i in range(n)]


def _field_types(event: Any) -> list[type]:
    return [type(getattr(event, field.name)) for field in dataclasses.fields(event)]


# --------------------------------------------------------------------------- publish and read_range


def test_every_message_type_round_trips_exactly(stream: EventStream) -> None:
    events = _one_of_each()
    declared = {
        obj
        for obj in vars(messages).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == messages.__name__
    }

    ids = [stream.publish(event) for event in events]
    read = stream.read_range()

    assert {type(event) for event in events} == declared  # a new message class must be added above
    assert [entry_id for entry_id, _ in read] == ids
    decoded = [event for _, event in read]
    assert decoded == events
    assert [to_json(event) for event in decoded] == [to_json(event) for event in events]
    assert [_field_types(event) for event in decoded] == [_field_types(event) for event in events]
    submit = decoded[2]
    assert str(submit.limit_price) == "189.1200" and submit.ts_ns == 2**63 - 1


def test_publish_many_keeps_order_in_one_batch_and_range_reads_slices(stream: EventStream) -> None:
    events = _cancels(30)

    ids = stream.publish_many(events)
    everything = stream.read_range()
    middle = stream.read_range(ids[10], ids[19])
    after_first = stream.read_range(f"({ids[0]}", count=3)

    assert [event for _, event in everything] == events
    assert [entry_id for entry_id, _ in everything] == ids
    assert [tuple(map(int, entry_id.split("-"))) for entry_id in ids] == sorted(
        tuple(map(int, entry_id.split("-"))) for entry_id in ids
    )
    assert len(set(ids)) == 30
    assert [event for _, event in middle] == events[10:20]
    assert [event for _, event in after_first] == events[1:4]
    assert stream.length() == 30


def test_publish_many_with_one_non_message_publishes_nothing(stream: EventStream) -> None:
    with pytest.raises(StoreError, match="cannot publish a dict"):
        stream.publish_many([*_cancels(2), {"type": "CancelOrder"}])

    assert stream.length() == 0


def test_read_range_names_the_id_of_a_corrupt_entry(stream: EventStream, raw_redis: redis.Redis) -> None:
    stream.publish(_cancels(1)[0])
    bad_id = raw_redis.xadd(stream.name, {"type": "CancelOrder", "data": "{not json"}).decode()

    with pytest.raises(StoreError, match=f"entry {bad_id}"):
        stream.read_range()

    assert [event for _, event in stream.read_range(count=1)] == _cancels(1)


def test_delete_empties_the_stream(stream: EventStream) -> None:
    stream.publish_many(_cancels(3))

    stream.delete()

    assert stream.length() == 0
    assert stream.read_range() == []


def test_max_len_keeps_the_stream_bounded(raw_redis: redis.Redis) -> None:
    name = f"test-events-{uuid.uuid4().hex}"
    bounded = EventStream(REDIS_URL, stream=name, max_len=50)
    node_entries = int(raw_redis.config_get("stream-node-max-entries")["stream-node-max-entries"])
    events = _cancels(1000)
    try:
        for start in range(0, 1000, 100):
            bounded.publish_many(events[start : start + 100])
        for event in events[:50]:
            bounded.publish(event)
        length = bounded.length()
        newest = bounded.read_range("-", "+")[-1][1]
    finally:
        bounded.delete()
        bounded.close()

    assert 50 <= length <= 50 + node_entries
    assert newest == events[49]


# --------------------------------------------------------------------------- groups


def test_each_group_sees_every_event(stream: EventStream) -> None:
    events = _cancels(12)
    stream.publish_many(events)
    api = EventConsumer(stream, "api", "api-1")
    portfolio = EventConsumer(stream, "portfolio", "portfolio-1")

    api_events = [delivery.event for delivery in api.read(count=100)]
    portfolio_events = [delivery.event for delivery in portfolio.read(count=100)]

    assert api_events == events
    assert portfolio_events == events


def test_consumers_of_one_group_split_the_events_without_overlap(stream: EventStream) -> None:
    events = _cancels(20)
    stream.publish_many(events)
    first = EventConsumer(stream, "workers", "worker-1")
    second = EventConsumer(stream, "workers", "worker-2")

    batches = [first.read(count=7), second.read(count=7), first.read(count=7), second.read(count=7)]

    ids = [delivery.id for batch in batches for delivery in batch]
    assert [len(batch) for batch in batches] == [7, 7, 6, 0]
    assert len(ids) == len(set(ids)) == 20
    delivered = sorted(delivery.event.ts_ns for batch in batches for delivery in batch)
    assert delivered == [event.ts_ns for event in events]


def test_a_group_started_at_dollar_skips_history(stream: EventStream) -> None:
    stream.publish_many(_cancels(3))
    live = EventConsumer(stream, "live", "live-1", start_id="$")
    live.ensure_group()
    later = messages.OrderSubmitted(client_order_id=COID, ts_ns=T0 + 99)
    stream.publish(later)

    assert [delivery.event for delivery in live.read()] == [later]


def test_a_consumer_catches_up_in_batches_and_then_reads_nothing(stream: EventStream) -> None:
    events = _cancels(25)
    stream.publish_many(events)
    consumer = EventConsumer(stream, "slow", "slow-1")

    seen: list[Any] = []
    while batch := consumer.read(count=10):
        seen.extend(delivery.event for delivery in batch)
        consumer.ack([delivery.id for delivery in batch])

    assert seen == events
    assert consumer.read(count=10, block_ms=10) == []
    assert consumer.stats().acked == 25


def test_group_is_recreated_after_the_stream_is_deleted(stream: EventStream) -> None:
    consumer = EventConsumer(stream, "api", "api-1")
    stream.publish_many(_cancels(2))
    consumer.read()
    stream.delete()
    fresh = messages.OrderSubmitted(client_order_id=COID, ts_ns=T0)
    stream.publish(fresh)

    assert [delivery.event for delivery in consumer.read()] == [fresh]


# --------------------------------------------------------------------------- at least once


def test_unacked_events_of_a_crashed_consumer_are_claimed_by_another(stream: EventStream) -> None:
    events = _cancels(5)
    stream.publish_many(events)
    crashed = EventConsumer(stream, "oms-watchers", "watcher-1")
    survivor = EventConsumer(stream, "oms-watchers", "watcher-2")
    taken = crashed.read()  # ... and never acknowledged

    claimed = survivor.claim_stale(min_idle_ms=0)

    assert [delivery.id for delivery in claimed] == [delivery.id for delivery in taken]
    assert [delivery.event for delivery in claimed] == events
    assert [delivery.attempts for delivery in taken] == [1] * 5
    assert [delivery.attempts for delivery in claimed] == [2] * 5
    assert {info.consumer for info in survivor.pending()} == {"watcher-2"}
    assert survivor.stats().claimed == 5


def test_claim_stale_leaves_entries_younger_than_min_idle(stream: EventStream) -> None:
    stream.publish_many(_cancels(3))
    busy = EventConsumer(stream, "g", "busy")
    busy.read()
    other = EventConsumer(stream, "g", "other")

    claimed = other.claim_stale(min_idle_ms=3_600_000)

    assert claimed == []
    assert {info.consumer for info in other.pending()} == {"busy"}


def test_claim_stale_respects_count(stream: EventStream) -> None:
    stream.publish_many(_cancels(5))
    EventConsumer(stream, "g", "crashed").read()
    survivor = EventConsumer(stream, "g", "survivor")

    first = survivor.claim_stale(min_idle_ms=0, count=2)

    assert len(first) == 2
    assert [info.consumer for info in survivor.pending()] == ["survivor"] * 2 + ["crashed"] * 3


def test_ack_removes_from_pending(stream: EventStream) -> None:
    stream.publish_many(_cancels(4))
    consumer = EventConsumer(stream, "g", "c-1")
    deliveries = consumer.read()
    before = consumer.pending()

    acked = consumer.ack([deliveries[0].id, deliveries[2].id])
    acked_again = consumer.ack([deliveries[0].id])

    assert [(info.id, info.consumer, info.deliveries) for info in before] == [
        (delivery.id, "c-1", 1) for delivery in deliveries
    ]
    assert acked == 2 and acked_again == 0
    assert [info.id for info in consumer.pending()] == [deliveries[1].id, deliveries[3].id]
    assert consumer.pending(consumer="someone-else") == []


# --------------------------------------------------------------------------- dead letters


def test_undecodable_entries_go_to_dead_letter_and_the_consumer_continues(
    stream: EventStream, raw_redis: redis.Redis
) -> None:
    good = _cancels(3)
    stream.publish(good[0])
    garbage: list[dict[bytes, bytes]] = [
        {b"type": b"CancelOrder", b"data": b"{not json"},
        {b"type": b"OrderTeleported", b"data": b'{"type":"OrderTeleported","ts_ns":1}'},
        {b"\xff\xfe": b"\x00\x81\xff"},
        {b"type": b"CancelOrder", b"data": b'{"client_order_id":"a","ts_ns":"soon","type":"CancelOrder"}'},
        {b"type": b"OrderFilled", b"data": b'{"client_order_id":"a","ts_ns":1,"type":"CancelOrder"}'},
        {b"type": b"CancelOrder", b"data": b'{"client_order_id":"a","ts_ns":1,"type":"CancelOrder","x":2}'},
    ]
    bad_ids = [raw_redis.xadd(stream.name, fields).decode() for fields in garbage]  # type: ignore[arg-type]
    stream.publish_many(good[1:])
    consumer = EventConsumer(stream, "api", "api-1")

    deliveries = consumer.read()
    letters = consumer.dead_letters()

    assert [delivery.event for delivery in deliveries] == good
    assert [letter.source_id for letter in letters] == bad_ids
    assert [letter.payload for letter in letters] == [
        {key.decode(errors="backslashreplace"): value for key, value in fields.items()} for fields in garbage
    ]
    assert all(letter.reason.startswith("undecodable") for letter in letters)
    assert "ts_ns" in letters[3].reason and "OrderTeleported" in letters[1].reason
    assert {(letter.group, letter.consumer, letter.source_stream) for letter in letters} == {
        ("api", "api-1", stream.name)
    }
    # the dead-lettered entries were acknowledged; only the good ones wait for the caller's ack
    assert [info.id for info in consumer.pending()] == [delivery.id for delivery in deliveries]
    assert consumer.stats().undecodable == 6 and consumer.stats().delivered == 3


def test_poison_message_is_dead_lettered_after_max_deliveries(stream: EventStream) -> None:
    poison = messages.OrderSubmitted(client_order_id=COID, ts_ns=T0)
    poison_id = stream.publish(poison)
    first = EventConsumer(stream, "g", "first", max_deliveries=3)
    second = EventConsumer(stream, "g", "second", max_deliveries=3)

    attempts = [delivery.attempts for delivery in first.read()]  # each handler "crashes" before ack
    attempts += [delivery.attempts for delivery in second.claim_stale(min_idle_ms=0)]
    attempts += [delivery.attempts for delivery in first.claim_stale(min_idle_ms=0)]
    fourth = second.claim_stale(min_idle_ms=0)

    assert attempts == [1, 2, 3]
    assert fourth == []
    assert second.pending() == []
    [letter] = second.dead_letters()
    assert (letter.source_id, letter.deliveries, letter.consumer) == (poison_id, 4, "second")
    assert "max_deliveries=3" in letter.reason
    assert letter.payload["data"].decode() == to_json(poison)
    assert second.stats().poison == 1 and second.stats().dead_lettered == 1


def test_entry_trimmed_before_ack_is_recorded_not_lost_silently(
    stream: EventStream, raw_redis: redis.Redis
) -> None:
    stream.publish_many(_cancels(2))
    crashed = EventConsumer(stream, "g", "crashed")
    taken = crashed.read()
    raw_redis.xdel(stream.name, taken[0].id)
    survivor = EventConsumer(stream, "g", "survivor")

    claimed = survivor.claim_stale(min_idle_ms=0)

    assert [delivery.id for delivery in claimed] == [taken[1].id]
    [letter] = survivor.dead_letters()
    assert letter.source_id == taken[0].id and "trimmed" in letter.reason
    assert survivor.stats().trimmed == 1
    assert [info.id for info in survivor.pending()] == [taken[1].id]


def test_dead_letter_stream_name_can_be_chosen(stream: EventStream, raw_redis: redis.Redis) -> None:
    raw_redis.xadd(stream.name, {"junk": "1"})
    dead = f"{stream.name}:quarantine"
    consumer = EventConsumer(stream, "g", "c", dead_letter_stream=dead)
    try:
        consumer.read()
        assert raw_redis.xlen(dead) == 1
        assert raw_redis.xlen(f"{stream.name}:dead") == 0
    finally:
        raw_redis.delete(dead)


# --------------------------------------------------------------------------- errors


def test_unreachable_server_raises_store_error_without_credentials() -> None:
    stream = EventStream("redis://trader:hunter2@127.0.0.1:1/0", stream="x", socket_timeout_s=0.5)
    consumer = EventConsumer(stream, "g", "c")

    with pytest.raises(StoreError) as publish_error:
        stream.publish(_cancels(1)[0])
    with pytest.raises(StoreError) as read_error:
        consumer.read()

    for error in (publish_error.value, read_error.value):
        assert "127.0.0.1:1" in str(error)
        assert "hunter2" not in str(error) and "trader" not in str(error)


def test_publishing_a_non_message_names_its_type(stream: EventStream) -> None:
    with pytest.raises(StoreError, match="cannot publish a str"):
        stream.publish("OrderFilled")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_len": 0}, "max_len must be a positive int"),
        ({"stream": ""}, "stream name must be a non-empty string"),
        ({"socket_timeout_s": 0}, "socket_timeout_s must be positive"),
    ],
)
def test_invalid_stream_arguments_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(StoreError, match=match):
        EventStream(REDIS_URL, **kwargs)


def test_invalid_consumer_arguments_are_refused(stream: EventStream) -> None:
    with pytest.raises(StoreError, match="max_deliveries must be a positive int"):
        EventConsumer(stream, "g", "c", max_deliveries=0)
    with pytest.raises(StoreError, match="group must be a non-empty string"):
        EventConsumer(stream, "", "c")
    with pytest.raises(StoreError, match="dead_letter_stream must be"):
        EventConsumer(stream, "g", "c", dead_letter_stream=stream.name)
    consumer = EventConsumer(stream, "g", "c")
    with pytest.raises(StoreError, match=r"block_ms must be an int from 1 to 1750 .* \(got 5000\)"):
        consumer.read(block_ms=5000)
    with pytest.raises(StoreError, match="count must be a positive int"):
        consumer.read(count=0)
    with pytest.raises(StoreError, match="min_idle_ms must be a non-negative int"):
        consumer.claim_stale(min_idle_ms=-1)
