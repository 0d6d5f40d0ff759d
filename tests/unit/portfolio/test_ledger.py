"""Hand-checked ledger scenarios: every expected number below is worked out by hand."""

from __future__ import annotations

import pickle
from decimal import Decimal

import numpy as np
import pytest

from amcp.config import AccountConfig
from amcp.domain import (
    BarBatch,
    ClientOrderId,
    LiquiditySide,
    OrderFilled,
    OrderSide,
    StrategyId,
    TradeId,
    VenueOrderId,
)
from amcp.errors import PortfolioError
from amcp.portfolio.ledger import Portfolio, Position

D = Decimal
BUY, SELL = OrderSide.BUY, OrderSide.SELL
CALL = "AAPL240119C00190000"  # strike 190, multiplier 100
PUT = "SPY240119P00400000"  # strike 400


def fill(
    symbol: str,
    side: OrderSide,
    quantity: str | Decimal,
    price: str | Decimal,
    fee: str | Decimal = "0",
    strategy: str = "alpha",
    ts_ns: int = 1,
) -> OrderFilled:
    return OrderFilled(
        client_order_id=ClientOrderId("c-1"),
        venue_order_id=VenueOrderId("v-1"),
        trade_id=TradeId("t-1"),
        strategy_id=StrategyId(strategy),
        symbol=symbol,
        side=side,
        last_quantity=D(quantity),
        last_price=D(price),
        fee=D(fee),
        liquidity=LiquiditySide.TAKER,
        ts_ns=ts_ns,
    )


def batch(ts_ns: int, closes: dict[str, float]) -> BarBatch:
    symbols = tuple(closes)
    close = np.array([closes[s] for s in symbols], dtype=np.float64)
    return BarBatch(
        ts_ns=ts_ns, symbols=symbols, open=close, high=close, low=close, close=close, volume=close
    )


def portfolio(cash: int = 100_000, **kwargs: object) -> Portfolio:
    return Portfolio(AccountConfig(starting_cash_usd=D(cash), **kwargs))


def assert_balanced(book: Portfolio) -> None:
    assert book.cash + book.market_value == book.equity
    assert book.equity == book.starting_cash + book.realized_pnl + book.unrealized_pnl - book.fees


# --------------------------------------------------------------------------- fills


def test_buy_debits_cash_and_opens_position_at_fill_price() -> None:
    book = portfolio()

    book.apply_fill(fill("AAPL", BUY, "10", "150.25", fee="1.00"))

    position = book.position("AAPL")
    assert position is not None
    assert position.quantity == D(10)
    assert position.cost_basis == D("1502.50")
    assert position.average_price == D("150.25")
    assert position.last_price == D("150.25")  # never marked: marked at the fill price
    assert book.cash == D("98496.50")  # 100000 - 1502.50 - 1.00
    assert book.market_value == D("1502.50")
    assert book.equity == D("99999.00")
    assert book.fees == D("1.00")
    assert book.realized_pnl == 0
    assert book.unrealized_pnl == 0
    assert_balanced(book)


def test_add_to_long_averages_the_price() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "10", "100"))

    book.apply_fill(fill("AAPL", BUY, "30", "120"))

    position = book.position("AAPL")
    assert position is not None
    assert position.quantity == D(40)
    assert position.cost_basis == D(4600)  # 1000 + 3600
    assert position.average_price == D(115)
    assert book.cash == D(95_400)
    assert_balanced(book)


def test_partial_sell_realises_pnl_against_average_price() -> None:
    book = portfolio()
    book.apply_fills([fill("AAPL", BUY, "10", "100"), fill("AAPL", BUY, "30", "120")])  # avg 115

    book.apply_fill(fill("AAPL", SELL, "15", "130", fee="0.50"))

    position = book.position("AAPL")
    assert position is not None
    assert position.quantity == D(25)
    assert position.cost_basis == D(2875)  # 25 × 115
    assert position.average_price == D(115)
    assert book.realized_pnl == D(225)  # (130 - 115) × 15, fees excluded
    assert position.realized_pnl == D(225)
    assert book.cash == D("97349.50")  # 95400 + 1950 - 0.50
    assert book.fees == D("0.50")
    book.mark({"AAPL": D(130)}, ts_ns=2)
    assert book.unrealized_pnl == D(375)  # (130 - 115) × 25
    assert_balanced(book)


