"""Implied-volatility surfaces: a raw-SVI smile per expiry, interpolated in time, with arbitrage flags.

**Smile.** Gatheral's raw SVI gives the total implied variance ``w = σ_BS²·T`` of one expiry as a
function of the log-moneyness ``k = ln(K/F)`` against the expiry's forward ``F``::

    w(k) = a + b·(ρ·(k - m) + √((k - m)² + σ²))

with ``b ≥ 0``, ``|ρ| < 1``, ``σ > 0`` and ``a + b·σ·√(1 - ρ²) ≥ 0`` (the minimum of ``w``, so
``w ≥ 0`` everywhere). :func:`fit_svi` fits it by bounded least squares in the variables
``(v, b, ρ, m, σ)``, ``v = a + b·σ·√(1 - ρ²)`` being the smile's minimum, so every constraint is a
box bound; the starting points come from the quasi-explicit reduction (for fixed ``m`` and ``σ``
the model is linear in ``a``, ``b·ρ`` and ``b``), solved on a grid of ``(m, σ)``.

**Surface.** :class:`SVISurface` holds the fitted smiles at times ``T_1 < … < T_n`` and their
forwards. At a fixed log-moneyness ``k`` the total variance is linear in ``T`` between fitted
expiries; before ``T_1`` it is ``(T / T_1)·w_1(k)`` and after ``T_n`` it is ``(T / T_n)·w_n(k)``
(flat implied volatility at fixed ``k`` outside the fitted range). The forward's logarithm is
linear in ``T`` between ``(0, ln S)`` and the fitted forwards, and the last interval's forward
rate continues after ``T_n``. Linear interpolation keeps ``w`` non-decreasing in ``T`` wherever the
fitted smiles are, so an interpolated surface has calendar arbitrage only where its nodes do.

**Arbitrage.** A smile is free of butterfly arbitrage iff its risk-neutral density is
non-negative, i.e. Gatheral and Jacquier's (2014) ``g(k) ≥ 0``::

    g(k) = (1 - k·w'/(2w))² - (w'²/4)·(1/w + 1/4) + w''/2

and a surface is free of calendar arbitrage iff ``w(k, T)`` is non-decreasing in ``T`` at every
``k``. :meth:`SVISurface.arbitrage` checks both on a grid of ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy.optimize import least_squares

from amcp._typing import BoolArray, FloatArray
from amcp.errors import DataError
from amcp.options.chain import OptionChain

__all__ = [
    "ArbitrageReport",
    "ButterflyCheck",
    "CalendarCheck",
    "ExpiryFit",
    "SVIFit",
    "SVIParams",
    "SVISurface",
    "SurfaceDiagnostics",
    "SurfaceFit",
    "VolSurface",
    "fit_surface",
    "fit_svi",
    "svi_density",
    "svi_total_variance",
]

ArrayLike = npt.ArrayLike

RHO_LIMIT = 0.999
"""Fits keep ``|ρ| ≤`` this (the constraint is ``|ρ| < 1``)."""
SIGMA_FLOOR = 1e-4
"""Fits keep ``σ ≥`` this (the constraint is ``σ > 0``)."""
B_CEILING = 2.0
"""Fits keep ``b ≤`` this, a necessary condition of Lee's moment bound ``b·(1 + |ρ|) ≤ 2`` on the wings."""
MIN_POINTS = 5
"""SVI has five parameters; a smile needs at least this many quotes."""
ARBITRAGE_TOLERANCE = 1e-10
"""``g(k)`` or a calendar gap below ``-ARBITRAGE_TOLERANCE`` is an arbitrage (float noise is not)."""
IV_UNCERTAINTY_FLOOR = 1e-3
"""The smallest implied-vol uncertainty (0.1 vol point) a quote's weight assumes."""
ForwardMethod = Literal["parity", "carry"]


