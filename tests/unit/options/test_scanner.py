"""The opportunity scanner: planted arbitrage is found exactly, clean chains show none, candidates
match a brute-force enumeration and hand-worked values, and the liquidity filters hold."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from pydantic import ValidationError

from amcp.options.black_scholes import bsm_price
from amcp.options.chain import OptionChain, years_to_expiry
from amcp.options.scanner import (
    ARBITRAGE_KINDS,
    STRUCTURES,
    LiquidityFilter,
    ScannerConfig,
    find_arbitrage,
    liquid_mask,
    model_prices,
    rank_candidates,
    scan_chain,
)

AS_OF = datetime(2024, 1, 2, 15, 0, tzinfo=timezone.utc)
STRIKES = np.arange(80.0, 121.0, 5.0)
TOL = 1e-9


class SkewSurface:
    """σ(K) = atm − skew·ln(K/spot), floored at 5 %, the same at every expiry."""

    def __init__(self, spot: float, atm: float, skew: float = 0.0) -> None:
        self.spot, self.atm, self.skew = spot, atm, skew

    def implied_vol(self, strike, t_years):
        k = np.log(np.asarray(strike, dtype=float) / self.spot)
        return np.maximum(self.atm - self.skew * k, 0.05) + 0.0 * np.asarray(t_years, dtype=float)


@dataclass
class Quotes:
    """A chain's columns before validation, so a test can plant quotes."""

    spot: float
    rate: float
    div_yield: float
    expiry: np.ndarray
    t_years: np.ndarray
    strike: np.ndarray
    is_call: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    open_interest: np.ndarray
    volume: np.ndarray
    symbol: np.ndarray

    def row(self, expiry_index: int, is_call: bool, strike: float) -> int:
        expiry = np.unique(self.expiry)[expiry_index]
        return int(np.flatnonzero((self.expiry == expiry) & (self.is_call == is_call) & (self.strike == strike))[0])

    def set(self, row: int, bid: float, ask: float) -> None:
        self.bid[row], self.ask[row] = bid, ask

    def chain(self) -> OptionChain:
        n = len(self.strike)
        # copies: the chain freezes the arrays it is given, and tests keep planting quotes
        return OptionChain("XYZ", AS_OF, self.spot, self.rate, self.div_yield, self.expiry.copy(),
                           self.t_years.copy(), self.strike.copy(), self.is_call.copy(), self.bid.copy(),
                           self.ask.copy(), np.full(n, np.nan), self.volume.copy(), self.open_interest.copy(),
                           self.symbol.copy(), np.full(n, np.nan))


def bsm_quotes(strikes=STRIKES, days=(30, 90), spot=100.0, rate=0.03, div_yield=0.0, surface=None,
               half_spread=lambda mid: 0.01 + 0.01 * mid) -> Quotes:
    """An arbitrage-free chain: BSM mids under ``surface``, bid/ask = mid ∓ ``half_spread(mid)``."""
    surface = surface or SkewSurface(spot, 0.25, 0.1)
    expiry, t_years, strike, is_call = [], [], [], []
    for d in days:
        day = (AS_OF + timedelta(days=d)).date()
        for call in (False, True):
            for k in strikes:
                expiry.append(np.datetime64(day, "D"))
                t_years.append(years_to_expiry(AS_OF, day))
                strike.append(k)
                is_call.append(call)
    k, t, c = np.array(strike), np.array(t_years), np.array(is_call)
    mid = bsm_price(spot, k, t, rate, div_yield, surface.implied_vol(k, t), c)
    half = half_spread(mid)
    exp = np.array(expiry, dtype="datetime64[D]")
    symbol = np.array([f"XYZ{str(e).replace('-', '')[2:]}{'C' if ci else 'P'}{round(ki * 1000):08d}"
                       for e, ci, ki in zip(exp, c, k, strict=True)])
    n = len(k)
    return Quotes(spot, rate, div_yield, exp, t, k, c, np.maximum(mid - half, 0.0), mid + half,
                  np.full(n, 500.0), np.full(n, 50.0), symbol)


def legs_of(row) -> list[tuple[str, float]]:
    return [(str(row[f"symbol_{k}"]), float(row[f"qty_{k}"])) for k in range(1, 5) if row[f"symbol_{k}"]]


