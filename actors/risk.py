"""RiskActor: pre-trade checks, trading state, kill switch."""

import ray

from amcp.engine.checkpoint import AttributeSnapshotMixin
from amcp.risk.engine import RiskEngine


class CheckpointedRiskEngine(AttributeSnapshotMixin, RiskEngine):
    """The risk engine plus ``checkpoint_state`` / ``restore_state`` (kill switch and throttle included)."""


RiskActor = ray.remote(CheckpointedRiskEngine)
