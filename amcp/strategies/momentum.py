"""Cross-sectional momentum: hold the symbols that rose most over the lookback, skipping the last month.

Score of symbol ``i`` at cycle ``t`` (closes counted in the symbol's own bars)::

    score_i = close_i[t - skip] / close_i[t - lookback] - 1

Every ``rebalance_bars`` cycles, counted from the first cycle at which enough symbols have a
score (``top_n``, or ``2 × top_n`` long/short), the strategy targets weight ``1 / top_n`` in
each of the ``top_n`` best scores (long/short: ``+0.5 / top_n`` in the best and
``-0.5 / top_n`` in the worst ``top_n``) and weight 0 in every symbol it held and no longer
selects. It emits nothing between rebalances.

Only symbols with a bar at the rebalance and a full history (``lookback + 1`` closes) are
ranked; ties go to the earlier symbol of the universe. A held symbol with no bar at a
rebalance is not selected, so it gets an explicit exit like any other dropped symbol.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amcp._typing import BoolArray, FloatArray
from amcp.config import MomentumConfig
from amcp.domain.data import BarBatch
from amcp.domain.messages import Intent, TargetWeight
from amcp.errors import ConfigError, DataError
from amcp.strategies.base import PriceHistory, Strategy


class CrossSectionalMomentum(Strategy):
    """Equal-weight the top-n (and short the bottom-n) symbols by lookback return."""

    def __init__(self, config: MomentumConfig, universe: tuple[str, ...]) -> None:
        """Build the strategy for ``config`` on ``universe``.

        Raises:
            ConfigError: if the universe has fewer symbols than the strategy selects.
        """
        super().__init__(config.id, universe)
        needed = config.top_n * (2 if config.long_short else 1)
        if len(self.universe) < needed:
            raise ConfigError(
                f"strategy {config.id!r}: top_n {config.top_n}{' long and short' if config.long_short else ''} "
                f"needs at least {needed} symbols, the universe has {len(self.universe)}"
            )
        self.config = config
        self._needed = needed
        self._history = PriceHistory(config.lookback_bars + 1, len(self.universe))
        self._full = config.lookback_bars + 1
        self._held = np.zeros(len(self.universe), dtype=np.int8)  # +1 long, -1 short, 0 flat
        self._cycles_since_warm = -1  # -1: not warm yet
        weight = 1.0 / config.top_n
        self._long_weight = 0.5 * weight if config.long_short else weight
        self._short_weight = -0.5 * weight
        self._score: FloatArray = np.empty(len(self.universe))

    # ------------------------------------------------------------------ cycle
    def on_bars(self, batch: BarBatch) -> list[Intent]:
        close = self._universe_close(batch)
        absent = np.isnan(close, out=self._absent)
        all_present = not np.count_nonzero(absent)
        self._history.push(close, absent, all_present)

        if self._cycles_since_warm < 0:
            ranked = int(np.count_nonzero((self._history.counts >= self._full) & ~absent))
            if ranked < self._needed:
                return []
            self._cycles_since_warm = 0
        cycle = self._cycles_since_warm
        self._cycles_since_warm = cycle + 1
        if cycle % self.config.rebalance_bars:
            return []
        return self._rebalance(absent)

    def _rebalance(self, absent: BoolArray) -> list[Intent]:
        config = self.config
        history = self._history
        score = self._score
        np.copyto(score, history.lag(config.lookback_bars))
        base_ok = score > 0  # NaN (short history) and non-positive prices drop out
        np.divide(history.lag(config.skip_bars), score, out=score, where=base_ok)
        score -= 1.0
        usable = base_ok & ~absent & np.isfinite(score)
        candidates = np.flatnonzero(usable)
        # Best first; a stable sort on the negated score keeps ties in universe order.
        order = candidates[np.argsort(-score[candidates], kind="stable")]
        selected = np.zeros_like(self._held)
        if config.long_short:
            count = min(config.top_n, order.size // 2)
            longs = order[:count]
            shorts = order[order.size - count :][::-1] if count else order[:0]  # worst first
            selected[longs] = 1
            selected[shorts] = -1
        else:
            longs = order[: config.top_n]
            shorts = order[:0]
            selected[longs] = 1

        sid, universe = self.id, self.universe
        intents: list[Intent] = [
            TargetWeight(strategy_id=sid, symbol=universe[i], weight=0.0, tag="momentum exit")
            for i in np.flatnonzero((self._held != 0) & (selected == 0)).tolist()
        ]
        intents.extend(
            TargetWeight(strategy_id=sid, symbol=universe[i], weight=self._long_weight, tag="momentum long")
            for i in longs.tolist()
        )
        intents.extend(
            TargetWeight(strategy_id=sid, symbol=universe[i], weight=self._short_weight, tag="momentum short")
            for i in shorts.tolist()
        )
        self._held = selected
        return intents

    # ------------------------------------------------------------------ checkpoint
    @property
    def held(self) -> dict[str, int]:
        """The symbols of the last rebalance's targets: +1 long, -1 short."""
        return {self.universe[i]: int(self._held[i]) for i in np.flatnonzero(self._held).tolist()}

    def _extra_state(self) -> dict[str, Any]:
        return {
            "history": self._history.state(),
            "held": self._held.copy(),
            "cycles_since_warm": self._cycles_since_warm,
        }

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        held = np.asarray(state["held"], dtype=np.int8)
        if held.shape != self._held.shape:
            raise DataError(f"saved held set has shape {held.shape}, expected {self._held.shape}")
        self._history.load_state(state["history"])
        self._held = held.copy()
        self._cycles_since_warm = int(state["cycles_since_warm"])
