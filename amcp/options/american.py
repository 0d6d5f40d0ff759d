"""American options under Black-Scholes-Merton dynamics, vectorised over numpy arrays.

Two methods, both with a continuous dividend yield ``q`` and the arguments, units and input
validation of :mod:`amcp.options.black_scholes` (invalid inputs raise
:class:`~amcp.errors.DataError`; every argument broadcasts):

* :func:`baw_price` — the quadratic approximation of Barone-Adesi and Whaley (1987), "Efficient
  Analytic Approximation of American Option Values", J. Finance 42(2). Closed form apart from
  the critical price ``S*``, found per element by the paper's Newton iteration (seeded as in
  the paper) to ``|LHS - RHS| <= 1e-12·K + 1e-14·S*`` by default (the second term is float64's
  resolution of the equation). Its error against the true American value is the
  approximation's, not numerical: within 1 % for most listed options, a few % for long-dated,
  high-vol ones (measured against a 1001-step tree in the tests).
* :func:`leisen_reimer` — the binomial tree of Leisen and Reimer (1996), "Binomial models for
  option valuation — examining and improving convergence", Appl. Math. Finance 3, with the
  Peizer-Pratt method-2 inversion and an odd number of steps, rolled back for a whole batch at
  once (a ``batch × nodes`` array). It returns delta, gamma and theta from the tree.

Early exercise is never optimal for a call with ``q <= 0 <= r`` nor for a put with ``r <= 0 <=
q``; there :func:`baw_price` returns the European value exactly (the tree finds it by itself).
BAW's derivation (and its Newton seed) assumes ``r >= 0``: where ``r < 0`` and early exercise
can pay, :func:`baw_price` prices with the tree (:data:`BAW_NEGATIVE_RATE_STEPS` steps), where
QuantLib's engine refuses. Where ``T = 0`` or ``σ = 0`` both return the deterministic limit:
the underlying grows as ``S·e^((r-q)τ)``, so the option is worth ``max(0, max over τ in [0, T]
of ±(S·e^(-qτ) - K·e^(-rτ)))``, exercised at the best ``τ`` (0, ``T``, or the root of the
derivative); for a tiny positive ``σ√T`` the European value where it is the larger. The tree
returns the same limit where ``σ√T`` is below :data:`TREE_MIN_TOTAL_VOL` (1e-6; the limit is
then off by at most about ``0.4·S·σ√T``) or so far from the money that a step's probabilities
lie within :data:`TREE_MIN_PROBABILITY` (1e-12) of 0 or 1: the chance of ending on the other
side of the strike is then nil and the payoff linear where the underlying can go, while the
tree's moves lose their precision (QuantLib's fails there: "invalid up probability").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from amcp._typing import FloatArray
from amcp.errors import DataError
from amcp.options.black_scholes import (
    _NAMES,
    ArrayLike,
    _greeks,
    _Inputs,
    _price,
    norm_cdf,
    norm_pdf,
    validated_arrays,
)

BAW_NEGATIVE_RATE_STEPS = 201
"""Steps of the Leisen-Reimer tree that prices what BAW cannot: early exercise with ``r < 0``."""
BAW_TOLERANCE = 1e-12
"""Newton stops when the critical-price equation holds to this fraction of the strike."""
_BAW_MAX_ITERATIONS = 100
_RESOLUTION = 1e-14
"""The relative precision to which the critical-price equation can be evaluated in float64."""
TREE_MIN_TOTAL_VOL = 1e-6
"""Below this ``σ√T`` the tree's nodes are too close for float64: the ``σ = 0`` limit is used."""
TREE_MIN_PROBABILITY = 1e-12
"""A tree whose step probabilities lie closer than this to 0 or 1 uses the ``σ = 0`` limit."""
_TREE_CELLS_PER_CHUNK = 2_000_000
"""Options are rolled back in chunks of at most this many ``batch × nodes`` cells."""


