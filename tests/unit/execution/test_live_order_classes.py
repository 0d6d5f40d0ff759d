"""Order classes on the live order path: legs registered, positions from leg fills, reconciliation
from fill activities, and the pre-trade checks of each class.

The broker is a hand-written stub answering with recorded-style Alpaca order objects, run through
amcp's real translation (``events_from_order``, ``broker_order``, ``trade_update_events``); the
store and the audit log are real (SQLite).
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from amcp.brokers.alpaca import BrokerFill, BrokerOrder, broker_order, events_from_order
from amcp.config import RiskConfig
from amcp.domain.data import BarBatch
from amcp.domain.enums import DenyReason, OrderClass, OrderSide, OrderStatus, OrderType, PositionIntent, TimeInForce
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.messages import CancelOrder, OrderEvent, OrderLeg, OrderSubmitted, SubmitOrder
from amcp.execution.live import RECONCILE_TRADE_PREFIX, LiveExecutionEngine
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext, RiskEngine
from amcp.store.audit import AuditLog
from amcp.store.state import Anomaly, TradingStateStore

T0 = 1_704_229_200 * 10**9
CALL_480 = "SPY240119C00480000"
CALL_490 = "SPY240119C00490000"
_WORKING = {"new", "held", "accepted", "partially_filled", "pending_new"}


def _raw(cid: str, oid: str, *, symbol: str = "AAPL", side: str = "buy", qty: str = "10", status: str = "new",
         order_type: str = "market", order_class: str = "simple", limit: str | None = None,
         stop: str | None = None, filled: str = "0", avg: str | None = None,
         legs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An Alpaca order object (the fields amcp reads, as Alpaca writes them)."""
    return {"id": oid, "client_order_id": cid, "symbol": symbol, "side": side, "qty": qty, "filled_qty": filled,
            "filled_avg_price": avg, "status": status, "type": order_type, "order_class": order_class,
            "time_in_force": "day", "limit_price": limit, "stop_price": stop, "updated_at": "2024-01-02T21:00:00Z",
            "legs": legs}


class StubBroker:
    """A broker whose orders are Alpaca order objects the test sets; optional FILL activities."""

    def __init__(self, *, activities: bool = True) -> None:
        self.orders: dict[str, dict[str, Any]] = {}  # top-level orders by client order id
        self.answers: dict[str, dict[str, Any]] = {}  # what the next POST of an id answers
        self.held: dict[str, Decimal] = {}
        self.executions: list[BrokerFill] | None = [] if activities else None
        self.lose_response = False

    def submit(self, command: SubmitOrder) -> list[OrderEvent]:
        raw = self.answers.pop(str(command.client_order_id))
        self.orders[raw["client_order_id"]] = raw
        if self.lose_response:
            return [OrderSubmitted(client_order_id=command.client_order_id, ts_ns=T0)]
        return events_from_order(raw, T0)

    def cancel(self, command: CancelOrder) -> list[OrderEvent]:
        return []

    def cancel_all(self) -> int:
        return 0

    def _find(self, client_order_id: str) -> dict[str, Any] | None:
        for raw in self.orders.values():
            for candidate in (raw, *(raw.get("legs") or ())):
                if candidate["client_order_id"] == client_order_id:
                    return candidate
        return None

    def order(self, client_order_id: str) -> BrokerOrder | None:
        raw = self._find(client_order_id)
        return None if raw is None else broker_order(raw)

    def open_orders(self) -> list[BrokerOrder]:
        return [broker_order(raw) for raw in self.orders.values()
                if raw["status"] in _WORKING or any(leg["status"] in _WORKING for leg in raw.get("legs") or ())]

    def positions(self) -> dict[str, Decimal]:
        return dict(self.held)

    def __getattr__(self, name: str) -> Any:
        if name == "fill_activities" and self.executions is not None:
            return lambda after_ns=None: list(self.executions or [])
        raise AttributeError(name)

    def update(self, client_order_id: str, **fields: Any) -> dict[str, Any]:
        raw = self._find(client_order_id)
        assert raw is not None
        raw.update(fields)
        return raw