def test_full_close_leaves_a_flat_position_with_its_realised_pnl() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "3", "100"))
    book.apply_fill(fill("AAPL", BUY, "4", "101"))  # avg 704/7, not a finite decimal

    book.apply_fill(fill("AAPL", SELL, "7", "102"))

    position = book.position("AAPL")
    assert position is not None
    assert position.quantity == 0
    assert position.cost_basis == 0
    assert position.average_price == 0
    assert book.realized_pnl == D(10)  # 714 - 704
    assert book.cash == D(100_010)
    assert book.market_value == 0
    assert book.equity == D(100_010)
    snapshot = book.snapshot(ts_ns=3)
    assert "AAPL" not in snapshot.positions
    assert ("alpha", "AAPL") not in snapshot.strategy_positions
    assert_balanced(book)


def test_partial_closes_with_a_repeating_average_price_stay_balanced_to_the_digit() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "3", "100"))
    book.apply_fill(fill("AAPL", BUY, "4", "101"))  # avg 100.571428...

    book.apply_fill(fill("AAPL", SELL, "2", "102"))
    book.apply_fill(fill("AAPL", SELL, "2", "103"))

    # Realised = (102 - 704/7) × 2 + (103 - 704/7) × 2 = 2.857142... + 4.857142...
    expected = (D(102) + D(103)) * 2 - D(4) * D(704) / D(7)
    assert abs(book.realized_pnl - expected) < D("1e-15")
    assert_balanced(book)
    book.apply_fill(fill("AAPL", SELL, "3", "99"))
    assert book.realized_pnl == D(410) + D(297) - D(704)  # every share closed: exact again
    assert_balanced(book)


def test_flip_long_to_short_closes_old_side_and_opens_rest_at_fill_price() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "10", "100"))

    book.apply_fill(fill("AAPL", SELL, "15", "110"))

    position = book.position("AAPL")
    assert position is not None
    assert position.quantity == D(-5)
    assert position.cost_basis == D(-550)  # short 5 at 110
    assert position.average_price == D(110)
    assert book.realized_pnl == D(100)  # (110 - 100) × 10
    assert book.cash == D(100_650)  # 100000 - 1000 + 1650
    book.mark({"AAPL": D(104)}, ts_ns=2)
    assert book.market_value == D(-520)
    assert book.unrealized_pnl == D(30)  # (110 - 104) × 5
    assert book.equity == D(100_130)
    assert_balanced(book)


def test_short_cover_realises_gain_when_price_fell() -> None:
    book = portfolio()
    book.apply_fill(fill("MSFT", SELL, "20", "400"))
    assert book.cash == D(108_000)

    book.apply_fill(fill("MSFT", BUY, "5", "380", fee="0.10"))

    position = book.position("MSFT")
    assert position is not None
    assert position.quantity == D(-15)
    assert position.cost_basis == D(-6000)
    assert position.average_price == D(400)
    assert book.realized_pnl == D(100)  # (400 - 380) × 5
    assert book.cash == D("106099.90")

    book.apply_fill(fill("MSFT", BUY, "25", "390"))  # cover 15 at 390 and go long 10 at 390

    position = book.position("MSFT")
    assert position is not None
    assert position.quantity == D(10)
    assert position.cost_basis == D(3900)
    assert book.realized_pnl == D(250)  # 100 + (400 - 390) × 15
    assert_balanced(book)


def test_option_fills_use_the_contract_multiplier() -> None:
    book = portfolio()

    book.apply_fill(fill(CALL, BUY, "2", "3.50", fee="0.09"))

    position = book.position(CALL)
    assert position is not None
    assert position.multiplier == D(100)
    assert position.cost_basis == D(700)
    assert position.average_price == D("3.50")
    assert book.cash == D("99299.91")
    book.mark({CALL: D("4.25")}, ts_ns=2)
    assert book.market_value == D(850)
    assert book.unrealized_pnl == D(150)

    book.apply_fill(fill(CALL, SELL, "1", "4.10", fee="0.05"))

    assert book.realized_pnl == D(60)  # (4.10 - 3.50) × 1 × 100
    assert book.fees == D("0.14")
    assert book.cash == D("99709.86")
    assert_balanced(book)


