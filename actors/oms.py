"""OMSActor: the order state machine of every order."""

import ray

from amcp.execution.oms import OrderManager

OMSActor = ray.remote(OrderManager)
