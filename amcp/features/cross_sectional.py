"""Cross-sectional features: per-date percentile ranks of series features across symbols.

Importing this module registers them into :data:`amcp.features.registry.REGISTRY` (after
importing :mod:`amcp.features.alpha158` and :mod:`amcp.features.technical`, which register their
bases). A rank on date ``d`` uses
every symbol's base value on ``d`` and nothing later; :func:`amcp.features.registry.cross_sectional`
computes it: the percentile rank in (0, 1] among the symbols whose base value is not NaN, ties
sharing their average rank, NaN staying NaN.
"""

from __future__ import annotations

import amcp.features.alpha158  # noqa: F401 - registers ROC20
import amcp.features.technical  # noqa: F401 - registers the other bases
from amcp.features.registry import REGISTRY

__all__ = ["CROSS_SECTIONAL_FEATURES"]

#: (name, base series feature, doc) of each rank this module registers.
_RANKS: tuple[tuple[str, str, str], ...] = (
    ("rank_roc_20", "ROC20",
     "Percentile rank in (0, 1] of Alpha158's ROC20 = C_{t-20} / C_t across the date's symbols: "
     "1 = the weakest 20-day return (ROC20 is the past close over today's); ties share their "
     "average rank; NaN bases are not ranked."),
    ("rank_yang_zhang_vol_20", "yang_zhang_vol_20",
     "Percentile rank in (0, 1] of yang_zhang_vol_20 across the date's symbols (1 = most volatile); "
     "ties share their average rank; NaN bases are not ranked."),
    ("rank_amihud_20", "amihud_20",
     "Percentile rank in (0, 1] of amihud_20 across the date's symbols (1 = least liquid); "
     "ties share their average rank; NaN bases are not ranked."),
    ("rank_volume_zscore_20", "volume_zscore_20",
     "Percentile rank in (0, 1] of volume_zscore_20 across the date's symbols (1 = most unusual "
     "volume); ties share their average rank; NaN bases are not ranked."),
    ("rank_rsi_14", "rsi_14",
     "Percentile rank in (0, 1] of rsi_14 across the date's symbols (1 = most overbought); "
     "ties share their average rank; NaN bases are not ranked."),
    ("rank_obv_20", "obv_20",
     "Percentile rank in (0, 1] of obv_20 across the date's symbols (1 = strongest up-volume "
     "share); ties share their average rank; NaN bases are not ranked."),
    ("rank_beta_60", "beta_60",
     "Percentile rank in (0, 1] of beta_60 across the date's symbols (1 = highest market beta); "
     "ties share their average rank; NaN bases (no market proxy) are not ranked."),
    ("rank_ret_skew_20", "ret_skew_20",
     "Percentile rank in (0, 1] of ret_skew_20 across the date's symbols (1 = most right-skewed "
     "returns); ties share their average rank; NaN bases are not ranked."),
)

for _name, _base, _doc in _RANKS:
    REGISTRY.add_cross_sectional(_name, _base, "rank", _doc)

#: The cross-sectional features this module registers, in registration order.
CROSS_SECTIONAL_FEATURES: tuple[str, ...] = tuple(name for name, _, _ in _RANKS)
