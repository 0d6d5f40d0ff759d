"""Moving-average crossover, with backtrader's ``CrossOver`` semantics to the bit.

For each symbol, over its own bars (a NaN bar does not count)::

    fast_t = fsum(close[t-fast+1 .. t]) / fast       slow_t = fsum(close[t-slow+1 .. t]) / slow
    d_t    = fast_t - slow_t
    nzd_t  = d_t if d_t != 0 else nzd_{t-1}           (NonZeroDifference; seeded with d at the
                                                       first bar that has a slow SMA)
    up_t   = nzd_{t-1} < 0 and fast_t > slow_t
    down_t = nzd_{t-1} > 0 and fast_t < slow_t

Both SMAs exist from the symbol's ``slow``-th close; that bar only seeds ``nzd``, so the first
possible cross is at its ``slow + 1``-th close — exactly where ``bt.ind.CrossOver`` first gives
a value. ``fsum`` (exactly rounded sums, as backtrader's ``Average``) matters only when the two
averages are within rounding of each other; elsewhere numpy sums give the same signs, so the
exact sums are computed for those few symbols only. (The error bound assumes positive prices.)

Trading: on an up-cross while the strategy's own position (from its fills) is 0, buy
``quantity`` (market, day); on a down-cross while long, sell the whole position.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import numpy as np

from amcp._typing import BoolArray, FloatArray, IntArray
from amcp.config import MovingAverageCrossConfig
from amcp.domain.data import BarBatch
from amcp.domain.enums import OrderSide, OrderType, TimeInForce
from amcp.domain.messages import Intent, OrderIntent
from amcp.errors import DataError
from amcp.strategies.base import PriceHistory, Strategy

_ZERO = Decimal(0)


class MovingAverageCross(Strategy):
    """Buy ``quantity`` when SMA(fast) crosses above SMA(slow); sell it all when it crosses below."""

    def __init__(self, config: MovingAverageCrossConfig, universe: tuple[str, ...]) -> None:
        super().__init__(config.id, universe)
        self.config = config
        n = len(self.universe)
        fast, slow = config.fast_bars, config.slow_bars
        self._fast = fast
        self._slow = slow
        self._history = PriceHistory(slow, n)
        # One matrix product over the window (oldest first) gives, per symbol,
        #   row 0: the slow sum S_s,   row 1: (slow / fast) × S_f - S_s = slow × (fast SMA - slow SMA),
        # whose sign is the sign of fast - slow.
        self._weights: FloatArray = np.zeros((2, slow))
        self._weights[0] = 1.0
        self._weights[1] = -1.0
        self._weights[1, slow - fast :] = slow / fast - 1.0
        self._sums: FloatArray = np.empty((2, n))
        # Rounding moves row 1 by at most (slow + 2) half-ulps × (1 + slow / fast) × S_s, and
        # backtrader's own SMAs by less: beyond twice that, the signs agree with exactly rounded
        # sums. Closer than that (ties and near-ties) the difference is recomputed exactly.
        self._tolerance_per_sum = 2.0 * (slow + 2) * float(np.finfo(np.float64).eps) * (1.0 + slow / fast)
        # Last non-zero difference (NonZeroDifference); 0 or NaN until one exists: same meaning.
        self._nzd: FloatArray = np.zeros(n)
        self._tolerance: FloatArray = np.empty(n)
        self._magnitude: FloatArray = np.empty(n)
        self._product: FloatArray = np.empty(n)
        self._ambiguous: BoolArray = np.zeros(n, dtype=bool)
        self._cross: BoolArray = np.zeros(n, dtype=bool)
        self._nonzero: BoolArray = np.zeros(n, dtype=bool)
        self._sums[:] = np.nan

    # ------------------------------------------------------------------ cycle
    def on_bars(self, batch: BarBatch) -> list[Intent]:
        close = self._universe_close(batch)
        absent = np.isnan(close, out=self._absent)
        all_present = not np.count_nonzero(absent)
        self._history.push(close, absent, all_present)

        diff = self._difference()  # NaN until the symbol has `slow` closes
        if not all_present:
            np.copyto(diff, 0.0, where=absent)  # no bar: no cross, and nzd keeps its value
        nzd = self._nzd
        # A cross is a sign change against the last non-zero difference: nzd × diff < 0.
        cross = np.less(np.multiply(nzd, diff, out=self._product), 0.0, out=self._cross)
        np.not_equal(diff, 0.0, out=self._nonzero)
        np.copyto(nzd, diff, where=self._nonzero)
        if not np.count_nonzero(cross):
            return []
        return self._orders(np.flatnonzero(cross), diff)

    def _difference(self) -> FloatArray:
        """Return slow × (fast SMA - slow SMA), with its sign as exactly rounded sums give it."""
        window = self._history.window(self._slow)
        sums = np.matmul(self._weights, window, out=self._sums)
        diff = sums[1]
        tolerance = np.multiply(sums[0], self._tolerance_per_sum, out=self._tolerance)
        magnitude = np.abs(diff, out=self._magnitude)
        ambiguous = np.less_equal(magnitude, tolerance, out=self._ambiguous)
        if np.count_nonzero(ambiguous):
            start = self._slow - self._fast
            for i in np.flatnonzero(ambiguous).tolist():
                column = window[:, i].tolist()
                # Exactly backtrader's arithmetic: fsum(window) / period for each SMA.
                diff[i] = math.fsum(column[start:]) / self._fast - math.fsum(column) / self._slow
        return diff

    def _orders(self, crossed: IntArray, diff: FloatArray) -> list[Intent]:
        intents: list[Intent] = []
        sid, universe, positions = self.id, self.universe, self.positions
        for i, up in zip(crossed.tolist(), (diff[crossed] > 0).tolist()):
            symbol = universe[i]
            held = positions.get(symbol, _ZERO)
            if up and held == 0:
                intents.append(
                    OrderIntent(
                        strategy_id=sid,
                        symbol=symbol,
                        side=OrderSide.BUY,
                        quantity=self.config.quantity,
                        order_type=OrderType.MARKET,
                        time_in_force=TimeInForce.DAY,
                        tag="ma cross up",
                    )
                )
            elif not up and held > 0:
                intents.append(
                    OrderIntent(
                        strategy_id=sid,
                        symbol=symbol,
                        side=OrderSide.SELL,
                        quantity=held,
                        order_type=OrderType.MARKET,
                        time_in_force=TimeInForce.DAY,
                        tag="ma cross down",
                    )
                )
        return intents

    # ------------------------------------------------------------------ inspection and checkpoint
    @property
    def last_crossover(self) -> IntArray:
        """The last cycle's ``CrossOver`` per universe symbol: +1 up, -1 down, 0 none."""
        return np.where(self._cross, np.sign(self._sums[1]), 0.0).astype(np.int64)

    def _extra_state(self) -> dict[str, Any]:
        return {"history": self._history.state(), "nzd": self._nzd.copy()}

    def _load_extra_state(self, state: dict[str, Any]) -> None:
        nzd = np.asarray(state["nzd"], dtype=np.float64)
        if nzd.shape != self._nzd.shape:
            raise DataError(f"saved crossover state has shape {nzd.shape}, expected {self._nzd.shape}")
        self._history.load_state(state["history"])
        self._nzd[:] = nzd
        self._cross[:] = False
