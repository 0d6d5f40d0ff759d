"""The trading plane on Ray: parity with the backtest, the singleton, idempotence, kill switch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from actors.orchestrator import NAMESPACE, ORCHESTRATOR_NAME, OrchestratorConflictError, get_or_create_orchestrator
from amcp.backtest.engine import BacktestEngine
from amcp.config import TradeConfig, load_config
from amcp.data.bars import load_daily_bars
from amcp.engine.recorder import RunRecorder

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
CYCLES = 260  # past the momentum warm-up (126 bars): both strategies trade


@pytest.fixture(scope="module")
def paper_setup(tmp_path_factory: pytest.TempPathFactory):
    config = load_config(ROOT / "configs/paper.yaml", TradeConfig)
    config = config.model_copy(update={"data": config.data.model_copy(update={"path": str(ROOT / config.data.path)})})
    panel, _ = load_daily_bars(config.data)
    return config, panel.slice(0, CYCLES), tmp_path_factory.mktemp("plane")


def kill_orchestrator(ray) -> None:
    try:
        ray.kill(ray.get_actor(ORCHESTRATOR_NAME, namespace=NAMESPACE))
    except ValueError:
        pass


def run_paper(ray, config, panel, run_id: str, journal_url: str | None):
    handle = get_or_create_orchestrator(config, run_id, journal_url, max_cycles=len(panel))
    recorder = RunRecorder()
    recorder.add(ray.get(handle.run_until.remote(len(panel))))
    return handle, recorder.result()


def test_paper_replay_on_actors_matches_the_backtest_exactly(ray_local, paper_setup) -> None:
    ray = ray_local
    config, panel, tmp = paper_setup
    backtest = BacktestEngine(config, panel).run()
    kill_orchestrator(ray)
    handle, paper = run_paper(ray, config, panel, "parity", f"sqlite:///{tmp / 'parity.sqlite'}")
    try:
        assert len(backtest.fills) > 20, "the slice must exercise real trading"
        assert paper.fill_records() == backtest.fill_records()
        assert np.array_equal(paper.equity, backtest.equity)
        assert paper.denials_by_reason() == backtest.denials_by_reason()
        assert paper.orders_submitted == backtest.orders_submitted
    finally:
        ray.get(handle.shutdown.remote())
        ray.kill(handle)


def test_orchestrator_is_a_named_singleton_with_idempotent_cycles(ray_local, paper_setup) -> None:
    ray = ray_local
    config, _, _ = paper_setup
    kill_orchestrator(ray)
    handle = get_or_create_orchestrator(config, "single", None, max_cycles=30)
    try:
        assert ray.get_actor(ORCHESTRATOR_NAME, namespace=NAMESPACE)._actor_id == handle._actor_id
        assert len(ray.get(handle.run_until.remote(10))) == 10
        assert ray.get(handle.run_until.remote(10)) == []  # asking again runs nothing
        assert len(ray.get(handle.run_until.remote(12))) == 2
        again = get_or_create_orchestrator(config, "single", None, max_cycles=30)
        assert ray.get(again.status.remote())["cycles_done"] == 12
        with pytest.raises(OrchestratorConflictError, match="orchestrator for run single is already running"):
            get_or_create_orchestrator(config, "another-run", None, max_cycles=30)
    finally:
        ray.get(handle.shutdown.remote())
        ray.kill(handle)


def test_kill_switch_halts_and_cancels_working_orders_on_the_plane(ray_local, paper_setup) -> None:
    ray = ray_local
    config, panel, _ = paper_setup
    kill_orchestrator(ray)
    handle = get_or_create_orchestrator(config, "kill", None, max_cycles=len(panel))
    try:
        done = 0
        while ray.get(handle.open_orders.remote()) == 0:
            done += 1
            assert done < len(panel), "no cycle left an order working"
            ray.get(handle.run_until.remote(done))
        report = ray.get(handle.engage_kill_switch.remote("test"))
        assert report.canceled > 0
        assert ray.get(handle.open_orders.remote()) == 0
        assert ray.get(handle.status.remote())["trading_state"] == "halted"
        later = ray.get(handle.run_until.remote(len(panel)))
        assert sum(r.orders_submitted for r in later) == 0
        assert all(d.reason.value == "trading_halted" for r in later for d in r.denials)
    finally:
        ray.get(handle.shutdown.remote())
        ray.kill(handle)
