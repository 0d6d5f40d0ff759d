"""Performance metrics of an equity curve: numpy kernels, arrays in, floats out.

Notation, for an equity curve ``E_0 .. E_{T-1}`` sampled ``P`` times a year (``periods_per_year``):

- period returns ``r_t = E_t / E_{t-1} - 1`` for ``t = 1 .. T-1`` (``n = T - 1`` of them);
  a return after an equity of zero or less is taken as 0 (the account is gone);
- ``years = n / P``;
- ``mean`` and ``std`` are over the ``n`` returns, ``std`` with ``ddof = 1`` (as pandas).

Every metric is a finite float: where a formula would divide by zero the metric is 0.0, so a
metrics dict always serialises to strict JSON.
"""

from __future__ import annotations

import math

import numpy as np

from amcp._typing import FloatArray
from amcp.errors import DataError

METRIC_NAMES: tuple[str, ...] = (
    "total_return",
    "cagr",
    "volatility",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "turnover",
    "hit_rate",
    "exposure",
    "start_equity",
    "end_equity",
    "periods",
    "trades",
)
"""Keys of :func:`compute_metrics`'s result, in display order."""


def compute_metrics(
    equity: FloatArray,
    periods_per_year: float = 252.0,
    gross_exposure: FloatArray | None = None,
    traded_notional: float = 0.0,
    trade_pnls: FloatArray | None = None,
) -> dict[str, float]:
    """Compute the standard performance metrics of an equity curve.

    Formulas (risk-free rate 0; see the module docstring for ``r_t``, ``n``, ``years``):

    - ``total_return = E_{T-1} / E_0 - 1``
    - ``cagr = (E_{T-1} / E_0) ** (1 / years) - 1``; -1.0 if ``E_{T-1} <= 0``; 0.0 if ``n = 0``
    - ``volatility = std(r) * sqrt(P)``
    - ``sharpe = mean(r) / std(r) * sqrt(P)``; 0.0 if ``std(r) = 0`` or ``n < 2``
    - ``sortino = mean(r) / DD * sqrt(P)`` with downside deviation
      ``DD = sqrt(mean(min(r_t, 0) ** 2))`` over all ``n`` returns; 0.0 if ``DD = 0``
    - ``max_drawdown = max_t (1 - E_t / max_{s <= t} E_s)``, a positive fraction
    - ``calmar = cagr / max_drawdown``; 0.0 if ``max_drawdown = 0``
    - ``turnover = (traded_notional / years) / mean(E)``: notional traded per year as a multiple
      of the average equity; 0.0 if ``n = 0``
    - ``hit_rate = #(pnl > 0) / #pnl`` over the finite ``trade_pnls``; 0.0 when there are no
      trades (not NaN, so "no trades" reads as "no winners")
    - ``exposure = mean_t(gross_exposure_t / E_t)`` over periods with ``E_t > 0``; 0.0 if
      ``gross_exposure`` is None

    Also returned: ``start_equity``, ``end_equity``, ``periods`` (``n``) and ``trades``.

    Args:
        equity: shape (T,), account equity at each period end, ``T >= 1``, finite, ``E_0 > 0``.
        periods_per_year: sampling frequency (252 for daily bars).
        gross_exposure: shape (T,), sum of absolute position values at each period end.
        traded_notional: total absolute notional traded over the whole curve, in the equity's
            currency.
        trade_pnls: realised P&L of each closed trade.

    Returns:
        A dict of the names in :data:`METRIC_NAMES` to floats.

    Raises:
        DataError: if ``equity`` is empty, not 1-D, not finite, or starts at zero or below; if
            ``gross_exposure`` has another shape; if ``periods_per_year`` is not positive.
    """
    e = _equity(equity)
    if not periods_per_year > 0:
        raise DataError(f"periods_per_year must be > 0, got {periods_per_year}")
    n = e.size - 1
    years = n / periods_per_year
    r = period_returns(e)

    ratio = e[-1] / e[0]
    total_return = ratio - 1.0
    if n == 0:
        cagr = 0.0
    elif ratio <= 0:
        cagr = -1.0
    else:
        cagr = ratio ** (1.0 / years) - 1.0

    mean = float(r.mean()) if n else 0.0
    std = float(r.std(ddof=1)) if n >= 2 else 0.0
    annual = math.sqrt(periods_per_year)
    volatility = std * annual
    sharpe = mean / std * annual if std > 0 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if n else 0.0
    sortino = mean / downside * annual if downside > 0 else 0.0

    max_drawdown = float(drawdown_series(e).max())
    calmar = cagr / max_drawdown if max_drawdown > 0 else 0.0

    mean_equity = float(e.mean())
    if not math.isfinite(traded_notional):
        raise DataError(f"traded_notional must be finite, got {traded_notional}")
    turnover = abs(traded_notional) / years / mean_equity if n and mean_equity > 0 else 0.0

    pnls = np.asarray(trade_pnls if trade_pnls is not None else (), dtype=np.float64).ravel()
    pnls = pnls[np.isfinite(pnls)]
    hit_rate = float(np.count_nonzero(pnls > 0)) / pnls.size if pnls.size else 0.0

    exposure = 0.0
    if gross_exposure is not None:
        g = np.asarray(gross_exposure, dtype=np.float64)
        if g.shape != e.shape:
            raise DataError(f"gross_exposure has shape {g.shape}, equity has {e.shape}")
        alive = (e > 0) & np.isfinite(g)
        exposure = float(np.mean(np.abs(g[alive]) / e[alive])) if alive.any() else 0.0

    return {
        "total_return": float(total_return),
        "cagr": float(cagr),
        "volatility": float(volatility),
        "sharpe": float(sharpe),
        "sortino": float(sortino),
        "max_drawdown": max_drawdown,
        "calmar": float(calmar),
        "turnover": float(turnover),
        "hit_rate": hit_rate,
        "exposure": exposure,
        "start_equity": float(e[0]),
        "end_equity": float(e[-1]),
        "periods": float(n),
        "trades": float(pnls.size),
    }


def period_returns(equity: FloatArray) -> FloatArray:
    """Return ``r_t = E_t / E_{t-1} - 1``, shape (T-1,); 0.0 where ``E_{t-1} <= 0``.

    Raises:
        DataError: as :func:`compute_metrics` for a bad ``equity``.
    """
    e = _equity(equity)
    previous = e[:-1]
    alive = previous > 0
    out = np.zeros(previous.size)
    out[alive] = e[1:][alive] / previous[alive] - 1.0
    return out


def drawdown_series(equity: FloatArray) -> FloatArray:
    """Return the drawdown at each period, ``1 - E_t / max_{s <= t} E_s``, shape (T,).

    Values are positive fractions of the running peak (0.0 at a new high, 0.25 when 25% below
    it; above 1.0 if equity turns negative).

    Raises:
        DataError: as :func:`compute_metrics` for a bad ``equity``.
    """
    e = _equity(equity)
    peak = np.maximum.accumulate(e)
    return 1.0 - e / peak


def _equity(equity: FloatArray) -> FloatArray:
    e = np.asarray(equity, dtype=np.float64)
    if e.ndim != 1 or e.size == 0:
        raise DataError(f"equity must be a non-empty 1-D array, got shape {e.shape}")
    if not np.isfinite(e).all():
        first = int(np.flatnonzero(~np.isfinite(e))[0])
        raise DataError(f"equity must be finite, got {e[first]} at index {first}")
    if not e[0] > 0:
        raise DataError(f"equity must start above 0, got {e[0]}")
    return e