def test_fees_reduce_cash_and_equity_but_not_realised_pnl() -> None:
    book = portfolio()

    book.apply_fill(fill("AAPL", BUY, "1", "100", fee="1.25"))
    book.apply_fill(fill("AAPL", SELL, "1", "100", fee="0.75"))

    assert book.realized_pnl == 0
    assert book.fees == D("2.00")
    assert book.cash == D("99998.00")
    assert book.equity == D("99998.00")
    assert_balanced(book)


def test_strategy_positions_are_kept_per_strategy_and_netted_per_symbol() -> None:
    book = portfolio()

    book.apply_fill(fill("AAPL", BUY, "10", "100", strategy="alpha"))
    book.apply_fill(fill("AAPL", SELL, "4", "100", strategy="beta"))

    snapshot = book.snapshot(ts_ns=2)
    assert snapshot.positions == {"AAPL": D(6)}
    assert snapshot.strategy_positions == {("alpha", "AAPL"): D(10), ("beta", "AAPL"): D(-4)}
    assert book.strategy_position("beta", "AAPL") == D(-4)
    assert book.strategy_position("gamma", "AAPL") == 0


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("quantity", "price", "fee", "message"),
    [
        ("0", "100", "0", "last_quantity"),
        ("-5", "100", "0", "last_quantity"),
        ("NaN", "100", "0", "last_quantity"),
        ("5", "0", "0", "last_price"),
        ("5", "-1", "0", "last_price"),
        ("5", "Infinity", "0", "last_price"),
        ("5", "100", "-0.01", "fee"),
        ("5", "100", "NaN", "fee"),
    ],
)
def test_bad_fill_raises_with_values_and_changes_nothing(
    quantity: str, price: str, fee: str, message: str
) -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "10", "100", fee="1"))
    before = book.snapshot(ts_ns=5)

    with pytest.raises(PortfolioError, match=message) as error:
        book.apply_fill(fill("AAPL", SELL, quantity, price, fee=fee))

    assert "AAPL" in str(error.value)
    assert book.snapshot(ts_ns=5) == before
    assert book.position("AAPL") == Position("AAPL", D(10), D(1000), D(0), D(1), D(100), 1)


def test_fill_with_unknown_symbol_raises_portfolio_error() -> None:
    book = portfolio()

    with pytest.raises(PortfolioError, match="unknown instrument"):
        book.apply_fill(fill("not a symbol", BUY, "1", "10"))

    assert book.position("not a symbol") is None
    assert book.cash == D(100_000)


def test_fill_with_float_quantity_is_refused() -> None:
    book = portfolio()
    bad = fill("AAPL", BUY, "1", "10")
    object.__setattr__(bad, "last_quantity", 1.5)

    with pytest.raises(PortfolioError, match="1.5"):
        book.apply_fill(bad)


def test_apply_fills_books_all_or_none() -> None:
    book = portfolio()

    with pytest.raises(PortfolioError, match="last_price"):
        book.apply_fills([fill("AAPL", BUY, "10", "100"), fill("MSFT", BUY, "1", "-3")])

    assert book.position("AAPL") is None
    assert book.cash == D(100_000)


def test_mark_with_non_number_raises_and_changes_nothing() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "10", "100"))

    with pytest.raises(PortfolioError, match="'MSFT'"):
        book.mark({"AAPL": D(120), "MSFT": "abc"}, ts_ns=2)  # type: ignore[dict-item]

    assert book.market_value == D(1000)


# --------------------------------------------------------------------------- marks


