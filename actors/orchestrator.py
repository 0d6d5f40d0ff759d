"""TradingOrchestrator: the named singleton that drives the trading plane's cycles.

It supervises its component actors (tree of actors) and runs :class:`amcp.engine.cycle.TradingKernel`
over them with :class:`actors.invoker.RayInvoker` — the same cycle the backtest runs in-process.

Obtain it with :func:`get_or_create_orchestrator`: ``name="orchestrator"``, ``namespace="amcp"``,
``get_if_exists=True``; detached with unlimited restarts in live mode, ``ray.orchestrator_max_restarts``
restarts in paper mode. ``run_until`` is idempotent: asking again for cycles already done runs nothing.

The bars. The orchestrator loads them itself, in its constructor, from ``config.data``
(:func:`load_trading_panel`): its constructor arguments are the config and a few plain values,
nothing in the object store, so a restarted orchestrator depends on nothing the driver holds.
The driver pins ``data:`` to the bars it loaded (:func:`pin_data`), so every incarnation loads
the same ones.

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

Broker-backed modes (``paper_server``, ``live``). The broker and the state database are not
rolled back with the checkpoint: the venue outlives the orchestrator (the driver owns the paper
server, see :func:`actors.planes.start_paper_server`), and the restarted orchestrator's new
LiveBrokerActor reconciles the state database with it, keeping trading HALTED unless they agree.
The orchestrator checkpoints after every cycle here, so a crash re-runs only the cycle it
interrupted; that cycle's broker events come from the state database's audit log
(:class:`amcp.engine.broker_replay.BrokerEventReplay`), and the intents it sends again are recognised by
client order id, never sent twice.

Live mode (``mode: live``). The panel is the warm-up history: the constructor feeds it to the
strategies only (:func:`amcp.engine.live_cycles.warm_up`: no orders, no risk, no broker), then
starts a LiveMarketDataActor on Alpaca's minute-bar stream. Each :meth:`TradingOrchestrator.poll_live`
drains the feed into a :class:`~amcp.engine.live_cycles.LiveBarBatcher` and runs one cycle per
session that closed, checkpointed as in paper mode; :func:`drive_live` calls it until enough
sessions ran or the driver is told to stop. The first live session is the exchange session after
the history's last (after a restart: after the last cycle's). A restart loses the minute bars of
the session in progress that reached the old feed: that session's open, high, low and volume
then cover only the bars since the restart (its close, what the strategies use, is the last bar's).
"""

from __future__ import annotations

import os
import time
import warnings
from collections import deque
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any, Callable

import ray

from actors.invoker import RayInvoker
from actors.market_data import AlpacaBarFeedSettings, LiveMarketDataActor, MarketDataActor, alpaca_bar_feed
from actors.planes import broker_credentials, build_plane
from actors.credentials import NAMESPACE as NAMESPACE  # the orchestrator's and the run's credential vault's
from amcp.config import TradeConfig
from amcp.data.bars import BarPanel, load_daily_bars
from amcp.data.calendar import TradingCalendar
from amcp.domain.data import Bar, BarBatch
from amcp.engine.checkpoint import Checkpoint, CheckpointError, CheckpointStore
from amcp.engine.broker_replay import REPLAY_ROLE, BrokerEventReplay
from amcp.engine.cycle import CycleReport, TradingKernel
from amcp.engine.live_cycles import LiveBarBatcher, next_session, warm_up
from amcp.errors import AmcpError

ORCHESTRATOR_NAME = "orchestrator"


class OrchestratorConflictError(AmcpError):
    """Another run's orchestrator is alive on this cluster."""


