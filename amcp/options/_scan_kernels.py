"""Array kernels of the opportunity scanner (:mod:`amcp.options.scanner`).

Every family of strike combinations is enumerated by *strike offsets* rather than by index lists:
within one (expiry, right) group of ``n`` strikes sorted ascending, the pair ``(i, i + d)`` is
element ``[d - 1, i]`` of a 2-D view and the triple ``(i, i + d1, i + d1 + d2)`` element
``[d1 - 1, d2 - 1, i]`` of a 3-D view, both made by :func:`numpy.lib.stride_tricks.as_strided`
over per-strike arrays padded with NaN. A view copies nothing; an offset past the last strike
reads the padding, so its result is NaN and fails every comparison without a mask. The work per
candidate is a handful of broadcast array operations on per-strike quantities computed once, and
the counts of valid candidates are closed-form, not element counts.

Leg arrays are ``(m, LEGS)``: chain rows (``-1`` for an unused leg) and signed quantities.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided

from amcp._typing import FloatArray, IntArray

LEGS = 4
"""The most legs a scanned structure has (an iron condor, a box)."""

# ------------------------------------------------------------------------------ views and counts


def padded(values: FloatArray, extra: int) -> FloatArray:
    """``values`` followed by ``extra`` NaNs."""
    out = np.full(len(values) + extra, np.nan)
    out[: len(values)] = values
    return out


def lagged(values: FloatArray, first: int, lags: int, width: int) -> FloatArray:
    """The read-only view ``V[a, i] = values[first + a + i]``, shape ``(lags, width)``."""
    base = values[first:]
    if len(base) < lags + width - 1:
        raise ValueError(f"lagged: {len(base)} values cannot cover {lags} lags of width {width}")
    step = base.strides[0]
    view: FloatArray = as_strided(base, shape=(lags, width), strides=(step, step), writeable=False)
    return view


def lagged3(values: FloatArray, first: int, lags1: int, lags2: int, width: int) -> FloatArray:
    """The read-only view ``V[a, b, i] = values[first + a + b + i]``, shape ``(lags1, lags2, width)``."""
    base = values[first:]
    if len(base) < lags1 + lags2 + width - 2:
        raise ValueError(f"lagged3: {len(base)} values cannot cover {lags1}x{lags2} lags of width {width}")
    step = base.strides[0]
    view: FloatArray = as_strided(base, shape=(lags1, lags2, width), strides=(step, step, step), writeable=False)
    return view


def pair_count(n: int, max_apart: int) -> int:
    """Pairs ``i < j`` of ``n`` strikes with ``j - i <= max_apart``: ``Σ_{d=1..w} (n - d)``."""
    w = min(max_apart, n - 1)
    return int(w * n - w * (w + 1) // 2) if w > 0 else 0


def triple_count(n: int, max_apart: int) -> int:
    """Triples ``i < j < k`` of ``n`` strikes with ``j - i`` and ``k - j`` at most ``max_apart``."""
    w = min(max_apart, n - 2)
    if w <= 0:
        return 0
    gaps = np.arange(1, w + 1)
    return int(np.maximum(n - gaps[:, None] - gaps[None, :], 0).sum())


class Pairs:
    """The pairs ``(i, i + d)``, ``1 <= d <= w``, of one group as 2-D views ``[d - 1, i]``."""

    def __init__(self, n: int, max_apart: int) -> None:
        self.n = n
        self.w = min(max_apart, n - 1)

    def views(self, values: FloatArray) -> tuple[FloatArray, FloatArray]:
        """``(values[i], values[i + d])`` broadcastable to ``(w, n - 1)``."""
        pad = padded(values, self.n + 1)
        return values[None, : self.n - 1], lagged(pad, 1, self.w, self.n - 1)

    def decode(self, flat: IntArray) -> tuple[IntArray, IntArray]:
        """Flat positions in the ``(w, n - 1)`` grid → ``(i, j)``."""
        lag, i = np.divmod(flat, self.n - 1)
        return i, i + lag + 1


@dataclass(frozen=True)
class TripleBlock:
    """First gaps ``d1 .. d1 + lags1 - 1``, second gaps ``1 .. w2``, lowest strikes ``0 .. m - 1``."""

    d1: int
    lags1: int
    w2: int
    m: int

    def views(self, values: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """``(values[i], values[j], values[k])`` broadcastable to ``(lags1, w2, m)``; ``values`` padded by
        :func:`triple_blocks`' ``pad``."""
        return (values[None, None, : self.m], lagged(values, self.d1, self.lags1, self.m)[:, None, :],
                lagged3(values, self.d1 + 1, self.lags1, self.w2, self.m))

    def decode(self, flat: IntArray) -> tuple[IntArray, IntArray, IntArray]:
        """Flat positions in the block → strike indices ``(i, j, k)``."""
        x, rest = np.divmod(flat, self.w2 * self.m)
        y, i = np.divmod(rest, self.m)
        j = i + self.d1 + x
        return i, j, j + 1 + y