def test_mark_ignores_nan_and_non_positive_prices() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "10", "100"))
    book.mark({"AAPL": 101.5}, ts_ns=2)

    book.mark({"AAPL": float("nan")}, ts_ns=3)
    book.mark({"AAPL": 0.0}, ts_ns=4)
    book.mark({"AAPL": D(-1)}, ts_ns=5)
    book.mark({"AAPL": D("NaN")}, ts_ns=6)

    position = book.position("AAPL")
    assert position is not None
    assert position.last_price == D("101.5")
    assert position.last_price_ts_ns == 2
    assert book.market_value == D(1015)


def test_mark_batch_marks_held_symbols_and_keeps_old_mark_on_nan() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "10", "100"))

    book.mark_batch(batch(10, {"AAPL": 101.25, "MSFT": 400.0}))
    assert book.market_value == D("1012.5")
    book.mark_batch(batch(20, {"AAPL": float("nan"), "MSFT": 401.0}))

    assert book.market_value == D("1012.5")
    snapshot = book.snapshot(ts_ns=20)
    assert snapshot.prices == {"AAPL": D("101.25"), "MSFT": D(401)}
    assert snapshot.price_ts_ns == {"AAPL": 10, "MSFT": 20}
    assert_balanced(book)


def test_unheld_symbols_marked_by_batch_are_priced_when_first_bought() -> None:
    book = portfolio()
    book.mark_batch(batch(10, {"AAPL": 100.0, "MSFT": 400.0}))
    book.mark_batch(batch(20, {"AAPL": 101.0, "MSFT": float("nan")}))

    book.apply_fill(fill("MSFT", BUY, "2", "402", ts_ns=25))

    position = book.position("MSFT")
    assert position is not None
    assert position.last_price == D(400)  # the last mark, not the fill price
    assert book.unrealized_pnl == D(-4)
    assert_balanced(book)


def test_latest_mark_wins_between_exact_marks_and_batches() -> None:
    book = portfolio()
    book.mark_batch(batch(10, {"AAPL": 100.0}))
    book.mark({"AAPL": D("100.1234")}, ts_ns=11)
    assert book.snapshot(11).prices["AAPL"] == D("100.1234")

    book.mark_batch(batch(12, {"AAPL": 99.5}))

    assert book.snapshot(12).prices["AAPL"] == D("99.5")
    assert book.snapshot(12).price_ts_ns["AAPL"] == 12


def test_snapshot_prices_are_each_symbols_last_valid_close_over_many_batches() -> None:
    rng = np.random.default_rng(11)
    symbols = ("AAPL", "MSFT", "SPY", "QQQ", "IWM")
    book = portfolio()
    expected: dict[str, Decimal] = {}
    expected_ts: dict[str, int] = {}

    for ts_ns in range(1, 301):
        closes = np.round(rng.uniform(-5.0, 500.0, len(symbols)), 2)
        closes[rng.random(len(symbols)) < 0.6] = np.nan  # most symbols miss most bars
        book.mark_batch(batch(ts_ns, dict(zip(symbols, closes.tolist(), strict=True))))
        for symbol, value in zip(symbols, closes.tolist(), strict=True):
            if value > 0:
                expected[symbol], expected_ts[symbol] = D(repr(value)), ts_ns
        if ts_ns in (1, 3, 4, 97, 194, 291, 300):  # folds of 1, 2, dozens, 64 (automatic) batches
            snapshot = book.snapshot(ts_ns)
            assert dict(snapshot.prices) == expected
            assert dict(snapshot.price_ts_ns) == expected_ts


def test_position_returns_a_copy() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "10", "100"))

    copy = book.position("AAPL")
    assert copy is not None
    copy.quantity = D(1_000_000)

    assert book.market_value == D(1000)
    assert book.positions()["AAPL"].quantity == D(10)


def test_marks_survive_a_change_of_batch_universe() -> None:
    book = portfolio()
    book.mark_batch(batch(10, {"AAPL": 100.0, "MSFT": 400.0}))

    book.mark_batch(batch(20, {"MSFT": 401.0, "SPY": 500.0}))

    assert dict(book.snapshot(20).prices) == {"AAPL": D(100), "MSFT": D(401), "SPY": D(500)}


