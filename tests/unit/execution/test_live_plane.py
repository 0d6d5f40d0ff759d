"""LiveBrokerService: the plane's broker and risk roles against the Alpaca-compatible paper server.

Real alpaca-py (REST and ``trade_updates``) against an in-process :class:`AlpacaPaperServer`,
bars replayed into it through the service (``paper_server`` mode) or by the test (``live``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amcp.brokers.alpaca import AlpacaBroker
from amcp.config import FeeConfig, RiskConfig, SlippageConfig, VenueConfig
from amcp.domain.data import BarBatch
from amcp.domain.enums import DenyReason, OrderSide, OrderType, TimeInForce, TradingState
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.instruments import instrument_for
from amcp.domain.messages import (
    OrderAccepted,
    OrderCanceled,
    OrderFilled,
    OrderRejected,
    SubmitOrder,
    TradingStateChanged,
)
from amcp.execution.fees import AlpacaFeeModel
from amcp.execution.live_plane import LiveBrokerService, LiveBrokerSettings
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext
from amcp.store.audit import AuditLog
from amcp.store.state import TradingStateStore
from serve.alpaca_paper import AlpacaPaperServer

KEY, SECRET = "test-key", "test-secret"


@dataclass(frozen=True)
class _KeyPair:
    """A key pair held in the test (the plane gets a vault reference instead)."""

    key: str
    secret: str = field(repr=False)

    def key_pair(self) -> tuple[str, str]:
        return self.key, self.secret

DAY_NS = 86_400 * 10**9
T0 = 1_704_229_200 * 10**9  # 2024-01-02 16:00 New York
SYMBOLS = ("AAPL", "MSFT", "JPM")
EXACT = VenueConfig(participation_rate=None, slippage=SlippageConfig(model="none"))


def _bars(ts_ns: int, price: float) -> BarBatch:
    n = len(SYMBOLS)
    p = np.full(n, price)
    return BarBatch(ts_ns, SYMBOLS, p, p + 1, p - 1, p, np.full(n, 1e7))


def _ctx(now: int, price: float = 100.0, positions: dict[str, Decimal] | None = None) -> RiskContext:
    snap = PortfolioSnapshot(ts_ns=now, cash=Decimal(10**6), equity=Decimal(10**6), market_value=Decimal(0),
                             gross_exposure=Decimal(0), buying_power=Decimal(2 * 10**6),
                             start_of_day_equity=Decimal(10**6), positions=positions or {},
                             prices={s: Decimal(str(price)) for s in SYMBOLS}, price_ts_ns={s: now for s in SYMBOLS})
    return RiskContext(ts_ns=now, portfolio=snap)


def _order(cid: str, symbol: str = "AAPL", side: OrderSide = OrderSide.BUY, quantity: int = 10, ts_ns: int = T0,
           limit: str | None = None) -> SubmitOrder:
    return SubmitOrder(client_order_id=ClientOrderId(cid), strategy_id=StrategyId("meanrev"), symbol=symbol,
                       side=side, quantity=Decimal(quantity),
                       order_type=OrderType.LIMIT if limit else OrderType.MARKET,
                       limit_price=Decimal(limit) if limit else None, time_in_force=TimeInForce.DAY, ts_ns=ts_ns)


class ServerReplay:
    """The paper server as the service's replay venue (in-process, as the PaperServerActor is in Ray)."""

    def __init__(self, server: AlpacaPaperServer) -> None:
        self.server = server

    def advance(self, batch: BarBatch, session_closed: bool) -> int:
        self.server.advance(batch, session_closed)
        return len(self.server.trade_updates)

    def wait_stream_listening(self, count: int, timeout_s: float) -> bool:
        return self.server.wait_stream_listening(count, timeout_s)


@pytest.fixture()
def server() -> Iterator[AlpacaPaperServer]:
    with AlpacaPaperServer(start_ts_ns=T0 - DAY_NS, venue_config=EXACT, symbols=SYMBOLS) as paper:
        yield paper


