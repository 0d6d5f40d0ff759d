"""The event-driven backtest: the trading cycle in one process, no Ray, no actor hops.

Strategies → sizing → risk → OMS → simulated venue → portfolio, cycle by cycle over a
:class:`~amcp.data.bars.BarPanel`. The paper trading plane runs the same
:class:`~amcp.engine.cycle.TradingKernel` over actors; a test holds their fills equal.
"""

from __future__ import annotations

from typing import Callable, Sequence

from amcp.config import BacktestConfig, StrategyConfig, TradeConfig
from amcp.data.bars import BarPanel
from amcp.engine.components import PortfolioService, StrategyGroup
from amcp.engine.cycle import Plane, TradingKernel
from amcp.engine.invoker import LocalInvoker
from amcp.engine.recorder import RunRecorder, RunResult
from amcp.execution.oms import OrderManager
from amcp.execution.venue import SimulatedVenue
from amcp.risk.engine import RiskEngine

ProgressFn = Callable[[int, int], None]


def split_strategies(configs: Sequence[StrategyConfig], groups: int) -> list[list[StrategyConfig]]:
    """Deal strategies round-robin into at most ``groups`` non-empty groups (deterministic)."""
    count = max(1, min(groups, len(configs)))
    buckets: list[list[StrategyConfig]] = [[] for _ in range(count)]
    for index, config in enumerate(configs):
        buckets[index % count].append(config)
    return buckets


def capital_fractions(config: BacktestConfig | TradeConfig) -> dict[str, float]:
    return {s.id: s.capital_fraction for s in config.strategies}


def build_local_plane(config: BacktestConfig | TradeConfig, symbols: tuple[str, ...], journal: object | None = None) -> Plane:
    """The components as plain objects, built exactly as the actors build them."""
    return Plane(
        broker=SimulatedVenue(config.venue),
        oms=OrderManager(),
        portfolio=PortfolioService(config.account, config.sizing, capital_fractions(config)),
        risk=RiskEngine(config.risk),
        strategies=[StrategyGroup(group, symbols) for group in split_strategies(config.strategies, 1)],
        journal=journal,
    )


class BacktestEngine:
    """Runs a config over a bar panel in-process."""

    def __init__(self, config: BacktestConfig | TradeConfig, panel: BarPanel, journal: object | None = None) -> None:
        self.config = config
        self.panel = panel
        self.plane = build_local_plane(config, panel.symbols, journal)
        self.kernel = TradingKernel(self.plane, LocalInvoker(), bars_close_session=True)

    def run(self, progress: ProgressFn | None = None, every: int = 50) -> RunResult:
        recorder = RunRecorder()
        total = len(self.panel)
        for index, batch in enumerate(self.panel.batches()):
            recorder.add([self.kernel.run_cycle(batch)])
            if progress is not None and ((index + 1) % every == 0 or index + 1 == total):
                progress(index + 1, total)
        return recorder.result()
