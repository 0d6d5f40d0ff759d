"""TradingOrchestrator: the named singleton that drives the trading plane's cycles.

It supervises its component actors (tree of actors) and runs :class:`amcp.engine.cycle.TradingKernel`
over them with :class:`actors.invoker.RayInvoker` — the same cycle the backtest runs in-process.

Obtain it with :func:`get_or_create_orchestrator`: ``name="orchestrator"``, ``namespace="amcp"``,
``get_if_exists=True``; detached with unlimited restarts in live mode. ``run_until`` is idempotent:
asking again for cycles already done runs nothing.
"""

from __future__ import annotations

from typing import Any

import ray

from actors.invoker import RayInvoker
from actors.market_data import MarketDataActor
from actors.planes import build_plane
from amcp.config import TradeConfig
from amcp.data.bars import BarPanel
from amcp.engine.cycle import CycleReport, TradingKernel
from amcp.errors import AmcpError

ORCHESTRATOR_NAME = "orchestrator"
NAMESPACE = "amcp"


class OrchestratorConflictError(AmcpError):
    """Another run's orchestrator is alive on this cluster."""


class TradingOrchestrator:
    """Drives batched cycles over MarketData, Strategy, Portfolio, Risk, OMS, Broker and Journal actors."""

    def __init__(self, config: TradeConfig, panel: BarPanel, run_id: str, journal_url: str | None) -> None:
        self.config = config
        self.run_id = run_id
        options = {"num_cpus": config.ray.actor_num_cpus}
        self.market_data = MarketDataActor.options(**options).remote(panel)
        self.symbols: tuple[str, ...] = panel.symbols
        self.total_cycles = len(panel)
        self.plane = build_plane(config, self.symbols, run_id, journal_url)
        self.kernel = TradingKernel(self.plane, RayInvoker(), bars_close_session=True)

    def identity(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "total_cycles": self.total_cycles, "symbols": len(self.symbols)}

    def status(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "cycles_done": self.kernel.cycles_done,
            "total_cycles": self.total_cycles,
            "trading_state": self.kernel.trading_state.value,
        }

    def run_until(self, target_cycle: int) -> list[CycleReport]:
        """Run cycles until ``target_cycle`` cycles are done (idempotent); return their reports."""
        target = min(target_cycle, self.total_cycles)
        reports: list[CycleReport] = []
        chunk = self.config.ray.cycles_per_call
        while self.kernel.cycles_done < target:
            start = self.kernel.cycles_done
            stop = min(target, start + chunk)
            batches = ray.get(self.market_data.batches.remote(start, stop))
            for batch in batches:
                reports.append(self.kernel.run_cycle(batch))
        return reports

    def engage_kill_switch(self, reason: str) -> CycleReport:
        """Halt trading and cancel working orders, at the time of the last cycle's bars."""
        last = max(self.kernel.cycles_done - 1, 0)
        batch = ray.get(self.market_data.batches.remote(last, last + 1))[0]
        return self.kernel.engage_kill_switch(batch.ts_ns, reason)

    def open_orders(self) -> int:
        return len(ray.get(self.plane.oms.working_orders.remote()))

    def shutdown(self) -> None:
        """Stop the component actors (the orchestrator itself is killed by its owner)."""
        for handle in [self.market_data, self.plane.broker, self.plane.oms, self.plane.portfolio, self.plane.risk,
                       *self.plane.strategies]:
            ray.kill(handle)
        if self.plane.journal is not None:
            ray.get(self.plane.journal.close.remote())
            ray.kill(self.plane.journal)


OrchestratorActor = ray.remote(TradingOrchestrator)


def get_or_create_orchestrator(
    config: TradeConfig, panel_ref: Any, run_id: str, journal_url: str | None, detached: bool = False
) -> Any:
    """Return the cluster's orchestrator, creating it for this run if none is alive.

    Raises:
        OrchestratorConflictError: if an orchestrator of another run is alive.
    """
    options: dict[str, Any] = {
        "name": ORCHESTRATOR_NAME,
        "namespace": NAMESPACE,
        "get_if_exists": True,
        "num_cpus": 0,
        "max_concurrency": 1,
    }
    if detached:
        options.update(lifetime="detached", max_restarts=-1)
    handle = OrchestratorActor.options(**options).remote(config, panel_ref, run_id, journal_url)
    identity = ray.get(handle.identity.remote())
    if identity["run_id"] != run_id:
        raise OrchestratorConflictError(
            f"an orchestrator for run {identity['run_id']} is already running in namespace {NAMESPACE!r}; "
            f"stop that run (or `ray kill` the actor named {ORCHESTRATOR_NAME!r}) before starting {run_id}"
        )
    return handle
