"""The opportunity scanner: executable arbitrage in a chain, and multi-leg candidates ranked by EV per unit of risk.

**Tradeable contracts.** A contract takes part only if it passes the :class:`LiquidityFilter`
(a bid of at least ``min_bid`` and an ask, open interest, volume, absolute and relative bid-ask
spread). The same filter serves both scans: a contract is either tradeable or not.

**Arbitrage** (:func:`find_arbitrage`). Every violation is a trade whose net option premium,
``cost = Σ qty·price`` (paid > 0, received < 0), is below the lowest value the no-arbitrage
theory allows, ``bound``; its ``size = bound − cost > min_violation`` is the riskless profit per
unit of underlying (present value; multiply by the multiplier for a contract). With ``basis =
"executable"`` legs bought pay the ask and legs sold receive the bid, so a violation survives
crossing the spread; with ``basis = "mid"`` (``include_mid_violations``) both are the mid. With
``D = e^(−rT)`` for European style and ``D = 1`` for American style (a short American leg can be
assigned at once, so a liability of ``ΔK`` may fall due today), ``F₀ = S·e^(−qT)``:

====================  ==========================================  ========================================
kind                  trade (``i < j < k`` strikes, one expiry)   bound on its cost
====================  ==========================================  ========================================
put_call_parity       +C(K) −P(K)  (synthetic long, short stock)  F₀ − K·e^(−rT) European; F₀ − K American
put_call_parity       −C(K) +P(K)  (synthetic short, long stock)  K·e^(−rT) − F₀ European; K·e^(−rT) − S American
vertical_monotonicity +C(Kᵢ) −C(Kⱼ);  +P(Kⱼ) −P(Kᵢ)              0 (calls fall, puts rise with strike)
vertical_slope        −C(Kᵢ) +C(Kⱼ);  −P(Kⱼ) +P(Kᵢ)              −(Kⱼ − Kᵢ)·D
butterfly_convexity   +λ·X(Kᵢ) −X(Kⱼ) +(1−λ)·X(Kₖ), λ=(Kₖ−Kⱼ)/(Kₖ−Kᵢ)  0 (prices convex in strike)
calendar_order        −X(K, T₁) +X(K, T₂), T₁ < T₂                0
box_spread            +C(Kᵢ) −C(Kⱼ) +P(Kⱼ) −P(Kᵢ)                 (Kⱼ − Kᵢ)·e^(−rT)
box_spread            −C(Kᵢ) +C(Kⱼ) −P(Kⱼ) +P(Kᵢ)                 −(Kⱼ − Kᵢ)·D
====================  ==========================================  ========================================

Put-call parity is an equality only for European options: ``C − P = S·e^(−qT) − K·e^(−rT)``.
For American options it is the pair of inequalities ``S·e^(−qT) − K ≤ C − P ≤ S − K·e^(−rT)``,
which are what ``style="american"`` tests. The stock leg trades at ``chain.spot`` (its own spread
is not modelled). The calendar order holds for American options of either right whatever the
dividends (the longer option can do all the shorter one can); for European options it holds for
calls only when ``q ≤ 0 ≤ r`` and for puts only when ``r ≤ 0 ≤ q`` (a deep in-the-money European
call on a dividend payer, or put at a positive rate, may be worth less with more time), so those
pairs are checked only then. Pairs and triples of strikes are checked at every distance up to
``arbitrage_max_strikes_apart`` listed strikes, so one mispriced contract may appear in several
violations; each row is one trade.

**Candidates** (:func:`rank_candidates`). Per expiry: the four vertical spreads (bull/bear,
calls/puts) on every strike pair, the long call and put butterflies (1 : −2 : 1, wings of any
width up to ``butterfly_max_wing_strikes``), and the short (credit) iron condor ``+P(a) −P(b)
−C(c) +C(d)``, ``a < b < c < d``. Each contract's model price is Black-Scholes-Merton at the
surface's implied volatility at its strike and expiry (on the surface's forward when it has one,
see :func:`model_prices`), computed once per chain; then, with ``cost`` at executable prices::

    model_value = Σ qty·model_price          (present value under the surface)
    ev          = model_value − cost
    max_loss    = cost − min(payoff at expiry),   max_profit = max(payoff at expiry) − cost
    ev_per_risk = ev / max(max_loss, min_risk)

Model values are European BSM values, also for American contracts (an approximation that
undervalues early exercise). The payoff extremes are exact for the piecewise-linear payoffs:
``[0, w]`` for debit verticals and ``[−w, 0]`` for credit verticals of width ``w``;
``[min(0, w₁ − w₂), w₁]`` for a call butterfly with lower and upper wings ``w₁``, ``w₂`` (mirrored
for puts); ``[−max(w_put, w_call), 0]`` for the iron condor. ``max_loss`` and ``max_profit`` are
undiscounted amounts at expiry per unit of underlying. ``min_risk`` keeps a structure that can
barely lose from ranking near-infinitely well on noise (one that cannot lose at all is also an
arbitrage, which :func:`find_arbitrage` reports when its size is large enough). Each structure keeps its
``top_per_structure`` best candidates; every candidate evaluated is counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import numpy as np
import numpy.typing as npt

from amcp._typing import BoolArray, FloatArray, IntArray

# The scanner's config models (and their Literal types) live in amcp.config; importable from here too.
from amcp.config import LiquidityFilter, ScannerConfig, StructureFamily
from amcp.errors import DataError
from amcp.options import _scan_kernels as kern
from amcp.options.black_scholes import bsm_price
from amcp.options.chain import OptionChain

__all__ = [
    "ARBITRAGE_KINDS",
    "STRUCTURES",
    "ChainScan",
    "LiquidityFilter",
    "ScannerConfig",
    "StrikeVolSurface",
    "candidate_dtype",
    "find_arbitrage",
    "liquid_mask",
    "model_prices",
    "rank_candidates",
    "scan_chain",
    "violation_dtype",
]

ARBITRAGE_KINDS: tuple[str, ...] = ("put_call_parity", "vertical_monotonicity", "vertical_slope",
                                    "butterfly_convexity", "calendar_order", "box_spread")
"""The ``kind`` values of :func:`find_arbitrage`'s table."""

