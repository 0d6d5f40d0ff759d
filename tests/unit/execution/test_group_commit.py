"""Group commit of concurrent submits: the batching primitive, the engine's joint path, and the
threaded OMS service — every guarantee of the one-at-a-time path holds per intent."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from amcp.config import RiskConfig
from amcp.domain.enums import DenyReason, OrderStatus
from amcp.domain.messages import OrderAccepted, OrderDenied, OrderEvent, SubmitOrder
from amcp.errors import ExecutionError, StoreError
from amcp.execution.group_commit import GroupCommit
from amcp.execution.live import LiveExecutionEngine, LiveOMS
from amcp.risk.engine import RiskEngine
from serve.alpaca_paper import AlpacaPaperServer
from tests.unit.execution._invariants import EXACT, KEY, SECRET, T0, LiveRig, bars, broker_orders

# --------------------------------------------------------------------------- the primitive


def test_concurrent_callers_are_batched_and_each_gets_its_own_result() -> None:
    first_batch_running, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []

    def process(items: Sequence[int]) -> list[int]:
        batches.append(list(items))
        if len(batches) == 1:
            first_batch_running.set()
            release.wait(5)
        return [item * 10 for item in items]

    group: GroupCommit[int, int] = GroupCommit(process, threading.RLock(), max_batch=3)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(group.run, 0)
        assert first_batch_running.wait(5)
        rest = [pool.submit(group.run, i) for i in range(1, 8)]  # all queue behind the first batch
        while len(group._queue) < 7:  # noqa: SLF001 - wait until every caller has queued
            threading.Event().wait(0.001)
        release.set()
        results = [first.result(5), *(future.result(5) for future in rest)]

    assert results == [i * 10 for i in range(8)]
    assert batches[0] == [0]
    assert sorted(i for batch in batches[1:] for i in batch) == list(range(1, 8))
    assert [len(batch) for batch in batches[1:]] == [3, 3, 1]  # FIFO, at most max_batch each
    assert group.batches == 4 and group.largest_batch == 3


def test_an_exception_reaches_every_caller_of_its_batch_and_no_other() -> None:
    def process(items: Sequence[str]) -> list[str]:
        if "bad" in items:
            raise ValueError("batch failed")
        return [item.upper() for item in items]

    group: GroupCommit[str, str] = GroupCommit(process, threading.RLock())
    with pytest.raises(ValueError, match="batch failed"):
        group.run("bad")
    assert group.run("good") == "GOOD"


def test_a_process_that_returns_the_wrong_number_of_results_fails_the_batch() -> None:
    group: GroupCommit[int, int] = GroupCommit(lambda items: [], threading.RLock())
    with pytest.raises(ExecutionError, match="1 requests but 0 results"):
        group.run(1)


@pytest.mark.parametrize("max_batch", [0, -1, 2.0, True])
def test_max_batch_must_be_a_positive_int(max_batch: Any) -> None:
    with pytest.raises(ExecutionError, match="max_batch"):
        GroupCommit(lambda items: list(items), threading.RLock(), max_batch=max_batch)


# --------------------------------------------------------------------------- the engine


@pytest.fixture
def rig(tmp_path) -> Iterator[LiveRig]:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as server:
        server.advance(bars(T0, 100.0))
        live = LiveRig(server, f"sqlite:///{tmp_path / 'state.sqlite'}")
        try:
            yield live
        finally:
            live.close()


def _commits(rig: LiveRig) -> list[int]:
    """A counter of the state store's commits (one element appended per commit)."""
    seen: list[int] = []
    sa.event.listen(rig.engine.state._engine, "commit", lambda connection: seen.append(1))  # noqa: SLF001
    return seen


