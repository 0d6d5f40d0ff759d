"""Named option strategies: a declarative catalog, a builder from chains, analytics and margin.

* :mod:`.catalog` — ``CATALOG``: every named strategy as a :class:`StrategySpec` (legs relative
  to strike slots and near/far expiries; LEAN's names where LEAN has the strategy).
* :mod:`.builder` — :func:`build` resolves a spec against an option chain (strikes by strike,
  delta, ATM steps/offset or width; mid premiums), :func:`assemble` from explicit strikes.
* :mod:`.analytics` — P&L at and before expiry, breakevens, max profit/loss with unlimited
  sides, probability of profit, net greeks.
* :mod:`.margin` — Reg-T strategy-based initial margin (CBOE rules).
* :mod:`.plot` — payoff diagrams as PNG.
"""

from amcp.options.strategies._model import (
    AtDelta,
    AtmOffset,
    AtmSteps,
    AtStrike,
    FromStrike,
    OptionLeg,
    OptionLegSpec,
    StockLeg,
    StrategyError,
    StrategyPosition,
    StrategySpec,
    StrikeSelector,
    WidthRule,
)
from amcp.options.strategies.analytics import (
    ProfitBounds,
    breakevens,
    net_greeks,
    pnl,
    pnl_at_expiry,
    price_grid,
    probability_of_profit,
    profit_bounds,
)
from amcp.options.strategies.builder import assemble, build, resolve_expiry
from amcp.options.strategies.catalog import CATALOG, get_spec, names
from amcp.options.strategies.margin import MarginRequirement, cash_secured_put_collateral, reg_t_margin

__all__ = [
    "CATALOG",
    "AtDelta",
    "AtStrike",
    "AtmOffset",
    "AtmSteps",
    "FromStrike",
    "MarginRequirement",
    "cash_secured_put_collateral",
    "OptionLeg",
    "OptionLegSpec",
    "ProfitBounds",
    "StockLeg",
    "StrategyError",
    "StrategyPosition",
    "StrategySpec",
    "StrikeSelector",
    "WidthRule",
    "assemble",
    "breakevens",
    "build",
    "get_spec",
    "names",
    "net_greeks",
    "pnl",
    "pnl_at_expiry",
    "price_grid",
    "probability_of_profit",
    "profit_bounds",
    "reg_t_margin",
    "resolve_expiry",
]
