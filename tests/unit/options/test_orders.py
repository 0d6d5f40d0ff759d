"""A strategy position becomes one mleg order (legs, ratios, net price and its sign), or an option
order plus a separate stock order; positions one mleg order cannot carry are refused by name."""

from __future__ import annotations

from decimal import Decimal

import pytest

from amcp.config import RiskConfig
from amcp.domain.enums import OptionRight, OrderClass, OrderSide, OrderType, PositionIntent, TimeInForce
from amcp.domain.identifiers import ClientOrderId, StrategyId
from amcp.domain.messages import SubmitOrder
from amcp.options.orders import StrategyOrderError, net_price, strategy_order, strategy_orders
from amcp.options.strategies import OptionLegSpec, StrategyPosition, StrategySpec, assemble, build
from amcp.options.strategies.catalog import get_spec
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext, RiskEngine
from tests.unit.options._spy_chain import AS_OF, EXPIRY, QUOTES, TS_NS, occ, spy_chain

CID = ClientOrderId("ic-1")
STRATEGY = StrategyId("condors")


def mid(is_call: bool, strike: float) -> Decimal:
    bid, ask = QUOTES[(is_call, strike)]
    return (Decimal(bid) + Decimal(ask)) / 2


def iron_condor(units: int = 1) -> StrategyPosition:
    return build("short_iron_condor", spy_chain(), strikes={"K1": 470, "K2": 475, "K3": 485, "K4": 490},
                 near=EXPIRY, units=units)


