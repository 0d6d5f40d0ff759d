"""Reg-T strategy-based initial margin of a :class:`StrategyPosition` (CBOE margin rules).

The rules, for equity options on a stock (CBOE Margin Manual, Reg-T initial requirements), with
``S`` the underlying price, ``K`` the strike, ``m`` the multiplier and ``p`` the option's current
value (the leg's premium):

* **Long options** are paid in full: no requirement beyond the premium.
* **Stock** is margined at 50 % of its value, long or short (a short sale deposits 150 %
  including the proceeds). Long stock **covers** short calls and short stock covers short puts,
  one contract per ``m`` shares; a covered short option needs no margin (the lowest strikes are
  covered first).
* **Naked short call**: ``(max(20 %·S − OTM, 10 %·S) + p)·m`` with ``OTM = max(K − S, 0)``.
  **Naked short put**: ``(max(20 %·S − OTM, 10 %·K) + p)·m`` with ``OTM = max(S − K, 0)``.
* **Spreads**: a short option is hedged by a long one of the same right expiring no earlier.
  The requirement of the hedged legs is their maximum loss at expiry from intrinsic values
  alone, ``max(0, −min_S Σ q·m·intrinsic(S))`` — the strike width of a credit vertical, the
  larger width of an iron condor or iron butterfly, 0 for debit spreads and long butterflies,
  ``max(0, K_long − K_short)·m`` for a call diagonal. Where more shorts than longs (or longs
  expiring too early), every choice of which shorts stay naked is tried and the cheapest kept
  (a 1×2 ratio spread is one vertical and one naked option).
* **Both sides** (calls and puts): when either side has a naked short (straddles, strangles,
  jade lizards, seagulls), the requirement is the greater side's plus the current value of the
  other side's naked shorts; otherwise the hedged legs of both sides are margined together by
  their joint maximum intrinsic loss (iron condor: the larger width; short box: the width).

``buying_power`` is the requirement plus the net option premium (a credit reduces it: proceeds
may be applied), i.e. the cash the position ties up.

Simplified or left out: broad-based index options (15 % instead of 20 %), long options with
more than nine months to expiry (75 % loan value), portfolio margin, maintenance margin,
house rules and the special box-spread rule. In a cash account a short put must be cash-secured
instead: :func:`cash_secured_put_collateral` gives that cash (strike × multiplier less the
premium received, per contract).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from itertools import combinations

import numpy as np

from amcp.domain.enums import OptionRight
from amcp.options.strategies._model import OptionLeg, StrategyError, StrategyPosition

__all__ = ["MarginRequirement", "cash_secured_put_collateral", "reg_t_margin"]

_NAKED_RATE = 0.20
_NAKED_MINIMUM = 0.10
_STOCK_RATE = 0.50


@dataclass(frozen=True, slots=True)
class MarginRequirement:
    """A position's Reg-T initial requirement (money, the whole position).

    Attributes:
        requirement: stock plus option requirement.
        option_requirement: the options' requirement (spreads and naked shorts).
        stock_requirement: 50 % of the stock leg's value.
        buying_power: the requirement plus the net option premium (debit +, credit −).
        naked: the OCC symbols of the short legs margined as naked (repeated per contract unit).
        covered: the OCC symbols of the short legs covered by the stock.
    """

    requirement: float
    option_requirement: float
    stock_requirement: float
    buying_power: float
    naked: tuple[str, ...]
    covered: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Unit:
    """One contract of a leg, per strategy unit."""

    leg: OptionLeg
    long: bool

    @property
    def strike(self) -> float:
        return self.leg.strike

    @property
    def expiry(self) -> date:
        return self.leg.expiry


@dataclass(frozen=True, slots=True)
class _Side:
    """The cheapest margin of one right's legs."""

    requirement: float
    naked: tuple[_Unit, ...]
    hedged: tuple[_Unit, ...]  # shorts hedged and the longs that may hedge them