def find_row(table, kind_field: str, kind: str, legs: list[tuple[str, float]]):
    for row in table:
        if row[kind_field] == kind and [s for s, _ in legs_of(row)] == [s for s, _ in legs]:
            return row
    raise AssertionError(f"no {kind} with legs {legs} among {len(table)} rows")


def involve(table, symbol: str) -> bool:
    return all(symbol in [s for s, _ in legs_of(row)] for row in table)


def european(min_violation: float = TOL, **kw) -> ScannerConfig:
    return ScannerConfig(style="european", min_violation=min_violation, **kw)


# ------------------------------------------------------------------------------ clean chains


@pytest.mark.parametrize("seed", range(6))
def test_an_arbitrage_free_european_chain_shows_no_violation_executable_or_at_mid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    spot = float(rng.uniform(50, 200))
    surface = SkewSurface(spot, float(rng.uniform(0.1, 0.8)), float(rng.uniform(0.0, 0.3)))
    strikes = np.round(spot * np.linspace(0.7, 1.3, 15), 2)
    quotes = bsm_quotes(strikes, (7, 30, 91, 182), spot, float(rng.uniform(0.0, 0.06)), float(rng.uniform(0.0, 0.04)),
                        surface)
    table = find_arbitrage(quotes.chain(), european(include_mid_violations=True))
    assert len(table) == 0, table[:3]


@pytest.mark.parametrize("vol", [0.15, 0.4, 0.9])
def test_an_arbitrage_free_chain_at_zero_rates_shows_no_american_violation(vol: float) -> None:
    quotes = bsm_quotes(days=(14, 60, 180), rate=0.0, div_yield=0.0, surface=SkewSurface(100.0, vol, 0.15))
    assert len(find_arbitrage(quotes.chain(), ScannerConfig(style="american", min_violation=TOL))) == 0


# ---------------------------------------------------------------------------- planted arbitrage


def test_a_call_priced_above_parity_is_found_as_a_synthetic_short() -> None:
    quotes = bsm_quotes(rate=0.03, div_yield=0.01)
    call, put = quotes.row(0, True, 100.0), quotes.row(0, False, 100.0)
    half_call, half_put = (quotes.ask[call] - quotes.bid[call]) / 2, (quotes.ask[put] - quotes.bid[put]) / 2
    quotes.set(call, quotes.bid[call] + 0.30, quotes.ask[call] + 0.30)
    table = find_arbitrage(quotes.chain(), european())
    row = find_row(table, "kind", "put_call_parity", [(quotes.symbol[call], -1.0), (quotes.symbol[put], 1.0)])
    assert legs_of(row) == [(quotes.symbol[call], -1.0), (quotes.symbol[put], 1.0)]
    assert row["size"] == pytest.approx(0.30 - half_call - half_put, abs=1e-9)
    assert row["price_1"] == quotes.bid[call] and row["price_2"] == quotes.ask[put]
    assert involve(table, quotes.symbol[call])


def test_parity_is_an_equality_for_european_style_and_a_pair_of_bounds_for_american() -> None:
    quotes = bsm_quotes(rate=0.05, div_yield=0.0)
    call, put = quotes.row(1, True, 100.0), quotes.row(1, False, 100.0)
    t = quotes.t_years[call]
    # C − P at both sides strictly between S − K (American floor) and S − K·e^(−rT) (European value)
    gap = 100.0 * (1 - math.exp(-0.05 * t))
    quotes.set(call, quotes.bid[call] - gap / 2, quotes.ask[call] - gap / 2)
    chain = quotes.chain()
    assert "put_call_parity" in find_arbitrage(chain, european())["kind"]
    assert "put_call_parity" not in find_arbitrage(chain, ScannerConfig(style="american", min_violation=TOL))["kind"]
    quotes.set(call, quotes.bid[call] - gap, quotes.ask[call] - gap)  # now below the American floor too
    american = find_arbitrage(quotes.chain(), ScannerConfig(style="american", min_violation=TOL))
    row = find_row(american, "kind", "put_call_parity", [(quotes.symbol[call], 1.0), (quotes.symbol[put], -1.0)])
    assert row["bound"] == pytest.approx(100.0 - 100.0)  # S·e^(−qT) − K with q = 0
    assert row["size"] == pytest.approx(row["bound"] - (quotes.ask[call] - quotes.bid[put]))


