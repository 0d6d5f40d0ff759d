"""Synthetic markets for tests and scale benchmarks: daily and minute bars, option chains.

Daily bars (one row per symbol and NYSE session) follow a model with the stylised facts of
equity returns. For symbol ``i`` on session ``t``, with ``Δ = 1/trading_days_per_year``::

    r[i,t] = (μ[s_t] - λ[s_t]·k̄ - σ[i,t]²/2)·Δ + σ[i,t]·√Δ·ε[i,t] + J[i,t]   (close-to-close log return)
    σ[i,t] = m[s_t]·√v⁺[i,t],   v⁺ = max(v, 0)                           (full-truncation Euler)
    v[i,t+1] = v[i,t] + κ·(θ_i - v⁺[i,t])·Δ + ξ_i·√(v⁺[i,t]·Δ)·(ρ·ε[i,t] + √(1-ρ²)·w[i,t])
    ε[i,t] = β_i·f[t] + γ_i·g[sector(i), t] + √(1 - β_i² - γ_i²)·e[i,t]
    J[i,t] = Σ_{n ≤ N[i,t]} Y_n,   N[i,t] ~ Poisson(λ[s_t]·Δ),   Y_n ~ Normal(jump_mean, jump_std²)

``s_t`` is one market-wide two-state Markov regime (calm/stress) with daily switching
probabilities; ``μ``, ``m`` and ``λ`` depend on it; ``k̄ = e^(jump_mean + jump_std²/2) - 1``
compensates the jumps so that ``μ`` is the expected arithmetic return. ``f`` (market) and ``g``
(one per sector) are independent standard normal factors, so two symbols' diffusive shocks
correlate by ``β_i·β_j`` (+ ``γ_i·γ_j`` in the same sector). ``e``, ``w`` are independent
standard normals. Each symbol has its own long-run variance ``θ_i`` (lognormal around ``θ``) and
``ξ_i = ξ·√(θ_i/θ)``. All of it is numpy over (session × symbol) arrays; the only loops are over
sessions (the variance recursion) and over symbols (one random stream each).

Bars from the close path: the open is a Brownian-bridge point between the previous close and
the close at the overnight share of the day's variance; high and low are exact draws of the
maximum and minimum of a Brownian bridge from open to close; prices are rounded to Reg NMS
ticks ($0.01, or $0.0001 below $1.00), which keeps ``low <= open, close <= high``. Volume is
lognormal around a per-symbol level, rising with ``|r|`` and in the stress regime.

Determinism: every symbol draws from its own stream, seeded by ``(seed, symbol name)``, and the
market-wide regime and factors from a stream seeded by ``seed``. So a symbol's bars depend on
the seed, the model, its name and the date range, not on the other symbols or on chunking:
``iter_daily_bars`` chunks concatenate to ``generate_daily_bars``, and ``S0001`` is the same in a
10-symbol and a 5,000-symbol universe.

Minute bars bridge each daily bar's open to its close over the session's minutes (so the first
minute opens at the daily open and the last closes at the daily close; minute highs and lows
are drawn afresh and need not reach the daily high and low). Option chains price a
parametric implied-volatility surface with :mod:`amcp.options.black_scholes`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date, timedelta
from decimal import Decimal
from typing import TypeGuard

import numpy as np
import pyarrow as pa

from amcp._typing import BoolArray, FloatArray, IntArray
from amcp.data.calendar import TradingCalendar, midnight_ns
from amcp.data.schemas import BAR_SCHEMA, OPTION_CHAIN_SCHEMA
from amcp.domain.enums import OptionRight
from amcp.domain.instruments import OptionContract
from amcp.errors import DataError, DomainError
from amcp.options.black_scholes import bsm_greeks, bsm_price

__all__ = [
    "MarketModel",
    "generate_daily_bars",
    "generate_minute_bars",
    "generate_option_chains",
    "iter_daily_bars",
    "listed_expiries",
    "stress_regime",
]

_STREAM_MARKET = 0
_STREAM_SYMBOL = 1
_STREAM_MINUTE = 2
_STREAM_OPTIONS = 3
_BLOCK_CELLS = 1_000_000
"""Symbol × session (or symbol × minute) cells generated at once: bounds the working memory to
about 300 MB whatever the universe size."""
_MAX_VOLUME_SURPRISE = 8.0
"""Cap, in long-run daily standard deviations, on the ``|r|`` that raises volume (a crash day
trades a few times its usual volume, not thousands of times)."""
_MINUTE_NS = 60_000_000_000
_DAYS_PER_YEAR = 365.0
_TERM_REFERENCE_YEARS = 30.0 / 365.0
_MIN_IV = 0.01


_POSITIVE_PARAMETERS = (
    "calm_vol_multiplier", "stress_vol_multiplier", "variance_mean_reversion", "long_run_variance",
    "initial_price", "median_volume", "stress_volume_multiplier", "mean_trade_size", "trading_days_per_year",
)  # fmt: skip
_NON_NEGATIVE_PARAMETERS = (
    "vol_of_variance", "vol_dispersion", "calm_jump_intensity", "stress_jump_intensity", "jump_std",
    "sector_loading", "loading_dispersion", "initial_price_dispersion", "volume_dispersion",
    "volume_return_sensitivity", "volume_noise",
)  # fmt: skip


@dataclass(frozen=True)
class MarketModel:
    """Parameters of the synthetic daily market (see the module docstring for the equations).

    Rates, drifts and volatilities are annualised decimals (0.10 = 10 % a year); variances are
    annual (0.06 ≈ a 24.5 % volatility); probabilities are per trading session.

    Attributes:
        calm_drift: ``μ`` in the calm regime, expected arithmetic return per year.
        stress_drift: ``μ`` in the stress regime, per year.
        calm_vol_multiplier: ``m`` in the calm regime (scales ``√v``), dimensionless.
        stress_vol_multiplier: ``m`` in the stress regime, dimensionless.
        calm_to_stress_probability: chance per session that a calm market turns stressed.
        stress_to_calm_probability: chance per session that a stressed market calms. The
            long-run stress fraction is ``p_cs / (p_cs + p_sc)`` (:attr:`stress_probability`).
        variance_mean_reversion: Heston ``κ``, per year.
        long_run_variance: Heston ``θ``, annual variance of the median symbol.
        vol_of_variance: Heston ``ξ`` of the median symbol, per √year; a symbol's ``ξ_i`` scales
            with its ``√θ_i`` so every symbol has the same Feller ratio ``2κθ/ξ²`` (1.33 by
            default: the variance rarely touches 0).
        leverage_correlation: Heston ``ρ`` between return and variance shocks (negative:
            falling prices raise volatility).
        vol_dispersion: log-standard deviation of each symbol's long-run volatility ``√θ_i``
            around ``√long_run_variance``.
        calm_jump_intensity: Poisson jump rate ``λ`` in the calm regime, jumps per year.
        stress_jump_intensity: ``λ`` in the stress regime, jumps per year.
        jump_mean: mean of a jump's log return.
        jump_std: standard deviation of a jump's log return.
        market_loading: mean ``β_i`` on the market factor.
        sector_loading: ``γ_i`` on the symbol's sector factor.
        loading_dispersion: ``β_i`` is uniform on ``market_loading ± loading_dispersion``.
        n_sectors: number of sector factors; each symbol belongs to one, drawn uniformly.
        initial_price: median first-session reference price, USD.
        initial_price_dispersion: log-standard deviation of the symbols' initial prices.
        median_volume: median daily volume on a quiet day, shares.
        volume_dispersion: log-standard deviation of the symbols' volume levels.
        volume_return_sensitivity: increase of log volume per unit of ``|r|`` measured in
            the symbol's long-run daily standard deviations.
        stress_volume_multiplier: volume multiplier in the stress regime.
        volume_noise: log-standard deviation of day-to-day volume noise.
        mean_trade_size: median shares per trade (``trade_count ≈ volume / trade size``).
        overnight_variance_fraction: share of a day's variance realised between the previous
            close and the open, in ``[0, 1)``.
        trading_days_per_year: sessions per year, used for ``Δ``.
    """

    calm_drift: float = 0.10
    stress_drift: float = -0.20
    calm_vol_multiplier: float = 1.0
    stress_vol_multiplier: float = 1.8
    calm_to_stress_probability: float = 0.01
    stress_to_calm_probability: float = 0.05
    variance_mean_reversion: float = 4.0
    long_run_variance: float = 0.06
    vol_of_variance: float = 0.6
    leverage_correlation: float = -0.6
    vol_dispersion: float = 0.3
    calm_jump_intensity: float = 1.0
    stress_jump_intensity: float = 8.0
    jump_mean: float = -0.02
    jump_std: float = 0.06
    market_loading: float = 0.60
    sector_loading: float = 0.40
    loading_dispersion: float = 0.10
    n_sectors: int = 11
    initial_price: float = 50.0
    initial_price_dispersion: float = 0.8
    median_volume: float = 1_000_000.0
    volume_dispersion: float = 1.0
    volume_return_sensitivity: float = 0.25
    stress_volume_multiplier: float = 1.5
    volume_noise: float = 0.3
    mean_trade_size: float = 150.0
    overnight_variance_fraction: float = 0.2
    trading_days_per_year: float = 252.0

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name == "n_sectors":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise DataError(f"MarketModel.n_sectors: expected an integer >= 1 (got {value!r})")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise DataError(f"MarketModel.{spec.name}: expected a finite number (got {value!r})")
        rules: tuple[tuple[tuple[str, ...], Callable[[float], bool], str], ...] = (
            (_POSITIVE_PARAMETERS, lambda v: v > 0, "> 0"),
            (_NON_NEGATIVE_PARAMETERS, lambda v: v >= 0, ">= 0"),
            (("calm_to_stress_probability", "stress_to_calm_probability"), lambda v: 0 < v < 1, "in (0, 1)"),
            (("leverage_correlation",), lambda v: -1 <= v <= 1, "in [-1, 1]"),
            (("overnight_variance_fraction",), lambda v: 0 <= v < 1, "in [0, 1)"),
        )
        for names, valid, expected in rules:
            for name in names:
                value = getattr(self, name)
                if not valid(value):
                    raise DataError(f"MarketModel.{name}: expected {expected} (got {value!r})")
        widest = abs(self.market_loading) + self.loading_dispersion
        if widest**2 + self.sector_loading**2 >= 1:
            raise DataError(
                "MarketModel loadings: need (|market_loading| + loading_dispersion)² + sector_loading² < 1 "
                f"(got market_loading={self.market_loading!r}, "
                f"loading_dispersion={self.loading_dispersion!r}, sector_loading={self.sector_loading!r})"
            )

    @property
    def stress_probability(self) -> float:
        """The stationary probability of the stress regime."""
        up, down = self.calm_to_stress_probability, self.stress_to_calm_probability
        return up / (up + down)

    @property
    def expected_shock_correlation(self) -> float:
        """Mean pairwise correlation of two symbols' diffusive shocks ``ε``:
        ``E[β²] + γ²/n_sectors`` (realised return correlation is a little lower: jumps and the
        symbols' own variance paths are independent)."""
        mean_beta_sq = self.market_loading**2 + self.loading_dispersion**2 / 3.0
        return mean_beta_sq + self.sector_loading**2 / self.n_sectors


# --------------------------------------------------------------------------- inputs and streams


def _is_count(value: object) -> TypeGuard[int | np.integer]:
    """Whether ``value`` is an integer >= 1 (``bool`` excluded)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= 1


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"synthetic: seed must be a non-negative integer (got {seed!r})")
    return int(seed)


def _resolve_symbols(n_symbols: object, symbols: Sequence[str] | None) -> list[str]:
    """The symbols to generate, sorted; a :class:`DataError` for a bad count or list."""
    if not _is_count(n_symbols):
        raise DataError(f"synthetic: n_symbols must be an integer >= 1 (got {n_symbols!r})")
    if symbols is None:
        width = max(4, len(str(int(n_symbols) - 1)))
        return [f"S{i:0{width}d}" for i in range(int(n_symbols))]
    names = list(symbols)
    if len(names) != n_symbols:
        raise DataError(f"synthetic: symbols has {len(names)} names but n_symbols is {n_symbols}")
    for name in names:
        if not isinstance(name, str) or not name:
            raise DataError(f"synthetic: every symbol must be a non-empty string (got {name!r})")
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise DataError(f"synthetic: symbols must be unique (repeated: {', '.join(duplicates)})")
    return sorted(names)


def _sessions(calendar: TradingCalendar, start: date, end: date) -> np.ndarray:
    if not isinstance(start, date) or not isinstance(end, date):
        raise DataError(f"synthetic: start and end must be dates (got {start!r}, {end!r})")
    if start > end:
        raise DataError(f"synthetic: start {start} is after end {end}")
    return calendar.sessions(start, end)


def _stream(seed: int, tag: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, tag, *key]))


def _name_key(name: str) -> list[int]:
    """Four 32-bit words from a stable hash of ``name`` (not Python's salted ``hash``)."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def _round_to_tick(price: FloatArray) -> FloatArray:
    """Round to Reg NMS ticks ($0.01 at or above $1, $0.0001 below), at least one tick.

    Monotone non-decreasing in ``price``, so it preserves the OHLC ordering.
    """
    rounded = np.where(price >= 1.0, np.round(price, 2), np.round(price, 4))
    result: FloatArray = np.maximum(rounded, 0.0001)
    return result


# --------------------------------------------------------------------------- daily model


@dataclass(frozen=True)
class _MarketPath:
    """The market-wide random state: regime and factor paths over the sessions."""

    stress: BoolArray  # (T,)
    market: FloatArray  # (T,)
    sectors: FloatArray  # (n_sectors, T)


def _market_path(seed: int, n_days: int, model: MarketModel) -> _MarketPath:
    rng = _stream(seed, _STREAM_MARKET)
    stress = np.empty(n_days, dtype=np.bool_)
    state = bool(rng.random() < model.stress_probability)
    position = 0
    while position < n_days:  # one iteration per regime spell (geometric durations)
        leave = model.stress_to_calm_probability if state else model.calm_to_stress_probability
        length = int(rng.geometric(leave))
        stress[position : position + length] = state
        position += length
        state = not state
    market = rng.standard_normal(n_days)
    sectors = rng.standard_normal((model.n_sectors, n_days))
    return _MarketPath(stress, market, sectors)


@dataclass(frozen=True)
class _DailyBlock:
    """Daily bars of a block of symbols, each array (symbols, sessions)."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    vwap: FloatArray
    trade_count: IntArray
    day_sd: FloatArray  # σ·√Δ, the day's diffusive standard deviation of log return
    trade_size: FloatArray  # (symbols,) median shares per trade


def _daily_block(names: Sequence[str], seed: int, path: _MarketPath, model: MarketModel) -> _DailyBlock:
    n_days, n_names = path.market.size, len(names)
    dt = 1.0 / model.trading_days_per_year
    stress = path.stress

    # Per-symbol constants and paths, each symbol from its own stream.
    sector = np.empty(n_names, dtype=np.int64)
    beta_uniform = np.empty(n_names)
    constants = np.empty((5, n_names))
    normals = np.empty((6, n_days, n_names))
    uniforms = np.empty((3, n_days, n_names))
    jumps = np.empty((n_days, n_names), dtype=np.int64)
    jump_rate = np.where(stress, model.stress_jump_intensity, model.calm_jump_intensity) * dt
    for j, name in enumerate(names):
        symbol_seed = np.random.SeedSequence([seed, _STREAM_SYMBOL, *_name_key(name)])
        constants_stream, path_stream = symbol_seed.spawn(2)
        rng = np.random.default_rng(constants_stream)
        sector[j] = rng.integers(model.n_sectors)
        beta_uniform[j] = rng.random()
        constants[:, j] = rng.standard_normal(5)
        rng = np.random.default_rng(path_stream)
        normals[:, :, j] = rng.standard_normal((6, n_days))
        uniforms[:, :, j] = rng.random((3, n_days))
        jumps[:, j] = rng.poisson(jump_rate)
    z_idio, z_var, z_open, z_volume, z_jump, z_trades = normals
    u_high, u_low, u_vwap = 1.0 - uniforms  # in (0, 1]

    beta = model.market_loading + model.loading_dispersion * (2.0 * beta_uniform - 1.0)
    gamma = np.full(n_names, model.sector_loading)
    idio_weight = np.sqrt(1.0 - beta**2 - gamma**2)
    long_run_vol = math.sqrt(model.long_run_variance) * np.exp(model.vol_dispersion * constants[0])
    theta = long_run_vol**2
    initial_price = model.initial_price * np.exp(model.initial_price_dispersion * constants[1])
    volume_level = model.median_volume * np.exp(model.volume_dispersion * constants[2])
    trade_size = model.mean_trade_size * np.exp(0.3 * constants[3])

    # Correlated diffusive shocks, (T, S).
    eps = path.market[:, None] * beta + path.sectors[sector].T * gamma + z_idio * idio_weight

    # Heston variance, full-truncation Euler on the session grid.
    rho = model.leverage_correlation
    var_shock = rho * eps + math.sqrt(1.0 - rho * rho) * z_var
    variance = np.empty((n_days, n_names))
    current = theta.copy()
    kappa_dt = model.variance_mean_reversion * dt
    xi_sqrt_dt = model.vol_of_variance * math.sqrt(dt) * long_run_vol / math.sqrt(model.long_run_variance)
    for t in range(n_days):
        positive = np.maximum(current, 0.0)
        variance[t] = positive
        current = current + kappa_dt * (theta - positive) + xi_sqrt_dt * np.sqrt(positive) * var_shock[t]

    multiplier = np.where(stress, model.stress_vol_multiplier, model.calm_vol_multiplier)[:, None]
    day_sd = multiplier * np.sqrt(variance * dt)
    drift = np.where(stress, model.stress_drift, model.calm_drift)
    compensator = jump_rate / dt * math.expm1(model.jump_mean + 0.5 * model.jump_std**2)
    jump_return = jumps * model.jump_mean + np.sqrt(jumps) * model.jump_std * z_jump
    log_return = ((drift - compensator) * dt)[:, None] - 0.5 * day_sd**2 + day_sd * eps + jump_return

    log_close = np.log(initial_price) + np.cumsum(log_return, axis=0)
    log_previous = np.vstack([np.log(initial_price)[None, :], log_close[:-1]])
    fraction = model.overnight_variance_fraction
    gap = fraction * log_return + math.sqrt(fraction * (1.0 - fraction)) * day_sd * z_open
    log_open = log_previous + gap
    intraday = log_return - gap
    intraday_var = (1.0 - fraction) * day_sd**2
    # Exact maximum / minimum of a Brownian bridge from 0 to `intraday` with variance `intraday_var`.
    rise = 0.5 * (intraday + np.sqrt(intraday**2 - 2.0 * intraday_var * np.log(u_high)))
    fall = 0.5 * (intraday - np.sqrt(intraday**2 - 2.0 * intraday_var * np.log(u_low)))

    open_ = _round_to_tick(np.exp(log_open))
    close = _round_to_tick(np.exp(log_close))
    high = _round_to_tick(np.exp(log_open + rise))
    low = _round_to_tick(np.exp(log_open + fall))
    vwap = _round_to_tick(u_vwap * 0.5 * (open_ + close) + (1.0 - u_vwap) * 0.5 * (high + low))

    standardised = _surprise(np.abs(log_return), long_run_vol * math.sqrt(dt))
    log_volume = (
        np.log(volume_level)
        + model.volume_return_sensitivity * (standardised - math.sqrt(2.0 / math.pi))
        + np.where(stress, math.log(model.stress_volume_multiplier), 0.0)[:, None]
        + model.volume_noise * z_volume
    )
    volume = np.maximum(np.rint(np.exp(log_volume)), 1.0)
    trade_count = np.maximum(np.rint(volume / (trade_size * np.exp(0.2 * z_trades))), 1.0).astype(np.int64)

    def by_symbol(values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(values.T)

    return _DailyBlock(
        open=by_symbol(open_),
        high=by_symbol(high),
        low=by_symbol(low),
        close=by_symbol(close),
        volume=by_symbol(volume),
        vwap=by_symbol(vwap),
        trade_count=by_symbol(trade_count),
        day_sd=by_symbol(day_sd),
        trade_size=trade_size,
    )


def _surprise(move: FloatArray, scale: FloatArray | float) -> FloatArray:
    """``move / scale`` capped at :data:`_MAX_VOLUME_SURPRISE`; where ``scale`` is 0 (no
    diffusion that day), the cap if ``move`` is not 0, else 0."""
    fallback = np.where(move > 0.0, _MAX_VOLUME_SURPRISE, 0.0)
    ratio = np.divide(move, scale, out=fallback, where=np.asarray(scale) > 0.0)
    result: FloatArray = np.minimum(ratio, _MAX_VOLUME_SURPRISE)
    return result


def _bar_table(names: Sequence[str], ts_ns: IntArray, columns: dict[str, np.ndarray]) -> pa.Table:
    """A BAR_SCHEMA table: ``names[i]`` for row block ``i``; ``ts_ns`` per row; columns flat."""
    per_name = ts_ns.size // len(names)
    rows = pa.array(np.repeat(np.arange(len(names)), per_name))
    symbol = pa.array(list(names), type=pa.string()).take(rows)
    ts = pa.array(ts_ns.view("datetime64[ns]"), type=pa.timestamp("ns")).cast(BAR_SCHEMA.field("ts").type)
    arrays = [symbol, ts]
    arrays += [pa.array(np.ravel(columns[field.name]), type=field.type) for field in list(BAR_SCHEMA)[2:]]
    return pa.Table.from_arrays(arrays, schema=BAR_SCHEMA)


def _blocks(names: Sequence[str], cells_per_name: int) -> Iterator[list[str]]:
    size = max(1, _BLOCK_CELLS // max(cells_per_name, 1))
    for first in range(0, len(names), size):
        yield list(names[first : first + size])


def iter_daily_bars(
    n_symbols: int,
    start: date,
    end: date,
    *,
    seed: int,
    model: MarketModel | None = None,
    chunk_symbols: int = 500,
    symbols: Sequence[str] | None = None,
) -> Iterator[pa.Table]:
    """Yield the rows of :func:`generate_daily_bars` in chunks of ``chunk_symbols`` symbols.

    The chunks follow the symbol order, so concatenating them gives exactly the table
    :func:`generate_daily_bars` returns for the same arguments; memory stays bounded by one
    chunk (about 70 bytes per row, ~190 MB for 500 symbols × 22 years) plus a working block.

    Raises:
        DataError: as :func:`generate_daily_bars`, or if ``chunk_symbols`` is not a positive integer.
    """
    model = MarketModel() if model is None else model
    seed = _check_seed(seed)
    names = _resolve_symbols(n_symbols, symbols)
    sessions = _sessions(TradingCalendar(), start, end)
    if not _is_count(chunk_symbols):
        raise DataError(f"iter_daily_bars: chunk_symbols must be an integer >= 1 (got {chunk_symbols!r})")
    return _iter_daily(names, sessions, seed, model, int(chunk_symbols))


def _iter_daily(
    names: list[str], sessions: np.ndarray, seed: int, model: MarketModel, chunk_symbols: int
) -> Iterator[pa.Table]:
    n_days = sessions.size
    if n_days == 0:
        yield BAR_SCHEMA.empty_table()
        return
    path = _market_path(seed, n_days, model)
    day_ts = midnight_ns(sessions)
    for first in range(0, len(names), chunk_symbols):
        chunk = names[first : first + chunk_symbols]
        tables = []
        for block in _blocks(chunk, n_days):
            bars = _daily_block(block, seed, path, model)
            columns = {name: getattr(bars, name) for name in BAR_SCHEMA.names[2:]}
            tables.append(_bar_table(block, np.tile(day_ts, len(block)), columns))
        yield pa.concat_tables(tables)


def generate_daily_bars(
    n_symbols: int,
    start: date,
    end: date,
    *,
    seed: int,
    model: MarketModel | None = None,
    symbols: Sequence[str] | None = None,
) -> pa.Table:
    """Generate daily bars of ``n_symbols`` symbols on every NYSE session from ``start`` to ``end``.

    Args:
        n_symbols: how many symbols (>= 1).
        start: first calendar day (inclusive).
        end: last calendar day (inclusive); sessions come from :class:`TradingCalendar`
            (holidays and closures such as 2012-10-29/30 have no bar).
        seed: non-negative integer; the same arguments always give the same table.
        model: the market model (default :class:`MarketModel()`).
        symbols: names to use instead of ``S0000``, ``S0001``… (zero-padded to at least four
            digits); must hold ``n_symbols`` distinct non-empty strings.

    Returns:
        A :data:`BAR_SCHEMA` table sorted by ``(symbol, ts)``; ``ts`` is midnight New York of
        the session (:func:`midnight_ns`). Prices in USD on Reg NMS ticks, volume in shares.

    Raises:
        DataError: for a bad count, symbol list, seed, date range or model.
    """
    model = MarketModel() if model is None else model
    seed = _check_seed(seed)
    names = _resolve_symbols(n_symbols, symbols)
    sessions = _sessions(TradingCalendar(), start, end)
    return pa.concat_tables(list(_iter_daily(names, sessions, seed, model, len(names))))


def stress_regime(
    start: date, end: date, *, seed: int, model: MarketModel | None = None
) -> tuple[np.ndarray, BoolArray]:
    """Return the sessions from ``start`` to ``end`` and whether each was in the stress regime.

    This is the market-wide regime path that :func:`generate_daily_bars` (and the minute bars)
    used for the same ``start``, ``end``, ``seed`` and ``model``: ground truth for testing
    regime detection.

    Returns:
        ``(sessions as datetime64[D], stress flags)``, both of one length.

    Raises:
        DataError: for a bad seed or date range.
    """
    model = MarketModel() if model is None else model
    sessions = _sessions(TradingCalendar(), start, end)
    return sessions, _market_path(_check_seed(seed), sessions.size, model).stress


# --------------------------------------------------------------------------- minute bars


def generate_minute_bars(
    n_symbols: int,
    start: date,
    end: date,
    *,
    seed: int,
    model: MarketModel | None = None,
    symbols: Sequence[str] | None = None,
) -> pa.Table:
    """Generate 1-minute bars over each regular NYSE session (09:30 to the close, New York).

    Each session's minutes bridge :func:`generate_daily_bars`' open to its close for the same
    arguments (Brownian bridge in a U-shaped intraday variance clock, ``1 + 2·(2x - 1)²`` at
    session fraction ``x``). Volume splits the daily volume over the minutes with a U-shaped
    profile (``1 + 4·(2x - 1)²``), noise and a rise with the minute's ``|return|``, so it sums to
    about the daily volume. Early closes (13:00) have 210 minutes instead of 390.

    Returns:
        A :data:`BAR_SCHEMA` table sorted by ``(symbol, ts)``; ``ts`` is the start of the
        minute in UTC.

    Raises:
        DataError: as :func:`generate_daily_bars`.
    """
    model = MarketModel() if model is None else model
    seed = _check_seed(seed)
    names = _resolve_symbols(n_symbols, symbols)
    calendar = TradingCalendar()
    sessions = _sessions(calendar, start, end)
    if sessions.size == 0:
        return BAR_SCHEMA.empty_table()
    opens, closes = calendar.opens_closes_ns(sessions[0], sessions[-1])
    if opens.size != sessions.size:
        raise DataError(f"synthetic: calendar gave {opens.size} opens for {sessions.size} sessions")
    path = _market_path(seed, sessions.size, model)

    counts = ((closes - opens) // _MINUTE_NS).astype(np.int64)
    session_of = np.repeat(np.arange(sessions.size), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    ends = starts + counts - 1
    minute = np.arange(session_of.size) - starts[session_of]
    fraction = (minute + 0.5) / counts[session_of]
    shape = (2.0 * fraction - 1.0) ** 2
    variance_weight = _per_session_share(1.0 + 2.0 * shape, starts, session_of)
    cumulative_weight = _segment_cumsum(variance_weight[None, :], starts, session_of)[0]
    ts_ns = opens[session_of] + minute * _MINUTE_NS

    tables = []
    for block in _blocks(names, session_of.size + sessions.size):
        daily = _daily_block(block, seed, path, model)
        normals = np.empty((3, len(block), session_of.size))
        uniforms = np.empty((3, len(block), session_of.size))
        for j, name in enumerate(block):
            rng = _stream(seed, _STREAM_MINUTE, *_name_key(name))
            normals[:, j] = rng.standard_normal((3, session_of.size))
            uniforms[:, j] = rng.random((3, session_of.size))
        z_path, z_volume, z_trades = normals
        u_high, u_low, u_vwap = 1.0 - uniforms

        log_open_day = np.log(daily.open)
        intraday = np.log(daily.close) - log_open_day
        day_var = (1.0 - model.overnight_variance_fraction) * daily.day_sd**2
        minute_var = day_var[:, session_of] * variance_weight
        walk = _segment_cumsum(np.sqrt(minute_var) * z_path, starts, session_of)
        excess = walk[:, ends] - intraday
        bridge = walk - cumulative_weight * excess[:, session_of]
        bridge[:, ends] = intraday  # exact arrival at the daily close
        previous = np.empty_like(bridge)
        previous[:, 1:] = bridge[:, :-1]
        previous[:, starts] = 0.0
        step = bridge - previous
        rise = 0.5 * (step + np.sqrt(step**2 - 2.0 * minute_var * np.log(u_high)))
        fall = 0.5 * (step - np.sqrt(step**2 - 2.0 * minute_var * np.log(u_low)))
        base = log_open_day[:, session_of]
        open_ = _round_to_tick(np.exp(base + previous))
        close = _round_to_tick(np.exp(base + bridge))
        high = _round_to_tick(np.exp(base + previous + np.maximum(rise, 0.0)))
        low = _round_to_tick(np.exp(base + previous + np.minimum(fall, 0.0)))
        vwap = _round_to_tick(u_vwap * 0.5 * (open_ + close) + (1.0 - u_vwap) * 0.5 * (high + low))

        surprise = _surprise(np.abs(step), np.sqrt(minute_var))
        activity = (1.0 + 4.0 * shape) * np.exp(
            model.volume_noise * z_volume + model.volume_return_sensitivity * surprise
        )
        share = activity / np.add.reduceat(activity, starts, axis=1)[:, session_of]
        volume = np.maximum(np.rint(daily.volume[:, session_of] * share), 1.0)
        trade_size = daily.trade_size[:, None] * np.exp(0.2 * z_trades)
        trade_count = np.maximum(np.rint(volume / trade_size), 1.0)
        columns = {
            "open": open_, "high": high, "low": low, "close": close,
            "volume": volume, "vwap": vwap, "trade_count": trade_count.astype(np.int64),
        }  # fmt: skip
        tables.append(_bar_table(block, np.tile(ts_ns, len(block)), columns))
    return pa.concat_tables(tables)


def _per_session_share(weight: FloatArray, starts: IntArray, session_of: IntArray) -> FloatArray:
    """Normalise ``weight`` so that it sums to 1 over each session's minutes."""
    result: FloatArray = weight / np.add.reduceat(weight, starts)[session_of]
    return result


def _segment_cumsum(values: FloatArray, starts: IntArray, session_of: IntArray) -> FloatArray:
    """Cumulative sum along the last axis, restarting at each session start."""
    total = np.cumsum(values, axis=-1)
    before = total[..., starts] - values[..., starts]
    result: FloatArray = total - before[..., session_of]
    return result


# --------------------------------------------------------------------------- option chains


def listed_expiries(quote_date: date, count: int, *, calendar: TradingCalendar | None = None) -> list[date]:
    """Return the first ``count`` listed-style expiries after ``quote_date``.

    Candidates are the weekly Fridays of the next five weeks and the monthly third Fridays of
    the next 36 months. An expiry Friday that is an exchange holiday moves to the session before
    it (as Good Friday expiries do); dates past the calendar's range (about a year ahead) are
    kept as Fridays. Expiries on or before ``quote_date`` are dropped.

    Raises:
        DataError: if ``count`` is not a positive integer or exceeds the candidates.
    """
    calendar = TradingCalendar() if calendar is None else calendar
    fridays = [quote_date + timedelta(days=(4 - quote_date.weekday()) % 7 + 7 * week) for week in range(6)]
    candidates = {day for day in fridays if 0 < (day - quote_date).days <= 35}
    year, month = quote_date.year, quote_date.month
    for _ in range(37):
        first = date(year, month, 1)
        candidates.add(first + timedelta(days=(4 - first.weekday()) % 7 + 14))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    ordered = sorted(candidates)
    sessions = calendar.sessions(quote_date, ordered[-1])
    last_session = sessions[-1] if sessions.size else np.datetime64(quote_date, "D")
    adjusted = set()
    for day in ordered:
        stamp = np.datetime64(day, "D")
        if stamp <= last_session and stamp not in sessions:
            before = int(np.searchsorted(sessions, stamp)) - 1
            if before < 0:
                continue
            stamp = sessions[before]
        if stamp > np.datetime64(quote_date, "D"):
            adjusted.add(stamp.astype(date))
    result = sorted(adjusted)
    if not _is_count(count) or count > len(result):
        raise DataError(f"listed_expiries: count must be an integer in [1, {len(result)}] (got {count!r})")
    return result[: int(count)]


def _strike_increment(spot: float) -> float:
    """The usual listed strike increment for an underlying at ``spot`` (USD)."""
    if spot < 25:
        return 0.5
    if spot < 200:
        return 1.0
    if spot < 1000:
        return 5.0
    return 10.0


def _strike_grid(spot: float, forward_sd: float, count: int) -> FloatArray:
    """``count`` strikes centred on the at-the-money strike, covering about ±2 ``forward_sd``
    (the standard deviation of the forward price in USD), on a multiple of the listed increment."""
    below = count // 2
    above = count - 1 - below
    for increment in (_strike_increment(spot), 0.1, 0.05, 0.01):
        centre = max(round(spot / increment), 1) * increment
        ideal = 2.0 * forward_sd / max(below, above, 1)
        spacing = max(round(ideal / increment), 1) * increment
        widest = math.floor((centre - increment) / (increment * below)) * increment if below else spacing
        spacing = min(spacing, widest)
        if spacing >= increment:
            return np.round(centre + (np.arange(count) - below) * spacing, 3)
    raise DataError(f"generate_option_chains: {count} positive strikes do not fit around spot {spot}")


def generate_option_chains(
    underlying: str,
    spot: float,
    quote_date: date,
    *,
    seed: int,
    rate: float = 0.04,
    div_yield: float = 0.0,
    atm_vol: float = 0.25,
    expiries: int = 8,
    strikes_per_expiry: int = 21,
    skew: float = -0.10,
    term_slope: float = 0.02,
    smile: float = 0.10,
) -> pa.Table:
    """Generate one end-of-day option chain (calls and puts) priced off a parametric IV surface.

    Implied volatility of strike ``K`` and expiry ``T`` (years, calendar days / 365, close to
    close), with forward ``F = spot·e^((rate - div_yield)·T)``::

        x = ln(K/F) / √T
        σ_atm(T) = atm_vol + term_slope·(√T - √(30/365))
        σ(K, T) = max(0.01, σ_atm(T) + skew·x + smile·x²)

    so ``atm_vol`` is the 30-day at-the-money vol, ``term_slope > 0`` an upward term structure
    (per √year), ``skew < 0`` puts richer than calls (vol per unit of ``x``) and ``smile`` the
    curvature. Quotes: mid = BSM price at ``σ``; half-spread
    ``max(tick, 1%·(time value + 10%·intrinsic)·(1 + |z|))`` with ``z = ln(K/F)/(σ_atm·√T)`` the
    moneyness in standard deviations and intrinsic the discounted forward intrinsic value; bid
    rounded down and ask up to the penny-program tick ($0.01 below $3, else $0.05), bid >= 0,
    ask >= bid + one tick; ``last`` lies in ``[max(bid, 0.01), ask]``. Sizes, volume and
    open interest are random and decay like ``e^(-z²/2)``. ``iv`` and the greeks are the model's
    (vega per 1.00 vol, theta per year, rho per 1.00 rate).

    Args:
        underlying: the option root (1-6 upper-case characters).
        spot: underlying price, USD (1 to 50,000).
        quote_date: an NYSE session; ``quote_ts`` is its close (16:00 New York, 13:00 on early
            closes) in UTC.
        seed: non-negative integer seeding sizes, volumes and last prices.
        rate: continuously compounded risk-free rate, annualised.
        div_yield: continuous dividend yield, annualised.
        atm_vol: 30-day at-the-money implied volatility, annualised.
        expiries: how many expiries, from :func:`listed_expiries`.
        strikes_per_expiry: strikes per expiry, centred on the at-the-money strike.
        skew: slope of IV in ``x``; negative for equity-like skew.
        term_slope: slope of ATM IV in ``√T``.
        smile: curvature of IV in ``x``.

    Returns:
        An :data:`OPTION_CHAIN_SCHEMA` table sorted by OCC symbol.

    Raises:
        DataError: for a bad root, a non-session quote date or an out-of-range parameter.
    """
    seed = _check_seed(seed)
    for name, value in (("spot", spot), ("rate", rate), ("div_yield", div_yield), ("atm_vol", atm_vol),
                        ("skew", skew), ("term_slope", term_slope), ("smile", smile)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(f"generate_option_chains: {name} must be a finite number (got {value!r})")
    if not 1.0 <= spot <= 50_000.0:
        raise DataError(f"generate_option_chains: spot must be in [1, 50000] USD (got {spot!r})")
    if not 0.0 < atm_vol <= 5.0:
        raise DataError(f"generate_option_chains: atm_vol must be in (0, 5] (got {atm_vol!r})")
    if not _is_count(strikes_per_expiry):
        raise DataError(
            f"generate_option_chains: strikes_per_expiry must be an integer >= 1 (got {strikes_per_expiry!r})"
        )
    if not _is_count(expiries):
        raise DataError(f"generate_option_chains: expiries must be an integer >= 1 (got {expiries!r})")
    if not isinstance(quote_date, date):
        raise DataError(f"generate_option_chains: quote_date must be a date (got {quote_date!r})")
    calendar = TradingCalendar()
    if not calendar.is_session(quote_date):
        raise DataError(f"generate_option_chains: quote_date {quote_date} is not an NYSE session")
    expiry_days = listed_expiries(quote_date, expiries, calendar=calendar)
    try:
        OptionContract(underlying, expiry_days[0], OptionRight.CALL, Decimal(1))
    except DomainError as exc:
        raise DataError(f"generate_option_chains: bad underlying {underlying!r}: {exc}") from exc

    years = np.array([(day - quote_date).days / _DAYS_PER_YEAR for day in expiry_days])
    atm = atm_vol + term_slope * (np.sqrt(years) - math.sqrt(_TERM_REFERENCE_YEARS))
    if np.any(atm <= _MIN_IV):
        raise DataError(
            f"generate_option_chains: term_slope {term_slope} makes the ATM vol {atm.min():.4f} <= {_MIN_IV} "
            f"at {expiry_days[int(np.argmin(atm))]}"
        )
    forward = spot * np.exp((rate - div_yield) * years)
    grids = [
        _strike_grid(spot, f * a * math.sqrt(t), strikes_per_expiry)
        for f, a, t in zip(forward, atm, years, strict=True)
    ]
    per_expiry = strikes_per_expiry * 2
    expiry_index = np.repeat(np.arange(len(expiry_days)), per_expiry)
    strike = np.concatenate([np.repeat(grid, 2) for grid in grids])
    is_call = np.tile([True, False], strike.size // 2)
    t_years, fwd, atm_row = years[expiry_index], forward[expiry_index], atm[expiry_index]

    log_moneyness = np.log(strike / fwd)
    x = log_moneyness / np.sqrt(t_years)
    iv = np.maximum(_MIN_IV, atm_row + skew * x + smile * x * x)
    mid = bsm_price(spot, strike, t_years, rate, div_yield, iv, is_call)
    greeks = bsm_greeks(spot, strike, t_years, rate, div_yield, iv, is_call)
    z = np.abs(log_moneyness / (atm_row * np.sqrt(t_years)))

    sign = np.where(is_call, 1.0, -1.0)
    forward_gap = spot * np.exp(-div_yield * t_years) - strike * np.exp(-rate * t_years)
    intrinsic = np.maximum(sign * forward_gap, 0.0)
    time_value = np.maximum(mid - intrinsic, 0.0)
    half = np.maximum(_option_tick(mid), 0.01 * (time_value + 0.1 * intrinsic) * (1.0 + z))
    bid_raw = np.maximum(mid - half, 0.0)
    bid_tick = _option_tick(bid_raw)
    bid = np.round(np.floor(bid_raw / bid_tick + 1e-9) * bid_tick, 2)
    ask_raw = mid + half
    ask_tick = _option_tick(ask_raw)
    ask = np.round(np.maximum(np.ceil(ask_raw / ask_tick - 1e-9) * ask_tick, bid + bid_tick), 2)

    rng = _stream(seed, _STREAM_OPTIONS, *_name_key(underlying), quote_date.toordinal())
    interest = np.exp(-0.5 * z * z) / np.sqrt(1.0 + 4.0 * t_years)
    noise = rng.lognormal(0.0, 0.5, (4, strike.size))
    bid_size = np.maximum(np.rint(5.0 + 300.0 * interest * noise[0]), 1.0)
    ask_size = np.maximum(np.rint(5.0 + 300.0 * interest * noise[1]), 1.0)
    volume = np.rint(2_000.0 * interest * noise[2] * rng.random(strike.size))
    open_interest = np.rint(20_000.0 * interest * noise[3])
    last = np.clip(np.round(mid + half * rng.uniform(-1.0, 1.0, strike.size), 2), np.maximum(bid, 0.01), ask)

    expiry_codes = np.array([f"{underlying}{day:%y%m%d}" for day in expiry_days])[expiry_index]
    strike_codes = np.char.zfill(np.rint(strike * 1000).astype(np.int64).astype(str), 8)
    symbol = np.char.add(np.char.add(expiry_codes, np.where(is_call, "C", "P")), strike_codes)
    order = np.argsort(symbol, kind="stable")
    _, closes = calendar.opens_closes_ns(quote_date, quote_date)
    expiry_dates = np.array(expiry_days, dtype="datetime64[D]")[expiry_index]

    columns: dict[str, object] = {
        "underlying": np.full(strike.size, underlying),
        "symbol": symbol,
        "quote_ts": np.full(strike.size, closes[0], dtype=np.int64).view("datetime64[ns]"),
        "expiry": expiry_dates,
        "strike": strike,
        "right": np.where(is_call, "C", "P"),
        "bid": bid,
        "ask": ask,
        "bid_size": bid_size,
        "ask_size": ask_size,
        "last": last,
        "volume": volume,
        "open_interest": open_interest,
        "underlying_price": np.full(strike.size, float(spot)),
        "iv": iv,
        **greeks,
    }
    arrays = []
    for field in OPTION_CHAIN_SCHEMA:
        values = np.asarray(columns[field.name])[order]
        if field.name == "quote_ts":
            arrays.append(pa.array(values, type=pa.timestamp("ns")).cast(field.type))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=OPTION_CHAIN_SCHEMA)


def _option_tick(price: FloatArray) -> FloatArray:
    """Penny-program option tick: $0.01 below $3.00, $0.05 at or above."""
    result: FloatArray = np.where(price < 3.0, 0.01, 0.05)
    return result