def triple_blocks(n: int, max_apart: int, block: int) -> Iterator[TripleBlock]:
    """Blocks of about ``block`` cells covering every triple of :func:`triple_count`."""
    w = min(max_apart, n - 2)
    lag0 = 0
    while lag0 < w:
        d1 = lag0 + 1
        w2 = min(w, n - 1 - d1)
        m = n - 1 - d1
        lags1 = max(1, min(w - lag0, block // (w2 * m)))
        yield TripleBlock(d1, lags1, w2, m)
        lag0 += lags1


def triple_pad(values: FloatArray) -> FloatArray:
    """``values`` padded for :meth:`TripleBlock.views`."""
    return padded(values, 3 * len(values) + 3)


def stack_legs(rows: list[IntArray], qty: list[FloatArray | float]) -> tuple[IntArray, FloatArray]:
    """Leg columns → ``(m, LEGS)`` row and quantity arrays, padded with ``-1`` and ``0``."""
    m = len(rows[0])
    leg_rows = np.full((m, LEGS), -1, dtype=np.int64)
    leg_qty = np.zeros((m, LEGS))
    for k, (column, quantity) in enumerate(zip(rows, qty, strict=True)):
        leg_rows[:, k] = column
        leg_qty[:, k] = quantity
    return leg_rows, leg_qty


# ------------------------------------------------------------------------------------------ top-k


@dataclass(frozen=True)
class Picked:
    """Candidates' legs and payoff range at expiry (per unit of underlying)."""

    rows: IntArray
    qty: FloatArray
    payoff_min: FloatArray
    payoff_max: FloatArray

    @staticmethod
    def empty() -> Picked:
        return Picked(np.empty((0, LEGS), dtype=np.int64), np.empty((0, LEGS)), np.empty(0), np.empty(0))

    def take(self, index: IntArray) -> Picked:
        return Picked(self.rows[index], self.qty[index], self.payoff_min[index], self.payoff_max[index])

    @staticmethod
    def concat(parts: list[Picked]) -> Picked:
        return Picked(np.concatenate([p.rows for p in parts]), np.concatenate([p.qty for p in parts]),
                      np.concatenate([p.payoff_min for p in parts]), np.concatenate([p.payoff_max for p in parts]))


class TopK:
    """The ``k`` best-scoring candidates of blocks offered one by one.

    Each block is compared once with the running ``k``-th best score; only candidates above it are
    decoded into legs. NaN scores never qualify.
    """

    def __init__(self, k: int) -> None:
        self.k = k
        self.threshold = -np.inf
        self._scores: list[FloatArray] = []
        self._picked: list[Picked] = []
        self._held = 0

    def offer(self, scores: FloatArray, decode: Callable[[IntArray], Picked]) -> None:
        """Consider ``scores`` (a fresh C-contiguous array); ``decode(flat_positions)`` gives their legs."""
        flat = scores.reshape(-1)
        index = np.flatnonzero(flat > self.threshold)
        if index.size == 0:
            return
        if index.size > self.k:
            index = index[np.argpartition(flat[index], index.size - self.k)[index.size - self.k:]]
        self._scores.append(flat[index])
        self._picked.append(decode(index))
        self._held += index.size
        if self._held >= self.k:
            self._trim()

    def _trim(self) -> None:
        scores = np.concatenate(self._scores)
        picked = Picked.concat(self._picked)
        if scores.size > self.k:
            keep = np.argpartition(scores, scores.size - self.k)[scores.size - self.k:]
            scores, picked = scores[keep], picked.take(keep)
        if scores.size >= self.k:
            self.threshold = float(scores.min())
        self._scores, self._picked, self._held = [scores], [picked], scores.size

    def result(self) -> Picked:
        """The kept candidates, best score first."""
        if not self._scores:
            return Picked.empty()
        self._trim()
        order = np.argsort(-self._scores[0], kind="stable")
        return self._picked[0].take(order)


# ----------------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Book:
    """One (expiry, right) group of tradeable contracts, ascending in strike: chain ``rows`` and the
    per-strike quantities every candidate is built from."""

    rows: IntArray
    strike: FloatArray
    ask: FloatArray
    bid: FloatArray
    ev_long: FloatArray   # model − ask: the EV of buying one
    ev_short: FloatArray  # bid − model: the EV of selling one

    def __len__(self) -> int:
        return len(self.rows)


def score(ev: FloatArray, loss: FloatArray, min_risk: float) -> FloatArray:
    """EV per unit of max loss, a max loss below ``min_risk`` counting as ``min_risk``; NaN where a
    leg is missing."""
    with np.errstate(invalid="ignore"):
        result: FloatArray = ev / np.maximum(loss, min_risk)
    return result


Offer = Callable[[str, FloatArray, Callable[[IntArray], Picked]], None]
"""``offer(structure, scores, decode)``: hand a block of scored candidates to the ranking."""


def rank_verticals(book: Book, is_call: bool, max_apart: int, min_risk: float, offer: Offer) -> int:
    """Offer both verticals of each strike pair; return the candidates per structure (two structures).

    ``A`` buys the lower strike and sells the upper (bull call / bull put), ``B`` the reverse (bear
    call / bear put). Debit spreads pay off in ``[0, w]``, credit spreads in ``[−w, 0]``.
    """
    pairs = Pairs(len(book), max_apart)
    if pairs.w < 1:
        return 0
    k_lo, k_hi = pairs.views(book.strike)
    ask_lo, ask_hi = pairs.views(book.ask)
    bid_lo, bid_hi = pairs.views(book.bid)
    evl_lo, evl_hi = pairs.views(book.ev_long)
    evs_lo, evs_hi = pairs.views(book.ev_short)
    width = k_hi - k_lo
    ev_a, cost_a = evl_lo + evs_hi, ask_lo - bid_hi
    ev_b, cost_b = evs_lo + evl_hi, ask_hi - bid_lo
    if is_call:
        plans = (("bull_call_spread", ev_a, cost_a, 1.0, False), ("bear_call_spread", ev_b, cost_b, -1.0, True))
    else:
        plans = (("bull_put_spread", ev_a, cost_a, 1.0, True), ("bear_put_spread", ev_b, cost_b, -1.0, False))
    for name, ev, cost, q_lo, credit in plans:
        loss = cost + width if credit else cost

        def decode(flat: IntArray, q_lo: float = q_lo, credit: bool = credit) -> Picked:
            i, j = pairs.decode(flat)
            rows, qty = stack_legs([book.rows[i], book.rows[j]], [q_lo, -q_lo])
            w = book.strike[j] - book.strike[i]
            return Picked(rows, qty, -w if credit else np.zeros_like(w), np.zeros_like(w) if credit else w)

        offer(name, score(ev, loss, min_risk), decode)
    return pair_count(len(book), max_apart)


def rank_butterflies(book: Book, is_call: bool, max_wing: int, min_risk: float, block: int, offer: Offer) -> int:
    """Offer every long 1 : −2 : 1 butterfly with wings up to ``max_wing`` strikes; return their count.

    With lower wing ``w₁ = K_j − K_i`` and upper ``w₂ = K_k − K_j``, a call butterfly pays off in
    ``[min(0, w₁ − w₂), w₁]`` and a put butterfly in ``[min(0, w₂ − w₁), w₂]``.
    """
    name = "long_call_butterfly" if is_call else "long_put_butterfly"
    strike, ask, evl = (triple_pad(v) for v in (book.strike, book.ask, book.ev_long))
    bid2, evs2 = triple_pad(2.0 * book.bid), triple_pad(2.0 * book.ev_short)
    for part in triple_blocks(len(book), max_wing, block):
        k_i, k_j, k_k = part.views(strike)
        ask_i, _, ask_k = part.views(ask)
        evl_i, _, evl_k = part.views(evl)
        _, bid2_j, _ = part.views(bid2)
        _, evs2_j, _ = part.views(evs2)
        lower = k_j - k_i
        upper = k_k - k_j
        ev = evl_i + evs2_j + evl_k
        cost = ask_i - bid2_j + ask_k
        gap = upper - lower if is_call else lower - upper
        loss = cost + np.maximum(gap, 0.0)

        def decode(flat: IntArray, part: TripleBlock = part) -> Picked:
            i, j, k = part.decode(flat)
            rows, qty = stack_legs([book.rows[i], book.rows[j], book.rows[k]], [1.0, -2.0, 1.0])
            w1, w2 = book.strike[j] - book.strike[i], book.strike[k] - book.strike[j]
            if is_call:
                return Picked(rows, qty, np.minimum(0.0, w1 - w2), w1)
            return Picked(rows, qty, np.minimum(0.0, w2 - w1), w2)

        offer(name, score(ev, loss, min_risk), decode)
    return triple_count(len(book), max_wing)


def rank_condors(puts: Book, calls: Book, max_wing: int, min_risk: float, block: int, offer: Offer) -> int:
    """Offer every short iron condor ``+P(a) −P(b) −C(c) +C(d)``, ``a < b < c < d``, wings up to
    ``max_wing`` strikes; return their count. It pays off in ``[−max(b − a, d − c), 0]``.

    The put credit spreads (sorted by short strike) and call credit spreads (sorted by short strike)
    are computed once; a condor's EV and cost are sums of one of each, evaluated as outer sums in
    row blocks, each block taking only the call spreads whose short strike is above its puts'.
    """
    p_lo, p_hi = _pair_index(len(puts), max_wing)
    c_lo, c_hi = _pair_index(len(calls), max_wing)
    if not len(p_lo) or not len(c_lo):
        return 0
    p_order = np.argsort(p_hi, kind="stable")
    p_lo, p_hi = p_lo[p_order], p_hi[p_order]
    c_order = np.argsort(c_lo, kind="stable")
    c_lo, c_hi = c_lo[c_order], c_hi[c_order]
    put_short = puts.strike[p_hi]
    put_width = put_short - puts.strike[p_lo]
    put_ev = puts.ev_long[p_lo] + puts.ev_short[p_hi]
    put_cost = puts.ask[p_lo] - puts.bid[p_hi]
    call_short = calls.strike[c_lo]
    call_width = calls.strike[c_hi] - call_short
    call_ev = calls.ev_short[c_lo] + calls.ev_long[c_hi]
    call_cost = calls.ask[c_hi] - calls.bid[c_lo]
    first_call = np.searchsorted(call_short, put_short, side="right")
    total = int((len(c_lo) - first_call).sum())
    n_put = len(p_lo)
    start = 0
    while start < n_put:
        col = int(first_call[start])
        if col >= len(c_lo):
            break
        stop = min(n_put, start + max(1, block // (len(c_lo) - col)))
        rows = slice(start, stop)
        ev = put_ev[rows, None] + call_ev[None, col:]
        loss = put_cost[rows, None] + call_cost[None, col:] + np.maximum(put_width[rows, None], call_width[None, col:])
        scores = score(ev, loss, min_risk)
        band = int(first_call[stop - 1]) - col  # columns some rows of this block must not pair with
        if band:
            scores[:, :band][call_short[None, col:col + band] <= put_short[rows, None]] = np.nan

        def decode(flat: IntArray, start: int = start, col: int = col) -> Picked:
            r, c = np.divmod(flat, len(c_lo) - col)
            r, c = r + start, c + col
            legs, qty = stack_legs([puts.rows[p_lo[r]], puts.rows[p_hi[r]], calls.rows[c_lo[c]], calls.rows[c_hi[c]]],
                                   [1.0, -1.0, -1.0, 1.0])
            worst = np.maximum(put_width[r], call_width[c])
            return Picked(legs, qty, -worst, np.zeros_like(worst))

        offer("short_iron_condor", scores, decode)
        start = stop
    return total


def _pair_index(n: int, max_apart: int) -> tuple[IntArray, IntArray]:
    """``(i, j)`` of every pair ``i < j < n`` with ``j - i <= max_apart``."""
    w = min(max_apart, n - 1)
    if w < 1:
        empty = np.empty(0, dtype=np.int64)
        return empty, empty
    lo = np.concatenate([np.arange(n - d) for d in range(1, w + 1)]).astype(np.int64)
    hi = lo + np.concatenate([np.full(n - d, d) for d in range(1, w + 1)]).astype(np.int64)
    return lo, hi