class TreeResult(NamedTuple):
    """Price and greeks from a binomial tree, each broadcast over the inputs.

    Attributes:
        price: the option value per unit of underlying.
        delta: ``∂V/∂S`` from the two nodes after one step, ``(V_u - V_d) / (S_u - S_d)``.
        gamma: ``∂²V/∂S²``, the change between the two deltas of the three nodes after two
            steps over half the spread of their underlying prices (Hull's estimator, as
            QuantLib's ``BinomialVanillaEngine``).
        theta: ``∂V/∂t`` per year from the Black-Scholes equation, ``r·V - (r-q)·S·Δ -
            σ²S²Γ/2``, where the option is held; 0 where it is exercised at once (its value is
            then the intrinsic value whatever the time left).
    """

    price: FloatArray
    delta: FloatArray
    gamma: FloatArray
    theta: FloatArray


def _flat_inputs(model: str, values: tuple[ArrayLike, ...]) -> tuple[_Inputs, tuple[int, ...]]:
    """Validate, broadcast and flatten ``(spot, strike, t_years, rate, div_yield, vol, is_call)``."""
    floats, calls = validated_arrays(model, _NAMES, values)
    shape = calls.shape
    s, k, t, r, q, v = (np.ravel(a) for a in floats)
    return _Inputs(s, k, t, r, q, v, np.ravel(calls), (t > 0.0) & (v > 0.0)), shape


def _deterministic(x: _Inputs) -> TreeResult:
    """The ``σ → 0`` American value: the best exercise time of a deterministic path."""
    sign = np.where(x.calls, 1.0, -1.0)
    # f(τ) = ±(S·e^(-qτ) - K·e^(-rτ)) is stationary where q·S·e^(-qτ) = r·K·e^(-rτ).
    ratio = np.divide(x.r * x.k, x.q * x.s, out=np.zeros_like(x.s), where=x.q * x.s != 0.0)
    has_root = (ratio > 0.0) & (x.r != x.q)
    log_ratio = np.log(ratio, out=np.zeros_like(ratio), where=has_root)
    root = np.divide(log_ratio, x.r - x.q, out=np.zeros_like(ratio), where=has_root)
    candidates = np.stack([x.t, np.clip(root, 0.0, x.t), np.zeros_like(x.t)])  # a tie keeps τ = T
    values = sign * (x.s * np.exp(-x.q * candidates) - x.k * np.exp(-x.r * candidates))
    best = np.argmax(values, axis=0)
    tau = np.take_along_axis(candidates, best[None], axis=0)[0]
    value = np.maximum(np.take_along_axis(values, best[None], axis=0)[0], 0.0)
    held = value > 0.0
    at_expiry = held & (best == 0)
    delta = np.where(held, sign * np.exp(-x.q * tau), 0.0)
    theta = np.where(at_expiry, sign * (x.q * x.s * np.exp(-x.q * x.t) - x.r * x.k * np.exp(-x.r * x.t)), 0.0)
    return TreeResult(value, delta, np.zeros_like(value), theta)


def _limit(x: _Inputs) -> TreeResult:
    """The small-``σ√T`` American value: the deterministic limit, or the European value where
    that is larger (by its time value of order ``S·σ√T``), so American >= European holds."""
    deterministic = _deterministic(x)
    greeks = _greeks(x)
    european = TreeResult(_price(x), greeks["delta"], greeks["gamma"], greeks["theta"])
    larger = european.price > deterministic.price
    return TreeResult(*(np.where(larger, e, d) for e, d in zip(european, deterministic, strict=True)))