class Rig:
    def __init__(self, url: str, broker: StubBroker) -> None:
        self.url = url
        self.broker = broker
        self.risk = RiskEngine(RiskConfig(duplicate_intent_window_s=0))
        self.engine = LiveExecutionEngine(broker, TradingStateStore(url), AuditLog(url), self.risk,
                                          clock_ns=lambda: T0)
        assert self.engine.start().ok

    def ctx(self, prices: dict[str, Decimal] | None = None) -> RiskContext:
        prices = prices or {"AAPL": Decimal(100)}
        snap = PortfolioSnapshot(ts_ns=T0, cash=Decimal(1_000_000), equity=Decimal(1_000_000), market_value=Decimal(0),
                                 gross_exposure=Decimal(0), buying_power=Decimal(2_000_000),
                                 start_of_day_equity=Decimal(1_000_000), prices=prices,
                                 price_ts_ns={s: T0 for s in prices})
        return RiskContext(ts_ns=T0, portfolio=snap)

    def stream(self, event: str, raw: dict[str, Any], execution_id: str = "", qty: str = "", price: str = "") -> list[OrderEvent]:
        message = {"event": event, "order": raw, "timestamp": "2024-01-02T21:00:00Z",
                   "execution_id": execution_id, "qty": qty, "price": price}
        return self.engine.on_trade_updates([message], "s1")

    def check_agrees_with_broker(self) -> None:
        state = self.engine.state
        assert state.positions() == {s: q for s, q in self.broker.positions().items() if q}
        report = self.engine.reconcile()
        assert report.ok and report.orphans == (), report.to_dict()
        assert AuditLog(self.url).verify().ok


@pytest.fixture
def url(tmp_path) -> Iterator[str]:
    yield f"sqlite:///{tmp_path / 'state.sqlite'}"


def _command(cid: str = "c-1", **fields: Any) -> SubmitOrder:
    base: dict[str, Any] = dict(client_order_id=ClientOrderId(cid), strategy_id=StrategyId("s1"), symbol="AAPL",
                                side=OrderSide.BUY, quantity=Decimal(10), ts_ns=T0)
    return SubmitOrder(**{**base, **fields})


def _bracket(cid: str = "c-1", **fields: Any) -> SubmitOrder:
    values: dict[str, Any] = dict(order_type=OrderType.LIMIT, limit_price=Decimal(100), order_class=OrderClass.BRACKET,
                                  take_profit_limit_price=Decimal(105), stop_loss_stop_price=Decimal(95))
    return _command(cid, **{**values, **fields})


def _spread(cid: str = "c-1", **fields: Any) -> SubmitOrder:
    legs = (OrderLeg(symbol=CALL_480, side=OrderSide.BUY, position_intent=PositionIntent.BUY_TO_OPEN),
            OrderLeg(symbol=CALL_490, side=OrderSide.SELL, ratio_quantity=2, position_intent=PositionIntent.SELL_TO_OPEN))
    values: dict[str, Any] = dict(symbol="SPY", quantity=Decimal(3), order_type=OrderType.LIMIT,
                                  limit_price=Decimal("-0.45"), order_class=OrderClass.MLEG, legs=legs)
    return _command(cid, **{**values, **fields})


def _bracket_answer() -> dict[str, Any]:
    return _raw("c-1", "o-1", order_type="limit", limit="100", order_class="bracket", legs=[
        _raw("tp-1", "o-2", side="sell", status="held", order_type="limit", limit="105", order_class="bracket"),
        _raw("sl-1", "o-3", side="sell", status="held", order_type="stop", stop="95", order_class="bracket")])


def _spread_answer() -> dict[str, Any]:
    return _raw("c-1", "o-1", symbol="", side="", qty="3", order_type="limit", limit="-0.45", order_class="mleg", legs=[
        _raw("leg-a", "o-a", symbol=CALL_480, qty="3", order_type="", order_class="mleg"),
        _raw("leg-b", "o-b", symbol=CALL_490, side="sell", qty="6", order_type="", order_class="mleg")])


# --------------------------------------------------------------------------- bracket


