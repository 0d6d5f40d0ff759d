"""Sizing: target weights and order intents into SubmitOrder commands, from explicit inputs."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

import pytest

from amcp.config import SizingConfig
from amcp.domain import (
    Equity,
    OrderIntent,
    OrderSide,
    OrderType,
    StrategyId,
    TargetWeight,
    TimeInForce,
    derive_client_order_id,
)
from amcp.domain.instruments import Instrument
from amcp.errors import PortfolioError
from amcp.portfolio.sizing import (
    SKIP_AT_TARGET,
    SKIP_BELOW_MIN_NOTIONAL,
    SKIP_INVALID_WEIGHT,
    SKIP_NO_PRICE,
    SKIP_UNKNOWN_STRATEGY,
    Sizer,
)
from amcp.portfolio.snapshot import PortfolioSnapshot

D = Decimal
TS = 1_700_000_000_000_000_000
ALPHA, BETA = StrategyId("alpha"), StrategyId("beta")
CALL = "AAPL240119C00190000"


def snapshot(
    equity: str | int = 100_000,
    prices: Mapping[str, Decimal] | None = None,
    strategy_positions: Mapping[tuple[str, str], Decimal] | None = None,
) -> PortfolioSnapshot:
    return PortfolioSnapshot(
        ts_ns=TS,
        cash=D(equity),
        equity=D(equity),
        market_value=D(0),
        gross_exposure=D(0),
        buying_power=D(equity) * 2,
        start_of_day_equity=D(equity),
        strategy_positions=dict(strategy_positions or {}),
        prices=dict(prices if prices is not None else {"AAPL": D(100), "MSFT": D(333)}),
    )


def sizer(min_notional: str = "100", buffer: float = 0.02, **fractions: float) -> Sizer:
    config = SizingConfig(min_trade_notional_usd=D(min_notional), cash_buffer_pct=buffer)
    return Sizer(config, fractions or {"alpha": 0.5, "beta": 0.5})


def test_target_weight_becomes_buy_of_weight_times_capital_over_price() -> None:
    # capital = 100000 × 0.5 × (1 - 0.02) = 49000; target = 0.5 × 49000 / 100 = 245 shares
    orders = sizer().size(
        [TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.5, tag="t")], snapshot(), {}, TS
    )

    assert len(orders) == 1
    order = orders[0]
    assert (order.strategy_id, order.symbol, order.side, order.quantity) == (
        ALPHA,
        "AAPL",
        OrderSide.BUY,
        D(245),
    )
    assert order.order_type is OrderType.MARKET
    assert order.ts_ns == TS
    assert order.tag == "t"
    assert order.client_order_id == derive_client_order_id(ALPHA, TS, 0, "AAPL")


def test_target_quantity_rounds_toward_zero_to_the_lot_on_both_sides() -> None:
    # 0.5 × 49000 / 333 = 73.57 -> 73; -0.5 -> -73.57 -> -73 (not -74)
    intents = [
        TargetWeight(strategy_id=ALPHA, symbol="MSFT", weight=0.5),
        TargetWeight(strategy_id=BETA, symbol="MSFT", weight=-0.5),
    ]

    orders = sizer().size(intents, snapshot(), {}, TS)

    assert [(o.side, o.quantity) for o in orders] == [(OrderSide.BUY, D(73)), (OrderSide.SELL, D(73))]


def test_fractionable_lots_round_toward_zero_to_the_increment() -> None:
    def fractional(symbol: str) -> Instrument:
        return Equity(symbol, fractionable=True, fractional_increment=D("0.01"))

    config = SizingConfig(min_trade_notional_usd=D(0), cash_buffer_pct=0.0)
    book = Sizer(config, {"alpha": 1.0}, instrument_for=fractional)

    orders = book.size([TargetWeight(strategy_id=ALPHA, symbol="MSFT", weight=0.1)], snapshot(), {}, TS)

    assert orders[0].quantity == D("30.03")  # 10000 / 333 = 30.0300300...


def test_option_target_divides_by_price_times_multiplier() -> None:
    # 0.1 × 49000 / (2.50 × 100) = 19.6 -> 19 contracts
    orders = sizer().size(
        [TargetWeight(strategy_id=ALPHA, symbol=CALL, weight=0.1)], snapshot(prices={CALL: D("2.50")}), {}, TS
    )

    assert orders[0].quantity == D(19)


def test_rebalance_trades_the_difference_from_position_and_pending_orders() -> None:
    positions = {("alpha", "AAPL"): D(100), ("beta", "AAPL"): D(1000)}
    pending = {("alpha", "AAPL"): D(45), ("beta", "MSFT"): D(-10)}

    orders = sizer().size(
        [TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.5)],
        snapshot(strategy_positions=positions),
        pending,
        TS,
    )

    assert [(o.side, o.quantity) for o in orders] == [(OrderSide.BUY, D(100))]  # 245 - (100 + 45)


def test_overweight_position_is_sold_down() -> None:
    orders = sizer().size(
        [TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.1)],
        snapshot(strategy_positions={("alpha", "AAPL"): D(100)}),
        {},
        TS,
    )

    assert [(o.side, o.quantity) for o in orders] == [(OrderSide.SELL, D(51))]  # target 49


def test_small_rebalance_below_min_notional_is_skipped_with_reason() -> None:
    book = sizer(min_notional="500")
    intent = TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.5)

    orders = book.size([intent], snapshot(strategy_positions={("alpha", "AAPL"): D(241)}), {}, TS)

    assert orders == []  # 4 × 100 = 400 USD < 500
    assert len(book.last_skipped) == 1
    assert book.last_skipped[0][0] is intent
    assert book.last_skipped[0][1].startswith(SKIP_BELOW_MIN_NOTIONAL)


def test_exit_to_flat_is_not_held_back_by_min_notional() -> None:
    orders = sizer(min_notional="500").size(
        [TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.0)],
        snapshot(strategy_positions={("alpha", "AAPL"): D(2)}),
        {},
        TS,
    )

    assert [(o.side, o.quantity) for o in orders] == [(OrderSide.SELL, D(2))]


def test_at_target_produces_no_order() -> None:
    book = sizer(min_notional="0")

    orders = book.size(
        [TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.5)],
        snapshot(strategy_positions={("alpha", "AAPL"): D(200)}),
        {("alpha", "AAPL"): D(45)},
        TS,
    )

    assert orders == []
    assert book.last_skipped[0][1].startswith(SKIP_AT_TARGET)


def test_missing_price_skips_the_intent_and_sizes_the_rest() -> None:
    book = sizer()
    no_price = TargetWeight(strategy_id=ALPHA, symbol="NVDA", weight=0.2)

    orders = book.size(
        [no_price, TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.5)], snapshot(), {}, TS
    )

    assert [o.symbol for o in orders] == ["AAPL"]
    assert orders[0].client_order_id == derive_client_order_id(ALPHA, TS, 0, "AAPL")  # skips use no sequence
    assert [(i, r.split(":")[0]) for i, r in book.last_skipped] == [(no_price, SKIP_NO_PRICE)]


def test_unknown_strategy_is_skipped() -> None:
    book = sizer(alpha=1.0)

    orders = book.size([TargetWeight(strategy_id=BETA, symbol="AAPL", weight=0.5)], snapshot(), {}, TS)

    assert orders == []
    assert book.last_skipped[0][1].startswith(SKIP_UNKNOWN_STRATEGY)


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), True])
def test_invalid_weight_is_skipped(weight: float) -> None:
    book = sizer()

    orders = book.size([TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=weight)], snapshot(), {}, TS)

    assert orders == []
    assert book.last_skipped[0][1].startswith(SKIP_INVALID_WEIGHT)


def test_last_skipped_is_reset_by_each_call() -> None:
    book = sizer()
    book.size([TargetWeight(strategy_id=ALPHA, symbol="NVDA", weight=0.2)], snapshot(), {}, TS)

    book.size([], snapshot(), {}, TS)

    assert book.last_skipped == []


def test_negative_equity_gives_no_capital_so_targets_are_flat() -> None:
    orders = sizer().size(
        [TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.5)],
        snapshot(equity=-5000, strategy_positions={("alpha", "AAPL"): D(10)}),
        {},
        TS,
    )

    assert [(o.side, o.quantity) for o in orders] == [(OrderSide.SELL, D(10))]


def test_order_intent_passes_through_with_every_field() -> None:
    intent = OrderIntent(
        strategy_id=ALPHA,
        symbol="AAPL",
        side=OrderSide.SELL,
        quantity=D(7),
        order_type=OrderType.STOP_LIMIT,
        time_in_force=TimeInForce.GTC,
        limit_price=D("99.5"),
        stop_price=D("100"),
        reduce_only=True,
        tag="exit",
    )

    (order,) = sizer().size([intent], snapshot(prices={}), {}, TS)

    assert order.client_order_id == derive_client_order_id(ALPHA, TS, 0, "AAPL")
    for name in (
        "strategy_id",
        "symbol",
        "side",
        "quantity",
        "order_type",
        "time_in_force",
        "limit_price",
        "stop_price",
        "trail_price",
        "trail_percent",
        "reduce_only",
        "tag",
    ):
        assert getattr(order, name) == getattr(intent, name), name
    assert order.ts_ns == TS


def test_ids_are_deterministic_and_sequenced_per_strategy_in_intent_order() -> None:
    intents = [
        TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.5),
        OrderIntent(strategy_id=BETA, symbol="MSFT", side=OrderSide.BUY, quantity=D(1)),
        OrderIntent(strategy_id=ALPHA, symbol="MSFT", side=OrderSide.BUY, quantity=D(1)),
        TargetWeight(strategy_id=BETA, symbol="AAPL", weight=0.25),
    ]

    first = sizer().size(intents, snapshot(), {}, TS)
    second = sizer().size(intents, snapshot(), {}, TS)
    later = sizer().size(intents, snapshot(), {}, TS + 1)

    assert first == second
    assert [(o.strategy_id, o.symbol) for o in first] == [(i.strategy_id, i.symbol) for i in intents]
    assert [o.client_order_id for o in first] == [
        derive_client_order_id(ALPHA, TS, 0, "AAPL"),
        derive_client_order_id(BETA, TS, 0, "MSFT"),
        derive_client_order_id(ALPHA, TS, 1, "MSFT"),
        derive_client_order_id(BETA, TS, 1, "AAPL"),
    ]
    assert len({o.client_order_id for o in first}) == 4
    assert not {o.client_order_id for o in first} & {o.client_order_id for o in later}


def test_repeated_target_for_same_key_counts_orders_emitted_earlier_in_the_call() -> None:
    intent = TargetWeight(strategy_id=ALPHA, symbol="AAPL", weight=0.5)
    book = sizer()

    orders = book.size([intent, intent], snapshot(), {}, TS)

    assert [o.quantity for o in orders] == [D(245)]
    assert book.last_skipped[0][1].startswith(SKIP_AT_TARGET)


@pytest.mark.parametrize("fractions", [{"alpha": 0.0}, {"alpha": 1.5}, {"alpha": 0.6, "beta": 0.6}])
def test_bad_capital_fractions_are_refused(fractions: dict[str, float]) -> None:
    with pytest.raises(PortfolioError, match="capital fraction"):
        Sizer(SizingConfig(), fractions)
