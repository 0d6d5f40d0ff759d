"""PortfolioActor: the ledger and sizing."""

import ray

from amcp.engine.checkpoint import AttributeSnapshotMixin
from amcp.engine.components import PortfolioService


class CheckpointedPortfolioService(AttributeSnapshotMixin, PortfolioService):
    """The ledger and sizer plus ``checkpoint_state`` / ``restore_state``."""


PortfolioActor = ray.remote(CheckpointedPortfolioService)