class SVIParams(NamedTuple):
    """Raw SVI parameters of one smile (see the module docstring)."""

    a: float
    b: float
    rho: float
    m: float
    sigma: float

    def validate(self) -> None:
        """Check Gatheral's parameter constraints.

        Raises:
            DataError: naming the first constraint broken and the values.
        """
        a, b, rho, m, sigma = self
        if not all(np.isfinite(v) for v in self):
            raise DataError(f"SVI parameters must be finite, got {self}")
        if b < 0:
            raise DataError(f"SVI needs b >= 0, got b={b}")
        if not abs(rho) < 1:
            raise DataError(f"SVI needs |rho| < 1, got rho={rho}")
        if not sigma > 0:
            raise DataError(f"SVI needs sigma > 0, got sigma={sigma}")
        if a + b * sigma * np.sqrt(1.0 - rho * rho) < -1e-14:
            raise DataError(f"SVI needs a + b*sigma*sqrt(1-rho^2) >= 0 (w >= 0), got {self}")


def svi_total_variance(k: ArrayLike, params: SVIParams) -> FloatArray:
    """Return the raw-SVI total variance ``w(k)`` at log-moneyness ``k = ln(K/F)``."""
    a, b, rho, m, sigma = params
    x = np.asarray(k, dtype=np.float64) - m
    result: FloatArray = a + b * (rho * x + np.sqrt(x * x + sigma * sigma))
    return result


def _svi_derivatives(k: FloatArray, params: SVIParams) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``w``, ``w'`` and ``w''`` at ``k``."""
    a, b, rho, m, sigma = params
    x = k - m
    root = np.sqrt(x * x + sigma * sigma)
    w = a + b * (rho * x + root)
    return w, b * (rho + x / root), b * sigma * sigma / root**3


def svi_density(k: ArrayLike, params: SVIParams) -> FloatArray:
    """Return Gatheral-Jacquier's ``g(k)`` (the module docstring), proportional to the density.

    ``g(k) < 0`` anywhere means butterfly arbitrage. Where ``w(k) ≤ 0`` the smile is not a
    variance and ``g`` is ``-inf``.
    """
    grid = np.asarray(k, dtype=np.float64)
    w, w1, w2 = _svi_derivatives(grid, params)
    positive = w > 0
    safe = np.where(positive, w, 1.0)
    g = (1.0 - grid * w1 / (2.0 * safe)) ** 2 - 0.25 * w1 * w1 * (1.0 / safe + 0.25) + 0.5 * w2
    result: FloatArray = np.where(positive, g, -np.inf)
    return result


# ---------------------------------------------------------------------------------------- smile fit


@dataclass(frozen=True)
class SVIFit:
    """The result of :func:`fit_svi`.

    Attributes:
        params: the fitted parameters (they satisfy :meth:`SVIParams.validate`).
        rmse: root-mean-square of the total-variance residuals, unweighted.
        max_error: the largest absolute total-variance residual.
        n_points: the points fitted (those with a positive weight).
    """

    params: SVIParams
    rmse: float
    max_error: float
    n_points: int


def _to_raw(x: FloatArray) -> SVIParams:
    v, b, rho, m, sigma = (float(value) for value in x)
    return SVIParams(v - b * sigma * np.sqrt(1.0 - rho * rho), b, rho, m, sigma)


def _starts(k: FloatArray, w: FloatArray, sqrt_weight: FloatArray, lower: FloatArray,
            upper: FloatArray) -> list[FloatArray]:
    """Starting points ``(v, b, ρ, m, σ)``: the quasi-explicit linear fit on a grid of ``(m, σ)``,
    the three with the smallest residual."""
    span = max(float(k.max() - k.min()), 1e-3)
    scored: list[tuple[float, FloatArray]] = []
    for m in np.linspace(k.min(), k.max(), 9):
        for sigma in span * np.array([0.01, 0.03, 0.1, 0.3, 1.0]):
            x = k - m
            root = np.sqrt(x * x + sigma * sigma)
            design = np.column_stack([np.ones_like(k), x, root]) * sqrt_weight[:, None]
            (a, b_rho, b), *_ = np.linalg.lstsq(design, w * sqrt_weight, rcond=None)
            b = float(np.clip(b, 1e-6, B_CEILING))
            rho = float(np.clip(b_rho / b, -0.9, 0.9))
            v = max(a + b * sigma * np.sqrt(1.0 - rho * rho), 0.0)
            start = np.clip(np.array([v, b, rho, m, sigma]), lower, upper)
            residual = (svi_total_variance(k, _to_raw(start)) - w) * sqrt_weight
            scored.append((float(residual @ residual), start))
    scored.sort(key=lambda item: item[0])
    return [start for _, start in scored[:3]]