STRUCTURES: dict[str, tuple[str, ...]] = {
    "vertical": ("bull_call_spread", "bear_call_spread", "bull_put_spread", "bear_put_spread"),
    "butterfly": ("long_call_butterfly", "long_put_butterfly"),
    "iron_condor": ("short_iron_condor",),
}
"""Structure families (config names) and the structures (catalog names) each one scans."""

LEGS = kern.LEGS
Family = StructureFamily


class StrikeVolSurface(Protocol):
    """Anything that gives an implied volatility at a strike and a time to expiry (e.g. ``SVISurface``)."""

    def implied_vol(self, strike: npt.ArrayLike, t_years: npt.ArrayLike) -> FloatArray:
        """Black-Scholes implied volatility at ``strike`` and ``t_years`` (broadcast)."""
        ...


def violation_dtype(symbol_width: int) -> np.dtype[np.void]:
    """The dtype of :func:`find_arbitrage`'s table for OCC symbols of up to ``symbol_width`` characters."""
    fields: list[tuple[str, str]] = [("kind", "U21"), ("basis", "U10"), ("expiry", "M8[D]"), ("far_expiry", "M8[D]")]
    fields += [(f"symbol_{k}", f"U{symbol_width}") for k in range(1, LEGS + 1)]
    fields += [(f"qty_{k}", "f8") for k in range(1, LEGS + 1)]
    fields += [(f"price_{k}", "f8") for k in range(1, LEGS + 1)]
    fields += [("cost", "f8"), ("bound", "f8"), ("size", "f8")]
    return np.dtype(fields)


def candidate_dtype(symbol_width: int) -> np.dtype[np.void]:
    """The dtype of :func:`rank_candidates`' table for OCC symbols of up to ``symbol_width`` characters."""
    fields: list[tuple[str, str]] = [("structure", "U20"), ("expiry", "M8[D]")]
    fields += [(f"symbol_{k}", f"U{symbol_width}") for k in range(1, LEGS + 1)]
    fields += [(f"qty_{k}", "i8") for k in range(1, LEGS + 1)]
    fields += [(f"price_{k}", "f8") for k in range(1, LEGS + 1)]
    fields += [("cost", "f8"), ("max_loss", "f8"), ("max_profit", "f8"), ("model_value", "f8"), ("ev", "f8"),
               ("ev_per_risk", "f8")]
    return np.dtype(fields)


