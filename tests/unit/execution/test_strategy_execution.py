"""A strategy from the catalog goes out as one mleg order through the live OMS, the real AlpacaBroker
and amcp's Alpaca-compatible paper server: one broker order, all legs filled at the net price the
quotes give or none, positions equal to the legs, an audit that verifies; greek limits deny before
any request leaves the process.

The chain is the hand-quoted SPY chain of ``tests/unit/options/test_orders.py``; the paper server
lists its contracts and quotes them at its bids and asks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import pytest

from amcp.config import RiskConfig, SlippageConfig, VenueConfig
from amcp.domain.enums import DenyReason, OrderSide, OrderStatus
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.messages import OrderDenied, OrderEvent, SubmitOrder
from amcp.execution.live import LiveExecutionEngine
from amcp.options.black_scholes import bsm_greeks
from amcp.options.chain import OptionChain
from amcp.options.orders import strategy_order
from amcp.options.strategies import StrategyPosition, build, net_greeks
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import OptionGreeks, RiskContext, RiskEngine
from amcp.store.audit import AuditLog
from amcp.store.state import TradingStateStore
from tests.unit.options._spy_chain import EXPIRY, QUOTES, occ, spy_chain

T0 = 1_704_229_200 * 10**9  # 2024-01-02 16:00 New York, the chain's as_of
STRATEGY = StrategyId("options-1")
IRON_CONDOR = {"K1": 470, "K2": 475, "K3": 485, "K4": 490}
VERTICAL = {"K1": 480, "K2": 490}


class Rig:
    """A live OMS on the real AlpacaBroker against the paper server, quoting the chain."""

    def __init__(self, server: Any, url: str, config: RiskConfig) -> None:
        from amcp.brokers.alpaca import AlpacaBroker
        from amcp.data.ratelimit import TokenBucket

        self.server, self.url, self.chain = server, url, spy_chain()
        self.seen = 0
        broker = AlpacaBroker("test-key", "test-secret", url_override=server.url,
                              rate_limiter=TokenBucket(600_000, burst=1000), sleep=lambda s: None, lookup_delay_s=0.0)
        self.engine = LiveExecutionEngine(broker, TradingStateStore(url), AuditLog(url), RiskEngine(config),
                                          clock_ns=lambda: T0)
        assert self.engine.start().ok
        server.set_option_contracts([str(symbol) for symbol in self.chain.symbol])
        self.quote({})

    def quote(self, changes: Mapping[tuple[bool, float], tuple[str, str]]) -> None:
        """Quote every contract of the chain at QUOTES, with ``changes`` applied; read the stream."""
        quotes = {**QUOTES, **changes}
        self.server.set_option_quotes({occ(c, k): (Decimal(b), Decimal(a)) for (c, k), (b, a) in quotes.items()})
        self.pump()

    def pump(self) -> None:
        updates = self.server.trade_updates[self.seen:]
        self.seen += len(updates)
        self.engine.on_trade_updates(updates, str(STRATEGY))

    def context(self) -> RiskContext:
        """Marks at the chain's mids, the OMS's positions, greeks from the chain's vendor IVs."""
        chain = self.chain
        marks = {str(s): Decimal(repr(float(m))) for s, m in zip(chain.symbol, chain.mid)}
        snap = PortfolioSnapshot(ts_ns=T0, cash=Decimal(10**6), equity=Decimal(10**6), market_value=Decimal(0),
                                 gross_exposure=Decimal(0), buying_power=Decimal(2 * 10**6),
                                 start_of_day_equity=Decimal(10**6), positions=self.engine.state.positions(),
                                 prices=marks, price_ts_ns=dict.fromkeys(marks, T0))
        return RiskContext(ts_ns=T0, portfolio=snap, option_greeks=chain_greeks(chain))

    def submit(self, order: SubmitOrder) -> list[OrderEvent]:
        events = self.engine.submit([order], self.context())
        self.pump()
        return events

    def order_posts(self) -> int:
        return sum(1 for r in self.server.requests if r.method == "POST" and r.path == "/v2/orders")

    def agrees_with_broker(self) -> None:
        assert self.engine.state.positions() == {s: q for s, q in self.engine.broker.positions().items() if q}
        report = self.engine.reconcile()
        assert report.ok and report.orphans == (), report.to_dict()
        assert AuditLog(self.url).verify().ok