def fit_svi(log_moneyness: ArrayLike, total_variance: ArrayLike, weights: ArrayLike | None = None) -> SVIFit:
    """Fit a raw-SVI smile to total variances by bounded weighted least squares.

    Minimises ``Σ weight_i·(w(k_i) - total_variance_i)²`` under Gatheral's constraints (kept as
    box bounds on ``(v, b, ρ, m, σ)``, see the module docstring; also ``b ≤ 2`` by Lee's bound
    and ``m`` within two data spans of the data). Three starts from the quasi-explicit grid
    are polished by trust-region reflective least squares; the best is kept. On noiseless SVI
    data the parameters come back to about 1e-8.

    Args:
        log_moneyness: ``k_i = ln(K_i / F)``.
        total_variance: market ``w_i = σ_i²·T`` (≥ 0).
        weights: non-negative weight per point (e.g. vega², or the inverse squared uncertainty
            of ``w_i``); ``None`` weighs all equally. Zero-weight points are left out.

    Returns:
        The fitted parameters and the fit's residual statistics.

    Raises:
        DataError: if the arrays differ in shape, hold non-finite values or negative variances,
            or fewer than :data:`MIN_POINTS` points have a positive weight.
    """
    k = np.asarray(log_moneyness, dtype=np.float64).ravel()
    w = np.asarray(total_variance, dtype=np.float64).ravel()
    weight = np.ones_like(k) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if not k.shape == w.shape == weight.shape:
        raise DataError(f"fit_svi: log_moneyness {k.shape}, total_variance {w.shape} and weights "
                        f"{weight.shape} must have one shape")
    for name, values in (("log_moneyness", k), ("total_variance", w), ("weights", weight)):
        if not np.isfinite(values).all():
            index = int(np.flatnonzero(~np.isfinite(values))[0])
            raise DataError(f"fit_svi: {name} holds a non-finite value at index {index}")
    for name, values in (("total_variance", w), ("weights", weight)):
        if (values < 0).any():
            index = int(np.flatnonzero(values < 0)[0])
            raise DataError(f"fit_svi: {name} must be >= 0; index {index} is negative")
    used = weight > 0
    if used.sum() < MIN_POINTS:
        raise DataError(f"fit_svi: SVI needs at least {MIN_POINTS} points with a positive weight, "
                        f"got {int(used.sum())}")
    k, w = k[used], w[used]
    sqrt_weight = np.sqrt(weight[used] / weight[used].mean())
    span = max(float(k.max() - k.min()), 1e-3)
    lower = np.array([0.0, 0.0, -RHO_LIMIT, k.min() - 2.0 * span, SIGMA_FLOOR])
    upper = np.array([max(4.0 * float(w.max()), 1e-6), B_CEILING, RHO_LIMIT, k.max() + 2.0 * span,
                      10.0 * span])

    def residuals(x: FloatArray) -> FloatArray:
        return (svi_total_variance(k, _to_raw(x)) - w) * sqrt_weight

    def jacobian(x: FloatArray) -> FloatArray:
        _, b, rho, m, sigma = x
        shift = k - m
        root = np.sqrt(shift * shift + sigma * sigma)
        cos = np.sqrt(1.0 - rho * rho)
        columns = (np.ones_like(k), rho * shift + root - sigma * cos, b * (shift + sigma * rho / cos),
                   -b * (rho + shift / root), b * (sigma / root - cos))
        return np.column_stack(columns) * sqrt_weight[:, None]

    fits = [least_squares(residuals, start, jac=jacobian, bounds=(lower, upper), method="trf", x_scale="jac",
                          ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=500)
            for start in _starts(k, w, sqrt_weight, lower, upper)]
    best = min(fits, key=lambda fit: float(fit.cost)).x
    params = _to_raw(best)
    error = svi_total_variance(k, params) - w
    return SVIFit(params, float(np.sqrt(np.mean(error * error))), float(np.abs(error).max()), int(k.size))


# ---------------------------------------------------------------------------------------- surface