def test_a_higher_strike_call_bid_above_a_lower_strike_ask_is_a_monotonicity_violation() -> None:
    quotes = bsm_quotes()
    low, high = quotes.row(0, True, 105.0), quotes.row(0, True, 110.0)
    quotes.set(high, quotes.ask[low] + 0.10, quotes.ask[low] + 0.12)
    table = find_arbitrage(quotes.chain(), european())
    row = find_row(table, "kind", "vertical_monotonicity", [(quotes.symbol[low], 1.0), (quotes.symbol[high], -1.0)])
    assert legs_of(row) == [(quotes.symbol[low], 1.0), (quotes.symbol[high], -1.0)]
    assert row["size"] == pytest.approx(0.10, abs=1e-9)
    assert involve(table, quotes.symbol[high])


@pytest.mark.parametrize("is_call", [True, False])
def test_a_vertical_spread_bid_above_its_discounted_width_is_a_slope_violation(is_call: bool) -> None:
    quotes = bsm_quotes()
    low, high = quotes.row(1, is_call, 90.0), quotes.row(1, is_call, 95.0)
    width_pv = 5.0 * math.exp(-quotes.rate * quotes.t_years[low])
    rich, cheap = (low, high) if is_call else (high, low)  # calls: sell the lower strike; puts: the upper
    quotes.set(rich, quotes.ask[cheap] + width_pv + 0.07, quotes.ask[cheap] + width_pv + 0.09)
    table = find_arbitrage(quotes.chain(), european())
    expected = [(quotes.symbol[low], -1.0 if is_call else 1.0), (quotes.symbol[high], 1.0 if is_call else -1.0)]
    row = find_row(table, "kind", "vertical_slope", expected)
    assert legs_of(row) == expected
    assert row["size"] == pytest.approx(0.07, abs=1e-9)
    assert row["bound"] == pytest.approx(-width_pv)
    assert involve(table, quotes.symbol[rich])


def test_a_body_bid_above_its_wings_asks_is_a_butterfly_violation() -> None:
    quotes = bsm_quotes()
    lo, body, hi = (quotes.row(1, False, k) for k in (95.0, 100.0, 105.0))
    bid = (quotes.ask[lo] + quotes.ask[hi]) / 2 + 0.04
    quotes.set(body, bid, bid + 0.02)
    table = find_arbitrage(quotes.chain(), european())
    expected = [(quotes.symbol[lo], 0.5), (quotes.symbol[body], -1.0), (quotes.symbol[hi], 0.5)]
    row = find_row(table, "kind", "butterfly_convexity", expected)
    assert legs_of(row) == expected
    assert row["size"] == pytest.approx(0.04, abs=1e-9)
    assert involve(table, quotes.symbol[body])


def test_an_uneven_butterfly_is_weighted_by_its_strike_distances() -> None:
    quotes = bsm_quotes()
    lo, body, hi = (quotes.row(0, True, k) for k in (90.0, 95.0, 110.0))
    lam = (110.0 - 95.0) / (110.0 - 90.0)
    bid = lam * quotes.ask[lo] + (1 - lam) * quotes.ask[hi] + 0.05
    quotes.set(body, bid, bid + 0.02)
    table = find_arbitrage(quotes.chain(), european())
    row = find_row(table, "kind", "butterfly_convexity", [(quotes.symbol[lo], lam), (quotes.symbol[body], -1.0),
                                                          (quotes.symbol[hi], 1 - lam)])
    assert row["qty_1"] == pytest.approx(0.75) and row["qty_3"] == pytest.approx(0.25)
    assert row["size"] == pytest.approx(0.05, abs=1e-9)


def test_a_near_expiry_bid_above_the_far_expiry_ask_is_a_calendar_violation() -> None:
    quotes = bsm_quotes(rate=0.03, div_yield=0.0)
    near, far = quotes.row(0, True, 100.0), quotes.row(1, True, 100.0)
    quotes.set(near, quotes.ask[far] + 0.06, quotes.ask[far] + 0.08)
    table = find_arbitrage(quotes.chain(), european())
    expected = [(quotes.symbol[near], -1.0), (quotes.symbol[far], 1.0)]
    row = find_row(table, "kind", "calendar_order", expected)
    assert row["size"] == pytest.approx(0.06, abs=1e-9)
    assert row["expiry"] < row["far_expiry"]
    assert involve(table, quotes.symbol[near])


