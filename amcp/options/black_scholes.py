"""Black-Scholes-Merton prices and greeks of European options, vectorised over numpy arrays.

The model (Merton 1973, continuous dividend yield ``q``), with ``S`` spot, ``K`` strike, ``T``
years to expiry, ``r`` the continuously compounded risk-free rate, ``σ`` the volatility and
``N``/``n`` the standard normal CDF/density::

    d1 = (ln(S/K) + (r - q + σ²/2)·T) / (σ·√T),    d2 = d1 - σ·√T
    call = S·e^(-qT)·N(d1) - K·e^(-rT)·N(d2)
    put  = K·e^(-rT)·N(-d2) - S·e^(-qT)·N(-d1)

Units: prices in the currency of ``S`` and ``K`` per unit of underlying (multiply by the
contract multiplier, e.g. 100, for a contract's value); ``T`` in years; ``r``, ``q`` and ``σ``
annualised decimals (0.05 is 5 %). Greeks are plain partial derivatives of that price, with
``t`` calendar time (so ``∂/∂t = -∂/∂T``):

================  ==================  =========================================================
greek             definition          unit
================  ==================  =========================================================
``delta``         ∂V/∂S               per 1.00 of spot
``gamma``         ∂²V/∂S²             per 1.00 of spot, squared
``vega``          ∂V/∂σ               per 1.00 of volatility (divide by 100 for per vol point)
``theta``         ∂V/∂t = -∂V/∂T      per year of calendar time (:func:`per_day`: per day)
``rho``           ∂V/∂r               per 1.00 of rate (divide by 100 for per 1 %)
``dividend_rho``  ∂V/∂q               per 1.00 of dividend yield
``vanna``         ∂²V/∂S∂σ = ∂Δ/∂σ    per 1.00 of spot and 1.00 of volatility
``volga``         ∂²V/∂σ² (vomma)     per 1.00 of volatility, squared
``charm``         ∂Δ/∂t = -∂Δ/∂T      delta change per year of calendar time (e.g. negative
                                      for an OTM call when r = q = 0: its delta decays to 0)
================  ==================  =========================================================

A day is 1/365 of a year (Actual/365 Fixed, as QuantLib's ``thetaPerDay``).

Degenerate inputs are priced by their limits: when ``T = 0`` or ``σ = 0`` the option is worth
its discounted forward intrinsic value ``e^(-rT)·max(±(F - K), 0)`` with ``F = S·e^((r-q)T)``,
gamma, vega, vanna and volga are 0, and delta, theta, rho, dividend_rho and charm are the
derivatives of that value (at ``F = K`` exactly the derivatives of the out-of-the-money branch
are used).

Invalid inputs (a non-finite number, ``S <= 0``, ``K <= 0``, ``T < 0``, ``σ < 0``, a
non-boolean ``is_call``, shapes that do not broadcast) raise :class:`~amcp.errors.DataError`
naming the argument and the value: a chain is validated before it is priced, so a bad row is
a bug to surface, never a silent NaN in a risk number.

Every argument broadcasts against the others (numpy rules); results are ``float64`` arrays of
the broadcast shape (0-d for all-scalar inputs).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from amcp._typing import BoolArray, FloatArray
from amcp.errors import DataError

ArrayLike = npt.ArrayLike

FIRST_ORDER_GREEKS: tuple[str, ...] = ("delta", "gamma", "vega", "theta", "rho", "dividend_rho")
"""The price sensitivities of :func:`bsm_greeks` (gamma included, as is customary)."""
SECOND_ORDER_GREEKS: tuple[str, ...] = ("vanna", "volga", "charm")
"""The cross and second-order sensitivities of :func:`bsm_greeks`."""
GREEKS: tuple[str, ...] = FIRST_ORDER_GREEKS + SECOND_ORDER_GREEKS
"""The keys of :func:`bsm_greeks`' result, in order."""
DAYS_PER_YEAR = 365.0
"""Calendar days per year of ``t_years`` (Actual/365 Fixed), the divisor of :func:`per_day`."""

_SQRT_2PI = float(np.sqrt(2.0 * np.pi))
_TAIL_START = 3.0
_TAIL_TERMS = 60
_D_LIMIT = 1e10


