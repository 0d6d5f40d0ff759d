"""The orchestrator checkpoints its cycle: killed mid-run and restarted by Ray, it resumes and the
run ends with the same fills, equity curve and journal as an uninterrupted one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from actors.orchestrator import (
    OrchestratorUnavailableError,
    drive_orchestrator,
    get_or_create_orchestrator,
)
from amcp.config import TradeConfig
from amcp.data.bars import BarPanel
from amcp.engine.cycle import CycleReport
from amcp.engine.recorder import RunRecorder, RunResult
from amcp.store.journal import Journal
from tests.ray._live_market import kill_leftover_orchestrator, sliced_sample

pytestmark = [pytest.mark.ray, pytest.mark.slow]  # three runs and two restarts: about a minute on 2 CPUs

CYCLES = 120
CYCLES_PER_CALL = 30


@dataclass
class Run:
    result: RunResult
    status: dict[str, Any]
    journal: list[dict[str, Any]]
    failures: int


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> tuple[TradeConfig, BarPanel, Path]:
    """configs/paper.yaml loaded the way the job loads it, sliced like ``--max-cycles``."""
    tmp = tmp_path_factory.mktemp("recovery")
    config, panel = sliced_sample("configs/paper.yaml", tmp, CYCLES, CYCLES_PER_CALL)
    return config, panel, tmp


@pytest.fixture(scope="module")
def uninterrupted(ray_local, sample) -> Run:
    config, panel, tmp = sample
    run = _run(ray_local, config, panel, f"sqlite:///{tmp / 'uninterrupted.sqlite'}")
    assert len(run.result.fills) > 40, "the slice must exercise real trading"
    assert run.status["restarts"] == 0
    return run


def _with_ray(config: TradeConfig, **ray_fields: Any) -> TradeConfig:
    return config.model_copy(update={"ray": config.ray.model_copy(update=ray_fields)})


def _run(ray, config: TradeConfig, panel: BarPanel, url: str, *, kill_at: int | None = None,
         crash_at: tuple[int, str] | None = None) -> Run:
    """Drive a run like the job does; with ``kill_at``, kill the orchestrator once that many cycles
    are reported and check its component actors died with it."""
    kill_leftover_orchestrator()
    run_id = "recovery"
    handle = get_or_create_orchestrator(config, run_id, url, max_cycles=len(panel), crash_at=crash_at)
    reports: dict[int, CycleReport] = {}
    budget = config.ray.orchestrator_max_restarts
    try:
        failures = 0
        if kill_at is not None:
            failures += drive_orchestrator(handle, kill_at, CYCLES_PER_CALL, reports, budget)
            old = ray.get(handle.components.remote())
            ray.kill(handle, no_restart=False)
            failures += drive_orchestrator(handle, len(panel), CYCLES_PER_CALL, reports, budget)
            for role, component in old.items():  # fate-shared with their owner, the old orchestrator
                method = {"market_data": "length", "journal": "last_seq"}.get(role, "checkpoint_state")
                with pytest.raises(ray.exceptions.RayActorError):
                    ray.get(getattr(component, method).remote(), timeout=60)
        else:
            failures += drive_orchestrator(handle, len(panel), CYCLES_PER_CALL, reports, budget)
        status = ray.get(handle.status.remote())
        ray.get(handle.shutdown.remote())
    finally:
        ray.kill(handle)
    recorder = RunRecorder()
    recorder.add(reports[cycle] for cycle in sorted(reports))
    journal = Journal(url, run_id)
    records = journal.read()
    journal.close()
    return Run(recorder.result(), status, records, failures)


def _assert_same_run(run: Run, reference: Run) -> None:
    assert run.status["cycles_done"] == CYCLES
    assert run.result.fill_records() == reference.result.fill_records()
    assert np.array_equal(run.result.ts_ns, reference.result.ts_ns)
    assert np.array_equal(run.result.equity, reference.result.equity)
    assert run.result.orders_submitted == reference.result.orders_submitted
    assert run.journal == reference.journal  # every record once, in the same order


def test_killed_between_calls_resumes_from_its_checkpoint(ray_local, sample, uninterrupted) -> None:
    config, panel, tmp = sample
    run = _run(ray_local, config, panel, f"sqlite:///{tmp / 'killed.sqlite'}", kill_at=2 * CYCLES_PER_CALL)
    _assert_same_run(run, uninterrupted)
    assert run.status["restarts"] == 1


def test_crash_in_the_middle_of_a_call_reruns_the_cycles_after_the_checkpoint(ray_local, sample, uninterrupted) -> None:
    config, panel, tmp = sample
    every = 7
    # A cycle past the halfway mark that journals something, after a journaled cycle since the
    # last checkpoint: the crash leaves records and component changes after the checkpoint to undo.
    journaled = sorted({r["cycle"] for r in uninterrupted.journal})
    cycle = next(c for c in journaled if c > CYCLES // 2 and any(c - c % every <= d < c for d in journaled))
    marker = tmp / "crashed"
    run = _run(ray_local, _with_ray(config, checkpoint_every_cycles=every), panel,
               f"sqlite:///{tmp / 'crashed.sqlite'}", crash_at=(cycle, str(marker)))
    assert marker.read_text() == str(cycle), "the orchestrator must have crashed at the chosen cycle"
    assert run.failures == 1  # the driver saw the call fail and made it again
    assert run.status["restarts"] == 1
    _assert_same_run(run, uninterrupted)


def test_more_crashes_than_the_restart_budget_is_a_clear_error(ray_local, sample, uninterrupted) -> None:
    config, panel, tmp = sample
    cycle = uninterrupted.journal[0]["cycle"]
    with pytest.raises(OrchestratorUnavailableError, match=r"failed 1 times at cycle \d+ of 120 .*max_restarts=0"):
        _run(ray_local, _with_ray(config, orchestrator_max_restarts=0), panel,
             f"sqlite:///{tmp / 'budget.sqlite'}", crash_at=(cycle, str(tmp / "crashed-once")))