def reg_t_margin(position: StrategyPosition) -> MarginRequirement:
    """Return the Reg-T strategy-based initial requirement of ``position`` (see the module docstring)."""
    multiplier, spot, units = position.multiplier, position.spot, position.units
    stock_requirement = (
        0.0 if position.stock is None else _STOCK_RATE * abs(position.stock.shares) * position.stock.price
    )
    per_unit_shares = position.shares // units
    cover = {
        True: max(per_unit_shares, 0) // int(multiplier),
        False: max(-per_unit_shares, 0) // int(multiplier),
    }
    contracts: list[_Unit] = []
    for leg in position.option_legs:
        contracts += [_Unit(leg, leg.quantity > 0)] * (abs(leg.quantity) // units)
    covered: list[_Unit] = []
    for is_call in (True, False):
        shorts = sorted(
            (c for c in contracts if not c.long and c.leg.is_call == is_call),
            key=lambda c: c.strike,
            reverse=not is_call,
        )  # the riskiest first: lowest call, highest put strikes
        covered += shorts[: cover[is_call]]
    remaining = list(contracts)
    for unit in covered:
        remaining.remove(unit)
    sides = {
        is_call: _cheapest_side([c for c in remaining if c.leg.is_call == is_call], spot, multiplier)
        for is_call in (True, False)
    }
    if not sides[True].naked and not sides[False].naked:
        option_requirement = _hedged_loss(sides[True].hedged + sides[False].hedged, multiplier)
    else:
        greater = max((True, False), key=lambda side: sides[side].requirement)
        other_premium = sum(unit.leg.premium for unit in sides[not greater].naked) * multiplier
        option_requirement = sides[greater].requirement + other_premium
    option_requirement *= units
    requirement = option_requirement + stock_requirement
    return MarginRequirement(
        requirement=requirement,
        option_requirement=option_requirement,
        stock_requirement=stock_requirement,
        buying_power=requirement + position.net_premium,
        naked=tuple(unit.leg.symbol for side in sides.values() for unit in side.naked) * units,
        covered=tuple(unit.leg.symbol for unit in covered) * units,
    )


def _naked_requirement(unit: _Unit, spot: float, multiplier: float) -> float:
    leg = unit.leg
    if leg.is_call:
        base = max(_NAKED_RATE * spot - max(leg.strike - spot, 0.0), _NAKED_MINIMUM * spot)
    else:
        base = max(_NAKED_RATE * spot - max(spot - leg.strike, 0.0), _NAKED_MINIMUM * leg.strike)
    return (base + leg.premium) * multiplier


def _hedged_loss(units: tuple[_Unit, ...], multiplier: float) -> float:
    """The maximum intrinsic loss of ``units`` treated as expiring together (0 for none)."""
    if not units:
        return 0.0
    strikes = np.array([u.strike for u in units])
    signs = np.array([1.0 if u.long else -1.0 for u in units])
    calls = np.array([u.leg.is_call for u in units])
    nodes = np.concatenate([[0.0], np.unique(strikes)])
    intrinsic = np.where(
        calls, np.maximum(nodes[:, None] - strikes, 0.0), np.maximum(strikes - nodes[:, None], 0.0)
    )
    worst = float((intrinsic * signs).sum(axis=1).min())
    upper_slope = float(signs[calls].sum()) if calls.any() else 0.0
    if upper_slope < 0:  # more short calls than long: only reachable with a naked call
        return math.inf
    return max(0.0, -worst) * multiplier


def _matchable(shorts: list[_Unit], longs: list[_Unit]) -> bool:
    """Whether each short can take its own long expiring no earlier (latest shorts first)."""
    if len(shorts) > len(longs):
        return False
    short_expiries = sorted((s.expiry for s in shorts), reverse=True)
    long_expiries = sorted((lg.expiry for lg in longs), reverse=True)
    return all(lg >= sh for sh, lg in zip(short_expiries, long_expiries, strict=False))


def _cheapest_side(units: list[_Unit], spot: float, multiplier: float) -> _Side:
    shorts = [u for u in units if not u.long]
    longs = [u for u in units if u.long]
    best = _Side(math.inf, (), ())
    tried: set[tuple[int, ...]] = set()
    for count in range(max(0, len(shorts) - len(longs)), len(shorts) + 1):
        for naked_indices in combinations(range(len(shorts)), count):
            key = tuple(sorted(id(shorts[i].leg) for i in naked_indices))
            if key in tried:
                continue
            tried.add(key)
            naked = tuple(shorts[i] for i in naked_indices)
            hedged_shorts = [s for i, s in enumerate(shorts) if i not in naked_indices]
            if not _matchable(hedged_shorts, longs):
                continue
            latest = max((s.expiry for s in hedged_shorts), default=None)
            eligible = [lg for lg in longs if latest is None or lg.expiry >= latest]
            hedged = tuple(hedged_shorts + eligible)
            cost = _hedged_loss(hedged, multiplier) + sum(
                _naked_requirement(u, spot, multiplier) for u in naked
            )
            if cost < best.requirement:
                best = _Side(cost, naked, hedged)
    return best


def cash_secured_put_collateral(position: StrategyPosition) -> float:
    """The cash a cash account must hold for a position of short puts only (a cash-secured put):
    ``Σ |q| · K · m`` less the premium received, ``Σ |q| · p · m``.

    Raises:
        StrategyError: if the position holds anything but short puts (stock, calls or long puts).
    """
    legs = position.option_legs
    if position.stock is not None or not legs or any(
            leg.right is not OptionRight.PUT or leg.quantity >= 0 for leg in legs):
        raise StrategyError(
            f"{position.spec.name}: only a position of short puts is cash-secured; it holds "
            f"{', '.join(f'{leg.quantity:+d} {leg.symbol}' for leg in legs) or 'no options'}"
            f"{' and stock' if position.stock is not None else ''}"
        )
    m = position.multiplier
    return sum(-leg.quantity * (leg.strike - leg.premium) * m for leg in legs)
