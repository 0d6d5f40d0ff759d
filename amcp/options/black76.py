"""Black (1976) prices and greeks of European options on futures and forwards, vectorised.

With ``F`` the forward (or futures) price for the option's expiry, ``K`` the strike, ``T``
years to expiry, ``r`` the continuously compounded rate that discounts the payoff and ``σ`` the
volatility of the forward::

    d1 = (ln(F/K) + σ²T/2) / (σ·√T),    d2 = d1 - σ·√T
    call = e^(-rT)·(F·N(d1) - K·N(d2))
    put  = e^(-rT)·(K·N(-d2) - F·N(-d1))

That is Black-Scholes-Merton with spot ``F`` and dividend yield ``q = r``, and it is computed
by the same kernel as :mod:`amcp.options.black_scholes`, so degenerate inputs are priced by the
same limits (``T = 0`` or ``σ = 0``: ``e^(-rT)·max(±(F - K), 0)``) and invalid inputs raise
:class:`~amcp.errors.DataError` the same way (``forward`` and ``strike`` must be > 0).

Greeks hold the forward fixed, never the spot: ``delta`` is ``∂V/∂F`` (per 1.00 of forward),
``gamma`` ``∂²V/∂F²``, ``vega`` ``∂V/∂σ`` per 1.00 of volatility, ``theta`` ``∂V/∂t =
-∂V/∂T`` per year (:func:`~amcp.options.black_scholes.per_day` for per day), ``rho``
``∂V/∂r = -T·V`` per 1.00 of rate (only the discounting moves), ``vanna`` ``∂²V/∂F∂σ``,
``volga`` ``∂²V/∂σ²`` and ``charm`` ``∂Δ/∂t`` per year. Every argument broadcasts.
"""

from __future__ import annotations

import numpy as np

from amcp._typing import FloatArray
from amcp.options.black_scholes import ArrayLike, _greeks, _Inputs, _price, validated_arrays

BLACK76_GREEKS: tuple[str, ...] = ("delta", "gamma", "vega", "theta", "rho", "vanna", "volga", "charm")
"""The keys of :func:`black76_greeks`' result, in order."""

_NAMES = ("forward", "strike", "t_years", "rate", "vol")


def _black76_inputs(*values: ArrayLike) -> _Inputs:
    """Validate Black-76 inputs and map them onto BSM's: spot ``F``, dividend yield ``r``."""
    (f, k, t, r, v), calls = validated_arrays("black76", _NAMES, values)
    return _Inputs(f, k, t, r, r, v, calls, (t > 0.0) & (v > 0.0))


def black76_price(
    forward: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> FloatArray:
    """Return the Black-76 price of European options on a forward or futures price.

    Args:
        forward: forward (or futures) price ``F`` for the option's expiry (> 0).
        strike: strike ``K`` (> 0), same currency as ``forward``.
        t_years: time to expiry ``T`` in years (>= 0).
        rate: continuously compounded discount rate ``r``, annualised (0.05 = 5 %).
        vol: volatility ``σ`` of the forward, annualised (>= 0).
        is_call: boolean, True for a call and False for a put.

    Returns:
        The price per unit of underlying, broadcast over the inputs.

    Raises:
        DataError: if an input is not finite, out of range, or the shapes do not broadcast.
    """
    return _price(_black76_inputs(forward, strike, t_years, rate, vol, is_call))


def black76_greeks(
    forward: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
) -> dict[str, FloatArray]:
    """Return the Black-76 greeks of European options, the forward held fixed.

    Arguments are those of :func:`black76_price`. With ``δ = ±1`` for a call/put and ``D =
    e^(-rT)``::

        delta = δ·D·N(δ·d1)                  gamma = D·n(d1) / (F·σ·√T)
        vega  = F·D·n(d1)·√T                 theta = -F·D·n(d1)·σ / (2√T) + r·V
        rho   = -T·V                         vanna = -D·n(d1)·d2 / σ
        volga = vega·d1·d2 / σ               charm = δ·r·D·N(δ·d1) + D·n(d1)·d2 / (2T)

    Returns:
        The keys of :data:`BLACK76_GREEKS`, each broadcast over the inputs; units as in the
        module docstring.

    Raises:
        DataError: if an input is not finite, out of range, or the shapes do not broadcast.
    """
    greeks = _greeks(_black76_inputs(forward, strike, t_years, rate, vol, is_call))
    # With q = r, moving r moves q too; the forward stays put, so rho = ∂V/∂r + ∂V/∂q.
    greeks["rho"] = np.asarray(greeks["rho"] + greeks.pop("dividend_rho"))
    return {name: greeks[name] for name in BLACK76_GREEKS}
