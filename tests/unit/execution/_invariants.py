"""The issue's invariants of the live order path, and a rig that trades against the paper server.

After a fault test, :func:`check_invariants` asserts what issue #4 requires, reading the broker
through its own alpaca-py client straight to the paper server (past any fault proxy) and the
database through the engine's store:

1. no duplicate broker order per intent (client order id);
2. every broker order known to the database;
3. local positions equal the broker's;
4. filled quantity only grows (:class:`FilledQuantityWatch`) and never exceeds the order; the
   fills recorded add up to it, and once settled it equals the broker's;
5. the audit chain verifies;
6. nothing was sent while HALTED or un-reconciled (:class:`GuardedBroker`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import numpy as np
from alpaca.trading.client import TradingClient

from amcp.brokers.alpaca import AlpacaBroker, trade_update_events
from amcp.config import RiskConfig, SlippageConfig, VenueConfig
from amcp.data.ratelimit import TokenBucket
from amcp.domain.data import BarBatch
from amcp.domain.enums import OrderSide, OrderType, TimeInForce, TradingState
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.messages import OrderDenied, OrderEvent, SubmitOrder
from amcp.execution.live import LiveExecutionEngine
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext, RiskEngine
from amcp.store.audit import AuditLog
from amcp.store.state import TradingStateStore
from serve.alpaca_paper import AlpacaPaperServer

KEY, SECRET = "test-key", "test-secret"
DAY_NS = 86_400 * 10**9
T0 = 1_704_229_200 * 10**9  # 2024-01-02 16:00 New York
EXACT = VenueConfig(participation_rate=None, slippage=SlippageConfig(model="none"))
SYMBOLS = ("AAPL", "MSFT", "JPM")
MAX_ORDERS_LISTED = 500  # the paper server's page size; a rig must place fewer orders than this


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.02) -> float:
    """Poll ``condition`` until it holds; return the seconds it took. Fails naming ``what`` after
    ``timeout_s`` seconds (a bounded wait for something another thread or process does)."""
    start = time.monotonic()
    idle = threading.Event()
    while not condition():
        assert time.monotonic() - start < timeout_s, f"timed out after {timeout_s} s waiting for {what}"
        idle.wait(poll_s)
    return time.monotonic() - start


def bars(ts_ns: int, price: float) -> BarBatch:
    """One bar per symbol of :data:`SYMBOLS` closing at ``ts_ns``, open = close = ``price`` USD."""
    n = len(SYMBOLS)
    p = np.full(n, price)
    return BarBatch(ts_ns, SYMBOLS, p, p + 1, p - 1, p, np.full(n, 1e7))


class Crash(Exception):
    """A simulated kill of the OMS at a point of the submit path (see :meth:`LiveRig.restart`)."""


def crash_hook(crash_at: str | None, crash_after: int = 0) -> Callable[[str], None]:
    """An engine ``crash_hook`` raising :class:`Crash` the ``crash_after + 1``-th time the engine
    reaches point ``crash_at`` (never if None)."""
    calls = 0

    def hook(point: str) -> None:
        nonlocal calls
        if point == crash_at:
            calls += 1
            if calls > crash_after:
                raise Crash(point)

    return hook


class GuardedBroker:
    """The real :class:`AlpacaBroker`, recording every submit made while the engine could not trade.

    Set :attr:`engine` once the engine exists; a submit while its risk engine is HALTED or while
    it is not reconciled is a violation (recorded, and sent anyway so the test sees the damage).
    """

    def __init__(self, inner: AlpacaBroker) -> None:
        self.inner = inner
        self.engine: LiveExecutionEngine | None = None
        self.violations: list[str] = []

    def submit(self, command: SubmitOrder) -> list[OrderEvent]:
        engine = self.engine
        if engine is not None and (engine.risk.state is TradingState.HALTED or not engine.reconciled):
            self.violations.append(f"{command.client_order_id} sent while {engine.risk.state.value}, "
                                   f"reconciled={engine.reconciled}")
        return self.inner.submit(command)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class FilledQuantityWatch:
    """Each order's filled quantity as last observed: a later observation may never be smaller."""

    def __init__(self) -> None:
        self.seen: dict[str, Decimal] = {}

    def observe(self, state: TradingStateStore, client_order_ids: Iterable[str] = ()) -> None:
        """Read the orders seen before and ``client_order_ids``; fail if a filled quantity shrank."""
        for cid in set(client_order_ids) | set(self.seen):
            row = state.order(cid)
            assert row is not None, f"{cid} disappeared from the database"
            before = self.seen.get(cid, Decimal(0))
            now = row.filled_quantity
            assert now >= before, f"{cid}: filled quantity went from {before} to {now}"
            self.seen[cid] = now


