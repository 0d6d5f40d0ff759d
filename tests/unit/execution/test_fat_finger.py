"""Fat-finger orders through the live order path: each is denied with its own reason, none is sent.

Every case goes through :meth:`LiveExecutionEngine.submit` with the real :class:`AlpacaBroker`
pointed at the paper server, and must come back as one :class:`OrderDenied` with the case's
:class:`DenyReason` and a message naming the offending value. The paper server is shared by the
whole module, and after every case its request log holds no ``POST /v2/orders`` at all.

``SubmitOrder`` does no validation of its own (a frozen dataclass), so every malformed order can
be built and reaches the pre-trade checks: there is no construction-error case.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import pytest

from amcp.brokers.alpaca import AlpacaBroker
from amcp.config import RiskConfig
from amcp.data.ratelimit import TokenBucket
from amcp.domain.enums import DenyReason, OrderSide, OrderType, TimeInForce, TradingState
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.messages import OrderDenied, SubmitOrder
from amcp.execution.live import LiveExecutionEngine
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext, RiskEngine
from amcp.store.audit import AuditLog
from amcp.store.state import TradingStateStore
from serve.alpaca_paper import AlpacaPaperServer
from tests.unit.execution._invariants import (
    EXACT,
    KEY,
    SECRET,
    T0,
    FilledQuantityWatch,
    GuardedBroker,
    bars,
    check_invariants,
    inspector_for,
)

LIMITS = RiskConfig(
    max_order_quantity=Decimal(10_000),
    max_order_notional_usd=Decimal(200_000),
    price_collar_pct=0.10,
    max_price_age_s=60.0,
    max_position_notional_usd=Decimal(300_000),
    max_gross_exposure_usd=Decimal(1_000_000),
    duplicate_intent_window_s=60.0,
    restricted_symbols=("GME",),
)
MARK = Decimal(100)  # every symbol's reference price, USD
HELD_MSFT = Decimal(1_500)  # the firm's MSFT position, shares (150,000 USD)


def _ctx(*, positions: dict[str, Decimal] | None = None, gross_exposure: Decimal = Decimal(150_000),
         buying_power: Decimal = Decimal(1_000_000), price_age_s: int = 1,
         open_orders: tuple[SubmitOrder, ...] = ()) -> RiskContext:
    """The context of a normal trading moment; a case overrides what it breaks."""
    prices = {s: MARK for s in ("AAPL", "MSFT", "JPM", "GME")}
    snap = PortfolioSnapshot(ts_ns=T0, cash=Decimal(500_000), equity=Decimal(650_000),
                             market_value=Decimal(150_000), gross_exposure=gross_exposure,
                             buying_power=buying_power,
                             start_of_day_equity=Decimal(650_000),
                             positions={"MSFT": HELD_MSFT} if positions is None else positions,
                             prices=prices, price_ts_ns={s: T0 - price_age_s * 10**9 for s in prices})
    return RiskContext(ts_ns=T0, portfolio=snap, open_orders=open_orders)


def _order(name: str, **changes: Any) -> SubmitOrder:
    """A sane order (buy 10 AAPL at the market) with ``changes`` applied, as a strategy builds it."""
    base = SubmitOrder(client_order_id=ClientOrderId(f"ff-{name}"), strategy_id=StrategyId("fat-finger"),
                       symbol="AAPL", side=OrderSide.BUY, quantity=Decimal(10), ts_ns=T0)
    return replace(base, **changes)


def _limit(price: str, **changes: Any) -> dict[str, Any]:
    return {"order_type": OrderType.LIMIT, "time_in_force": TimeInForce.GTC, "limit_price": Decimal(price),
            **changes}


Venue = tuple[AlpacaPaperServer, TradingStateStore, AuditLog]
Setup = Callable[[LiveExecutionEngine, SubmitOrder], None]


def _accepted_before(**changes: Any) -> Setup:
    """The risk hop (``check``) accepted an order like this one, with ``changes``, a moment ago."""
    def setup(engine: LiveExecutionEngine, order: SubmitOrder) -> None:
        accepted, denied = engine.check([replace(order, **changes)], _ctx())
        assert accepted and not denied, denied
    return setup


def _state(state: TradingState) -> Setup:
    def setup(engine: LiveExecutionEngine, order: SubmitOrder) -> None:
        engine.risk.set_state(state, T0, "fat-finger suite")
    return setup


def _kill(engine: LiveExecutionEngine, order: SubmitOrder) -> None:
    engine.risk.engage_kill_switch(T0, "fat-finger suite")


D = DenyReason  # short, for the table below


@dataclass(frozen=True)
class Case:
    """One malformed or excessive order and the denial it must get."""

    name: str
    order: dict[str, Any]
    reason: DenyReason
    says: str  # a fragment of the denial message (it names the value)
    ctx: dict[str, Any] = field(default_factory=dict)
    setup: Setup | None = None
    limits: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("zero_quantity", {"quantity": Decimal(0)}, D.INVALID_QUANTITY, "quantity 0 must be > 0"),
    Case("negative_quantity", {"quantity": Decimal(-10)}, D.INVALID_QUANTITY, "quantity -10 must be > 0"),
    Case("nan_quantity", {"quantity": Decimal("NaN")}, D.INVALID_QUANTITY, "is not a finite Decimal"),
    Case("infinite_quantity", {"quantity": Decimal("Infinity")}, D.INVALID_QUANTITY,
         "is not a finite Decimal"),
    Case("float_quantity", {"quantity": 10.0}, D.INVALID_QUANTITY, "quantity 10.0 is not a finite Decimal"),
    Case("fractional_quantity_not_fractionable", {"quantity": Decimal("0.5")}, D.INVALID_QUANTITY,
         "multiple of the lot size 1"),
    Case("million_share_order", {"quantity": Decimal(1_000_000)}, D.MAX_ORDER_QUANTITY,
         "quantity 1000000 AAPL exceeds max_order_quantity 10000"),
    Case("quantity_typo_over_max_notional", {"quantity": Decimal(5_000)}, D.MAX_ORDER_NOTIONAL,
         "exceeds max_order_notional_usd 200000"),
    Case("limit_price_typo_x100", _limit("10000"), D.PRICE_COLLAR, "limit_price 10000"),
    Case("limit_price_outside_collar", _limit("111"), D.PRICE_COLLAR, "limit_price 111 is 11.00% from"),
    Case("stop_price_outside_collar", {"order_type": OrderType.STOP, "stop_price": Decimal("85"),
                                       "side": OrderSide.SELL, "symbol": "MSFT"},
         D.PRICE_COLLAR, "stop_price 85 is 15.00% from"),
    Case("off_tick_limit_price", _limit("99.995"), D.INVALID_PRICE, "multiple of the tick 0.01"),
    Case("limit_order_without_limit_price", {"order_type": OrderType.LIMIT}, D.INVALID_PRICE,
         "a limit order needs a limit_price"),
    Case("stop_order_without_stop_price", {"order_type": OrderType.STOP}, D.INVALID_PRICE,
         "a stop order needs a stop_price"),
    Case("stop_limit_without_stop_price", _limit("100", order_type=OrderType.STOP_LIMIT), D.INVALID_PRICE,
         "a stop_limit order needs a stop_price"),
    Case("stop_limit_without_limit_price", {"order_type": OrderType.STOP_LIMIT, "stop_price": Decimal(101)},
         D.INVALID_PRICE, "a stop_limit order needs a limit_price"),
    Case("negative_limit_price", _limit("-100"), D.INVALID_PRICE, "limit_price -100 must be > 0"),
    Case("nan_limit_price", _limit("NaN"), D.INVALID_PRICE, "limit_price Decimal('NaN') is not a finite"),
    Case("market_order_with_a_limit_price", {"limit_price": Decimal(100)}, D.INVALID_PRICE,
         "a market order must not carry a limit_price"),
    Case("trailing_stop_with_price_and_percent", {"order_type": OrderType.TRAILING_STOP,
                                                  "trail_price": Decimal(1),
                                                  "trail_percent": Decimal(1)},
         D.INVALID_PRICE, "exactly one of trail_price and trail_percent"),
    Case("unknown_symbol", {"symbol": "NOT A TICKER"}, D.UNKNOWN_INSTRUMENT,
         "unknown instrument 'NOT A TICKER'"),
    Case("symbol_not_written_as_listed", {"symbol": "aapl"}, D.UNKNOWN_INSTRUMENT,
         "is not written as its instrument writes it"),
    Case("restricted_symbol", {"symbol": "GME"}, D.RESTRICTED_SYMBOL, "GME is a restricted symbol"),
    Case("no_reference_price", {"symbol": "IBM"}, D.NO_REFERENCE_PRICE, "no reference price for IBM"),
    Case("stale_reference_price", {}, D.STALE_REFERENCE_PRICE, "is 120s old", ctx={"price_age_s": 120}),
    Case("duplicate_client_order_id", {}, D.DUPLICATE_CLIENT_ORDER_ID,
         "client_order_id ff-duplicate_client_order_id was already accepted",
         setup=_accepted_before(symbol="JPM")),
    Case("client_order_id_of_a_working_order", {}, D.DUPLICATE_CLIENT_ORDER_ID, "is a working order",
         ctx={"open_orders": (_order("client_order_id_of_a_working_order", symbol="JPM"),)}),
    Case("duplicate_intent", {}, D.DUPLICATE_INTENT, "was accepted 0s ago",
         setup=_accepted_before(client_order_id=ClientOrderId("ff-duplicate_intent-first"))),
    Case("position_limit_breach", {"symbol": "MSFT", "quantity": Decimal(2_000)}, D.MAX_POSITION,
         "max_position_notional_usd 300000"),
    Case("gross_exposure_breach", {"quantity": Decimal(1_000)}, D.MAX_GROSS_EXPOSURE,
         "max_gross_exposure_usd 1000000", ctx={"gross_exposure": Decimal(950_000)}),
    Case("buying_power_breach", {"quantity": Decimal(1_000)}, D.INSUFFICIENT_BUYING_POWER,
         "needs 100000 USD of buying power", ctx={"buying_power": Decimal(50_000)}),
    Case("throttle_exceeded", {}, D.THROTTLED, "throttle_max_orders 1",
         setup=_accepted_before(client_order_id=ClientOrderId("ff-throttle-first"), symbol="JPM"),
         limits={"throttle_max_orders": 1}),
    Case("trading_halted", {}, D.TRADING_HALTED, "trading is halted", setup=_state(TradingState.HALTED)),
    Case("kill_switch_engaged", {}, D.TRADING_HALTED, "kill switch engaged", setup=_kill),
    Case("trading_reducing_and_order_increases", {}, D.TRADING_REDUCING, "trading is reducing",
         setup=_state(TradingState.REDUCING)),
    Case("reduce_only_increasing_a_position", {"reduce_only": True}, D.REDUCE_ONLY,
         "reduce_only buy 10 AAPL would take the position 0"),
    Case("reduce_only_flipping_a_position", {"reduce_only": True, "symbol": "MSFT", "side": OrderSide.SELL,
                                             "quantity": Decimal(2_000)},
         D.REDUCE_ONLY, "would take the position 1500 (working sells 0) to -500"),
]


@pytest.fixture(scope="module")
def venue(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venue]:
    """One paper server and one database for the whole suite (so "no order sent" covers all of it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('fat_finger') / 'state.sqlite'}"
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=EXACT) as server:
        server.advance(bars(T0, float(MARK)))
        state, audit = TradingStateStore(url), AuditLog(url)
        yield server, state, audit
        state.close()
        audit.close()