def test_a_group_persists_every_intent_before_the_first_request_and_commits_twice(rig) -> None:
    engine = rig.engine
    assert engine.start().ok
    requests = [[rig.order("a-1"), rig.order("a-2", symbol="MSFT")], [rig.order("b-1", quantity=2)],
                [rig.order("c-1", symbol="JPM")]]
    every = [str(command.client_order_id) for group in requests for command in group]
    persisted_at_send: list[set[str]] = []
    inner_submit = rig.broker.submit

    def submit(command: SubmitOrder) -> list[OrderEvent]:
        persisted_at_send.append({cid for cid in every if engine.state.order(cid) is not None})
        return inner_submit(command)

    rig.broker.submit = submit  # type: ignore[method-assign]
    commits = _commits(rig)
    answers = engine.submit_many([(group, rig.ctx()) for group in requests])

    assert persisted_at_send == [set(every)] * 4  # durable before the first request left
    assert len(commits) == 2  # the intents in one commit, the four answers in another
    assert [[str(e.client_order_id) for e in events] for events in answers] == [["a-1", "a-2"], ["b-1"], ["c-1"]]
    assert all(isinstance(e, OrderAccepted) for events in answers for e in events)
    assert {o["client_order_id"] for o in broker_orders(rig.inspector)} == set(every)
    rig.check(settled=False)


def test_denials_go_back_to_the_request_that_made_them(rig) -> None:
    engine = rig.engine
    assert engine.start().ok
    too_big = rig.order("big", quantity=10**9)
    answers = engine.submit_many([([rig.order("ok-1")], rig.ctx()), ([too_big, rig.order("ok-2")], rig.ctx())])

    assert [type(e) for e in answers[0]] == [OrderAccepted]
    assert isinstance(answers[1][0], OrderDenied) and answers[1][0].client_order_id == too_big.client_order_id
    assert [str(e.client_order_id) for e in answers[1][1:]] == ["ok-2"]
    assert {o["client_order_id"] for o in broker_orders(rig.inspector)} == {"ok-1", "ok-2"}
    rig.check(settled=False)


def test_one_bad_intent_does_not_sink_its_group(rig) -> None:
    """The joint save fails on an id another order holds; the others are saved and sent one by
    one, and only the conflicting intent is denied (state_unavailable) and never sent."""
    engine = rig.engine
    assert engine.start().ok
    held = rig.order("held")
    engine.state.save_intent(held)  # saved, never sent: the id is taken by this order
    conflicting = rig.order("held", quantity=7)  # same id, different order
    answers = engine.submit_many([([rig.order("x-1")], rig.ctx()), ([conflicting], rig.ctx()),
                                  ([rig.order("x-2")], rig.ctx())])

    assert [type(e) for e in answers[0]] == [OrderAccepted] and [type(e) for e in answers[2]] == [OrderAccepted]
    assert [e.reason for e in answers[1]] == [DenyReason.STATE_UNAVAILABLE]
    assert "held" not in {o["client_order_id"] for o in broker_orders(rig.inspector)}
    assert engine.state.order("held").quantity == Decimal(1)  # the stored intent is untouched


def test_a_database_down_denies_the_whole_group_and_sends_nothing(rig, monkeypatch) -> None:
    engine = rig.engine
    assert engine.start().ok

    def down(*args: Any, **kwargs: Any) -> Any:
        raise StoreError("connection refused")

    monkeypatch.setattr(engine.state, "save_intents", down)
    monkeypatch.setattr(engine.state, "save_intent", down)
    answers = engine.submit_many([([rig.order("d-1")], rig.ctx()), ([rig.order("d-2")], rig.ctx())])

    assert [[e.reason for e in events] for events in answers] == [[DenyReason.STATE_UNAVAILABLE]] * 2
    assert broker_orders(rig.inspector) == [] and not engine.reconciled


# --------------------------------------------------------------------------- the service