def chain_greeks(chain: OptionChain) -> dict[str, OptionGreeks]:
    greeks = bsm_greeks(chain.spot, chain.strike, chain.t_years, chain.rate, chain.div_yield, chain.vendor_iv,
                        chain.is_call)
    return {str(s): OptionGreeks(delta=float(d), gamma=float(g), vega=float(v))
            for s, d, g, v in zip(chain.symbol, greeks["delta"], greeks["gamma"], greeks["vega"])}


@pytest.fixture
def rig(tmp_path) -> Iterator[Callable[..., Rig]]:
    from serve.alpaca_paper import AlpacaPaperServer

    exact = VenueConfig(participation_rate=None, slippage=SlippageConfig(model="none"))
    stores = iter(range(10))
    with AlpacaPaperServer(start_ts_ns=T0, venue_config=exact) as server:
        def make(**limits: Any) -> Rig:
            """A rig on the one paper server, with its own store and these risk limits."""
            return Rig(server, f"sqlite:///{tmp_path / f'state-{next(stores)}.sqlite'}",
                       RiskConfig(duplicate_intent_window_s=0, **limits))

        yield make


def position(name: str, strikes: Mapping[str, float], units: int) -> StrategyPosition:
    return build(name, spy_chain(), strikes=dict(strikes), near=EXPIRY, units=units)


def quoted_net(order: SubmitOrder, quotes: Mapping[tuple[bool, float], tuple[str, str]]) -> Decimal:
    """The net price per unit the quotes give: a buy leg at its ask, a sell leg at its bid."""
    by_symbol = {occ(c, k): (Decimal(b), Decimal(a)) for (c, k), (b, a) in quotes.items()}
    return sum(((by_symbol[leg.symbol][1] if leg.side is OrderSide.BUY else -by_symbol[leg.symbol][0])
                * leg.ratio_quantity for leg in order.legs), Decimal(0))


# --------------------------------------------------------------------------- atomic fills at the net price


def test_iron_condor_is_one_broker_order_filled_at_the_quotes_net_credit(rig) -> None:
    r = rig()
    condor = position("short_iron_condor", IRON_CONDOR, units=2)
    order = strategy_order(condor, client_order_id=ClientOrderId("ic-1"), strategy_id=STRATEGY, ts_ns=T0,
                           limit_price=Decimal("-1.65"))
    # buy P470 at 1.10, sell P475 at 1.60, sell C485 at 2.00, buy C490 at 0.85: a credit of 1.65
    assert quoted_net(order, QUOTES) == Decimal("-1.65")

    r.submit(order)

    assert r.order_posts() == 1
    parent = r.engine.state.order("ic-1")
    assert parent.status is OrderStatus.FILLED and parent.average_fill_price == Decimal("-1.65")
    assert parent.filled_quantity == Decimal(2)
    fills = sorted((f.symbol, f.side, f.quantity, f.price) for f in r.engine.state.fills() if f.symbol)
    assert fills == sorted([
        (occ(False, 470), OrderSide.BUY, Decimal(2), Decimal("1.10")),
        (occ(False, 475), OrderSide.SELL, Decimal(2), Decimal("1.60")),
        (occ(True, 485), OrderSide.SELL, Decimal(2), Decimal("2.00")),
        (occ(True, 490), OrderSide.BUY, Decimal(2), Decimal("0.85")),
    ])
    assert r.engine.state.positions() == {leg.symbol: Decimal(leg.quantity) for leg in condor.option_legs} == {
        occ(False, 470): 2, occ(False, 475): -2, occ(True, 485): -2, occ(True, 490): 2}
    assert r.engine.state.anomalies() == []
    r.agrees_with_broker()


def test_an_unmarketable_condor_fills_no_leg_until_the_whole_net_is_there(rig) -> None:
    r = rig()
    condor = position("short_iron_condor", IRON_CONDOR, units=1)
    # the default limit: the mids' net −1.825, rounded to −1.82; the quotes give only −1.65
    order = strategy_order(condor, client_order_id=ClientOrderId("ic-1"), strategy_id=STRATEGY, ts_ns=T0)
    assert order.limit_price == Decimal("-1.82")

    r.submit(order)
    better_call = {(True, 485.0): ("2.10", "2.20")}  # one leg improves: −1.75, still short of −1.82
    r.quote(better_call)

    assert r.order_posts() == 1
    assert r.engine.state.order("ic-1").status is OrderStatus.NEW
    assert r.engine.state.fills() == [] and r.engine.state.positions() == {}
    assert r.engine.broker.positions() == {}

    both = {**better_call, (False, 475.0): ("1.80", "1.90")}  # −1.10 + 1.80 + 2.10 − 0.85 = a credit of 1.95
    assert quoted_net(order, {**QUOTES, **both}) == Decimal("-1.95")
    r.quote(both)

    parent = r.engine.state.order("ic-1")
    assert parent.status is OrderStatus.FILLED and parent.average_fill_price == Decimal("-1.95")
    assert r.engine.state.positions() == {occ(False, 470): 1, occ(False, 475): -1, occ(True, 485): -1,
                                          occ(True, 490): 1}
    r.agrees_with_broker()


