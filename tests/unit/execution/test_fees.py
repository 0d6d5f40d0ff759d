"""Alpaca fee schedule: SEC fee and FINRA TAF on equity sells, per-contract option fees."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from amcp.config import FeeConfig
from amcp.domain import Equity, OptionContract, OrderSide, instrument_for
from amcp.domain.enums import OptionRight
from amcp.execution.fees import AlpacaFeeModel, ceil_cent

D = Decimal
AAPL = Equity("AAPL")
CALL = OptionContract("AAPL", date(2024, 1, 19), OptionRight.CALL, D("190"))


@pytest.fixture
def fees() -> AlpacaFeeModel:
    return AlpacaFeeModel()


def test_equity_buy_pays_nothing(fees: AlpacaFeeModel) -> None:
    # Arrange / Act
    fee = fees.fee(AAPL, OrderSide.BUY, D(1000), D("250.00"), first_fill_of_order=True)

    # Assert
    assert fee == D("0.00")


def test_equity_sell_pays_sec_fee_and_taf_each_rounded_up_to_the_cent(fees: AlpacaFeeModel) -> None:
    # Arrange: notional 10,000 -> SEC 0.278 -> 0.28; TAF 100 × 0.000166 = 0.0166 -> 0.02
    # Act
    fee = fees.fee(AAPL, OrderSide.SELL, D(100), D("100.00"), first_fill_of_order=True)

    # Assert
    assert fee == D("0.30")


def test_sec_fee_rounds_a_tiny_amount_up_to_one_cent(fees: AlpacaFeeModel) -> None:
    # Arrange: 1 share at $1: SEC 0.0000278 -> 0.01, TAF 0.000166 -> 0.01
    # Act
    fee = fees.fee(AAPL, OrderSide.SELL, D(1), D("1.00"), first_fill_of_order=False)

    # Assert
    assert fee == D("0.02")


def test_finra_taf_is_capped_per_trade(fees: AlpacaFeeModel) -> None:
    # Arrange: 100,000 shares: TAF 16.60 capped at 8.30; SEC on 100,000 notional = 2.78
    # Act
    fee = fees.fee(AAPL, OrderSide.SELL, D(100_000), D("1.00"), first_fill_of_order=True)

    # Assert
    assert fee == D("11.08")


def test_commission_is_charged_on_the_first_fill_only() -> None:
    # Arrange
    fees = AlpacaFeeModel(commission_per_order_usd=D("1.00"))

    # Act
    first = fees.fee(AAPL, OrderSide.BUY, D(10), D("50.00"), first_fill_of_order=True)
    later = fees.fee(AAPL, OrderSide.BUY, D(10), D("50.00"), first_fill_of_order=False)

    # Assert
    assert (first, later) == (D("1.00"), D("0.00"))


def test_option_buy_pays_the_per_contract_fee_rounded_up(fees: AlpacaFeeModel) -> None:
    # Arrange: 3 × 0.04685 = 0.14055 -> 0.15
    # Act
    fee = fees.fee(CALL, OrderSide.BUY, D(3), D("2.50"), first_fill_of_order=True)

    # Assert
    assert fee == D("0.15")


def test_option_sell_adds_taf_per_contract_and_sec_fee_on_multiplied_notional(fees: AlpacaFeeModel) -> None:
    # Arrange: fee 0.15; TAF 3 × 0.00279 = 0.00837 -> 0.01; SEC 2.50 × 3 × 100 = 750 -> 0.02085 -> 0.03
    # Act
    fee = fees.fee(CALL, OrderSide.SELL, D(3), D("2.50"), first_fill_of_order=True)

    # Assert
    assert fee == D("0.19")


def test_option_from_occ_symbol_uses_the_100_multiplier(fees: AlpacaFeeModel) -> None:
    # Arrange
    contract = instrument_for("AAPL240119C00190000")

    # Act
    fee = fees.fee(contract, OrderSide.SELL, D(3), D("2.50"), first_fill_of_order=True)

    # Assert
    assert fee == D("0.19")


def test_fee_is_quantized_to_cents(fees: AlpacaFeeModel) -> None:
    # Act
    fee = fees.fee(AAPL, OrderSide.SELL, D("0.5"), D("3.1234"), first_fill_of_order=True)

    # Assert
    assert fee.as_tuple().exponent == -2


def test_from_config_copies_every_rate() -> None:
    # Arrange
    config = FeeConfig(sec_fee_per_million_usd=D("10"), finra_taf_max_usd=D("5"))

    # Act
    model = AlpacaFeeModel.from_config(config)

    # Assert
    assert model.model_dump() == config.model_dump()


def test_ceil_cent_rounds_up_and_keeps_whole_cents() -> None:
    assert ceil_cent(D("0.001")) == D("0.01")
    assert ceil_cent(D("0.10")) == D("0.10")
    assert ceil_cent(D("0")) == D("0.00")
