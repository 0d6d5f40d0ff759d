"""Greek exposure limits of the risk engine: net delta, gamma and vega per underlying.

Each limit of :class:`~amcp.config.RiskConfig` is optional (None: off); with none set the engine
builds no :class:`GreekLimits` and an order pays one attribute test. Units, per underlying, with
the per-contract greeks of :class:`OptionGreeks` (per unit of underlying, as
:func:`amcp.options.black_scholes.bsm_greeks` gives them):

- ``max_net_delta_per_underlying``: shares-equivalent, ``Σ contracts × multiplier × delta`` plus
  the shares of the underlying held (a share's delta is 1).
- ``max_net_gamma_per_underlying``: shares-equivalent per 1.00 move of the underlying,
  ``Σ contracts × multiplier × gamma`` (how far the net delta moves).
- ``max_net_vega_usd_per_underlying``: USD per 1.00 of volatility (100 vol points),
  ``Σ contracts × multiplier × vega``; divide by 100 for USD per vol point.

Contracts are signed (long positive). An option's underlying is its OCC root; stock positions and
orders count under their own symbol (a root that differs from its stock's ticker is its own
underlying).

What is checked: every option order (simple, or ``mleg`` with all its legs), as the engine's last
check, after the throttle check (which consumes nothing). Equity orders are not checked (their
size is bounded by the position limits), but equity positions, working equity orders and equity
orders accepted earlier in the call count toward the delta.

Exposure after the order, worst case: the current exposure comes from ``ctx.portfolio.positions``
and ``ctx.option_greeks``. Every working order (``ctx.open_orders`` at its full quantity, and the
orders accepted earlier in the call) may fill or not, independently of the others — an mleg order
all at once, a simple order in any part — so, per greek, the exposure lies between
``current + Σ negative working contributions`` and ``current + Σ positive ones``, and this order's
contribution ``c = Σ legs contracts × multiplier × greek`` shifts both ends. The order is denied
with GREEK_LIMIT when the larger absolute end after it exceeds the limit *and* is larger than it
was before the order: an order that narrows the worst case (one that brings the exposure towards
zero) passes even while the book is over the limit. A working order's filled part is in the
positions and still counted in the order (conservative, as for the other limits).

NO_GREEKS: a leg of the order, an option position on one of its underlyings, or an option leg of a
working order on one of them has no entry in ``ctx.option_greeks``, or a non-finite value for a
limited greek. Every option leg changes the exposure, so a closing order is no exception.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from amcp.domain.enums import DenyReason, OrderClass
from amcp.domain.instruments import OptionContract
from amcp.domain.messages import SubmitOrder
from amcp.errors import RiskError
from amcp.portfolio.snapshot import PortfolioSnapshot
from amcp.risk._listings import Listings
from amcp.risk.checks import SIDE_SIGN, enum_text

if TYPE_CHECKING:
    from amcp.config import RiskConfig

__all__ = ["NO_GREEKS", "GreekLimits", "OptionGreeks"]

_MLEG: Final = OrderClass.MLEG
#: (greek, RiskConfig field, unit) of each limit.
_LIMITS: Final = (
    ("delta", "max_net_delta_per_underlying", "shares-equivalent"),
    ("gamma", "max_net_gamma_per_underlying", "shares-equivalent per 1.00 of the underlying"),
    ("vega", "max_net_vega_usd_per_underlying", "USD per 1.00 of volatility"),
)


@dataclass(frozen=True, slots=True)
class OptionGreeks:
    """The greeks of one option contract per unit of underlying (not per contract).

    Attributes:
        delta: ∂V/∂S, e.g. 0.52 for a call near the money, negative for a put.
        gamma: ∂²V/∂S², per 1.00 of the underlying.
        vega: ∂V/∂σ, per 1.00 of volatility (divide by 100 for per vol point).
    """

    delta: float
    gamma: float
    vega: float


class _NoGreeks(Mapping[str, OptionGreeks]):
    """An empty, immutable, hashable and picklable mapping: the default ``option_greeks`` of a
    :class:`~amcp.risk.engine.RiskContext`, shared by every context (no allocation per context)."""

    __slots__ = ()

    def __getitem__(self, symbol: str) -> OptionGreeks:
        raise KeyError(symbol)

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return "{}"


#: The default of ``RiskContext.option_greeks``: no greeks.
NO_GREEKS: Final[Mapping[str, OptionGreeks]] = _NoGreeks()


class _Exposure:
    """One underlying's exposure per limited greek: current, and what working orders can add."""

    __slots__ = ("current", "down", "missing", "up")

    def __init__(self, size: int) -> None:
        self.current = [0.0] * size
        self.up = [0.0] * size  # Σ of the positive contributions of working orders
        self.down = [0.0] * size  # Σ of the negative ones
        self.missing: str | None = None  # why the exposure cannot be computed

    def copy(self) -> _Exposure:
        exposure = _Exposure.__new__(_Exposure)
        exposure.current, exposure.up, exposure.down = self.current, self.up[:], self.down[:]
        exposure.missing = self.missing
        return exposure

    def add_working(self, contribution: Sequence[float]) -> None:
        for index, value in enumerate(contribution):
            if value > 0:
                self.up[index] += value
            else:
                self.down[index] += value