@runtime_checkable
class VolSurface(Protocol):
    """An implied-volatility surface of one underlying at one quote time."""

    def implied_vol(self, strike: ArrayLike, t_years: ArrayLike) -> FloatArray:
        """Black-Scholes implied volatility at ``strike`` and ``t_years`` (broadcast)."""
        ...

    def total_variance(self, log_moneyness: ArrayLike, t_years: ArrayLike) -> FloatArray:
        """Total implied variance ``σ²·T`` at forward log-moneyness ``ln(K/F(T))`` (broadcast)."""
        ...

    def forward(self, t_years: ArrayLike) -> FloatArray:
        """The underlying's forward price for delivery at ``t_years``."""
        ...


@dataclass(frozen=True)
class ButterflyCheck:
    """The density check of one smile: ``arbitrage`` when ``min_density < -ARBITRAGE_TOLERANCE``."""

    t_years: float
    min_density: float
    worst_k: float
    arbitrage: bool


@dataclass(frozen=True)
class CalendarCheck:
    """The check of two adjacent smiles: ``min_gap = min_k (w_far(k) - w_near(k))``; ``arbitrage``
    when it is below ``-ARBITRAGE_TOLERANCE``."""

    t_near: float
    t_far: float
    min_gap: float
    worst_k: float
    arbitrage: bool


@dataclass(frozen=True)
class ArbitrageReport:
    """Butterfly checks per fitted expiry and calendar checks per adjacent pair, on ``k_grid``."""

    butterfly: tuple[ButterflyCheck, ...]
    calendar: tuple[CalendarCheck, ...]
    k_grid: FloatArray = field(repr=False)

    @property
    def free(self) -> bool:
        """True when no check found an arbitrage."""
        return not any(c.arbitrage for c in (*self.butterfly, *self.calendar))


