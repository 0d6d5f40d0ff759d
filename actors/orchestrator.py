"""TradingOrchestrator: the named singleton that drives the trading plane's cycles.

It supervises its component actors (tree of actors) and runs :class:`amcp.engine.cycle.TradingKernel`
over them with :class:`actors.invoker.RayInvoker` — the same cycle the backtest runs in-process.

Obtain it with :func:`get_or_create_orchestrator`: ``name="orchestrator"``, ``namespace="amcp"``,
``get_if_exists=True``; detached with unlimited restarts in live mode, ``ray.orchestrator_max_restarts``
restarts in paper mode. ``run_until`` is idempotent: asking again for cycles already done runs nothing.

Recovery. After every ``ray.checkpoint_every_cycles`` cycles (and after the kill switch) the
orchestrator writes a :class:`~amcp.engine.checkpoint.Checkpoint` to the run's journal database:
the kernel's state, a snapshot of every stateful component (broker, OMS, portfolio, risk, each
strategy group), the journal's last ``seq``, the restart count and the cycle reports the driver
has not acknowledged. When it crashes, its component actors die with it (they are owned by it),
and Ray runs its constructor again: it builds fresh components, loads the run's latest
checkpoint, restores every component, rolls the journal back to the checkpoint (fencing off the
old journal actor, see :mod:`amcp.store.journal`) and continues from the checkpoint's cycle. The
cycles after it run again exactly as before: every component is deterministic given its state,
the venue's seeded latency generator included. The driver side is :func:`drive_orchestrator`,
which retries a call a crash interrupted and keeps reports by cycle. Without a journal database
nothing is checkpointed and a paper orchestrator is not restarted.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import ray

from actors.invoker import RayInvoker
from actors.market_data import MarketDataActor
from actors.planes import build_plane
from amcp.config import TradeConfig
from amcp.data.bars import BarPanel
from amcp.engine.checkpoint import Checkpoint, CheckpointError, CheckpointStore
from amcp.engine.cycle import CycleReport, TradingKernel
from amcp.errors import AmcpError

ORCHESTRATOR_NAME = "orchestrator"
NAMESPACE = "amcp"


class OrchestratorConflictError(AmcpError):
    """Another run's orchestrator is alive on this cluster."""


class OrchestratorUnavailableError(AmcpError):
    """The orchestrator kept failing: more crashes than it may be restarted for."""

    exit_code = 1  # the run failed on the way; not bad input (exit 2)


class _CrashAfterJournalWrite(RayInvoker):
    """Test hook: exits the process right after the first journal write of cycle ``cycle``.

    The marker file is created first, so the restarted orchestrator does not crash again.
    """

    def __init__(self, cycle: int, marker_path: str) -> None:
        super().__init__()
        self.cycle = cycle
        self.marker_path = marker_path

    def call(self, target: Any, method: str, *args: Any) -> Any:
        result = super().call(target, method, *args)
        if method == "record" and args[1] == self.cycle and not os.path.exists(self.marker_path):
            with open(self.marker_path, "w") as handle:
                handle.write(str(self.cycle))
            os._exit(1)  # a kill, not an exception: nothing after this line runs
        return result