def test_calendar_order_is_not_tested_for_european_calls_on_a_dividend_payer() -> None:
    quotes = bsm_quotes(rate=0.03, div_yield=0.02)
    near, far = quotes.row(0, True, 100.0), quotes.row(1, True, 100.0)
    quotes.set(near, quotes.ask[far] + 0.06, quotes.ask[far] + 0.08)
    chain = quotes.chain()
    assert "calendar_order" not in find_arbitrage(chain, european())["kind"]
    assert "calendar_order" in find_arbitrage(chain, ScannerConfig(style="american", min_violation=TOL))["kind"]


def test_a_box_offered_below_its_discounted_width_is_found() -> None:
    quotes = bsm_quotes()
    c_lo, c_hi, p_lo, p_hi = (quotes.row(1, call, k) for call, k in ((True, 95.0), (True, 105.0), (False, 95.0),
                                                                     (False, 105.0)))
    halves = sum((quotes.ask[r] - quotes.bid[r]) / 2 for r in (c_lo, c_hi, p_lo, p_hi))
    quotes.set(c_lo, quotes.bid[c_lo] - 1.0, quotes.ask[c_lo] - 1.0)
    table = find_arbitrage(quotes.chain(), european())
    expected = [(quotes.symbol[c_lo], 1.0), (quotes.symbol[c_hi], -1.0), (quotes.symbol[p_hi], 1.0),
                (quotes.symbol[p_lo], -1.0)]
    row = find_row(table, "kind", "box_spread", expected)
    assert legs_of(row) == expected
    assert row["bound"] == pytest.approx(10.0 * math.exp(-quotes.rate * quotes.t_years[c_lo]))
    assert row["size"] == pytest.approx(1.0 - halves, abs=1e-9)
    assert involve(table, quotes.symbol[c_lo])


def test_a_mispricing_inside_the_spread_is_found_at_mid_but_is_not_executable() -> None:
    quotes = bsm_quotes()
    call = quotes.row(0, True, 100.0)
    shift = 0.5 * (quotes.ask[call] - quotes.bid[call]) / 2  # half of the half-spread
    quotes.set(call, quotes.bid[call] + shift, quotes.ask[call] + shift)
    table = find_arbitrage(quotes.chain(), european(include_mid_violations=True))
    assert len(table) > 0 and set(table["basis"]) == {"mid"}
    assert "put_call_parity" in table["kind"] and involve(table, quotes.symbol[call])


def test_violations_are_ordered_largest_first_and_use_only_known_kinds() -> None:
    quotes = bsm_quotes()
    quotes.set(quotes.row(0, True, 110.0), 5.0, 5.1)
    table = find_arbitrage(quotes.chain(), european())
    assert len(table) > 3 and set(table["kind"]) <= set(ARBITRAGE_KINDS)
    assert np.all(np.diff(table["size"]) <= 0)
    assert np.allclose(table["size"], table["bound"] - table["cost"])


# ---------------------------------------------------------------------------------- candidates


def payoff_range(legs: list[tuple[float, bool, float]]) -> tuple[float, float]:
    """Exact min and max of a piecewise-linear payoff with zero slope beyond the last strike."""
    points = [0.0] + [k for k, _, _ in legs] + [2.0 * max(k for k, _, _ in legs)]
    values = [sum(q * max((s - k) if call else (k - s), 0.0) for k, call, q in legs) for s in points]
    return min(values), max(values)