@dataclass(frozen=True, eq=False)
class SVISurface:
    """Raw-SVI smiles at fitted expiries, interpolated in time (see the module docstring).

    Args:
        spot: the underlying's price at the quote time.
        t_years: the fitted expiries' times (years), strictly increasing and > 0.
        forwards: each expiry's forward price.
        params: each expiry's SVI parameters.
        expiries: the expiry dates, when known (labels only).

    Raises:
        DataError: on lengths that differ, times not strictly increasing and positive, a
            non-positive spot or forward, or parameters that break SVI's constraints.
    """

    spot: float
    t_years: FloatArray
    forwards: FloatArray
    params: tuple[SVIParams, ...]
    expiries: tuple[date, ...] | None = None

    def __post_init__(self) -> None:
        t = np.array(self.t_years, dtype=np.float64).ravel()
        forwards = np.array(self.forwards, dtype=np.float64).ravel()
        params = tuple(SVIParams(*p) for p in self.params)
        if not len(t) == len(forwards) == len(params) or len(t) == 0:
            raise DataError(f"SVISurface: t_years ({len(t)}), forwards ({len(forwards)}) and params "
                            f"({len(params)}) must have one non-zero length")
        if self.expiries is not None and len(self.expiries) != len(t):
            raise DataError(f"SVISurface: {len(self.expiries)} expiries for {len(t)} smiles")
        if not (np.isfinite(t).all() and (t > 0).all() and (np.diff(t) > 0).all()):
            raise DataError(f"SVISurface: t_years must be finite, > 0 and strictly increasing, "
                            f"got {t.tolist()}")
        prices = np.concatenate([[self.spot], forwards])
        if not (np.isfinite(prices).all() and (prices > 0).all()):
            raise DataError(f"SVISurface: spot and forwards must be > 0, got {self.spot} and "
                            f"{forwards.tolist()}")
        for p in params:
            p.validate()
        t.flags.writeable = False
        forwards.flags.writeable = False
        object.__setattr__(self, "t_years", t)
        object.__setattr__(self, "forwards", forwards)
        object.__setattr__(self, "params", params)

    def _times(self, t_years: ArrayLike) -> FloatArray:
        t = np.asarray(t_years, dtype=np.float64)
        bad = ~(np.isfinite(t) & (t > 0))
        if bad.any():
            raise DataError(f"SVISurface: t_years must be finite and > 0, got {t[bad].ravel()[0]}")
        return t

    def forward(self, t_years: ArrayLike) -> FloatArray:
        """The forward at ``t_years``: ``ln F`` linear in ``T`` through ``(0, ln S)`` and the fitted
        forwards; the last interval's forward rate continues beyond the last expiry.

        Raises:
            DataError: if a time is not finite and > 0.
        """
        t = self._times(t_years)
        nodes_t = np.concatenate([[0.0], self.t_years])
        nodes_log = np.log(np.concatenate([[self.spot], self.forwards]))
        log_f = np.interp(t, nodes_t, nodes_log)
        slope = (nodes_log[-1] - nodes_log[-2]) / (nodes_t[-1] - nodes_t[-2])
        beyond = t > nodes_t[-1]
        result: FloatArray = np.exp(np.where(beyond, nodes_log[-1] + slope * (t - nodes_t[-1]), log_f))
        return result

    def total_variance(self, log_moneyness: ArrayLike, t_years: ArrayLike) -> FloatArray:
        """The total variance at forward log-moneyness ``k`` and time ``T`` (broadcast): linear in
        ``T`` at fixed ``k`` between fitted expiries, ``(T/T_1)·w_1(k)`` before the first and
        ``(T/T_n)·w_n(k)`` after the last.

        Raises:
            DataError: if a time is not finite and > 0.
        """
        k, t = np.broadcast_arrays(np.asarray(log_moneyness, dtype=np.float64), self._times(t_years))
        nodes = self.t_years
        smiles = np.stack([svi_total_variance(k, p) for p in self.params])  # (n, *shape)
        first = t / nodes[0] * smiles[0]
        if len(nodes) == 1:
            return np.asarray(first, dtype=np.float64)
        upper = np.clip(np.searchsorted(nodes, t, side="left"), 1, len(nodes) - 1)
        lower = upper - 1
        w_lo = np.take_along_axis(smiles, lower[None, ...], axis=0)[0]
        w_hi = np.take_along_axis(smiles, upper[None, ...], axis=0)[0]
        t_lo, t_hi = nodes[lower], nodes[upper]
        inside = w_lo + (t - t_lo) / (t_hi - t_lo) * (w_hi - w_lo)
        result = np.where(t < nodes[0], first, np.where(t > nodes[-1], t / nodes[-1] * smiles[-1], inside))
        return np.asarray(result, dtype=np.float64)

    def implied_vol(self, strike: ArrayLike, t_years: ArrayLike) -> FloatArray:
        """The Black-Scholes implied volatility ``√(w(ln(K/F(T)), T) / T)`` (broadcast).

        Raises:
            DataError: if a strike is not finite and > 0 or a time is not finite and > 0.
        """
        k_strike = np.asarray(strike, dtype=np.float64)
        if not (np.isfinite(k_strike) & (k_strike > 0)).all():
            raise DataError("SVISurface: strikes must be finite and > 0")
        t = self._times(t_years)
        w = self.total_variance(np.log(k_strike / self.forward(t)), t)
        result: FloatArray = np.sqrt(np.maximum(w, 0.0) / t)
        return result

    def default_k_grid(self) -> FloatArray:
        """1,001 points on ``[-k_max, k_max]``, ``k_max = max(1, 4·√w_n(0))``: four at-the-money
        standard deviations of the last expiry, at least ±1."""
        k_max = max(1.0, 4.0 * float(np.sqrt(max(svi_total_variance(0.0, self.params[-1]), 0.0))))
        return np.linspace(-k_max, k_max, 1001)

    def arbitrage(self, k_grid: ArrayLike | None = None) -> ArbitrageReport:
        """Check every smile for butterfly and every adjacent pair for calendar arbitrage on
        ``k_grid`` (default :meth:`default_k_grid`)."""
        grid = self.default_k_grid() if k_grid is None else np.asarray(k_grid, dtype=np.float64).ravel()
        butterfly = []
        for t, p in zip(self.t_years, self.params, strict=True):
            g = svi_density(grid, p)
            worst = int(np.argmin(g))
            butterfly.append(ButterflyCheck(float(t), float(g[worst]), float(grid[worst]),
                                            bool(g[worst] < -ARBITRAGE_TOLERANCE)))
        calendar = []
        for i in range(len(self.params) - 1):
            gap = svi_total_variance(grid, self.params[i + 1]) - svi_total_variance(grid, self.params[i])
            worst = int(np.argmin(gap))
            calendar.append(CalendarCheck(float(self.t_years[i]), float(self.t_years[i + 1]),
                                          float(gap[worst]), float(grid[worst]),
                                          bool(gap[worst] < -ARBITRAGE_TOLERANCE)))
        return ArbitrageReport(tuple(butterfly), tuple(calendar), grid)