def _settings(server: AlpacaPaperServer, tmp_path: Path, **overrides: Any) -> LiveBrokerSettings:
    values: dict[str, Any] = dict(credentials=_KeyPair(KEY, SECRET), database_url=f"sqlite:///{tmp_path / 'state.sqlite'}",
                                  risk=RiskConfig(duplicate_intent_window_s=0), url_override=server.url,
                                  stream_url_override=server.ws_url, rate_limit_per_minute=600_000,
                                  stream_timeout_s=5.0)
    values.update(overrides)
    return LiveBrokerSettings(**values)


@pytest.fixture()
def service(server: AlpacaPaperServer, tmp_path: Path) -> Iterator[LiveBrokerService]:
    live = LiveBrokerService(_settings(server, tmp_path), ServerReplay(server))
    yield live
    live.close()


def _send(service: LiveBrokerService, orders: list[SubmitOrder], ctx: RiskContext) -> list[Any]:
    accepted, denied = service.check(orders, ctx)
    assert not denied
    return service.submit(accepted, ctx.ts_ns)


def _positions(server: AlpacaPaperServer) -> dict[str, Decimal]:
    return {s: q for s, q in AlpacaBroker(KEY, SECRET, url_override=server.url).positions().items() if q}


def test_orders_sent_are_filled_through_the_stream_and_returned_by_on_bars(service, server, tmp_path) -> None:
    assert service.reconcile_report()["ok"] and service.on_bars(_bars(T0, 100.0), True) == []
    acks = _send(service, [_order("b-1"), _order("b-2", "MSFT", quantity=5)], _ctx(T0))
    assert [type(e) for e in acks] == [OrderAccepted, OrderAccepted]

    events = service.on_bars(_bars(T0 + DAY_NS, 101.0), True)
    fills = [e for e in events if isinstance(e, OrderFilled)]
    assert sorted((str(f.client_order_id), f.last_quantity) for f in fills) == [("b-1", 10), ("b-2", 5)]
    assert {f.strategy_id for f in fills} == {"meanrev"}  # from the stored order, not the stream
    assert all(f.fee == 0 for f in fills)  # buys pay no regulatory fees
    sells = _send(service, [_order("s-1", side=OrderSide.SELL, quantity=10, ts_ns=T0 + DAY_NS)],
                  _ctx(T0 + DAY_NS, 101.0, {"AAPL": Decimal(10)}))
    assert [type(e) for e in sells] == [OrderAccepted]
    (sell,) = [e for e in service.on_bars(_bars(T0 + 2 * DAY_NS, 102.0), True) if isinstance(e, OrderFilled)]

    expected_fee = AlpacaFeeModel.from_config(FeeConfig()).fee(instrument_for("AAPL"), OrderSide.SELL,
                                                               Decimal(10), sell.last_price, True)
    assert sell.fee == expected_fee > 0
    assert service.on_bars(_bars(T0 + 3 * DAY_NS, 102.0), True) == []  # nothing is handed out twice
    state = TradingStateStore(service.settings.database_url)
    assert {s: q for s, q in state.positions().items() if q} == _positions(server) == {"MSFT": Decimal(5)}
    assert AuditLog(service.settings.database_url).verify().ok


def test_a_risk_denial_is_returned_by_check_and_never_reaches_the_broker(server, tmp_path) -> None:
    service = LiveBrokerService(_settings(server, tmp_path, risk=RiskConfig(max_order_quantity=Decimal(50))),
                                ServerReplay(server))
    try:
        service.on_bars(_bars(T0, 100.0), True)
        accepted, denied = service.check([_order("big", quantity=51), _order("small", quantity=50)], _ctx(T0))
        assert [str(c.client_order_id) for c in accepted] == ["small"]
        assert [(str(d.client_order_id), d.reason) for d in denied] == [("big", DenyReason.MAX_ORDER_QUANTITY)]
        service.submit(accepted, T0)
        posted = [r.body["client_order_id"] for r in server.requests if r.method == "POST"]
        assert posted == ["small"]
    finally:
        service.close()


