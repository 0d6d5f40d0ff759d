"""Property: whatever orders arrive, accepting them never takes worst-case gross exposure past the limit."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from amcp.domain import OrderSide, SubmitOrder

from ._builders import NOW_NS, SECOND_NS, context, engine, order, snapshot

PRICES = {"AAPL": Decimal(100), "MSFT": Decimal("250.5"), "SPY": Decimal(40)}
SYMBOLS = sorted(PRICES)

orders = st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(list(OrderSide)), st.integers(1, 60))
batches = st.lists(st.lists(orders, max_size=8), min_size=1, max_size=6)
positions = st.fixed_dictionaries({symbol: st.integers(-40, 40) for symbol in SYMBOLS})


def worst_case_gross(positions: dict[str, int], working: list[SubmitOrder]) -> Decimal:
    """Largest gross exposure any subset of fills of ``working`` can leave, by brute reasoning per symbol.

    Symbols are independent and, within one, the position after any subset of fills lies between
    filling every sell and filling every buy, so the extremes bound it.
    """
    total = Decimal(0)
    for symbol in SYMBOLS:
        buys = sum(
            (o.quantity for o in working if o.symbol == symbol and o.side is OrderSide.BUY), Decimal(0)
        )
        sells = sum(
            (o.quantity for o in working if o.symbol == symbol and o.side is OrderSide.SELL), Decimal(0)
        )
        position = Decimal(positions[symbol])
        total += max(abs(position + buys), abs(position - sells)) * PRICES[symbol]
    return total


@settings(max_examples=150, deadline=None)
@given(positions=positions, limit=st.integers(500, 30_000), batches=batches)
def test_accepted_orders_never_take_gross_exposure_past_the_limit(
    positions: dict[str, int], limit: int, batches: list[list[tuple[str, OrderSide, int]]]
) -> None:
    # Arrange: a fixed snapshot; every other limit out of the way.
    gross = sum(abs(Decimal(q)) * PRICES[s] for s, q in positions.items())
    portfolio = snapshot(
        prices=PRICES,
        positions={s: q for s, q in positions.items() if q},
        gross_exposure=gross,
        buying_power=10**12,
    )
    risk = engine(
        max_gross_exposure_usd=Decimal(limit),
        max_order_notional_usd=Decimal(10**12),
        max_position_notional_usd=Decimal(10**12),
        duplicate_intent_window_s=0.0,
        throttle_max_orders=10**6,
    )
    ceiling = max(Decimal(limit), gross)
    working: list[SubmitOrder] = []

    for step, batch in enumerate(batches):
        commands = [order(symbol, side, quantity) for symbol, side, quantity in batch]
        ctx = context(portfolio, ts_ns=NOW_NS + step * SECOND_NS, open_orders=tuple(working))

        # Act
        accepted, denied = risk.check(commands, ctx)

        # Assert: every command answered once; the worst case after each accept stays in bounds.
        assert len(accepted) + len(denied) == len(commands)
        for command in accepted:
            working.append(command)
            assert worst_case_gross(positions, working) <= ceiling