def test_bracket_exits_are_registered_and_their_fills_make_the_position(url) -> None:
    broker = StubBroker()
    rig = Rig(url, broker)
    broker.answers["c-1"] = _bracket_answer()

    rig.engine.submit([_bracket()], rig.ctx())

    state = rig.engine.state
    for cid, broker_id in (("tp-1", "o-2"), ("sl-1", "o-3")):
        leg = state.order(cid)
        assert leg is not None and leg.status is OrderStatus.NEW and leg.broker_order_id == broker_id
        assert leg.strategy_id == "s1" and leg.command.tag == "leg-of:c-1" and leg.side is OrderSide.SELL
    # entry fills, the take-profit fills, the stop-loss is cancelled
    parent = broker.update("c-1", status="filled", filled_qty="10", filled_avg_price="100")
    rig.stream("fill", parent, "e-1", "10", "100")
    take_profit = broker.update("tp-1", status="filled", filled_qty="10", filled_avg_price="105")
    rig.stream("fill", take_profit, "e-2", "10", "105")
    rig.stream("canceled", broker.update("sl-1", status="canceled"))

    assert state.order("tp-1").status is OrderStatus.FILLED and state.order("sl-1").status is OrderStatus.CANCELED
    assert [(f.client_order_id, f.side, f.price) for f in state.fills()] == [
        ("c-1", OrderSide.BUY, Decimal(100)), ("tp-1", OrderSide.SELL, Decimal(105))]
    rig.check_agrees_with_broker()


def test_a_repeated_leg_report_changes_nothing(url) -> None:
    broker = StubBroker()
    rig = Rig(url, broker)
    broker.answers["c-1"] = _bracket_answer()
    rig.engine.submit([_bracket()], rig.ctx())

    rig.stream("new", broker.orders["c-1"])

    legs = [r for r in rig.engine.state.open_orders() if r.command.tag.startswith("leg-of:")]
    assert len(legs) == 2 and all(r.version == 1 for r in legs)
    assert rig.engine.state.anomalies() == []


def test_a_leg_of_an_unknown_parent_is_recorded_not_registered(url) -> None:
    rig = Rig(url, StubBroker())
    stranger = _bracket_answer()
    stranger["client_order_id"] = "nobody"

    rig.stream("new", stranger)

    assert rig.engine.state.order("tp-1") is None
    assert {a.kind for a in rig.engine.state.anomalies()} == {Anomaly.UNKNOWN_ORDER}


def test_legs_of_a_parent_whose_answer_was_lost_are_registered_by_reconciliation(url) -> None:
    broker = StubBroker()
    rig = Rig(url, broker)
    broker.answers["c-1"] = _bracket_answer()
    broker.lose_response = True
    rig.engine.submit([_bracket()], rig.ctx())
    assert rig.engine.state.order("tp-1") is None

    report = rig.engine.reconcile()

    assert report.ok and report.orphans == () and set(report.legs_registered) == {"tp-1", "sl-1"}
    assert rig.engine.state.order("c-1").status is OrderStatus.NEW
    assert rig.engine.state.order("sl-1").broker_order_id == "o-3"


# --------------------------------------------------------------------------- multi-leg


@pytest.mark.parametrize("parent_fill_streamed", [True, False])
def test_multi_leg_positions_are_the_legs_fills_not_the_parents(url, parent_fill_streamed: bool) -> None:
    broker = StubBroker()
    rig = Rig(url, broker)
    broker.answers["c-1"] = _spread_answer()

    rig.engine.submit([_spread()], rig.ctx({"AAPL": Decimal(100), **MARKS}))
    rig.stream("fill", broker.update("leg-a", status="filled", filled_qty="3", filled_avg_price="1.05"), "e-a", "3", "1.05")
    rig.stream("fill", broker.update("leg-b", status="filled", filled_qty="6", filled_avg_price="0.75"), "e-b", "6", "0.75")
    parent = broker.update("c-1", status="filled", filled_qty="3", filled_avg_price="-0.45")
    if parent_fill_streamed:
        rig.stream("fill", parent, "e-p", "3", "-0.45")
    broker.held = {CALL_480: Decimal(3), CALL_490: Decimal(-6)}

    rig.check_agrees_with_broker()  # reconciles: records the parent's fill if the stream lost it

    state = rig.engine.state
    row = state.order("c-1")
    assert row.status is OrderStatus.FILLED and row.filled_quantity == 3 and row.average_fill_price == Decimal("-0.45")
    assert state.positions() == {CALL_480: Decimal(3), CALL_490: Decimal(-6)}
    assert state.anomalies() == []


