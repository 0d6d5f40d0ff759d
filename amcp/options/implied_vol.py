"""Implied volatility of European options, vectorised, to (nearly) machine precision.

The solver is Peter Jäckel's "Let's Be Rational" (Wilmott 2015, with his 2017 updates),
implemented with numba in :mod:`amcp.options._lets_be_rational`: a four-branch rational initial
guess and at most two Householder(3) steps on the normalised Black function. Relative accuracy
is a few ulp of the normalised price, so the volatility is exact to about 1e-14 wherever the price
determines it (see "Informative prices" below).

Black-Scholes-Merton inputs are mapped to Black's normalised form, with ``F = S·e^((r-q)T)``::

    x = ln(F/K) = ln(S/K) + (r-q)·T          β = price / (√(S·K)·e^(-(r+q)T/2)) = e^(rT)·price / √(F·K)

and an in-the-money option is replaced by the out-of-the-money option of the other right
through put-call parity on the normalised form (``β_otm = β - 2·sinh(|x|/2)``), as Jäckel does.
:func:`black76_implied_vol` is the same with ``F`` given and ``q = r`` (the forward does not
drift).

Status codes (:class:`IVStatus`, ``int64``): every element gets one; ``vol`` is NaN unless the
status is ``OK`` or ``AT_INTRINSIC``. No input makes these functions raise except a non-boolean
``is_call`` or shapes that do not broadcast (programming errors, :class:`~amcp.errors.DataError`).

Bounds and rounding. The time value ``β_otm`` is only known to within the rounding of the map
above, ``noise = 4ε·(1+|x|)·(β + [in the money])`` in normalised units (ε = 2.2e-16; ``x`` is
known to about ``ε·(1+|x|)``, and an in-the-money price loses the intrinsic value's rounding).
A price within ``noise`` of its intrinsic value is ``AT_INTRINSIC`` (vol 0), one within
``noise`` of the upper bound (``S·e^(-qT)`` for a call, ``K·e^(-rT)`` for a put) is
``ABOVE_MAXIMUM``; beyond these margins the classification is exact.

Informative prices. A relative error ``δ`` in the price moves the implied volatility by
``δ / E`` relative, with ``E = ∂ln(price)/∂ln(σ) = vega·σ/price``. Where ``E`` is tiny — deep in
the money with a time value of a few ulp of the price, or a few-minute option far from the
money — the price pins ``σ`` only loosely (any volatility in a wide interval reprices it to
within rounding); the solver then still returns a volatility that reproduces the price to
rounding, but not a precise one.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import NamedTuple

import numba as nb
import numpy as np
import numpy.typing as npt

from amcp._typing import FloatArray, IntArray
from amcp.errors import DataError
from amcp.options._lets_be_rational import FASTMATH, normalised_implied_volatility, otm_intrinsic_gap

__all__ = ["IVResult", "IVStatus", "black76_implied_vol", "implied_vol"]


class IVStatus(IntEnum):
    """Why an implied volatility is or is not there (stored as ``int64`` in :class:`IVResult`)."""

    OK = 0
    """A volatility ``σ > 0`` reprices the option; ``vol`` holds it."""
    BELOW_INTRINSIC = 1
    """The price is below the discounted intrinsic value ``max(θ·(S·e^(-qT) - K·e^(-rT)), 0)``
    (beyond rounding): no volatility exists; ``vol`` is NaN."""
    ABOVE_MAXIMUM = 2
    """The price is at or above its upper bound, ``S·e^(-qT)`` for a call, ``K·e^(-rT)`` for a
    put (within rounding): only an infinite volatility reaches it; ``vol`` is NaN."""
    NON_POSITIVE_TIME = 3
    """``t_years ≤ 0``: the option has expired and its price carries no volatility; ``vol`` is NaN."""
    INVALID_INPUT = 4
    """An input is NaN or infinite, the price is negative, spot (forward) or strike is ``≤ 0``,
    the normalised price overflows, or ``|ln(F/K)| > 500`` (a strike beyond ``e^±500`` times the
    forward, where double-precision prices underflow and the solver does not converge); ``vol``
    is NaN."""
    AT_INTRINSIC = 5
    """The price equals its intrinsic value within rounding — for an out-of-the-money option,
    the price is 0 or its normalised value ``β`` is subnormal (below 2.2e-308, where doubles
    lose their relative precision): the only consistent volatility is 0, and ``vol`` holds 0.0.
    Kept apart from ``OK`` so that ``status == OK`` selects strictly positive, solved
    volatilities."""


class IVResult(NamedTuple):
    """Implied volatilities and their status codes, both of the inputs' broadcast shape."""

    vol: FloatArray
    """Annualised implied volatility (0.2 = 20 %); NaN unless ``status`` is OK or AT_INTRINSIC."""
    status: IntArray
    """An :class:`IVStatus` value per element (``int64``)."""


