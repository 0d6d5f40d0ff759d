"""Instruments: US equities and listed option contracts (OCC/OSI symbols).

Each instrument knows its price increment (tick) and quantity increment (lot), so order
validation and price rounding need nothing else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from amcp.domain.enums import AssetClass, OptionRight
from amcp.domain.objects import RoundingMode, is_multiple_of, round_to_increment, to_decimal
from amcp.errors import DomainError

_SYMBOL = re.compile(r"^[A-Z][A-Z0-9.\-]{0,9}$")
_OCC = re.compile(r"^(?P<root>[A-Z0-9.]{1,6}) *(?P<date>\d{6})(?P<right>[CP])(?P<strike>\d{8})$")

ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class Equity:
    """A US-listed stock or ETF.

    Ticks follow Reg NMS Rule 612: $0.01 at or above $1.00, $0.0001 below. Lots are one share,
    or ``fractional_increment`` when the asset is fractionable.
    """

    symbol: str
    fractionable: bool = False
    fractional_increment: Decimal = Decimal("0.000000001")
    asset_class: AssetClass = field(default=AssetClass.US_EQUITY, init=False)
    multiplier: Decimal = field(default=ONE, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.symbol, str) or not _SYMBOL.match(self.symbol):
            raise DomainError(f"equity symbol must be 1-10 upper-case characters, got {self.symbol!r}")

    @property
    def id(self) -> str:
        return self.symbol

    def tick_size(self, price: Decimal) -> Decimal:
        """Return the minimum price increment at ``price`` (USD)."""
        return Decimal("0.01") if abs(price) >= ONE else Decimal("0.0001")

    @property
    def lot_size(self) -> Decimal:
        return self.fractional_increment if self.fractionable else ONE

    def round_price(self, price: Decimal | float | str, mode: RoundingMode = "nearest") -> Decimal:
        value = to_decimal(price)
        return round_to_increment(value, self.tick_size(value), mode)

    def round_quantity(self, quantity: Decimal | float | str, mode: RoundingMode = "down") -> Decimal:
        return round_to_increment(to_decimal(quantity), self.lot_size, mode)

    def is_valid_price(self, price: Decimal) -> bool:
        return price > 0 and is_multiple_of(price, self.tick_size(price))

    def is_valid_quantity(self, quantity: Decimal) -> bool:
        return quantity > 0 and is_multiple_of(quantity, self.lot_size)


@dataclass(frozen=True, slots=True)
class OptionContract:
    """A listed US equity option.

    ``occ_symbol`` is the OCC/OSI symbol as Alpaca writes it (root not padded), e.g.
    ``AAPL240119C00190000``: root, expiry YYMMDD, C or P, strike × 1000 in eight digits.
    Ticks: $0.01 below $3.00 and $0.05 at or above for penny-program classes, else $0.05/$0.10.
    """

    underlying: str
    expiry: date
    right: OptionRight
    strike: Decimal
    multiplier: Decimal = Decimal(100)
    penny_program: bool = True
    asset_class: AssetClass = field(default=AssetClass.US_OPTION, init=False)

    def __post_init__(self) -> None:
        if not isinstance(self.underlying, str) or not re.match(r"^[A-Z0-9.]{1,6}$", self.underlying):
            raise DomainError(f"option root must be 1-6 upper-case characters, got {self.underlying!r}")
        strike = to_decimal(self.strike)
        if strike <= 0 or not is_multiple_of(strike, Decimal("0.001")) or strike >= Decimal(100000):
            raise DomainError(f"option strike must be in (0, 100000) with at most 3 decimals, got {self.strike}")
        object.__setattr__(self, "strike", strike)
        object.__setattr__(self, "right", OptionRight(self.right))

    @property
    def id(self) -> str:
        return self.occ_symbol

    @property
    def symbol(self) -> str:
        return self.occ_symbol

    @property
    def occ_symbol(self) -> str:
        strike_thousandths = int(self.strike * 1000)
        right = "C" if self.right is OptionRight.CALL else "P"
        return f"{self.underlying}{self.expiry:%y%m%d}{right}{strike_thousandths:08d}"

    @classmethod
    def from_occ(cls, symbol: str, multiplier: Decimal = Decimal(100)) -> OptionContract:
        """Parse an OCC/OSI symbol, padded (``AAPL  240119C00190000``) or not.

        Raises:
            DomainError: if the symbol is not a valid OCC symbol or its date does not exist.
        """
        match = _OCC.match(symbol.strip().upper()) if isinstance(symbol, str) else None
        if match is None:
            raise DomainError(
                f"not an OCC option symbol: {symbol!r} (expected ROOT + YYMMDD + C/P + 8-digit strike×1000)"
            )
        digits = match["date"]
        try:
            expiry = date(2000 + int(digits[:2]), int(digits[2:4]), int(digits[4:]))
        except ValueError as exc:
            raise DomainError(f"OCC symbol {symbol!r} has an impossible expiry date {digits}") from exc
        return cls(
            underlying=match["root"],
            expiry=expiry,
            right=OptionRight.CALL if match["right"] == "C" else OptionRight.PUT,
            strike=Decimal(int(match["strike"])) / 1000,
            multiplier=multiplier,
        )

    def tick_size(self, price: Decimal) -> Decimal:
        if self.penny_program:
            return Decimal("0.01") if abs(price) < 3 else Decimal("0.05")
        return Decimal("0.05") if abs(price) < 3 else Decimal("0.10")

    @property
    def lot_size(self) -> Decimal:
        return ONE

    def round_price(self, price: Decimal | float | str, mode: RoundingMode = "nearest") -> Decimal:
        value = to_decimal(price)
        return round_to_increment(value, self.tick_size(value), mode)

    def round_quantity(self, quantity: Decimal | float | str, mode: RoundingMode = "down") -> Decimal:
        return round_to_increment(to_decimal(quantity), ONE, mode)

    def is_valid_price(self, price: Decimal) -> bool:
        return price > 0 and is_multiple_of(price, self.tick_size(price))

    def is_valid_quantity(self, quantity: Decimal) -> bool:
        return quantity > 0 and is_multiple_of(quantity, ONE)


Instrument = Equity | OptionContract


def instrument_for(symbol: str) -> Instrument:
    """Build the instrument a symbol names: an OCC option symbol or an equity ticker.

    Raises:
        DomainError: if the symbol is neither.
    """
    text = symbol.strip().upper() if isinstance(symbol, str) else symbol
    if isinstance(text, str) and _OCC.match(text):
        return OptionContract.from_occ(text)
    return Equity(text)
