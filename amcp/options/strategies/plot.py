"""Payoff diagrams of a :class:`StrategyPosition` as PNG images (matplotlib's Agg canvas).

The figure is built on a :class:`matplotlib.figure.Figure` with an Agg canvas — no pyplot state,
no display — so it renders the same in a worker, a test or a server.
"""

from __future__ import annotations

import io
import math
from datetime import datetime
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from amcp.options.strategies._model import StrategyPosition
from amcp.options.strategies.analytics import breakevens, pnl, pnl_at_expiry, price_grid

__all__ = ["render_payoff"]


def render_payoff(
    position: StrategyPosition,
    path: str | Path | None = None,
    *,
    vol: float | None = None,
    at: datetime | None = None,
    points: int = 401,
    size_in: tuple[float, float] = (8.0, 5.0),
    dpi: int = 100,
) -> bytes:
    """Render the P&L at the first expiry (and, with volatilities, before it) as a PNG.

    Args:
        position: the position.
        path: where to write the PNG; None writes nothing.
        vol: the volatility to value live legs; None uses each leg's own. The before-expiry
            curve (at ``at``, default ``as_of``) is drawn only when every leg has a volatility.
        at: the valuation time of the before-expiry curve.
        points: the number of prices on the grid.
        size_in: the figure's width and height in inches.
        dpi: dots per inch.

    Returns:
        The PNG bytes.

    Raises:
        StrategyError: if a later leg of a calendar or diagonal has no volatility.
    """
    prices = price_grid(position, points)
    figure = Figure(figsize=size_in, dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    at_expiry = pnl_at_expiry(position, prices, vol=vol)
    axes.plot(prices, at_expiry, color="tab:blue", label=f"at expiry {position.expiries[0]}")
    axes.fill_between(prices, at_expiry, 0.0, where=at_expiry > 0, color="tab:green", alpha=0.15)
    axes.fill_between(prices, at_expiry, 0.0, where=at_expiry < 0, color="tab:red", alpha=0.15)
    if vol is not None or all(math.isfinite(leg.vol) for leg in position.option_legs):
        when = "now" if at is None else f"{at:%Y-%m-%d %H:%M}"
        axes.plot(
            prices,
            pnl(position, prices, at=at, vol=vol),
            color="tab:orange",
            linestyle="--",
            label=f"before expiry ({when})",
        )
    for root in breakevens(position, vol=vol):
        axes.axvline(root, color="grey", linewidth=0.8, linestyle=":")
        axes.annotate(f"{root:.2f}", (root, 0.0), textcoords="offset points", xytext=(3, 5), fontsize=8)
    axes.axhline(0.0, color="black", linewidth=0.8)
    axes.axvline(position.spot, color="tab:purple", linewidth=0.8, label=f"spot {position.spot:g}")
    axes.set_title(f"{position.spec.title} — {position.underlying} ×{position.units}")
    axes.set_xlabel(f"{position.underlying} price")
    axes.set_ylabel("P&L")
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
