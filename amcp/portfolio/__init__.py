"""Portfolio accounting: the exact ledger, Reg-T buying power, sizing of intents into orders."""

from amcp.portfolio.ledger import Portfolio, Position
from amcp.portfolio.sizing import Sizer
from amcp.portfolio.snapshot import PortfolioSnapshot

__all__ = ["Portfolio", "PortfolioSnapshot", "Position", "Sizer"]
