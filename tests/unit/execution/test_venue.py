"""The simulated venue: validation, fill rules, partial fills, time in force, quotes, commands."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amcp.config import FeeConfig, LatencyConfig, SlippageConfig, VenueConfig
from amcp.domain import (
    BarBatch,
    CancelOrder,
    ClientOrderId,
    Equity,
    LiquiditySide,
    Order,
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderFilled,
    OrderRejected,
    OrderReplaced,
    OrderSide,
    OrderStatus,
    OrderSubmitted,
    OrderType,
    Quote,
    ReplaceOrder,
    StrategyId,
    SubmitOrder,
    TimeInForce,
    TradeId,
    VenueOrderId,
)
from amcp.errors import ExecutionError
from amcp.execution.latency import LatencyModel
from amcp.engine.clock import new_york_date as _new_york_date
from amcp.execution.venue import SimulatedVenue

D = Decimal
NS_PER_DAY = 86_400 * 10**9
NS_PER_MS = 10**6
# 2024-01-02 16:00 New York (the close); DAY1/DAY2 are the next two closes.
T0 = int(datetime(2024, 1, 2, 21, 0, tzinfo=UTC).timestamp()) * 10**9
DAY1 = T0 + NS_PER_DAY
DAY2 = T0 + 2 * NS_PER_DAY
DAY3 = T0 + 3 * NS_PER_DAY
SYMBOLS = ("AAPL", "MSFT", "AAPL240119C00190000")
STRATEGY = StrategyId("strat-1")

Ohlcv = tuple[float, float, float, float, float]


def bars(ts_ns: int, **by_symbol: Ohlcv) -> BarBatch:
    """A batch with the given (open, high, low, close, volume) per symbol, NaN elsewhere."""
    columns = {name: np.full(len(SYMBOLS), np.nan) for name in ("open", "high", "low", "close", "volume")}
    for symbol, values in by_symbol.items():
        for name, value in zip(("open", "high", "low", "close", "volume"), values, strict=True):
            columns[name][SYMBOLS.index(symbol)] = value
    return BarBatch(ts_ns=ts_ns, symbols=SYMBOLS, **columns)


def option_bars(ts_ns: int, values: Ohlcv) -> BarBatch:
    batch = bars(ts_ns)
    for name, value in zip(("open", "high", "low", "close", "volume"), values, strict=True):
        getattr(batch, name)[2] = value
    return batch


def order(
    cid: str = "o-1",
    side: OrderSide = OrderSide.BUY,
    quantity: Decimal | int | str = 100,
    order_type: OrderType = OrderType.MARKET,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "AAPL",
    **prices: Any,
) -> SubmitOrder:
    as_decimals: dict[str, Any] = {name: D(value) for name, value in prices.items()}
    return SubmitOrder(
        client_order_id=ClientOrderId(cid),
        strategy_id=STRATEGY,
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        order_type=order_type,
        time_in_force=tif,
        ts_ns=T0,
        **as_decimals,
    )


def make_venue(
    participation: float | None = None,
    slippage: str = "none",
    bps: float = 1.0,
    mean_ms: float = 0.0,
    jitter_ms: float = 0.0,
    seed: int = 7,
    fees: FeeConfig | None = None,
    **kwargs: Any,
) -> SimulatedVenue:
    config = VenueConfig(
        seed=seed,
        participation_rate=participation,
        slippage=SlippageConfig(model=slippage, bps=bps),  # type: ignore[arg-type]
        latency=LatencyConfig(mean_ms=mean_ms, jitter_ms=jitter_ms),
        fees=fees or FeeConfig(),
    )
    return SimulatedVenue(config, **kwargs)


def fills(events: list[Any]) -> list[OrderFilled]:
    return [event for event in events if isinstance(event, OrderFilled)]


def priced(events: list[Any]) -> list[tuple[Decimal, Decimal]]:
    """(quantity, price) of each fill."""
    return [(fill.last_quantity, fill.last_price) for fill in fills(events)]


def submit_one(venue: SimulatedVenue, command: SubmitOrder, ts_ns: int = T0) -> None:
    [event] = venue.submit([command], ts_ns)
    assert isinstance(event, OrderAccepted), event


# --------------------------------------------------------------------------- submit and validation


def test_submit_accepts_with_sequential_venue_ids() -> None:
    # Arrange
    venue = make_venue()

    # Act
    events = venue.submit([order("a"), order("b")], T0)

    # Assert
    assert events == [
        OrderAccepted(client_order_id=ClientOrderId("a"), venue_order_id=VenueOrderId("SIM-1"), ts_ns=T0),
        OrderAccepted(client_order_id=ClientOrderId("b"), venue_order_id=VenueOrderId("SIM-2"), ts_ns=T0),
    ]
    assert [command.client_order_id for command in venue.open_orders()] == ["a", "b"]


@pytest.mark.parametrize(
    ("command", "reason_part"),
    [
        (order(quantity=0), "quantity must be > 0"),
        (order(quantity=-5), "quantity must be > 0"),
        (order(quantity="NaN"), "quantity must be > 0"),
        (order(quantity="1.5"), "lot size"),
        (order(quantity="1E+40"), "out of range"),
        (order(order_type=OrderType.LIMIT, limit_price="1E+40"), "out of range"),
        (order(order_type=OrderType.LIMIT), "limit_price"),
        (order(order_type=OrderType.LIMIT, limit_price=0), "limit_price"),
        (order(order_type=OrderType.LIMIT, limit_price="100.001"), "limit_price"),
        (order(order_type=OrderType.STOP), "stop_price"),
        (order(order_type=OrderType.STOP_LIMIT, stop_price=100), "limit_price"),
        (order(order_type=OrderType.STOP_LIMIT, limit_price=100), "stop_price"),
        (order(order_type=OrderType.TRAILING_STOP), "exactly one of"),
        (order(order_type=OrderType.TRAILING_STOP, trail_price=1, trail_percent=1), "exactly one of"),
        (order(order_type=OrderType.TRAILING_STOP, trail_percent=100), "trail_percent"),
        (order(order_type=OrderType.TRAILING_STOP, trail_price=-1), "trail_price"),
        (order(symbol="not a symbol"), "unknown instrument"),
        (order(order_type=OrderType.STOP, stop_price=100, tif=TimeInForce.OPG), "market or limit"),
    ],
)
def test_invalid_order_is_rejected_with_a_reason_and_never_works(
    command: SubmitOrder, reason_part: str
) -> None:
    # Arrange
    venue = make_venue()

    # Act
    [event] = venue.submit([command], T0)

    # Assert
    assert isinstance(event, OrderRejected)
    assert reason_part in event.reason
    assert venue.open_orders() == []


def test_fractional_quantity_is_rejected_unless_the_equity_is_fractionable() -> None:
    # Arrange
    plain = make_venue()
    fractional = make_venue(instrument_for=lambda symbol: Equity(symbol, fractionable=True))

    # Act
    [rejected] = plain.submit([order(quantity="0.5")], T0)
    [accepted] = fractional.submit([order(quantity="0.5")], T0)
    events = fractional.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))

    # Assert
    assert isinstance(rejected, OrderRejected) and "lot size" in rejected.reason
    assert isinstance(accepted, OrderAccepted)
    assert priced(events) == [(D("0.5"), D("100"))]


def test_duplicate_client_order_id_is_rejected_in_the_same_call_and_later() -> None:
    # Arrange
    venue = make_venue()

    # Act
    first = venue.submit([order("dup"), order("dup")], T0)
    later = venue.submit([order("dup")], T0)

    # Assert
    assert isinstance(first[0], OrderAccepted)
    assert isinstance(first[1], OrderRejected) and "duplicate" in first[1].reason
    assert isinstance(later[0], OrderRejected)
    assert len(venue.open_orders()) == 1


def test_duplicate_of_a_finished_order_is_rejected() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order("x"))
    venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))

    # Act
    [event] = venue.submit([order("x")], DAY1)

    # Assert
    assert isinstance(event, OrderRejected)


def test_leaves_quantity_of_an_unknown_order_raises() -> None:
    with pytest.raises(ExecutionError, match="unknown"):
        make_venue().leaves_quantity("nope")


# --------------------------------------------------------------------------- latency eligibility


def test_order_submitted_at_the_bar_timestamp_is_not_filled_by_that_bar() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(), ts_ns=T0)

    # Act
    same_bar = venue.on_bars(bars(T0, AAPL=(100, 101, 99, 100, 1000)))
    next_bar = venue.on_bars(bars(DAY1, AAPL=(102, 103, 101, 102, 1000)))

    # Assert
    assert same_bar == []
    assert priced(next_bar) == [(D(100), D(102))]


def test_order_fills_only_on_a_bar_closing_after_its_latency() -> None:
    # Arrange: exactly 50 ms latency
    venue = make_venue(mean_ms=50.0, jitter_ms=0.0)
    submit_one(venue, order(), ts_ns=T0)

    # Act
    early = venue.on_bars(bars(T0 + 50 * NS_PER_MS, AAPL=(100, 101, 99, 100, 1000)))
    late = venue.on_bars(bars(T0 + 51 * NS_PER_MS, AAPL=(100.5, 101, 99, 100, 1000)))

    # Assert
    assert early == []
    assert priced(late) == [(D(100), D("100.5"))]


def test_latency_samples_are_clipped_at_zero_and_repeat_for_a_seed() -> None:
    # Arrange
    first, second = (LatencyModel(LatencyConfig(mean_ms=0.0, jitter_ms=100.0), seed=3) for _ in range(2))

    # Act
    a = [first.sample_ns() for _ in range(200)]
    b = [second.sample_ns() for _ in range(200)]

    # Assert
    assert a == b
    assert min(a) == 0 and max(a) > 0


# --------------------------------------------------------------------------- market and limit


def test_market_buy_fills_at_the_next_bar_open_as_taker_with_all_event_fields() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order("m"))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100.25, 101, 99, 100, 1000)))

    # Assert
    assert events == [
        OrderFilled(
            client_order_id=ClientOrderId("m"),
            venue_order_id=VenueOrderId("SIM-1"),
            trade_id=TradeId("SIM-T1"),
            strategy_id=STRATEGY,
            symbol="AAPL",
            side=OrderSide.BUY,
            last_quantity=D(100),
            last_price=D("100.25"),
            fee=D("0.00"),
            liquidity=LiquiditySide.TAKER,
            ts_ns=DAY1,
        )
    ]
    assert venue.open_orders() == [] and venue.leaves_quantity("m") == 0


def test_market_sell_fills_at_the_open_and_pays_sell_fees() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(side=OrderSide.SELL))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000))))

    # Assert
    assert (fill.last_price, fill.fee) == (D(100), D("0.30"))


@pytest.mark.parametrize(
    ("side", "limit", "bar", "expected_price", "liquidity"),
    [
        (OrderSide.BUY, "100", (99, 101, 98, 100, 1000), D(99), LiquiditySide.TAKER),  # open below limit
        (OrderSide.BUY, "100", (101, 102, 99.5, 100, 1000), D(100), LiquiditySide.MAKER),  # low touches
        (OrderSide.SELL, "100", (101, 102, 99, 100, 1000), D(101), LiquiditySide.TAKER),  # open above limit
        (OrderSide.SELL, "100", (99, 100.5, 98, 100, 1000), D(100), LiquiditySide.MAKER),  # high touches
    ],
)
def test_limit_order_fills_at_open_when_marketable_else_at_limit_when_touched(
    side: OrderSide, limit: str, bar: Ohlcv, expected_price: Decimal, liquidity: LiquiditySide
) -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(side=side, order_type=OrderType.LIMIT, limit_price=limit))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=bar)))

    # Assert
    assert (fill.last_price, fill.liquidity) == (expected_price, liquidity)


def test_limit_buy_not_reached_keeps_working() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.LIMIT, limit_price="98"))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 101, 98.5, 100, 1000)))

    # Assert
    assert events == [] and venue.leaves_quantity("o-1") == 100


def test_resting_limit_gapped_through_on_a_later_bar_fills_at_the_open_as_maker() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.LIMIT, limit_price="98"))
    venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY2, AAPL=(97, 99, 96, 98, 1000))))

    # Assert
    assert (fill.last_price, fill.liquidity) == (D(97), LiquiditySide.MAKER)


# --------------------------------------------------------------------------- stops


@pytest.mark.parametrize(
    ("side", "bar", "expected_price"),
    [
        (OrderSide.BUY, (103, 104, 102, 103, 1000), D(103)),  # gaps up through the stop
        (OrderSide.BUY, (100, 102.5, 99, 101, 1000), D(102)),  # trades up through it
        (OrderSide.SELL, (97, 98, 96, 97, 1000), D(97)),  # gaps down through 98
        (OrderSide.SELL, (100, 101, 97.5, 99, 1000), D(98)),
    ],
)
def test_stop_order_fills_at_open_on_a_gap_else_at_the_stop(
    side: OrderSide, bar: Ohlcv, expected_price: Decimal
) -> None:
    # Arrange
    stop = "102" if side is OrderSide.BUY else "98"
    venue = make_venue()
    submit_one(venue, order(side=side, order_type=OrderType.STOP, stop_price=stop))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=bar)))

    # Assert
    assert (fill.last_price, fill.liquidity) == (expected_price, LiquiditySide.TAKER)


def test_stop_not_reached_does_not_fill() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.STOP, stop_price="102"))

    # Act / Assert
    assert venue.on_bars(bars(DAY1, AAPL=(100, 101.99, 99, 101, 1000))) == []


def test_triggered_stop_remainder_fills_at_later_opens_as_a_market_order() -> None:
    # Arrange: cap 100 per bar; the second bar never reaches the stop again
    venue = make_venue(participation=0.1)
    submit_one(venue, order(quantity=150, order_type=OrderType.STOP, stop_price="102"))

    # Act
    first = venue.on_bars(bars(DAY1, AAPL=(100, 103, 99, 102, 1000)))
    second = venue.on_bars(bars(DAY2, AAPL=(101, 101.5, 100, 101, 1000)))

    # Assert
    assert priced(first) == [(D(100), D(102))]
    assert priced(second) == [(D(50), D(101))]


@pytest.mark.parametrize(
    ("side", "stop", "bar", "expected_price"),
    [
        (OrderSide.BUY, "102", (100, 102.5, 99, 101, 1000), D("102.02")),  # 102 × 1.0001 = 102.0102 -> up
        (OrderSide.SELL, "98", (100, 101, 97.5, 99, 1000), D("97.99")),  # 98 × 0.9999 = 97.9902 -> down
    ],
)
def test_triggered_stop_pays_fixed_bps_slippage_rounded_against_the_trader(
    side: OrderSide, stop: str, bar: Ohlcv, expected_price: Decimal
) -> None:
    # Arrange
    venue = make_venue(slippage="fixed_bps", bps=1.0)
    submit_one(venue, order(side=side, order_type=OrderType.STOP, stop_price=stop))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=bar)))

    # Assert
    assert fill.last_price == expected_price


# --------------------------------------------------------------------------- stop-limit


@pytest.mark.parametrize(
    ("limit", "bar", "expected"),
    [
        ("102", (101, 102, 99, 101, 1000), (D(101), LiquiditySide.TAKER)),  # triggered at open, open <= limit
        (
            "102",
            (103, 104, 101.5, 103, 1000),
            (D(102), LiquiditySide.MAKER),
        ),  # triggered at open, low <= limit
        ("101", (99, 102, 98, 101, 1000), (D(100), LiquiditySide.TAKER)),  # intrabar, limit >= stop -> stop
        (
            "99.5",
            (99, 101, 98, 100, 1000),
            (D("99.5"), LiquiditySide.MAKER),
        ),  # intrabar, limit < stop, low <= limit
    ],
)
def test_stop_limit_buy_fill_rules(limit: str, bar: Ohlcv, expected: tuple[Decimal, LiquiditySide]) -> None:
    # Arrange: stop at 100
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.STOP_LIMIT, stop_price="100", limit_price=limit))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=bar)))

    # Assert
    assert (fill.last_price, fill.liquidity) == expected


def test_stop_limit_trigger_persists_across_bars_until_the_limit_is_reached() -> None:
    # Arrange: buy stop 100 limit 99; bar 1 triggers but never comes back to 99
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.STOP_LIMIT, stop_price="100", limit_price="99"))

    # Act
    first = venue.on_bars(bars(DAY1, AAPL=(99.5, 100.5, 99.2, 100, 1000)))
    second = venue.on_bars(bars(DAY2, AAPL=(99.6, 99.9, 98.5, 99, 1000)))  # below the stop all bar

    # Assert
    assert first == []
    assert priced(second) == [(D(100), D(99))]


def test_stop_limit_sell_mirrors_the_buy() -> None:
    # Arrange: sell stop 100 limit 99: triggered intrabar, limit <= stop -> fills at the stop
    venue = make_venue()
    submit_one(
        venue, order(side=OrderSide.SELL, order_type=OrderType.STOP_LIMIT, stop_price="100", limit_price="99")
    )

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=(101, 102, 99.5, 100, 1000))))

    # Assert
    assert fill.last_price == D(100)


def test_stop_limit_fill_is_never_slipped() -> None:
    # Arrange
    venue = make_venue(slippage="fixed_bps", bps=50.0)
    submit_one(venue, order(order_type=OrderType.STOP_LIMIT, stop_price="100", limit_price="101"))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=(99, 102, 98, 101, 1000))))

    # Assert
    assert fill.last_price == D(100)


# --------------------------------------------------------------------------- trailing stop


def test_trailing_sell_stop_trails_the_high_and_fills_at_the_stop() -> None:
    # Arrange: trail $5; mark starts at open 100 (stop 95), moves to the high 110 (stop 105)
    venue = make_venue()
    submit_one(venue, order(side=OrderSide.SELL, order_type=OrderType.TRAILING_STOP, trail_price="5"))

    # Act
    first = venue.on_bars(bars(DAY1, AAPL=(100, 110, 96, 108, 1000)))
    second = venue.on_bars(bars(DAY2, AAPL=(108, 109, 104, 105, 1000)))

    # Assert
    assert first == []
    assert priced(second) == [(D(100), D(105))]


def test_trailing_sell_stop_gapped_through_fills_at_the_open() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(side=OrderSide.SELL, order_type=OrderType.TRAILING_STOP, trail_price="5"))
    venue.on_bars(bars(DAY1, AAPL=(100, 110, 96, 108, 1000)))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY2, AAPL=(100, 101, 99, 100, 1000))))

    # Assert
    assert (fill.last_price, fill.liquidity) == (D(100), LiquiditySide.TAKER)


def test_trailing_stop_checks_the_bar_before_moving_the_mark() -> None:
    # Arrange: sell, trail $5, open 100 -> stop 95; the bar rallies to 110 then falls to 104:
    # the stop checked is 95 (not 105), so nothing fills this bar.
    venue = make_venue()
    submit_one(venue, order(side=OrderSide.SELL, order_type=OrderType.TRAILING_STOP, trail_price="5"))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 110, 104, 105, 1000)))

    # Assert
    assert events == []


def test_trailing_buy_stop_in_percent_trails_the_low_with_the_stop_rounded_up() -> None:
    # Arrange: 10% trail; open 100 -> stop 110; mark moves to low 90 -> stop 99
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.TRAILING_STOP, trail_percent="10"))

    # Act
    first = venue.on_bars(bars(DAY1, AAPL=(100, 101, 90, 95, 1000)))
    second = venue.on_bars(bars(DAY2, AAPL=(95, 100, 94, 99, 1000)))

    # Assert
    assert first == []
    assert priced(second) == [(D(100), D("99.00"))]


def test_trailing_percent_sell_stop_is_rounded_down_to_the_tick() -> None:
    # Arrange: 3% below 100.7 is 97.679 -> 97.67
    venue = make_venue()
    submit_one(venue, order(side=OrderSide.SELL, order_type=OrderType.TRAILING_STOP, trail_percent="3"))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=(100.7, 100.7, 97, 98, 1000))))

    # Assert
    assert fill.last_price == D("97.67")


# --------------------------------------------------------------------------- slippage


@pytest.mark.parametrize(
    ("side", "open_", "expected"),
    [
        (OrderSide.BUY, 100.0, D("100.01")),
        (OrderSide.SELL, 100.0, D("99.99")),
        (OrderSide.BUY, 10.0, D("10.01")),  # 10.001 rounded up
        (OrderSide.SELL, 10.0, D("9.99")),  # 9.999 rounded down
    ],
)
def test_market_fill_pays_fixed_bps_rounded_to_the_tick_against_the_trader(
    side: OrderSide, open_: float, expected: Decimal
) -> None:
    # Arrange
    venue = make_venue(slippage="fixed_bps", bps=1.0)
    submit_one(venue, order(side=side))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=(open_, open_ + 1, open_ - 1, open_, 1000))))

    # Assert
    assert fill.last_price == expected


def test_limit_fill_is_never_slipped() -> None:
    # Arrange
    venue = make_venue(slippage="fixed_bps", bps=100.0)
    submit_one(venue, order(order_type=OrderType.LIMIT, limit_price="100"))

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=(99, 101, 98, 100, 1000))))

    # Assert
    assert fill.last_price == D(99)


def test_square_root_impact_scales_with_range_and_participation() -> None:
    # Arrange: 0.1 × (20 / 100) × sqrt(100 / 10,000) = 0.002 -> buy 100 × 1.002, sell 100 × 0.998
    venue = make_venue(slippage="square_root")
    venue.submit([order("b"), order("s", side=OrderSide.SELL)], T0)

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 110, 90, 100, 10_000)))

    # Assert
    assert [fill.last_price for fill in fills(events)] == [D("100.20"), D("99.80")]


def test_no_slippage_keeps_the_raw_bar_price_unrounded() -> None:
    # Arrange
    venue = make_venue(slippage="none")
    submit_one(venue, order())

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=(100.123, 101, 99, 100, 1000))))

    # Assert
    assert fill.last_price == D("100.123")


# --------------------------------------------------------------------------- partial fills


def test_partial_fills_are_capped_by_participation_over_several_bars() -> None:
    # Arrange: 10% of 1,000 = 100 per bar
    venue = make_venue(participation=0.1)
    submit_one(venue, order(quantity=250))

    # Act
    per_bar = [
        priced(venue.on_bars(bars(ts, AAPL=(100 + k, 101 + k, 99 + k, 100 + k, 1000))))
        for k, ts in enumerate((DAY1, DAY2, DAY3))
    ]

    # Assert
    assert per_bar == [[(D(100), D(100))], [(D(100), D(101))], [(D(50), D(102))]]
    assert venue.leaves_quantity("o-1") == 0 and venue.open_orders() == []


def test_participation_cap_is_rounded_down_to_the_lot() -> None:
    # Arrange: 5% of 1,999 = 99.95 -> 99
    venue = make_venue(participation=0.05)
    submit_one(venue, order(quantity=500))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1999)))

    # Assert
    assert priced(events) == [(D(99), D(100))]
    assert venue.leaves_quantity("o-1") == 401


def test_participation_cap_is_shared_first_come_first_served_by_arrival() -> None:
    # Arrange: cap 100; "early" arrives first though submitted second in the list order of time
    venue = make_venue(participation=0.1)
    venue.submit([order("late", quantity=80)], T0 + 5)
    venue.submit([order("early", quantity=80)], T0)

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))

    # Assert
    assert [(fill.client_order_id, fill.last_quantity) for fill in fills(events)] == [
        ("early", 80),
        ("late", 20),
    ]


def test_caps_are_per_symbol() -> None:
    # Arrange
    venue = make_venue(participation=0.1)
    venue.submit([order("a", quantity=100), order("m", quantity=100, symbol="MSFT")], T0)

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000), MSFT=(50, 51, 49, 50, 1000)))

    # Assert
    assert priced(events) == [(D(100), D(100)), (D(100), D(50))]


@pytest.mark.parametrize("volume", [0.0, float("nan")])
def test_bar_without_volume_fills_nothing(volume: float) -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order())

    # Act / Assert
    assert venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, volume))) == []
    assert venue.leaves_quantity("o-1") == 100


def test_symbol_without_a_bar_fills_nothing() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order())

    # Act / Assert
    assert venue.on_bars(bars(DAY1, MSFT=(100, 101, 99, 100, 1000))) == []


# --------------------------------------------------------------------------- time in force


def test_day_order_expires_at_session_close() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.LIMIT, limit_price="90", tif=TimeInForce.DAY))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)), session_closed=True)

    # Assert
    assert events == [OrderExpired(client_order_id=ClientOrderId("o-1"), ts_ns=DAY1, reason="session closed")]
    assert venue.open_orders() == [] and venue.leaves_quantity("o-1") == 0


def test_day_order_that_has_not_arrived_survives_the_session_close() -> None:
    # Arrange: sent at the closing bar's timestamp: it belongs to the next session
    venue = make_venue()
    submit_one(venue, order(tif=TimeInForce.DAY), ts_ns=DAY1)

    # Act
    at_close = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)), session_closed=True)
    next_day = venue.on_bars(bars(DAY2, AAPL=(102, 103, 101, 102, 1000)), session_closed=True)

    # Assert
    assert at_close == []
    assert priced(next_day) == [(D(100), D(102))]


def test_day_order_expires_on_a_bar_of_a_later_new_york_date() -> None:
    # Arrange: intraday bars, never flagged session_closed
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.LIMIT, limit_price="99", tif=TimeInForce.DAY))

    # Act
    same_day = venue.on_bars(bars(DAY1 - 3600 * 10**9, AAPL=(100, 101, 99.5, 100, 1000)))
    next_day = venue.on_bars(bars(DAY2, AAPL=(98, 99, 97, 98, 1000)))  # would fill, but too late

    # Assert
    assert same_day == []
    assert next_day == [
        OrderExpired(client_order_id=ClientOrderId("o-1"), ts_ns=DAY2, reason="day order expired")
    ]


def test_gtc_order_survives_session_closes() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.LIMIT, limit_price="95", tif=TimeInForce.GTC))

    # Act
    first = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)), session_closed=True)
    second = venue.on_bars(bars(DAY2, AAPL=(96, 97, 94, 95, 1000)), session_closed=True)

    # Assert
    assert first == []
    assert priced(second) == [(D(100), D(95))]


def test_ioc_fills_what_the_first_bar_allows_and_cancels_the_rest() -> None:
    # Arrange
    venue = make_venue(participation=0.1)
    submit_one(venue, order(quantity=150, tif=TimeInForce.IOC))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))

    # Assert
    assert priced(events) == [(D(100), D(100))]
    assert events[-1] == OrderCanceled(
        client_order_id=ClientOrderId("o-1"), ts_ns=DAY1, reason="ioc remainder"
    )
    assert venue.open_orders() == []


def test_ioc_waits_for_a_bar_of_its_symbol() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(tif=TimeInForce.IOC))

    # Act
    no_bar = venue.on_bars(bars(DAY1, MSFT=(100, 101, 99, 100, 1000)))
    bar = venue.on_bars(bars(DAY2, AAPL=(100, 101, 99, 100, 1000)))

    # Assert
    assert no_bar == [] and priced(bar) == [(D(100), D(100))]


def test_fok_that_cannot_fill_entirely_is_canceled_without_any_fill() -> None:
    # Arrange: cap 100 < 150
    venue = make_venue(participation=0.1)
    submit_one(venue, order(quantity=150, tif=TimeInForce.FOK))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))

    # Assert
    assert events == [
        OrderCanceled(client_order_id=ClientOrderId("o-1"), ts_ns=DAY1, reason="fok not filled")
    ]


def test_fok_that_fits_fills_entirely() -> None:
    # Arrange
    venue = make_venue(participation=0.1)
    submit_one(venue, order(quantity=100, tif=TimeInForce.FOK))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))

    # Assert
    assert priced(events) == [(D(100), D(100))] and len(events) == 1


def test_market_on_open_fills_at_the_open() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(tif=TimeInForce.OPG))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 105, 95, 104, 1000)))

    # Assert
    assert priced(events) == [(D(100), D(100))]


def test_limit_on_open_not_marketable_at_the_open_is_canceled_even_if_touched_later() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(order_type=OrderType.LIMIT, limit_price="98", tif=TimeInForce.OPG))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 101, 95, 99, 1000)))

    # Assert
    assert events == [OrderCanceled(client_order_id=ClientOrderId("o-1"), ts_ns=DAY1, reason="opg remainder")]


def test_market_on_close_fills_at_the_close() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(side=OrderSide.SELL, tif=TimeInForce.CLS))

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 105, 95, 104, 1000)))

    # Assert
    assert priced(events) == [(D(100), D(104))]


def test_limit_on_close_fills_only_if_the_close_is_within_the_limit() -> None:
    # Arrange
    venue = make_venue()
    venue.submit(
        [
            order("in", order_type=OrderType.LIMIT, limit_price="104", tif=TimeInForce.CLS),
            order("out", order_type=OrderType.LIMIT, limit_price="100", tif=TimeInForce.CLS),
        ],
        T0,
    )

    # Act
    events = venue.on_bars(bars(DAY1, AAPL=(100, 105, 95, 104, 1000)))

    # Assert
    assert priced(events) == [(D(100), D(104))]
    assert events[-1] == OrderCanceled(
        client_order_id=ClientOrderId("out"), ts_ns=DAY1, reason="cls remainder"
    )


# --------------------------------------------------------------------------- quotes


def quote(ts_ns: int, bid: float, ask: float, bid_size: float = 1000, ask_size: float = 1000) -> Quote:
    return Quote("AAPL", ts_ns, bid, ask, bid_size, ask_size)


def test_market_orders_fill_at_ask_and_bid_capped_by_the_quoted_size() -> None:
    # Arrange
    venue = make_venue()
    venue.submit([order("b", quantity=300), order("s", side=OrderSide.SELL, quantity=50)], T0)

    # Act
    events = venue.on_quotes([quote(T0 + 1, 99.9, 100.1, bid_size=500, ask_size=200)])

    # Assert
    assert priced(events) == [(D(200), D("100.1")), (D(50), D("99.9"))]
    assert venue.leaves_quantity("b") == 100


def test_quoted_size_is_shared_fifo_among_orders_on_that_side() -> None:
    # Arrange
    venue = make_venue()
    venue.submit([order("a", quantity=150), order("b", quantity=150)], T0)

    # Act
    events = venue.on_quotes([quote(T0 + 1, 99.9, 100.1, ask_size=200)])

    # Assert
    assert [(fill.client_order_id, fill.last_quantity) for fill in fills(events)] == [("a", 150), ("b", 50)]


def test_limit_orders_fill_against_quotes_only_when_marketable() -> None:
    # Arrange
    venue = make_venue()
    venue.submit(
        [
            order("buy", order_type=OrderType.LIMIT, limit_price="100"),
            order("sell", side=OrderSide.SELL, order_type=OrderType.LIMIT, limit_price="101"),
        ],
        T0,
    )

    # Act
    wide = venue.on_quotes([quote(T0 + 1, 99.5, 100.5)])
    crossing = venue.on_quotes([quote(T0 + 2, 101.2, 101.3), quote(T0 + 3, 99.8, 99.9)])

    # Assert
    assert wide == []
    assert [(f.client_order_id, f.last_price, f.liquidity) for f in fills(crossing)] == [
        ("sell", D("101.2"), LiquiditySide.MAKER),
        ("buy", D("99.9"), LiquiditySide.MAKER),
    ]


def test_stop_orders_trigger_on_the_ask_for_buys_and_the_bid_for_sells() -> None:
    # Arrange
    venue = make_venue()
    venue.submit(
        [
            order("buy", order_type=OrderType.STOP, stop_price="101"),
            order("sell", side=OrderSide.SELL, order_type=OrderType.STOP, stop_price="99"),
        ],
        T0,
    )

    # Act
    quiet = venue.on_quotes([quote(T0 + 1, 99.5, 100.5)])
    moved = venue.on_quotes([quote(T0 + 2, 100.9, 101.0), quote(T0 + 3, 98.9, 99.1)])

    # Assert
    assert quiet == []
    assert [(f.client_order_id, f.last_price) for f in fills(moved)] == [
        ("buy", D("101.0")),
        ("sell", D("98.9")),
    ]


def test_quote_at_or_before_arrival_is_not_used() -> None:
    # Arrange
    venue = make_venue(mean_ms=10.0)
    submit_one(venue, order())

    # Act
    early = venue.on_quotes([quote(T0 + 10 * NS_PER_MS, 99.9, 100.1)])
    late = venue.on_quotes([quote(T0 + 11 * NS_PER_MS, 99.9, 100.2)])

    # Assert
    assert early == [] and priced(late) == [(D(100), D("100.2"))]


def test_quote_fills_carry_no_slippage() -> None:
    # Arrange
    venue = make_venue(slippage="fixed_bps", bps=100.0)
    submit_one(venue, order())

    # Act
    [fill] = fills(venue.on_quotes([quote(T0 + 1, 99.9, 100.1)]))

    # Assert
    assert fill.last_price == D("100.1")


def test_ioc_against_a_quote_cancels_what_the_size_does_not_cover() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(quantity=300, tif=TimeInForce.IOC))

    # Act
    events = venue.on_quotes([quote(T0 + 1, 99.9, 100.1, ask_size=100)])

    # Assert
    assert priced(events) == [(D(100), D("100.1"))]
    assert isinstance(events[-1], OrderCanceled) and events[-1].reason == "ioc remainder"


# --------------------------------------------------------------------------- cancel and replace


def test_cancel_ends_a_working_order_and_ignores_unknown_or_finished_ones() -> None:
    # Arrange
    venue = make_venue()
    venue.submit([order("w", order_type=OrderType.LIMIT, limit_price="50"), order("f")], T0)
    venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))  # "f" fills

    # Act
    events = venue.cancel(
        [
            CancelOrder(client_order_id=ClientOrderId("w"), ts_ns=DAY1, reason="user"),
            CancelOrder(client_order_id=ClientOrderId("f"), ts_ns=DAY1),
            CancelOrder(client_order_id=ClientOrderId("nope"), ts_ns=DAY1),
        ]
    )
    later = venue.on_bars(bars(DAY2, AAPL=(40, 41, 39, 40, 1000)))

    # Assert
    assert events == [OrderCanceled(client_order_id=ClientOrderId("w"), ts_ns=DAY1, reason="user")]
    assert later == [] and venue.open_orders() == []


def test_cancel_all_cancels_every_working_order_in_submission_order() -> None:
    # Arrange
    venue = make_venue()
    venue.submit([order("b"), order("a"), order("c")], T0)

    # Act
    events = venue.cancel_all(DAY1, reason="halt")

    # Assert
    assert events == [
        OrderCanceled(client_order_id=ClientOrderId(cid), ts_ns=DAY1, reason="halt")
        for cid in ("b", "a", "c")
    ]
    assert venue.cancel_all(DAY1) == []


def test_replace_after_a_partial_fill_keeps_the_filled_quantity_in_the_new_total() -> None:
    # Arrange: 100 of 300 filled at the limit
    venue = make_venue(participation=0.1)
    submit_one(venue, order("old", quantity=300, order_type=OrderType.LIMIT, limit_price="100"))
    venue.on_bars(bars(DAY1, AAPL=(101, 102, 99, 100, 1000)))

    # Act
    events = venue.replace(
        [
            ReplaceOrder(
                client_order_id=ClientOrderId("old"),
                new_client_order_id=ClientOrderId("new"),
                ts_ns=DAY1,
                quantity=D(250),
                limit_price=D("101"),
            )
        ]
    )

    # Assert
    assert events == [
        OrderReplaced(
            client_order_id=ClientOrderId("old"), new_client_order_id=ClientOrderId("new"), ts_ns=DAY1
        ),
        OrderAccepted(client_order_id=ClientOrderId("new"), venue_order_id=VenueOrderId("SIM-2"), ts_ns=DAY1),
    ]
    [command] = venue.open_orders()
    assert (command.client_order_id, command.quantity, command.limit_price) == ("new", D(250), D(101))
    assert venue.leaves_quantity("new") == 150 and venue.leaves_quantity("old") == 0


def test_replace_with_a_quantity_not_above_the_filled_one_is_rejected_and_the_old_order_keeps_working() -> (
    None
):
    # Arrange
    venue = make_venue(participation=0.1)
    submit_one(venue, order("old", quantity=300, order_type=OrderType.LIMIT, limit_price="100"))
    venue.on_bars(bars(DAY1, AAPL=(101, 102, 99, 100, 1000)))

    # Act
    [event] = venue.replace(
        [
            ReplaceOrder(
                client_order_id=ClientOrderId("old"),
                new_client_order_id=ClientOrderId("new"),
                ts_ns=DAY1,
                quantity=D(100),
            )
        ]
    )

    # Assert
    assert isinstance(event, OrderRejected) and event.client_order_id == "new"
    assert "filled quantity" in event.reason
    assert [c.client_order_id for c in venue.open_orders()] == ["old"] and venue.leaves_quantity("old") == 200


@pytest.mark.parametrize(
    ("change", "reason_part"),
    [
        ({"limit_price": D("0")}, "limit_price"),
        ({"stop_price": D("99")}, "no stop_price"),
        ({"quantity": D("1.5")}, "lot size"),
    ],
)
def test_replace_with_invalid_terms_is_rejected_on_the_new_id(
    change: dict[str, Decimal], reason_part: str
) -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order("old", order_type=OrderType.LIMIT, limit_price="90"))

    # Act
    [event] = venue.replace(
        [
            ReplaceOrder(
                client_order_id=ClientOrderId("old"),
                new_client_order_id=ClientOrderId("new"),
                ts_ns=T0,
                **change,
            )
        ]
    )

    # Assert
    assert isinstance(event, OrderRejected) and event.client_order_id == "new" and reason_part in event.reason
    assert [c.client_order_id for c in venue.open_orders()] == ["old"]


def test_replace_with_a_known_new_id_is_rejected_as_a_duplicate() -> None:
    # Arrange
    venue = make_venue()
    venue.submit([order("a", order_type=OrderType.LIMIT, limit_price="90"), order("b")], T0)

    # Act
    [event] = venue.replace(
        [
            ReplaceOrder(
                client_order_id=ClientOrderId("a"),
                new_client_order_id=ClientOrderId("b"),
                ts_ns=T0,
                limit_price=D("91"),
            )
        ]
    )

    # Assert
    assert isinstance(event, OrderRejected) and "duplicate" in event.reason
    assert len(venue.open_orders()) == 2


def test_replace_of_an_unknown_or_finished_order_does_nothing() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order("done"))
    venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))

    # Act
    events = venue.replace(
        [
            ReplaceOrder(
                client_order_id=ClientOrderId(old), new_client_order_id=ClientOrderId(f"{old}-2"), ts_ns=DAY1
            )
            for old in ("done", "nope")
        ]
    )

    # Assert
    assert events == [] and venue.open_orders() == []


def test_replacement_fills_at_its_new_price() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order("old", order_type=OrderType.LIMIT, limit_price="90"))
    venue.replace(
        [
            ReplaceOrder(
                client_order_id=ClientOrderId("old"),
                new_client_order_id=ClientOrderId("new"),
                ts_ns=T0,
                limit_price=D("99.5"),
            )
        ]
    )

    # Act
    [fill] = fills(venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000))))

    # Assert
    assert (fill.client_order_id, fill.last_price, fill.venue_order_id) == ("new", D("99.5"), "SIM-2")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"limit_price": D("99.5")}, [(D(100), D("99.5"))]),  # same stop: still triggered
        ({"limit_price": D("99.5"), "stop_price": D("101")}, []),  # new stop: must trigger again
    ],
)
def test_replacement_keeps_a_stop_trigger_only_while_the_stop_is_unchanged(
    change: dict[str, Decimal], expected: list[tuple[Decimal, Decimal]]
) -> None:
    # Arrange: buy stop 100 limit 99, triggered by bar 1 without a fill
    venue = make_venue()
    submit_one(venue, order("old", order_type=OrderType.STOP_LIMIT, stop_price="100", limit_price="99"))
    venue.on_bars(bars(DAY1, AAPL=(99.5, 100.5, 99.2, 100, 1000)))
    venue.replace(
        [
            ReplaceOrder(
                client_order_id=ClientOrderId("old"),
                new_client_order_id=ClientOrderId("new"),
                ts_ns=DAY1,
                **change,
            )
        ]
    )

    # Act: bar 2 stays below the stop and reaches 99.4
    events = venue.on_bars(bars(DAY2, AAPL=(99.8, 99.9, 99.4, 99.6, 1000)))

    # Assert
    assert priced(events) == expected


# ------------------------------------------------------------------- options, order state, determinism


def test_option_order_by_occ_symbol_fills_with_per_contract_fees() -> None:
    # Arrange
    venue = make_venue()
    submit_one(venue, order(quantity=3, side=OrderSide.SELL, symbol="AAPL240119C00190000"))

    # Act
    [fill] = fills(venue.on_bars(option_bars(DAY1, (2.5, 2.6, 2.4, 2.5, 500))))

    # Assert
    assert (fill.last_quantity, fill.last_price, fill.fee) == (D(3), D("2.5"), D("0.19"))


def test_commission_is_charged_on_the_first_fill_of_an_order_only() -> None:
    # Arrange: two partial fills of one order, two orders
    venue = make_venue(participation=0.1, fees=FeeConfig(commission_per_order_usd=D("1.00")))
    venue.submit([order("a", quantity=150), order("b", quantity=50)], T0)

    # Act
    first = venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))
    second = venue.on_bars(bars(DAY2, AAPL=(100, 101, 99, 100, 1000)))

    # Assert
    assert [(f.client_order_id, f.fee) for f in fills(first + second)] == [
        ("a", D("1.00")),
        ("a", D("0.00")),
        ("b", D("1.00")),
    ]


def test_venue_events_drive_the_order_state_machine_to_filled() -> None:
    # Arrange
    venue = make_venue(participation=0.1)
    command = order(quantity=150, order_type=OrderType.LIMIT, limit_price="101")
    state = Order(command)
    state.apply(OrderSubmitted(client_order_id=command.client_order_id, ts_ns=T0))

    # Act
    events = venue.submit([command], T0)
    events += venue.on_bars(bars(DAY1, AAPL=(100, 101, 99, 100, 1000)))
    events += venue.on_bars(bars(DAY2, AAPL=(100, 101, 99, 100, 1000)))
    for event in events:
        state.apply(event)

    # Assert
    assert state.status is OrderStatus.FILLED
    assert state.filled_quantity == 150 and state.average_fill_price == D(100)


def scripted_run(seed: int) -> list[Any]:
    venue = make_venue(participation=0.05, slippage="square_root", mean_ms=30.0, jitter_ms=20.0, seed=seed)
    events: list[Any] = venue.submit(
        [
            order("a", quantity=120),
            order("b", side=OrderSide.SELL, quantity=80, order_type=OrderType.LIMIT, limit_price="101"),
            order("c", quantity=60, order_type=OrderType.TRAILING_STOP, trail_percent="2"),
            order("d", quantity=5, symbol="AAPL240119C00190000", tif=TimeInForce.DAY),
        ],
        T0,
    )
    rng = np.random.default_rng(0)
    for day in range(1, 6):
        o, h, lo, c = 100 + rng.normal(0, 2, 4).cumsum()
        batch = bars(T0 + day * NS_PER_DAY, AAPL=(o, max(o, h, lo, c) + 1, min(o, h, lo, c) - 1, c, 1000))
        events += venue.on_bars(batch, session_closed=True)
        events += venue.on_quotes([quote(T0 + day * NS_PER_DAY + 1, c - 0.05, c + 0.05, 30, 30)])
    return events


def test_same_seed_and_inputs_give_identical_events() -> None:
    # Act
    first, second = scripted_run(seed=11), scripted_run(seed=11)

    # Assert
    assert first == second
    assert any(isinstance(event, OrderFilled) for event in first)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 3, 10, 6, 59, tzinfo=UTC),
        datetime(2024, 3, 10, 7, 0, tzinfo=UTC),
        datetime(2024, 11, 3, 3, 59, tzinfo=UTC),
        datetime(2024, 11, 3, 4, 0, tzinfo=UTC),
        datetime(2024, 11, 4, 4, 30, tzinfo=UTC),
        datetime(2024, 11, 4, 5, 0, tzinfo=UTC),
        datetime(2024, 7, 1, 3, 59, tzinfo=UTC),
        datetime(2024, 7, 1, 4, 0, tzinfo=UTC),
        datetime(2024, 1, 2, 4, 59, tzinfo=UTC),
        datetime(2024, 1, 2, 5, 0, tzinfo=UTC),
        datetime(2005, 4, 3, 4, 59, tzinfo=UTC),
        datetime(2005, 10, 30, 4, 30, tzinfo=UTC),
    ],
)
def test_new_york_date_matches_the_tz_database(moment: datetime) -> None:
    # Arrange
    ts_ns = int(moment.timestamp()) * 10**9

    # Act / Assert
    assert _new_york_date(ts_ns) == moment.astimezone(ZoneInfo("America/New_York")).date()


# --------------------------------------------------------------------------- invariants

order_specs = st.lists(
    st.tuples(
        st.sampled_from(list(OrderSide)),
        st.sampled_from([OrderType.MARKET, OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT]),
        st.sampled_from([TimeInForce.GTC, TimeInForce.DAY, TimeInForce.IOC, TimeInForce.FOK]),
        st.integers(min_value=1, max_value=400),
        st.integers(min_value=-300, max_value=300),  # price offset in cents from 100
    ),
    min_size=1,
    max_size=8,
)
bar_specs = st.lists(
    st.tuples(
        st.integers(min_value=-500, max_value=500),  # open offset in cents
        st.integers(min_value=0, max_value=400),  # up move
        st.integers(min_value=0, max_value=400),  # down move
        st.sampled_from([0.0, 500.0, 1000.0, 5000.0]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60, deadline=None)
@given(specs=order_specs, bar_list=bar_specs)
def test_fills_respect_quantity_participation_limits_and_the_bar_range(
    specs: list[tuple[OrderSide, OrderType, TimeInForce, int, int]],
    bar_list: list[tuple[int, int, int, float]],
) -> None:
    # Arrange
    venue = make_venue(participation=0.1)
    commands = []
    for n, (side, kind, tif, quantity, offset) in enumerate(specs):
        price = str(D(100) + D(offset) / 100)
        prices = {
            OrderType.MARKET: {},
            OrderType.LIMIT: {"limit_price": price},
            OrderType.STOP: {"stop_price": price},
            OrderType.STOP_LIMIT: {"stop_price": price, "limit_price": price},
        }[kind]
        commands.append(order(f"o-{n}", side=side, quantity=quantity, order_type=kind, tif=tif, **prices))
    venue.submit(commands, T0)
    by_id = {command.client_order_id: command for command in commands}
    filled = dict.fromkeys(by_id, D(0))
    ended: set[str] = set()

    for day, (open_cents, up, down, volume) in enumerate(bar_list, start=1):
        open_ = 100 + open_cents / 100
        high, low = open_ + up / 100, open_ - down / 100
        # Act
        events = venue.on_bars(bars(T0 + day * NS_PER_DAY, AAPL=(open_, high, low, open_, volume)))

        # Assert
        bar_total = D(0)
        for event in events:
            assert event.client_order_id not in ended
            if isinstance(event, OrderFilled):
                command = by_id[event.client_order_id]
                assert D(str(low)) <= event.last_price <= D(str(high))
                if command.order_type is OrderType.LIMIT:
                    limit = command.limit_price
                    assert (
                        event.last_price <= limit
                        if command.side is OrderSide.BUY
                        else event.last_price >= limit
                    )
                filled[event.client_order_id] += event.last_quantity
                bar_total += event.last_quantity
            else:
                ended.add(event.client_order_id)
        assert bar_total <= int(0.1 * volume)
        for cid, command in by_id.items():
            assert filled[cid] <= command.quantity
            assert venue.leaves_quantity(cid) == (0 if cid in ended else command.quantity - filled[cid])
