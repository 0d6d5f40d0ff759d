"""Pre-trade risk: checks with reason codes, trading state, kill switch, daily loss limit."""

from amcp.risk.engine import RiskContext, RiskEngine

__all__ = ["RiskContext", "RiskEngine"]
