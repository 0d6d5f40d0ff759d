"""RiskActor: pre-trade checks, trading state, kill switch."""

import ray

from amcp.risk.engine import RiskEngine

RiskActor = ray.remote(RiskEngine)
