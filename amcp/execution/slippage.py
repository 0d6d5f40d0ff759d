"""Adverse price slippage for market and triggered-stop fills.

Models (``SlippageConfig.model``):

- ``none``: the raw price.
- ``fixed_bps``: impact fraction ``f = bps / 10_000``.
- ``square_root``: ``f = impact_coefficient × ((high − low) / close) × sqrt(fill_qty / bar_volume)``,
  the bar's range standing in for its volatility.

A buy pays ``price × (1 + f)`` rounded **up** to the instrument tick; a sell receives
``price × (1 − f)`` rounded **down** (never below one tick). When ``f`` is zero the raw price
comes back unrounded. Limit fills never go through this module: a limit fill is never worse
than its limit.
"""

from __future__ import annotations

from decimal import Decimal

from amcp.config import SlippageConfig
from amcp.domain.enums import OrderSide
from amcp.domain.instruments import Instrument
from amcp.domain.objects import to_decimal

_ZERO = Decimal(0)
_ONE = Decimal(1)
_BPS = Decimal(10_000)


class SlippageModel:
    """Apply the configured slippage to a fill price.

    Args:
        config: which model and its parameters.
    """

    def __init__(self, config: SlippageConfig) -> None:
        self._model = config.model
        self._fixed_fraction = to_decimal(config.bps) / _BPS
        self._coefficient = to_decimal(config.impact_coefficient)

    @property
    def is_zero(self) -> bool:
        """Whether every fill keeps its raw price (model ``none``, or ``fixed_bps`` of 0 bps)."""
        return self._model == "none" or (self._model == "fixed_bps" and not self._fixed_fraction)

    def impact_fraction(
        self, quantity: Decimal, high: Decimal, low: Decimal, close: Decimal, volume: Decimal
    ) -> Decimal:
        """Return the adverse price move as a fraction of the price (0.0001 = 1 bp).

        Args:
            quantity: quantity of this fill (shares or contracts).
            high: bar high (USD).
            low: bar low (USD).
            close: bar close (USD).
            volume: bar volume (shares or contracts).
        """
        if self._model == "fixed_bps":
            return self._fixed_fraction
        if self._model == "square_root":
            if close <= 0 or volume <= 0 or quantity <= 0 or high <= low:
                return _ZERO
            return self._coefficient * ((high - low) / close) * (quantity / volume).sqrt()
        return _ZERO

    def apply(
        self,
        instrument: Instrument,
        side: OrderSide,
        price: Decimal,
        quantity: Decimal,
        high: Decimal,
        low: Decimal,
        close: Decimal,
        volume: Decimal,
    ) -> Decimal:
        """Return ``price`` moved against the trader and rounded to the tick (USD).

        Args:
            instrument: the traded instrument (its tick rounds the result).
            side: buy pays more, sell receives less.
            price: the raw fill price (USD).
            quantity: quantity of this fill.
            high: bar high (USD), used by ``square_root``.
            low: bar low (USD), used by ``square_root``.
            close: bar close (USD), used by ``square_root``.
            volume: bar volume, used by ``square_root``.
        """
        fraction = self.impact_fraction(quantity, high, low, close, volume)
        return slipped_price(instrument, side, price, fraction)


def slipped_price(instrument: Instrument, side: OrderSide, price: Decimal, fraction: Decimal) -> Decimal:
    """Move ``price`` by ``fraction`` against ``side`` and round to the tick away from the trader.

    Returns:
        ``price`` itself when ``fraction`` is zero; otherwise a buy's price rounded up, or a
        sell's rounded down and floored at one tick so it stays positive.
    """
    if fraction <= 0:
        return price
    if side is OrderSide.BUY:
        return instrument.round_price(price * (_ONE + fraction), "up")
    floor = instrument.tick_size(_ZERO)
    return max(instrument.round_price(price * (_ONE - fraction), "down"), floor)
