"""Synthetic option chains, free of static arbitrage by construction: demos, tests and benchmarks.

:func:`synthetic_chain` prices every contract of a strike grid × expiry list with
Black-Scholes-Merton (:func:`amcp.options.black_scholes.bsm_price`) at the volatility of an SSVI
surface (Gatheral & Jacquier, "Arbitrage-free SVI volatility surfaces", 2014) with a constant
curvature ``φ``::

    k      = ln(K / F),  F = S·e^((r−q)T)                   (forward log-moneyness)
    σ_atm  = atm_vol + term·T                               (ATM vol term structure)
    θ      = σ_atm²·T                                        (ATM total variance)
    ρ      = 2·skew / (atm_vol·φ)
    w(k,T) = θ/2·(1 + ρφk + √((φk + ρ)² + 1 − ρ²))          (total variance)
    σ(k,T) = √(w/T) = σ_atm·√(½(1 + ρφk + √((φk + ρ)² + 1 − ρ²)))

so each expiry's vol smile is one shape in ``k`` scaled by its ATM vol: at the money its level is
``σ_atm``, its slope ``dσ/dk = σ_atm·ρφ/2`` (``skew`` where ``σ_atm = atm_vol``, i.e. at every
expiry when ``term = 0``) and its convexity ``d²σ/dk² = σ_atm·φ²·(1 − 2ρ²)/4``.

**No static arbitrage.** By Gatheral & Jacquier (Theorem 4.2) an SSVI slice has no butterfly
arbitrage when ``θφ(1 + |ρ|) < 4`` and ``θφ²(1 + |ρ|) ≤ 4``, and (Theorem 4.1, with ``φ``
constant) the surface has no calendar arbitrage when ``θ`` does not fall with ``T``. Hence the
chain is arbitrage-free — call and put prices monotone and convex in strike, vertical spreads
worth at most their discounted width, put-call parity exact, calendar spreads non-negative at
fixed forward moneyness — for the parameters this module accepts:

* ``atm_vol > 0``, ``curvature = φ > 0``, ``|ρ| = |2·skew/(atm_vol·φ)| < 1``;
* ``θ`` non-decreasing over the listed expiries: ``atm_vol + 3·term·T_max ≥ 0`` (``dθ/dT =
  σ_atm·(atm_vol + 3·term·T)``) and ``σ_atm > 0`` at every expiry;
* ``θ_max·φ·(1 + |ρ|) < 4`` and ``θ_max·φ²·(1 + |ρ|) ≤ 4`` at the last expiry's ``θ_max``
  (e.g. ``atm_vol = 0.2``, ``φ = 2``, ``ρ = −0.5``: any expiry up to ~16 years; ``atm_vol = 0.8``,
  ``φ = 4``: up to ~0.26 years).

Anything else raises a :class:`~amcp.errors.DataError` naming the condition and the values.
The prices are European: scan them with ``ScannerConfig(style="european")`` (at a positive rate
a deep in-the-money European put is worth less with more time, which the American calendar
check would report). Bids and asks are ``mid ∓ h`` with ``h = min(half_spread_abs +
half_spread_rel·mid, mid)``, so ``bid ≥ 0`` and ``(bid + ask)/2`` is the model price; since
``bid ≤ mid ≤ ask``, no trade at executable prices can beat a bound the mids keep. Open
interest and volume are Poisson draws around the given means (the only use of ``seed``);
``last`` is the mid and ``vendor_iv`` the surface's vol.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

from amcp._typing import FloatArray
from amcp.domain.enums import OptionRight
from amcp.domain.instruments import OptionContract
from amcp.errors import DataError, DomainError
from amcp.options.black_scholes import bsm_price
from amcp.options.chain import OptionChain, years_to_expiry

__all__ = ["MIN_STRIKES", "smile_vol", "synthetic_chain"]

#: A grid needs at least this many strikes (a butterfly and an SVI fit need several).
MIN_STRIKES = 5
_NEW_YORK = ZoneInfo("America/New_York")


def smile_vol(log_moneyness: FloatArray, t_years: FloatArray, *, atm_vol: float, skew: float, curvature: float,
              term: float) -> FloatArray:
    """The surface's implied volatility ``σ(k, T)`` (formula in the module docstring).

    Args:
        log_moneyness: ``k = ln(K/F)`` per point.
        t_years: ``T`` per point (> 0).
        atm_vol: ATM vol as ``T → 0``.
        skew: ATM slope ``dσ/dk`` where the ATM vol is ``atm_vol``.
        curvature: SSVI ``φ`` (> 0).
        term: ATM vol change per year of ``T``.

    Returns:
        The vols, annualised, broadcast over ``log_moneyness`` and ``t_years``.
    """
    rho = 2.0 * skew / (atm_vol * curvature)
    x = curvature * np.asarray(log_moneyness, dtype=np.float64)
    shape = 0.5 * (1.0 + rho * x + np.sqrt((x + rho) ** 2 + 1.0 - rho**2))
    result: FloatArray = (atm_vol + term * np.asarray(t_years, dtype=np.float64)) * np.sqrt(shape)
    return result


def _validate(spot: float, rate: float, div_yield: float, t_max: float, atm_vol: float, skew: float,
              curvature: float, term: float) -> None:
    for name, value in (("spot", spot), ("atm_vol", atm_vol), ("curvature", curvature)):
        if not np.isfinite(value) or value <= 0:
            raise DataError(f"synthetic chain: {name} must be a finite number > 0, got {value!r}")
    for name, value in (("rate", rate), ("div_yield", div_yield), ("skew", skew), ("term", term)):
        if not np.isfinite(value):
            raise DataError(f"synthetic chain: {name} must be finite, got {value!r}")
    rho = 2.0 * skew / (atm_vol * curvature)
    if not abs(rho) < 1.0:
        raise DataError(f"synthetic chain: skew={skew} is too steep for atm_vol={atm_vol} and curvature={curvature}: "
                        f"the SSVI correlation ρ = 2·skew/(atm_vol·curvature) = {rho:.4g} must lie in (−1, 1); "
                        "raise curvature or lower |skew|")
    if atm_vol + 3.0 * term * t_max < 0.0:
        raise DataError(f"synthetic chain: term={term} makes the ATM total variance fall before the last expiry "
                        f"(T={t_max:.4g} years), a calendar arbitrage: atm_vol + 3·term·T = "
                        f"{atm_vol + 3.0 * term * t_max:.4g} must be >= 0")
    theta = (atm_vol + term * t_max) ** 2 * t_max
    first, second = theta * curvature * (1.0 + abs(rho)), theta * curvature**2 * (1.0 + abs(rho))
    if not (first < 4.0 and second <= 4.0):
        raise DataError(f"synthetic chain: the smile at the last expiry (T={t_max:.4g} years, ATM total variance "
                        f"θ={theta:.4g}) would allow butterfly arbitrage: θ·φ·(1+|ρ|) = {first:.4g} must be < 4 and "
                        f"θ·φ²·(1+|ρ|) = {second:.4g} must be <= 4 (φ = curvature = {curvature}, ρ = {rho:.4g}); "
                        "lower curvature, atm_vol or the last expiry")


def _strike_grid(spot: float, strike_step: float, strike_width: float) -> FloatArray:
    if not (np.isfinite(strike_step) and strike_step > 0):
        raise DataError(f"synthetic chain: strike_step must be a finite number > 0, got {strike_step!r}")
    thousandths = strike_step * 1000.0
    if abs(thousandths - round(thousandths)) > 1e-6:
        raise DataError(f"synthetic chain: strike_step must be a multiple of 0.001 (OCC strikes carry three "
                        f"decimals), got {strike_step!r}")
    if not (np.isfinite(strike_width) and 0 < strike_width < 1):
        raise DataError(f"synthetic chain: strike_width must lie in (0, 1) (a fraction of spot), got {strike_width!r}")
    low = int(np.ceil(spot * (1.0 - strike_width) / strike_step - 1e-9))
    high = int(np.floor(spot * (1.0 + strike_width) / strike_step + 1e-9))
    step_units = round(thousandths)
    strikes = np.array([n * step_units / 1000.0 for n in range(max(low, 1), high + 1)], dtype=np.float64)
    if len(strikes) < MIN_STRIKES:
        raise DataError(f"synthetic chain: strike_step={strike_step} and strike_width={strike_width} give "
                        f"{len(strikes)} strikes around spot={spot}, fewer than {MIN_STRIKES}")
    if strikes[-1] >= 100_000:
        raise DataError(f"synthetic chain: strikes must stay below 100000 (OCC), got up to {strikes[-1]}")
    return strikes


def synthetic_chain(
    *,
    underlying: str,
    as_of: datetime,
    spot: float,
    strike_step: float,
    rate: float = 0.0,
    div_yield: float = 0.0,
    expiries_days: Sequence[int] = (7, 14, 30, 60, 91, 182),
    strike_width: float = 0.3,
    atm_vol: float = 0.2,
    skew: float = -0.1,
    curvature: float = 2.0,
    term: float = 0.0,
    half_spread_abs: float = 0.01,
    half_spread_rel: float = 0.01,
    open_interest: float = 500.0,
    volume: float = 50.0,
    seed: int = 0,
) -> OptionChain:
    """Build an arbitrage-free option chain (model, conditions and quotes in the module docstring).

    Args:
        underlying: the root symbol (1-6 upper-case letters, digits or dots, as OCC symbols allow).
        as_of: the quote time (timezone-aware); expiries are counted from its New York date.
        spot: the underlying's price.
        strike_step: distance between strikes (a multiple of 0.001); strikes are its multiples
            within ``spot·(1 ± strike_width)``, the same at every expiry.
        rate: risk-free rate, continuous annual decimal.
        div_yield: dividend yield, continuous annual decimal.
        expiries_days: calendar days from the quote date to each expiry (distinct, >= 1).
        strike_width: half-width of the strike grid as a fraction of spot, in (0, 1).
        atm_vol: ATM vol as ``T → 0`` (0.2 = 20 %).
        skew: ATM slope of vol per unit of log-moneyness where the ATM vol is ``atm_vol``
            (negative: puts richer than calls).
        curvature: SSVI ``φ``, how fast the smile turns up away from the money.
        term: ATM vol change per year of time to expiry.
        half_spread_abs: fixed part of the half bid-ask spread (per unit of underlying, >= 0).
        half_spread_rel: part of the half spread proportional to the mid (>= 0).
        open_interest: mean open interest per contract (>= 0).
        volume: mean day volume per contract (>= 0).
        seed: seed of the open-interest and volume draws.

    Returns:
        The chain, rows in :meth:`OptionChain.sort_order`, OCC symbols from
        :class:`~amcp.domain.instruments.OptionContract`.

    Raises:
        DataError: if ``as_of`` is naive, an argument is out of range, or the parameters break
            a no-arbitrage condition of the module docstring (the message names it).
    """
    if as_of.tzinfo is None:
        raise DataError(f"synthetic chain: as_of must be timezone-aware, got {as_of!r}")
    days = sorted(int(d) for d in expiries_days)
    if not days or days[0] < 1 or len(set(days)) != len(days):
        raise DataError(f"synthetic chain: expiries_days must be distinct whole days >= 1, got {list(expiries_days)}")
    for name, value in (("half_spread_abs", half_spread_abs), ("half_spread_rel", half_spread_rel),
                        ("open_interest", open_interest), ("volume", volume)):
        if not (np.isfinite(value) and value >= 0):
            raise DataError(f"synthetic chain: {name} must be a finite number >= 0, got {value!r}")
    if half_spread_abs == 0 and half_spread_rel == 0:
        raise DataError("synthetic chain: half_spread_abs and half_spread_rel are both 0: quotes need a spread")
    quote_date = as_of.astimezone(_NEW_YORK).date()
    expiries = [quote_date + timedelta(days=d) for d in days]
    t_by_expiry = [years_to_expiry(as_of, e) for e in expiries]
    _validate(spot, rate, div_yield, t_by_expiry[-1], atm_vol, skew, curvature, term)
    if t_by_expiry[0] <= 0:
        raise DataError(f"synthetic chain: the first expiry {expiries[0]} closes before as_of {as_of.isoformat()}")
    strikes = _strike_grid(spot, strike_step, strike_width)

    n_strikes = len(strikes)
    expiry = np.repeat(np.array(expiries, dtype="datetime64[D]"), 2 * n_strikes)
    t_years = np.repeat(np.array(t_by_expiry), 2 * n_strikes)
    is_call = np.tile(np.repeat([False, True], n_strikes), len(expiries))
    strike = np.tile(strikes, 2 * len(expiries))
    order = OptionChain.sort_order(expiry, is_call, strike)
    expiry, t_years, is_call, strike = expiry[order], t_years[order], is_call[order], strike[order]

    forward = spot * np.exp((rate - div_yield) * t_years)
    vol = smile_vol(np.log(strike / forward), t_years, atm_vol=atm_vol, skew=skew, curvature=curvature, term=term)
    mid = bsm_price(spot, strike, t_years, rate, div_yield, vol, is_call)
    half = np.minimum(half_spread_abs + half_spread_rel * mid, mid)
    try:
        symbol = np.array([
            OptionContract(underlying, e.astype(object), OptionRight.CALL if c else OptionRight.PUT,
                           Decimal(repr(float(k)))).occ_symbol
            for e, c, k in zip(expiry, is_call, strike, strict=True)])
    except DomainError as exc:
        raise DataError(f"synthetic chain: {exc}") from None
    rng = np.random.default_rng(seed)
    n = len(strike)
    return OptionChain(underlying=underlying, as_of=as_of, spot=spot, rate=rate, div_yield=div_yield,
                       expiry=expiry, t_years=t_years, strike=strike, is_call=is_call, bid=mid - half,
                       ask=mid + half, last=mid, volume=rng.poisson(volume, n).astype(np.float64),
                       open_interest=rng.poisson(open_interest, n).astype(np.float64), symbol=symbol,
                       vendor_iv=vol)