def inspector_for(server: AlpacaPaperServer) -> TradingClient:
    """An alpaca-py client straight to ``server`` (no proxy, no retries) to read the broker's truth."""
    client = TradingClient(KEY, SECRET, paper=True, raw_data=True, url_override=server.url)
    client._retry = 0
    return client


def broker_orders(inspector: TradingClient) -> list[dict[str, Any]]:
    """Every order at the broker (one page: fails if the test placed too many to list)."""
    orders = inspector.get("/orders", {"status": "all", "limit": MAX_ORDERS_LISTED})
    assert len(orders) < MAX_ORDERS_LISTED, "too many orders to list in one page; place fewer in the test"
    return list(orders)


def check_invariants(inspector: TradingClient, state: TradingStateStore, audit: AuditLog,
                     broker: GuardedBroker, watch: FilledQuantityWatch | None = None, *,
                     settled: bool = True) -> None:
    """Assert the invariants of the module docstring.

    Args:
        settled: every broker event has reached the store (after a pump or a reconcile), so
            each order's filled quantity must equal the broker's, not only stay below it.
    """
    orders = broker_orders(inspector)
    per_intent = Counter(str(o["client_order_id"]) for o in orders)
    duplicates = {cid: n for cid, n in per_intent.items() if n > 1}
    assert duplicates == {}, f"duplicate broker orders per intent: {duplicates}"
    unknown = sorted(cid for cid in per_intent if state.order(cid) is None)
    assert unknown == [], f"broker orders unknown to the database: {unknown}"
    local = {s: q for s, q in state.positions().items() if q}
    remote = {p["symbol"]: Decimal(p["qty"]) for p in inspector.get("/positions", {}) if Decimal(p["qty"])}
    assert local == remote, f"positions differ: local {local}, broker {remote}"
    for order in orders:
        cid = str(order["client_order_id"])
        row = state.order(cid)
        assert row is not None
        filled = row.filled_quantity
        assert filled <= row.quantity, f"{cid} overfilled: {filled} > {row.quantity}"
        recorded = sum((f.quantity for f in state.fills(cid)), Decimal(0))
        assert recorded == filled, f"{cid}: fills add up to {recorded}, the order says {filled}"
        if settled:
            assert row.filled_quantity == Decimal(order["filled_qty"]), (
                f"{cid}: local filled {row.filled_quantity}, broker filled {order['filled_qty']}")
    if watch is not None:
        watch.observe(state, per_intent)
    report = audit.verify()
    assert report.ok, report.to_dict()
    assert broker.violations == [], f"sent while HALTED or un-reconciled: {broker.violations}"


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test, dropped afterwards; yields its name.

    Connect to it with :func:`with_schema` (``?options=-csearch_path=<schema>``), as the
    ``db_url`` fixture of ``test_live_engine.py`` does.
    """
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base_url)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield schema
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def with_schema(url: str, schema: str) -> str:
    """``url`` with the PostgreSQL search path set to ``schema``."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