_OK = int(IVStatus.OK)
_BELOW_INTRINSIC = int(IVStatus.BELOW_INTRINSIC)
_ABOVE_MAXIMUM = int(IVStatus.ABOVE_MAXIMUM)
_NON_POSITIVE_TIME = int(IVStatus.NON_POSITIVE_TIME)
_INVALID_INPUT = int(IVStatus.INVALID_INPUT)
_AT_INTRINSIC = int(IVStatus.AT_INTRINSIC)
_ROUNDING = 4.0 * float(np.finfo(np.float64).eps)
_DBL_MIN = float(np.finfo(np.float64).tiny)
_MAX_ABS_LOG_MONEYNESS = 500.0  # Jäckel: beyond |ln(F/K)| = 500 two Householder steps may not converge


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def _solve_one(
    price: float, spot: float, strike: float, t: float, rate: float, carry_yield: float, is_call: bool
) -> tuple[float, int]:
    """Return ``(vol, status)`` for one Black-Scholes-Merton option (see the module docstring)."""
    finite = (
        math.isfinite(price) and math.isfinite(spot) and math.isfinite(strike) and math.isfinite(t)
        and math.isfinite(rate) and math.isfinite(carry_yield)
    )  # fmt: skip
    if not finite or price < 0.0 or spot <= 0.0 or strike <= 0.0:
        return math.nan, _INVALID_INPUT
    if t <= 0.0:
        return math.nan, _NON_POSITIVE_TIME
    x = math.log(spot / strike) + (rate - carry_yield) * t
    product = spot * strike
    if _DBL_MIN <= product < math.inf:
        geometric_mean = math.sqrt(product)
    else:  # S·K under- or overflows: take the roots apart
        geometric_mean = math.sqrt(spot) * math.sqrt(strike)
    scale = geometric_mean * math.exp(-0.5 * (rate + carry_yield) * t)
    beta = price / scale
    if not (abs(x) <= _MAX_ABS_LOG_MONEYNESS and math.isfinite(beta) and scale > 0.0):
        return math.nan, _INVALID_INPUT
    x_otm = -abs(x)  # the out-of-the-money call with the same time value
    b_max = math.exp(0.5 * x_otm)  # its upper bound
    in_the_money = (x > 0.0) if is_call else (x < 0.0)
    time_value = beta - otm_intrinsic_gap(-x_otm, b_max) if in_the_money else beta
    noise = _ROUNDING * (1.0 - x_otm) * (beta + (1.0 if in_the_money else 0.0))
    if time_value < -noise:
        return math.nan, _BELOW_INTRINSIC
    if time_value <= noise or time_value < _DBL_MIN:
        return 0.0, _AT_INTRINSIC
    if time_value >= b_max - noise:
        return math.nan, _ABOVE_MAXIMUM
    return normalised_implied_volatility(time_value, x_otm, b_max) / math.sqrt(t), _OK


@nb.njit(cache=True, nogil=True, error_model="numpy", fastmath=FASTMATH)
def _solve_serial(
    price: FloatArray, spot: FloatArray, strike: FloatArray, t: FloatArray, rate: FloatArray,
    carry_yield: FloatArray, is_call: npt.NDArray[np.bool_], vol: FloatArray, status: IntArray,
) -> None:  # fmt: skip
    """Fill ``vol`` and ``status`` element by element on one thread."""
    for i in range(price.size):
        vol[i], status[i] = _solve_one(
            price[i], spot[i], strike[i], t[i], rate[i], carry_yield[i], is_call[i]
        )


@nb.njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath=FASTMATH)
def _solve_parallel(
    price: FloatArray, spot: FloatArray, strike: FloatArray, t: FloatArray, rate: FloatArray,
    carry_yield: FloatArray, is_call: npt.NDArray[np.bool_], vol: FloatArray, status: IntArray,
) -> None:  # fmt: skip
    """Fill ``vol`` and ``status`` with the elements split over numba's threads."""
    for i in nb.prange(price.size):
        vol[i], status[i] = _solve_one(
            price[i], spot[i], strike[i], t[i], rate[i], carry_yield[i], is_call[i]
        )