def norm_cdf(x: ArrayLike) -> FloatArray:
    """Return the standard normal cumulative distribution function at ``x``.

    For ``|x| < 3``, Hart's (1968) double-precision rational approximation as given by West
    (2005), "Better approximations to cumulative normal functions"; beyond, Laplace's continued
    fraction for the Mills ratio, ``N(-z) = n(z) / (z + 1/(z + 2/(z + 3/(z + …))))``, to 60
    terms. Computed on the tail side, so both tails keep their relative precision (about 1e-13).
    """
    values = np.asarray(x, dtype=np.float64)
    z = np.abs(values)
    lower = np.empty_like(z)
    near = z < _TAIL_START
    zn = z[near]
    numerator = 3.52624965998911e-02 * zn + 0.700383064443688
    numerator = numerator * zn + 6.37396220353165
    numerator = numerator * zn + 33.912866078383
    numerator = numerator * zn + 112.079291497871
    numerator = numerator * zn + 221.213596169931
    numerator = numerator * zn + 220.206867912376
    denominator = 8.83883476483184e-02 * zn + 1.75566716318264
    denominator = denominator * zn + 16.064177579207
    denominator = denominator * zn + 86.7807322029461
    denominator = denominator * zn + 296.564248779674
    denominator = denominator * zn + 637.333633378831
    denominator = denominator * zn + 793.826512519948
    denominator = denominator * zn + 440.413735824752
    lower[near] = np.exp(-0.5 * zn * zn) * numerator / denominator
    far = ~near & ~np.isnan(z)
    zf = z[far]
    fraction = zf.copy()
    for n in range(_TAIL_TERMS, 0, -1):
        fraction = zf + n / fraction
    lower[far] = np.exp(-0.5 * zf * zf) / (fraction * _SQRT_2PI)
    lower[np.isnan(z)] = np.nan
    result: FloatArray = np.where(values > 0.0, 1.0 - lower, lower)
    return result


def norm_pdf(x: ArrayLike) -> FloatArray:
    """Return the standard normal probability density at ``x``."""
    values = np.asarray(x, dtype=np.float64)
    result: FloatArray = np.exp(-0.5 * values * values) / _SQRT_2PI
    return result


class _Inputs(NamedTuple):
    """Validated inputs, broadcast to one shape."""

    s: FloatArray
    k: FloatArray
    t: FloatArray
    r: FloatArray
    q: FloatArray
    v: FloatArray
    calls: BoolArray
    live: BoolArray  # T > 0 and σ > 0: the closed form applies


_NAMES = ("spot", "strike", "t_years", "rate", "div_yield", "vol")
_LOWER_BOUNDS = {
    "spot": (0.0, True),
    "forward": (0.0, True),
    "strike": (0.0, True),
    "t_years": (0.0, False),
    "vol": (0.0, False),
}
"""Name → (bound, strict): spot, forward and strike must be > 0, t_years and vol >= 0."""


def validated_arrays(
    model: str, names: tuple[str, ...], values: tuple[ArrayLike, ...]
) -> tuple[list[FloatArray], BoolArray]:
    """Broadcast and validate option inputs: floats named ``names`` followed by ``is_call``.

    Shared by the pricing modules of :mod:`amcp.options`, so every model checks its inputs the
    same way: finite numbers, ``spot``/``forward``/``strike`` > 0, ``t_years``/``vol`` >= 0, a
    boolean ``is_call``.

    Args:
        model: the model's name, the prefix of error messages (``"bsm"``, ``"black76"``, ...).
        names: the names of the float arguments, in order.
        values: the float arguments then ``is_call``.

    Returns:
        The float arrays (``float64``) and the boolean ``is_call`` array, broadcast to one shape.

    Raises:
        DataError: naming the first bad argument and value, or the shapes that do not broadcast.
    """
    *numbers, is_call = values
    arrays = [np.asarray(value, dtype=np.float64) for value in numbers]
    calls = np.asarray(is_call)
    if calls.dtype != np.bool_:
        raise DataError(f"{model}: is_call must be boolean (True for a call), got dtype {calls.dtype}")
    try:
        *floats, calls = np.broadcast_arrays(*arrays, calls)
    except ValueError as exc:
        shapes = [np.shape(a) for a in (*arrays, calls)]
        raise DataError(f"{model}: inputs do not broadcast together (shapes {shapes})") from exc
    for name, array in zip(names, floats, strict=True):
        bad = ~np.isfinite(array)
        if not bad.any() and name in _LOWER_BOUNDS:
            bound, strict = _LOWER_BOUNDS[name]
            bad = array <= bound if strict else array < bound
            if bad.any():
                expected = f"> {bound:g}" if strict else f">= {bound:g}"
                raise DataError(f"{model}: {name} must be {expected} (got {float(array[bad].flat[0])!r})")
        if bad.any():
            raise DataError(f"{model}: {name} must be finite (got {float(array[bad].flat[0])!r})")
    return floats, calls