class LiveRig:
    """One OMS (the real engine, AlpacaBroker and stores) trading against a paper server.

    :meth:`restart` replaces the OMS process (engine, risk engine, stores) on the same database
    and broker, as after a kill.

    Args:
        server: the paper server (the broker's truth).
        db_url: the database the engine uses (possibly through a fault proxy).
        check_db_url: the same database reached directly, for the invariant checks.
        broker_url: where the engine's broker sends requests (possibly a proxy); default the server.
        risk: the pre-trade limits.
        broker_options: extra :class:`AlpacaBroker` keyword arguments (timeouts, retries, sleep).
        publish: the engine's event sink.
        store_options: extra :class:`TradingStateStore` keyword arguments.
        engine_options: extra :class:`LiveExecutionEngine` keyword arguments.
    """

    def __init__(self, server: AlpacaPaperServer, db_url: str, *, check_db_url: str | None = None,
                 broker_url: str | None = None, risk: RiskConfig | None = None,
                 broker_options: Mapping[str, Any] | None = None, publish: Callable[[Any], Any] | None = None,
                 store_options: Mapping[str, Any] | None = None,
                 engine_options: Mapping[str, Any] | None = None) -> None:
        self.server = server
        self.now = T0
        options: dict[str, Any] = {"rate_limiter": TokenBucket(600_000, burst=1000), "sleep": lambda s: None,
                                   "lookup_delay_s": 0.0, **(broker_options or {})}
        inner = AlpacaBroker(KEY, SECRET, url_override=broker_url or server.url, **options)
        self.broker = GuardedBroker(inner)
        self._db_url = db_url
        self._risk = risk or RiskConfig(duplicate_intent_window_s=0)
        self._publish = publish
        self._store_options = dict(store_options or {})
        self._engine_options = dict(engine_options or {})
        self.state = TradingStateStore(db_url, **self._store_options)
        self.audit = AuditLog(db_url)
        self.engine = self._new_engine()
        self.inspector = inspector_for(server)
        self._check_url = check_db_url or db_url
        self.watch = FilledQuantityWatch()
        self.seen_updates = 0
        self.recorded: list[OrderEvent] = []  # every event the engine returned as recorded, in order

    def _new_engine(self, hook: Callable[[str], None] | None = None) -> LiveExecutionEngine:
        engine = LiveExecutionEngine(self.broker, self.state, self.audit, RiskEngine(self._risk),
                                     clock_ns=lambda: self.now, publish=self._publish, crash_hook=hook,
                                     **self._engine_options)
        self.broker.engine = engine
        return engine

    def restart(self, *, crash_at: str | None = None, crash_after: int = 0) -> LiveExecutionEngine:
        """A new OMS process on the same database and broker; it becomes :attr:`engine`.

        The old process's stores are closed (a killed process's connections die with it); the new
        one has a fresh risk engine and stores and, before :meth:`LiveExecutionEngine.start`, is not
        reconciled.

        Args:
            crash_at: the crash point at which the new engine raises :class:`Crash`; None: never.
            crash_after: how many times it passes ``crash_at`` unharmed first.
        """
        self.close()
        self.state = TradingStateStore(self._db_url, **self._store_options)
        self.audit = AuditLog(self._db_url)
        self.engine = self._new_engine(crash_hook(crash_at, crash_after))
        return self.engine

    def ctx(self) -> RiskContext:
        """A risk context at :attr:`now`: 1M USD equity, every symbol marked at 100 USD just now."""
        prices = {s: Decimal(100) for s in SYMBOLS}
        snap = PortfolioSnapshot(ts_ns=self.now, cash=Decimal(1_000_000), equity=Decimal(1_000_000),
                                 market_value=Decimal(0), gross_exposure=Decimal(0),
                                 buying_power=Decimal(2_000_000), start_of_day_equity=Decimal(1_000_000),
                                 prices=prices,
                                 price_ts_ns={s: self.now for s in SYMBOLS})
        return RiskContext(ts_ns=self.now, portfolio=snap)

    def order(self, cid: str, *, symbol: str = "AAPL", quantity: int = 1,
              limit: str | None = None) -> SubmitOrder:
        """A buy: market DAY, or limit GTC at ``limit`` USD (below the market it rests)."""
        return SubmitOrder(client_order_id=ClientOrderId(cid), strategy_id=StrategyId("s1"), symbol=symbol,
                           side=OrderSide.BUY, quantity=Decimal(quantity),
                           order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                           time_in_force=TimeInForce.GTC if limit else TimeInForce.DAY,
                           limit_price=Decimal(limit) if limit else None, ts_ns=self.now)

    def submit(self, *commands: SubmitOrder) -> list[OrderEvent]:
        """Submit through the engine and remember what it recorded."""
        events = self.engine.submit(list(commands), self.ctx())
        self.recorded.extend(e for e in events if not isinstance(e, OrderDenied))
        return events

    def pump(self) -> list[OrderEvent]:
        """Feed the engine the trade updates produced since the last pump (a healthy stream)."""
        updates = self.server.trade_updates[self.seen_updates:]
        self.seen_updates += len(updates)
        out: list[OrderEvent] = []
        for update in updates:
            out.extend(self.engine.on_broker_events(trade_update_events(update, "s1")))
        self.recorded.extend(out)
        return out

    def advance(self, price: float = 100.0) -> None:
        """One simulated day later, a bar at ``price`` USD: market and marketable orders fill."""
        self.now += DAY_NS
        self.server.advance(bars(self.now, price))

    def check(self, *, settled: bool = True) -> None:
        """:func:`check_invariants` with the database reached directly."""
        state = TradingStateStore(self._check_url)
        audit = AuditLog(self._check_url)
        try:
            check_invariants(self.inspector, state, audit, self.broker, self.watch, settled=settled)
        finally:
            state.close()
            audit.close()

    def close(self) -> None:
        self.state.close()
        self.audit.close()