def _solve(
    names: tuple[str, ...], values: tuple[npt.ArrayLike, ...], is_call: npt.ArrayLike, parallel: bool
) -> IVResult:
    """Broadcast, flatten, run the kernel and reshape; ``values`` are the six float inputs."""
    arrays = []
    for name, value in zip(names, values, strict=True):
        try:
            arrays.append(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise DataError(f"implied vol: {name} must be numeric, got {value!r}") from exc
    calls = np.asarray(is_call)
    if calls.dtype != np.bool_:
        raise DataError(f"implied vol: is_call must be boolean (True for a call), got dtype {calls.dtype}")
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays), calls.shape)
    except ValueError as exc:
        shapes = {name: a.shape for name, a in zip((*names, "is_call"), (*arrays, calls), strict=True)}
        raise DataError(f"implied vol: inputs do not broadcast together (shapes {shapes})") from exc
    flat = [np.ascontiguousarray(np.broadcast_to(a, shape)).ravel() for a in (*arrays, calls)]
    vol = np.empty(flat[0].size, dtype=np.float64)
    status = np.empty(flat[0].size, dtype=np.int64)
    kernel = _solve_parallel if parallel else _solve_serial
    kernel(*flat, vol, status)
    return IVResult(vol.reshape(shape), status.reshape(shape))


def implied_vol(
    price: npt.ArrayLike,
    spot: npt.ArrayLike,
    strike: npt.ArrayLike,
    t_years: npt.ArrayLike,
    rate: npt.ArrayLike,
    div_yield: npt.ArrayLike,
    is_call: npt.ArrayLike,
    *,
    parallel: bool = False,
) -> IVResult:
    """Return the Black-Scholes-Merton implied volatility of European option prices.

    Solves ``bsm_price(spot, strike, t_years, rate, div_yield, σ, is_call) = price`` for ``σ``
    (see :mod:`amcp.options.black_scholes` for the model and units) by Jäckel's "Let's Be
    Rational". Arguments broadcast against each other (numpy rules).

    Args:
        price: option price per unit of underlying (>= 0).
        spot: underlying price ``S`` (> 0).
        strike: strike ``K`` (> 0).
        t_years: time to expiry ``T`` in years (> 0 for a volatility to exist).
        rate: continuously compounded risk-free rate ``r`` (0.05 = 5 %).
        div_yield: continuous dividend (or borrow) yield ``q``.
        is_call: boolean, True for a call and False for a put.
        parallel: split the work over numba's threads (``numba.set_num_threads``); the result
            is identical to the single-threaded one.

    Returns:
        ``IVResult(vol, status)`` of the broadcast shape (0-d for all-scalar inputs): ``vol``
        annualised (NaN where no volatility exists), ``status`` an :class:`IVStatus` per element.

    Raises:
        DataError: if ``is_call`` is not boolean, an argument is not numeric, or the shapes do
            not broadcast. Bad values never raise: they get a status.
    """
    names = ("price", "spot", "strike", "t_years", "rate", "div_yield")
    return _solve(names, (price, spot, strike, t_years, rate, div_yield), is_call, parallel)


def black76_implied_vol(
    price: npt.ArrayLike,
    forward: npt.ArrayLike,
    strike: npt.ArrayLike,
    t_years: npt.ArrayLike,
    rate: npt.ArrayLike,
    is_call: npt.ArrayLike,
    *,
    parallel: bool = False,
) -> IVResult:
    """Return the Black (1976) implied volatility of European options on a forward or future.

    Solves ``e^(-rT)·[θ·F·N(θ·d1) - θ·K·N(θ·d2)] = price`` with ``d1,2 = (ln(F/K) ± σ²T/2)/(σ√T)``
    and ``θ = ±1`` for a call/put; this is :func:`implied_vol` with ``spot = F`` and
    ``div_yield = rate``. Upper bounds: ``F·e^(-rT)`` for a call, ``K·e^(-rT)`` for a put.

    Args:
        price: option price (>= 0), paid at ``T = 0`` and discounted at ``rate``.
        forward: forward (or futures) price ``F`` (> 0) for delivery at expiry.
        strike: strike ``K`` (> 0).
        t_years: time to expiry ``T`` in years.
        rate: continuously compounded discount rate ``r``.
        is_call: boolean, True for a call and False for a put.
        parallel: split the work over numba's threads.

    Returns:
        ``IVResult(vol, status)`` as :func:`implied_vol`.

    Raises:
        DataError: as :func:`implied_vol`.
    """
    names = ("price", "forward", "strike", "t_years", "rate", "rate")
    return _solve(names, (price, forward, strike, t_years, rate, rate), is_call, parallel)
