"""Resolve a :class:`StrategySpec` into a concrete :class:`StrategyPosition`.

:func:`build` picks contracts from an :class:`~amcp.options.chain.OptionChain`: expiries by date
or by target days to expiry, strikes by explicit strike, by target BSM delta, by listed-strike
steps or a price offset from the ATM strike, or by a width from another slot; premiums are the
mids (or given prices). :func:`assemble` makes a position from explicit strikes and premiums,
without a chain (hand-entered trades, tests, what-if analysis).

A slot's candidate strikes are those listed for *every* (right, expiry) of the legs that use it,
so a straddle's slot only takes strikes where both the call and the put are listed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal

import numpy as np

from amcp._typing import FloatArray
from amcp.domain.enums import OptionRight
from amcp.domain.instruments import OptionContract
from amcp.errors import DomainError
from amcp.options.black_scholes import bsm_greeks
from amcp.options.chain import OptionChain, years_to_expiry
from amcp.options.strategies._model import (
    AtDelta,
    AtmOffset,
    AtmSteps,
    AtStrike,
    FromStrike,
    OptionLeg,
    OptionLegSpec,
    StockLeg,
    StrategyError,
    StrategyPosition,
    StrategySpec,
    StrikeSelector,
)
from amcp.options.strategies.catalog import get_spec

__all__ = ["assemble", "build", "resolve_expiry"]

ExpiryChoice = date | int


def resolve_expiry(chain: OptionChain, choice: ExpiryChoice, *, after: date | None = None) -> date:
    """Return the listed expiry ``choice`` names.

    Args:
        chain: the chain.
        choice: a listed expiry date, or target calendar days to expiry (the listed expiry
            nearest ``as_of`` + days; the earlier on a tie).
        after: when given, only expiries strictly after it are eligible.

    Raises:
        StrategyError: if the date is not listed or no expiry is eligible.
    """
    listed = [date.fromisoformat(str(day)) for day in chain.expiries]
    eligible = [day for day in listed if after is None or day > after]
    if not eligible:
        raise StrategyError(f"chain {chain.underlying}: no expiry after {after} (listed: {listed})")
    if isinstance(choice, date):
        if choice not in eligible:
            raise StrategyError(
                f"chain {chain.underlying}: expiry {choice} is not listed"
                + (f" after {after}" if after else "")
                + f" (listed: {eligible})"
            )
        return choice
    if isinstance(choice, bool) or not isinstance(choice, int) or choice < 0:
        raise StrategyError(f"expiry choice must be a date or days >= 0, got {choice!r}")
    today = chain.as_of.date()
    return min(eligible, key=lambda day: (abs((day - today).days - choice), day))


def build(
    strategy: str | StrategySpec,
    chain: OptionChain,
    *,
    strikes: Mapping[str, StrikeSelector | float] | None = None,
    near: ExpiryChoice = 30,
    far: ExpiryChoice = 60,
    vol: float | None = None,
    units: int = 1,
    premiums: Sequence[float] | None = None,
    stock_price: float | None = None,
) -> StrategyPosition:
    """Build a position of ``strategy`` from ``chain``.

    Args:
        strategy: a catalog name or a spec.
        chain: the option chain to pick contracts from.
        strikes: slot → selector (a bare number is :class:`AtStrike`); slots not given use the
            spec's defaults.
        near: the near expiry (a listed date, or target days to expiry).
        far: the far expiry of calendar and diagonal legs; it must come after ``near`` (as a
            number of days it resolves among the expiries after ``near``).
        vol: the volatility for delta selection and for valuing legs before expiry; None uses
            each contract's vendor IV.
        units: strategy units (leg quantities are ratio × units), >= 1.
        premiums: per leg (the spec's leg order), the price per unit of underlying; None uses
            the mids.
        stock_price: the stock leg's price; None uses the chain's spot.

    Returns:
        The position; each leg's ``vol`` is ``vol`` or the contract's vendor IV (NaN if neither).

    Raises:
        StrategyError: if a selector cannot be met, the resolved strikes break the spec's order
            or width rules, a premium is missing (no two-sided quote and none given), or
            ``vol``, ``units`` or ``premiums`` are invalid.
    """
    spec = get_spec(strategy) if isinstance(strategy, str) else strategy
    if type(units) is not int or units < 1:
        raise StrategyError(f"{spec.name}: units must be an int >= 1, got {units!r}")
    if vol is not None and not (math.isfinite(vol) and vol > 0):
        raise StrategyError(f"{spec.name}: vol must be a positive number, got {vol!r}")
    if premiums is not None and len(premiums) != len(spec.legs):
        raise StrategyError(f"{spec.name}: {len(premiums)} premiums given for {len(spec.legs)} legs")
    near_day = resolve_expiry(chain, near)
    far_day = resolve_expiry(chain, far, after=near_day) if spec.multi_expiry else near_day
    expiry_of = {"near": near_day, "far": far_day}
    selectors: dict[str, StrikeSelector] = dict(spec.default_strikes)
    for slot, selector in (strikes or {}).items():
        if slot not in spec.slots:
            raise StrategyError(f"{spec.name}: unknown strike slot {slot!r} (slots: {spec.slots})")
        selectors[slot] = AtStrike(float(selector)) if isinstance(selector, int | float) else selector
    resolved = _resolve_strikes(spec, chain, selectors, expiry_of, vol)
    _check_strikes(spec, resolved)

    legs = []
    for index, leg_spec in enumerate(spec.legs):
        row = _row(chain, leg_spec, resolved[leg_spec.strike], expiry_of[leg_spec.expiry])
        if premiums is not None:
            premium = float(premiums[index])
        else:
            premium = float(chain.mid[row])
            if not math.isfinite(premium):
                raise StrategyError(
                    f"{spec.name}: {chain.symbol[row]} has no two-sided quote "
                    f"(bid {chain.bid[row]}, ask {chain.ask[row]}); give premiums"
                )
        leg_vol = vol if vol is not None else float(chain.vendor_iv[row])
        legs.append(
            OptionLeg(
                symbol=str(chain.symbol[row]),
                right=leg_spec.right,
                strike=float(chain.strike[row]),
                expiry=expiry_of[leg_spec.expiry],
                t_years=float(chain.t_years[row]),
                quantity=leg_spec.ratio * units,
                premium=premium,
                vol=leg_vol,
            )
        )
    stock = None
    if spec.stock_shares:
        stock = StockLeg(
            symbol=chain.underlying,
            shares=spec.stock_shares * units,
            price=chain.spot if stock_price is None else float(stock_price),
        )
    return StrategyPosition(
        spec=spec,
        underlying=chain.underlying,
        as_of=chain.as_of,
        spot=chain.spot,
        rate=chain.rate,
        div_yield=chain.div_yield,
        multiplier=chain.multiplier,
        units=units,
        option_legs=tuple(legs),
        stock=stock,
        strikes=resolved,
    )


def assemble(
    strategy: str | StrategySpec,
    *,
    underlying: str,
    as_of: datetime,
    spot: float,
    strikes: Mapping[str, float],
    premiums: Sequence[float],
    near_expiry: date,
    far_expiry: date | None = None,
    rate: float = 0.0,
    div_yield: float = 0.0,
    vol: float = math.nan,
    multiplier: float = 100.0,
    units: int = 1,
    stock_price: float | None = None,
) -> StrategyPosition:
    """Make a position of ``strategy`` from explicit strikes and premiums (no chain).

    Args:
        strategy: a catalog name or a spec.
        underlying: the option root (1-6 upper-case characters), for the OCC symbols.
        as_of: the time of the premiums (timezone-aware).
        spot: the underlying's price at ``as_of``.
        strikes: slot → strike, for every slot of the spec.
        premiums: per leg (the spec's leg order), the price per unit of underlying.
        near_expiry: the near expiry.
        far_expiry: the far expiry, required by calendar and diagonal specs.
        rate, div_yield: continuous annual rates.
        vol: the volatility to value legs before expiry (NaN: none).
        multiplier: units of underlying per contract.
        units: strategy units, >= 1.
        stock_price: the stock leg's price; None uses ``spot``.

    Raises:
        StrategyError: if slots, premiums or expiries are missing or inconsistent with the spec.
    """
    spec = get_spec(strategy) if isinstance(strategy, str) else strategy
    if type(units) is not int or units < 1:
        raise StrategyError(f"{spec.name}: units must be an int >= 1, got {units!r}")
    missing = [slot for slot in spec.slots if slot not in strikes]
    if missing:
        raise StrategyError(f"{spec.name}: strikes missing for slots {missing}")
    if len(premiums) != len(spec.legs):
        raise StrategyError(f"{spec.name}: {len(premiums)} premiums given for {len(spec.legs)} legs")
    if spec.multi_expiry and (far_expiry is None or far_expiry <= near_expiry):
        raise StrategyError(f"{spec.name}: needs a far expiry after {near_expiry}, got {far_expiry}")
    resolved = {slot: float(strikes[slot]) for slot in spec.slots}
    _check_strikes(spec, resolved)
    expiry_of = {"near": near_expiry, "far": far_expiry or near_expiry}
    legs = []
    for leg_spec, premium in zip(spec.legs, premiums, strict=True):
        expiry = expiry_of[leg_spec.expiry]
        try:
            contract = OptionContract(
                underlying=underlying,
                expiry=expiry,
                right=leg_spec.right,
                strike=Decimal(repr(resolved[leg_spec.strike])),
            )
        except DomainError as exc:
            raise StrategyError(f"{spec.name}: {exc}") from exc
        legs.append(
            OptionLeg(
                symbol=contract.occ_symbol,
                right=leg_spec.right,
                strike=resolved[leg_spec.strike],
                expiry=expiry,
                t_years=years_to_expiry(as_of, expiry),
                quantity=leg_spec.ratio * units,
                premium=float(premium),
                vol=float(vol),
            )
        )
    stock = None
    if spec.stock_shares:
        stock = StockLeg(
            symbol=underlying,
            shares=spec.stock_shares * units,
            price=spot if stock_price is None else float(stock_price),
        )
    return StrategyPosition(
        spec=spec,
        underlying=underlying,
        as_of=as_of,
        spot=float(spot),
        rate=float(rate),
        div_yield=float(div_yield),
        multiplier=float(multiplier),
        units=units,
        option_legs=tuple(legs),
        stock=stock,
        strikes=resolved,
    )


# ---------------------------------------------------------------------- internals


def _check_strikes(spec: StrategySpec, strikes: Mapping[str, float]) -> None:
    ordered = [strikes[slot] for slot in spec.slots]
    if any(not (math.isfinite(k) and k > 0) for k in ordered):
        raise StrategyError(f"{spec.name}: strikes must be positive numbers, got {dict(strikes)}")
    if any(b <= a for a, b in itertools.pairwise(ordered)):
        raise StrategyError(f"{spec.name}: strikes must ascend {' < '.join(spec.slots)}, got {dict(strikes)}")
    for rule in spec.width_rules:
        if not rule.holds(dict(strikes)):
            raise StrategyError(f"{spec.name}: strikes {dict(strikes)} break the rule {rule.describe()}")


def _mask(chain: OptionChain, right: OptionRight, expiry: date) -> np.ndarray:
    return (chain.is_call == (right is OptionRight.CALL)) & (chain.expiry == np.datetime64(expiry, "D"))


def _row(chain: OptionChain, leg: OptionLegSpec, strike: float, expiry: date) -> int:
    rows = np.flatnonzero(_mask(chain, leg.right, expiry) & (chain.strike == strike))
    if rows.size == 0:
        raise StrategyError(
            f"chain {chain.underlying}: no {leg.right.value} at strike {strike:g} expiring {expiry}"
        )
    return int(rows[0])


def _candidates(
    chain: OptionChain, spec: StrategySpec, slot: str, expiry_of: Mapping[str, date]
) -> FloatArray:
    uses = {(leg.right, expiry_of[leg.expiry]) for leg in spec.legs if leg.strike == slot}
    common: FloatArray | None = None
    for right, expiry in uses:
        listed = chain.strike[_mask(chain, right, expiry)]
        common = listed if common is None else np.intersect1d(common, listed)
    if common is None or common.size == 0:
        raise StrategyError(
            f"{spec.name}: no strike of {chain.underlying} is listed for every leg of slot {slot} "
            f"({sorted((r.value, str(e)) for r, e in uses)})"
        )
    return np.unique(common)


def _nearest(candidates: FloatArray, target: float) -> float:
    return float(candidates[int(np.argmin(np.abs(candidates - target)))])


def _atm_index(candidates: FloatArray, spot: float) -> int:
    return int(np.argmin(np.abs(candidates - spot)))  # argmin takes the first: the lower on a tie


def _resolve_strikes(
    spec: StrategySpec,
    chain: OptionChain,
    selectors: Mapping[str, StrikeSelector],
    expiry_of: Mapping[str, date],
    vol: float | None,
) -> dict[str, float]:
    resolved: dict[str, float] = {}
    pending: dict[str, FromStrike] = {}
    for slot in spec.slots:
        selector = selectors[slot]
        if isinstance(selector, FromStrike):
            pending[slot] = selector
            continue
        candidates = _candidates(chain, spec, slot, expiry_of)
        if isinstance(selector, AtStrike):
            if not np.any(candidates == selector.strike):
                raise StrategyError(
                    f"{spec.name}: strike {selector.strike:g} for {slot} is not listed "
                    f"(listed: {candidates.tolist()})"
                )
            resolved[slot] = float(selector.strike)
        elif isinstance(selector, AtmSteps):
            index = _atm_index(candidates, chain.spot) + selector.steps
            if not 0 <= index < candidates.size:
                raise StrategyError(
                    f"{spec.name}: {slot} is {selector.steps} strikes from ATM, beyond the "
                    f"{candidates.size} listed strikes {candidates.tolist()}"
                )
            resolved[slot] = float(candidates[index])
        elif isinstance(selector, AtmOffset):
            atm = float(candidates[_atm_index(candidates, chain.spot)])
            resolved[slot] = _nearest(candidates, atm + selector.offset)
        else:
            resolved[slot] = _by_delta(spec, chain, slot, selector, candidates, expiry_of, vol)
    while pending:
        progressed = False
        for slot, width in list(pending.items()):
            if width.slot not in spec.slots:
                raise StrategyError(f"{spec.name}: {slot} is a width from unknown slot {width.slot!r}")
            if width.slot in resolved:
                candidates = _candidates(chain, spec, slot, expiry_of)
                resolved[slot] = _nearest(candidates, resolved[width.slot] + width.width)
                del pending[slot]
                progressed = True
        if not progressed:
            raise StrategyError(
                f"{spec.name}: width selectors of {sorted(pending)} refer to each other in a cycle"
            )
    return resolved


def _by_delta(
    spec: StrategySpec,
    chain: OptionChain,
    slot: str,
    selector: AtDelta,
    candidates: FloatArray,
    expiry_of: Mapping[str, date],
    vol: float | None,
) -> float:
    right = OptionRight.CALL if selector.delta > 0 else OptionRight.PUT
    legs = [leg for leg in spec.legs if leg.strike == slot]
    expiry = expiry_of[next((leg.expiry for leg in legs if leg.right is right), legs[0].expiry)]
    rows = np.flatnonzero(_mask(chain, right, expiry) & np.isin(chain.strike, candidates))
    if rows.size == 0:
        raise StrategyError(
            f"{spec.name}: no {right.value} of slot {slot} listed for {expiry} to measure delta"
        )
    vols = np.full(rows.size, vol) if vol is not None else chain.vendor_iv[rows]
    usable = np.isfinite(vols) & (vols > 0)
    if not usable.any():
        raise StrategyError(
            f"{spec.name}: no vendor IV for the {right.value}s of {expiry}; give vol to select "
            f"{slot} by delta"
        )
    rows, vols = rows[usable], vols[usable]
    deltas = bsm_greeks(
        chain.spot,
        chain.strike[rows],
        chain.t_years[rows],
        chain.rate,
        chain.div_yield,
        vols,
        right is OptionRight.CALL,
    )["delta"]
    return float(chain.strike[rows[int(np.argmin(np.abs(deltas - selector.delta)))]])
