"""LiveOMSActor: the live order path in a Ray actor that restarts after a crash.

Ray restarts the actor (``max_restarts=-1``) by running its constructor again; the constructor
builds a fresh :class:`~amcp.execution.live.LiveExecutionEngine` over the same database, audit
log and broker and reconciles before anything else, so a restarted OMS holds trading HALTED
until the store and the broker agree. Calls are not retried by Ray (``max_task_retries=0``): a
submit interrupted by a crash is finished by reconciliation, never by a blind re-run.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import ray

from amcp.config import RiskConfig
from amcp.domain.messages import CancelOrder, OrderEvent, SubmitOrder
from amcp.risk.engine import RiskContext, RiskEngine


class LiveOMS:
    """Builds the engine from plain settings (picklable, so Ray can rebuild it on restart).

    Args:
        broker: keyword arguments of :class:`amcp.brokers.alpaca.AlpacaBroker` (key pair, URL…).
        database_url: the trading state and audit database (SQLAlchemy URL).
        risk: the pre-trade limits.
        crash_at: test hook: ``(point, marker_path)`` — exit the process at ``point`` of a
            submit unless ``marker_path`` exists (it is created first, so a restarted actor does
            not crash again). ``point`` is one of the engine's crash points.
    """

    def __init__(self, broker: Mapping[str, Any], database_url: str, risk: RiskConfig,
                 crash_at: tuple[str, str] | None = None) -> None:
        from amcp.brokers.alpaca import AlpacaBroker
        from amcp.execution.live import LiveExecutionEngine
        from amcp.store.audit import AuditLog
        from amcp.store.state import TradingStateStore

        hook = None
        if crash_at is not None:
            point, marker = crash_at

            def hook(name: str) -> None:
                if name == point and not os.path.exists(marker):
                    with open(marker, "w") as handle:
                        handle.write(name)
                    os._exit(1)  # a kill, not an exception: nothing after this line runs

        self.engine = LiveExecutionEngine(AlpacaBroker(**broker), TradingStateStore(database_url),
                                          AuditLog(database_url), RiskEngine(risk), crash_hook=hook)
        self.report = self.engine.start()
        self.pid = os.getpid()

    def reconcile_report(self) -> dict[str, Any]:
        return self.report.to_dict()

    def reconcile(self) -> dict[str, Any]:
        self.report = self.engine.reconcile()
        return self.report.to_dict()

    def submit(self, commands: Sequence[SubmitOrder], ctx: RiskContext) -> list[OrderEvent]:
        return self.engine.submit(commands, ctx)

    def resume_pending(self, ctx: RiskContext) -> list[OrderEvent]:
        return self.engine.resume_pending(ctx)

    def cancel(self, commands: Sequence[CancelOrder]) -> list[OrderEvent]:
        return self.engine.cancel(commands)

    def on_trade_updates(self, messages: Sequence[Mapping[str, Any]], strategy_id: str = "",
                         sessions: int | None = None) -> list[OrderEvent]:
        """Record ``trade_updates`` payloads; see ``LiveExecutionEngine.on_trade_updates``."""
        return self.engine.on_trade_updates(messages, strategy_id, sessions)

    def kill(self, reason: str) -> int:
        return self.engine.kill(reason)

    def process_id(self) -> int:
        return self.pid


LiveOMSActor = ray.remote(max_restarts=-1, max_task_retries=0)(LiveOMS)