@dataclass(frozen=True)
class ChainScan:
    """What :func:`scan_chain` found in one chain.

    Attributes:
        underlying, as_of: the chain's.
        contracts: rows in the chain; ``contracts_tradeable`` of them passed the filter.
        violations: :func:`find_arbitrage`'s table, largest first.
        candidates: :func:`rank_candidates`' table, best ``ev_per_risk`` first.
        candidates_evaluated: structure → candidates evaluated.
    """

    underlying: str
    as_of: datetime
    contracts: int
    contracts_tradeable: int
    violations: np.ndarray
    candidates: np.ndarray
    candidates_evaluated: dict[str, int] = field(default_factory=dict)

    @property
    def total_candidates_evaluated(self) -> int:
        """Candidates evaluated over every structure."""
        return sum(self.candidates_evaluated.values())


# --------------------------------------------------------------------------------------- inputs


def liquid_mask(chain: OptionChain, filters: LiquidityFilter) -> BoolArray:
    """Rows of ``chain`` that pass ``filters`` (see :class:`LiquidityFilter`)."""
    with np.errstate(invalid="ignore"):
        keep = np.isfinite(chain.bid) & np.isfinite(chain.ask) & (chain.bid >= filters.min_bid)
        if filters.min_open_interest > 0:
            keep &= chain.open_interest >= filters.min_open_interest
        if filters.min_volume > 0:
            keep &= chain.volume >= filters.min_volume
        if filters.max_spread_abs is not None:
            keep &= chain.spread <= filters.max_spread_abs
        if filters.max_spread_rel is not None:
            keep &= chain.spread <= filters.max_spread_rel * chain.mid
    result: BoolArray = keep
    return result


def model_prices(chain: OptionChain, surface: StrikeVolSurface, rows: BoolArray) -> FloatArray:
    """Model prices of the ``rows`` of ``chain``: Black-Scholes-Merton at the surface's volatility.

    The carry is the chain's ``rate`` and ``div_yield``, unless the surface also has a
    ``forward(t_years)`` method (as ``SVISurface`` has): then each expiry's forward ``F`` is the
    surface's, i.e. the price is Black-76, ``e^(−rT)·(F·N(d1) − K·N(d2))`` for a call, computed
    as BSM with the implied yield ``q = r − ln(F/S)/T`` (so a surface fitted to a parity forward
    prices consistently with its own smile). NaN outside ``rows`` and where the surface gives no
    finite, non-negative volatility or forward. Contracts at expiry (``t_years = 0``) are worth
    their intrinsic value and do not query the surface.

    Raises:
        DataError: if the surface answers with the wrong number of volatilities or forwards.
    """
    out = np.full(len(chain), np.nan)
    index = np.flatnonzero(rows)
    strike, t_years = chain.strike[index], chain.t_years[index]
    vol = np.zeros(len(index))
    carry = np.full(len(index), chain.div_yield)
    live = t_years > 0
    n_live = int(live.sum())
    if n_live:
        vol[live] = _answer(surface.implied_vol(strike[live], t_years[live]), n_live, "volatilities", chain)
        forward = getattr(surface, "forward", None)
        if callable(forward):
            level = _answer(forward(t_years[live]), n_live, "forwards", chain)
            with np.errstate(invalid="ignore", divide="ignore"):
                carry[live] = chain.rate - np.log(level / chain.spot) / t_years[live]
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(vol) & (vol >= 0) & np.isfinite(carry)
    out[index[ok]] = bsm_price(chain.spot, strike[ok], t_years[ok], chain.rate, carry[ok], vol[ok],
                               chain.is_call[index[ok]])
    return out


def _answer(values: npt.ArrayLike, n: int, what: str, chain: OptionChain) -> FloatArray:
    answer = np.asarray(values, dtype=np.float64)
    if answer.shape != (n,):
        raise DataError(f"scanner: the surface returned {answer.shape} {what} for {n} contracts of {chain.underlying}")
    return answer


