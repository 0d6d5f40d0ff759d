"""BrokerActor: the simulated venue in paper mode (the Alpaca broker arrives with live trading)."""

import ray

from amcp.engine.checkpoint import AttributeSnapshotMixin
from amcp.execution.venue import SimulatedVenue


class CheckpointedSimulatedVenue(AttributeSnapshotMixin, SimulatedVenue):
    """The simulated venue plus ``checkpoint_state`` / ``restore_state`` (its seeded latency RNG included)."""


SimBrokerActor = ray.remote(CheckpointedSimulatedVenue)
