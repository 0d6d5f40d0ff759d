"""Sizing: turn strategy intents into orders, as a pure function of explicit inputs.

``OrderIntent`` passes through unchanged as a ``SubmitOrder``. ``TargetWeight`` becomes the order
that moves the strategy from what it holds (plus what it has working) to its target::

    capital  = max(equity, 0) × capital_fraction[strategy] × (1 - cash_buffer_pct)
    target   = weight × capital / (price × multiplier), rounded toward zero to the lot
    current  = strategy position + signed pending quantity + orders emitted earlier in this call
    delta    = target - current
    skipped if delta is 0, or if |delta| × price × multiplier < min_trade_notional_usd and the
    target is not 0 (an exit to flat is never held back by the minimum)

Every order's id is ``derive_client_order_id(strategy, ts_ns, sequence, symbol)`` with
``sequence`` the running count of orders emitted for that strategy in this call, so the same
inputs always give the same orders, in intent order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from decimal import ROUND_DOWN, Decimal, getcontext, setcontext

from amcp.config import SizingConfig
from amcp.domain._fast_init import keyword_constructor
from amcp.domain.enums import OrderSide
from amcp.domain.identifiers import ClientOrderId, derive_client_order_id
from amcp.domain.instruments import Instrument
from amcp.domain.instruments import instrument_for as _default_instrument_for
from amcp.domain.messages import Intent, OrderIntent, SubmitOrder, TargetWeight
from amcp.domain.objects import to_decimal
from amcp.errors import DomainError, PortfolioError
from amcp.portfolio.ledger import LEDGER_CONTEXT
from amcp.portfolio.snapshot import PortfolioSnapshot

ZERO = Decimal(0)
ONE = Decimal(1)

SKIP_UNKNOWN_STRATEGY = "unknown_strategy"
SKIP_UNKNOWN_INSTRUMENT = "unknown_instrument"
SKIP_INVALID_WEIGHT = "invalid_weight"
SKIP_NO_PRICE = "no_price"
SKIP_AT_TARGET = "at_target"
SKIP_BELOW_MIN_NOTIONAL = "below_min_notional"
SKIP_UNKNOWN_INTENT = "unknown_intent"

# SubmitOrder(...) for the hot path: the same command, without the class-call overhead.
_new_submit_order = keyword_constructor(SubmitOrder)


class Sizer:
    """Sizes intents into ``SubmitOrder`` commands against a portfolio snapshot.

    Holds configuration (and a cache of instruments): :meth:`size` depends on nothing but its
    arguments.
    ``last_skipped`` lists, after each call, the intents that produced no order and why (one of
    the ``SKIP_*`` reason codes of this module, followed by the values involved).
    """

    def __init__(
        self,
        config: SizingConfig,
        capital_fractions: Mapping[str, float],
        instrument_for: Callable[[str], Instrument] = _default_instrument_for,
    ) -> None:
        """Build a sizer.

        Args:
            config: minimum trade notional and cash buffer.
            capital_fractions: fraction (0, 1] of equity each strategy id may deploy.
            instrument_for: symbol -> instrument (multiplier and lot size).

        Raises:
            PortfolioError: if a fraction is outside (0, 1] or the fractions sum to more than 1.
        """
        fractions: dict[str, Decimal] = {}
        for strategy_id, fraction in capital_fractions.items():
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
                raise PortfolioError(
                    f"capital fraction of {strategy_id!r} must be in (0, 1], got {fraction!r}"
                )
            fractions[str(strategy_id)] = Decimal(repr(float(fraction)))
        total = sum(fractions.values(), ZERO)
        if total > ONE + Decimal("1e-9"):
            raise PortfolioError(f"capital fractions sum to {total}, more than 1: {dict(capital_fractions)}")
        self._config = config
        self._fractions = fractions
        self._investable = ONE - Decimal(repr(float(config.cash_buffer_pct)))
        self._instrument_for = instrument_for
        self._instruments: dict[str, Instrument] = {}
        self._context = LEDGER_CONTEXT.copy()
        self.last_skipped: list[tuple[Intent, str]] = []

    def size(
        self,
        intents: Sequence[Intent],
        snapshot: PortfolioSnapshot,
        pending: Mapping[tuple[str, str], Decimal],
        ts_ns: int,
    ) -> list[SubmitOrder]:
        """Return the orders for ``intents``, in intent order.

        Args:
            intents: this cycle's intents, in the order the strategies emitted them.
            snapshot: the portfolio (equity, per-strategy positions, prices).
            pending: signed quantity of working orders per (strategy id, symbol) (buys > 0).
            ts_ns: decision time, UTC nanoseconds; stamped on the orders and in their ids.

        Returns:
            One ``SubmitOrder`` per intent that needs a trade. Skipped intents and their
            reasons are in ``last_skipped``.
        """
        orders: list[SubmitOrder] = []
        skipped: list[tuple[Intent, str]] = []
        sequences: dict[str, int] = {}
        emitted: dict[tuple[str, str], Decimal] = {}  # signed quantity ordered earlier in this call
        saved = getcontext()
        setcontext(self._context)  # like localcontext(LEDGER_CONTEXT), without a copy per call
        try:
            for intent in intents:
                if isinstance(intent, OrderIntent):
                    order = self._pass_through(intent, ts_ns, sequences)
                elif isinstance(intent, TargetWeight):
                    order_or_reason = self._rebalance(intent, snapshot, pending, emitted, ts_ns, sequences)
                    if isinstance(order_or_reason, str):
                        skipped.append((intent, order_or_reason))
                        continue
                    order = order_or_reason
                else:
                    skipped.append((intent, f"{SKIP_UNKNOWN_INTENT}: {type(intent).__name__}"))
                    continue
                key = (order.strategy_id, order.symbol)
                emitted[key] = emitted.get(key, ZERO) + order.side.sign * order.quantity
                orders.append(order)
        finally:
            setcontext(saved)
        self.last_skipped = skipped
        return orders

    def _pass_through(self, intent: OrderIntent, ts_ns: int, sequences: dict[str, int]) -> SubmitOrder:
        return _new_submit_order(
            client_order_id=self._next_id(intent.strategy_id, intent.symbol, ts_ns, sequences),
            strategy_id=intent.strategy_id,
            symbol=intent.symbol,
            side=intent.side,
            quantity=intent.quantity,
            order_type=intent.order_type,
            time_in_force=intent.time_in_force,
            limit_price=intent.limit_price,
            stop_price=intent.stop_price,
            trail_price=intent.trail_price,
            trail_percent=intent.trail_percent,
            reduce_only=intent.reduce_only,
            ts_ns=ts_ns,
            tag=intent.tag,
        )

    def _rebalance(
        self,
        intent: TargetWeight,
        snapshot: PortfolioSnapshot,
        pending: Mapping[tuple[str, str], Decimal],
        emitted: Mapping[tuple[str, str], Decimal],
        ts_ns: int,
        sequences: dict[str, int],
    ) -> SubmitOrder | str:
        """Return the order for one target weight, or the reason there is none."""
        strategy_id, symbol = intent.strategy_id, intent.symbol
        fraction = self._fractions.get(strategy_id)
        if fraction is None:
            return f"{SKIP_UNKNOWN_STRATEGY}: {strategy_id!s} has no capital fraction"
        weight = _weight(intent.weight)
        if weight is None:
            return f"{SKIP_INVALID_WEIGHT}: {intent.weight!r}"
        instrument = self._instrument(symbol)
        if instrument is None:
            return f"{SKIP_UNKNOWN_INSTRUMENT}: {symbol!r}"
        mark = snapshot.prices.get(symbol)
        try:
            price = None if mark is None else to_decimal(mark)
        except DomainError:
            price = None
        if price is None or price <= 0:
            return f"{SKIP_NO_PRICE}: {symbol!r} has no positive finite mark (got {mark})"

        unit_value = price * instrument.multiplier  # USD per share or contract
        capital = max(snapshot.equity, ZERO) * fraction * self._investable
        target = _toward_zero(weight * capital / unit_value, instrument.lot_size)
        key = (strategy_id, symbol)
        current = snapshot.strategy_positions.get(key, ZERO) + pending.get(key, ZERO) + emitted.get(key, ZERO)
        delta = target - current
        if target and delta % instrument.lot_size:
            # Current holds an odd lot (a fractional fill): trade whole lots toward the target.
            delta = _toward_zero(delta, instrument.lot_size)
        if not delta:
            return f"{SKIP_AT_TARGET}: target {target}, current {current}"
        notional = abs(delta) * unit_value
        if target and notional < self._config.min_trade_notional_usd:
            return (
                f"{SKIP_BELOW_MIN_NOTIONAL}: {abs(delta)} × {unit_value} = {notional} USD "
                f"< {self._config.min_trade_notional_usd}"
            )
        return _new_submit_order(
            client_order_id=self._next_id(strategy_id, symbol, ts_ns, sequences),
            strategy_id=strategy_id,
            symbol=symbol,
            side=OrderSide.BUY if delta > 0 else OrderSide.SELL,
            quantity=abs(delta),
            ts_ns=ts_ns,
            tag=intent.tag,
        )

    def _instrument(self, symbol: str) -> Instrument | None:
        instrument = self._instruments.get(symbol)
        if instrument is None:
            try:
                instrument = self._instrument_for(symbol)
            except DomainError:
                return None
            self._instruments[symbol] = instrument
        return instrument

    @staticmethod
    def _next_id(strategy_id: str, symbol: str, ts_ns: int, sequences: dict[str, int]) -> ClientOrderId:
        sequence = sequences.get(strategy_id, 0)
        sequences[strategy_id] = sequence + 1
        return derive_client_order_id(strategy_id, ts_ns, sequence, symbol)


def _toward_zero(quantity: Decimal, lot: Decimal) -> Decimal:
    """Round ``quantity`` toward zero to a multiple of ``lot``."""
    return (quantity / lot).to_integral_value(rounding=ROUND_DOWN) * lot


def _weight(value: object) -> Decimal | None:
    """Return a finite weight as Decimal (floats via their shortest repr), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return Decimal(repr(float(value))) if isinstance(value, float) else Decimal(value)
    return None