def order_of(position: StrategyPosition, **fields: object) -> SubmitOrder:
    return strategy_order(position, client_order_id=CID, strategy_id=STRATEGY, ts_ns=TS_NS, **fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- one mleg order


def test_iron_condor_is_one_mleg_order_whose_legs_are_the_positions_contracts() -> None:
    order = order_of(iron_condor())

    assert (order.order_class, order.symbol, order.quantity, order.order_type, order.time_in_force) == (
        OrderClass.MLEG, "SPY", Decimal(1), OrderType.LIMIT, TimeInForce.DAY)
    assert [(leg.symbol, leg.side, leg.ratio_quantity, leg.position_intent) for leg in order.legs] == [
        (occ(False, 470), OrderSide.BUY, 1, PositionIntent.BUY_TO_OPEN),
        (occ(False, 475), OrderSide.SELL, 1, PositionIntent.SELL_TO_OPEN),
        (occ(True, 485), OrderSide.SELL, 1, PositionIntent.SELL_TO_OPEN),
        (occ(True, 490), OrderSide.BUY, 1, PositionIntent.BUY_TO_OPEN),
    ]
    assert (order.client_order_id, order.strategy_id, order.ts_ns) == (CID, STRATEGY, TS_NS)


def test_a_credit_is_a_negative_net_price_rounded_to_the_cent() -> None:
    # mids: 1.05 − 1.65 − 2.05 + 0.825 = −1.825, rounded half-even on the cent: −1.82
    exact = mid(False, 470) - mid(False, 475) - mid(True, 485) + mid(True, 490)

    order = order_of(iron_condor())

    assert net_price(iron_condor()) == exact == Decimal("-1.825")
    assert order.limit_price == Decimal("-1.82")


def test_a_debit_is_a_positive_net_price_per_unit_whatever_the_units() -> None:
    chain = spy_chain()
    one = build("bull_call_spread", chain, strikes={"K1": 480, "K2": 490}, near=EXPIRY)
    five = build("bull_call_spread", chain, strikes={"K1": 480, "K2": 490}, near=EXPIRY, units=5)

    orders = [order_of(one), order_of(five)]

    # 4.45 − 0.825 = 3.625 per unit, rounded half-even: 3.62
    assert [(o.quantity, o.limit_price) for o in orders] == [(Decimal(1), Decimal("3.62")), (Decimal(5), Decimal("3.62"))]
    assert [leg.ratio_quantity for leg in orders[1].legs] == [1, 1]


def test_ratios_are_reduced_and_the_net_price_weighs_each_leg_by_its_ratio() -> None:
    # call christmas tree, 2 units: +2 C475, −6 C485, +4 C490 → quantity 2, ratios 1, 3, 2
    position = build("call_christmas_tree", spy_chain(), strikes={"K1": 475, "K2": 485, "K3": 490},
                     near=EXPIRY, units=2)

    order = order_of(position)

    assert order.quantity == Decimal(2)
    assert [(leg.side, leg.ratio_quantity) for leg in order.legs] == [
        (OrderSide.BUY, 1), (OrderSide.SELL, 3), (OrderSide.BUY, 2)]
    # 7.70 − 3 × 2.05 + 2 × 0.825 = 3.20 per unit
    assert order.limit_price == mid(True, 475) - 3 * mid(True, 485) + 2 * mid(True, 490) == Decimal("3.20")


def test_a_given_limit_price_is_kept_and_a_market_order_has_none() -> None:
    assert order_of(iron_condor(), limit_price=Decimal("-1.65")).limit_price == Decimal("-1.65")
    market = order_of(iron_condor(), order_type=OrderType.MARKET)
    assert market.order_type is OrderType.MARKET and market.limit_price is None


@pytest.mark.parametrize("fields, words", [
    ({"limit_price": Decimal("-1.655")}, "0.01 tick"),
    ({"limit_price": Decimal(0)}, "nonzero"),
    ({"limit_price": Decimal("NaN")}, "finite"),
    ({"order_type": OrderType.MARKET, "limit_price": Decimal(1)}, "market order takes no limit_price"),
    ({"order_type": OrderType.STOP}, "limit or market"),
    ({"time_in_force": TimeInForce.IOC}, "day or gtc"),
])
def test_prices_types_and_time_in_force_alpaca_refuses_are_refused_here(fields: dict[str, object], words: str) -> None:
    with pytest.raises(StrategyOrderError, match=words):
        order_of(iron_condor(), **fields)


def test_a_default_limit_that_rounds_to_zero_is_refused() -> None:
    position = assemble("bull_call_spread", underlying="SPY", as_of=AS_OF, spot=480, strikes={"K1": 480, "K2": 490},
                        premiums=(1.004, 1.0), near_expiry=EXPIRY)

    with pytest.raises(StrategyOrderError, match="rounds to 0.00"):
        order_of(position)


def test_more_than_four_legs_cannot_be_one_mleg_order() -> None:
    spec = StrategySpec(
        name="six_leg_double_diagonal_ladder", title="Six legs", lean_name=None, outlook="neutral",
        legs=tuple(OptionLegSpec(OptionRight.CALL, ratio, f"K{i + 1}") for i, ratio in enumerate((1, -1, 1, -1, 1, -1))),
        default_strikes={f"K{i + 1}": get_spec("long_call").default_strikes["K1"] for i in range(6)},
    )
    position = assemble(spec, underlying="SPY", as_of=AS_OF, spot=480,
                        strikes={f"K{i + 1}": 470.0 + 5 * i for i in range(6)}, premiums=(1,) * 6, near_expiry=EXPIRY)

    with pytest.raises(StrategyOrderError, match="one mleg order takes 2 to 4 option legs, the position has 6 "):
        order_of(position)
    with pytest.raises(StrategyOrderError, match="split it into orders of at most 4 legs"):
        strategy_orders(position, client_order_id=CID, strategy_id=STRATEGY, ts_ns=TS_NS)


def test_one_option_leg_is_not_an_mleg_order() -> None:
    position = build("long_call", spy_chain(), strikes={"K1": 480}, near=EXPIRY)

    with pytest.raises(StrategyOrderError, match="the position has 1 .* a single option leg is a simple option order"):
        order_of(position)


def test_strategy_order_refuses_a_stock_leg_rather_than_drop_it() -> None:
    collar = build("collar", spy_chain(), strikes={"K1": 470, "K2": 490}, near=EXPIRY)

    with pytest.raises(StrategyOrderError, match="stock leg of 100 SPY"):
        order_of(collar)


def test_the_mleg_order_passes_the_risk_engines_structural_checks() -> None:
    order = order_of(iron_condor(units=3))
    chain = spy_chain()
    marks = {str(s): Decimal(repr(float(m))) for s, m in zip(chain.symbol, chain.mid)}
    snap = PortfolioSnapshot(ts_ns=TS_NS, cash=Decimal(10**6), equity=Decimal(10**6), market_value=Decimal(0),
                             gross_exposure=Decimal(0), buying_power=Decimal(10**6), start_of_day_equity=Decimal(10**6),
                             prices=marks, price_ts_ns=dict.fromkeys(marks, TS_NS))

    accepted, denied = RiskEngine(RiskConfig()).check([order], RiskContext(ts_ns=TS_NS, portfolio=snap))

    assert denied == [] and accepted == [order]


# --------------------------------------------------------------------------- option order plus stock order


def test_a_covered_call_is_a_sell_call_order_and_a_separate_stock_order() -> None:
    covered = build("covered_call", spy_chain(), strikes={"K1": 490}, near=EXPIRY, units=2)

    option, stock = strategy_orders(covered, client_order_id=CID, strategy_id=STRATEGY, ts_ns=TS_NS)

    assert (option.order_class, option.symbol, option.side, option.quantity, option.limit_price) == (
        OrderClass.SIMPLE, occ(True, 490), OrderSide.SELL, Decimal(2), Decimal("0.82"))  # mid 0.825, half-even
    assert (stock.client_order_id, stock.symbol, stock.side, stock.quantity, stock.limit_price) == (
        ClientOrderId("ic-1-stock"), "SPY", OrderSide.BUY, Decimal(200), Decimal("480.00"))
    assert stock.order_class is OrderClass.SIMPLE and stock.strategy_id == STRATEGY


def test_a_collar_is_an_mleg_order_plus_a_stock_order() -> None:
    collar = build("collar", spy_chain(), strikes={"K1": 470, "K2": 490}, near=EXPIRY)

    option, stock = strategy_orders(collar, client_order_id=CID, strategy_id=STRATEGY, ts_ns=TS_NS,
                                    stock_limit_price=Decimal("480.25"))

    assert option.order_class is OrderClass.MLEG and [leg.side for leg in option.legs] == [OrderSide.BUY, OrderSide.SELL]
    assert mid(False, 470) - mid(True, 490) == Decimal("0.225")
    assert option.limit_price == Decimal("0.22")  # rounded half-even on the cent
    assert (stock.side, stock.quantity, stock.limit_price) == (OrderSide.BUY, Decimal(100), Decimal("480.25"))


def test_a_position_without_stock_is_one_order() -> None:
    assert strategy_orders(iron_condor(), client_order_id=CID, strategy_id=STRATEGY, ts_ns=TS_NS) == (
        order_of(iron_condor()),)


def test_a_protective_call_sells_stock_and_buys_the_call() -> None:
    position = build("protective_call", spy_chain(), strikes={"K1": 485}, near=EXPIRY)

    option, stock = strategy_orders(position, client_order_id=CID, strategy_id=STRATEGY, ts_ns=TS_NS,
                                    order_type=OrderType.MARKET)

    assert (option.side, option.order_type, option.limit_price) == (OrderSide.BUY, OrderType.MARKET, None)
    assert (stock.side, stock.quantity, stock.order_type, stock.limit_price) == (
        OrderSide.SELL, Decimal(100), OrderType.MARKET, None)


@pytest.mark.parametrize("limit, words", [
    (Decimal("-2.00"), "net credit, but the one leg buys"),
    (Decimal("2.001"), "not a positive price on its 0.01 tick"),
])
def test_a_single_leg_limit_must_agree_with_its_side_and_tick(limit: Decimal, words: str) -> None:
    position = build("long_call", spy_chain(), strikes={"K1": 485}, near=EXPIRY)

    with pytest.raises(StrategyOrderError, match=words):
        strategy_orders(position, client_order_id=CID, strategy_id=STRATEGY, ts_ns=TS_NS, limit_price=limit)


def test_a_single_short_leg_takes_a_negative_net_limit_as_a_sell_at_its_absolute_value() -> None:
    position = build("naked_put", spy_chain(), strikes={"K1": 475}, near=EXPIRY)

    [order] = strategy_orders(position, client_order_id=CID, strategy_id=STRATEGY, ts_ns=TS_NS,
                              limit_price=Decimal("-1.60"))

    assert (order.symbol, order.side, order.quantity, order.limit_price) == (
        occ(False, 475), OrderSide.SELL, Decimal(1), Decimal("1.60"))


def test_a_stock_limit_off_the_tick_is_refused() -> None:
    covered = build("covered_call", spy_chain(), strikes={"K1": 490}, near=EXPIRY)

    with pytest.raises(StrategyOrderError, match="stock_limit_price 480.001"):
        strategy_orders(covered, client_order_id=CID, strategy_id=STRATEGY, ts_ns=TS_NS,
                        stock_limit_price=Decimal("480.001"))