def _was_restarted() -> bool:
    """Whether Ray restarted this actor (Ray's own property reads a deprecated attribute and
    would print a deprecation warning into every run's log)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


class OrchestratorUnavailableError(AmcpError):
    """The orchestrator kept failing: more crashes than it may be restarted for."""

    exit_code = 1  # the run failed on the way; not bad input (exit 2)


class OrchestratorModeError(AmcpError):
    """A call that belongs to the other mode (``run_until`` live, ``poll_live`` replaying)."""

    exit_code = 1


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
        config: the run's configuration; its ``data:`` gives the bars (:func:`load_trading_panel`):
            one batch per cycle; in live mode the warm-up history.
        run_id: the run; it keys the journal, the checkpoints and the credential vault.
        journal_url: the journal (and checkpoint) database; None keeps neither.
        max_cycles: replay only the first ``max_cycles`` batches (None: all; ignored in live mode).
        crash_at: test hook ``(cycle, marker_path)``: exit the process right after the first
            journal write of ``cycle`` unless ``marker_path`` exists (it is created first).

    Raises:
        DataError: if the bars cannot be loaded.
        CheckpointError: on a restart, if the run has no usable checkpoint or it does not fit
            the components (another number of strategy groups).
    """

    def __init__(self, config: TradeConfig, run_id: str, journal_url: str | None,
                 max_cycles: int | None = None, crash_at: tuple[int, str] | None = None) -> None:
        self.config = config
        self.run_id = run_id
        panel = load_trading_panel(config, max_cycles)
        options = {"num_cpus": config.ray.actor_num_cpus}
        self.live = config.mode == "live"
        self.symbols: tuple[str, ...] = panel.symbols
        if self.live:
            data = config.live_data
            feed = AlpacaBarFeedSettings(credentials=broker_credentials(config, run_id), symbols=self.symbols,
                                         feed=data.feed, stream_url=data.stream_url_override,
                                         rest_url=data.rest_url_override, backfill=data.backfill)
            self.market_data = LiveMarketDataActor.options(**options).remote(partial(alpaca_bar_feed, feed))
        else:
            self.market_data = MarketDataActor.options(**options).remote(panel)
        self.total_cycles: int | None = None if self.live else len(panel)
        # broker-backed modes with checkpoints: the watermark of the broker events (before the broker actor exists)
        self._replay = (BrokerEventReplay(str(config.state.database_url))
                        if config.mode != "paper" and journal_url and config.state.database_url else None)
        self.plane = build_plane(config, self.symbols, run_id, journal_url)
        self._invoker = RayInvoker()
        cycle_invoker: Any = self._invoker if crash_at is None else _CrashAfterJournalWrite(*crash_at)
        if self._replay is not None:
            cycle_invoker = self._replay.wrap(cycle_invoker, self.plane.broker)
        self.kernel = TradingKernel(self.plane, cycle_invoker, bars_close_session=True)
        self._pending: list[CycleReport] = []  # reports the driver has not acknowledged, by cycle
        self._store = CheckpointStore(journal_url, run_id) if journal_url else None
        self.restarts = 0
        self._cycle_checkpoints = 0  # taken by run_until / poll_live in this process, and their wall time
        self._cycle_checkpoint_seconds = 0.0
        self.warm_up_sessions = 0  # live: history sessions fed to the strategies by this process
        self._batcher: LiveBarBatcher | None = None  # live: minute bars -> session batches
        self._ready: deque[BarBatch] = deque()  # live: sessions closed but not run yet (past the target)
        if _was_restarted():
            self._resume()
        else:
            if self.live:
                self.warm_up_sessions = warm_up(self.plane.strategies, self._invoker, panel.batches())
            if self._store is not None:
                self._store.discard()  # a new orchestrator starts the run's checkpoints afresh
                self._checkpoint()
        if self.live:
            self._start_live(panel)

    def _start_live(self, panel: BarPanel) -> None:
        """Build the session batcher (from the session after the last cycle's, or the history's) and start the feed."""
        data = self.config.live_data
        calendar = TradingCalendar(data.exchange)
        last: date = self.kernel.session or date.fromisoformat(str(panel.dates[-1]))
        grace_ns = None if data.close_grace_s is None else int(data.close_grace_s * 1e9)
        self._batcher = LiveBarBatcher(self.symbols, next_session(calendar, last), calendar, grace_ns)
        ray.get(self.market_data.start.remote())

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
        states = dict(zip(roles, snapshots))
        if self._replay is not None:
            states[REPLAY_ROLE] = self._replay.checkpoint_state()
        self._store.save(
            Checkpoint(
                run_id=self.run_id,
                cycles_done=self.kernel.cycles_done,
                journal_seq=journal_seq,
                restarts=self.restarts,
                kernel_state=self.kernel.state(),
                component_states=states,
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
        expected = set(roles) if self._replay is None else {*roles, REPLAY_ROLE}
        if set(checkpoint.component_states) != expected:
            raise CheckpointError(
                f"checkpoint of run {self.run_id} at cycle {checkpoint.cycles_done} holds components "
                f"{sorted(checkpoint.component_states)}, this orchestrator has {sorted(expected)}"
            )
        if self._replay is not None:
            self._replay.restore_state(checkpoint.component_states[REPLAY_ROLE])
        calls = [(handle, "restore_state", (checkpoint.component_states[role],)) for role, handle in roles.items()]
        calls.append((self.plane.journal, "restore_to", (checkpoint.journal_seq,)))
        self._invoker.gather(calls)
        self.kernel.load_state(checkpoint.kernel_state)
        self._pending = list(checkpoint.pending_reports)
        self.restarts = checkpoint.restarts + 1
        self._checkpoint()

    # ------------------------------------------------------------------ API
    def identity(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "total_cycles": self.total_cycles, "symbols": len(self.symbols),
                "warm_up_sessions": self.warm_up_sessions}

    def status(self) -> dict[str, Any]:
        """The run's progress, restarts, the cost of the checkpoints cycles took in this process (live: the
        feed's and the session batcher's counters)."""
        return {
            "run_id": self.run_id,
            "cycles_done": self.kernel.cycles_done,
            "total_cycles": self.total_cycles,
            "trading_state": self.kernel.trading_state.value,
            "restarts": self.restarts,
            "cycle_checkpoints": self._cycle_checkpoints,
            "cycle_checkpoint_seconds": self._cycle_checkpoint_seconds,
            **self._live_status(),
        }

    def _live_status(self) -> dict[str, Any]:
        if self._batcher is None:
            return {}
        return {"warm_up_sessions": self.warm_up_sessions, "next_session": self._batcher.next_session.isoformat(),
                "live_bars": self._batcher.stats(),
                "feed": ray.get(self.market_data.stats.remote())}

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

        Raises:
            OrchestratorModeError: in live mode (see :meth:`poll_live`).
        """
        if self.total_cycles is None:
            raise OrchestratorModeError("run_until replays a panel; a live orchestrator runs cycles with poll_live")
        self._keep_pending(from_cycle)
        target = min(target_cycle, self.total_cycles)
        chunk = self.config.ray.cycles_per_call
        while self.kernel.cycles_done < target:
            start = self.kernel.cycles_done
            stop = min(target, start + chunk)
            for batch in ray.get(self.market_data.batches.remote(start, stop)):
                self._run_cycle(batch)
        return list(self._pending)

    def poll_live(self, target_cycle: int | None = None, from_cycle: int | None = None) -> list[CycleReport]:
        """Live mode: take the minute bars that arrived (waiting up to ``live_data.poll_timeout_s``
        for the first), run a cycle for every session they (or the clock) closed, return reports.

        Args:
            target_cycle: run no cycle past this many in all (sessions closed beyond it wait for
                a later call); None: no limit.
            from_cycle: as in :meth:`run_until`.

        Raises:
            OrchestratorModeError: when not in live mode.
        """
        if self._batcher is None:
            raise OrchestratorModeError("poll_live needs mode live; a replay runs cycles with run_until")
        self._keep_pending(from_cycle)
        events = ray.get(self.market_data.drain.remote(None, self.config.live_data.poll_timeout_s))
        for event in events:
            if isinstance(event, Bar):
                self._ready.extend(self._batcher.on_bar(event))
        self._ready.extend(self._batcher.on_clock(time.time_ns()))
        while self._ready and (target_cycle is None or self.kernel.cycles_done < target_cycle):
            self._run_cycle(self._ready.popleft())
        return list(self._pending)

    def _keep_pending(self, from_cycle: int | None) -> None:
        """Drop the reports the driver holds (all of them when ``from_cycle`` is None)."""
        if from_cycle is None:
            self._pending = []
        else:
            self._pending = [report for report in self._pending if report.cycle >= from_cycle]

    def _run_cycle(self, batch: BarBatch) -> None:
        """Run one cycle, keep its report, and checkpoint every ``ray.checkpoint_every_cycles`` cycles
        (broker-backed modes: every cycle, see the module docstring)."""
        self._pending.append(self.kernel.run_cycle(batch))
        every = self.config.ray.checkpoint_every_cycles
        if self._replay is not None:
            self._replay.mark()
            every = 1
        if self.kernel.cycles_done % every == 0:
            self._cycle_checkpoint_seconds += self._checkpoint()
            self._cycle_checkpoints += 1

    def engage_kill_switch(self, reason: str) -> CycleReport:
        """Halt trading and cancel working orders, at the time of the last cycle's bars (live: now; checkpointed)."""
        if self.live:
            ts_ns = time.time_ns()
        else:
            last = max(self.kernel.cycles_done - 1, 0)
            ts_ns = ray.get(self.market_data.batches.remote(last, last + 1))[0].ts_ns
        report = self.kernel.engage_kill_switch(ts_ns, reason)
        if self._replay is not None:
            self._replay.mark()
        self._checkpoint()
        return report

    def open_orders(self) -> int:
        return len(ray.get(self.plane.oms.working_orders.remote()))

    def shutdown(self) -> None:
        """Stop the component actors (the orchestrator itself is killed by its owner)."""
        if self.live:
            ray.get(self.market_data.stop.remote())  # close the stream's socket before the kill
        for handle in [self.market_data, self.plane.broker, self.plane.oms, self.plane.portfolio, self.plane.risk,
                       *self.plane.strategies]:
            ray.kill(handle)
        if self.plane.journal is not None:
            ray.get(self.plane.journal.close.remote())
            ray.kill(self.plane.journal)
        if self._store is not None:
            self._store.close()
        if self._replay is not None:
            self._replay.close()


OrchestratorActor = ray.remote(TradingOrchestrator)


def trading_panel(panel: BarPanel, mode: str, max_cycles: int | None) -> BarPanel:
    """The bars a run of ``mode`` uses from ``panel``: the first ``max_cycles`` batches (None: all);
    in live mode all of them (the warm-up history; there ``max_cycles`` counts live sessions)."""
    if max_cycles is None or mode == "live":
        return panel
    return panel.slice(0, max_cycles)


def load_trading_panel(config: TradeConfig, max_cycles: int | None = None) -> BarPanel:
    """Load ``config.data`` as the driver does and keep :func:`trading_panel`'s part.

    Raises:
        DataError: as :func:`amcp.data.bars.load_daily_bars`.
    """
    panel, _ = load_daily_bars(config.data)
    return trading_panel(panel, config.mode, max_cycles)


def pin_data(config: TradeConfig, panel: BarPanel) -> TradeConfig:
    """``config`` with ``data:`` pinned to ``panel``, the bars the driver loaded from it (before any
    ``--max-cycles`` slice), for the orchestrator, which loads them again, as does every restart.

    Pinned: a local file or store folder as an absolute path (an actor's working directory need
    not be the driver's), ``start`` and ``end`` as the panel's first and last sessions and
    ``symbols`` as its symbols (a store that grows meanwhile adds nothing).
    """
    data = config.data
    update: dict[str, Any] = {"symbols": panel.symbols, "start": date.fromisoformat(str(panel.dates[0])),
                              "end": date.fromisoformat(str(panel.dates[-1]))}
    if data.path is not None and "://" not in data.path:
        update["path"] = str(Path(data.path).resolve())
    if data.store is not None and "://" not in data.store.url:
        update["store"] = data.store.model_copy(update={"url": str(Path(data.store.url).resolve())})
    return config.model_copy(update={"data": data.model_copy(update=update)})


def get_or_create_orchestrator(
    config: TradeConfig,
    run_id: str,
    journal_url: str | None,
    *,
    max_cycles: int | None = None,
    detached: bool = False,
    crash_at: tuple[int, str] | None = None,
) -> Any:
    """Return the cluster's orchestrator, creating it for this run if none is alive.

    A paper orchestrator with a journal is restarted up to ``config.ray.orchestrator_max_restarts``
    times; without a journal it is not restarted (it has no checkpoint to resume from). Calls
    are never retried by Ray: :func:`drive_orchestrator` retries them. The orchestrator loads its
    bars from ``config.data`` (the driver passes :func:`pin_data`'s config) and slices them to
    ``max_cycles``. In the live modes the run's credential vault must be running
    (:func:`actors.planes.start_run_credentials`): the actors that trade or stream get the key
    pair from it, never as constructor arguments or environment variables, which Ray keeps in
    its cluster metadata. The vault is the driver's: after the driver exits, a ``detached``
    orchestrator's broker and market-data actors cannot start again.

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
    handle = OrchestratorActor.options(**options).remote(config, run_id, journal_url, max_cycles, crash_at)
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
            _await_restart(handle, exc, f"the orchestrator failed {failures} times at cycle {done} of {target_cycle}",
                           failures, max_failures, restart_timeout_s)
            continue
        for report in new:
            reports[report.cycle] = report
        if progress is not None:
            progress(len(reports) - done)
        if len(reports) == done:
            break  # the panel ends before target_cycle
    return failures


def drive_live(
    handle: Any,
    target_cycle: int | None,
    reports: dict[int, CycleReport],
    max_failures: int,
    stop: Callable[[], bool],
    progress: Callable[[list[CycleReport]], object] | None = None,
    restart_timeout_s: float = 300.0,
) -> int:
    """Live mode: call ``poll_live`` until ``reports`` holds ``target_cycle`` cycles or ``stop()`` is true.

    ``stop`` is asked between calls, so a stop takes effect after the cycle in progress (a call
    waits at most ``live_data.poll_timeout_s`` for market data, plus the cycles it runs). Crashes
    are survived as in :func:`drive_orchestrator`.

    Args:
        handle: the orchestrator.
        target_cycle: sessions to run; None: until ``stop()``.
        reports: cycle -> report, filled in place; it must hold cycles ``0 .. len - 1``.
        max_failures: failed calls to survive.
        stop: whether to stop now (a signal handler's flag).
        progress: called with each call's new reports, in cycle order.
        restart_timeout_s: how long to wait for a restarted orchestrator, in seconds.

    Returns:
        How many failed calls it survived.

    Raises:
        OrchestratorUnavailableError: as :func:`drive_orchestrator`.
    """
    failures = 0
    while (target_cycle is None or len(reports) < target_cycle) and not stop():
        done = len(reports)
        try:
            new = ray.get(handle.poll_live.remote(target_cycle, done))
        except ray.exceptions.RayActorError as exc:
            failures += 1
            _await_restart(handle, exc, f"the live orchestrator failed {failures} times after {done} sessions",
                           failures, max_failures, restart_timeout_s)
            continue
        for report in new:
            reports[report.cycle] = report
        if progress is not None and new:
            progress(sorted(new, key=lambda report: report.cycle))
    return failures


def _await_restart(handle: Any, error: Exception, where: str, failures: int, max_failures: int,
                   restart_timeout_s: float) -> None:
    """Return once a failed orchestrator answers again (Ray restarted it).

    Raises:
        OrchestratorUnavailableError: past ``max_failures`` failures, or when it does not answer
            within ``restart_timeout_s`` seconds.
    """
    if failures > max_failures:
        raise OrchestratorUnavailableError(
            f"{where} (restart budget ray.orchestrator_max_restarts={max_failures}); last error: {error}"
        ) from error
    try:
        ray.get(handle.status.options(max_task_retries=-1).remote(), timeout=restart_timeout_s)
    except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as wait_exc:
        raise OrchestratorUnavailableError(
            f"{where} and did not come back within {restart_timeout_s:g} s: {wait_exc}"
        ) from wait_exc