# ---------------------------------------------------------------------------------------- chain fit


@dataclass(frozen=True)
class ExpiryFit:
    """How one expiry's smile fitted the chain.

    Attributes:
        expiry: the expiry date.
        t_years: its time to expiry.
        forward: the forward the log-moneyness was taken against.
        forward_source: ``"parity"`` (implied by put-call parity) or ``"carry"`` (``S·e^((r-q)T)``).
        n_quotes: the out-of-the-money quotes fitted.
        params: the fitted SVI parameters.
        rmse_iv: root-mean-square implied-vol error of the fit (vol units, 0.01 = 1 vol point).
        max_error_iv: the largest absolute implied-vol error.
    """

    expiry: date
    t_years: float
    forward: float
    forward_source: ForwardMethod
    n_quotes: int
    params: SVIParams
    rmse_iv: float
    max_error_iv: float


@dataclass(frozen=True)
class SurfaceDiagnostics:
    """Per-expiry fit statistics, the arbitrage checks, and the expiries left out with why."""

    fits: tuple[ExpiryFit, ...]
    arbitrage: ArbitrageReport
    skipped: tuple[tuple[date, str], ...]

    @property
    def arbitrage_free(self) -> bool:
        """True when no smile has butterfly and no adjacent pair calendar arbitrage."""
        return self.arbitrage.free


@dataclass(frozen=True)
class SurfaceFit:
    """The result of :func:`fit_surface`: the surface and how well it fits."""

    surface: SVISurface
    diagnostics: SurfaceDiagnostics


def _parity_forward(strike: FloatArray, is_call: BoolArray, mid: FloatArray, usable: BoolArray,
                    discount: float) -> float | None:
    """``F = K + (C - P)/D`` at the (up to) three strikes where ``|C - P|`` is least, median; None
    when no strike has both a usable call and put."""
    calls, puts = usable & is_call, usable & ~is_call
    common, call_at, put_at = np.intersect1d(strike[calls], strike[puts], return_indices=True)
    if common.size == 0:
        return None
    difference = mid[calls][call_at] - mid[puts][put_at]
    nearest = np.argsort(np.abs(difference))[:3]
    forward = float(np.median(common[nearest] + difference[nearest] / discount))
    return forward if forward > 0 else None