class TradingOrchestrator:
    """Drives batched cycles over MarketData, Strategy, Portfolio, Risk, OMS, Broker and Journal actors.

    Args:
        config: the run's configuration.
        panel: the bars to replay, one batch per cycle.
        run_id: the run; it keys the journal and the checkpoints.
        journal_url: the journal (and checkpoint) database; None keeps neither.
        crash_at: test hook ``(cycle, marker_path)``: exit the process right after the first
            journal write of ``cycle`` unless ``marker_path`` exists (it is created first).

    Raises:
        CheckpointError: on a restart, if the run has no usable checkpoint or it does not fit
            the components (another number of strategy groups).
    """

    def __init__(self, config: TradeConfig, panel: BarPanel, run_id: str, journal_url: str | None,
                 crash_at: tuple[int, str] | None = None) -> None:
        self.config = config
        self.run_id = run_id
        options = {"num_cpus": config.ray.actor_num_cpus}
        self.market_data = MarketDataActor.options(**options).remote(panel)
        self.symbols: tuple[str, ...] = panel.symbols
        self.total_cycles = len(panel)
        self.plane = build_plane(config, self.symbols, run_id, journal_url)
        self._invoker = RayInvoker()
        cycle_invoker = self._invoker if crash_at is None else _CrashAfterJournalWrite(*crash_at)
        self.kernel = TradingKernel(self.plane, cycle_invoker, bars_close_session=True)
        self._pending: list[CycleReport] = []  # reports the driver has not acknowledged, by cycle
        self._store = CheckpointStore(journal_url, run_id) if journal_url else None
        self.restarts = 0
        self._cycle_checkpoints = 0  # taken by run_until in this process, and their wall time
        self._cycle_checkpoint_seconds = 0.0
        if ray.get_runtime_context().was_current_actor_reconstructed:
            self._resume()
        elif self._store is not None:
            self._store.discard()  # a new orchestrator starts the run's checkpoints afresh
            self._checkpoint()

    # ------------------------------------------------------------------ checkpoints
    def _stateful_components(self) -> dict[str, Any]:
        """Component handles by role: those whose state a checkpoint holds."""
        plane = self.plane
        roles = {"broker": plane.broker, "oms": plane.oms, "portfolio": plane.portfolio, "risk": plane.risk}
        roles.update({f"strategy-{i}": group for i, group in enumerate(plane.strategies)})
        return roles

    def _checkpoint(self) -> float:
        """Snapshot every component (in parallel) and write the checkpoint; return its wall time in seconds."""
        if self._store is None:
            return 0.0
        started = time.perf_counter()
        roles = self._stateful_components()
        calls = [(handle, "checkpoint_state", ()) for handle in roles.values()]
        calls.append((self.plane.journal, "last_seq", ()))
        *snapshots, journal_seq = self._invoker.gather(calls)
        self._store.save(
            Checkpoint(
                run_id=self.run_id,
                cycles_done=self.kernel.cycles_done,
                journal_seq=journal_seq,
                restarts=self.restarts,
                kernel_state=self.kernel.state(),
                component_states=dict(zip(roles, snapshots)),
                pending_reports=tuple(self._pending),
            )
        )
        return time.perf_counter() - started

    def _resume(self) -> None:
        """Restore the run's latest checkpoint into the fresh components, then record the restart."""
        if self._store is None:
            raise CheckpointError(
                f"orchestrator of run {self.run_id} was restarted but keeps no checkpoints (no journal database)"
            )
        checkpoint = self._store.latest()
        roles = self._stateful_components()
        if set(checkpoint.component_states) != set(roles):
            raise CheckpointError(
                f"checkpoint of run {self.run_id} at cycle {checkpoint.cycles_done} holds components "
                f"{sorted(checkpoint.component_states)}, this orchestrator has {sorted(roles)}"
            )
        calls = [(handle, "restore_state", (checkpoint.component_states[role],)) for role, handle in roles.items()]
        calls.append((self.plane.journal, "restore_to", (checkpoint.journal_seq,)))
        self._invoker.gather(calls)
        self.kernel.load_state(checkpoint.kernel_state)
        self._pending = list(checkpoint.pending_reports)
        self.restarts = checkpoint.restarts + 1
        self._checkpoint()

    # ------------------------------------------------------------------ API
    def identity(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "total_cycles": self.total_cycles, "symbols": len(self.symbols)}

    def status(self) -> dict[str, Any]:
        """The run's progress, restarts and the cost of the checkpoints ``run_until`` took in this process."""
        return {
            "run_id": self.run_id,
            "cycles_done": self.kernel.cycles_done,
            "total_cycles": self.total_cycles,
            "trading_state": self.kernel.trading_state.value,
            "restarts": self.restarts,
            "cycle_checkpoints": self._cycle_checkpoints,
            "cycle_checkpoint_seconds": self._cycle_checkpoint_seconds,
        }

    def components(self) -> dict[str, Any]:
        """The component actor handles by role (market data and journal included), for supervision."""
        handles = {"market_data": self.market_data, **self._stateful_components()}
        if self.plane.journal is not None:
            handles["journal"] = self.plane.journal
        return handles

    def run_until(self, target_cycle: int, from_cycle: int | None = None) -> list[CycleReport]:
        """Run cycles until ``target_cycle`` cycles are done (idempotent) and return reports.

        Args:
            target_cycle: cycles that should be done when the call returns (capped at the panel).
            from_cycle: the first cycle whose report the caller does not hold yet. The call
                returns the report of every cycle from there on, including cycles a crashed
                incarnation ran and checkpointed before the caller got them. None: return
                only the cycles this call runs.
        """
        if from_cycle is None:
            self._pending = []
        else:
            self._pending = [report for report in self._pending if report.cycle >= from_cycle]
        target = min(target_cycle, self.total_cycles)
        chunk = self.config.ray.cycles_per_call
        every = self.config.ray.checkpoint_every_cycles
        while self.kernel.cycles_done < target:
            start = self.kernel.cycles_done
            stop = min(target, start + chunk)
            batches = ray.get(self.market_data.batches.remote(start, stop))
            for batch in batches:
                self._pending.append(self.kernel.run_cycle(batch))
                if self.kernel.cycles_done % every == 0:
                    self._cycle_checkpoint_seconds += self._checkpoint()
                    self._cycle_checkpoints += 1
        return list(self._pending)

    def engage_kill_switch(self, reason: str) -> CycleReport:
        """Halt trading and cancel working orders, at the time of the last cycle's bars (checkpointed)."""
        last = max(self.kernel.cycles_done - 1, 0)
        batch = ray.get(self.market_data.batches.remote(last, last + 1))[0]
        report = self.kernel.engage_kill_switch(batch.ts_ns, reason)
        self._checkpoint()
        return report

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
        if self._store is not None:
            self._store.close()