def brute_force(chain: OptionChain, model: np.ndarray, usable: np.ndarray, config: ScannerConfig
                ) -> dict[str, list[float]]:
    """Every candidate of every structure, enumerated with itertools; name → scores."""
    out: dict[str, list[float]] = {name: [] for names in STRUCTURES.values() for name in names}

    def add(name: str, legs: list[tuple[int, float]]) -> None:
        cost = sum(q * (chain.ask[r] if q > 0 else chain.bid[r]) for r, q in legs)
        ev = sum(q * model[r] for r, q in legs) - cost
        low, _ = payoff_range([(chain.strike[r], bool(chain.is_call[r]), q) for r, q in legs])
        loss = cost - low
        out[name].append(ev / max(loss, config.min_risk))

    lim = lambda v, n: n if v is None else v  # noqa: E731
    for expiry in chain.expiries:
        groups = {call: np.flatnonzero(usable & (chain.expiry == expiry) & (chain.is_call == call))
                  for call in (False, True)}
        for call, rows in groups.items():
            w = lim(config.vertical_max_strikes_apart, len(rows))
            for a, b in itertools.combinations(range(len(rows)), 2):
                if b - a <= w:
                    lo, hi = rows[a], rows[b]
                    add("bull_call_spread" if call else "bull_put_spread", [(lo, 1.0), (hi, -1.0)])
                    add("bear_call_spread" if call else "bear_put_spread", [(lo, -1.0), (hi, 1.0)])
            w = lim(config.butterfly_max_wing_strikes, len(rows))
            for a, b, c in itertools.combinations(range(len(rows)), 3):
                if b - a <= w and c - b <= w:
                    add("long_call_butterfly" if call else "long_put_butterfly",
                        [(rows[a], 1.0), (rows[b], -2.0), (rows[c], 1.0)])
        w = lim(config.condor_max_wing_strikes, len(chain))
        puts, calls = groups[False], groups[True]
        for a, b in itertools.combinations(range(len(puts)), 2):
            for c, d in itertools.combinations(range(len(calls)), 2):
                if b - a <= w and d - c <= w and chain.strike[puts[b]] < chain.strike[calls[c]]:
                    add("short_iron_condor", [(puts[a], 1.0), (puts[b], -1.0), (calls[c], -1.0), (calls[d], 1.0)])
    return out


@pytest.mark.parametrize(("seed", "limits"), [(0, (None, None, None)), (1, (3, 2, 2)), (2, (1, 1, 1))])
def test_ranking_and_counts_match_a_brute_force_enumeration(seed: int, limits: tuple) -> None:
    rng = np.random.default_rng(seed)
    strikes = np.sort(rng.choice(np.arange(80.0, 121.0, 2.5), size=9, replace=False))
    quotes = bsm_quotes(strikes, (20, 75), rate=0.02, surface=SkewSurface(100.0, 0.3, 0.2),
                        half_spread=lambda mid: 0.02 + 0.03 * mid)
    # the market is quoted off a flatter smile than the model's, so candidates carry real EV
    surface = SkewSurface(100.0, 0.27, 0.05)
    quotes.bid *= rng.uniform(0.9, 1.0, len(quotes.bid))
    chain = quotes.chain()
    vertical, butterfly, condor = limits
    config = ScannerConfig(vertical_max_strikes_apart=vertical, butterfly_max_wing_strikes=butterfly,
                           condor_max_wing_strikes=condor, top_per_structure=7, block_size=1024)
    table, counts = rank_candidates(chain, surface, config)
    model = bsm_price(chain.spot, chain.strike, chain.t_years, chain.rate, chain.div_yield,
                      surface.implied_vol(chain.strike, chain.t_years), chain.is_call)
    expected = brute_force(chain, model, chain.bid >= 0.01, config)
    for name, scores in expected.items():
        assert counts[name] == len(scores), name
        best = sorted(scores, reverse=True)[:7]
        got = table["ev_per_risk"][table["structure"] == name]
        np.testing.assert_allclose(got, best, rtol=1e-9, err_msg=name)


def test_max_loss_and_max_profit_are_the_payoff_extremes_of_every_ranked_candidate() -> None:
    quotes = bsm_quotes(np.arange(70.0, 131.0, 2.5), (30, 60), surface=SkewSurface(100.0, 0.3, 0.25))
    chain = quotes.chain()
    table, _ = rank_candidates(chain, SkewSurface(100.0, 0.35, 0.0), ScannerConfig(top_per_structure=15))
    assert set(table["structure"]) == {name for names in STRUCTURES.values() for name in names}
    by_symbol = {s: i for i, s in enumerate(chain.symbol)}
    for row in table:
        legs = [(chain.strike[by_symbol[s]], bool(chain.is_call[by_symbol[s]]), q) for s, q in legs_of(row)]
        low, high = payoff_range(legs)
        assert row["max_loss"] == pytest.approx(row["cost"] - low, abs=1e-12), row["structure"]
        assert row["max_profit"] == pytest.approx(high - row["cost"], abs=1e-12), row["structure"]
    assert np.all(np.diff(table["ev_per_risk"]) <= 0)


