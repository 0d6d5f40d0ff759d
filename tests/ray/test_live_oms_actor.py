"""The live OMS as a Ray actor: killed mid-submit, restarted by Ray, reconciled, nothing lost."""

from __future__ import annotations

import random
from collections import Counter
from decimal import Decimal

import pytest

from actors.live_oms import LiveOMSActor
from amcp.config import RiskConfig, SlippageConfig, VenueConfig
from amcp.domain.enums import OrderSide, OrderType, TimeInForce
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.messages import SubmitOrder
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext
from amcp.store.audit import AuditLog
from amcp.store.state import TradingStateStore
from serve.alpaca_paper import AlpacaPaperServer
from tests.unit.execution._invariants import SYMBOLS, T0, bars

pytestmark = pytest.mark.ray

EXACT = VenueConfig(participation_rate=None, slippage=SlippageConfig(model="none"))
DAY_NS = 86_400 * 10**9


def _ctx(now: int) -> RiskContext:
    snap = PortfolioSnapshot(ts_ns=now, cash=Decimal(10**6), equity=Decimal(10**6), market_value=Decimal(0),
                             gross_exposure=Decimal(0), buying_power=Decimal(2 * 10**6),
                             start_of_day_equity=Decimal(10**6), prices={s: Decimal(100) for s in SYMBOLS},
                             price_ts_ns={s: now for s in SYMBOLS})
    return RiskContext(ts_ns=now, portfolio=snap)


@pytest.mark.parametrize("point", ["intent_saved", "request_sent", "response_received", "fill_applied"])
def test_a_killed_oms_actor_restarts_reconciles_and_sends_nothing_twice(ray_local, tmp_path, point) -> None:
    ray = ray_local
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as server:
        server.advance(bars(T0, 100.0))
        broker = {"api_key": "test-key", "secret_key": "test-secret", "url_override": server.url}
        oms = LiveOMSActor.remote(broker, url, RiskConfig(duplicate_intent_window_s=0),
                                  crash_at=(point, str(tmp_path / "crashed")))
        first_pid = ray.get(oms.process_id.remote())
        rng = random.Random(point)
        orders = [SubmitOrder(client_order_id=ClientOrderId(f"a-{i}"), strategy_id=StrategyId("s1"),
                              symbol=rng.choice(SYMBOLS), side=OrderSide.BUY, quantity=Decimal(rng.randint(1, 20)),
                              order_type=OrderType.MARKET, time_in_force=TimeInForce.DAY, ts_ns=T0) for i in range(4)]
        crashed = False
        for order in orders:
            try:
                ray.get(oms.submit.remote([order], _ctx(T0)))
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                crashed = True
                break
        now = T0 + DAY_NS
        if not crashed:  # the mid-fill point: the crash comes while recording fills
            server.advance(bars(now, 99.0))
            try:
                ray.get(oms.on_trade_updates.remote(server.trade_updates, "s1"))
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                crashed = True
        assert crashed
        # Ray restarts the actor: a new process that reconciled in its constructor
        assert _wait_restarted(ray, oms) != first_pid
        assert ray.get(oms.reconcile_report.remote())["ok"]
        for order in orders:  # the strategy re-emits its intents
            ray.get(oms.submit.remote([order], _ctx(T0)))
        if point != "fill_applied":
            server.advance(bars(now, 99.0))
        ray.get(oms.on_trade_updates.remote(server.trade_updates, "s1"))
        assert ray.get(oms.reconcile.remote())["ok"]
        placed = Counter(o.client_order_id for o in _all_orders(server))
        assert set(placed) == {str(o.client_order_id) for o in orders}
        assert max(placed.values()) == 1
        state = TradingStateStore(url)
        assert {s: q for s, q in state.positions().items() if q} == {
            s: q for s, q in _positions(server).items() if q}
        assert AuditLog(url).verify().ok
        ray.kill(oms, no_restart=True)


def _wait_restarted(ray, oms, timeout_s: float = 60.0) -> int:
    """The restarted actor's pid, once Ray has brought it back."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ray.get(oms.process_id.remote(), timeout=10)
        except (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _all_orders(server: AlpacaPaperServer) -> list:
    from amcp.brokers.alpaca import AlpacaBroker, broker_order

    broker = AlpacaBroker("test-key", "test-secret", url_override=server.url)
    return [broker_order(o) for o in broker._client.get("/orders", {"status": "all", "limit": 500})]


def _positions(server: AlpacaPaperServer) -> dict[str, Decimal]:
    from amcp.brokers.alpaca import AlpacaBroker

    return AlpacaBroker("test-key", "test-secret", url_override=server.url).positions()