def test_the_threaded_service_group_commits_concurrent_submits(tmp_path) -> None:
    """40 submits from 16 threads against a broker that answers in 20 ms: callers that arrive
    while a batch is at the broker wait together, so fewer batches than calls form."""
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT, api_key=KEY, secret_key=SECRET,
                           latency_s=0.02) as server:
        server.advance(bars(T0, 100.0))
        url = f"sqlite:///{tmp_path / 'state.sqlite'}"
        oms = LiveOMS({"api_key": KEY, "secret_key": SECRET, "url_override": server.url}, url,
                      RiskConfig(duplicate_intent_window_s=0))
        rig = LiveRig(server, url)
        try:
            assert oms.reconcile_report()["ok"]
            orders = [rig.order(f"t-{i}", limit="95") for i in range(40)]
            ctx = rig.ctx()
            with ThreadPoolExecutor(16) as pool:
                answers = list(pool.map(lambda command: oms.submit([command], ctx), orders))
            stats = oms.group_commit_stats()
            killed = oms.kill("test over")
        finally:
            oms.engine.state.close()
            oms.engine.audit.close()
        assert all([type(e) for e in events] == [OrderAccepted] for events in answers)
        assert [str(events[0].client_order_id) for events in answers] == [f"t-{i}" for i in range(40)]
        assert stats["batches"] < 40 and stats["largest_batch"] > 1
        assert killed == 40
        statuses = {rig.state.order(f"t-{i}").status for i in range(40)}
        assert statuses <= {OrderStatus.NEW, OrderStatus.ACCEPTED, OrderStatus.PENDING_CANCEL, OrderStatus.CANCELED}
        rig.check(settled=False)
        rig.close()


def test_the_actor_process_collects_then_freezes_the_heap_it_built(tmp_path) -> None:
    """The OMS actor's class ends construction with a full collection and ``gc.freeze()``: the
    engine it built is out of the collector's scans, and garbage made before is not kept."""
    from actors.live_oms import LiveOMSProcess

    class Cycle:
        me: Any

    assert gc.get_freeze_count() == 0
    gc.disable()  # only the constructor's own collection may free the cycle
    try:
        garbage = Cycle()
        garbage.me = garbage
        cycle = weakref.ref(garbage)
        del garbage
        with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT, api_key=KEY, secret_key=SECRET) as server:
            server.advance(bars(T0, 100.0))
            oms = LiveOMSProcess({"api_key": KEY, "secret_key": SECRET, "url_override": server.url},
                                 f"sqlite:///{tmp_path / 'state.sqlite'}", RiskConfig())
            try:
                frozen = gc.get_freeze_count()
                engine_scanned = any(o is oms.engine for o in gc.get_objects())
            finally:
                gc.unfreeze()
                oms.engine.state.close()
                oms.engine.audit.close()
            assert oms.reconcile_report()["ok"]
    finally:
        gc.enable()

    assert cycle() is None
    assert frozen > 0 and not engine_scanned
    assert any(o is oms.engine for o in gc.get_objects())  # unfrozen: scanned again


def test_different_callers_requests_overlap_and_each_callers_go_out_in_order(tmp_path) -> None:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT, latency_s=0.05) as server:
        server.advance(bars(T0, 100.0))
        rig = LiveRig(server, f"sqlite:///{tmp_path / 'state.sqlite'}", engine_options={"send_concurrency": 4})
        engine = rig.engine
        assert engine.start().ok
        in_flight, peak, sent_order = [0], [0], []
        lock = threading.Lock()
        inner_submit = rig.broker.submit

        def submit(command: SubmitOrder) -> list[OrderEvent]:
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
                sent_order.append(str(command.client_order_id))
            try:
                return inner_submit(command)
            finally:
                with lock:
                    in_flight[0] -= 1

        rig.broker.submit = submit  # type: ignore[method-assign]
        callers = [[rig.order(f"c{c}-{i}", limit="95") for i in range(3)] for c in range(4)]
        answers = engine.submit_many([(commands, rig.ctx()) for commands in callers])

        assert peak[0] > 1  # callers overlapped at the broker
        for c in range(4):  # ...but each caller's orders left in its order
            mine = [cid for cid in sent_order if cid.startswith(f"c{c}-")]
            assert mine == [f"c{c}-{i}" for i in range(3)]
            assert [str(e.client_order_id) for e in answers[c]] == mine
        rig.check(settled=False)
        rig.close()


def test_send_concurrency_must_be_a_positive_int(tmp_path) -> None:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as server:
        rig = LiveRig(server, f"sqlite:///{tmp_path / 'state.sqlite'}")
        with pytest.raises(ExecutionError, match="send_concurrency"):
            LiveExecutionEngine(rig.broker, rig.state, rig.audit, RiskEngine(RiskConfig()), send_concurrency=0)
        rig.close()