def test_a_vertical_and_a_condor_have_the_hand_worked_ev_and_max_loss() -> None:
    strikes = np.array([90.0, 100.0, 110.0, 120.0])
    quotes = bsm_quotes(strikes, (45,), rate=0.02)
    for call, k, bid, ask in [(False, 90.0, 0.50, 0.60), (False, 100.0, 2.40, 2.55), (False, 110.0, 8.10, 8.40),
                              (False, 120.0, 16.80, 17.20), (True, 90.0, 10.60, 10.90), (True, 100.0, 4.00, 4.20),
                              (True, 110.0, 1.10, 1.20), (True, 120.0, 0.25, 0.35)]:
        quotes.set(quotes.row(0, call, k), bid, ask)
    chain = quotes.chain()
    surface = SkewSurface(100.0, 0.20)
    table, _ = rank_candidates(chain, surface, ScannerConfig(top_per_structure=100))
    t = chain.t_years[0]
    model = {(call, k): float(bsm_price(100.0, k, t, 0.02, 0.0, 0.20, call)) for call in (False, True) for k in strikes}
    sym = {(call, k): quotes.symbol[quotes.row(0, call, k)] for call in (False, True) for k in strikes}

    # bull call 100/110: pay 4.20, receive 1.10 → cost 3.10 = max loss; max profit 10 − 3.10 = 6.90
    vertical = find_row(table, "structure", "bull_call_spread", [(sym[True, 100.0], 1), (sym[True, 110.0], -1)])
    assert vertical["cost"] == pytest.approx(3.10)
    assert vertical["max_loss"] == pytest.approx(3.10) and vertical["max_profit"] == pytest.approx(6.90)
    ev = model[True, 100.0] - model[True, 110.0] - 3.10
    assert vertical["ev"] == pytest.approx(ev) and vertical["ev_per_risk"] == pytest.approx(ev / 3.10)

    # iron condor +P90 −P100 −C110 +C120: credit 2.40 + 1.10 − 0.60 − 0.35 = 2.55; wings 10 → max loss 7.45
    condor = find_row(table, "structure", "short_iron_condor",
                      [(sym[False, 90.0], 1), (sym[False, 100.0], -1), (sym[True, 110.0], -1), (sym[True, 120.0], 1)])
    assert condor["cost"] == pytest.approx(-2.55)
    assert condor["max_loss"] == pytest.approx(7.45) and condor["max_profit"] == pytest.approx(2.55)
    ev = model[False, 90.0] - model[False, 100.0] - model[True, 110.0] + model[True, 120.0] + 2.55
    assert condor["ev"] == pytest.approx(ev) and condor["ev_per_risk"] == pytest.approx(ev / 7.45)


def test_illiquid_contracts_are_left_out_of_candidates_and_violations() -> None:
    quotes = bsm_quotes()
    config = ScannerConfig(filters=LiquidityFilter(min_bid=0.01, min_open_interest=10, min_volume=1,
                                                   max_spread_rel=1.0), min_violation=TOL, top_per_structure=10**6,
                           butterfly_max_wing_strikes=None, condor_max_wing_strikes=None)
    before = liquid_mask(quotes.chain(), config.filters)  # the farthest wings have no bid already
    thin = quotes.row(0, True, 100.0)
    wide = quotes.row(0, False, 95.0)
    no_bid = quotes.row(1, True, 85.0)
    quiet = quotes.row(1, False, 110.0)
    quotes.open_interest[thin] = 3.0
    quotes.set(wide, quotes.bid[wide] * 0.2, quotes.ask[wide])
    quotes.set(no_bid, 0.0, quotes.ask[no_bid])
    quotes.volume[quiet] = 0.0
    quotes.set(quotes.row(0, True, 105.0), quotes.ask[thin] + 0.5, quotes.ask[thin] + 0.6)  # arbitrage against `thin`
    chain = quotes.chain()
    surface = SkewSurface(100.0, 0.3)
    scan = scan_chain(chain, surface, config)
    excluded = {quotes.symbol[r] for r in (thin, wide, no_bid, quiet)}
    used = {s for table in (scan.violations, scan.candidates) for row in table for s, _ in legs_of(row)}
    assert used and not used & excluded
    assert before[[thin, wide, no_bid, quiet]].all()
    assert scan.contracts_tradeable == before.sum() - 4
    assert "vertical_monotonicity" not in scan.violations["kind"]
    usable = before.copy()
    usable[[thin, wide, no_bid, quiet]] = False
    model = bsm_price(chain.spot, chain.strike, chain.t_years, chain.rate, chain.div_yield, 0.3, chain.is_call)
    expected = {name: len(scores) for name, scores in brute_force(chain, model, usable, config).items()}
    assert scan.candidates_evaluated == expected
    assert len(scan.candidates) == sum(expected.values())


