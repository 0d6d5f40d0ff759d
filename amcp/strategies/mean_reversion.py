"""Z-score mean reversion: buy a symbol stretched below its moving average, exit once it is back.

For each symbol with ``window`` closes (the current close included)::

    mean = (1 / window) × Σ close          std = sqrt((1 / window) × Σ (close - mean)²)
    z    = (close_t - mean) / std

- flat and ``z <= -entry_z``: target weight ``+1 / max_positions`` (long entry);
  with ``allow_short``, flat and ``z >= entry_z``: ``-1 / max_positions`` (short entry);
- long and ``z >= -exit_z``, or short and ``z <= exit_z``: target weight 0 (exit).

Exits are decided first and free their slots; entries then fill the free slots (at most
``max_positions`` held), the most stretched ``|z|`` chosen first, ties in universe order.
Intents come exits first, then entries, each in universe order. A symbol that exits does not
re-enter in the same cycle. The held set is the strategy's own emitted targets.
Symbols with no bar, too little history or a zero standard deviation get no signal.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amcp._typing import BoolArray, FloatArray
from amcp.config import MeanReversionConfig
from amcp.domain.data import BarBatch
from amcp.domain.messages import Intent, TargetWeight
from amcp.errors import DataError
from amcp.strategies.base import PriceHistory, Strategy


class MeanReversion(Strategy):
    """Enter against a move of ``entry_z`` standard deviations; exit once back within ``exit_z``."""

    def __init__(self, config: MeanReversionConfig, universe: tuple[str, ...]) -> None:
        super().__init__(config.id, universe)
        self.config = config
        n = len(self.universe)
        self._window = config.window_bars
        self._history = PriceHistory(config.window_bars, n)
        # +1 long, -1 short, NaN flat: then z × held >= -exit_z is the exit test of both sides,
        # and it is false for every flat symbol.
        self._held: FloatArray = np.full(n, np.nan)
        self._weight = 1.0 / config.max_positions
        self._mean: FloatArray = np.empty(n)
        self._std: FloatArray = np.empty(n)
        self._z: FloatArray = np.empty(n)
        self._dev: FloatArray = np.empty((config.window_bars, n))
        self._scratch: FloatArray = np.empty(n)
        self._exits: BoolArray = np.zeros(n, dtype=bool)
        self._entries: BoolArray = np.zeros(n, dtype=bool)
        self._flat: BoolArray = np.zeros(n, dtype=bool)
        self._zero_std: BoolArray = np.zeros(n, dtype=bool)

    # ------------------------------------------------------------------ cycle
    def on_bars(self, batch: BarBatch) -> list[Intent]:
        close = self._universe_close(batch)
        absent = np.isnan(close, out=self._absent)
        all_present = not np.count_nonzero(absent)
        self._history.push(close, absent, all_present)
        z = self._zscore(close)  # NaN where the symbol has no bar: close is NaN
        config, held = self.config, self._held
        # NaN z (no bar, short history, zero std) fails every comparison: no signal.
        exits = np.greater_equal(np.multiply(z, held, out=self._scratch), -config.exit_z, out=self._exits)
        flat = np.isnan(held, out=self._flat)
        if config.allow_short:
            stretched = np.greater_equal(np.abs(z, out=self._scratch), config.entry_z, out=self._entries)
        else:
            stretched = np.less_equal(z, -config.entry_z, out=self._entries)
        entries = np.logical_and(stretched, flat, out=self._entries)
        if not (np.count_nonzero(exits) or np.count_nonzero(entries)):
            return []

        sid, universe = self.id, self.universe
        intents: list[Intent] = []
        for i in np.flatnonzero(exits).tolist():
            held[i] = np.nan
            intents.append(
                TargetWeight(strategy_id=sid, symbol=universe[i], weight=0.0, tag="mean reversion exit")
            )
        free = config.max_positions - (len(universe) - int(np.count_nonzero(np.isnan(held))))
        candidates = np.flatnonzero(entries)
        if free > 0 and candidates.size:
            if candidates.size > free:
                candidates = np.sort(candidates[np.argsort(-np.abs(z[candidates]), kind="stable")[:free]])
            for i in candidates.tolist():
                side = 1 if z[i] < 0 else -1
                held[i] = side
                intents.append(
                    TargetWeight(
                        strategy_id=sid,
                        symbol=universe[i],
                        weight=side * self._weight,
                        tag="mean reversion long" if side > 0 else "mean reversion short",
                    )
                )
        return intents

    def _zscore(self, close: FloatArray) -> FloatArray:
        """Return z for every symbol (NaN where the window is incomplete or flat); scratch array."""
        window = self._history.window(self._window)
        mean, std, z = self._mean, self._std, self._z
        np.add.reduce(window, axis=0, out=mean)
        mean /= self._window
        dev = self._dev
        np.subtract(window, mean, out=dev)
        np.multiply(dev, dev, out=dev)
        np.add.reduce(dev, axis=0, out=std)
        std /= self._window
        np.sqrt(std, out=std)
        np.copyto(std, np.nan, where=np.equal(std, 0.0, out=self._zero_std))  # flat window: no z
        np.subtract(close, mean, out=z)
        z /= std
        return z

    # ------------------------------------------------------------------ checkpoint
    @property
    def held(self) -> dict[str, int]:
        """The symbols it holds by its own targets: +1 long, -1 short."""
        return {self.universe[i]: int(self._held[i]) for i in np.flatnonzero(~np.isnan(self._held)).tolist()}

    @property
    def last_zscore(self) -> FloatArray:
        """The z-scores of the last cycle, in universe order (NaN: no signal possible)."""
        return self._z.copy()

    def _extra_state(self) -> dict[str, Any]:
        return {"history": self._history.state(), "held": self._held.copy()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        held = np.asarray(state["held"], dtype=np.float64)
        if held.shape != self._held.shape:
            raise DataError(f"saved held set has shape {held.shape}, expected {self._held.shape}")
        self._history.load_state(state["history"])
        self._held = held.copy()