def test_snapshot_is_unaffected_by_later_marks_and_pickles() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "10", "100"))
    book.mark_batch(batch(10, {"AAPL": 101.0, "MSFT": 400.0}))
    before = book.snapshot(ts_ns=10)

    book.mark_batch(batch(20, {"AAPL": 105.0, "MSFT": 410.0}))
    book.mark({"MSFT": D(1)}, ts_ns=21)

    assert before.prices == {"AAPL": D(101), "MSFT": D(400)}
    assert before.market_value == D(1010)
    restored = pickle.loads(pickle.dumps(before))
    assert restored == before
    assert restored.prices["MSFT"] == D(400)


def test_snapshot_market_value_matches_its_positions_and_prices() -> None:
    book = portfolio()
    book.apply_fills([fill("AAPL", BUY, "10", "100"), fill(CALL, SELL, "3", "2.15")])
    book.mark_batch(batch(10, {"AAPL": 101.37, CALL: 2.4, "MSFT": 1.0}))

    snapshot = book.snapshot(ts_ns=10)

    multipliers = {"AAPL": D(1), CALL: D(100)}
    total = sum((q * snapshot.prices[s] * multipliers[s] for s, q in snapshot.positions.items()), D(0))
    assert snapshot.market_value == total == D("1013.70") - D(720)
    assert snapshot.gross_exposure == D("1013.70") + D(720)
    assert snapshot.cash + snapshot.market_value == snapshot.equity


def test_start_session_records_start_of_day_equity() -> None:
    book = portfolio()
    book.apply_fill(fill("AAPL", BUY, "10", "100"))
    book.mark({"AAPL": D(90)}, ts_ns=2)
    assert book.snapshot(2).start_of_day_equity == D(100_000)

    book.start_session(ts_ns=3)
    book.mark({"AAPL": D(80)}, ts_ns=4)

    snapshot = book.snapshot(4)
    assert snapshot.start_of_day_equity == D(99_900)
    assert snapshot.equity == D(99_800)


# --------------------------------------------------------------------------- buying power


def test_margin_buying_power_with_equities() -> None:
    book = portfolio(account_type="margin", margin_multiplier=D(2))
    assert book.buying_power == D(200_000)

    book.apply_fill(fill("AAPL", BUY, "400", "100"))  # 40k long
    book.apply_fill(fill("MSFT", SELL, "25", "400"))  # 10k short

    # equity 100k, requirement (40k + 10k) / 2 = 25k, BP = (100k - 25k) × 2
    assert book.equity == D(100_000)
    assert book.initial_margin_requirement == D(25_000)
    assert book.buying_power == D(150_000)


def test_margin_buying_power_holds_full_long_option_value_and_strike_margin_on_short_options() -> None:
    book = portfolio(account_type="margin", margin_multiplier=D(2))

    book.apply_fill(fill(CALL, BUY, "2", "5"))  # long call worth 1000: requirement 1000
    book.apply_fill(fill(PUT, SELL, "1", "3"))  # short put worth 300: 300 + 0.20 × 400 × 100 × 1

    assert book.equity == D(100_000)
    assert book.initial_margin_requirement == D(1000) + D(300) + D(8000)
    assert book.buying_power == (D(100_000) - D(9300)) * 2


def test_margin_buying_power_is_never_negative() -> None:
    book = portfolio(cash=1000, account_type="margin", margin_multiplier=D(2))
    book.apply_fill(fill("AAPL", BUY, "20", "100"))  # 2000 long on 1000 equity: requirement 1000
    book.mark({"AAPL": D(60)}, ts_ns=2)  # equity 200, requirement 600

    assert book.equity == D(200)
    assert book.buying_power == 0


def test_cash_account_buying_power_is_cash() -> None:
    book = portfolio(account_type="cash")

    book.apply_fill(fill("AAPL", BUY, "400", "100", fee="1"))

    assert book.buying_power == D(59_999)
    assert book.initial_margin_requirement == 0
    book.apply_fill(fill("MSFT", BUY, "200", "400"))
    assert book.cash == D(-20_001)
    assert book.buying_power == 0
