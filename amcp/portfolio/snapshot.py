"""The read-only view of the portfolio that risk, sizing and reports consume."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Mapping

from amcp.domain._fast_init import fast_init


@fast_init
@dataclass(frozen=True, slots=True, kw_only=True)
class PortfolioSnapshot:
    """Portfolio state at ``ts_ns``. All money in USD, exact.

    Attributes:
        positions: signed quantity per symbol over all strategies (short < 0); flat symbols absent.
        strategy_positions: signed quantity per (strategy id, symbol).
        prices: last mark per symbol; ``price_ts_ns`` when each mark was taken.
        gross_exposure: sum of |quantity × price × multiplier| over positions.
        start_of_day_equity: equity at the first mark of the current session (daily loss limit).
    """

    ts_ns: int
    cash: Decimal
    equity: Decimal
    market_value: Decimal
    gross_exposure: Decimal
    buying_power: Decimal
    start_of_day_equity: Decimal
    realized_pnl: Decimal = Decimal(0)
    unrealized_pnl: Decimal = Decimal(0)
    fees: Decimal = Decimal(0)
    positions: Mapping[str, Decimal] = field(default_factory=dict)
    strategy_positions: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    prices: Mapping[str, Decimal] = field(default_factory=dict)
    price_ts_ns: Mapping[str, int] = field(default_factory=dict)