def fit_surface(
    chain: OptionChain,
    ivs: ArrayLike | None = None,
    *,
    forward_method: ForwardMethod = "parity",
    min_quotes: int = 6,
    min_t_years: float = 2.0 / 365.0,
    k_grid: ArrayLike | None = None,
) -> SurfaceFit:
    """Fit an SVI smile to every expiry of ``chain`` and check the surface for arbitrage.

    Per expiry: the forward ``F`` comes from put-call parity (``forward_method="parity"``, at the
    strikes where call and put mids are closest, discounting at ``chain.rate``; expiries without
    a strike quoted on both sides with a bid fall back to carry) or from carry
    ``S·e^((r-q)T)``. Only out-of-the-money options are used: puts with ``K < F``, calls with
    ``K ≥ F``. Each point's weight makes the fit a least-squares fit of implied vols, each
    divided by its uncertainty: half the bid-ask spread over the Black vega ``D·F·n(d1)·√T``
    (floored at :data:`IV_UNCERTAINTY_FLOOR`), or 1 when a used quote has no two-sided market.

    Args:
        chain: the option chain.
        ivs: implied vols per row of ``chain`` (NaN to leave a row out), computed with the same
            forward as ``forward_method`` gives (use ``"carry"`` for IVs solved with the chain's
            rate and dividend yield). ``None`` solves them here from mid prices with
            :func:`amcp.options.implied_vol.implied_vol` (European Black-Scholes with the
            forward's implied carry; an approximation for American options, small out of the
            money), skipping quotes without a bid.
        forward_method: ``"parity"`` or ``"carry"``.
        min_quotes: expiries with fewer usable quotes are skipped (at least :data:`MIN_POINTS`).
        min_t_years: expiries closer than this are skipped (their smiles are mostly noise).
        k_grid: the log-moneyness grid of the arbitrage checks (default
            :meth:`SVISurface.default_k_grid`).

    Returns:
        The surface over the fitted expiries and its :class:`SurfaceDiagnostics`.

    Raises:
        DataError: if ``ivs`` does not have one value per row, an argument is out of range, or
            no expiry could be fitted (the message lists each expiry's reason).
    """
    if forward_method not in ("parity", "carry"):
        raise DataError(f"fit_surface: forward_method must be 'parity' or 'carry', got {forward_method!r}")
    if min_quotes < MIN_POINTS:
        raise DataError(f"fit_surface: min_quotes must be at least {MIN_POINTS}, got {min_quotes}")
    given: FloatArray | None = None
    if ivs is not None:
        given = np.asarray(ivs, dtype=np.float64)
        if given.shape != (len(chain),):
            raise DataError(f"fit_surface: ivs has shape {given.shape}, expected ({len(chain)},) "
                            "(one per chain row)")
    fits: list[ExpiryFit] = []
    skipped: list[tuple[date, str]] = []
    mid, spread = chain.mid, chain.spread
    two_sided = (chain.bid > 0) & np.isfinite(chain.ask)
    for expiry64 in chain.expiries:
        expiry = expiry64.astype(date)
        rows = np.flatnonzero(chain.expiry == expiry64)
        t = float(chain.t_years[rows[0]])
        if t < min_t_years:
            skipped.append((expiry, f"t_years {t:.6f} < min_t_years {min_t_years:.6f}"))
            continue
        strike, is_call = chain.strike[rows], chain.is_call[rows]
        discount = float(np.exp(-chain.rate * t))
        forward = None
        if forward_method == "parity":
            forward = _parity_forward(strike, is_call, mid[rows], two_sided[rows], discount)
        source: ForwardMethod = "parity" if forward is not None else "carry"
        if forward is None:
            forward = chain.spot * float(np.exp((chain.rate - chain.div_yield) * t))
        out_of_money = np.where(is_call, strike >= forward, strike < forward)
        if given is None:
            from amcp.options.implied_vol import implied_vol

            carry_yield = chain.rate - np.log(forward / chain.spot) / t
            candidates = out_of_money & two_sided[rows]
            vols = np.full(rows.size, np.nan)
            if candidates.any():
                solved = implied_vol(mid[rows][candidates], chain.spot, strike[candidates], t, chain.rate,
                                     carry_yield, is_call[candidates])
                vols[candidates] = np.asarray(solved.vol, dtype=np.float64)
        else:
            vols = given[rows]
        used = out_of_money & np.isfinite(vols) & (vols > 0)
        if used.sum() < min_quotes:
            reason = f"{int(used.sum())} usable out-of-the-money quotes < min_quotes {min_quotes}"
            skipped.append((expiry, reason))
            continue
        iv = vols[used]
        k = np.log(strike[used] / forward)
        w = iv * iv * t
        if two_sided[rows][used].all():
            root_w = np.sqrt(w)
            d1 = (-k + 0.5 * w) / root_w
            vega = discount * forward * np.exp(-0.5 * d1 * d1) / np.sqrt(2.0 * np.pi) * np.sqrt(t)
            uncertainty = np.maximum(0.5 * spread[rows][used] / vega, IV_UNCERTAINTY_FLOOR)
        else:
            uncertainty = np.ones_like(iv)
        smile = fit_svi(k, w, 1.0 / (2.0 * iv * t * uncertainty) ** 2)
        error = np.sqrt(np.maximum(svi_total_variance(k, smile.params), 0.0) / t) - iv
        fits.append(ExpiryFit(expiry, t, forward, source, int(used.sum()), smile.params,
                              float(np.sqrt(np.mean(error * error))), float(np.abs(error).max())))
    if not fits:
        reasons = "; ".join(f"{expiry}: {why}" for expiry, why in skipped) or "the chain is empty"
        raise DataError(f"fit_surface: no expiry of {chain.underlying} at {chain.as_of} could be fitted "
                        f"({reasons})")
    surface = SVISurface(chain.spot, np.array([f.t_years for f in fits]), np.array([f.forward for f in fits]),
                         tuple(f.params for f in fits), tuple(f.expiry for f in fits))
    return SurfaceFit(surface, SurfaceDiagnostics(tuple(fits), surface.arbitrage(k_grid), tuple(skipped)))
