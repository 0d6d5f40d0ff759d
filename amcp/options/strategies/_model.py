"""Types of the strategy catalog: declarative specs, strike selectors and concrete positions.

A :class:`StrategySpec` says what a strategy *is* — its legs relative to named strike slots
(``"K1" < "K2" < …``), the near or far expiry of each leg, signed ratios, a stock leg in shares —
without naming a contract. :func:`amcp.options.strategies.builder.build` resolves a spec against
an :class:`~amcp.options.chain.OptionChain` into a :class:`StrategyPosition`, whose legs are
listed contracts with signed quantities and premiums; the analytics work on positions only.

Sign conventions: a positive quantity is long (bought), a negative one short (sold); premiums
are non-negative prices per unit of underlying; money amounts are in the underlying's currency
for the whole position (quantity × multiplier applied).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

from amcp.domain.enums import OptionRight, OrderSide, PositionIntent
from amcp.domain.messages import OrderLeg
from amcp.errors import AmcpError

__all__ = [
    "AtDelta",
    "AtStrike",
    "AtmOffset",
    "AtmSteps",
    "ExpirySlot",
    "FromStrike",
    "OptionLeg",
    "OptionLegSpec",
    "StockLeg",
    "StrategyError",
    "StrategyPosition",
    "StrategySpec",
    "StrikeSelector",
    "WidthRule",
]

ExpirySlot = Literal["near", "far"]
Outlook = Literal["bullish", "bearish", "neutral", "volatile", "directional"]


class StrategyError(AmcpError):
    """A strategy spec, its parameters or the chain it is built from are inconsistent."""


# ---------------------------------------------------------------------- strike selectors


@dataclass(frozen=True, slots=True)
class AtStrike:
    """Select the listed strike equal to ``strike`` (it must be listed)."""

    strike: float


@dataclass(frozen=True, slots=True)
class AtDelta:
    """Select the listed strike whose BSM delta is closest to ``delta``.

    A positive ``delta`` is a call delta (0 < delta < 1), a negative one a put delta
    (-1 < delta < 0); the delta is computed with the chain's vendor IV of that contract, or the
    builder's ``vol`` where given or where the vendor gives none.
    """

    delta: float

    def __post_init__(self) -> None:
        if not (0.0 < abs(self.delta) < 1.0):
            raise StrategyError(f"AtDelta: delta must be in (-1, 0) or (0, 1), got {self.delta!r}")


@dataclass(frozen=True, slots=True)
class AtmSteps:
    """Select the listed strike ``steps`` strikes above (below if negative) the ATM strike.

    The ATM strike is the listed strike nearest the spot (the lower on a tie).
    """

    steps: int


@dataclass(frozen=True, slots=True)
class AtmOffset:
    """Select the listed strike nearest ``ATM strike + offset`` (``offset`` in price units)."""

    offset: float


@dataclass(frozen=True, slots=True)
class FromStrike:
    """Select the listed strike nearest ``(strike of slot) + width`` — a width from another slot."""

    slot: str
    width: float


StrikeSelector = AtStrike | AtDelta | AtmSteps | AtmOffset | FromStrike


# ---------------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class OptionLegSpec:
    """One option leg of a spec: ``ratio`` contracts (signed) of ``right`` at slot ``strike``."""

    right: OptionRight
    ratio: int
    strike: str
    expiry: ExpirySlot = "near"


@dataclass(frozen=True, slots=True)
class WidthRule:
    """A rule between two strike widths: ``width(first) <relation> ratio × width(second)``.

    ``width((a, b))`` is ``strike(b) - strike(a)``. Butterflies require equal wings
    (``relation="equal"``, ``ratio=1``); a call broken-wing butterfly a wider upper wing
    (``width(K1, K2) less width(K2, K3)``).
    """

    first: tuple[str, str]
    second: tuple[str, str]
    relation: Literal["equal", "less", "greater"] = "equal"
    ratio: float = 1.0

    def holds(self, strikes: dict[str, float]) -> bool:
        """Whether the rule holds for the resolved ``strikes`` (slot → strike)."""
        first = strikes[self.first[1]] - strikes[self.first[0]]
        second = self.ratio * (strikes[self.second[1]] - strikes[self.second[0]])
        if self.relation == "equal":
            return math.isclose(first, second, rel_tol=1e-9, abs_tol=1e-9)
        return first < second if self.relation == "less" else first > second

    def describe(self) -> str:
        """The rule in words, for error messages."""
        ratio = "" if self.ratio == 1.0 else f"{self.ratio:g} × "
        return f"{self.first[1]}-{self.first[0]} {self.relation} {ratio}{self.second[1]}-{self.second[0]}"


@dataclass(frozen=True, slots=True)
class StrategySpec:
    """A named strategy: its legs relative to strike slots and expiries, and default strikes.

    Args:
        name: the catalog key, snake_case (``"bull_call_spread"``).
        title: the display name (``"Bull Call Spread"``).
        lean_name: QuantConnect LEAN's ``OptionStrategyDefinitions`` name where LEAN has the
            strategy, else None.
        outlook: the market view the strategy expresses.
        legs: the option legs; a leg's ``ratio`` is contracts per strategy unit.
        stock_shares: signed shares of the underlying per strategy unit (0 for none).
        default_strikes: slot → selector used when the builder is given no selector for it.
        width_rules: rules between strike widths (slots are always strictly ascending:
            ``K1 < K2 < K3 < K4``).
        description: one sentence on the structure.

    Raises:
        StrategyError: if the spec is malformed (no legs, a zero ratio, a slot without default).
    """

    name: str
    title: str
    lean_name: str | None
    outlook: Outlook
    legs: tuple[OptionLegSpec, ...]
    stock_shares: int = 0
    default_strikes: dict[str, StrikeSelector] = field(default_factory=dict, hash=False)
    width_rules: tuple[WidthRule, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.legs:
            raise StrategyError(f"strategy {self.name}: needs at least one option leg")
        for leg in self.legs:
            if leg.ratio == 0:
                raise StrategyError(f"strategy {self.name}: leg {leg} has a zero ratio")
        missing = [slot for slot in self.slots if slot not in self.default_strikes]
        if missing:
            raise StrategyError(f"strategy {self.name}: slots {missing} have no default strike selector")

    @property
    def slots(self) -> tuple[str, ...]:
        """The strike slots the legs use, ascending by name (``K1``, ``K2``, …)."""
        return tuple(sorted({leg.strike for leg in self.legs}))

    @property
    def multi_expiry(self) -> bool:
        """Whether the legs use both the near and the far expiry."""
        return len({leg.expiry for leg in self.legs}) > 1


# ---------------------------------------------------------------------- positions


@dataclass(frozen=True, slots=True)
class OptionLeg:
    """A concrete option leg: a listed contract, a signed quantity and its premium.

    Attributes:
        symbol: the OCC symbol.
        right: call or put.
        strike: the strike (price units).
        expiry: the expiry date.
        t_years: years from the position's ``as_of`` to the expiry close.
        quantity: signed contracts (positive long, negative short).
        premium: the price per unit of underlying paid (long) or received (short), >= 0.
        vol: the volatility used to value the leg before expiry (the contract's implied vol).
    """

    symbol: str
    right: OptionRight
    strike: float
    expiry: date
    t_years: float
    quantity: int
    premium: float
    vol: float

    @property
    def is_call(self) -> bool:
        """True for a call."""
        return self.right is OptionRight.CALL


@dataclass(frozen=True, slots=True)
class StockLeg:
    """Shares of the underlying (signed) bought or sold at ``price``."""

    symbol: str
    shares: int
    price: float


@dataclass(frozen=True, slots=True)
class StrategyPosition:
    """A strategy resolved to contracts: what the analytics, the margin and orders work on.

    Args:
        spec: the strategy it realises.
        underlying: the underlying's symbol.
        as_of: the time the premiums and ``t_years`` refer to (timezone-aware).
        spot: the underlying's price at ``as_of``.
        rate: the risk-free rate (continuous, annual).
        div_yield: the continuous dividend yield (annual).
        multiplier: units of underlying per contract.
        units: how many strategy units the legs hold (leg quantities are ratio × units).
        option_legs: the option legs, in the spec's leg order.
        stock: the stock leg, or None.
        strikes: the resolved strike of each slot.

    Raises:
        StrategyError: if the position has no legs or a premium or price is negative.
    """

    spec: StrategySpec
    underlying: str
    as_of: datetime
    spot: float
    rate: float
    div_yield: float
    multiplier: float
    units: int
    option_legs: tuple[OptionLeg, ...]
    stock: StockLeg | None
    strikes: dict[str, float] = field(hash=False)

    def __post_init__(self) -> None:
        if not self.option_legs:
            raise StrategyError(f"position {self.spec.name}: has no option legs")
        for leg in self.option_legs:
            if not (math.isfinite(leg.premium) and leg.premium >= 0.0):
                raise StrategyError(
                    f"position {self.spec.name}: leg {leg.symbol} premium must be a "
                    f"finite number >= 0, got {leg.premium!r}"
                )
        if self.stock is not None and not (math.isfinite(self.stock.price) and self.stock.price > 0):
            raise StrategyError(
                f"position {self.spec.name}: stock price must be > 0, got {self.stock.price!r}"
            )

    @property
    def name(self) -> str:
        """The strategy's catalog name."""
        return self.spec.name

    @property
    def shares(self) -> int:
        """Signed shares of the stock leg (0 without one)."""
        return 0 if self.stock is None else self.stock.shares

    @property
    def net_premium(self) -> float:
        """Option premium paid for the whole position: positive a net debit, negative a credit."""
        return sum(leg.quantity * leg.premium for leg in self.option_legs) * self.multiplier

    @property
    def cost(self) -> float:
        """Cash paid to open the position: ``net_premium`` plus the stock bought (or minus sold)."""
        stock = 0.0 if self.stock is None else self.stock.shares * self.stock.price
        return self.net_premium + stock

    @property
    def expiries(self) -> tuple[date, ...]:
        """The distinct expiries of the option legs, ascending."""
        return tuple(sorted({leg.expiry for leg in self.option_legs}))

    def order_legs(self) -> tuple[OrderLeg, ...]:
        """The option legs as the legs of one multi-leg opening order, ratios reduced.

        Each leg's ``ratio_quantity`` is ``|quantity| / g`` with ``g`` the greatest common divisor
        of the leg quantities (the order's quantity is then ``g``); sides follow the signs and
        every intent opens. A stock leg is not part of a multi-leg option order: it trades as a
        separate equity order of :attr:`shares`.
        """
        divisor = math.gcd(*(abs(leg.quantity) for leg in self.option_legs))
        return tuple(
            OrderLeg(
                symbol=leg.symbol,
                side=OrderSide.BUY if leg.quantity > 0 else OrderSide.SELL,
                ratio_quantity=abs(leg.quantity) // divisor,
                position_intent=(
                    PositionIntent.BUY_TO_OPEN if leg.quantity > 0 else PositionIntent.SELL_TO_OPEN
                ),
            )
            for leg in self.option_legs
        )
