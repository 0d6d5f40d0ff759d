"""The kill switch under load: threads keep submitting while the operator pulls it.

:class:`LiveExecutionEngine` is not thread-safe (it shares the set of checked ids, the risk
engine's state, the store's connections and one HTTP session), and in production it runs inside
one Ray actor, which serves its method calls one at a time in arrival order. The test driver does
the same: every call, the kill included, goes through :class:`SerialActor`, so a kill waits at
most for the calls queued before it. Measured: the time from asking for the kill to the moment
the kill switch is engaged (from then on every submit is denied), which the issue bounds at 1 s.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amcp.config import RiskConfig
from amcp.domain.enums import DenyReason, OrderStatus
from amcp.domain.messages import OrderAccepted, OrderDenied, OrderEvent
from serve.alpaca_paper import AlpacaPaperServer
from tests.unit.execution._invariants import EXACT, SYMBOLS, T0, LiveRig, bars, wait_until

PRODUCERS = 4
ORDERS_PER_PRODUCER = 100  # the paper server lists 500 orders a page: stay below
WORKING_BEFORE_KILL = 40
SUBMITS_AFTER_KILL = 40
KILL_BOUND_S = 1.0  # the bound from the kill to the first guaranteed denial
CALL_TIMEOUT_S = 30.0


class SerialActor:
    """Run calls one at a time, in the order they arrive, on one thread (as a Ray actor does)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._serve, name="serial-actor", daemon=True)
        self._thread.start()

    def call(self, function: Callable[..., Any], *args: Any) -> Future[Any]:
        """Queue ``function(*args)``; its result (or exception) arrives in the returned future."""
        future: Future[Any] = Future()
        self._calls.put((function, args, future))
        return future

    def close(self) -> None:
        """Serve what is queued, then stop the thread."""
        self._calls.put(None)
        self._thread.join(CALL_TIMEOUT_S)
        assert not self._thread.is_alive(), "the serial actor did not stop"

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            function, args, future = item
            try:
                future.set_result(function(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through the future
                future.set_exception(exc)


@dataclass(frozen=True)
class Submitted:
    """One submit as a producer saw it (monotonic seconds)."""

    client_order_id: str
    started_s: float
    ended_s: float
    events: list[OrderEvent]

    @property
    def denied(self) -> bool:
        return len(self.events) == 1 and isinstance(self.events[0], OrderDenied)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[LiveRig]:
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as server:
        server.advance(bars(T0, 100.0))
        risk = RiskConfig(duplicate_intent_window_s=0, throttle_max_orders=100_000)
        live = LiveRig(server, f"sqlite:///{tmp_path / 'state.sqlite'}", risk=risk)
        yield live
        live.close()


def test_kill_switch_under_load_denies_every_later_submit_and_cancels_every_working_order(
        rig: LiveRig) -> None:
    assert rig.engine.start().ok
    actor = SerialActor()
    done: list[Submitted] = []
    lock = threading.Lock()
    stop = threading.Event()
    ctx = rig.ctx()

    def produce(k: int) -> None:
        for i in range(ORDERS_PER_PRODUCER):
            if stop.is_set():
                return
            # resting limit buys below the market: they stay working until canceled
            order = rig.order(f"load-{k}-{i}", symbol=SYMBOLS[k % len(SYMBOLS)], limit="95")
            started = time.monotonic()
            events = actor.call(rig.engine.submit, [order], ctx).result(CALL_TIMEOUT_S)
            with lock:
                done.append(Submitted(str(order.client_order_id), started, time.monotonic(), events))

    engaged: list[float] = []

    def kill() -> int:
        engaged.append(time.monotonic())  # engine.kill engages the switch before anything else
        return rig.engine.kill("kill switch load test")

    producers = [threading.Thread(target=produce, args=(k,), name=f"producer-{k}") for k in range(PRODUCERS)]
    for thread in producers:
        thread.start()
    try:
        wait_until(lambda: len(done) >= WORKING_BEFORE_KILL, 30, f"{WORKING_BEFORE_KILL} working orders")
        requested = time.monotonic()
        canceled = actor.call(kill).result(CALL_TIMEOUT_S)
        returned = time.monotonic()
        log_at_kill = len(rig.server.requests)
        wait_until(lambda: sum(s.started_s >= returned for s in list(done)) >= SUBMITS_AFTER_KILL, 30,
                   f"{SUBMITS_AFTER_KILL} submits after the kill")
    finally:
        stop.set()
        for thread in producers:
            thread.join(CALL_TIMEOUT_S)
        actor.close()

    to_engaged_s = engaged[0] - requested
    to_returned_s = returned - requested
    print(f"kill under load: engaged {to_engaged_s * 1000:.1f} ms after it was asked for, returned after "
          f"{to_returned_s * 1000:.1f} ms, {canceled} working orders canceled, {len(done)} submits")
    assert to_engaged_s < KILL_BOUND_S
    after = [s for s in done if s.started_s >= returned]
    assert len(after) >= SUBMITS_AFTER_KILL and all(s.denied for s in after)
    assert {s.events[0].reason for s in after} == {DenyReason.TRADING_HALTED}
    first_denial_s = min(s.ended_s for s in done if s.denied) - requested
    assert first_denial_s < KILL_BOUND_S

    accepted = [s for s in done if any(isinstance(e, OrderAccepted) for e in s.events)]
    assert canceled == len(accepted) >= WORKING_BEFORE_KILL  # every order placed was still working
    log = rig.server.requests
    cancel_all = [i for i, r in enumerate(log) if r.method == "DELETE" and r.path == "/v2/orders"]
    assert len(cancel_all) == 1 and cancel_all[0] < log_at_kill
    late = [r.body for r in log[cancel_all[0]:] if r.method == "POST" and r.path == "/v2/orders"]
    assert late == [], f"order requests after the kill: {late}"
    assert rig.inspector.get("/orders", {"status": "open"}) == []
    rig.pump()  # the cancel confirmations arrive over the stream
    assert all(rig.engine.state.order(s.client_order_id).status is OrderStatus.CANCELED for s in accepted)
    assert rig.engine.risk.kill_switch_engaged
    rig.check()