def _critical_price(
    x: _Inputs, variance: FloatArray, big_k: FloatArray, n: FloatArray, tolerance: float
) -> FloatArray:
    """Solve the BAW equation for the critical price ``S*`` of each (live, early) element."""
    k, calls = x.k, x.calls
    sign = np.where(calls, 1.0, -1.0)
    sd = np.sqrt(variance)
    carry_t = (x.r - x.q) * x.t  # b·T
    rate_disc, div_disc = np.exp(-x.r * x.t), np.exp(-x.q * x.t)
    # Seed (BAW 1987, eqs. 26-27): the infinite-maturity boundary, pulled towards the strike.
    root = np.sqrt((n - 1.0) ** 2 + 4.0 * 2.0 * x.r / (variance / x.t))
    q_inf = (-(n - 1.0) + sign * root) / 2.0
    s_inf = k / (1.0 - 1.0 / q_inf)
    h = -(carry_t + sign * 2.0 * sd) * k / (s_inf - k)
    seed_call = k + (s_inf - k) * (1.0 - np.exp(h))
    seed_put = s_inf + (k - s_inf) * np.exp(h)
    s_star = np.where(calls, seed_call, seed_put)
    q_t = (-(n - 1.0) + sign * np.sqrt((n - 1.0) ** 2 + 4.0 * big_k)) / 2.0

    active = np.ones(s_star.shape, dtype=np.bool_)
    for _ in range(_BAW_MAX_ITERATIONS):
        d1 = (np.log(s_star / k) + carry_t + 0.5 * variance) / sd
        in_money_prob = div_disc * norm_cdf(sign * d1)
        european = sign * (s_star * in_money_prob - k * rate_disc * norm_cdf(sign * (d1 - sd)))
        lhs = sign * (s_star - k)
        rhs = european + sign * (1.0 - in_money_prob) * s_star / q_t
        # Both sides are of the order of S*, so float64 resolves their difference only to a few
        # ulps of S*: far from the strike (q → 0 makes a call's S* huge) that exceeds tolerance·K.
        active = np.abs(lhs - rhs) > tolerance * k + _RESOLUTION * np.abs(s_star)
        if not active.any():
            return s_star
        # Newton on LHS - RHS: slope of RHS in S* (BAW eq. 25 and its put mirror).
        slope = sign * (in_money_prob * (1.0 - 1.0 / q_t) + (1.0 - sign * div_disc * norm_pdf(d1) / sd) / q_t)
        updated = (k + sign * (rhs - slope * s_star)) / (1.0 - sign * slope)
        s_star = np.where(active, updated, s_star)
    bad = np.flatnonzero(active)[0]
    raise DataError(
        f"baw: the critical-price iteration did not converge in {_BAW_MAX_ITERATIONS} steps for spot "
        f"{x.s[bad]!r}, strike {x.k[bad]!r}, t_years {x.t[bad]!r}, rate {x.r[bad]!r}, div_yield "
        f"{x.q[bad]!r}, vol {x.v[bad]!r}"
    )


def _baw(x: _Inputs, tolerance: float) -> FloatArray:
    """BAW prices of validated, flat inputs."""
    price = _price(x)
    early = x.live & np.where(x.calls, (x.q > 0.0) | (x.r < 0.0), (x.r > 0.0) | (x.q < 0.0))
    negative_rate = early & (x.r < 0.0)
    if negative_rate.any():
        tree = _Inputs(*(a[negative_rate] for a in x))
        price[negative_rate] = leisen_reimer(*tree[:7], steps=BAW_NEGATIVE_RATE_STEPS).price
        early &= ~negative_rate
    if early.any():
        e = _Inputs(*(a[early] for a in x))
        sign = np.where(e.calls, 1.0, -1.0)
        variance = e.v * e.v * e.t
        n = 2.0 * (e.r - e.q) / (e.v * e.v)
        rate_t = e.r * e.t
        # K = 2r / (σ²(1 - e^(-rT))), whose limit as r → 0 is 2 / (σ²T).
        discounting = -np.expm1(-np.where(rate_t != 0.0, rate_t, 1.0))
        big_k = np.where(rate_t != 0.0, 2.0 * rate_t / (variance * discounting), 2.0 / variance)
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            s_star = _critical_price(e, variance, big_k, n, tolerance)
            q_t = (-(n - 1.0) + sign * np.sqrt((n - 1.0) ** 2 + 4.0 * big_k)) / 2.0
            d1 = (np.log(s_star / e.k) + (e.r - e.q) * e.t + 0.5 * variance) / np.sqrt(variance)
            a = sign * (s_star / q_t) * (1.0 - np.exp(-e.q * e.t) * norm_cdf(sign * d1))
            held = sign * (e.s - s_star) < 0.0
            value = np.where(held, price[early] + a * (e.s / s_star) ** q_t, sign * (e.s - e.k))
        limit = _limit(e).price
        solved = np.isfinite(s_star) & (s_star > 0.0) & np.isfinite(value)
        price[early] = np.where(solved, value, limit)
    dead = ~x.live
    if dead.any():
        price[dead] = _limit(_Inputs(*(a[dead] for a in x))).price
    return price


