"""Alpaca's fee schedule for US equities and options, in exact decimals.

Equities (commission-free):

- ``commission_per_order_usd`` on the first fill of an order (default 0);
- sells only: SEC fee ``= ceil_cent(notional × sec_fee_per_million_usd / 1e6)`` and FINRA TAF
  ``= min(ceil_cent(shares × finra_taf_per_share_usd), finra_taf_max_usd)``.

Options (``OptionContract``, notional = price × contracts × multiplier):

- ``commission_per_order_usd`` on the first fill of an order;
- both sides: ``ceil_cent(contracts × option_fee_per_contract_usd)`` (ORF + OCC);
- sells only: ``ceil_cent(contracts × option_taf_per_contract_usd)`` and the SEC fee on notional.

Every component is rounded up to the cent separately; the total is in USD, to the cent.
"""

from __future__ import annotations

from decimal import Decimal

from amcp.config import FeeConfig
from amcp.domain.enums import AssetClass, OrderSide
from amcp.domain.instruments import Instrument
from amcp.domain.objects import CENT, round_to_increment

_ZERO = Decimal(0)
_SELL, _US_OPTION = OrderSide.SELL, AssetClass.US_OPTION
_MILLION = Decimal(1_000_000)
_ZERO_CENTS = Decimal("0.00")
_NEGATIVE_ZERO_CENTS = Decimal("-0.00")


def ceil_cent(amount: Decimal) -> Decimal:
    """Round a USD amount up to the next whole cent."""
    if not amount:  # the common zero fee: what rounding gives, sign of zero included
        return _NEGATIVE_ZERO_CENTS if amount.is_signed() else _ZERO_CENTS
    return round_to_increment(amount, CENT, "up")


class AlpacaFeeModel(FeeConfig):
    """A :class:`FeeConfig` that also computes the fee of one fill."""

    @classmethod
    def from_config(cls, config: FeeConfig) -> AlpacaFeeModel:
        """Build the model from a plain :class:`FeeConfig`."""
        return cls(**config.model_dump())

    def fee(
        self,
        instrument: Instrument,
        side: OrderSide,
        quantity: Decimal,
        price: Decimal,
        first_fill_of_order: bool,
    ) -> Decimal:
        """Return the fees of one fill in USD, rounded to the cent.

        Args:
            instrument: equity or option contract traded.
            side: buys pay no SEC fee or TAF.
            quantity: shares or contracts in this fill.
            price: fill price per share or per contract (USD, before the multiplier).
            first_fill_of_order: whether this is the order's first fill (the per-order
                commission is charged once).
        """
        total = self.commission_per_order_usd if first_fill_of_order else _ZERO
        is_sell = side is _SELL
        if instrument.asset_class is _US_OPTION:
            total += ceil_cent(quantity * self.option_fee_per_contract_usd)
            if is_sell:
                total += ceil_cent(quantity * self.option_taf_per_contract_usd)
                notional = quantity * price * instrument.multiplier
                total += ceil_cent(notional * self.sec_fee_per_million_usd / _MILLION)
        elif is_sell:
            notional = quantity * price * instrument.multiplier
            total += ceil_cent(notional * self.sec_fee_per_million_usd / _MILLION)
            total += min(ceil_cent(quantity * self.finra_taf_per_share_usd), self.finra_taf_max_usd)
        return ceil_cent(total)