def test_an_overfilled_multi_leg_order_halts_its_root_and_every_leg_symbol(url) -> None:
    broker = StubBroker()
    rig = Rig(url, broker)
    broker.answers["c-1"] = _spread_answer()
    ctx = rig.ctx({"AAPL": Decimal(100), **MARKS})
    rig.engine.submit([_spread()], ctx)

    parent = broker.update("c-1", status="filled", filled_qty="4", filled_avg_price="-0.45")
    assert rig.stream("fill", parent, "e-p", "4", "-0.45") == []  # 4 of 3: refused

    assert [a.kind for a in rig.engine.state.anomalies("c-1")] == [Anomaly.OVERFILL]
    assert set(rig.engine.halted_symbols) == {"SPY", CALL_480, CALL_490}
    single_leg = _command("c-2", symbol=CALL_490, quantity=Decimal(1), limit_price=Decimal("0.75"))
    another_spread = _spread("c-3")
    denied = rig.engine.submit([single_leg, another_spread], ctx)
    assert [(e.client_order_id, e.reason) for e in denied] == [
        (single_leg.client_order_id, DenyReason.TRADING_HALTED), (another_spread.client_order_id, DenyReason.TRADING_HALTED)]


# --------------------------------------------------------------------------- reconciliation from fill activities


def _execution(i: int, qty: str, price: str, order_id: str = "o-1") -> BrokerFill:
    return BrokerFill(execution_id=f"2024010216000{i}::x-{i}", venue_order_id=order_id, symbol="AAPL",
                      side=OrderSide.BUY, quantity=Decimal(qty), price=Decimal(price), ts_ns=T0 + i)


def _missed_market_fill(url: str, activities: bool = True) -> Rig:
    broker = StubBroker(activities=activities)
    rig = Rig(url, broker)
    broker.answers["c-1"] = _raw("c-1", "o-1")
    rig.engine.submit([_command()], rig.ctx())
    broker.update("c-1", status="filled", filled_qty="10", filled_avg_price="100.4")
    broker.held = {"AAPL": Decimal(10)}
    if broker.executions is not None:
        broker.executions[:] = [_execution(1, "6", "100"), _execution(2, "4", "101")]
    return rig


def test_a_missed_fill_is_recorded_with_the_brokers_execution_ids(url) -> None:
    rig = _missed_market_fill(url)

    report = rig.engine.reconcile()

    assert report.ok and report.missed_fill_quantity == Decimal(10)
    fills = rig.engine.state.fills("c-1")
    assert [(f.trade_id, f.quantity, f.price) for f in fills] == [
        ("20240102160001::x-1", Decimal(6), Decimal(100)), ("20240102160002::x-2", Decimal(4), Decimal(101))]
    assert rig.engine.state.order("c-1").status is OrderStatus.FILLED


def test_late_stream_copies_of_reconciled_fills_are_refused(url) -> None:
    rig = _missed_market_fill(url)
    rig.engine.reconcile()
    raw = rig.broker.orders["c-1"]

    same_id = rig.stream("partial_fill", raw, "20240102160001::x-1", "6", "100")
    other_id = rig.stream("partial_fill", raw, "8d6f1c1e-0000-4000-8000-000000000002", "4", "101")

    assert same_id == [] and other_id == []
    assert rig.engine.state.positions() == {"AAPL": Decimal(10)}
    rig.check_agrees_with_broker()


