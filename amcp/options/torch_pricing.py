"""Black-Scholes-Merton prices and first-order greeks on torch tensors (CUDA when available).

The same model, formulas, units, limits and input checks as :mod:`amcp.options.black_scholes`
(read its docstring), computed in ``float64`` on a torch device: invalid inputs raise
:class:`~amcp.errors.DataError`, ``T = 0`` or ``σ = 0`` give the discounted forward intrinsic
value and its derivatives. The normal CDF is the numpy module's algorithm (Hart's rational
approximation for ``|x| < 3``, Laplace's continued fraction beyond), so on the CPU the two
paths agree to about 1e-15 relative, tails included.

Arguments are tensors or anything :func:`torch.as_tensor` takes (numpy arrays, lists,
scalars); they broadcast (torch rules) and are moved to ``device``: ``"auto"`` is ``"cuda"``
when :func:`torch.cuda.is_available` and ``"cpu"`` otherwise; any :class:`torch.device` or
its name is accepted as well.
"""

from __future__ import annotations

import math

import numpy.typing as npt
import torch

from amcp.errors import DataError

TORCH_GREEKS: tuple[str, ...] = ("delta", "gamma", "vega", "theta", "rho", "dividend_rho")
"""The keys of :func:`torch_bsm_greeks`' result, in order."""

TensorLike = torch.Tensor | npt.ArrayLike
"""A tensor or anything :func:`torch.as_tensor` accepts (numpy arrays, lists, scalars)."""

_SQRT_2PI = math.sqrt(2.0 * math.pi)
_TAIL_START = 3.0
_TAIL_TERMS = 60
_D_LIMIT = 1e10
_NUMERATOR = (
    3.52624965998911e-02,
    0.700383064443688,
    6.37396220353165,
    33.912866078383,
    112.079291497871,
    221.213596169931,
    220.206867912376,
)
_DENOMINATOR = (
    8.83883476483184e-02,
    1.75566716318264,
    16.064177579207,
    86.7807322029461,
    296.564248779674,
    637.333633378831,
    793.826512519948,
    440.413735824752,
)
_NAMES = ("spot", "strike", "t_years", "rate", "div_yield", "vol")
_LOWER_BOUNDS = {"spot": (0.0, True), "strike": (0.0, True), "t_years": (0.0, False), "vol": (0.0, False)}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for ``device``: ``"auto"`` is CUDA when available, else CPU.

    Raises:
        DataError: if ``device`` names no device torch knows.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DataError(
            f"torch_pricing: device must be 'auto', 'cpu', 'cuda' or 'cuda:N' (got {device!r})"
        ) from exc


def norm_cdf(x: torch.Tensor) -> torch.Tensor:
    """Return the standard normal CDF of ``x`` (same algorithm as the numpy ``norm_cdf``)."""
    z = x.abs()
    zn = z.clamp(max=_TAIL_START)
    numerator = torch.full_like(zn, _NUMERATOR[0])
    for coefficient in _NUMERATOR[1:]:
        numerator = numerator * zn + coefficient
    denominator = torch.full_like(zn, _DENOMINATOR[0])
    for coefficient in _DENOMINATOR[1:]:
        denominator = denominator * zn + coefficient
    near = torch.exp(-0.5 * zn * zn) * numerator / denominator
    zf = z.clamp(min=_TAIL_START)
    fraction = zf.clone()
    for n in range(_TAIL_TERMS, 0, -1):
        fraction = zf + n / fraction
    far = torch.exp(-0.5 * zf * zf) / (fraction * _SQRT_2PI)
    lower = torch.where(z < _TAIL_START, near, far)
    return torch.where(x > 0.0, 1.0 - lower, lower)


def norm_pdf(x: torch.Tensor) -> torch.Tensor:
    """Return the standard normal density of ``x``."""
    return torch.exp(-0.5 * x * x) / _SQRT_2PI


def _inputs(values: tuple[TensorLike, ...], device: str | torch.device) -> list[torch.Tensor]:
    """Move, broadcast and validate ``(spot, strike, t_years, rate, div_yield, vol, is_call)``."""
    target = resolve_device(device)
    *numbers, is_call = values
    floats = [torch.as_tensor(value, dtype=torch.float64, device=target) for value in numbers]
    calls = torch.as_tensor(is_call, device=target)
    if calls.dtype != torch.bool:
        raise DataError(f"bsm: is_call must be boolean (True for a call), got dtype {calls.dtype}")
    try:
        *floats, calls = torch.broadcast_tensors(*floats, calls)
    except RuntimeError as exc:
        shapes = [tuple(t.shape) for t in (*floats, calls)]
        raise DataError(f"bsm: inputs do not broadcast together (shapes {shapes})") from exc
    for name, tensor in zip(_NAMES, floats, strict=True):
        bad = ~torch.isfinite(tensor)
        if not bool(bad.any()) and name in _LOWER_BOUNDS:
            bound, strict = _LOWER_BOUNDS[name]
            bad = tensor <= bound if strict else tensor < bound
            if bool(bad.any()):
                expected = f"> {bound:g}" if strict else f">= {bound:g}"
                raise DataError(f"bsm: {name} must be {expected} (got {float(tensor[bad].flatten()[0])!r})")
        if bool(bad.any()):
            raise DataError(f"bsm: {name} must be finite (got {float(tensor[bad].flatten()[0])!r})")
    return [*floats, calls]


