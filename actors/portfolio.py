"""PortfolioActor: the ledger and sizing."""

import ray

from amcp.engine.components import PortfolioService

PortfolioActor = ray.remote(PortfolioService)
