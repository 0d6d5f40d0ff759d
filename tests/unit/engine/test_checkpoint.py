"""Checkpoints without Ray: component snapshots resume a run exactly; the store keeps the latest;
the journal rolls back to a checkpoint and refuses a stale writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from amcp.backtest.engine import BacktestEngine, capital_fractions, split_strategies
from amcp.config import TradeConfig, load_config
from amcp.data.bars import BarPanel, load_daily_bars
from amcp.domain import CancelOrder, ClientOrderId
from amcp.engine.checkpoint import (
    CHECKPOINTS,
    AttributeSnapshotMixin,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    StateMethodSnapshotMixin,
)
from amcp.engine.components import PortfolioService, StrategyGroup
from amcp.engine.cycle import Plane, TradingKernel
from amcp.engine.invoker import LocalInvoker
from amcp.engine.recorder import RunRecorder
from amcp.errors import ConfigError, StoreError
from amcp.execution.oms import OrderManager
from amcp.execution.venue import SimulatedVenue
from amcp.risk.engine import RiskEngine
from amcp.store.journal import Journal

ROOT = Path(__file__).resolve().parents[3]
CYCLES = 200  # past the momentum warm-up (126 bars): both strategies trade


class _Venue(AttributeSnapshotMixin, SimulatedVenue):
    pass


class _OMS(AttributeSnapshotMixin, OrderManager):
    pass


class _Portfolio(AttributeSnapshotMixin, PortfolioService):
    pass


class _Risk(AttributeSnapshotMixin, RiskEngine):
    pass


class _Strategies(StateMethodSnapshotMixin, StrategyGroup):
    pass


@pytest.fixture(scope="module")
def sample() -> tuple[TradeConfig, BarPanel]:
    config = load_config(ROOT / "configs/paper.yaml", TradeConfig)
    config = config.model_copy(update={"data": config.data.model_copy(update={"path": str(ROOT / config.data.path)})})
    panel, _ = load_daily_bars(config.data)
    return config, panel.slice(0, CYCLES)


def _plane(config: TradeConfig, symbols: tuple[str, ...]) -> Plane:
    return Plane(
        broker=_Venue(config.venue),
        oms=_OMS(),
        portfolio=_Portfolio(config.account, config.sizing, capital_fractions(config)),
        risk=_Risk(config.risk),
        strategies=[_Strategies(group, symbols) for group in split_strategies(config.strategies, 2)],
    )


def _components(plane: Plane) -> dict[str, AttributeSnapshotMixin | StateMethodSnapshotMixin]:
    roles = {"broker": plane.broker, "oms": plane.oms, "portfolio": plane.portfolio, "risk": plane.risk}
    return roles | {f"strategy-{i}": group for i, group in enumerate(plane.strategies)}


def _checkpoint(run_id: str, cycles_done: int, marker: str = "") -> Checkpoint:
    return Checkpoint(run_id=run_id, cycles_done=cycles_done, journal_seq=cycles_done * 2, restarts=0,
                      kernel_state={"cycles_done": cycles_done, "marker": marker}, component_states={"x": b"state"})


@pytest.mark.parametrize("cut", [60, 131])
def test_snapshots_restored_into_fresh_components_continue_the_run_exactly(sample, cut: int) -> None:
    config, panel = sample
    uninterrupted = BacktestEngine(config, panel).run()
    batches = list(panel.batches())
    first = TradingKernel(_plane(config, panel.symbols), LocalInvoker())
    recorder = RunRecorder()
    recorder.add(first.run_cycle(batch) for batch in batches[:cut])
    snapshots = {role: c.checkpoint_state() for role, c in _components(first.plane).items()}

    second = TradingKernel(_plane(config, panel.symbols), LocalInvoker())
    for role, component in _components(second.plane).items():
        component.restore_state(snapshots[role])
    second.load_state(first.state())
    recorder.add(second.run_cycle(batch) for batch in batches[cut:])
    resumed = recorder.result()

    assert len(uninterrupted.fills) > 100, "the slice must exercise real trading on both sides of the cut"
    assert resumed.fill_records() == uninterrupted.fill_records()
    assert np.array_equal(resumed.equity, uninterrupted.equity)


def test_attribute_snapshot_keeps_objects_shared_between_attributes(sample) -> None:
    config, panel = sample
    engine = TradingKernel(_plane(config, panel.symbols), LocalInvoker())
    oms = engine.plane.oms
    for batch in panel.batches():  # until a cycle leaves an order working
        engine.run_cycle(batch)
        if oms.working_orders():
            break
    assert oms.working_orders(), "a working order is needed to see the sharing"
    restored = _OMS()
    restored.restore_state(oms.checkpoint_state())
    working = restored.working_orders()[0]
    assert restored.get(working.client_order_id) is working


def test_snapshot_of_another_class_is_refused() -> None:
    with pytest.raises(CheckpointError, match="snapshot does not fit _OMS: attributes"):
        _OMS().restore_state(_Risk(load_config(ROOT / "configs/paper.yaml", TradeConfig).risk).checkpoint_state())


def test_damaged_snapshot_is_a_clear_error(sample) -> None:
    config, panel = sample
    group = _Strategies(config.strategies, panel.symbols)
    with pytest.raises(CheckpointError, match="snapshot for _Strategies cannot be read"):
        group.restore_state(group.checkpoint_state()[:-5])


def test_store_round_trips_and_the_latest_checkpoint_wins(tmp_path: Path) -> None:
    store = CheckpointStore(f"sqlite:///{tmp_path / 'j.sqlite'}", "run-1", keep=2)
    for cycles_done in (1, 2, 3):
        assert store.save(_checkpoint("run-1", cycles_done)) > 0
    assert store.latest() == _checkpoint("run-1", 3)
    with store._engine.connect() as connection:  # only the newest `keep` are kept
        kept = connection.execute(sa.select(CHECKPOINTS.c.cycles_done).order_by(CHECKPOINTS.c.id)).scalars().all()
    assert kept == [2, 3]
    # A checkpoint taken after a restore at an earlier cycle is newer, so it wins.
    store.save(_checkpoint("run-1", 2, marker="after restart"))
    assert store.latest().kernel_state["marker"] == "after restart"


def test_store_ignores_other_runs(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    mine, other = CheckpointStore(url, "mine"), CheckpointStore(url, "other", keep=1)
    mine.save(_checkpoint("mine", 5))
    other.save(_checkpoint("other", 9))
    other.save(_checkpoint("other", 10))  # prunes only the other run's rows
    assert mine.latest().cycles_done == 5
    assert other.discard() == 1
    assert mine.latest().cycles_done == 5
    with pytest.raises(CheckpointError, match="checkpoint of run other given to the store of run mine"):
        mine.save(_checkpoint("other", 11))


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    store = CheckpointStore(f"sqlite:///{tmp_path / 'j.sqlite'}", "run-1")
    with pytest.raises(CheckpointError, match="run run-1 has no checkpoint in sqlite:///"):
        store.latest()


def test_damaged_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    store = CheckpointStore(f"sqlite:///{tmp_path / 'j.sqlite'}", "run-1")
    store.save(_checkpoint("run-1", 4))
    with store._engine.begin() as connection:
        payload = connection.execute(sa.select(CHECKPOINTS.c.payload)).scalar_one()
        connection.execute(CHECKPOINTS.update().values(payload=payload[:-1] + b"\x00"))
    with pytest.raises(CheckpointError, match=r"checkpoint 1 of run run-1 \(cycle 4\) .* is damaged: sha256"):
        store.latest()


def test_store_must_keep_at_least_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keep=0"):
        CheckpointStore(f"sqlite:///{tmp_path / 'j.sqlite'}", "run-1", keep=0)


def _cancel(i: int) -> CancelOrder:
    return CancelOrder(client_order_id=ClientOrderId(f"c{i}"), ts_ns=i)


def test_journal_rolls_back_to_a_checkpoint_and_refuses_the_stale_writer(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.sqlite'}"
    old = Journal(url, "run-1")
    old.record([_cancel(1), _cancel(2)], cycle=0)
    seq = old.last_seq()
    old.record([_cancel(3)], cycle=1)
    Journal(url, "run-2").record([_cancel(9)], cycle=1)

    new = Journal(url, "run-1")  # the restarted orchestrator's journal
    assert new.restore_to(seq) == 1
    with pytest.raises(StoreError, match="journal of run run-1 is stale: it holds epoch 0, the run is at epoch 1"):
        old.record([_cancel(3)], cycle=1)
    new.record([_cancel(3)], cycle=1)

    assert [(r["cycle"], r["client_order_id"]) for r in new.read()] == [(0, "c1"), (0, "c2"), (1, "c3")]
    assert Journal(url, "run-2").read()[0]["client_order_id"] == "c9"  # other runs untouched
    assert Journal(url, "run-3").last_seq() == 0


def test_journal_rollback_on_postgresql(postgres_url: str) -> None:
    import uuid

    run_id = f"test-{uuid.uuid4().hex[:12]}"
    old = Journal(postgres_url, run_id)
    old.record([_cancel(1)], cycle=0)
    seq = old.last_seq()
    old.record([_cancel(2)], cycle=1)
    new = Journal(postgres_url, run_id)
    assert new.restore_to(seq) == 1
    with pytest.raises(StoreError, match="is stale"):
        old.record([_cancel(2)], cycle=1)
    assert [r["client_order_id"] for r in new.read()] == ["c1"]
    old.close()
    new.close()