def test_executions_the_stream_delivered_are_not_recorded_twice(url) -> None:
    rig = _missed_market_fill(url)
    raw = dict(rig.broker.orders["c-1"], status="partially_filled", filled_qty="6")
    rig.stream("partial_fill", raw, "stream-exec-1", "6", "100")  # the stream's id for the first execution

    rig.engine.reconcile()

    fills = rig.engine.state.fills("c-1")
    assert [(f.trade_id, f.quantity) for f in fills] == [("stream-exec-1", Decimal(6)),
                                                         ("20240102160002::x-2", Decimal(4))]
    rig.check_agrees_with_broker()


def test_without_activities_the_missed_quantity_is_one_synthesised_fill(url) -> None:
    rig = _missed_market_fill(url, activities=False)

    report = rig.engine.reconcile()

    fills = rig.engine.state.fills("c-1")
    assert report.ok and len(fills) == 1 and str(fills[0].trade_id).startswith(RECONCILE_TRADE_PREFIX)
    assert (fills[0].quantity, fills[0].price) == (Decimal(10), Decimal("100.4"))


# --------------------------------------------------------------------------- pre-trade checks of each class


def _check(command: SubmitOrder, prices: dict[str, Decimal] | None = None, **limits: Any) -> DenyReason | None:
    prices = prices or {"AAPL": Decimal(100)}
    snap = PortfolioSnapshot(ts_ns=T0, cash=Decimal(10**6), equity=Decimal(10**6), market_value=Decimal(0),
                             gross_exposure=Decimal(0), buying_power=Decimal(2 * 10**6),
                             start_of_day_equity=Decimal(10**6), prices=prices, price_ts_ns={s: T0 for s in prices})
    accepted, denied = RiskEngine(RiskConfig(**limits)).check([command], RiskContext(ts_ns=T0, portfolio=snap))
    return denied[0].reason if denied else None


@pytest.mark.parametrize("command, reason", [
    (_bracket(), None),
    (_bracket(side=OrderSide.SELL, take_profit_limit_price=Decimal(95), stop_loss_stop_price=Decimal(105)), None),
    (_bracket(stop_loss_stop_price=None), DenyReason.INVALID_ORDER_CLASS),
    (_bracket(take_profit_limit_price=Decimal(94)), DenyReason.INVALID_PRICE),  # below the stop
    (_bracket(take_profit_limit_price=Decimal(99), stop_loss_stop_price=Decimal(90)), DenyReason.INVALID_PRICE),
    (_bracket(stop_loss_limit_price=Decimal("95.5")), DenyReason.INVALID_PRICE),  # a sell stop-limit above its stop
    (_bracket(take_profit_limit_price=Decimal("105.001")), DenyReason.INVALID_PRICE),  # off the tick
    (_command(order_class=OrderClass.OTO, stop_loss_stop_price=Decimal(95)), None),
    (_bracket(order_class=OrderClass.OTO), DenyReason.INVALID_ORDER_CLASS),  # both exits
    (_command(side=OrderSide.SELL, order_type=OrderType.LIMIT, limit_price=Decimal(105), order_class=OrderClass.OCO,
              stop_loss_stop_price=Decimal(95)), None),
    (_command(side=OrderSide.BUY, order_type=OrderType.LIMIT, limit_price=Decimal(105), order_class=OrderClass.OCO,
              stop_loss_stop_price=Decimal(95)), DenyReason.INVALID_PRICE),  # a buy closes a short: limit below stop
    (_command(order_class=OrderClass.OCO, stop_loss_stop_price=Decimal(95)), DenyReason.INVALID_ORDER_CLASS),
    (_command(take_profit_limit_price=Decimal(105)), DenyReason.INVALID_ORDER_CLASS),  # simple with an exit
])
def test_exits_must_fit_the_order_class_and_the_side(command: SubmitOrder, reason: DenyReason | None) -> None:
    assert _check(command) is reason


def _legs(*symbols: str) -> tuple[OrderLeg, ...]:
    return tuple(OrderLeg(symbol=s, side=OrderSide.BUY if i % 2 == 0 else OrderSide.SELL) for i, s in enumerate(symbols))


MARKS = {CALL_480: Decimal("1.05"), CALL_490: Decimal("0.75")}