def _d1_d2(
    s: torch.Tensor, k: torch.Tensor, t: torch.Tensor, r: torch.Tensor, q: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``d1``, ``d2``, ``σ√T`` and the live mask (0, 0, 1 where not live)."""
    live = (t > 0.0) & (v > 0.0)
    one = torch.ones_like(t)
    total_sd = torch.where(live, v * torch.sqrt(t), one)
    d1 = torch.where(live, (torch.log(s / k) + (r - q + 0.5 * v * v) * t) / total_sd, torch.zeros_like(t))
    d1 = d1.clamp(-_D_LIMIT, _D_LIMIT)  # as the numpy path: no ±inf from a subnormal σ√T
    d2 = d1 - torch.where(live, total_sd, torch.zeros_like(t))
    return d1, d2, total_sd, live


def torch_bsm_price(
    spot: TensorLike,
    strike: TensorLike,
    t_years: TensorLike,
    rate: TensorLike,
    div_yield: TensorLike,
    vol: TensorLike,
    is_call: TensorLike,
    *,
    device: str | torch.device = "auto",
) -> torch.Tensor:
    """Return Black-Scholes-Merton prices of European options as a ``float64`` tensor.

    Arguments as :func:`amcp.options.black_scholes.bsm_price`, plus ``device`` (module
    docstring).

    Returns:
        The price per unit of underlying on ``device``, broadcast over the inputs.

    Raises:
        DataError: if an input is not finite, out of range, the shapes do not broadcast, or the
            device is unknown.
    """
    s, k, t, r, q, v, calls = _inputs((spot, strike, t_years, rate, div_yield, vol, is_call), device)
    d1, d2, _, live = _d1_d2(s, k, t, r, q, v)
    spot_disc = s * torch.exp(-q * t)
    strike_disc = k * torch.exp(-r * t)
    sign = torch.where(calls, 1.0, -1.0).to(torch.float64)
    price = sign * (spot_disc * norm_cdf(sign * d1) - strike_disc * norm_cdf(sign * d2))
    intrinsic = torch.clamp(sign * (spot_disc - strike_disc), min=0.0)
    return torch.where(live, price, intrinsic)


def torch_bsm_greeks(
    spot: TensorLike,
    strike: TensorLike,
    t_years: TensorLike,
    rate: TensorLike,
    div_yield: TensorLike,
    vol: TensorLike,
    is_call: TensorLike,
    *,
    device: str | torch.device = "auto",
) -> dict[str, torch.Tensor]:
    """Return the first-order Black-Scholes-Merton greeks as ``float64`` tensors.

    Formulas and units as :func:`amcp.options.black_scholes.bsm_greeks`: vega per 1.00 of
    volatility, theta per year (``∂V/∂t``), rho and dividend_rho per 1.00 of rate/yield.

    Returns:
        The keys of :data:`TORCH_GREEKS`, each on ``device`` and broadcast over the inputs.

    Raises:
        DataError: if an input is not finite, out of range, the shapes do not broadcast, or the
            device is unknown.
    """
    s, k, t, r, q, v, calls = _inputs((spot, strike, t_years, rate, div_yield, vol, is_call), device)
    d1, d2, total_sd, live = _d1_d2(s, k, t, r, q, v)
    sign = torch.where(calls, 1.0, -1.0).to(torch.float64)
    spot_disc = s * torch.exp(-q * t)
    strike_disc = k * torch.exp(-r * t)
    density = norm_pdf(d1)
    n1 = norm_cdf(sign * d1)
    n2 = norm_cdf(sign * d2)
    sqrt_t = torch.sqrt(torch.where(live, t, torch.ones_like(t)))
    zero = torch.zeros_like(t)

    delta = sign * spot_disc / s * n1
    gamma = spot_disc * density / (s * s * total_sd)
    vega = spot_disc * density * sqrt_t
    decay = -spot_disc * density * v / (2.0 * sqrt_t)
    theta = decay - sign * r * strike_disc * n2 + sign * q * spot_disc * n1
    rho = sign * t * strike_disc * n2
    dividend_rho = -sign * t * spot_disc * n1

    in_money = sign * (spot_disc - strike_disc) > 0.0
    dead_theta = torch.where(in_money, sign * (q * spot_disc - r * strike_disc), zero)
    return {
        "delta": torch.where(live, delta, torch.where(in_money, sign * spot_disc / s, zero)),
        "gamma": torch.where(live, gamma, zero),
        "vega": torch.where(live, vega, zero),
        "theta": torch.where(live, theta, dead_theta),
        "rho": torch.where(live, rho, torch.where(in_money, sign * t * strike_disc, zero)),
        "dividend_rho": torch.where(live, dividend_rho, torch.where(in_money, -sign * t * spot_disc, zero)),
    }