def _groups(chain: OptionChain, keep: BoolArray) -> list[tuple[IntArray, IntArray]]:
    """Per expiry, ascending: the kept put rows and the kept call rows, each ascending in strike."""
    return [(np.flatnonzero(keep & (chain.expiry == expiry) & ~chain.is_call),
             np.flatnonzero(keep & (chain.expiry == expiry) & chain.is_call)) for expiry in chain.expiries]


def _limit(value: int | None, n: int) -> int:
    return n if value is None else value


def _symbol_width(chain: OptionChain) -> int:
    return max(1, chain.symbol.dtype.itemsize // np.dtype("U1").itemsize)


def _leg_prices(rows: IntArray, qty: FloatArray, buy: FloatArray, sell: FloatArray) -> FloatArray:
    """Each leg's price: ``buy`` (the ask) for a long leg, ``sell`` (the bid) for a short one, NaN if unused."""
    safe = np.where(rows >= 0, rows, 0)
    prices: FloatArray = np.where(qty > 0, buy[safe], np.where(qty < 0, sell[safe], np.nan))
    return prices


def _fill_legs(table: np.ndarray, chain: OptionChain, rows: IntArray, qty: FloatArray, prices: FloatArray) -> None:
    for k in range(LEGS):
        used = rows[:, k] >= 0
        table[f"symbol_{k + 1}"] = np.where(used, chain.symbol[np.where(used, rows[:, k], 0)], "")
        table[f"qty_{k + 1}"] = qty[:, k]
        table[f"price_{k + 1}"] = prices[:, k]
    expiries = chain.expiry[np.where(rows >= 0, rows, rows[:, :1])]
    table["expiry"] = expiries.min(axis=1)
    if "far_expiry" in (table.dtype.names or ()):
        table["far_expiry"] = expiries.max(axis=1)


# ------------------------------------------------------------------------------------ arbitrage


class _Found:
    """Violations found at one price basis: leg rows, quantities and bounds, per kind."""

    def __init__(self, buy: FloatArray, sell: FloatArray, tol: float) -> None:
        self.buy, self.sell, self.tol = buy, sell, tol
        self.parts: list[tuple[str, IntArray, FloatArray, FloatArray]] = []

    def add(self, kind: str, legs: tuple[IntArray, FloatArray], bound: FloatArray) -> None:
        if len(bound):
            self.parts.append((kind, legs[0], legs[1], np.asarray(bound, dtype=np.float64)))

    def table(self, chain: OptionChain, basis: str) -> np.ndarray:
        table = np.zeros(sum(len(part[3]) for part in self.parts), dtype=violation_dtype(_symbol_width(chain)))
        if not len(table):
            return table
        rows = np.concatenate([part[1] for part in self.parts])
        qty = np.concatenate([part[2] for part in self.parts])
        bound = np.concatenate([part[3] for part in self.parts])
        prices = _leg_prices(rows, qty, self.buy, self.sell)
        cost = np.where(qty != 0, qty * prices, 0.0).sum(axis=1)
        table["kind"] = np.concatenate([np.full(len(part[3]), part[0]) for part in self.parts])
        table["basis"] = basis
        _fill_legs(table, chain, rows, qty, prices)
        table["cost"], table["bound"], table["size"] = cost, bound, bound - cost
        return table


def _vertical_violations(found: _Found, rows: IntArray, strike: FloatArray, is_call: bool, discount: float,
                         max_apart: int) -> None:
    pairs = kern.Pairs(len(rows), max_apart)
    if pairs.w < 1:
        return
    k_lo, k_hi = pairs.views(strike)
    b_lo, b_hi = pairs.views(found.buy[rows])
    s_lo, s_hi = pairs.views(found.sell[rows])
    width_pv = (k_hi - k_lo) * discount
    sell_hi_buy_lo = s_hi - b_lo  # a call's monotonicity; a put's slope + width·D
    sell_lo_buy_hi = s_lo - b_hi  # a put's monotonicity; a call's slope + width·D
    # (kind, size, discount of the slope bound, quantity of the lower strike)
    if is_call:
        checks = (("vertical_monotonicity", sell_hi_buy_lo, 0.0, 1.0),
                  ("vertical_slope", sell_lo_buy_hi - width_pv, discount, -1.0))
    else:
        checks = (("vertical_monotonicity", sell_lo_buy_hi, 0.0, -1.0),
                  ("vertical_slope", sell_hi_buy_lo - width_pv, discount, 1.0))
    for kind, size, slope, q_lo in checks:
        with np.errstate(invalid="ignore"):
            i, j = pairs.decode(np.flatnonzero(size.reshape(-1) > found.tol))
        found.add(kind, kern.stack_legs([rows[i], rows[j]], [q_lo, -q_lo]), -(strike[j] - strike[i]) * slope)


def _butterfly_violations(found: _Found, rows: IntArray, strike: FloatArray, max_apart: int, block: int) -> None:
    """Convexity ``λ·X(Kᵢ) + (1−λ)·X(Kₖ) ≥ X(Kⱼ)`` over every triple with gaps up to ``max_apart`` strikes."""
    k_pad, b_pad, s_pad = (kern.triple_pad(v) for v in (strike, found.buy[rows], found.sell[rows]))
    for part in kern.triple_blocks(len(rows), max_apart, block):
        k_i, k_j, k_k = part.views(k_pad)
        b_i, _, b_k = part.views(b_pad)
        _, s_j, _ = part.views(s_pad)
        lower, upper = k_j - k_i, k_k - k_j
        with np.errstate(invalid="ignore"):
            size = s_j - (upper * b_i + lower * b_k) / (upper + lower)
            flat = np.flatnonzero(size.reshape(-1) > found.tol)
        if flat.size:
            i, j, k = part.decode(flat)
            lam = (strike[k] - strike[j]) / (strike[k] - strike[i])
            found.add("butterfly_convexity", kern.stack_legs([rows[i], rows[j], rows[k]], [lam, -1.0, 1.0 - lam]),
                      np.zeros(len(i)))


def _parity_violations(found: _Found, chain: OptionChain, calls: IntArray, puts: IntArray, american: bool) -> None:
    """``calls`` and ``puts``: rows of the same strikes of one expiry."""
    strike, t = chain.strike[calls], float(chain.t_years[calls[0]])
    spot_pv = chain.spot * np.exp(-chain.div_yield * t)
    strike_pv = strike * np.exp(-chain.rate * t)
    long_bound = spot_pv - (strike if american else strike_pv)   # C − P ≥ this
    short_bound = strike_pv - (chain.spot if american else spot_pv)  # P − C ≥ this
    with np.errstate(invalid="ignore"):
        long_hit = np.flatnonzero(long_bound - (found.buy[calls] - found.sell[puts]) > found.tol)
        short_hit = np.flatnonzero(short_bound - (found.buy[puts] - found.sell[calls]) > found.tol)
    found.add("put_call_parity", kern.stack_legs([calls[long_hit], puts[long_hit]], [1.0, -1.0]), long_bound[long_hit])
    found.add("put_call_parity", kern.stack_legs([calls[short_hit], puts[short_hit]], [-1.0, 1.0]),
              short_bound[short_hit])


def _box_violations(found: _Found, chain: OptionChain, calls: IntArray, puts: IntArray, american: bool,
                    max_apart: int) -> None:
    """Long and short boxes on every pair of strikes (``calls``/``puts``: rows of the same strikes)."""
    pairs = kern.Pairs(len(calls), max_apart)
    if pairs.w < 1:
        return
    strike, t = chain.strike[calls], float(chain.t_years[calls[0]])
    lend = float(np.exp(-chain.rate * t))
    owe = 1.0 if american else lend
    k_lo, k_hi = pairs.views(strike)
    cb_lo, cb_hi = pairs.views(found.buy[calls])
    cs_lo, cs_hi = pairs.views(found.sell[calls])
    pb_lo, pb_hi = pairs.views(found.buy[puts])
    ps_lo, ps_hi = pairs.views(found.sell[puts])
    width = k_hi - k_lo
    boxes = ((width * lend - (cb_lo - cs_hi + pb_hi - ps_lo), lend, 1.0),      # long box costs at least width·e^(−rT)
             (-width * owe - (cb_hi - cs_lo + pb_lo - ps_hi), -owe, -1.0))     # short box pays at most width·D
    for size, per_width, sign in boxes:
        with np.errstate(invalid="ignore"):
            i, j = pairs.decode(np.flatnonzero(size.reshape(-1) > found.tol))
        legs = kern.stack_legs([calls[i], calls[j], puts[j], puts[i]], [sign, -sign, sign, -sign])
        found.add("box_spread", legs, (strike[j] - strike[i]) * per_width)


def _calendar_violations(found: _Found, chain: OptionChain, near: IntArray, far: IntArray) -> None:
    _, at_near, at_far = np.intersect1d(chain.strike[near], chain.strike[far], assume_unique=True,
                                        return_indices=True)
    near, far = near[at_near], far[at_far]
    with np.errstate(invalid="ignore"):
        hit = np.flatnonzero(found.sell[near] - found.buy[far] > found.tol)
    found.add("calendar_order", kern.stack_legs([near[hit], far[hit]], [-1.0, 1.0]), np.zeros(len(hit)))


def _collect(found: _Found, chain: OptionChain, keep: BoolArray, config: ScannerConfig) -> None:
    american = config.style == "american"
    groups = _groups(chain, keep)
    for puts, calls in groups:
        for rows, is_call in ((puts, False), (calls, True)):
            if len(rows) < 2:
                continue
            discount = 1.0 if american else float(np.exp(-chain.rate * chain.t_years[rows[0]]))
            max_apart = _limit(config.arbitrage_max_strikes_apart, len(rows))
            _vertical_violations(found, rows, chain.strike[rows], is_call, discount, max_apart)
            _butterfly_violations(found, rows, chain.strike[rows], max_apart, config.block_size)
        _, at_put, at_call = np.intersect1d(chain.strike[puts], chain.strike[calls], assume_unique=True,
                                            return_indices=True)
        if len(at_put):
            both_calls, both_puts = calls[at_call], puts[at_put]
            _parity_violations(found, chain, both_calls, both_puts, american)
            _box_violations(found, chain, both_calls, both_puts, american,
                            _limit(config.arbitrage_max_strikes_apart, len(at_put)))
    r, q = chain.rate, chain.div_yield
    sides = [side for side, ok in ((0, american or r <= 0 <= q), (1, american or q <= 0 <= r)) if ok]
    for near in range(len(groups)):
        for far in range(near + 1, len(groups)):
            for side in sides:
                _calendar_violations(found, chain, groups[near][side], groups[far][side])


def find_arbitrage(chain: OptionChain, config: ScannerConfig, tradeable: BoolArray | None = None) -> np.ndarray:
    """Every arbitrage violation among the tradeable contracts of ``chain`` (see the module docstring).

    Args:
        chain: the chain.
        config: style, filters, ``min_violation``, search width, whether to add mid-price violations.
        tradeable: :func:`liquid_mask` of the chain, when the caller has it already.

    Returns:
        A structured array of :func:`violation_dtype`, largest ``size`` first.
    """
    keep = liquid_mask(chain, config.filters) if tradeable is None else tradeable
    bases = [("executable", np.where(keep, chain.ask, np.nan), np.where(keep, chain.bid, np.nan))]
    if config.include_mid_violations:
        mid = np.where(keep, chain.mid, np.nan)
        bases.append(("mid", mid, mid))
    tables = []
    for basis, buy, sell in bases:
        found = _Found(buy, sell, config.min_violation)
        _collect(found, chain, keep, config)
        tables.append(found.table(chain, basis))
    table = np.concatenate(tables)
    return table[np.argsort(-table["size"], kind="stable")]


# ----------------------------------------------------------------------------------- candidates


def rank_candidates(chain: OptionChain, surface: StrikeVolSurface, config: ScannerConfig,
                    tradeable: BoolArray | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """Rank the configured structures of ``chain`` by EV per unit of risk under ``surface``.

    A contract takes part when it is tradeable and has a model price (see :func:`model_prices`).

    Args:
        chain: the chain.
        surface: the volatility surface the model prices come from.
        config: structures, search widths, filters, how many to keep.
        tradeable: :func:`liquid_mask` of the chain, when the caller has it already.

    Returns:
        The kept candidates (:func:`candidate_dtype`, best ``ev_per_risk`` first) and the number of
        candidates evaluated per structure.

    Raises:
        DataError: if the surface answers with the wrong number of volatilities or forwards.
    """
    keep = liquid_mask(chain, config.filters) if tradeable is None else tradeable
    model = model_prices(chain, surface, keep)
    usable = keep & np.isfinite(model)
    tops = {name: kern.TopK(config.top_per_structure) for family in config.structures for name in STRUCTURES[family]}
    counts = dict.fromkeys(tops, 0)

    def offer(name: str, scores: FloatArray, decode: Callable[[IntArray], kern.Picked]) -> None:
        tops[name].offer(scores, decode)

    def book(rows: IntArray) -> kern.Book:
        return kern.Book(rows, chain.strike[rows], chain.ask[rows], chain.bid[rows], model[rows] - chain.ask[rows],
                         chain.bid[rows] - model[rows])

    for puts, calls in _groups(chain, usable):
        books = {False: book(puts), True: book(calls)}
        for is_call, side in books.items():
            if "vertical" in config.structures:
                n = kern.rank_verticals(side, is_call, _limit(config.vertical_max_strikes_apart, len(side)),
                                        config.min_risk, offer)
                for name in STRUCTURES["vertical"][:2] if is_call else STRUCTURES["vertical"][2:]:
                    counts[name] += n
            if "butterfly" in config.structures:
                name = "long_call_butterfly" if is_call else "long_put_butterfly"
                wing = _limit(config.butterfly_max_wing_strikes, len(side))
                counts[name] += kern.rank_butterflies(side, is_call, wing, config.min_risk, config.block_size, offer)
        if "iron_condor" in config.structures:
            counts["short_iron_condor"] += kern.rank_condors(books[False], books[True],
                                                             _limit(config.condor_max_wing_strikes, len(chain)),
                                                             config.min_risk, config.block_size, offer)
    tables = [_candidate_table(chain, model, name, top.result(), config.min_risk) for name, top in tops.items()]
    table = np.concatenate(tables) if tables else np.zeros(0, dtype=candidate_dtype(_symbol_width(chain)))
    return table[np.argsort(-table["ev_per_risk"], kind="stable")], counts


def _candidate_table(chain: OptionChain, model: FloatArray, name: str, picked: kern.Picked,
                     min_risk: float) -> np.ndarray:
    table = np.zeros(len(picked.rows), dtype=candidate_dtype(_symbol_width(chain)))
    if not len(table):
        return table
    rows, qty = picked.rows, picked.qty
    prices = _leg_prices(rows, qty, chain.ask, chain.bid)
    used = rows >= 0
    cost = np.where(used, qty * prices, 0.0).sum(axis=1)
    model_value = np.where(used, qty * model[np.where(used, rows, 0)], 0.0).sum(axis=1)
    table["structure"] = name
    _fill_legs(table, chain, rows, qty, prices)
    table["cost"], table["model_value"] = cost, model_value
    table["ev"] = model_value - cost
    table["max_loss"] = cost - picked.payoff_min
    table["max_profit"] = picked.payoff_max - cost
    table["ev_per_risk"] = kern.score(table["ev"], table["max_loss"], min_risk)
    return table


def scan_chain(chain: OptionChain, surface: StrikeVolSurface, config: ScannerConfig,
               candidate_expiries: npt.ArrayLike | None = None) -> ChainScan:
    """Find the arbitrage in ``chain`` and rank its candidates under ``surface`` (see the module docstring).

    Args:
        chain: the chain.
        surface: the volatility surface of the model prices.
        config: the scanner's settings.
        candidate_expiries: rank candidates only in these expiries (e.g. those the surface was
            fitted to); ``None`` ranks every expiry. Arbitrage is checked in every expiry.

    Raises:
        DataError: if the surface answers with the wrong number of volatilities or forwards.
    """
    keep = liquid_mask(chain, config.filters)
    violations = find_arbitrage(chain, config, keep)
    rankable = keep
    if candidate_expiries is not None:
        rankable = keep & np.isin(chain.expiry, np.asarray(candidate_expiries, dtype="datetime64[D]"))
    candidates, counts = rank_candidates(chain, surface, config, rankable)
    return ChainScan(underlying=chain.underlying, as_of=chain.as_of, contracts=len(chain),
                     contracts_tradeable=int(keep.sum()), violations=violations, candidates=candidates,
                     candidates_evaluated=counts)
