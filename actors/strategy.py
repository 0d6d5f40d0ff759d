"""StrategyActor: one member of the strategy pool, running a group of strategies."""

import ray

from amcp.engine.checkpoint import StateMethodSnapshotMixin
from amcp.engine.components import StrategyGroup


class CheckpointedStrategyGroup(StateMethodSnapshotMixin, StrategyGroup):
    """A strategy group plus ``checkpoint_state`` / ``restore_state``, through the strategies' own
    ``state()`` / ``load_state()`` (their histories hold numpy views a plain pickle would split)."""


StrategyActor = ray.remote(CheckpointedStrategyGroup)
