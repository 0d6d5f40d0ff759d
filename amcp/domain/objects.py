"""Value types for prices, quantities and money.

Accounting is exact: every value here is a :class:`decimal.Decimal` underneath. ``Price`` and
``Quantity`` are ``Decimal`` subclasses (so they compose with plain ``Decimal`` arithmetic and
keep their precision in the exponent); construction validates. ``Money`` pairs an amount with
its currency and rounds to cents only where asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Decimal
from typing import Literal

from amcp.errors import DomainError

CENT = Decimal("0.01")
ZERO = Decimal(0)

RoundingMode = Literal["nearest", "down", "up"]
_ROUNDING = {"nearest": ROUND_HALF_EVEN, "down": ROUND_FLOOR, "up": ROUND_CEILING}


def to_decimal(value: Decimal | int | float | str) -> Decimal:
    """Convert a number to ``Decimal`` exactly as it prints (floats via their shortest repr).

    Raises:
        DomainError: if the value is not a finite number.
    """
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, bool):
        raise DomainError(f"expected a number, got the boolean {value!r}")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise DomainError(f"expected a finite number, got {value!r}")
        result = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except ArithmeticError as exc:
            raise DomainError(f"expected a decimal number, got {value!r}") from exc
    else:
        raise DomainError(f"expected a number, got {type(value).__name__} {value!r}")
    if not result.is_finite():
        raise DomainError(f"expected a finite number, got {value!r}")
    return result


def round_to_increment(value: Decimal, increment: Decimal, mode: RoundingMode = "nearest") -> Decimal:
    """Round ``value`` to a multiple of ``increment`` (e.g. a tick or lot size).

    Raises:
        DomainError: if ``increment`` is not positive.
    """
    if increment <= 0:
        raise DomainError(f"increment must be positive, got {increment}")
    steps = (value / increment).to_integral_value(rounding=_ROUNDING[mode])
    return (steps * increment).quantize(increment)


def is_multiple_of(value: Decimal, increment: Decimal) -> bool:
    """Return whether ``value`` is an exact multiple of ``increment``."""
    return increment > 0 and (value % increment) == 0


class Price(Decimal):
    """A finite price in the quote currency (may be negative only for spreads, see ``allow_negative``)."""

    __slots__ = ()

    def __new__(cls, value: Decimal | int | float | str = 0) -> Price:
        return super().__new__(cls, to_decimal(value))

    def __repr__(self) -> str:
        return f"Price('{self}')"


class Quantity(Decimal):
    """A non-negative finite quantity of shares or contracts."""

    __slots__ = ()

    def __new__(cls, value: Decimal | int | float | str = 0) -> Quantity:
        number = to_decimal(value)
        if number < 0:
            raise DomainError(f"quantity must not be negative, got {value!r}")
        return super().__new__(cls, number)

    def __repr__(self) -> str:
        return f"Quantity('{self}')"


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of one currency."""

    amount: Decimal
    currency: str = "USD"

    def __post_init__(self) -> None:
        object.__setattr__(self, "amount", to_decimal(self.amount))
        if len(self.currency) != 3 or not self.currency.isalpha():
            raise DomainError(f"currency must be a 3-letter code, got {self.currency!r}")

    def _same(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise DomainError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise DomainError(f"cannot combine {self.currency} with {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def cents(self, mode: RoundingMode = "nearest") -> Money:
        """Return this amount rounded to whole cents."""
        return Money(round_to_increment(self.amount, CENT, mode), self.currency)

    def __str__(self) -> str:
        return f"{self.amount:,.2f} {self.currency}"
