"""Pre-trade risk: checks with reason codes, trading state, kill switch, daily loss limit, greek limits."""

from amcp.risk._greeks import OptionGreeks
from amcp.risk.engine import RiskContext, RiskEngine

__all__ = ["OptionGreeks", "RiskContext", "RiskEngine"]