def test_a_sane_order_passes_the_same_checks(venue: Venue) -> None:
    """The control: without the fault the base order passes the checks (so each denial is the case's
    doing). Only the risk hop runs: nothing is sent."""
    engine = LiveExecutionEngine(GuardedBroker(AlpacaBroker(KEY, SECRET, url_override=venue[0].url)),
                                 venue[1], venue[2], RiskEngine(LIMITS), clock_ns=lambda: T0)
    assert engine.start().ok
    accepted, denied = engine.check([_order("control")], _ctx())
    assert denied == [] and len(accepted) == 1


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fat_finger_order_is_denied_with_its_reason_and_never_sent(
        case: Case, venue: Venue) -> None:
    server, state, audit = venue
    inner = AlpacaBroker(KEY, SECRET, url_override=server.url, rate_limiter=TokenBucket(600_000, burst=100))
    broker = GuardedBroker(inner)
    engine = LiveExecutionEngine(broker, state, audit, RiskEngine(LIMITS.model_copy(update=case.limits)),
                                 clock_ns=lambda: T0)
    broker.engine = engine
    assert engine.start().ok
    order = _order(case.name, **case.order)
    if case.setup is not None:
        case.setup(engine, order)

    events = engine.submit([order], _ctx(**case.ctx))

    assert [type(e) for e in events] == [OrderDenied], events
    denial = events[0]
    assert denial.reason is case.reason, f"{case.name}: denied {denial.reason.value} ({denial.message})"
    assert case.says in denial.message, denial.message
    assert denial.client_order_id == order.client_order_id
    last = audit.tail(1)[0]
    assert last.action == "denied" and last.payload["client_order_id"] == str(order.client_order_id)
    assert engine.sent == 0 and state.order(order.client_order_id) is None
    posts = [r for r in server.requests if r.method == "POST" and r.path == "/v2/orders"]
    assert posts == [], f"order requests reached the broker during the suite: {posts}"
    check_invariants(inspector_for(server), state, audit, broker, FilledQuantityWatch())