def baw_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    *,
    tolerance: float = BAW_TOLERANCE,
) -> FloatArray:
    """Return the Barone-Adesi-Whaley (1987) approximate price of American options.

    With ``b = r - q``, ``M = 2r/σ²``, ``N = 2b/σ²``, ``K(T) = 1 - e^(-rT)`` and ``c``/``p``
    the European prices, a call is worth ``c(S) + A₂·(S/S*)^q₂`` below its critical price
    ``S*`` and ``S - K`` above it, where ``q₂ = (-(N-1) + √((N-1)² + 4M/K(T)))/2``, ``A₂ =
    (S*/q₂)·(1 - e^(-qT)·N(d1(S*)))`` and ``S*`` solves ``S* - K = c(S*) + A₂``; a put mirrors
    it with ``q₁`` (the negative root) below ``S**``. Arguments are those of
    :func:`~amcp.options.black_scholes.bsm_price`.

    Args:
        tolerance: the Newton iteration for ``S*`` stops when ``|LHS - RHS| <= tolerance·K``
            plus float64's resolution, ``1e-14·S*``. QuantLib's
            ``BaroneAdesiWhaleyApproximationEngine`` stops at 1e-6, which leaves its prices up to
            about 1e-5 relative away from the converged approximation.

    Returns:
        The price per unit of underlying, broadcast over the inputs. Calls with ``q <= 0 <= r``
        and puts with ``r <= 0 <= q`` get the European price, early exercise with ``r < 0`` the
        tree's; ``T = 0`` or ``σ = 0`` the limit of the module docstring, as do elements whose
        ``σ√T`` is too small for the approximation's arithmetic (it over- or underflows).

    Raises:
        DataError: if an input is not finite, out of range, or the shapes do not broadcast, or
            if the critical-price iteration does not converge (naming the inputs).
    """
    if not 0.0 < tolerance < 1.0:
        raise DataError(f"baw: tolerance must be in (0, 1) (got {tolerance!r})")
    x, shape = _flat_inputs("baw", (spot, strike, t_years, rate, div_yield, vol, is_call))
    return _baw(x, tolerance).reshape(shape)


def _peizer_pratt(z: FloatArray, steps: int) -> FloatArray:
    """Peizer-Pratt method-2 inversion: the binomial probability matching ``N(z)`` in ``steps``."""
    ratio = z / (steps + 1.0 / 3.0 + 0.1 / (steps + 1.0))
    # -expm1 keeps the precision of 1 - e^(-x) where z is near 0 (the tree near the money).
    result: FloatArray = 0.5 + np.sign(z) * np.sqrt(-0.25 * np.expm1(-ratio * ratio * (steps + 1.0 / 6.0)))
    return result


def _roll_back(x: _Inputs, steps: int, american: bool) -> TreeResult:
    """Roll a Leisen-Reimer tree back for a batch of live options (1-D inputs)."""
    s, k, t, r, q, v, calls = (a[:, None] for a in x[:7])
    sign = np.where(calls, 1.0, -1.0)
    dt = t / steps
    sd = v * np.sqrt(t)
    d2 = (np.log(s / k) + (r - q - 0.5 * v * v) * t) / sd
    up_prob = _peizer_pratt(d2, steps)
    growth = np.exp((r - q) * dt)
    up = growth * _peizer_pratt(d2 + sd, steps) / up_prob
    down = (growth - up_prob * up) / (1.0 - up_prob)
    disc = np.exp(-r * dt)
    weight_up, weight_down = disc * up_prob, disc * (1.0 - up_prob)

    nodes = np.arange(steps + 1)
    up_pow, down_pow = up**nodes, down**nodes  # (batch, steps + 1)

    def underlying(step: int) -> FloatArray:
        """The ``step + 1`` node prices after ``step`` steps, ``S·d^(step-j)·u^j``."""
        prices: FloatArray = s * down_pow[:, step::-1] * up_pow[:, : step + 1]
        return prices

    values = np.maximum(sign * (underlying(steps) - k), 0.0)
    saved: dict[int, FloatArray] = {}
    exercised = np.zeros(s.shape, dtype=np.bool_)
    for step in range(steps - 1, -1, -1):
        values = weight_down * values[:, :-1] + weight_up * values[:, 1:]
        if american:
            intrinsic = sign * (underlying(step) - k)
            if step == 0:
                exercised = (intrinsic >= values) & (intrinsic > 0.0)
            values = np.maximum(values, intrinsic)
        if step in (1, 2):
            saved[step] = values
    p1, p2 = saved[1], saved[2]
    s1, s2 = underlying(1), underlying(2)
    delta = (p1[:, 1] - p1[:, 0]) / (s1[:, 1] - s1[:, 0])
    delta_up = (p2[:, 2] - p2[:, 1]) / (s2[:, 2] - s2[:, 1])
    delta_down = (p2[:, 1] - p2[:, 0]) / (s2[:, 1] - s2[:, 0])
    gamma = (delta_up - delta_down) / (0.5 * (s2[:, 2] - s2[:, 0]))
    price = values[:, 0]
    spot, rate, carry, vol = x.s, x.r, x.r - x.q, x.v
    theta = rate * price - carry * spot * delta - 0.5 * vol * vol * spot * spot * gamma
    exercised = exercised[:, 0]
    return TreeResult(
        price,
        np.where(exercised, sign[:, 0], delta),
        np.where(exercised, 0.0, gamma),
        np.where(exercised, 0.0, theta),
    )