def test_vertical_debit_spread_fills_at_the_quotes_net_debit(rig) -> None:
    r = rig()
    vertical = position("bull_call_spread", VERTICAL, units=3)
    order = strategy_order(vertical, client_order_id=ClientOrderId("v-1"), strategy_id=STRATEGY, ts_ns=T0,
                           limit_price=Decimal("3.75"))

    r.submit(order)

    # buy C480 at 4.50, sell C490 at 0.80: a debit of 3.70, within the limit of 3.75
    parent = r.engine.state.order("v-1")
    assert parent.status is OrderStatus.FILLED and parent.average_fill_price == quoted_net(order, QUOTES) == Decimal("3.70")
    assert r.engine.state.positions() == {occ(True, 480): 3, occ(True, 490): -3}
    assert r.order_posts() == 1
    r.agrees_with_broker()


# --------------------------------------------------------------------------- greek limits on the order path


def test_a_delta_limit_denies_before_any_request_and_accepts_within(rig) -> None:
    vertical = position("bull_call_spread", VERTICAL, units=2)
    delta = net_greeks(vertical)["delta"]  # the strategy analytics' net delta, shares-equivalent
    assert delta > 0  # a bull spread is long delta
    order = strategy_order(vertical, client_order_id=ClientOrderId("v-1"), strategy_id=STRATEGY, ts_ns=T0,
                           limit_price=Decimal("3.70"))

    tight = rig(max_net_delta_per_underlying=0.99 * delta)
    events = tight.submit(order)

    [denied] = [e for e in events if isinstance(e, OrderDenied)]
    assert denied.reason is DenyReason.GREEK_LIMIT and "net delta of SPY" in denied.message
    assert tight.order_posts() == 0 and tight.engine.state.positions() == {}

    within = rig(max_net_delta_per_underlying=1.01 * delta)
    assert not any(isinstance(e, OrderDenied) for e in within.submit(order))
    assert within.order_posts() == 1 and within.engine.state.order("v-1").status is OrderStatus.FILLED
    within.agrees_with_broker()


def test_the_filled_position_counts_toward_the_next_orders_greeks(rig) -> None:
    condor = position("short_iron_condor", IRON_CONDOR, units=1)
    vega = net_greeks(condor)["vega"]  # a short condor is short vega
    assert vega < 0
    r = rig(max_net_vega_usd_per_underlying=1.5 * abs(vega))
    first = strategy_order(condor, client_order_id=ClientOrderId("ic-1"), strategy_id=STRATEGY, ts_ns=T0,
                           limit_price=Decimal("-1.65"))
    second = strategy_order(condor, client_order_id=ClientOrderId("ic-2"), strategy_id=STRATEGY, ts_ns=T0,
                            limit_price=Decimal("-1.65"))

    r.submit(first)
    assert r.engine.state.order("ic-1").status is OrderStatus.FILLED
    events = r.submit(second)  # the held condor's vega plus this one's: 2 × |vega| > 1.5 × |vega|

    [denied] = [e for e in events if isinstance(e, OrderDenied)]
    assert denied.reason is DenyReason.GREEK_LIMIT and "net vega of SPY" in denied.message
    assert r.order_posts() == 1
    assert r.engine.state.positions() == {leg.symbol: Decimal(leg.quantity) for leg in condor.option_legs}
    r.agrees_with_broker()


def test_an_order_whose_legs_have_no_greeks_is_denied_before_sending(rig) -> None:
    r = rig(max_net_delta_per_underlying=10_000)
    order = strategy_order(position("bull_call_spread", VERTICAL, units=1), client_order_id=ClientOrderId("v-1"),
                           strategy_id=STRATEGY, ts_ns=T0, limit_price=Decimal("3.70"))
    ctx = r.context()
    blind = RiskContext(ts_ns=ctx.ts_ns, portfolio=ctx.portfolio,
                        option_greeks={s: g for s, g in ctx.option_greeks.items() if s != occ(True, 490)})

    [denied] = r.engine.submit([order], blind)

    assert isinstance(denied, OrderDenied) and denied.reason is DenyReason.NO_GREEKS
    assert r.order_posts() == 0
