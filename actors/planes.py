"""Build the trading plane's component actors for a run (one place per mode).

The orchestrator calls :func:`build_plane`; each mode decides which actors fill the
:class:`~amcp.engine.cycle.Plane`'s roles. ``paper`` replays history through the simulated venue.
"""

from __future__ import annotations

from typing import Any

from actors.broker import SimBrokerActor
from actors.journal import JournalActor
from actors.oms import OMSActor
from actors.portfolio import PortfolioActor
from actors.risk import RiskActor
from actors.strategy import StrategyActor
from amcp.backtest.engine import capital_fractions, split_strategies
from amcp.config import TradeConfig
from amcp.engine.cycle import Plane


def build_plane(config: TradeConfig, symbols: tuple[str, ...], run_id: str, journal_url: str | None) -> Plane:
    """Create the component actors of ``config.mode`` and return them as a :class:`Plane`."""
    options: dict[str, Any] = {"num_cpus": config.ray.actor_num_cpus}
    journal = JournalActor.options(**options).remote(journal_url, run_id) if journal_url else None
    groups = split_strategies(config.strategies, config.ray.num_strategy_actors)
    return Plane(
        broker=SimBrokerActor.options(**options).remote(config.venue),
        oms=OMSActor.options(**options).remote(),
        portfolio=PortfolioActor.options(**options).remote(config.account, config.sizing, capital_fractions(config)),
        risk=RiskActor.options(**options).remote(config.risk),
        strategies=[StrategyActor.options(**options).remote(group, symbols) for group in groups],
        journal=journal,
    )
