"""OMSActor: the order state machine of every order."""

import ray

from amcp.engine.checkpoint import AttributeSnapshotMixin
from amcp.execution.oms import OrderManager


class CheckpointedOrderManager(AttributeSnapshotMixin, OrderManager):
    """The OMS plus ``checkpoint_state`` / ``restore_state``."""


OMSActor = ray.remote(CheckpointedOrderManager)