# (underlying, contribution per limited greek or None, problem when None)
_Leg = tuple[str, list[float] | None, str]


class GreekLimits:
    """The greek limits of one engine: the checks, and the fold of positions and working orders.

    :meth:`start` begins each ``check`` call. The fold of positions and working orders is computed
    on the call's first order and reused while calls pass the same portfolio snapshot,
    ``option_greeks`` mapping and working-order objects; orders accepted in a call are added to a
    per-call copy.

    Args:
        limits: (greek, config field, unit, limit) of each limit that is set.
        listings: the engine's instrument lookups.
    """

    __slots__ = ("_call", "_fold", "_folded_from", "_limits", "_listings", "_portfolio",
                 "_greeks", "_open_orders")

    def __init__(self, limits: Sequence[tuple[str, str, str, float]], listings: Listings) -> None:
        self._limits = tuple(limits)
        self._listings = listings
        self._portfolio: PortfolioSnapshot | None = None
        self._greeks: Mapping[str, OptionGreeks] = {}
        self._open_orders: Sequence[SubmitOrder] = ()
        self._folded_from: tuple[PortfolioSnapshot, Mapping[str, OptionGreeks], tuple[SubmitOrder, ...]] | None = None
        self._fold: dict[str, _Exposure] = {}
        self._call: dict[str, _Exposure] | None = None

    @classmethod
    def from_config(cls, config: RiskConfig, listings: Listings) -> GreekLimits | None:
        """The limits ``config`` sets, or None when it sets none."""
        limits = [(greek, name, unit, float(getattr(config, name))) for greek, name, unit in _LIMITS
                  if getattr(config, name) is not None]
        return cls(limits, listings) if limits else None

    def start(
        self,
        portfolio: PortfolioSnapshot,
        option_greeks: Mapping[str, OptionGreeks],
        open_orders: Sequence[SubmitOrder],
    ) -> None:
        """Begin a ``check`` call: forget the previous call's accepted orders, note its inputs."""
        self._portfolio, self._greeks, self._open_orders = portfolio, option_greeks, open_orders
        self._call = None

    def check(self, command: SubmitOrder) -> tuple[DenyReason, str] | None:
        """Check ``command`` against the limits; when it passes, count it as working for the call.

        The engine calls this last, for an order that passed every other check (module docstring).

        Returns:
            ``None`` to accept, else GREEK_LIMIT or NO_GREEKS and a message naming the values.
        """
        if command.order_class is _MLEG:
            is_option = True
        else:
            listing = self._listings[command.symbol]
            is_option = not isinstance(listing, str) and isinstance(listing[0], OptionContract)
        contributions: dict[str, list[float]] = {}
        for underlying, contribution, problem in self._legs(command):
            if contribution is None:
                if is_option:
                    return DenyReason.NO_GREEKS, (
                        f"{_describe(command)}: {problem}, so its greek exposure cannot be checked"
                    )
                continue
            total = contributions.setdefault(underlying, [0.0] * len(self._limits))
            for index, value in enumerate(contribution):
                total[index] += value
        book = self._book()
        if is_option:
            for underlying, change in contributions.items():
                verdict = self._verdict(command, underlying, change, book.get(underlying))
                if verdict is not None:
                    return verdict
        for underlying, change in contributions.items():
            exposure = book.get(underlying)
            exposure = _Exposure(len(self._limits)) if exposure is None else exposure.copy()
            exposure.add_working(change)
            book[underlying] = exposure
        return None

    # ------------------------------------------------------------------ internals

    def _verdict(
        self, command: SubmitOrder, underlying: str, change: Sequence[float], exposure: _Exposure | None
    ) -> tuple[DenyReason, str] | None:
        if exposure is not None and exposure.missing is not None:
            return DenyReason.NO_GREEKS, (
                f"{_describe(command)}: the exposure of {underlying} cannot be computed: {exposure.missing}"
            )
        for index, (greek, name, unit, limit) in enumerate(self._limits):
            value = change[index]
            if exposure is None:
                current = up = down = 0.0
            else:
                current, up, down = exposure.current[index], exposure.up[index], exposure.down[index]
            low, high = current + down, current + up
            before = max(abs(low), abs(high))
            after = max(abs(low + value), abs(high + value))
            if after > limit and after > before:
                return DenyReason.GREEK_LIMIT, (
                    f"{_describe(command)} would take the net {greek} of {underlying} to {_number(after)} "
                    f"{unit} in the worst case (positions {_number(current)}, working orders "
                    f"{_number(down)} to +{_number(up)}, this order {_number(value)}); {name} {_number(limit)}"
                )
        return None

    def _book(self) -> dict[str, _Exposure]:
        """The call's exposures: the fold of positions and working orders, plus the call's accepts."""
        if self._call is not None:
            return self._call
        portfolio, greeks, open_orders = self._portfolio, self._greeks, self._open_orders
        if portfolio is None:
            raise RiskError("GreekLimits.check was called before start")
        folded = self._folded_from
        if not (
            folded is not None and folded[0] is portfolio and folded[1] is greeks
            and len(folded[2]) == len(open_orders) and all(map(operator.is_, folded[2], open_orders))
        ):
            self._fold = self._fold_book(portfolio, open_orders)
            self._folded_from = (portfolio, greeks, tuple(open_orders))
        self._call = dict(self._fold)  # exposures are copied before a call changes them
        return self._call

    def _fold_book(self, portfolio: PortfolioSnapshot, open_orders: Sequence[SubmitOrder]) -> dict[str, _Exposure]:
        """Fold the positions and the working orders into exposures per underlying."""
        size = len(self._limits)
        fold: dict[str, _Exposure] = {}
        for symbol, quantity in portfolio.positions.items():
            if not quantity:
                continue
            leg = self._leg(symbol, float(quantity))
            if leg is None:
                continue
            underlying, contribution, problem = leg
            exposure = fold.get(underlying)
            if exposure is None:
                exposure = fold[underlying] = _Exposure(size)
            if contribution is None:
                exposure.missing = exposure.missing or f"position {quantity} {problem}"
                continue
            for index, value in enumerate(contribution):
                exposure.current[index] += value
        for order in open_orders:
            quantity = order.quantity
            if not isinstance(quantity, Decimal) or not quantity.is_finite() or quantity <= 0:
                continue  # cannot fill, adds nothing
            per_underlying: dict[str, list[float]] = {}
            for underlying, contribution, problem in self._legs(order):
                exposure = fold.get(underlying)
                if exposure is None:
                    exposure = fold[underlying] = _Exposure(size)
                if contribution is None:
                    exposure.missing = exposure.missing or f"working order {order.client_order_id}: {problem}"
                    continue
                total = per_underlying.setdefault(underlying, [0.0] * size)
                for index, value in enumerate(contribution):
                    total[index] += value
            for underlying, total in per_underlying.items():
                fold[underlying].add_working(total)
        return fold

    def _legs(self, order: SubmitOrder) -> Iterator[_Leg]:
        """Each leg's underlying and contribution (or problem); unknown symbols are skipped."""
        if order.order_class is _MLEG:
            units = float(order.quantity)
            for leg in order.legs:
                sign = SIDE_SIGN.get(leg.side)
                if sign is not None:
                    found = self._leg(leg.symbol, sign * units * leg.ratio_quantity)
                    if found is not None:
                        yield found
            return
        sign = SIDE_SIGN.get(order.side)
        if sign is not None:
            found = self._leg(order.symbol, sign * float(order.quantity))
            if found is not None:
                yield found

    def _leg(self, symbol: str, contracts: float) -> _Leg | None:
        """The contribution of ``contracts`` (signed) of ``symbol`` to its underlying's exposure."""
        listing = self._listings[symbol]
        if isinstance(listing, str):
            return None
        instrument = listing[0]
        if not isinstance(instrument, OptionContract):
            return symbol, [contracts if greek == "delta" else 0.0 for greek, *_ in self._limits], ""
        found = self._greeks.get(symbol)
        if found is None:
            return instrument.underlying, None, f"{symbol} has no greeks in the risk context's option_greeks"
        size = contracts * float(instrument.multiplier)
        contribution = []
        for greek, *_ in self._limits:
            value = getattr(found, greek)
            if not isinstance(value, float | int) or not math.isfinite(value):
                return instrument.underlying, None, f"the {greek} of {symbol} is {value!r}"
            contribution.append(size * value)
        return instrument.underlying, contribution, ""


def _describe(command: SubmitOrder) -> str:
    if command.order_class is _MLEG:
        return f"mleg order {command.client_order_id} ({command.quantity} units on {command.symbol})"
    return f"order {command.client_order_id} ({enum_text(command.side)} {command.quantity} {command.symbol})"


def _number(value: float) -> str:
    return f"{value:,.6g}"
