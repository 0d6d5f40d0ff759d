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
from amcp.domain._fast_init import keyword_constructor
from amcp.domain.data import BarBatch
from amcp.domain.enums import OrderSide, OrderType, TimeInForce
from amcp.domain.messages import Intent, OrderIntent
from amcp.errors import DataError
from amcp.strategies.base import PriceHistory, Strategy

_ZERO = Decimal(0)
# OrderIntent(...) for the hot path: the same message, without the class-call overhead.
_new_order_intent = keyword_constructor(OrderIntent)
_BUY, _SELL = OrderSide.BUY, OrderSide.SELL
_MARKET, _DAY = OrderType.MARKET, TimeInForce.DAY


class MovingAverageCross(Strategy):
    """Buy ``quantity`` when SMA(fast) crosses above SMA(slow); sell it all when it crosses below."""

    def __init__(self, config: MovingAverageCrossConfig, universe: tuple[str, ...]) -> None:
        super().__init__(config.id, universe)
        self.config = config
        self._quantity = config.quantity
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
        # Array operands for the elementwise steps: numpy takes an array faster than a Python
        # scalar, and multiplies or compares element by element just the same.
        self._tolerance_factors: FloatArray = np.full(n, self._tolerance_per_sum)
        self._zeros: FloatArray = np.zeros(n)
        # Last non-zero difference (NonZeroDifference); 0 or NaN until one exists: same meaning.
        self._nzd: FloatArray = np.zeros(n)
        self._tolerance: FloatArray = np.empty(n)
        self._magnitude: FloatArray = np.empty(n)
        self._product: FloatArray = np.empty(n)
        self._ambiguous: BoolArray = np.zeros(n, dtype=bool)
        self._cross: BoolArray = np.zeros(n, dtype=bool)
        self._nonzero: BoolArray = np.zeros(n, dtype=bool)
        self._sums[:] = np.nan
        self._slow_sums, self._diff = self._sums  # row views; the product writes the rows in place

    # ------------------------------------------------------------------ cycle
    def on_bars(self, batch: BarBatch) -> list[Intent]:
        close = self._universe_close(batch)
        absent = np.isnan(close, out=self._absent)
        all_present = not np.count_nonzero(absent)
        self._history.push(close, absent, all_present)

        diff = self._difference()  # NaN until the symbol has `slow` closes
        zeros = self._zeros
        if not all_present:
            np.copyto(diff, zeros, where=absent)  # no bar: no cross, and nzd keeps its value
        nzd = self._nzd
        # A cross is a sign change against the last non-zero difference: nzd × diff < 0.
        cross = np.less(np.multiply(nzd, diff, out=self._product), zeros, out=self._cross)
        if diff.nonzero()[0].size == diff.size:  # the usual case (NaN is non-zero, as for !=)
            nzd[...] = diff
        else:
            np.not_equal(diff, zeros, out=self._nonzero)
            np.copyto(nzd, diff, where=self._nonzero)
        crossed = cross.nonzero()[0]
        if not crossed.size:
            return []
        return self._orders(crossed, diff)

    def _difference(self) -> FloatArray:
        """Return slow × (fast SMA - slow SMA), with its sign as exactly rounded sums give it."""
        window = self._history.window(self._slow)
        np.dot(self._weights, window, out=self._sums)  # dgemm, as matmul, with less dispatch
        diff = self._diff  # row 1 of the sums
        tolerance = np.multiply(self._slow_sums, self._tolerance_factors, out=self._tolerance)
        magnitude = np.abs(diff, out=self._magnitude)
        ambiguous = np.less_equal(magnitude, tolerance, out=self._ambiguous).nonzero()[0]
        if ambiguous.size:
            start = self._slow - self._fast
            for i in ambiguous.tolist():
                column = window[:, i].tolist()
                # Exactly backtrader's arithmetic: fsum(window) / period for each SMA.
                diff[i] = math.fsum(column[start:]) / self._fast - math.fsum(column) / self._slow
        return diff

    def _orders(self, crossed: IntArray, diff: FloatArray) -> list[Intent]:
        intents: list[Intent] = []
        sid, universe, positions = self.id, self.universe, self.positions
        for i in crossed.tolist():
            up = diff.item(i) > 0
            symbol = universe[i]
            held = positions.get(symbol, _ZERO)
            if up and held == _ZERO:
                intents.append(
                    _new_order_intent(
                        strategy_id=sid,
                        symbol=symbol,
                        side=_BUY,
                        quantity=self._quantity,
                        order_type=_MARKET,
                        time_in_force=_DAY,
                        tag="ma cross up",
                    )
                )
            elif not up and held > _ZERO:
                intents.append(
                    _new_order_intent(
                        strategy_id=sid,
                        symbol=symbol,
                        side=_SELL,
                        quantity=held,
                        order_type=_MARKET,
                        time_in_force=_DAY,
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
