"""Property: the books balance exactly after any sequence of fills and marks.

Thousands of random sequences (drawn step by step by Hypothesis, and long ones from a seed it
draws) over equities (whole and fractional shares) and one option contract: random sides,
quantities, prices with up to 4 decimals, fees, and marks (exact, float, batch) in between.
After every step::

    cash + market_value == equity == starting_cash + realized_pnl + unrealized_pnl - fees
    cash == starting_cash - Σ side × qty × price × multiplier - Σ fees

exactly (so to the cent), and realised P&L matches an independent average-cost model kept in
exact fractions to within the ledger's cost quantum.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
from amcp.portfolio.ledger import Portfolio

D = Decimal
CALL = "AAPL240119C00190000"
SYMBOLS = ("AAPL", "MSFT", "SPY", CALL)
MULTIPLIERS = {"AAPL": 1, "MSFT": 1, "SPY": 1, CALL: 100}
STARTING_CASH = D(1_000_000)
CENT = D("0.01")

prices = st.integers(min_value=1, max_value=5_000_0000).map(lambda n: D(n).scaleb(-4))  # 0.0001 .. 5000
whole = st.integers(min_value=1, max_value=2_000).map(D)
fractional = st.integers(min_value=1, max_value=2_000_000).map(lambda n: D(n).scaleb(-3))
fees = st.integers(min_value=0, max_value=2_000).map(lambda n: D(n).scaleb(-2))


@st.composite
def fill_steps(draw: st.DrawFn) -> tuple[str, OrderFilled]:
    symbol = draw(st.sampled_from(SYMBOLS))
    quantity = draw(whole if symbol == CALL else st.one_of(whole, fractional))
    fill = OrderFilled(
        client_order_id=ClientOrderId("c"),
        venue_order_id=VenueOrderId("v"),
        trade_id=TradeId("t"),
        strategy_id=StrategyId(draw(st.sampled_from(("alpha", "beta")))),
        symbol=symbol,
        side=draw(st.sampled_from((OrderSide.BUY, OrderSide.SELL))),
        last_quantity=quantity,
        last_price=draw(prices),
        fee=draw(fees),
        liquidity=LiquiditySide.TAKER,
        ts_ns=0,
    )
    return ("fill", fill)


mark_values = st.one_of(
    prices,
    prices.map(float),
    st.sampled_from((float("nan"), 0.0, -1.0, D(0), D(-3))),  # ignored: the old mark stays
)
mark_steps = st.tuples(st.just("mark"), st.dictionaries(st.sampled_from(SYMBOLS), mark_values, max_size=4))
batch_steps = st.tuples(
    st.just("batch"),
    st.lists(
        st.one_of(prices.map(float), st.just(float("nan"))), min_size=len(SYMBOLS), max_size=len(SYMBOLS)
    ),
)
steps = st.lists(st.one_of(fill_steps(), fill_steps(), mark_steps, batch_steps), min_size=1, max_size=40)


@dataclass
class AverageCostModel:
    """Independent reference: realised P&L by the average-cost formula, in exact fractions."""

    quantity: dict[str, Fraction] = field(default_factory=dict)
    average: dict[str, Fraction] = field(default_factory=dict)
    realized: Fraction = Fraction(0)

    def fill(self, symbol: str, signed: Fraction, price: Fraction) -> None:
        held = self.quantity.get(symbol, Fraction(0))
        average = self.average.get(symbol, Fraction(0))
        multiplier = MULTIPLIERS[symbol]
        if held == 0 or (held > 0) == (signed > 0):
            self.average[symbol] = (average * held + price * signed) / (held + signed)
        else:
            closed = min(abs(signed), abs(held))
            self.realized += (price - average) * closed * (1 if held > 0 else -1) * multiplier
            if abs(signed) > abs(held):
                self.average[symbol] = price
        self.quantity[symbol] = held + signed


def assert_books_balance(book: Portfolio, traded: Decimal, paid_fees: Decimal) -> None:
    equity = book.equity
    assert book.cash + book.market_value == equity
    assert equity == STARTING_CASH + book.realized_pnl + book.unrealized_pnl - book.fees
    assert book.cash == STARTING_CASH - traded - paid_fees
    assert book.fees == paid_fees
    # The same identities, as they would be reported rounded to the cent.
    assert (book.cash + book.market_value).quantize(CENT) == equity.quantize(CENT)
    assert equity.quantize(CENT) == (
        STARTING_CASH + book.realized_pnl + book.unrealized_pnl - book.fees
    ).quantize(CENT)


def run_and_check(steps: list[tuple[str, object]], margin: bool) -> None:
    """Apply ``steps`` to a fresh ledger, checking the identities after every step."""
    book = Portfolio(
        AccountConfig(starting_cash_usd=STARTING_CASH, account_type="margin" if margin else "cash")
    )
    model = AverageCostModel()
    traded = D(0)
    paid_fees = D(0)
    per_strategy: dict[tuple[str, str], Decimal] = {}

    for ts_ns, (kind, payload) in enumerate(steps, start=1):
        if kind == "fill":
            assert isinstance(payload, OrderFilled)
            book.apply_fill(payload)
            signed = payload.side.sign * payload.last_quantity
            traded += signed * payload.last_price * MULTIPLIERS[payload.symbol]
            paid_fees += payload.fee
            model.fill(payload.symbol, Fraction(signed), Fraction(payload.last_price))
            key = (payload.strategy_id, payload.symbol)
            per_strategy[key] = per_strategy.get(key, D(0)) + signed
        elif kind == "mark":
            assert isinstance(payload, dict)
            book.mark(payload, ts_ns=ts_ns)
        else:
            assert isinstance(payload, list)
            close = np.array(payload, dtype=np.float64)
            book.mark_batch(
                BarBatch(
                    ts_ns=ts_ns, symbols=SYMBOLS, open=close, high=close, low=close, close=close, volume=close
                )
            )
        assert_books_balance(book, traded, paid_fees)

    assert abs(Fraction(book.realized_pnl) - model.realized) < Fraction(1, 10**12)
    snapshot = book.snapshot(ts_ns=len(steps) + 1)
    assert snapshot.equity == book.equity
    assert snapshot.buying_power >= 0
    assert snapshot.market_value == sum(
        (
            quantity * snapshot.prices[symbol] * MULTIPLIERS[symbol]
            for symbol, quantity in snapshot.positions.items()
        ),
        D(0),
    )
    assert snapshot.positions == {s: q for s, q in model_positions(model).items() if q}
    assert snapshot.strategy_positions == {k: q for k, q in per_strategy.items() if q}


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps, margin=st.booleans())
def test_books_balance_exactly_after_any_sequence_of_fills_and_marks(
    steps: list[tuple[str, object]], margin: bool
) -> None:
    run_and_check(steps, margin)


@settings(max_examples=2000, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), length=st.integers(min_value=1, max_value=80))
def test_books_balance_exactly_over_long_random_sequences(seed: int, length: int) -> None:
    # Hypothesis draws only the seed and the length, so thousands of long sequences stay fast.
    run_and_check(random_steps(random.Random(seed), length), margin=seed % 2 == 0)


def random_steps(rng: random.Random, length: int) -> list[tuple[str, object]]:
    """Return ``length`` steps: fills (60 %), exact/float marks and batches with NaN gaps."""

    def price() -> Decimal:
        return D(rng.randint(1, 5_000_0000)).scaleb(-4)

    result: list[tuple[str, object]] = []
    for _ in range(length):
        roll = rng.random()
        if roll < 0.6:
            symbol = rng.choice(SYMBOLS)
            fractional = symbol != CALL and rng.random() < 0.3
            quantity = D(rng.randint(1, 2_000_000)).scaleb(-3) if fractional else D(rng.randint(1, 2_000))
            result.append(
                (
                    "fill",
                    OrderFilled(
                        client_order_id=ClientOrderId("c"),
                        venue_order_id=VenueOrderId("v"),
                        trade_id=TradeId("t"),
                        strategy_id=StrategyId(rng.choice(("alpha", "beta"))),
                        symbol=symbol,
                        side=rng.choice((OrderSide.BUY, OrderSide.SELL)),
                        last_quantity=quantity,
                        last_price=price(),
                        fee=D(rng.randint(0, 2_000)).scaleb(-2),
                        liquidity=LiquiditySide.TAKER,
                        ts_ns=0,
                    ),
                )
            )
        elif roll < 0.8:
            marks: dict[str, Decimal | float] = {}
            for symbol in rng.sample(SYMBOLS, rng.randint(1, len(SYMBOLS))):
                mark = price()
                marks[symbol] = float(mark) if rng.random() < 0.5 else mark
            result.append(("mark", marks))
        else:
            closes = [float(price()) if rng.random() < 0.7 else float("nan") for _ in SYMBOLS]
            result.append(("batch", closes))
    return result


def model_positions(model: AverageCostModel) -> dict[str, Decimal]:
    return {
        symbol: D(quantity.numerator) / D(quantity.denominator) for symbol, quantity in model.quantity.items()
    }
