"""Benchmark: the OMS — pre-trade checks in process, and orders through the actor plane.

Run:
    .venv/bin/python benchmarks/oms.py [--quick] [--duration-s 10] [--rate 100] [--no-postgres]

Two parts (issue #4):

1. Pre-trade checks, in this process: ``RiskEngine(RiskConfig()).check(commands, ctx)`` with the
   default limits, a 100-symbol universe marked through ``Portfolio.mark_batch``, long positions
   in half of it, and a mix of limit (within the collar) and market orders, buys and sells,
   every one with its own client order id and a distinct intent (the engine's duplicate-intent
   window is on). Every command must be accepted, so each one walks the whole chain of checks.
   Run twice: with no working orders in ``ctx.open_orders`` and with 20 (the engine folds the
   working orders into every call). Throughput: batches of 100 commands, simulated time moving
   1 s per batch. Latency: single-command calls timed with ``perf_counter_ns``, simulated time
   moving 10 ms per call. No Python library installable here offers comparable pre-trade checks
   (nautilus_trader pins pandas<3 and fsspec<2026, which conflict with this environment), so the
   peer of these lines is the issue's own target; it gives none for latency, so those lines are
   compared with 10 us, what 100,000 checks a second allow one serial caller.
2. Orders through the actor plane: ``actors.live_oms.LiveOMSActor`` (``LiveOMS``: risk checks,
   persisted intent, audit, send, record) on a local Ray (2 CPUs), with its state and audit log
   in SQLite in a temporary folder and then in a fresh PostgreSQL schema (when reachable), sending
   to amcp's Alpaca-compatible paper server (``serve.alpaca_paper``) in this process. After 20
   untimed orders, 50 are sent one at a time (the path's unloaded latency, ``serial_*`` lines),
   then orders are offered open-loop at ``--rate`` a second for ``--duration-s``: the pacing
   thread builds each ``SubmitOrder`` at its due time and hands it to a pool of threads, each
   doing one actor call ``submit.remote([command], ctx)``; intent-to-ack runs from building the
   command to that call returning with ``OrderAccepted``, queueing included. The actor is
   threaded: submits that wait together are group-committed (their intents share one commit
   before any is sent, their answers one after); the summary reports the batches it formed. The orders are buy
   limits 1-5% under the market, so they rest; the kill switch cancels them all at the end and
   the count canceled is checked. Peer: the same orders, the same runs, sent with bare alpaca-py
   (``TradingClient(..., url_override=server.url).submit_order``) from this process to a fresh
   paper server: no risk checks, persistence, audit or actor hop.

This process hosts the paper server and the senders, stand-ins for processes of their own in
production; its heap is frozen for the timed runs, ours and the peer's alike (``frozen_heap``), so
that a full collection of it does not stall them both at once. The OMS actor freezes its own
heap once constructed (``actors/live_oms.py``), as it does in production.

The broker's client-side token bucket defaults to Alpaca's 200 requests a minute (3.3 a second);
real Alpaca caps an account there. The benchmark raises it to 60,000 a minute, so it measures the
capacity of our path, not Alpaca's limit. The paper server sums its open buy orders on every buy
(buying-power reservation), a cost both sides pay alike.

Prints JSON lines ``{"bench": "oms", "metric", "ours", "peer", "peer_value", "ratio", "unit", ...}``
(``ratio`` > 1 means ours is better: ours/peer for rates, peer/ours for latencies), then one
summary line with whether each target of the issue was met (≥ 100,000 checks a second; a
sustained 100 orders a second — every order accepted, at ≥ 99% of the offered rate — with p99
intent-to-ack under 50 ms). Progress goes to stderr. About a minute on two cores (``--quick``:
about 30 s); a shared machine makes every number noisy, so the summary gives the load average.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, host_load, line, load_average_1m, percentile, progress  # noqa: E402

from amcp.config import AccountConfig, RiskConfig, SlippageConfig, VenueConfig  # noqa: E402
from amcp.data.ratelimit import TokenBucket  # noqa: E402
from amcp.domain.data import BarBatch  # noqa: E402
from amcp.domain.enums import LiquiditySide, OrderSide, OrderType, TimeInForce  # noqa: E402
from amcp.domain.identifiers import ClientOrderId, StrategyId, TradeId, VenueOrderId  # noqa: E402
from amcp.domain.messages import OrderAccepted, OrderFilled, SubmitOrder  # noqa: E402
from amcp.engine.clock import session_date  # noqa: E402
from amcp.portfolio.ledger import Portfolio  # noqa: E402
from amcp.portfolio.snapshot import PortfolioSnapshot  # noqa: E402
from amcp.risk.engine import RiskContext, RiskEngine  # noqa: E402

BENCH = "oms"
KEY, SECRET = "test-key", "test-secret"
T0 = 1_704_229_200 * 10**9  # 2024-01-02 16:00 New York: the paper server's simulated clock
NS_PER_S = 1_000_000_000
SYMBOLS = tuple(f"S{j:03d}" for j in range(100))
REFERENCE = tuple(50.0 + 2.5 * j for j in range(len(SYMBOLS)))  # USD, one mark per symbol
STRATEGY = StrategyId("bench-oms")
BATCH = 100
WORKING_ORDERS = (0, 20)  # working orders in ctx.open_orders: none, and a busy book
BROKER_RATE_PER_MINUTE = 60_000.0  # 1,000 requests a second; real Alpaca allows 200 a minute

TARGET_CHECKS_PER_S = 100_000.0
# The issue gives no latency target for a check; 10 us is what 100,000 a second allows one
# serial caller, so that is the yardstick the p50/p99 lines are compared with.
TARGET_CHECK_LATENCY_US = 10.0
TARGET_ORDERS_PER_S = 100.0
TARGET_ACK_P99_MS = 50.0
SUSTAINED_FRACTION = 0.99  # "sustained": every order accepted, at >= 99% of the offered rate
CHECK_TARGET_PEER = "issue #4 target"
LATENCY_TARGET_PEER = "issue #4 target (none given; 10 us = 100k/s serial)"
ALPACA_PEER = (
    "alpaca-py TradingClient.submit_order, same paper server, same pacing "
    "(no risk, persistence, audit or actor hop)"
)


# ---------------------------------------------------------------------------- the book


def bars(ts_ns: int) -> BarBatch:
    """Every symbol's bar closing at ``ts_ns`` at its reference price."""
    close = np.array(REFERENCE)
    return BarBatch(ts_ns, SYMBOLS, close, close + 0.5, close - 0.5, close, np.full(len(SYMBOLS), 1e7))