def test_submit_refuses_a_command_its_checks_did_not_accept(service, server) -> None:
    service.on_bars(_bars(T0, 100.0), True)

    events = service.submit([_order("unchecked")], T0)

    assert [type(e) for e in events] == [OrderRejected]
    assert events[0].reason.startswith(DenyReason.NOT_CHECKED.value)
    assert not [r for r in server.requests if r.method == "POST"]


def test_the_kill_switch_halts_cancels_at_the_broker_and_denies_new_orders(service, server) -> None:
    service.on_bars(_bars(T0, 100.0), True)
    _send(service, [_order("resting", limit="95.00")], _ctx(T0))

    changes = service.engage_kill_switch(T0 + 1, "operator")

    assert [(c.previous, c.state) for c in changes] == [(TradingState.ACTIVE, TradingState.HALTED)]
    canceled = service.on_bars(_bars(T0 + DAY_NS, 100.0), False)
    assert [(type(e), str(e.client_order_id)) for e in canceled] == [(OrderCanceled, "resting")]
    _, denied = service.check([_order("after", ts_ns=T0 + DAY_NS)], _ctx(T0 + DAY_NS))
    assert [d.reason for d in denied] == [DenyReason.TRADING_HALTED]
    assert service.engage_kill_switch(T0 + DAY_NS, "again") == []  # idempotent


def test_updates_the_stream_lost_are_recovered_by_reconciliation(server, tmp_path) -> None:
    service = LiveBrokerService(_settings(server, tmp_path, stream_timeout_s=0.2), ServerReplay(server))
    try:
        service.on_bars(_bars(T0, 100.0), True)
        _send(service, [_order("lost")], _ctx(T0))
        server.pause_stream()

        events = service.on_bars(_bars(T0 + DAY_NS, 100.0), True)

        (fill,) = [e for e in events if isinstance(e, OrderFilled)]
        assert fill.last_quantity == 10 and str(fill.strategy_id) == "meanrev"
        report = service.reconcile_report()  # the fill came from reconciliation over REST
        assert report["ok"] and Decimal(report["missed_fill_quantity"]) == 10
    finally:
        service.close()


def test_a_broker_order_unknown_to_the_store_keeps_trading_halted(server, tmp_path) -> None:
    server.advance(_bars(T0, 100.0))
    AlpacaBroker(KEY, SECRET, url_override=server.url).submit(_order("orphan", limit="90.00"))

    service = LiveBrokerService(_settings(server, tmp_path), ServerReplay(server))
    try:
        report = service.reconcile_report()
        assert not report["ok"] and list(report["orphans"]) == ["orphan"]
        (change,) = service.update(_ctx(T0 + 1))
        assert isinstance(change, TradingStateChanged) and change.state is TradingState.HALTED
        assert change.ts_ns == T0 + 1  # stamped with the cycle's time
        _, denied = service.check([_order("x", ts_ns=T0 + 1)], _ctx(T0 + 1))
        assert [d.reason for d in denied] == [DenyReason.TRADING_HALTED]
    finally:
        service.close()


def test_live_mode_hands_out_what_the_stream_delivered(server, tmp_path) -> None:
    server.advance(_bars(T0, 100.0))
    service = LiveBrokerService(_settings(server, tmp_path))  # no replay venue: the market moves by itself
    try:
        _send(service, [_order("live-1")], _ctx(T0))
        server.advance(_bars(T0 + DAY_NS, 100.0), session_closed=True)  # the market moves on its own

        fills: list[OrderFilled] = []
        deadline = time.monotonic() + 5.0
        while not fills and time.monotonic() < deadline:
            fills = [e for e in service.on_bars(_bars(T0 + DAY_NS, 100.0), True) if isinstance(e, OrderFilled)]
        assert [(str(f.client_order_id), f.last_quantity) for f in fills] == [("live-1", Decimal(10))]
    finally:
        service.close()
