"""Signal strategies: one interface (bars in, intents out), many implementations."""

from amcp.strategies.base import Strategy
from amcp.strategies.ma_cross import MovingAverageCross
from amcp.strategies.mean_reversion import MeanReversion
from amcp.strategies.momentum import CrossSectionalMomentum
from amcp.strategies.registry import build_strategies, build_strategy

__all__ = ["CrossSectionalMomentum", "MeanReversion", "MovingAverageCross", "Strategy", "build_strategies", "build_strategy"]