def portfolio_snapshot(ts_ns: int) -> PortfolioSnapshot:
    """A 10M USD margin account long 1,000 shares of every other symbol, every symbol marked at
    ``ts_ns`` through ``mark_batch`` (the engine's own path), the session started there."""
    portfolio = Portfolio(AccountConfig(starting_cash_usd=Decimal(10_000_000)))
    for j in range(0, len(SYMBOLS), 2):
        portfolio.apply_fill(OrderFilled(
            client_order_id=ClientOrderId(f"seed-{j}"), venue_order_id=VenueOrderId(f"v-seed-{j}"),
            trade_id=TradeId(f"t-seed-{j}"), strategy_id=STRATEGY, symbol=SYMBOLS[j], side=OrderSide.BUY,
            last_quantity=Decimal(1000), last_price=Decimal(repr(REFERENCE[j])), fee=Decimal(0),
            liquidity=LiquiditySide.TAKER, ts_ns=ts_ns))
    portfolio.mark_batch(bars(ts_ns))
    portfolio.start_session(ts_ns)
    return portfolio.snapshot(ts_ns)


def check_command(i: int, ts_ns: int) -> SubmitOrder:
    """Command ``i`` of the in-process run: symbol ``i % 100``, buy/sell by ``i // 100``, quantity
    by ``i // 200``, so any 10,000 consecutive commands are distinct intents; every fourth is a
    market order, the rest limits 1% through the mark (inside the 10% collar)."""
    j = i % len(SYMBOLS)
    buy = (i // len(SYMBOLS)) % 2 == 0
    quantity = Decimal(1 + (i // (2 * len(SYMBOLS))) % 50)
    market = i % 4 == 3
    limit = None if market else Decimal(f"{REFERENCE[j] * (0.99 if buy else 1.01):.2f}")
    return SubmitOrder(client_order_id=ClientOrderId(f"chk-{i}"), strategy_id=STRATEGY, symbol=SYMBOLS[j],
                       side=OrderSide.BUY if buy else OrderSide.SELL, quantity=quantity,
                       order_type=OrderType.MARKET if market else OrderType.LIMIT,
                       time_in_force=TimeInForce.DAY, limit_price=limit, ts_ns=ts_ns)


def working_orders(ts_ns: int, count: int) -> tuple[SubmitOrder, ...]:
    """Resting buy limits 5% under the mark, one on each of the first ``count`` symbols."""
    return tuple(
        SubmitOrder(client_order_id=ClientOrderId(f"open-{j}"), strategy_id=STRATEGY, symbol=SYMBOLS[j],
                    side=OrderSide.BUY, quantity=Decimal(10), order_type=OrderType.LIMIT,
                    limit_price=Decimal(f"{REFERENCE[j] * 0.95:.2f}"), ts_ns=ts_ns)
        for j in range(count))


def accepted_all(engine: RiskEngine, commands: Sequence[SubmitOrder], ctx: RiskContext) -> None:
    """Raise unless every command passes (a denial would skip most of the chain and flatter us)."""
    accepted, denied = engine.check(commands, ctx)
    if denied:
        raise RuntimeError(f"benchmark set-up: {len(denied)} of {len(commands)} commands denied, first: "
                           f"{denied[0].reason.value}: {denied[0].message}")


# ---------------------------------------------------------------------------- part 1


def bench_checks(args: argparse.Namespace, working: int) -> dict[str, Any]:
    """Throughput and single-call latency of the checks with ``working`` orders in the context."""
    snapshot = portfolio_snapshot(T0)
    open_orders = working_orders(T0, working)
    today = session_date(T0)
    label = f"{working} working orders"

    def context(ts_ns: int) -> RiskContext:
        return RiskContext(ts_ns=ts_ns, portfolio=snapshot, open_orders=open_orders, session_date=today)

    # Throughput: the batch a trading cycle checks, 100 commands, one context per batch.
    batches = args.check_batches
    progress(f"pre-trade checks, {label}: {batches} batches of {BATCH} commands (building them)")
    contexts = [context(T0 + b * NS_PER_S) for b in range(batches)]
    commands = [[check_command(b * BATCH + k, contexts[b].ts_ns) for k in range(BATCH)]
                for b in range(batches)]
    engine = RiskEngine(RiskConfig())
    accepted_all(engine, commands[0], contexts[0])  # warm-up batch, also proves the set-up passes
    gc.collect()  # the garbage of building the inputs is not the engine's
    checked = 0
    started, started_cpu = time.perf_counter(), time.process_time()
    for b in range(1, batches):
        accepted, denied = engine.check(commands[b], contexts[b])
        checked += len(accepted) + len(denied)
        if denied:
            raise RuntimeError(f"batch {b}: {denied[0].reason.value}: {denied[0].message}")
    batch_s = time.perf_counter() - started
    per_cpu_s = checked / (time.process_time() - started_cpu)
    checks_per_s = checked / batch_s
    progress(f"  {checked} checks in {batch_s:.3f} s: {checks_per_s:,.0f} a second "
             f"({per_cpu_s:,.0f} per CPU second)")
    setup = (f"amcp RiskEngine.check, default RiskConfig, {len(SYMBOLS)} symbols, {label} in "
             "ctx.open_orders, every command accepted")
    emit(line(BENCH, "risk_checks_per_s", checks_per_s, CHECK_TARGET_PEER, TARGET_CHECKS_PER_S, "checks/s", True, 0,
              working_orders=working, setup=f"{setup}; batches of {BATCH}", checks=checked,
              checks_per_cpu_s=round(per_cpu_s),
              note="ours is wall-clock; checks_per_cpu_s (this process's CPU time) is what a busy shared "
                   "machine disturbs least"))

    # Latency: one command per call, as the live OMS checks an order.
    singles = args.check_singles
    progress(f"pre-trade checks, {label}: {singles} single-command calls")
    base = batches * BATCH
    step_ns = 10_000_000
    calls = [([check_command(base + i, T0 + i * step_ns)], context(T0 + i * step_ns)) for i in range(singles)]
    engine = RiskEngine(RiskConfig())
    warm = max(1, singles // 20)
    for batch, ctx in calls[:warm]:
        accepted_all(engine, batch, ctx)
    gc.collect()
    took_ns = []
    clock = time.perf_counter_ns
    check = engine.check
    for batch, ctx in calls[warm:]:
        t0 = clock()
        accepted, denied = check(batch, ctx)
        took_ns.append(clock() - t0)
        if denied:
            raise RuntimeError(f"single call: {denied[0].reason.value}: {denied[0].message}")
    us = np.asarray(took_ns, dtype=float) / 1e3
    p50, p99 = percentile(us, 50), percentile(us, 99)
    progress(f"  p50 {p50:.1f} us, p99 {p99:.1f} us over {len(us)} calls")
    extra = {"working_orders": working, "calls": len(us),
             "setup": f"{setup}; RiskEngine.check([command], ctx), one command per call",
             "note": "wall clock (perf_counter_ns); the issue sets no latency target, and 10 us is what "
                     "100,000 checks a second allow one serial caller"}
    for metric, value in (("risk_check_p50_us", p50), ("risk_check_p99_us", p99)):
        emit(line(BENCH, metric, value, LATENCY_TARGET_PEER, TARGET_CHECK_LATENCY_US, "us", False, **extra))
    return {"risk_checks_per_s": round(checks_per_s), "risk_checks_per_cpu_s": round(per_cpu_s),
            "risk_check_p50_us": round(p50, 2),
            "risk_check_p99_us": round(p99, 2)}


# ---------------------------------------------------------------------------- part 2


@dataclass
class PacedRun:
    """What an open-loop run measured. Latencies in ms, over the accepted orders plus the
    unanswered ones, counted at the wait they had when the run gave up on them (a lower bound);
    ``orders_per_s`` is accepted orders over the wall time from the first command built to the
    last answer."""

    offered: int
    accepted: int
    unanswered: int
    orders_per_s: float
    ack_p50_ms: float
    ack_p99_ms: float
    ack_max_ms: float
    pacing_lag_p99_ms: float
    first_failure: str | None
    group_commit: dict[str, int] = field(default_factory=dict)  # batches the OMS formed (ours only)

    def met(self, rate: float) -> dict[str, bool]:
        sustained = self.accepted == self.offered and self.orders_per_s >= SUSTAINED_FRACTION * rate
        return {"orders_per_s": sustained, "intent_to_ack_p99_ms": self.ack_p99_ms < TARGET_ACK_P99_MS}


def paced_run(build: Callable[[int], Any], send: Callable[[Any], str | None], count: int, rate: float,
              workers: int, grace_s: float, abandon: Callable[[], None] | None = None) -> PacedRun:
    """Offer ``count`` orders at ``rate`` a second, open loop.

    At each due time the pacing thread calls ``build(i)`` (the intent is created then) and hands
    the result to a pool of ``workers`` threads that call ``send`` (``None`` when the order was
    accepted, else why not). A slow answer does not delay the next order; it queues behind
    the earlier ones wherever the path serialises, and that wait counts in its latency. Answers
    are awaited ``grace_s`` after the last offer; then ``abandon`` is called (it must make the
    outstanding ``send`` calls return) and the orders still unanswered count as not accepted.
    """
    created = [0] * count
    answered = [0] * count
    failures: list[str | None] = [None] * count
    lag_ns = [0] * count
    clock = time.perf_counter_ns
    period_ns = round(NS_PER_S / rate)
    finished = threading.Condition()
    answers = 0

    def task(i: int, order: Any) -> None:
        nonlocal answers
        with finished:
            if answered[i]:  # the run gave up on it while it waited for a thread: never sent
                return
        try:
            failure = send(order)
        except Exception as exc:  # noqa: BLE001 - counted as a failed order, reported in the summary
            failure = f"{type(exc).__name__}: {exc}"
        with finished:
            if not answered[i]:  # else the run gave up on it already
                failures[i], answered[i] = failure, clock()
                answers += 1
                finished.notify()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bench-oms") as pool:
        start = clock() + 5_000_000
        for i in range(count):
            due = start + i * period_ns
            wait_ns = due - clock()
            if wait_ns > 0:
                time.sleep(wait_ns / NS_PER_S)
            created[i] = clock()
            lag_ns[i] = created[i] - due
            pool.submit(task, i, build(i))
        with finished:
            finished.wait_for(lambda: answers == count, timeout=grace_s)
            gave_up_ns = clock()
            unanswered = [i for i in range(count) if not answered[i]]
            for i in unanswered:
                failures[i] = f"not answered {grace_s:g} s after the last offer"
                answered[i] = gave_up_ns
        if unanswered and abandon is not None:
            abandon()
    ok = [i for i in range(count) if failures[i] is None]
    ms = [(answered[i] - created[i]) / 1e6 for i in [*ok, *unanswered]] or [float("nan")]
    span_s = (max(answered[i] for i in ok) - created[0]) / NS_PER_S if ok else float("inf")
    return PacedRun(offered=count, accepted=len(ok), unanswered=len(unanswered),
                    orders_per_s=len(ok) / span_s, ack_p50_ms=percentile(ms, 50),
                    ack_p99_ms=percentile(ms, 99), ack_max_ms=max(ms),
                    pacing_lag_p99_ms=percentile([x / 1e6 for x in lag_ns], 99),
                    first_failure=next((f for f in failures if f is not None), None))


@dataclass
class SerialRun:
    """Orders sent one at a time, each after the previous answer: the path's latency unloaded.
    Latencies in ms; ``orders_per_s`` is what one caller gets this way (orders over the run)."""

    orders: int
    ack_p50_ms: float
    ack_p99_ms: float
    orders_per_s: float


def serial_run(build: Callable[[int], Any], send: Callable[[Any], str | None], count: int) -> SerialRun:
    """Send ``count`` orders one after another; raise on the first one not accepted."""
    clock = time.perf_counter_ns
    took_ns = []
    started = clock()
    for i in range(count):
        t0 = clock()
        failure = send(build(i))
        took_ns.append(clock() - t0)
        if failure is not None:
            raise RuntimeError(f"order {i} sent one at a time was not accepted: {failure}")
    ms = [x / 1e6 for x in took_ns]
    return SerialRun(orders=count, ack_p50_ms=percentile(ms, 50), ack_p99_ms=percentile(ms, 99),
                     orders_per_s=count / ((clock() - started) / NS_PER_S))


def measure(who: str, build: Callable[[int], Any], send: Callable[[Any], str | None],
            args: argparse.Namespace, count: int,
            abandon: Callable[[], None] | None = None) -> tuple[SerialRun, PacedRun]:
    """Warm up, then time ``args.serial`` orders one at a time and ``count`` offered at ``args.rate``.

    The paced run uses order numbers ``0..count-1``, the others the numbers after them, so
    every order of a run is a distinct intent with its own client order id.
    """
    serial_run(lambda i: build(count + i), send, args.warmup)
    with frozen_heap():
        progress(f"{who}: {args.serial} orders one at a time")
        serial = serial_run(lambda i: build(count + args.warmup + i), send, args.serial)
        progress(f"{who}: {count} orders offered at {args.rate:g}/s by {args.workers} threads")
        return serial, paced_run(build, send, count, args.rate, args.workers, args.grace_s, abandon)


@contextmanager
def frozen_heap() -> Iterator[None]:
    """Collect, then keep this process's heap out of the garbage collector's scans
    (``gc.freeze``) until the block ends; what the block allocates is collected as usual.

    This process is the load generator (the pacing and sender threads) and the paper server, the
    stand-ins for strategies and for Alpaca, which are other processes in production. Its heap
    (Ray, alpaca-py, pandas, the paper server, about 200,000 objects) takes a generation-2
    collection 90-250 ms on a busy two-core machine, two or three times in a 10 s run, and each
    stops the paper server and every sender at once: a pause in the stand-ins, not in the path
    measured, but one that alone puts a dozen orders (over 1%) past 50 ms. Ours and the peer's
    runs are measured alike under it.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def paper_server() -> Any:
    """A started paper server with every symbol's bar at its reference price (orders rest)."""
    from serve.alpaca_paper import AlpacaPaperServer

    exact = VenueConfig(participation_rate=None, slippage=SlippageConfig(model="none"))
    server = AlpacaPaperServer(start_ts_ns=T0, api_key=KEY, secret_key=SECRET, venue_config=exact,
                               account_config=AccountConfig(starting_cash_usd=Decimal(10**9))).start()
    server.advance(bars(T0))
    return server


def resting_order(i: int, prefix: str) -> tuple[str, str, Decimal, Decimal]:
    """(client order id, symbol, quantity, limit price) of order ``i``: a buy limit 1-5% under the
    market, so it rests; symbol by ``i % 100`` and quantity by ``i // 100`` keep intents distinct."""
    j = i % len(SYMBOLS)
    quantity = Decimal(1 + i // len(SYMBOLS))
    limit = Decimal(f"{REFERENCE[j] * (0.95 + 0.01 * (i % 5)):.2f}")
    return f"{prefix}-{i}", SYMBOLS[j], quantity, limit


def run_ours(database: str, url: str, args: argparse.Namespace,
             count: int) -> tuple[SerialRun, PacedRun, int]:
    """The timed runs through ``LiveOMSActor``, and how many orders the kill switch canceled."""
    import ray

    from actors.live_oms import LiveOMSActor

    server = paper_server()
    try:
        broker = {"api_key": KEY, "secret_key": SECRET, "url_override": server.url,
                  "rate_limiter": TokenBucket(BROKER_RATE_PER_MINUTE, burst=100)}
        progress(f"{database}: starting LiveOMSActor (migrate, reconcile)")
        oms = LiveOMSActor.remote(broker, url, RiskConfig())
        try:
            report = ray.get(oms.reconcile_report.remote(), timeout=120)
            if not report["ok"]:
                raise RuntimeError(f"{database}: the OMS did not reconcile with a fresh paper server: "
                                   f"{report}")
            snapshot = portfolio_snapshot(time.time_ns())
            run_id = uuid.uuid4().hex[:8]

            def build(i: int) -> tuple[SubmitOrder, RiskContext]:
                client_order_id, symbol, quantity, limit = resting_order(i, f"amcp-{run_id}")
                now = time.time_ns()
                command = SubmitOrder(client_order_id=ClientOrderId(client_order_id), strategy_id=STRATEGY,
                                      symbol=symbol, side=OrderSide.BUY, quantity=quantity,
                                      order_type=OrderType.LIMIT, time_in_force=TimeInForce.DAY,
                                      limit_price=limit, ts_ns=now)
                return command, RiskContext(ts_ns=now, portfolio=snapshot, session_date=session_date(now))

            outstanding: set[Any] = set()  # actor calls not answered yet

            def send(order: tuple[SubmitOrder, RiskContext]) -> str | None:
                ref = oms.submit.remote([order[0]], order[1])
                outstanding.add(ref)
                try:
                    events = ray.get(ref)
                finally:
                    outstanding.discard(ref)
                if any(isinstance(event, OrderAccepted) for event in events):
                    return None
                return "; ".join(f"{type(event).__name__}: {getattr(event, 'message', '')}"
                                 for event in events) or "no event"

            def abandon() -> None:
                """Cancel the actor calls still queued (one already running finishes: its order may
                reach the broker, which is why the cancel count below is checked with >=)."""
                for ref in list(outstanding):
                    ray.cancel(ref)

            serial, run = measure(database, build, send, args, count, abandon)
            run.group_commit = ray.get(oms.group_commit_stats.remote())
            canceled = int(ray.get(oms.kill.remote("benchmark done: cancel every resting order")))
        finally:
            ray.kill(oms, no_restart=True)
    finally:
        server.close()
    return serial, run, canceled


def run_peer(args: argparse.Namespace, count: int) -> tuple[SerialRun, PacedRun]:
    """The same orders, same pacing, with bare alpaca-py from this process (one client per thread)."""
    from alpaca.trading.client import TradingClient
    from alpaca.trading.enums import OrderSide as AlpacaSide
    from alpaca.trading.enums import OrderStatus as AlpacaStatus
    from alpaca.trading.enums import TimeInForce as AlpacaTimeInForce
    from alpaca.trading.requests import LimitOrderRequest

    server = paper_server()
    try:
        local = threading.local()
        resting = {AlpacaStatus.NEW, AlpacaStatus.ACCEPTED, AlpacaStatus.PENDING_NEW}
        run_id = uuid.uuid4().hex[:8]

        def build(i: int) -> LimitOrderRequest:
            client_order_id, symbol, quantity, limit = resting_order(i, f"peer-{run_id}")
            return LimitOrderRequest(symbol=symbol, qty=float(quantity), side=AlpacaSide.BUY,
                                     time_in_force=AlpacaTimeInForce.DAY, limit_price=float(limit),
                                     client_order_id=client_order_id)

        def send(request: LimitOrderRequest) -> str | None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = TradingClient(KEY, SECRET, paper=True, url_override=server.url)
            order = client.submit_order(request)
            return None if order.status in resting else f"status {order.status}"

        return measure("peer (alpaca-py)", build, send, args, count)
    finally:
        server.close()


def postgres_schema_url() -> tuple[str, Callable[[], None]] | None:
    """A fresh schema in the test PostgreSQL (URL and a function that drops it), or None."""
    import sqlalchemy as sa

    base = os.environ.get("AMCP_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    schema = f"bench_oms_{uuid.uuid4().hex[:12]}"
    try:
        admin = sa.create_engine(base)
        with admin.begin() as connection:
            connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:  # noqa: BLE001 - any failure means PostgreSQL is not usable here
        progress(f"skipping PostgreSQL: {base.rsplit('@', 1)[-1]} not reachable ({type(exc).__name__})")
        return None

    def drop() -> None:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()

    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}", drop


def bench_orders(args: argparse.Namespace) -> dict[str, Any]:
    """Part 2: the peer's runs, then ours on SQLite and (when reachable) PostgreSQL."""
    import ray

    count = round(args.rate * args.duration_s)
    peer_serial, peer = run_peer(args, count)
    progress(f"  peer: one at a time p50 {peer_serial.ack_p50_ms:.2f} ms; paced: {peer.accepted}/"
             f"{peer.offered} accepted, {peer.orders_per_s:.1f}/s, p50 {peer.ack_p50_ms:.2f} ms, "
             f"p99 {peer.ack_p99_ms:.2f} ms")
    if peer.first_failure:
        progress(f"  peer: first failure: {peer.first_failure}")

    progress("starting a local Ray (2 CPUs)")
    ray.init(num_cpus=2, include_dashboard=False, namespace="amcp-bench-oms", configure_logging=False,
             log_to_driver=False)
    folder = Path(tempfile.mkdtemp(prefix="amcp-bench-oms-"))
    summary: dict[str, Any] = {"offered": count, "rate_offered_per_s": args.rate, "peer": {
        "orders_per_s": round(peer.orders_per_s, 1), "intent_to_ack_p50_ms": round(peer.ack_p50_ms, 2),
        "intent_to_ack_p99_ms": round(peer.ack_p99_ms, 2), "serial_p50_ms": round(peer_serial.ack_p50_ms, 2)}}
    targets: dict[str, dict[str, bool]] = {"orders_per_s": {}, "intent_to_ack_p99_ms": {}}
    try:
        databases: list[tuple[str, str, Callable[[], None] | None]] = [
            ("sqlite", f"sqlite:///{folder / 'state.sqlite'}", None)]
        if not args.no_postgres:
            found = postgres_schema_url()
            if found is not None:
                databases.append(("postgresql", found[0], found[1]))
        for database, url, drop in databases:
            try:
                serial, ours, canceled = run_ours(database, url, args, count)
            finally:
                if drop is not None:
                    drop()
            progress(f"  {database}: one at a time p50 {serial.ack_p50_ms:.2f} ms "
                     f"({serial.orders_per_s:.1f}/s); paced: {ours.accepted}/{ours.offered} accepted, "
                     f"{ours.orders_per_s:.1f}/s, p50 {ours.ack_p50_ms:.2f} ms, "
                     f"p99 {ours.ack_p99_ms:.2f} ms; {canceled} canceled at the end")
            if ours.first_failure:
                progress(f"  {database}: first failure: {ours.first_failure}")
            resting = ours.accepted + args.warmup + args.serial
            if not resting <= canceled <= resting + ours.unanswered:
                raise RuntimeError(f"{database}: the kill switch canceled {canceled} orders, but {resting} "
                                   f"were accepted and resting (and {ours.unanswered} abandoned in flight)")
            common = {"database": database,
                      "setup": f"amcp LiveOMSActor on Ray (risk, persist, audit, send, record; {database}) "
                               "-> AlpacaBroker -> paper server",
                      "note": f"broker token bucket raised to {BROKER_RATE_PER_MINUTE:g}/min; real Alpaca "
                              "caps an account at 200 requests/min (3.3/s)"}
            paced = {"offered": ours.offered, "accepted": ours.accepted, "unanswered": ours.unanswered,
                     "grace_s": args.grace_s, "peer_accepted": peer.accepted, "rate_offered_per_s": args.rate,
                     "duration_s": args.duration_s, "workers": args.workers,
                     "pacing_lag_p99_ms": round(ours.pacing_lag_p99_ms, 2), "group_commit": ours.group_commit,
                     **common}
            emit(line(BENCH, "orders_per_s", ours.orders_per_s, ALPACA_PEER, peer.orders_per_s, "orders/s", True,
                      **paced))
            emit(line(BENCH, "intent_to_ack_p50_ms", ours.ack_p50_ms, ALPACA_PEER, peer.ack_p50_ms, "ms", False,
                      **paced))
            emit(line(BENCH, "intent_to_ack_p99_ms", ours.ack_p99_ms, ALPACA_PEER, peer.ack_p99_ms, "ms", False,
                      ack_max_ms=round(ours.ack_max_ms, 2), **paced))
            one = {"orders": serial.orders, "mode": "one at a time, each after the previous answer", **common}
            emit(line(BENCH, "serial_orders_per_s", serial.orders_per_s, ALPACA_PEER, peer_serial.orders_per_s,
                      "orders/s", True, **one))
            emit(line(BENCH, "serial_intent_to_ack_p50_ms", serial.ack_p50_ms, ALPACA_PEER, peer_serial.ack_p50_ms,
                      "ms", False, **one))
            emit(line(BENCH, "serial_intent_to_ack_p99_ms", serial.ack_p99_ms, ALPACA_PEER, peer_serial.ack_p99_ms,
                      "ms", False, **one))
            for name, value in ours.met(args.rate).items():
                targets[name][database] = value and args.rate >= TARGET_ORDERS_PER_S
            summary[database] = {"orders_per_s": round(ours.orders_per_s, 1),
                                 "intent_to_ack_p50_ms": round(ours.ack_p50_ms, 2),
                                 "intent_to_ack_p99_ms": round(ours.ack_p99_ms, 2),
                                 "unanswered": ours.unanswered, "group_commit": ours.group_commit,
                                 "serial_p50_ms": round(serial.ack_p50_ms, 2),
                                 "serial_orders_per_s": round(serial.orders_per_s, 1)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        ray.shutdown()
    summary["targets"] = targets
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="3 s of orders and fewer checks (about 30 s in all)")
    parser.add_argument("--duration-s", type=float, default=None,
                        help="seconds of paced orders per run (default 10; --quick 3)")
    parser.add_argument("--rate", type=float, default=TARGET_ORDERS_PER_S, help="orders offered a second")
    parser.add_argument("--grace-s", type=float, default=None,
                        help="seconds to wait for answers after the last offer (default: --duration-s, "
                             "at least 3)")
    parser.add_argument("--workers", type=int, default=16, help="threads sending orders concurrently")
    parser.add_argument("--warmup", type=int, default=20, help="untimed orders before the timed ones")
    parser.add_argument("--serial", type=int, default=None,
                        help="orders timed one at a time before the paced run (default 50; --quick 30)")
    parser.add_argument("--check-batches", type=int, default=None,
                        help="batches of 100 checks timed (default 2,000; --quick 500)")
    parser.add_argument("--check-singles", type=int, default=None,
                        help="single-command checks timed (default 20,000; --quick 5,000)")
    parser.add_argument("--no-postgres", action="store_true", help="skip the PostgreSQL run")
    args = parser.parse_args()
    if args.duration_s is None:
        args.duration_s = 3.0 if args.quick else 10.0
    if args.grace_s is None:
        args.grace_s = max(3.0, args.duration_s)
    if args.serial is None:
        args.serial = 30 if args.quick else 50
    if args.check_batches is None:
        args.check_batches = 500 if args.quick else 2000
    if args.check_singles is None:
        args.check_singles = 5000 if args.quick else 20_000
    if min(args.duration_s, args.rate, args.grace_s) <= 0 or min(args.workers, args.warmup, args.serial) < 1:
        parser.error("--duration-s, --rate and --grace-s must be > 0; --workers, --warmup and --serial >= 1")
    if args.check_batches < 2 or args.check_singles < 20:
        parser.error("--check-batches must be >= 2 and --check-singles >= 20")

    started = time.perf_counter()
    load_before = load_average_1m()
    checks = {f"working_orders_{n}": bench_checks(args, n) for n in WORKING_ORDERS}
    orders = bench_orders(args)
    targets = {"risk_checks_per_s": {key: value["risk_checks_per_s"] >= TARGET_CHECKS_PER_S
                                     for key, value in checks.items()}, **orders.pop("targets")}
    emit({"bench": BENCH, "summary": True, "checks": checks, "orders": orders, "targets": targets,
          **host_load(load_before), "wall_s": round(time.perf_counter() - started, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