@pytest.mark.parametrize("command, prices, limits, reason", [
    (_spread(), MARKS, {}, None),  # a leg that opens needs its mark: its position limit is in USD
    (_spread(legs=_legs(CALL_480)), None, {}, DenyReason.INVALID_ORDER_CLASS),
    (_spread(legs=_legs(CALL_480, CALL_480)), None, {}, DenyReason.INVALID_ORDER_CLASS),
    (_spread(legs=_legs(CALL_480, "SPY240119X00490000")), None, {}, DenyReason.INVALID_ORDER_CLASS),
    (_spread(legs=_legs(CALL_480, "QQQ240119C00490000")), None, {}, DenyReason.INVALID_ORDER_CLASS),
    (_spread(limit_price=Decimal("0.455")), None, {}, DenyReason.INVALID_PRICE),
    (_spread(limit_price=Decimal(0)), None, {}, DenyReason.INVALID_PRICE),
    (_spread(quantity=Decimal("1.5")), None, {}, DenyReason.INVALID_QUANTITY),
    (_spread(stop_loss_stop_price=Decimal(1)), None, {}, DenyReason.INVALID_ORDER_CLASS),
    (_spread(order_type=OrderType.MARKET, limit_price=None), None, {}, DenyReason.NO_REFERENCE_PRICE),
    (_spread(order_type=OrderType.MARKET, limit_price=None), MARKS, {}, None),
    # 3 × 100 × (1 × 1.05 + 2 × 0.75) = 765 USD of gross premium
    (_spread(order_type=OrderType.MARKET, limit_price=None), MARKS, {"max_order_notional_usd": Decimal(764)},
     DenyReason.MAX_ORDER_NOTIONAL),
    # 3 × 100 × |-0.45| = 135 USD
    (_spread(), MARKS, {"max_order_notional_usd": Decimal(134)}, DenyReason.MAX_ORDER_NOTIONAL),
    (_spread(), None, {"max_order_quantity": Decimal(5)}, DenyReason.MAX_ORDER_QUANTITY),  # 3 × ratio 2
    (_spread(reduce_only=True), None, {}, DenyReason.REDUCE_ONLY),
    (_spread(), None, {"restricted_symbols": ("SPY",)}, DenyReason.RESTRICTED_SYMBOL),
])
def test_multi_leg_orders_are_checked_as_a_unit(command: SubmitOrder, prices: dict[str, Decimal] | None,
                                                limits: dict[str, Any], reason: DenyReason | None) -> None:
    assert _check(command, {"AAPL": Decimal(100), **(prices or {})}, **limits) is reason


def test_closing_multi_leg_order_passes_reduce_only() -> None:
    legs = (OrderLeg(symbol=CALL_480, side=OrderSide.SELL, position_intent=PositionIntent.SELL_TO_CLOSE),
            OrderLeg(symbol=CALL_490, side=OrderSide.BUY, ratio_quantity=2, position_intent=PositionIntent.BUY_TO_CLOSE))

    assert _check(_spread(legs=legs, reduce_only=True, limit_price=Decimal("0.30")),
                  {"AAPL": Decimal(100), **MARKS}) is None


# --------------------------------------------------------------------------- end to end: real alpaca-py, paper server

KEY, SECRET = "test-key", "test-secret"
DAY_NS = 86_400 * 10**9


@pytest.fixture
def paper(url) -> Iterator[tuple[Any, LiveExecutionEngine]]:
    import numpy as np

    from amcp.brokers.alpaca import AlpacaBroker
    from amcp.config import SlippageConfig, VenueConfig
    from amcp.data.ratelimit import TokenBucket
    from serve.alpaca_paper import AlpacaPaperServer

    exact = VenueConfig(participation_rate=None, slippage=SlippageConfig(model="none"))
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=exact) as server:
        clock = {"now": T0}

        def advance(o: float, h: float, low: float, c: float) -> None:
            clock["now"] += DAY_NS
            columns = (np.array([x]) for x in (o, h, low, c, 1e6))
            server.advance(BarBatch(clock["now"], ("AAPL",), *columns))

        server.advance_bar = advance  # type: ignore[attr-defined]
        advance(100, 101, 99, 100)
        broker = AlpacaBroker(KEY, SECRET, url_override=server.url, rate_limiter=TokenBucket(600_000, burst=1000),
                              sleep=lambda s: None, lookup_delay_s=0.0)
        engine = LiveExecutionEngine(broker, TradingStateStore(url), AuditLog(url),
                                     RiskEngine(RiskConfig(duplicate_intent_window_s=0)), clock_ns=lambda: clock["now"])
        assert engine.start().ok
        yield server, engine


