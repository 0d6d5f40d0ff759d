"""StrategyActor: one member of the strategy pool, running a group of strategies."""

import ray

from amcp.engine.components import StrategyGroup

StrategyActor = ray.remote(StrategyGroup)