def leisen_reimer(
    spot: ArrayLike,
    strike: ArrayLike,
    t_years: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    vol: ArrayLike,
    is_call: ArrayLike,
    *,
    steps: int = 201,
    american: bool = True,
) -> TreeResult:
    """Return prices, deltas, gammas and thetas from a Leisen-Reimer binomial tree.

    With ``n`` steps, ``Δt = T/n`` and ``h(z) = 1/2 ± √(1/4 - 1/4·exp(-(z/(n + 1/3 + 0.1/(n+1)))²
    ·(n + 1/6)))`` (Peizer-Pratt method 2, sign of ``z``), the up probability is ``p = h(d2)``,
    the moves ``u = e^((r-q)Δt)·h(d1)/p`` and ``d = (e^((r-q)Δt) - p·u)/(1 - p)``, with ``d1``,
    ``d2`` of :func:`~amcp.options.black_scholes.bsm_price`. The tree is centred on the strike,
    so its error falls as ``1/n²`` for European options. Arguments are those of
    :func:`~amcp.options.black_scholes.bsm_price`.

    Args:
        steps: number of time steps, odd and >= 3 (the inversion is defined for odd ``n``).
        american: True to allow exercise at every node (including now), False for European.

    Returns:
        A :class:`TreeResult` (price, delta, gamma, theta per year), each broadcast over the
        inputs. ``T = 0``, ``σ = 0`` and ``σ√T`` too small for the tree give the limits of
        the module docstring (European: those of
        :func:`~amcp.options.black_scholes.bsm_greeks`).

    Raises:
        DataError: if an input is not finite, out of range, or the shapes do not broadcast, or
            if ``steps`` is not an odd integer >= 3.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 3 or steps % 2 == 0:
        raise DataError(f"leisen_reimer: steps must be an odd integer >= 3 (got {steps!r})")
    x, shape = _flat_inputs("leisen_reimer", (spot, strike, t_years, rate, div_yield, vol, is_call))
    result = [np.empty_like(x.s) for _ in TreeResult._fields]
    sd = np.where(x.live, x.v * np.sqrt(x.t), 0.0)
    tree = sd >= TREE_MIN_TOTAL_VOL
    if tree.any():
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            d2 = (np.log(x.s / x.k) + (x.r - x.q - 0.5 * x.v * x.v) * x.t) / np.where(tree, sd, 1.0)
        for probability in (_peizer_pratt(d2, steps), _peizer_pratt(d2 + sd, steps)):
            tree &= (probability >= TREE_MIN_PROBABILITY) & (probability <= 1.0 - TREE_MIN_PROBABILITY)
    indices = np.flatnonzero(tree)
    chunk = max(1, _TREE_CELLS_PER_CHUNK // (steps + 1))
    for start in range(0, indices.size, chunk):
        part = indices[start : start + chunk]
        rolled = _roll_back(_Inputs(*(a[part] for a in x)), steps, american)
        for out, values in zip(result, rolled, strict=True):
            out[part] = values
    limit = ~tree
    if limit.any():
        flat = _Inputs(*(a[limit] for a in x))
        if american:
            limits = _limit(flat)
        else:
            greeks = _greeks(flat)
            limits = TreeResult(_price(flat), greeks["delta"], greeks["gamma"], greeks["theta"])
        for out, values in zip(result, limits, strict=True):
            out[limit] = values
    return TreeResult(*(out.reshape(shape) for out in result))
