"""Execution algorithms: TWAP, VWAP, iceberg and baskets as parents that propose child orders."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amcp.config import LatencyConfig, RiskConfig, SlippageConfig, VenueConfig
from amcp.data.calendar import day_of_ns
from amcp.data.synthetic import generate_minute_bars
from amcp.domain import (
    BarBatch,
    CancelOrder,
    ClientOrderId,
    DenyReason,
    Equity,
    Instrument,
    LiquiditySide,
    OrderDenied,
    OrderFilled,
    OrderSide,
    OrderStatus,
    OrderType,
    StrategyId,
    SubmitOrder,
    TradeId,
    VenueOrderId,
    derive_client_order_id,
    instrument_for,
)
from amcp.errors import DataError, ExecutionError
from amcp.execution.algos import (
    AlgorithmStatus,
    BasketAlgorithm,
    BasketLeg,
    BasketOrder,
    ExecutionAlgorithm,
    IcebergAlgorithm,
    InstrumentLookup,
    MarketView,
    ParentOrder,
    SingleParentAlgorithm,
    TWAPAlgorithm,
    VWAPAlgorithm,
    algorithm_from_state,
    create_algorithm,
    volume_curve_from_bars,
)
from amcp.execution.venue import SimulatedVenue
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk.engine import RiskContext, RiskEngine

D = Decimal
STRATEGY = StrategyId("exec-1")
MINUTE_NS = 60 * 1_000_000_000
START = 1_000 * MINUTE_NS
END = START + 100 * MINUTE_NS  # a 100-minute window


# --------------------------------------------------------------------------- builders


def parent(
    algo: str = "twap",
    quantity: Decimal | int | str = 1000,
    *,
    side: OrderSide = OrderSide.BUY,
    limit_price: Decimal | str | None = None,
    symbol: str = "AAPL",
    parent_id: str = "P-1",
    start_ns: int = START,
    end_ns: int = END,
    **params: Any,
) -> ParentOrder:
    if algo == "twap" and not {"slices", "slice_interval_s"} & params.keys():
        params["slices"] = 10
    return ParentOrder(
        parent_id=ClientOrderId(parent_id),
        strategy_id=STRATEGY,
        symbol=symbol,
        side=side,
        quantity=D(quantity),
        limit_price=None if limit_price is None else D(limit_price),
        start_ns=start_ns,
        end_ns=end_ns,
        algo=algo,
        params=params,
    )


_trade_ids = iter(range(10**9))


def fill(
    child: SubmitOrder,
    quantity: Decimal | int | str | None = None,
    price: str = "10.00",
    *,
    ts_ns: int | None = None,
    trade_id: str | None = None,
) -> OrderFilled:
    return OrderFilled(
        client_order_id=child.client_order_id,
        venue_order_id=VenueOrderId(f"V-{child.client_order_id}"),
        trade_id=TradeId(trade_id or f"T-{next(_trade_ids)}"),
        strategy_id=child.strategy_id,
        symbol=child.symbol,
        side=child.side,
        last_quantity=child.quantity if quantity is None else D(quantity),
        last_price=D(price),
        fee=D(0),
        liquidity=LiquiditySide.TAKER,
        ts_ns=child.ts_ns + 1 if ts_ns is None else ts_ns,
    )


def denial(child: SubmitOrder, reason: DenyReason = DenyReason.THROTTLED) -> OrderDenied:
    return OrderDenied(
        client_order_id=child.client_order_id,
        ts_ns=child.ts_ns,
        reason=reason,
        message=f"test {reason.value}",
    )


def submits(commands: Sequence[object]) -> list[SubmitOrder]:
    return [command for command in commands if isinstance(command, SubmitOrder)]


def cancels(commands: Sequence[object]) -> list[CancelOrder]:
    return [command for command in commands if isinstance(command, CancelOrder)]


def slice_ts(k: int, n: int = 10) -> int:
    return START + k * (END - START) // n


def round_trip(algo: ExecutionAlgorithm) -> ExecutionAlgorithm:
    """Checkpoint through JSON (as the journal stores it) and rebuild."""
    return algorithm_from_state(json.loads(json.dumps(algo.state)))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"quantity": D(0)}, "quantity must be > 0"),
        ({"quantity": D("NaN")}, "finite number"),
        ({"end_ns": START}, "must be after start_ns"),
        ({"start_ns": -1}, "non-negative int"),
        ({"side": "short"}, "'buy' or 'sell'"),
        ({"limit_price": D(-1)}, "limit_price must be > 0"),
        ({"parent_id": ClientOrderId("P" * 100)}, "too long"),
    ],
)
def test_parent_order_with_bad_field_raises_naming_it(changes: dict[str, Any], message: str) -> None:
    fields = {
        "parent_id": ClientOrderId("P-1"),
        "strategy_id": STRATEGY,
        "symbol": "AAPL",
        "side": OrderSide.BUY,
        "quantity": D(100),
        "limit_price": None,
        "start_ns": START,
        "end_ns": END,
        "algo": "twap",
    }
    with pytest.raises(ExecutionError, match=message):
        ParentOrder(**{**fields, **changes})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: parent(quantity="10.5"), "not a positive multiple of the AAPL lot 1"),
        (lambda: parent(limit_price="10.005"), "not on the AAPL tick 0.01"),
        (lambda: parent(slices=5, bogus=1), "bogus"),
        (lambda: parent(slices=5, slice_interval_s=60.0), "exactly one of slices and slice_interval_s"),
        (lambda: parent(limit_price="10.00", order_type="market"), "must be limit orders"),
        (lambda: parent("iceberg", display_quantity=100), "needs a limit_price"),
        (lambda: parent("iceberg", limit_price="10.00", display_quantity="2.5"), "display_quantity 2.5"),
        (lambda: parent("vwap", volume_curve=[1.0, -1.0]), "finite and >= 0"),
        (lambda: parent("vwap", volume_curve=[0.0, 0.0]), "positive sum"),
        (lambda: parent("nope"), "unknown algo 'nope'"),
    ],
)
def test_invalid_parent_or_params_raise_naming_the_value(
    build: Callable[[], ParentOrder], message: str
) -> None:
    with pytest.raises(ExecutionError, match=message):
        create_algorithm(build())


def test_algorithm_class_refuses_a_parent_naming_another_algo() -> None:
    with pytest.raises(ExecutionError, match="names algo 'twap'; VWAPAlgorithm runs 'vwap'"):
        VWAPAlgorithm(parent())


def test_timer_before_start_and_backwards_time_raise() -> None:
    algo = create_algorithm(parent())
    with pytest.raises(ExecutionError, match="has not been started"):
        algo.on_timer(START)
    algo.on_start(START)
    with pytest.raises(ExecutionError, match="already running"):
        algo.on_start(START)
    with pytest.raises(ExecutionError, match=f"timer went back from {START} to {START - 1}"):
        algo.on_timer(START - 1)


def test_event_for_a_foreign_order_raises() -> None:
    algo = create_algorithm(parent())
    child = submits(algo.on_start(START))[0]
    foreign = dataclasses.replace(child, client_order_id=ClientOrderId("other-1"))
    with pytest.raises(ExecutionError, match="'other-1' is not a child of parent P-1"):
        algo.on_fill(fill(foreign))
    with pytest.raises(ExecutionError, match="on_child_done takes canceled, expired, rejected or filled"):
        algo.on_child_done(child.client_order_id, OrderStatus.NEW, START)


# --------------------------------------------------------------------------- child ids


def test_child_ids_derive_from_parent_id_and_index_only() -> None:
    first, second = create_algorithm(parent()), create_algorithm(parent())
    ids_first = [c.client_order_id for c in submits(first.on_start(START) + first.on_timer(slice_ts(3)))]
    ids_second = [c.client_order_id for c in submits(second.on_start(START) + second.on_timer(slice_ts(3)))]
    assert ids_first == ids_second
    assert ids_first == [derive_client_order_id(ClientOrderId("P-1"), START, i, "AAPL") for i in range(2)]
    other = create_algorithm(parent(parent_id="P-2"))
    assert submits(other.on_start(START))[0].client_order_id not in ids_first


# --------------------------------------------------------------------------- TWAP


def test_twap_slices_are_equal_within_one_lot_and_sum_to_the_parent() -> None:
    algo = create_algorithm(parent(quantity=1003, slices=10))
    sizes = []
    for k in range(10):
        commands = algo.on_start(slice_ts(0)) if k == 0 else algo.on_timer(slice_ts(k))
        (child,) = submits(commands)
        algo.on_fill(fill(child))
        sizes.append(child.quantity)
    assert sum(sizes) == 1003
    assert max(sizes) - min(sizes) <= 1
    assert algo.status is AlgorithmStatus.COMPLETED and algo.filled_quantity == 1003


def test_twap_sends_nothing_between_slices_or_before_the_start() -> None:
    algo = create_algorithm(parent())
    assert algo.on_start(START - 5 * MINUTE_NS) == []
    assert len(submits(algo.on_timer(START))) == 1
    assert algo.on_timer(slice_ts(1) - 1) == []
    assert len(submits(algo.on_timer(slice_ts(1)))) == 1


def test_twap_catches_up_a_denied_slice_in_the_next_one_with_a_new_id() -> None:
    algo = create_algorithm(parent(quantity=1000, slices=10))
    (first,) = submits(algo.on_start(START))
    assert algo.on_denied(denial(first)) == []
    (second,) = submits(algo.on_timer(slice_ts(1)))
    assert second.quantity == 200  # slice 0's 100 caught up with slice 1's 100
    assert second.client_order_id != first.client_order_id
    assert algo.failures == 1 and algo.status is AlgorithmStatus.RUNNING


def test_twap_adds_only_the_increment_while_an_earlier_child_still_works() -> None:
    algo = create_algorithm(parent(quantity=1000, slices=10))
    (first,) = submits(algo.on_start(START))
    algo.on_fill(fill(first, 40))
    (second,) = submits(algo.on_timer(slice_ts(1)))
    assert second.quantity == 100  # target 200 − 40 filled − 60 still working
    assert algo.filled_quantity + algo.working_quantity == 200


def test_twap_slice_interval_gives_ceil_of_window_over_interval_slices() -> None:
    algo = create_algorithm(parent(slice_interval_s=30 * 60.0))  # 100 min / 30 min -> 4 slices
    assert isinstance(algo, TWAPAlgorithm)
    assert len(algo.slice_times_ns) == 4
    assert algo.cumulative_targets == (D(250), D(500), D(750), D(1000))


def test_window_end_cancels_working_children_and_sends_nothing_more() -> None:
    algo = create_algorithm(parent(quantity=1000, slices=10))
    (child,) = submits(algo.on_start(START))
    commands = algo.on_timer(END)
    assert [c.client_order_id for c in cancels(commands)] == [child.client_order_id]
    assert submits(commands) == []
    assert algo.status is AlgorithmStatus.FINISHING
    assert algo.on_timer(END + MINUTE_NS) == []
    algo.on_child_done(child.client_order_id, OrderStatus.CANCELED, END)
    assert algo.status is AlgorithmStatus.STOPPED and algo.done
    assert "window ended" in algo.stop_reason


def test_window_end_without_cancel_lets_children_work_and_completes_on_their_fill() -> None:
    algo = create_algorithm(parent(quantity=100, slices=1, cancel_at_end=False))
    (child,) = submits(algo.on_start(START))
    assert algo.on_timer(END) == []
    assert algo.status is AlgorithmStatus.FINISHING
    algo.on_fill(fill(child, ts_ns=END + 1))
    assert algo.status is AlgorithmStatus.COMPLETED


def test_marketable_limit_child_is_offset_from_reference_rounded_away_and_capped_by_parent() -> None:
    buy = create_algorithm(parent(limit_price="10.05", slices=2, limit_offset_bps=10.0))
    (child,) = submits(buy.on_start(START, {"AAPL": MarketView(reference_price=D("10.013"))}))
    assert (child.order_type, child.limit_price) == (OrderType.LIMIT, D("10.03"))  # 10.023013 up to tick
    (capped,) = submits(buy.on_timer(slice_ts(1, 2), {"AAPL": MarketView(reference_price=D("10.20"))}))
    assert capped.limit_price == D("10.05")
    sell = create_algorithm(parent(side=OrderSide.SELL, order_type="limit", slices=2, limit_offset_bps=10.0))
    (child,) = submits(sell.on_start(START, {"AAPL": MarketView(reference_price=D("10.013"))}))
    assert child.limit_price == D("10.00")  # 10.002987 down to tick


def test_limit_child_without_any_price_sends_nothing_and_records_why() -> None:
    algo = create_algorithm(parent(order_type="limit", slices=2))
    assert algo.on_start(START) == []
    assert isinstance(algo, SingleParentAlgorithm)
    assert "no reference price" in algo.anomalies[-1].reason
    (child,) = submits(algo.on_timer(slice_ts(1, 2), {"AAPL": MarketView(reference_price=D("10"))}))
    assert child.quantity == 1000  # the unsent first slice is caught up


# --------------------------------------------------------------------------- VWAP


def test_vwap_slices_follow_the_curve_within_one_lot() -> None:
    curve = [3.0, 1.0, 1.0, 0.5, 0.5, 4.0]
    algo = create_algorithm(parent("vwap", quantity=997, volume_curve=curve))
    assert isinstance(algo, VWAPAlgorithm)
    sizes = []
    for k, ts in enumerate(algo.slice_times_ns):
        (child,) = submits(algo.on_start(ts) if k == 0 else algo.on_timer(ts))
        algo.on_fill(fill(child))
        sizes.append(child.quantity)
    expected = 997 * np.asarray(curve) / sum(curve)
    assert np.all(np.abs(np.asarray(sizes, dtype=float) - expected) <= 1.0)
    assert sum(sizes) == 997 and algo.status is AlgorithmStatus.COMPLETED


def test_vwap_participation_cap_limits_a_slice_and_catches_up_later() -> None:
    algo = create_algorithm(parent("vwap", quantity=1000, volume_curve=[1, 1, 1, 1], max_participation=0.1))
    assert isinstance(algo, VWAPAlgorithm)
    t = algo.slice_times_ns
    (first,) = submits(algo.on_start(t[0]))
    assert first.quantity == 250  # the first slice has no observed volume to cap against
    algo.on_fill(fill(first))
    algo.on_timer(t[0] + 1, {"AAPL": MarketView(volume=600.0)})
    (second,) = submits(algo.on_timer(t[1], {"AAPL": MarketView(volume=400.0)}))
    assert second.quantity == 100  # 10% of the 1,000 shares traded since the last slice
    algo.on_fill(fill(second))
    (third,) = submits(algo.on_timer(t[2], {"AAPL": MarketView(volume=100_000.0)}))
    assert third.quantity == 400  # target 750 − 350 filled: the shortfall caught up


def test_volume_curve_from_synthetic_minute_bars_is_u_shaped_and_sums_to_one() -> None:
    bars = generate_minute_bars(2, date(2024, 3, 4), date(2024, 3, 15), seed=5)
    curve = volume_curve_from_bars(bars, n_buckets=13)
    assert curve.shape == (13,)
    assert curve.sum() == pytest.approx(1.0)
    assert curve[0] > 1.5 * curve[6] and curve[-1] > 1.5 * curve[6]
    one_symbol = volume_curve_from_bars(bars, n_buckets=13, symbol="S0001")
    assert not np.allclose(one_symbol, curve)  # a different average: only S0001's days
    arrays = bars.filter(pa.compute.equal(bars.column("symbol"), "S0001"))
    ts_ns = arrays.column("ts").cast(pa.int64()).to_numpy()
    from_arrays = volume_curve_from_bars((ts_ns, arrays.column("volume").to_numpy()), n_buckets=13)
    assert np.allclose(from_arrays, one_symbol)


def test_volume_curve_leaves_out_days_that_end_early() -> None:
    open_ns = int(pd.Timestamp("2024-03-04 09:30", tz="America/New_York").value)
    full = open_ns + MINUTE_NS * np.arange(390)
    half = open_ns + 86_400 * 10**9 + MINUTE_NS * np.arange(210)  # stops at 13:00
    ts_ns = np.concatenate([full, half])
    volume = np.concatenate([np.where(np.arange(390) < 195, 1.0, 3.0), np.full(210, 100.0)])
    curve = volume_curve_from_bars((ts_ns, volume), n_buckets=4)
    first_day = np.bincount(np.arange(390) * 4 // 390, weights=volume[:390])
    assert curve == pytest.approx(first_day / first_day.sum())  # the half day is left out


def test_volume_curve_bad_input_raises() -> None:
    with pytest.raises(ExecutionError, match="n_buckets must be an int in"):
        volume_curve_from_bars((np.array([0]), np.array([1.0])), n_buckets=0)
    with pytest.raises(DataError, match="no bars between"):
        volume_curve_from_bars((np.array([0], dtype=np.int64), np.array([1.0])))
    with pytest.raises(DataError, match="lacks column"):
        volume_curve_from_bars(pa.table({"ts": [0]}))


# --------------------------------------------------------------------------- iceberg


def iceberg(quantity: int = 1000, display: int = 300, **params: Any) -> IcebergAlgorithm:
    order = parent("iceberg", quantity, limit_price="10.00", display_quantity=display, **params)
    algo = create_algorithm(order)
    assert isinstance(algo, IcebergAlgorithm)
    return algo


def test_iceberg_shows_one_display_child_and_refills_only_when_it_fills() -> None:
    algo = iceberg(1000, 300)
    (child,) = submits(algo.on_start(START))
    assert (child.quantity, child.order_type, child.limit_price) == (D(300), OrderType.LIMIT, D("10.00"))
    assert algo.on_fill(fill(child, 100)) == []  # partly filled: the same child still shows 200
    assert algo.on_timer(START + 1) == []
    (refill,) = submits(algo.on_fill(fill(child, 200)))
    assert refill.quantity == 300
    shown = [child.quantity, refill.quantity]
    while not algo.done:
        algo_commands = algo.on_fill(fill(refill))
        if submits(algo_commands):
            (refill,) = submits(algo_commands)
            shown.append(refill.quantity)
    assert shown == [D(300), D(300), D(300), D(100)]
    assert algo.status is AlgorithmStatus.COMPLETED and algo.filled_quantity == 1000


def test_iceberg_refills_at_the_next_tick_after_an_outside_cancel() -> None:
    algo = iceberg()
    (child,) = submits(algo.on_start(START))
    assert algo.on_child_done(child.client_order_id, OrderStatus.CANCELED, START + 5) == []
    (refill,) = submits(algo.on_timer(START + 10))
    assert refill.client_order_id != child.client_order_id and refill.quantity == 300


def test_iceberg_does_not_refill_after_the_window_ends() -> None:
    algo = iceberg(1000, 300)
    (child,) = submits(algo.on_start(START))
    assert algo.on_fill(fill(child, ts_ns=END)) == []
    assert algo.on_timer(END) == [] and algo.status is AlgorithmStatus.STOPPED
    assert algo.filled_quantity == 300


def test_iceberg_random_display_is_seeded_never_above_display_and_on_the_lot() -> None:
    sizes = [iceberg(10_000, 500, display_variance=0.6, seed=1).display_size(i) for i in range(50)]
    again = [iceberg(10_000, 500, display_variance=0.6, seed=1).display_size(i) for i in range(50)]
    other = [iceberg(10_000, 500, display_variance=0.6, seed=2).display_size(i) for i in range(50)]
    assert sizes == again and sizes != other
    assert all(D(200) <= size <= D(500) and size == size.to_integral_value() for size in sizes)
    assert len(set(sizes)) > 10


# --------------------------------------------------------------------------- denials, rejections, fills


def test_duplicate_id_denial_keeps_the_child_working_so_nothing_is_sent_twice() -> None:
    algo = create_algorithm(parent(quantity=1000, slices=10))
    (child,) = submits(algo.on_start(START))
    assert algo.on_denied(denial(child, DenyReason.DUPLICATE_CLIENT_ORDER_ID)) == []
    assert [c.client_order_id for c in algo.working_children] == [child.client_order_id]
    (second,) = submits(algo.on_timer(slice_ts(1)))
    assert second.quantity == 100  # not 200: the first child's 100 may be live


def test_fatal_denial_stops_and_cancels_the_working_children() -> None:
    algo = create_algorithm(parent(quantity=1000, slices=10))
    (first,) = submits(algo.on_start(START))
    (second,) = submits(algo.on_timer(slice_ts(1)))
    commands = algo.on_denied(denial(second, DenyReason.RESTRICTED_SYMBOL))
    assert [c.client_order_id for c in cancels(commands)] == [first.client_order_id]
    assert algo.on_timer(slice_ts(2)) == []
    assert "restricted_symbol" in algo.stop_reason


@pytest.mark.parametrize(
    ("params", "denials_to_stop"), [({"failure_policy": "stop"}, 1), ({"max_failures": 2}, 2)]
)
def test_failure_policy_stops_after_the_allowed_denials(params: dict[str, Any], denials_to_stop: int) -> None:
    algo = create_algorithm(parent(quantity=1000, slices=10, **params))
    commands = algo.on_start(START)
    for k in range(1, denials_to_stop + 1):
        assert algo.status is AlgorithmStatus.RUNNING
        (child,) = submits(commands)
        algo.on_denied(denial(child))
        commands = algo.on_timer(slice_ts(k))
    assert algo.status is AlgorithmStatus.STOPPED and commands == []


def test_venue_rejections_count_as_failures() -> None:
    algo = create_algorithm(parent(quantity=1000, slices=10, max_failures=1))
    (child,) = submits(algo.on_start(START))
    algo.on_child_done(child.client_order_id, OrderStatus.REJECTED, START + 1)
    assert algo.status is AlgorithmStatus.STOPPED and "rejected" in algo.stop_reason


def test_fills_repeated_mismatched_or_excessive_are_handled_without_loss() -> None:
    algo = create_algorithm(parent(quantity=100, slices=1))
    assert isinstance(algo, SingleParentAlgorithm)
    (child,) = submits(algo.on_start(START))
    event = fill(child, 40, trade_id="T-A")
    algo.on_fill(event)
    algo.on_fill(event)  # a broker resend: ignored
    assert algo.filled_quantity == 40
    wrong = dataclasses.replace(event, symbol="MSFT", trade_id=TradeId("T-B"))
    algo.on_fill(wrong)
    assert algo.filled_quantity == 40 and "not counted" in algo.anomalies[-1].reason
    algo.on_fill(fill(child, 70, trade_id="T-C"))  # 10 more than the leaves: counted, reported
    assert algo.filled_quantity == 110
    assert any("exceeds the child's leaves" in a.reason for a in algo.anomalies)
    assert any("parent overfilled" in a.reason for a in algo.anomalies)
    assert algo.average_price == D("10.00")


def test_cancel_can_be_repeated_and_stops_once_children_end() -> None:
    algo = create_algorithm(parent(quantity=1000, slices=10))
    (child,) = submits(algo.on_start(START))
    first = algo.cancel(START + 1)
    assert [c.client_order_id for c in first] == [child.client_order_id]
    assert algo.on_timer(slice_ts(1)) == []  # no new children once canceled
    again = algo.cancel(START + 2)  # e.g. the first cancel was lost: asked again, nothing new
    assert [c.client_order_id for c in again] == [child.client_order_id]
    algo.on_fill(fill(child, 30, ts_ns=START + 3))  # filled while the cancel travelled
    algo.on_child_done(child.client_order_id, OrderStatus.CANCELED, START + 4)
    assert algo.status is AlgorithmStatus.STOPPED and algo.filled_quantity == 30
    assert algo.remaining_quantity == 970
    assert algo.cancel(START + 5) == []


# --------------------------------------------------------------------------- checkpoints


def test_restored_algorithm_continues_with_the_same_next_id_and_children() -> None:
    algo = create_algorithm(parent("vwap", quantity=1000, volume_curve=[1, 2, 3, 4], max_participation=0.5))
    assert isinstance(algo, VWAPAlgorithm)
    t = algo.slice_times_ns
    (child,) = submits(algo.on_start(t[0]))
    algo.on_fill(fill(child, 50))
    algo.on_timer(t[0] + 1, {"AAPL": MarketView(volume=700.0)})
    clone = round_trip(algo)
    assert isinstance(clone, VWAPAlgorithm)
    assert clone.next_child_id == algo.next_child_id and clone.children == algo.children
    market = {"AAPL": MarketView(volume=10.0)}
    assert clone.on_timer(t[1], market) == algo.on_timer(t[1], market)
    assert clone.state == algo.state


def test_restart_from_a_checkpoint_before_the_send_never_sends_twice() -> None:
    """The checkpoint predates a child that risk accepted: the rebuilt algorithm re-derives the
    same id, the real risk engine denies it as a duplicate, and the child is kept as working."""
    risk = RiskEngine(RiskConfig(duplicate_intent_window_s=0))
    algo = create_algorithm(parent(quantity=1000, slices=10))
    algo.on_start(START - 1)
    checkpoint = json.loads(json.dumps(algo.state))
    (child,) = submits(algo.on_timer(START))
    accepted, denied = risk.check([child], risk_context(START, "AAPL", D(10)))
    assert accepted == [child] and denied == []
    restored = algorithm_from_state(checkpoint)  # crash; the journal's last checkpoint
    (again,) = submits(restored.on_timer(START))
    assert again == child
    accepted, denied = risk.check([again], risk_context(START, "AAPL", D(10)))
    assert accepted == [] and denied[0].reason is DenyReason.DUPLICATE_CLIENT_ORDER_ID
    restored.on_denied(denied[0])
    assert [c.client_order_id for c in restored.working_children] == [child.client_order_id]
    assert submits(restored.on_timer(START + 1)) == []


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (lambda s: s.update(version=99), "version 99"),
        (lambda s: s.update(algo="vwap"), "names algo 'twap'; VWAPAlgorithm runs 'vwap'"),
        (lambda s: s.update(algo="teleport"), "names algo 'teleport'"),
        (lambda s: s["children"][0].update(client_order_id="forged-1"), "derives"),
        (lambda s: s.update(filled="5"), "says 5 filled"),
        (lambda s: s.pop("children"), "malformed"),
        (lambda s: s["extra"].update(slices_due=-1), "slices_due"),
    ],
)
def test_malformed_checkpoint_is_refused_naming_the_problem(
    tamper: Callable[[dict[str, Any]], object], message: str
) -> None:
    algo = create_algorithm(parent())
    (child,) = submits(algo.on_start(START))
    algo.on_fill(fill(child, 10))
    state = json.loads(json.dumps(algo.state))
    tamper(state)
    with pytest.raises(ExecutionError, match=message):
        algorithm_from_state(state)


def test_from_state_on_a_class_refuses_another_algorithms_state() -> None:
    state = create_algorithm(parent()).state
    with pytest.raises(ExecutionError, match="expected 'iceberg'"):
        IcebergAlgorithm.from_state(state)
    assert isinstance(ExecutionAlgorithm.from_state(state), TWAPAlgorithm)


# --------------------------------------------------------------------------- baskets


def basket(**params: Any) -> BasketAlgorithm:
    order = BasketOrder(
        basket_id=ClientOrderId("B-1"),
        strategy_id=STRATEGY,
        legs=(
            BasketLeg(symbol="AAPL", side=OrderSide.BUY, quantity=D(1000)),
            BasketLeg(symbol="MSFT", side=OrderSide.SELL, quantity=D(500), params={"slices": 5}),
        ),
        start_ns=START,
        end_ns=END,
        params={"slices": 10, **params},
    )
    algo = create_algorithm(order)
    assert isinstance(algo, BasketAlgorithm)
    return algo


def test_basket_runs_a_twap_per_leg_with_distinct_ids_and_routes_fills() -> None:
    algo = basket()
    children = submits(algo.on_start(START))
    assert [(c.symbol, c.side, c.quantity) for c in children] == [
        ("AAPL", OrderSide.BUY, D(100)),
        ("MSFT", OrderSide.SELL, D(100)),  # the leg's own slices=5 overrides the basket's 10
    ]
    assert len({c.client_order_id for c in children}) == 2
    algo.on_fill(fill(children[1], price="400.00"))
    progress = algo.progress()
    assert [p.filled_quantity for p in progress] == [D(0), D(100)]
    assert algo.filled_quantity == 100 and algo.fraction_filled == pytest.approx(100 / 1500)
    assert algo.filled_notional == D("40000.00")


def test_cancelling_the_basket_cancels_every_leg() -> None:
    algo = basket()
    children = submits(algo.on_start(START))
    commands = algo.cancel(START + 1)
    assert {c.client_order_id for c in commands} == {c.client_order_id for c in children}
    for child in children:
        algo.on_child_done(child.client_order_id, OrderStatus.CANCELED, START + 2)
    assert algo.status is AlgorithmStatus.STOPPED and algo.working_children == ()


def test_basket_completes_when_every_leg_completes_and_round_trips() -> None:
    algo = basket(cancel_at_end=False)
    t = 0
    commands = algo.on_start(START)
    while not algo.done:
        for child in submits(commands):
            algo.on_fill(fill(child))
        t += 1
        algo = round_trip(algo)  # type: ignore[assignment]
        assert isinstance(algo, BasketAlgorithm)
        commands = algo.on_timer(START + t * MINUTE_NS)
    assert algo.status is AlgorithmStatus.COMPLETED
    assert [leg.filled_quantity for leg in algo.legs] == [D(1000), D(500)]
    with pytest.raises(ExecutionError, match="not a child of any leg of basket B-1"):
        algo.on_child_done("nobody", OrderStatus.CANCELED, END)


def test_basket_refuses_a_repeated_symbol() -> None:
    leg = BasketLeg(symbol="AAPL", side=OrderSide.BUY, quantity=D(10))
    with pytest.raises(ExecutionError, match=r"lists \['AAPL'\] more than once"):
        BasketOrder(
            basket_id=ClientOrderId("B-2"), strategy_id=STRATEGY, legs=(leg, leg), start_ns=START, end_ns=END
        )


# --------------------------------------------------------------------------- property tests

# Weighted by repetition: mostly time and fills, now and then every kind of end and denial.
_KINDS = (*["timer"] * 5, *["fill"] * 4, *["partial"] * 2, "cancel", "expire", "reject", "deny", "dup_deny")
_RETRYABLE = (DenyReason.THROTTLED, DenyReason.PRICE_COLLAR, DenyReason.MAX_POSITION)
_DENY_REASONS = (*_RETRYABLE, *_RETRYABLE, DenyReason.TRADING_HALTED)
_ENDS = {"cancel": OrderStatus.CANCELED, "expire": OrderStatus.EXPIRED, "reject": OrderStatus.REJECTED}
_DELAYS_NS = (1, 10**9, 30 * 10**9, MINUTE_NS, 3 * MINUTE_NS, 7 * MINUTE_NS, 12 * MINUTE_NS)
# (kind, which working child, percent of its leaves for a partial fill, delay before a timer tick)
Step = tuple[str, int, int, int]
_step = st.tuples(
    st.sampled_from(_KINDS), st.integers(0, 50), st.integers(1, 99), st.sampled_from(_DELAYS_NS)
)


def _build(kind: str, quantity: Decimal, lot: Decimal, seed: int) -> tuple[ParentOrder, InstrumentLookup]:
    """A parent of ``kind`` with seed-drawn params, and an instrument lookup with lot ``lot``."""

    def fractional(symbol: str) -> Instrument:
        return Equity(symbol, fractionable=True, fractional_increment=lot)

    params: dict[str, Any] = {"max_failures": 6}
    limit = None
    if kind == "twap":
        params["slices"] = 1 + seed % 12
    elif kind == "vwap":
        params["volume_curve"] = [float(v) for v in np.random.default_rng(seed).random(1 + seed % 9)]
        params["max_participation"] = 0.2 if seed % 2 else None
    else:
        params.update(display_quantity=str(lot * (1 + seed % 40)), display_variance=0.5, seed=seed)
        limit = D("10.00")
    return parent(kind, quantity, limit_price=limit, **params), instrument_for if lot == 1 else fractional


def _apply(algo: ExecutionAlgorithm, step: Step, clock: list[int], index: int, lot: Decimal) -> list[object]:
    """Apply one random step as the venue or risk would; ``clock[0]`` is the driver's time."""
    kind, pick, percent, delay_ns = step
    if kind == "start":
        return list(algo.on_start(clock[0]))
    if kind == "stop":
        return list(algo.cancel(clock[0]))
    working = list(algo.working_children)
    if kind == "timer" or not working:
        clock[0] += delay_ns
        market = {"AAPL": MarketView(D("10.00"), float(delay_ns // MINUTE_NS * 50))}
        return list(algo.on_timer(clock[0], market))
    ts_ns = clock[0]
    child = working[pick % len(working)]
    if kind in ("fill", "partial"):
        leaves = child.leaves_quantity
        part = (leaves * percent / 100).quantize(lot, rounding="ROUND_FLOOR")
        quantity = leaves if kind == "fill" else min(leaves, max(lot, part))
        command = SubmitOrder(
            client_order_id=child.client_order_id,
            strategy_id=STRATEGY,
            symbol="AAPL",
            side=OrderSide.BUY,
            quantity=child.quantity,
            ts_ns=ts_ns,
        )
        return list(algo.on_fill(fill(command, quantity, ts_ns=ts_ns, trade_id=f"T-{index}")))
    if kind in _ENDS:
        return list(algo.on_child_done(child.client_order_id, _ENDS[kind], ts_ns))
    if child.status is not OrderStatus.PENDING_NEW or child.filled_quantity:
        return []  # risk decides before the child is sent, so only fresh children are denied
    reason = DenyReason.DUPLICATE_CLIENT_ORDER_ID if kind == "dup_deny" else _DENY_REASONS[pick % 7]
    refusal = OrderDenied(client_order_id=child.client_order_id, ts_ns=ts_ns, reason=reason, message="p")
    return list(algo.on_denied(refusal))


@settings(max_examples=120, deadline=None)
@given(
    kind=st.sampled_from(["twap", "vwap", "iceberg"]),
    lots=st.integers(1, 5_000),
    lot=st.sampled_from([D(1), D("0.01")]),
    seed=st.integers(0, 10_000),
    steps=st.lists(_step, min_size=20, max_size=100),
    split=st.integers(0, 100),
    stop_at=st.none() | st.integers(0, 100),
)
def test_invariants_hold_and_a_restored_algorithm_continues_identically(
    kind: str, lots: int, lot: Decimal, seed: int, steps: list[Step], split: int, stop_at: int | None
) -> None:
    if stop_at is not None and stop_at < len(steps):
        steps = [*steps[:stop_at], ("stop", 0, 0, 0), *steps[stop_at:]]  # the caller cancels the parent
    steps = [("start", 0, 0, 0), *steps]
    quantity = lot * lots
    order, lookup = _build(kind, quantity, lot, seed)
    algo = create_algorithm(order, lookup)
    assert isinstance(algo, SingleParentAlgorithm)
    split = min(split, len(steps) - 1)
    sent: list[SubmitOrder] = []
    outputs: list[list[object]] = []
    clock = [START - MINUTE_NS]
    checkpoint: dict[str, Any] = {}
    checkpoint_clock = clock[0]
    for index, step in enumerate(steps):
        if index == split:
            checkpoint, checkpoint_clock = json.loads(json.dumps(algo.state)), clock[0]
        commands = _apply(algo, step, clock, index, lot)
        outputs.append(commands)
        sent.extend(submits(commands))
        # filled + working never exceeds the parent; every child is on the lot, inside the window
        assert algo.filled_quantity + algo.working_quantity <= quantity
        for child in submits(commands):
            assert child.quantity > 0 and child.quantity % lot == 0
            assert order.start_ns <= child.ts_ns < order.end_ns
            if isinstance(algo, IcebergAlgorithm):
                assert child.quantity <= algo.iceberg_params.display_quantity
        if algo.status is AlgorithmStatus.COMPLETED:
            assert algo.filled_quantity == quantity
    ids = [child.client_order_id for child in sent]
    assert len(set(ids)) == len(ids)  # a denied or ended child's id is never sent again
    assert ids == [order.child_id(i) for i in range(len(ids))]
    # the checkpoint taken mid-run continues exactly as the original did
    restored = algorithm_from_state(checkpoint, lookup)
    clock = [checkpoint_clock]
    for index in range(split, len(steps)):
        assert _apply(restored, steps[index], clock, index, lot) == outputs[index]
    assert restored.state == algo.state


# --------------------------------------------------------------------------- simulation


def risk_context(ts_ns: int, symbol: str, price: Decimal) -> RiskContext:
    portfolio = PortfolioSnapshot(
        ts_ns=ts_ns,
        cash=D(10_000_000),
        equity=D(10_000_000),
        market_value=D(0),
        gross_exposure=D(0),
        buying_power=D(20_000_000),
        start_of_day_equity=D(10_000_000),
        prices={symbol: price},
        price_ts_ns={symbol: ts_ns},
    )
    return RiskContext(ts_ns=ts_ns, portfolio=portfolio)


def simulate(algo: ExecutionAlgorithm, day: pa.Table, symbol: str) -> None:
    """Drive ``algo`` through risk and the simulated venue over one session of minute bars."""
    config = VenueConfig(
        seed=3, participation_rate=0.1, slippage=SlippageConfig(model="none"), latency=LatencyConfig()
    )
    venue = SimulatedVenue(config)
    risk = RiskEngine(
        RiskConfig(max_order_notional_usd=D(5_000_000), max_position_notional_usd=D(50_000_000))
    )
    frame = day.to_pandas()
    start_ns = int(frame["ts"].iloc[0].value)
    price = D(repr(float(frame["open"].iloc[0])))

    def send(commands: list[object], ts_ns: int) -> None:
        while commands:
            new = submits(commands)
            for command in cancels(commands):
                for event in venue.cancel([command]):
                    algo.on_event(event)
            commands = []
            accepted, denied = risk.check(new, risk_context(ts_ns, symbol, price))
            for event in venue.submit(accepted, ts_ns):
                commands.extend(algo.on_event(event))
            for refusal in denied:
                commands.extend(algo.on_denied(refusal))

    send(list(algo.on_start(start_ns)), start_ns)
    last = len(frame) - 1
    for i, row in enumerate(frame.itertuples()):
        close_ns = int(row.ts.value) + MINUTE_NS
        batch = BarBatch(
            ts_ns=close_ns, symbols=(symbol,), open=np.array([row.open]), high=np.array([row.high]),
            low=np.array([row.low]), close=np.array([row.close]), volume=np.array([row.volume]),
        )
        commands: list[object] = []
        for event in venue.on_bars(batch, session_closed=i == last):
            commands.extend(algo.on_event(event))
        price = D(repr(float(row.close)))
        commands.extend(algo.on_timer(close_ns, {symbol: MarketView(price, float(row.volume))}))
        send(commands, close_ns)


def test_vwap_through_risk_and_the_simulated_venue_fills_near_the_market_vwap() -> None:
    bars = generate_minute_bars(1, date(2024, 2, 1), date(2024, 3, 1), seed=11)
    days = day_of_ns(bars.column("ts").cast(pa.int64()).to_numpy())
    last_day = days.max()
    history = bars.filter(pa.array(days < last_day))
    today = bars.filter(pa.array(days == last_day))
    frame = today.to_pandas()
    start_ns = int(frame["ts"].iloc[0].value)
    end_ns = int(frame["ts"].iloc[-1].value) + MINUTE_NS
    quantity = int(frame["volume"].sum() * 0.03)  # 3% of the day's volume; the venue allows 10% a bar
    order = parent(
        "vwap", quantity, symbol="S0000", start_ns=start_ns, end_ns=end_ns,
        volume_curve=[float(v) for v in volume_curve_from_bars(history, n_buckets=26)],
    )
    algo = create_algorithm(order)
    assert isinstance(algo, VWAPAlgorithm)

    simulate(algo, today, "S0000")

    assert algo.status is AlgorithmStatus.COMPLETED and algo.filled_quantity == quantity
    assert algo.failures == 0
    market_vwap = float((frame["vwap"] * frame["volume"]).sum() / frame["volume"].sum())
    twap_price = float(frame["close"].mean())
    realised = float(algo.average_price or 0)
    # within 15 bps of the market VWAP on a day whose high-low range is about 230 bps
    assert abs(realised / market_vwap - 1) < 0.0015, (realised, market_vwap, twap_price)


def test_iceberg_through_risk_and_the_simulated_venue_fills_at_its_limit_or_better() -> None:
    bars = generate_minute_bars(1, date(2024, 3, 1), date(2024, 3, 1), seed=4)
    frame = bars.to_pandas()
    start_ns = int(frame["ts"].iloc[0].value)
    end_ns = int(frame["ts"].iloc[-1].value) + MINUTE_NS
    limit = D(repr(round(float(frame["close"].max()), 2)))  # a buy limit the session reaches
    order = parent(
        "iceberg", 20_000, symbol="S0000", start_ns=start_ns, end_ns=end_ns, limit_price=limit,
        display_quantity=1_000, display_variance=0.3, seed=9,
    )
    algo = create_algorithm(order)
    assert isinstance(algo, IcebergAlgorithm)

    simulate(algo, bars, "S0000")

    assert algo.status is AlgorithmStatus.COMPLETED and algo.filled_quantity == 20_000
    assert all(child.quantity <= 1_000 for child in algo.children)
    assert algo.average_price is not None and algo.average_price <= limit