def test_strikes_where_the_surface_has_no_volatility_are_not_candidates() -> None:
    quotes = bsm_quotes()
    chain = quotes.chain()

    class Holed(SkewSurface):
        def implied_vol(self, strike, t_years):
            vol = super().implied_vol(strike, t_years)
            return np.where(np.asarray(strike) > 112.0, np.nan, vol)

    table, counts = rank_candidates(chain, Holed(100.0, 0.25), ScannerConfig(top_per_structure=10**6))
    used = {s for row in table for s, _ in legs_of(row)}
    assert not any(chain.strike[np.flatnonzero(chain.symbol == s)[0]] > 112.0 for s in used)
    n = int((chain.strike <= 112.0).sum()) // 4  # strikes per (expiry, right)
    assert counts["bull_call_spread"] == 2 * n * (n - 1) // 2


def test_a_surface_with_a_forward_prices_black_76_on_that_forward() -> None:
    chain = bsm_quotes(rate=0.04, div_yield=0.0).chain()

    class Forwarded(SkewSurface):
        def forward(self, t_years):
            return 97.0 * np.exp(0.01 * np.asarray(t_years))  # a forward well below S·e^(rT)

    model = model_prices(chain, Forwarded(100.0, 0.3), np.ones(len(chain), dtype=bool))
    t, k, call = chain.t_years, chain.strike, chain.is_call
    forward, sd = 97.0 * np.exp(0.01 * t), 0.3 * np.sqrt(t)
    d1 = (np.log(forward / k) + 0.5 * sd**2) / sd
    n = np.vectorize(lambda x: 0.5 * math.erfc(-x / math.sqrt(2)))
    black = np.exp(-0.04 * t) * np.where(call, forward * n(d1) - k * n(d1 - sd), k * n(sd - d1) - forward * n(-d1))
    np.testing.assert_allclose(model, black, rtol=1e-10, atol=1e-12)


def test_candidates_can_be_restricted_to_the_fitted_expiries_while_arbitrage_covers_all() -> None:
    quotes = bsm_quotes(days=(30, 90))
    far = quotes.row(1, True, 100.0)
    quotes.set(far, quotes.bid[far] + 0.5, quotes.ask[far] + 0.5)
    chain = quotes.chain()
    config = ScannerConfig(min_violation=TOL, style="european")
    scan = scan_chain(chain, SkewSurface(100.0, 0.25), config, candidate_expiries=chain.expiries[:1])
    assert set(scan.candidates["expiry"]) == {chain.expiries[0]}
    assert chain.expiries[1] in scan.violations["expiry"] and involve(scan.violations, quotes.symbol[far])
    full = scan_chain(chain, SkewSurface(100.0, 0.25), config)
    assert full.total_candidates_evaluated > scan.total_candidates_evaluated > 0


def test_a_surface_answering_the_wrong_shape_is_refused() -> None:
    class Broken:
        def implied_vol(self, strike, t_years):
            return np.array([0.2])

    from amcp.errors import DataError

    with pytest.raises(DataError, match="returned"):
        rank_candidates(bsm_quotes().chain(), Broken(), ScannerConfig())


def test_the_config_rejects_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ScannerConfig.model_validate({"top_n": 5})
    with pytest.raises(ValidationError, match="min_bid"):
        LiquidityFilter(min_bid=0.0)