def _pump(server: Any, engine: LiveExecutionEngine, seen: list[int]) -> None:
    updates = server.trade_updates[seen[0]:]
    seen[0] += len(updates)
    engine.on_trade_updates(updates, "s1")


def _paper_ctx(engine: LiveExecutionEngine) -> RiskContext:
    now = engine._clock_ns()
    snap = PortfolioSnapshot(ts_ns=now, cash=Decimal(10**6), equity=Decimal(10**6), market_value=Decimal(0),
                             gross_exposure=Decimal(0), buying_power=Decimal(2 * 10**6),
                             start_of_day_equity=Decimal(10**6), prices={"AAPL": Decimal(100), **MARKS},
                             price_ts_ns={s: now for s in ("AAPL", *MARKS)})
    return RiskContext(ts_ns=now, portfolio=snap)


def _agrees(engine: LiveExecutionEngine, url: str) -> None:
    assert engine.state.positions() == {s: q for s, q in engine.broker.positions().items() if q}
    report = engine.reconcile()
    assert report.ok and report.orphans == (), report.to_dict()
    assert AuditLog(url).verify().ok


def test_paper_bracket_entry_then_take_profit(paper, url) -> None:
    server, engine = paper
    seen = [0]
    engine.submit([_bracket(time_in_force=TimeInForce.GTC)], _paper_ctx(engine))
    legs = [r for r in engine.state.open_orders() if r.command.tag == "leg-of:c-1"]
    assert sorted(r.command.order_type for r in legs) == [OrderType.LIMIT, OrderType.STOP]

    server.advance_bar(100, 101, 99, 100)  # the entry fills at its limit
    _pump(server, engine, seen)
    assert engine.state.positions() == {"AAPL": Decimal(10)}
    server.advance_bar(104, 106, 103, 105)  # the take-profit fills, the stop-loss is cancelled
    _pump(server, engine, seen)

    take_profit = next(r for r in legs if r.command.order_type is OrderType.LIMIT)
    assert engine.state.order(take_profit.client_order_id).status is OrderStatus.FILLED
    assert engine.state.positions() == {}
    assert engine.state.anomalies() == []
    _agrees(engine, url)


def test_paper_multi_leg_fills_atomically_and_positions_are_the_legs(paper, url) -> None:
    server, engine = paper
    seen = [0]
    server.set_option_contracts([CALL_480, CALL_490])
    engine.submit([_spread(limit_price=Decimal("-0.40"))], _paper_ctx(engine))

    server.set_option_quotes({CALL_480: (Decimal("1.00"), Decimal("1.05")), CALL_490: (Decimal("0.75"), Decimal("0.80"))})
    _pump(server, engine, seen)

    parent = engine.state.order("c-1")
    assert parent.status is OrderStatus.FILLED and parent.average_fill_price == Decimal("-0.45")  # 1.05 − 2 × 0.75
    assert engine.state.positions() == {CALL_480: Decimal(3), CALL_490: Decimal(-6)}
    _agrees(engine, url)


def test_paper_missed_fill_is_reconciled_with_the_activity_execution_id(paper, url) -> None:
    server, engine = paper
    seen = [0]
    engine.submit([_command()], _paper_ctx(engine))
    _pump(server, engine, seen)
    server.advance_bar(101, 102, 100, 101)  # fills while the stream is not read

    report = engine.reconcile()

    activity = engine.broker.fill_activities()[0]
    assert report.ok and report.missed_fill_quantity == Decimal(10)
    assert [str(f.trade_id) for f in engine.state.fills("c-1")] == [activity.execution_id]
    _pump(server, engine, seen)  # the late stream copy carries the same execution id: refused
    assert len(engine.state.fills("c-1")) == 1
    _agrees(engine, url)
