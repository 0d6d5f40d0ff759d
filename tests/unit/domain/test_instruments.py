"""Instruments: OCC symbols parse and format, ticks and lots follow the rules."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from amcp.domain import Equity, OptionContract, OptionRight, instrument_for
from amcp.errors import DomainError


@pytest.mark.parametrize(
    ("symbol", "root", "expiry", "right", "strike"),
    [
        ("AAPL240119C00190000", "AAPL", date(2024, 1, 19), OptionRight.CALL, Decimal(190)),
        ("AAPL  240119C00190000", "AAPL", date(2024, 1, 19), OptionRight.CALL, Decimal(190)),
        ("SPY251219P00412500", "SPY", date(2025, 12, 19), OptionRight.PUT, Decimal("412.5")),
        ("BRKB260116C00000500", "BRKB", date(2026, 1, 16), OptionRight.CALL, Decimal("0.5")),
        ("VXX161216C00030000", "VXX", date(2016, 12, 16), OptionRight.CALL, Decimal(30)),
    ],
)
def test_occ_symbol_parses_and_formats_back(symbol: str, root: str, expiry: date, right: OptionRight, strike: Decimal) -> None:
    contract = OptionContract.from_occ(symbol)
    assert (contract.underlying, contract.expiry, contract.right, contract.strike) == (root, expiry, right, strike)
    assert contract.occ_symbol == symbol.replace(" ", "")
    assert contract.multiplier == 100


@pytest.mark.parametrize("bad", ["AAPL", "AAPL240119X00190000", "AAPL241319C00190000", "AAPL240230C00190000", "TOOLONGX240119C00190000", "", "AAPL240119C0019000"])
def test_bad_occ_symbol_is_refused_with_the_symbol(bad: str) -> None:
    with pytest.raises(DomainError, match="OCC"):
        OptionContract.from_occ(bad)


def test_instrument_for_tells_options_from_equities() -> None:
    assert isinstance(instrument_for("AAPL240119C00190000"), OptionContract)
    assert isinstance(instrument_for("BRK.B"), Equity)
    with pytest.raises(DomainError):
        instrument_for("not a symbol")


def test_equity_ticks_follow_rule_612() -> None:
    stock = Equity("XYZ")
    assert stock.tick_size(Decimal("1.00")) == Decimal("0.01")
    assert stock.tick_size(Decimal("0.9999")) == Decimal("0.0001")
    assert stock.is_valid_price(Decimal("10.05"))
    assert not stock.is_valid_price(Decimal("10.055"))
    assert stock.is_valid_price(Decimal("0.5123"))
    assert stock.round_price("10.057", "down") == Decimal("10.05")
    assert stock.round_price("10.051", "up") == Decimal("10.06")


def test_equity_lots_whole_unless_fractionable() -> None:
    assert Equity("XYZ").is_valid_quantity(Decimal(3))
    assert not Equity("XYZ").is_valid_quantity(Decimal("0.5"))
    assert Equity("XYZ", fractionable=True).is_valid_quantity(Decimal("0.5"))
    assert Equity("XYZ").round_quantity("7.9") == Decimal(7)


def test_option_ticks_penny_program() -> None:
    option = OptionContract.from_occ("AAPL240119C00190000")
    assert option.tick_size(Decimal("2.99")) == Decimal("0.01")
    assert option.tick_size(Decimal("3.00")) == Decimal("0.05")
    assert not option.is_valid_price(Decimal("3.01"))


@pytest.mark.parametrize("bad", ["aapl", "", "A" * 11, "1ABC"])
def test_bad_equity_symbol_is_refused(bad: str) -> None:
    with pytest.raises(DomainError, match="equity symbol"):
        Equity(bad)