def _inputs(*values: ArrayLike) -> _Inputs:
    """Broadcast and validate ``(spot, strike, t_years, rate, div_yield, vol, is_call)``.

    Raises:
        DataError: naming the first bad argument and value.
    """
    (s, k, t, r, q, v), calls = validated_arrays("bsm", _NAMES, values)
    return _Inputs(s, k, t, r, q, v, calls, (t > 0.0) & (v > 0.0))


def _d1_d2(x: _Inputs) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return ``d1``, ``d2`` and ``σ√T``; where the closed form does not apply (``not live``)
    they are 0, 0 and 1, so later divisions stay finite."""
    total_sd = np.where(x.live, x.v * np.sqrt(x.t), 1.0)
    # N and n are exactly 1/0 far beyond ±1e10; the clip keeps a subnormal σ√T from making ±inf.
    with np.errstate(over="ignore"):
        d1 = np.where(x.live, (np.log(x.s / x.k) + (x.r - x.q + 0.5 * x.v * x.v) * x.t) / total_sd, 0.0)
    d1 = np.clip(d1, -_D_LIMIT, _D_LIMIT)
    d2 = d1 - np.where(x.live, total_sd, 0.0)
    return d1, d2, total_sd


def _price(x: _Inputs) -> FloatArray:
    """The price of validated inputs (see :func:`bsm_price`)."""
    d1, d2, _ = _d1_d2(x)
    spot_disc = x.s * np.exp(-x.q * x.t)
    strike_disc = x.k * np.exp(-x.r * x.t)
    sign = np.where(x.calls, 1.0, -1.0)
    price = sign * (spot_disc * norm_cdf(sign * d1) - strike_disc * norm_cdf(sign * d2))
    intrinsic = np.maximum(sign * (spot_disc - strike_disc), 0.0)
    # The price is never below the discounted forward intrinsic value (nor 0); cancellation in
    # the difference above can round it a few ulps under (even to a tiny negative number).
    result: FloatArray = np.where(x.live, np.maximum(price, intrinsic), intrinsic)
    return result


def _greeks(x: _Inputs) -> dict[str, FloatArray]:
    """The greeks of validated inputs (see :func:`bsm_greeks`)."""
    s, k, t, r, q, v, calls, live = x
    d1, d2, total_sd = _d1_d2(x)
    sign = np.where(calls, 1.0, -1.0)
    spot_disc = s * np.exp(-q * t)
    strike_disc = k * np.exp(-r * t)
    density = norm_pdf(d1)
    n1 = norm_cdf(sign * d1)
    n2 = norm_cdf(sign * d2)
    t_live = np.where(live, t, 1.0)
    v_live = np.where(live, v, 1.0)
    sqrt_t = np.sqrt(t_live)
    # Products with the density first: where it underflows to 0 a huge |d1|, |d2| cannot make NaN.
    weighted = spot_disc / s * density

    delta = sign * spot_disc / s * n1
    gamma = spot_disc * density / (s * s * total_sd)
    vega = spot_disc * density * sqrt_t
    decay = -spot_disc * density * v / (2.0 * sqrt_t)
    theta = decay - sign * r * strike_disc * n2 + sign * q * spot_disc * n1
    rho = sign * t * strike_disc * n2
    dividend_rho = -sign * t * spot_disc * n1
    vanna = -(weighted * d2) / v_live
    volga = (vega * d1) * d2 / v_live
    # ∂d1/∂T = (r - q)/(σ√T) - d2/(2T), each term weighted separately so no product underflows.
    d1_drift = weighted * (r - q) / total_sd - (weighted * d2) / (2.0 * t_live)
    charm = sign * q * spot_disc / s * n1 - d1_drift

    # Limits where T = 0 or σ = 0: the value is the discounted forward intrinsic value.
    in_money = sign * (spot_disc - strike_disc) > 0.0
    dead_delta = np.where(in_money, sign * spot_disc / s, 0.0)
    dead_theta = np.where(in_money, sign * (q * spot_disc - r * strike_disc), 0.0)
    dead_rho = np.where(in_money, sign * t * strike_disc, 0.0)
    dead_dividend_rho = np.where(in_money, -sign * t * spot_disc, 0.0)
    return {
        "delta": np.where(live, delta, dead_delta),
        "gamma": np.where(live, gamma, 0.0),
        "vega": np.where(live, vega, 0.0),
        "theta": np.where(live, theta, dead_theta),
        "rho": np.where(live, rho, dead_rho),
        "dividend_rho": np.where(live, dividend_rho, dead_dividend_rho),
        "vanna": np.where(live, vanna, 0.0),
        "volga": np.where(live, volga, 0.0),
        "charm": np.where(live, charm, q * dead_delta),
    }


def bsm_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> FloatArray:
    """Return the Black-Scholes-Merton price of European options.

    Args:
        spot: underlying price ``S`` (> 0).
        strike: strike ``K`` (> 0), same currency as ``spot``.
        t_years: time to expiry ``T`` in years (>= 0).
        rate: continuously compounded risk-free rate ``r``, annualised (0.05 = 5 %).
        div_yield: continuous dividend (or borrow) yield ``q``, annualised.
        vol: volatility ``σ``, annualised (>= 0; 0.2 = 20 %).
        is_call: boolean, True for a call and False for a put.

    Returns:
        The price per unit of underlying, broadcast over the inputs.

    Raises:
        DataError: if an input is not finite, out of range, or the shapes do not broadcast.
    """
    return _price(_inputs(spot, strike, t_years, rate, div_yield, vol, is_call))


def bsm_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> dict[str, FloatArray]:
    """Return the Black-Scholes-Merton greeks of European options, first and second order.

    Arguments are those of :func:`bsm_price`. With ``δ = ±1`` for a call/put::

        delta        = δ·e^(-qT)·N(δ·d1)
        gamma        = e^(-qT)·n(d1) / (S·σ·√T)
        vega         = S·e^(-qT)·n(d1)·√T
        theta        = -S·e^(-qT)·n(d1)·σ / (2√T) - δ·r·K·e^(-rT)·N(δ·d2) + δ·q·S·e^(-qT)·N(δ·d1)
        rho          = δ·K·T·e^(-rT)·N(δ·d2)
        dividend_rho = -δ·S·T·e^(-qT)·N(δ·d1)
        vanna        = -e^(-qT)·n(d1)·d2 / σ
        volga        = vega·d1·d2 / σ
        charm        = δ·q·e^(-qT)·N(δ·d1) - e^(-qT)·n(d1)·(2(r - q)T - d2·σ√T) / (2T·σ√T)

    Returns:
        The keys of :data:`GREEKS`: ``delta``, ``gamma``, ``vega`` (per 1.00 of volatility),
        ``theta`` (per year, ``∂V/∂t``, negative for a long option that decays; per day with
        :func:`per_day`), ``rho`` and ``dividend_rho`` (per 1.00 of rate/yield), ``vanna``,
        ``volga`` and ``charm`` (``∂Δ/∂t = -∂Δ/∂T``, per year), each broadcast over the inputs.

    Raises:
        DataError: if an input is not finite, out of range, or the shapes do not broadcast.
    """
    return _greeks(_inputs(spot, strike, t_years, rate, div_yield, vol, is_call))


def per_day(per_year: ArrayLike) -> FloatArray:
    """Return a rate of change per year of calendar time (theta, charm) per calendar day.

    A year is :data:`DAYS_PER_YEAR` (365) days, as QuantLib's ``thetaPerDay``.
    """
    result: FloatArray = np.asarray(per_year, dtype=np.float64) / DAYS_PER_YEAR
    return result
