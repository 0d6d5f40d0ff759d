"""Pre-trade checks of RiskEngine: one test per reason code, plus accumulation within a call."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from amcp.config import RiskConfig
from amcp.domain import DenyReason, OrderDenied, OrderSide, OrderType, TradingState
from amcp.errors import DomainError
from amcp.risk.engine import RiskEngine

from ._builders import NOW_NS, SECOND_NS, STRATEGY, context, engine, order, snapshot

BUY = OrderSide.BUY
SELL = OrderSide.SELL


def only_denial(result: tuple[list, list[OrderDenied]]) -> OrderDenied:
    accepted, denied = result
    assert accepted == []
    assert len(denied) == 1
    return denied[0]


def assert_accepted(result: tuple[list, list[OrderDenied]], count: int = 1) -> None:
    accepted, denied = result
    assert denied == []
    assert len(accepted) == count


# --------------------------------------------------------------------------- accept


def test_order_within_every_limit_is_accepted() -> None:
    risk = engine()
    command = order("AAPL", BUY, 10, order_type=OrderType.LIMIT, limit_price="100.50")

    accepted, denied = risk.check([command], context())

    assert accepted == [command]
    assert denied == []


def test_empty_batch_returns_nothing() -> None:
    assert engine().check([], context()) == ([], [])


def test_denial_carries_the_command_ids_and_the_context_time() -> None:
    risk = engine(max_order_quantity=Decimal(5))
    command = order("AAPL", BUY, 10, client_order_id="c-1")

    denial = only_denial(risk.check([command], context(ts_ns=NOW_NS + 7)))

    assert denial.client_order_id == "c-1"
    assert denial.strategy_id == STRATEGY
    assert denial.symbol == "AAPL"
    assert denial.ts_ns == NOW_NS + 7


# --------------------------------------------------------------------------- one test per reason


def test_order_while_halted_is_denied_with_the_halt_reason() -> None:
    risk = engine()
    risk.set_state(TradingState.HALTED, NOW_NS, "desk closed")

    denial = only_denial(risk.check([order()], context()))

    assert denial.reason is DenyReason.TRADING_HALTED
    assert "desk closed" in denial.message


def test_increasing_order_while_reducing_is_denied_with_positions() -> None:
    risk = engine()
    risk.set_state(TradingState.REDUCING, NOW_NS, "drawdown")

    denial = only_denial(risk.check([order("AAPL", BUY, 10)], context()))

    assert denial.reason is DenyReason.TRADING_REDUCING
    assert "position 0" in denial.message and "to 10" in denial.message


def test_restricted_symbol_is_denied_naming_it() -> None:
    risk = engine(restricted_symbols=("AAPL",))

    denial = only_denial(risk.check([order("AAPL")], context()))

    assert denial.reason is DenyReason.RESTRICTED_SYMBOL
    assert "AAPL" in denial.message


def test_option_on_restricted_underlying_is_denied() -> None:
    risk = engine(restricted_symbols=("AAPL",))
    symbol = "AAPL240119C00190000"

    denial = only_denial(risk.check([order(symbol, BUY, 1)], context(snapshot(prices={symbol: "2.50"}))))

    assert denial.reason is DenyReason.RESTRICTED_SYMBOL
    assert symbol in denial.message and "AAPL" in denial.message


@pytest.mark.parametrize("symbol", ["$BAD", "aapl"])
def test_unknown_or_non_canonical_symbol_is_denied_naming_it(symbol: str) -> None:
    denial = only_denial(engine().check([order(symbol)], context()))

    assert denial.reason is DenyReason.UNKNOWN_INSTRUMENT
    assert repr(symbol) in denial.message


def test_instrument_lookup_error_is_a_denial_not_an_exception() -> None:
    def no_instruments(symbol: str):  # type: ignore[no-untyped-def]
        raise DomainError(f"no listing for {symbol}")

    risk = RiskEngine(RiskConfig(), instrument_for=no_instruments)

    denial = only_denial(risk.check([order("AAPL")], context()))

    assert denial.reason is DenyReason.UNKNOWN_INSTRUMENT
    assert "no listing for AAPL" in denial.message


@pytest.mark.parametrize("quantity", ["0", "-5", "1.5", "NaN"])
def test_invalid_quantity_is_denied_with_the_quantity(quantity: str) -> None:
    denial = only_denial(engine().check([order("AAPL", BUY, Decimal(quantity))], context()))

    assert denial.reason is DenyReason.INVALID_QUANTITY
    assert quantity in denial.message


@pytest.mark.parametrize(
    ("order_type", "limit_price", "stop_price", "expected"),
    [
        (OrderType.LIMIT, "100.005", None, "100.005"),  # off the $0.01 tick
        (OrderType.LIMIT, "0", None, "limit_price 0"),
        (OrderType.LIMIT, None, None, "needs a limit_price"),
        (OrderType.STOP, None, "-1", "stop_price -1"),
        (OrderType.MARKET, "100", None, "must not carry a limit_price"),
    ],
)
def test_invalid_price_is_denied_with_the_price(
    order_type: OrderType, limit_price: str | None, stop_price: str | None, expected: str
) -> None:
    command = order("AAPL", BUY, 10, order_type=order_type, limit_price=limit_price, stop_price=stop_price)

    denial = only_denial(engine().check([command], context()))

    assert denial.reason is DenyReason.INVALID_PRICE
    assert expected in denial.message


def test_order_above_max_quantity_is_denied_with_values() -> None:
    denial = only_denial(engine(max_order_quantity=Decimal(5)).check([order("AAPL", BUY, 6)], context()))

    assert denial.reason is DenyReason.MAX_ORDER_QUANTITY
    assert "6" in denial.message and "max_order_quantity 5" in denial.message


def test_symbol_without_reference_price_is_denied() -> None:
    denial = only_denial(engine().check([order("MSFT")], context(snapshot(prices={}))))

    assert denial.reason is DenyReason.NO_REFERENCE_PRICE
    assert "MSFT" in denial.message


def test_order_with_stale_reference_price_is_denied_with_its_age() -> None:
    portfolio = snapshot(price_ts_ns={"AAPL": NOW_NS - 5 * SECOND_NS})

    denial = only_denial(engine(max_price_age_s=1.0).check([order()], context(portfolio)))

    assert denial.reason is DenyReason.STALE_REFERENCE_PRICE
    assert "5s old" in denial.message and "max_price_age_s 1" in denial.message


def test_reference_price_without_timestamp_is_stale() -> None:
    denial = only_denial(engine().check([order()], context(snapshot(price_ts_ns={}))))

    assert denial.reason is DenyReason.STALE_REFERENCE_PRICE
    assert "no timestamp" in denial.message


def test_order_above_max_notional_is_denied_with_values() -> None:
    denial = only_denial(
        engine(max_order_notional_usd=Decimal(999)).check([order("AAPL", BUY, 10)], context())
    )

    assert denial.reason is DenyReason.MAX_ORDER_NOTIONAL
    assert "1000" in denial.message and "10 × 100 × 1" in denial.message and "999" in denial.message


def test_order_notional_takes_a_limit_worse_than_the_reference() -> None:
    command = order("AAPL", BUY, 10, order_type=OrderType.LIMIT, limit_price="105")

    denial = only_denial(engine(max_order_notional_usd=Decimal(1040)).check([command], context()))

    assert denial.reason is DenyReason.MAX_ORDER_NOTIONAL
    assert "10 × 105 × 1" in denial.message


def test_option_notional_uses_the_contract_multiplier() -> None:
    symbol = "SPY240119P00400000"
    risk = engine(max_order_notional_usd=Decimal(2000))

    denial = only_denial(risk.check([order(symbol, BUY, 10)], context(snapshot(prices={symbol: "2.50"}))))

    assert denial.reason is DenyReason.MAX_ORDER_NOTIONAL
    assert "2500" in denial.message and "× 100" in denial.message


def test_limit_outside_the_collar_is_denied_with_the_band() -> None:
    command = order("AAPL", BUY, 10, order_type=OrderType.LIMIT, limit_price="111")

    denial = only_denial(engine(price_collar_pct=0.10).check([command], context()))

    assert denial.reason is DenyReason.PRICE_COLLAR
    assert "limit_price 111" in denial.message and "reference price 100" in denial.message
    assert "90" in denial.message and "110" in denial.message


def test_stop_outside_the_collar_is_denied() -> None:
    command = order("AAPL", SELL, 10, order_type=OrderType.STOP, stop_price="85")

    denial = only_denial(engine().check([command], context()))

    assert denial.reason is DenyReason.PRICE_COLLAR
    assert "stop_price 85" in denial.message


def test_resent_client_order_id_is_denied_as_duplicate() -> None:
    risk = engine()
    first = order(client_order_id="c-1")
    assert_accepted(risk.check([first], context()))

    denial = only_denial(
        risk.check([order("AAPL", BUY, 20, client_order_id="c-1")], context(ts_ns=NOW_NS + SECOND_NS))
    )

    assert denial.reason is DenyReason.DUPLICATE_CLIENT_ORDER_ID
    assert "c-1" in denial.message


def test_client_order_id_of_a_working_order_is_a_duplicate() -> None:
    working = order(client_order_id="w-1")

    denial = only_denial(engine().check([order(client_order_id="w-1")], context(open_orders=(working,))))

    assert denial.reason is DenyReason.DUPLICATE_CLIENT_ORDER_ID
    assert "w-1" in denial.message


def test_same_intent_twice_in_one_call_is_denied_as_duplicate_intent() -> None:
    first, again = order("AAPL", BUY, 10), order("AAPL", BUY, 10)

    accepted, denied = engine().check([first, again], context())

    assert accepted == [first]
    assert [d.reason for d in denied] == [DenyReason.DUPLICATE_INTENT]
    assert "buy 10 AAPL" in denied[0].message and "duplicate_intent_window_s 60" in denied[0].message


def test_duplicate_intent_window_expires() -> None:
    risk = engine(duplicate_intent_window_s=60.0)
    assert_accepted(risk.check([order("AAPL", BUY, 10)], context()))

    inside = risk.check([order("AAPL", BUY, 10)], context(ts_ns=NOW_NS + 59 * SECOND_NS))
    expired = risk.check([order("AAPL", BUY, 10)], context(ts_ns=NOW_NS + 60 * SECOND_NS))

    assert only_denial(inside).reason is DenyReason.DUPLICATE_INTENT
    assert "59s ago" in only_denial(inside).message
    assert_accepted(expired)


def test_different_quantity_is_not_a_duplicate_intent() -> None:
    assert_accepted(engine().check([order("AAPL", BUY, 10), order("AAPL", BUY, 11)], context()), 2)


def test_reduce_only_order_that_would_open_is_denied_with_positions() -> None:
    command = order("AAPL", BUY, 10, reduce_only=True)

    denial = only_denial(engine().check([command], context()))

    assert denial.reason is DenyReason.REDUCE_ONLY
    assert "position 0" in denial.message and "to 10" in denial.message


def test_reduce_only_order_that_reduces_is_accepted() -> None:
    portfolio = snapshot(positions={"AAPL": 10})

    assert_accepted(engine().check([order("AAPL", SELL, 10, reduce_only=True)], context(portfolio)))


def test_reduce_only_counts_working_orders_on_the_same_side() -> None:
    portfolio = snapshot(positions={"AAPL": 10})
    working = order("AAPL", SELL, 6)

    denial = only_denial(
        engine().check([order("AAPL", SELL, 5, reduce_only=True)], context(portfolio, open_orders=(working,)))
    )

    assert denial.reason is DenyReason.REDUCE_ONLY
    assert "working sells 6" in denial.message and "to -1" in denial.message


def test_order_above_max_position_is_denied_with_values() -> None:
    portfolio = snapshot(positions={"AAPL": 10})

    denial = only_denial(
        engine(max_position_notional_usd=Decimal(1500)).check([order("AAPL", BUY, 6)], context(portfolio))
    )

    assert denial.reason is DenyReason.MAX_POSITION
    assert "position 10" in denial.message and "to 16" in denial.message and "1600" in denial.message
    assert "1500" in denial.message


def test_max_position_counts_working_orders_of_the_symbol() -> None:
    working = order("AAPL", BUY, 10)

    denial = only_denial(
        engine(max_position_notional_usd=Decimal(1500)).check(
            [order("AAPL", BUY, 6)], context(open_orders=(working,))
        )
    )

    assert denial.reason is DenyReason.MAX_POSITION
    assert "working buys 10" in denial.message


def test_order_above_max_gross_exposure_is_denied_with_values() -> None:
    portfolio = snapshot(gross_exposure=1500)

    denial = only_denial(
        engine(max_gross_exposure_usd=Decimal(2000)).check([order("AAPL", BUY, 6)], context(portfolio))
    )

    assert denial.reason is DenyReason.MAX_GROSS_EXPOSURE
    assert (
        "2100" in denial.message and "positions 1500" in denial.message and "this order 600" in denial.message
    )
    assert "max_gross_exposure_usd 2000" in denial.message


def test_working_orders_count_toward_gross_exposure() -> None:
    portfolio = snapshot(gross_exposure=1000)
    working = order("AAPL", BUY, 5)

    denial = only_denial(
        engine(max_gross_exposure_usd=Decimal(2000)).check(
            [order("AAPL", BUY, 6)], context(portfolio, open_orders=(working,))
        )
    )

    assert denial.reason is DenyReason.MAX_GROSS_EXPOSURE
    assert "working orders 500" in denial.message


def test_reducing_order_passes_gross_exposure_already_above_the_limit() -> None:
    portfolio = snapshot(positions={"AAPL": 100}, gross_exposure=10_000)

    assert_accepted(
        engine(max_gross_exposure_usd=Decimal(2000)).check([order("AAPL", SELL, 10)], context(portfolio))
    )


def test_order_above_buying_power_is_denied_with_values() -> None:
    portfolio = snapshot(buying_power=500)

    denial = only_denial(engine().check([order("AAPL", BUY, 6)], context(portfolio)))

    assert denial.reason is DenyReason.INSUFFICIENT_BUYING_POWER
    assert "needs 600" in denial.message and "500 USD remains" in denial.message


def test_orders_accumulate_buying_power_within_one_call() -> None:
    portfolio = snapshot(buying_power=1000, prices={"AAPL": 100, "MSFT": 100})
    first, second = order("AAPL", BUY, 6), order("MSFT", BUY, 6)

    accepted, denied = engine().check([first, second], context(portfolio))

    assert accepted == [first]
    assert [d.reason for d in denied] == [DenyReason.INSUFFICIENT_BUYING_POWER]
    assert "400 USD remains" in denied[0].message and "working orders 600" in denied[0].message
    assert portfolio.buying_power == 1000  # the snapshot itself is untouched


def test_working_orders_consume_buying_power() -> None:
    working = order("AAPL", BUY, 5)

    denial = only_denial(
        engine().check([order("AAPL", BUY, 6)], context(snapshot(buying_power=1000), open_orders=(working,)))
    )

    assert denial.reason is DenyReason.INSUFFICIENT_BUYING_POWER
    assert "500 USD remains" in denial.message


def test_reducing_order_needs_no_buying_power() -> None:
    portfolio = snapshot(positions={"AAPL": 10}, buying_power=0)

    assert_accepted(engine().check([order("AAPL", SELL, 10)], context(portfolio)))


def test_short_sale_uses_buying_power() -> None:
    denial = only_denial(engine().check([order("AAPL", SELL, 6)], context(snapshot(buying_power=500))))

    assert denial.reason is DenyReason.INSUFFICIENT_BUYING_POWER


def test_order_beyond_throttle_is_denied_with_the_count() -> None:
    risk = engine(throttle_max_orders=2, throttle_window_s=1.0)

    accepted, denied = risk.check(
        [order("AAPL", BUY, 1), order("AAPL", BUY, 2), order("AAPL", BUY, 3)], context()
    )

    assert len(accepted) == 2
    assert [d.reason for d in denied] == [DenyReason.THROTTLED]
    assert "2 orders accepted in the trailing 1s" in denied[0].message
    assert "throttle_max_orders 2" in denied[0].message


def test_throttle_window_slides_over_accepted_timestamps() -> None:
    risk = engine(throttle_max_orders=2, throttle_window_s=1.0)
    half = SECOND_NS // 2

    at_0 = risk.check([order("AAPL", BUY, 1)], context(ts_ns=NOW_NS))
    at_half = risk.check([order("AAPL", BUY, 2)], context(ts_ns=NOW_NS + half))
    at_0_9 = risk.check([order("AAPL", BUY, 3)], context(ts_ns=NOW_NS + 9 * SECOND_NS // 10))
    at_1_0 = risk.check([order("AAPL", BUY, 4)], context(ts_ns=NOW_NS + SECOND_NS))  # the stamp at 0 left
    at_1_2 = risk.check(
        [order("AAPL", BUY, 5)], context(ts_ns=NOW_NS + 12 * SECOND_NS // 10)
    )  # 0.5 and 1.0 inside
    at_1_5 = risk.check([order("AAPL", BUY, 6)], context(ts_ns=NOW_NS + 3 * half))  # 0.5 left

    assert_accepted(at_0)
    assert_accepted(at_half)
    assert only_denial(at_0_9).reason is DenyReason.THROTTLED
    assert_accepted(at_1_0)
    assert only_denial(at_1_2).reason is DenyReason.THROTTLED
    assert_accepted(at_1_5)


def test_denied_orders_do_not_use_the_throttle() -> None:
    risk = engine(throttle_max_orders=1, max_order_quantity=Decimal(5))

    accepted, denied = risk.check([order("AAPL", BUY, 6), order("AAPL", BUY, 1)], context())

    assert [d.reason for d in denied] == [DenyReason.MAX_ORDER_QUANTITY]
    assert len(accepted) == 1


# --------------------------------------------------------------------------- order classes


@pytest.mark.parametrize(
    ("fields", "reason", "message"),
    [  # a bracket needs both exits; a long's take-profit above its stop-loss
        ({"take_profit_limit_price": Decimal(110)}, DenyReason.INVALID_ORDER_CLASS, "stop_loss"),
        ({"take_profit_limit_price": Decimal(95), "stop_loss_stop_price": Decimal(105)}, DenyReason.INVALID_PRICE,
         "take-profit 95 must be above its stop-loss 105"),
    ],
)
def test_a_malformed_bracket_is_denied_before_it_is_sent(fields, reason, message) -> None:
    from amcp.domain.enums import OrderClass

    denial = only_denial(engine().check([order("AAPL", BUY, 10, order_class=OrderClass.BRACKET, **fields)], context()))
    assert denial.reason is reason
    assert message in denial.message


def test_a_well_formed_bracket_passes() -> None:
    from amcp.domain.enums import OrderClass

    assert_accepted(engine().check([order("AAPL", BUY, 10, order_class=OrderClass.BRACKET,
                                          take_profit_limit_price=Decimal(110), stop_loss_stop_price=Decimal(95))],
                                   context()))


# Denied by the live order path (amcp.execution.live), not by these checks; tested there.
LIVE_ENGINE_REASONS = {DenyReason.STATE_UNAVAILABLE, DenyReason.NOT_CHECKED}


def test_every_deny_reason_has_a_test_here() -> None:
    source = "".join(p.read_text(encoding="utf-8") for p in sorted(Path(__file__).parent.glob("test_engine*.py")))
    live_tests = (Path(__file__).parents[1] / "execution" / "test_live_engine.py").read_text(encoding="utf-8")
    missing = [reason.name for reason in DenyReason
               if f"DenyReason.{reason.name}" not in (live_tests if reason in LIVE_ENGINE_REASONS else source)]
    assert missing == []


# --------------------------------------------------------------------------- trading state on the order path


def test_reducing_state_accepts_a_reducing_order() -> None:
    risk = engine()
    risk.set_state(TradingState.REDUCING, NOW_NS, "drawdown")

    assert_accepted(risk.check([order("AAPL", SELL, 10)], context(snapshot(positions={"AAPL": 10}))))


def test_reducing_state_denies_an_order_that_flips_the_position() -> None:
    risk = engine()
    risk.set_state(TradingState.REDUCING, NOW_NS, "drawdown")

    denial = only_denial(risk.check([order("AAPL", SELL, 11)], context(snapshot(positions={"AAPL": 10}))))

    assert denial.reason is DenyReason.TRADING_REDUCING
    assert "to -1" in denial.message


def test_reducing_state_accepts_buying_back_a_short() -> None:
    risk = engine()
    risk.set_state(TradingState.REDUCING, NOW_NS, "drawdown")

    assert_accepted(risk.check([order("AAPL", BUY, 4)], context(snapshot(positions={"AAPL": -10}))))


def test_reducing_state_counts_reductions_accepted_earlier_in_the_call() -> None:
    risk = engine()
    risk.set_state(TradingState.REDUCING, NOW_NS, "drawdown")
    first, second = order("AAPL", SELL, 6), order("AAPL", SELL, 5)

    accepted, denied = risk.check([first, second], context(snapshot(positions={"AAPL": 10})))

    assert accepted == [first]
    assert [d.reason for d in denied] == [DenyReason.TRADING_REDUCING]


def test_halted_state_denies_reductions_too() -> None:
    risk = engine()
    risk.set_state(TradingState.HALTED, NOW_NS, "operator")

    denial = only_denial(risk.check([order("AAPL", SELL, 5)], context(snapshot(positions={"AAPL": 10}))))

    assert denial.reason is DenyReason.TRADING_HALTED


def test_kill_switch_denies_everything_until_reset() -> None:
    risk = engine()
    risk.engage_kill_switch(NOW_NS, "runaway strategy")
    portfolio = snapshot(positions={"AAPL": 10})

    halted = risk.check([order("AAPL", SELL, 5)], context(portfolio))
    risk.update(context(portfolio, ts_ns=NOW_NS + SECOND_NS, session_date=date(2024, 1, 3)))
    still_halted = risk.check([order("AAPL", SELL, 5)], context(portfolio, ts_ns=NOW_NS + 2 * SECOND_NS))
    risk.reset_kill_switch(NOW_NS + 3 * SECOND_NS, "fixed")
    after_reset = risk.check([order("AAPL", SELL, 5)], context(portfolio, ts_ns=NOW_NS + 3 * SECOND_NS))

    assert only_denial(halted).reason is DenyReason.TRADING_HALTED
    assert "runaway strategy" in only_denial(halted).message
    assert only_denial(still_halted).reason is DenyReason.TRADING_HALTED
    assert_accepted(after_reset)


# --------------------------------------------------------------------------- edges


def test_trailing_stop_needs_exactly_one_trail() -> None:
    good = order("AAPL", SELL, 10, order_type=OrderType.TRAILING_STOP, trail_percent=Decimal("1.5"))
    bad = order("AAPL", SELL, 11, order_type=OrderType.TRAILING_STOP)
    portfolio = snapshot(positions={"AAPL": 100})

    accepted, denied = engine().check([good, bad], context(portfolio))

    assert accepted == [good]
    assert [d.reason for d in denied] == [DenyReason.INVALID_PRICE]
    assert "exactly one of trail_price and trail_percent" in denied[0].message


def test_working_order_that_cannot_be_valued_blocks_added_exposure() -> None:
    working = order("MSFT", BUY, 5)  # market order, MSFT unmarked: its exposure is unknown
    reducing = order("AAPL", SELL, 5)
    opening = order("AAPL", BUY, 5)
    portfolio = snapshot(positions={"AAPL": 10})

    accepted, denied = engine().check([reducing, opening], context(portfolio, open_orders=(working,)))

    assert accepted == [reducing]
    assert [d.reason for d in denied] == [DenyReason.NO_REFERENCE_PRICE]
    assert working.client_order_id in denied[0].message and "MSFT" in denied[0].message


def test_checks_never_raise_on_a_malformed_command() -> None:
    command = order("AAPL", BUY, 10, order_type=OrderType.LIMIT, limit_price=Decimal("NaN"))

    denial = only_denial(engine().check([command], context()))

    assert denial.reason is DenyReason.INVALID_PRICE
    assert "NaN" in denial.message


def test_a_released_command_can_be_checked_again_under_the_same_id_and_intent() -> None:
    risk = engine(duplicate_intent_window_s=60)
    first = order("AAPL", BUY, 10, client_order_id="never-sent")
    assert_accepted(risk.check([first], context()))
    assert only_denial(risk.check([first], context())).reason is DenyReason.DUPLICATE_CLIENT_ORDER_ID
    risk.release(first)  # e.g. its intent could not be persisted: it never left the process
    assert_accepted(risk.check([first], context()))
    # an intent accepted and not released stays a duplicate under a new id
    again = order("AAPL", BUY, 10, client_order_id="same-intent")
    assert only_denial(risk.check([again], context())).reason is DenyReason.DUPLICATE_INTENT
