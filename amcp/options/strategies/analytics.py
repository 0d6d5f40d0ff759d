"""Analytics of a :class:`StrategyPosition`: P&L profiles, breakevens, bounds, PoP and greeks.

P&L of the whole position (money, quantity × multiplier applied) when the underlying is at ``S``::

    P&L(S) = Σ_legs q·m·(V_leg(S) − premium) + shares·(S − stock price)

with ``V_leg`` the option's value: its intrinsic value ``max(±(S − K), 0)`` once expired, else
its Black-Scholes-Merton value with the leg's (or a given) volatility and its remaining time.
Premium financing is not discounted (the usual expiry-diagram convention).

"At expiry" means at the close of the *first* expiry. With one expiry the P&L there is piecewise
linear in ``S`` with kinks at the strikes, so breakevens are exact roots of its linear pieces and
the bounds are exact: the extremes over ``S = 0`` and the strikes, "unlimited" when the slope
beyond the highest strike (``Σ_calls q·m + shares``) is non-zero. With two expiries (calendars,
diagonals) the later legs keep BSM time value: breakevens are bisected sign changes on a price
grid, bounds are grid extremes (exact at the strikes, where the maximum of a calendar lies) and
the slope for ``S → ∞`` is the exact limit ``Σ_live calls q·m·e^(−qτ) + Σ_expired calls q·m +
shares``. (With a dividend yield a calendar's loss is therefore unbounded in the European model.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import numpy.typing as npt

from amcp._typing import FloatArray
from amcp.options.black_scholes import GREEKS, bsm_greeks, bsm_price, norm_cdf
from amcp.options.strategies._model import StrategyError, StrategyPosition

__all__ = [
    "ProfitBounds",
    "breakevens",
    "net_greeks",
    "pnl",
    "pnl_at_expiry",
    "price_grid",
    "probability_of_profit",
    "profit_bounds",
]

_SECONDS_PER_YEAR = 365.0 * 86_400.0
_GRID_POINTS = 4001
_BISECTIONS = 80


@dataclass(frozen=True, slots=True)
class ProfitBounds:
    """The best and worst P&L at expiry over all prices of the underlying.

    Attributes:
        max_profit: the highest P&L (``inf`` when unlimited).
        max_loss: the lowest P&L, a signed amount (negative for a loss; ``-inf`` when unlimited).
        profit_unlimited: whether the P&L grows without bound as the price rises.
        loss_unlimited: whether the P&L falls without bound as the price rises.
    """

    max_profit: float
    max_loss: float
    profit_unlimited: bool
    loss_unlimited: bool


# ---------------------------------------------------------------------- valuation


def _elapsed_years(position: StrategyPosition, at: datetime | None) -> float:
    if at is None:
        return 0.0
    if at.tzinfo is None:
        raise StrategyError(f"valuation time must be timezone-aware, got {at!r}")
    elapsed = (at - position.as_of).total_seconds() / _SECONDS_PER_YEAR
    if elapsed < 0:
        raise StrategyError(f"valuation time {at} is before the position's as_of {position.as_of}")
    return elapsed


def _first_expiry_years(position: StrategyPosition) -> float:
    return min(leg.t_years for leg in position.option_legs)


def _leg_vol(position: StrategyPosition, index: int, vol: float | None) -> float:
    leg = position.option_legs[index]
    value = leg.vol if vol is None else vol
    if not (math.isfinite(value) and value >= 0):
        raise StrategyError(
            f"{position.name}: leg {leg.symbol} needs a volatility to be valued before expiry "
            f"(leg vol {leg.vol!r}); pass vol"
        )
    return value


def _value(position: StrategyPosition, prices: FloatArray, elapsed: float, vol: float | None) -> FloatArray:
    total = np.zeros_like(prices)
    for index, leg in enumerate(position.option_legs):
        remaining = leg.t_years - elapsed
        if remaining <= 0:
            worth = np.maximum(prices - leg.strike if leg.is_call else leg.strike - prices, 0.0)
        else:
            worth = bsm_price(
                np.maximum(prices, 1e-12),
                leg.strike,
                remaining,
                position.rate,
                position.div_yield,
                _leg_vol(position, index, vol),
                leg.is_call,
            )
        total += leg.quantity * position.multiplier * (worth - leg.premium)
    if position.stock is not None:
        total += position.stock.shares * (prices - position.stock.price)
    return total


def _prices(prices: npt.ArrayLike) -> FloatArray:
    array = np.asarray(prices, dtype=np.float64)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise StrategyError("prices must be finite and >= 0")
    return array


def pnl(
    position: StrategyPosition, prices: npt.ArrayLike, *, at: datetime | None = None, vol: float | None = None
) -> FloatArray:
    """Return the position's P&L if the underlying were at ``prices`` at time ``at``.

    Args:
        position: the position.
        prices: underlying prices (>= 0), any shape.
        at: the valuation time (timezone-aware, not before ``as_of``); None is ``as_of``.
            Legs expired by then are worth their intrinsic value, the rest their BSM value.
        vol: the volatility for every live leg; None uses each leg's own.

    Raises:
        StrategyError: if a live leg has no volatility, ``at`` is before ``as_of`` or a price is bad.
    """
    return _value(position, _prices(prices), _elapsed_years(position, at), vol)


def pnl_at_expiry(
    position: StrategyPosition, prices: npt.ArrayLike, *, vol: float | None = None
) -> FloatArray:
    """Return the P&L at the close of the first expiry (later legs at their BSM value then).

    Raises:
        StrategyError: if a later leg has no volatility or a price is bad.
    """
    return _value(position, _prices(prices), _first_expiry_years(position), vol)


def price_grid(position: StrategyPosition, points: int = 401, *, width: float = 0.5) -> FloatArray:
    """Return evenly spaced prices covering the strikes and spot, ``width`` (a fraction) beyond each side."""
    strikes = [leg.strike for leg in position.option_legs]
    low = min(min(strikes), position.spot) * (1.0 - width)
    high = max(max(strikes), position.spot) * (1.0 + width)
    return np.linspace(max(low, 0.0), high, points)


# ---------------------------------------------------------------------- shape of the expiry P&L


def _upper_slope(position: StrategyPosition) -> float:
    """The exact slope of the first-expiry P&L as S → ∞."""
    first = _first_expiry_years(position)
    slope = float(position.shares)
    for leg in position.option_legs:
        if leg.is_call:
            remaining = leg.t_years - first
            carry = 1.0 if remaining <= 0 else math.exp(-position.div_yield * remaining)
            slope += leg.quantity * position.multiplier * carry
    return slope


def _scale(position: StrategyPosition) -> float:
    """A money scale for zero tests: one multiplier × the largest strike or price."""
    return position.multiplier * max(max(leg.strike for leg in position.option_legs), position.spot)


def _single_expiry(position: StrategyPosition) -> bool:
    return len(position.expiries) == 1


def _nodes(position: StrategyPosition, vol: float | None) -> tuple[FloatArray, FloatArray]:
    """Prices and P&L where the expiry profile may turn: 0, the strikes (and, for two expiries,
    a dense grid up to four times the highest strike or spot)."""
    strikes = np.unique([leg.strike for leg in position.option_legs])
    if _single_expiry(position):
        nodes = np.concatenate([[0.0], strikes])
    else:
        top = 4.0 * max(float(strikes[-1]), position.spot)
        nodes = np.unique(np.concatenate([np.linspace(0.0, top, _GRID_POINTS), strikes]))
    return nodes, pnl_at_expiry(position, nodes, vol=vol)


def breakevens(position: StrategyPosition, *, vol: float | None = None) -> FloatArray:
    """Return the underlying prices at the first expiry where the P&L crosses or touches zero, ascending.

    Exact for a single expiry (roots of the linear pieces); for two expiries the sign changes on
    a grid up to four times the highest strike, bisected to machine precision.

    Raises:
        StrategyError: if a later leg has no volatility.
    """
    nodes, values = _nodes(position, vol)
    tolerance = 1e-9 * _scale(position)
    values = np.where(np.abs(values) <= tolerance, 0.0, values)
    roots: list[float] = []
    for i in range(len(nodes) - 1):
        a, b, fa, fb = nodes[i], nodes[i + 1], values[i], values[i + 1]
        if fa == 0.0 and a > 0.0:
            roots.append(float(a))
        elif fa * fb < 0.0:
            if _single_expiry(position):
                roots.append(float(a + fa * (b - a) / (fa - fb)))
            else:
                roots.append(_bisect(position, float(a), float(b), float(fa), vol))
    last, f_last = float(nodes[-1]), float(values[-1])
    slope = _upper_slope(position)
    if f_last == 0.0:
        roots.append(last)
    elif f_last * slope < 0.0 and abs(slope) > 1e-12 * position.multiplier:
        roots.append(last - f_last / slope)
    return np.unique(np.round(roots, 10))


def _bisect(position: StrategyPosition, low: float, high: float, f_low: float, vol: float | None) -> float:
    for _ in range(_BISECTIONS):
        mid = 0.5 * (low + high)
        f_mid = float(pnl_at_expiry(position, mid, vol=vol))
        if (f_mid < 0.0) == (f_low < 0.0):
            low, f_low = mid, f_mid
        else:
            high = mid
    return 0.5 * (low + high)


def profit_bounds(position: StrategyPosition, *, vol: float | None = None) -> ProfitBounds:
    """Return the maximum profit and loss at the first expiry, with unlimited sides flagged.

    Raises:
        StrategyError: if a later leg has no volatility.
    """
    _, values = _nodes(position, vol)
    slope = _upper_slope(position)
    flat = abs(slope) <= 1e-12 * position.multiplier
    if not _single_expiry(position) and flat:
        # bounded with time value left: include the far asymptote
        far = 1e3 * max(max(leg.strike for leg in position.option_legs), position.spot)
        values = np.append(values, pnl_at_expiry(position, far, vol=vol))
    profit_unlimited = not flat and slope > 0
    loss_unlimited = not flat and slope < 0
    return ProfitBounds(
        max_profit=math.inf if profit_unlimited else float(values.max()),
        max_loss=-math.inf if loss_unlimited else float(values.min()),
        profit_unlimited=profit_unlimited,
        loss_unlimited=loss_unlimited,
    )


# ---------------------------------------------------------------------- probability and greeks


def probability_of_profit(position: StrategyPosition, vol: float, *, drift: float | None = None) -> float:
    """Return the probability that the P&L at the first expiry is strictly positive.

    The price at the first expiry ``T`` is lognormal::

        ln S_T ~ N(ln S_0 + (μ − q − σ²/2)·T, σ²·T)

    with ``μ`` the risk-free rate (risk-neutral) unless ``drift`` is given. The profitable
    intervals lie between consecutive breakevens; their probabilities are summed.

    Args:
        position: the position.
        vol: the volatility ``σ`` of the underlying (annual, > 0); also values later legs when
            their own volatility is missing.
        drift: the expected return ``μ`` (annual, continuous); None is the rate.

    Raises:
        StrategyError: if ``vol`` is not positive or the first expiry has passed.
    """
    if not (math.isfinite(vol) and vol > 0):
        raise StrategyError(f"vol must be a positive number, got {vol!r}")
    horizon = _first_expiry_years(position)
    if horizon <= 0:
        raise StrategyError(f"{position.name}: the first expiry has passed; no probability to compute")
    later_vol = None if all(math.isfinite(leg.vol) for leg in position.option_legs) else vol
    roots = breakevens(position, vol=later_vol)
    edges = np.concatenate([[0.0], roots, [math.inf]])
    probes = np.where(np.isinf(edges[1:]), 2.0 * edges[:-1] + 1.0, 0.5 * (edges[:-1] + edges[1:]))
    profitable = pnl_at_expiry(position, probes, vol=later_vol) > 1e-9 * _scale(position)
    mu = position.rate if drift is None else drift
    mean = math.log(position.spot) + (mu - position.div_yield - 0.5 * vol * vol) * horizon
    sd = vol * math.sqrt(horizon)
    with np.errstate(divide="ignore"):
        z = (np.log(edges) - mean) / sd
    cdf = norm_cdf(np.where(np.isinf(z), np.sign(z) * 40.0, z))
    return float(np.sum((cdf[1:] - cdf[:-1])[profitable]))


def net_greeks(
    position: StrategyPosition,
    *,
    vol: float | None = None,
    spot: float | None = None,
    at: datetime | None = None,
) -> dict[str, float]:
    """Return the position's greeks: ``Σ q·m·greek_leg`` plus the stock's delta (its shares).

    Units follow :func:`~amcp.options.black_scholes.bsm_greeks` scaled to the position: delta in
    shares-equivalent (money per 1.00 of spot), gamma per 1.00 of spot squared, vega per 1.00 of
    vol, theta per year, rho per 1.00 of rate.

    Args:
        position: the position.
        vol: the volatility for every leg; None uses each leg's own.
        spot: the underlying price; None is the position's spot.
        at: the valuation time; None is ``as_of``. Legs expired by then contribute nothing.

    Raises:
        StrategyError: if a live leg has no volatility.
    """
    price = position.spot if spot is None else float(spot)
    elapsed = _elapsed_years(position, at)
    totals = dict.fromkeys(GREEKS, 0.0)
    for index, leg in enumerate(position.option_legs):
        remaining = leg.t_years - elapsed
        if remaining <= 0:
            continue
        greeks = bsm_greeks(
            price,
            leg.strike,
            remaining,
            position.rate,
            position.div_yield,
            _leg_vol(position, index, vol),
            leg.is_call,
        )
        for name in GREEKS:
            totals[name] += leg.quantity * position.multiplier * float(greeks[name])
    totals["delta"] += position.shares
    return totals
