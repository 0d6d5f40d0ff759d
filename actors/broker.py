"""BrokerActor: the simulated venue in paper mode (the Alpaca broker arrives with live trading)."""

import ray

from amcp.execution.venue import SimulatedVenue

SimBrokerActor = ray.remote(SimulatedVenue)