OrchestratorActor = ray.remote(TradingOrchestrator)


def get_or_create_orchestrator(
    config: TradeConfig,
    panel_ref: Any,
    run_id: str,
    journal_url: str | None,
    detached: bool = False,
    crash_at: tuple[int, str] | None = None,
) -> Any:
    """Return the cluster's orchestrator, creating it for this run if none is alive.

    A paper orchestrator with a journal is restarted up to ``config.ray.orchestrator_max_restarts``
    times; without a journal it is not restarted (it has no checkpoint to resume from). Calls
    are never retried by Ray: :func:`drive_orchestrator` retries them. Keep ``panel_ref`` alive
    (hold the ``ray.put`` result) for the whole run: a restarted orchestrator reads it again, and
    Ray frees an object nobody references once the first constructor has run.

    Raises:
        OrchestratorConflictError: if an orchestrator of another run is alive.
    """
    options: dict[str, Any] = {
        "name": ORCHESTRATOR_NAME,
        "namespace": NAMESPACE,
        "get_if_exists": True,
        "num_cpus": 0,
        "max_concurrency": 1,
        "max_restarts": config.ray.orchestrator_max_restarts if journal_url else 0,
        "max_task_retries": 0,
    }
    if detached:
        options.update(lifetime="detached", max_restarts=-1)
    handle = OrchestratorActor.options(**options).remote(config, panel_ref, run_id, journal_url, crash_at)
    identity = ray.get(handle.identity.remote())
    if identity["run_id"] != run_id:
        raise OrchestratorConflictError(
            f"an orchestrator for run {identity['run_id']} is already running in namespace {NAMESPACE!r}; "
            f"stop that run (or `ray kill` the actor named {ORCHESTRATOR_NAME!r}) before starting {run_id}"
        )
    return handle


def drive_orchestrator(
    handle: Any,
    target_cycle: int,
    cycles_per_call: int,
    reports: dict[int, CycleReport],
    max_failures: int,
    progress: Callable[[int], object] | None = None,
    restart_timeout_s: float = 300.0,
) -> int:
    """Call ``run_until`` until ``reports`` holds cycles ``0 .. target_cycle - 1``, surviving crashes.

    A call that fails because the orchestrator died (``RayActorError``, ``ActorUnavailableError``
    included) is made again once the orchestrator is back (a ``status`` call that Ray holds until
    the restart is done); the restarted orchestrator answers it from its checkpoint. Reports are
    stored by cycle, so a cycle reported twice is replaced, never counted twice.

    Args:
        handle: the orchestrator.
        target_cycle: how many cycles to have reports for (stops early if the panel is shorter).
        cycles_per_call: cycles asked for per call.
        reports: cycle -> report, filled in place; it must hold cycles ``0 .. len - 1``.
        max_failures: failed calls to survive (the orchestrator's restart budget).
        progress: called with the number of new cycles after each call (a progress bar's ``update``).
        restart_timeout_s: how long to wait for a restarted orchestrator to answer, in seconds.

    Returns:
        How many failed calls it survived.

    Raises:
        OrchestratorUnavailableError: after ``max_failures + 1`` failed calls, or when the
            orchestrator is dead for good or not back within ``restart_timeout_s``; with the last error.
    """
    failures = 0
    while len(reports) < target_cycle:
        done = len(reports)
        try:
            new = ray.get(handle.run_until.remote(min(done + cycles_per_call, target_cycle), done))
        except ray.exceptions.RayActorError as exc:
            failures += 1
            where = f"the orchestrator failed {failures} times at cycle {done} of {target_cycle}"
            if failures > max_failures:
                raise OrchestratorUnavailableError(
                    f"{where} (restart budget ray.orchestrator_max_restarts={max_failures}); last error: {exc}"
                ) from exc
            try:
                ray.get(handle.status.options(max_task_retries=-1).remote(), timeout=restart_timeout_s)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as wait_exc:
                raise OrchestratorUnavailableError(
                    f"{where} and did not come back within {restart_timeout_s:g} s: {wait_exc}"
                ) from wait_exc
            continue
        for report in new:
            reports[report.cycle] = report
        if progress is not None:
            progress(len(reports) - done)
        if len(reports) == done:
            break  # the panel ends before target_cycle
    return failures
