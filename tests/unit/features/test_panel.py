"""Panels: :meth:`FeatureRegistry.compute_panel` equals :meth:`FeatureRegistry.compute` per symbol.

For every series feature of :func:`amcp.features.default_registry` (iterated, so a new feature is
covered without touching this file), on a panel of real daily bars (eight stocks and SPY over 302
sessions of 2013–2014, SPY's close as the market) plus synthetic columns built on the same dates
— a halted stock (NaN rows), a zero-volume run, constant prices, a stock with a partial vwap —
each column of ``compute_panel`` must equal the feature computed on that symbol alone, bit for bit
(NaN where and only where the single-symbol value is NaN). Also without a market, with one
symbol, and with fewer bars than the longest window. :data:`ULP_TOLERANT` lists features allowed
to differ by numpy's vectorised transcendental functions (an ulp between contiguous and strided
data), compared with ``rtol = 1e-12`` instead; it is empty while every feature is exact.

Run this file as a script for a micro-benchmark (50 symbols × 140 bars, every series feature):
``.venv/bin/python tests/unit/features/test_panel.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amcp.errors import DataError
from amcp.features import default_registry
from amcp.features.registry import FeatureRegistry, PanelInputs, SeriesInputs

from ._real_bars import on_market_calendar

REGISTRY = default_registry()
SERIES_NAMES = REGISTRY.series_names
LONGEST_WINDOW = max(REGISTRY.series(name).window for name in SERIES_NAMES)

SYMBOLS = ("AAPL", "JPM", "XOM", "GE", "MSFT", "KO", "PG", "WMT")
MARKET = "SPY"
START, END = "2013-01-01", "2014-03-14"  # 302 sessions on which every symbol above has a bar
COLUMNS = ("open", "high", "low", "close", "volume", "vwap", "market")

#: Features whose panel values may differ from the per-symbol ones by an ulp (rtol 1e-12), each
#: with the reason. None needs it today: every feature is exact.
ULP_TOLERANT: dict[str, str] = {}


# ---------------------------------------------------------------------------- panels


def _with(inputs: SeriesInputs, **columns: np.ndarray) -> SeriesInputs:
    values = {name: getattr(inputs, name) for name in COLUMNS}
    values.update(columns)
    return SeriesInputs(inputs.dates, **values)


def _synthetic(base: SeriesInputs) -> list[SeriesInputs]:
    """Columns on ``base``'s dates and market: a halt, a zero-volume run, constant prices, a partial vwap."""
    n = len(base)
    halted = {name: getattr(base, name).copy() for name in ("open", "high", "low", "close", "volume")}
    for column in halted.values():
        column[[3, 40, 41, 42, 43, 44, 150, n - 2]] = np.nan  # a one-bar gap, a five-bar halt, late gaps
    volume = base.volume.copy()
    volume[100:135] = 0.0  # no trading for 35 sessions
    volume[200] = 0.0
    flat = np.full(n, 25.0)
    constant = _with(base, open=flat, high=flat, low=flat, close=flat, volume=np.full(n, 1e5))
    rng = np.random.default_rng(11)
    typical = (base.high + base.low + base.close) / 3.0
    vwap = np.where(rng.random(n) < 0.6, typical * (1.0 + rng.normal(0.0, 1e-3, n)), np.nan)
    return [_with(base, **halted), _with(base, volume=volume), constant, _with(base, vwap=vwap)]


@pytest.fixture(scope="module")
def symbols(shared_daily: Path) -> list[SeriesInputs]:
    real = on_market_calendar(shared_daily, (*SYMBOLS, MARKET), MARKET, START, END, complete=True)
    return real + _synthetic(real[0])


@pytest.fixture(scope="module")
def panel(symbols: list[SeriesInputs]) -> PanelInputs:
    return PanelInputs.stack(symbols)


@pytest.fixture(scope="module")
def panel_values(panel: PanelInputs) -> np.ndarray:
    return REGISTRY.compute_panel(panel)


@pytest.fixture(scope="module")
def symbol_values(symbols: list[SeriesInputs]) -> np.ndarray:
    """``(T, N, F)`` from one ``compute`` per symbol."""
    return np.stack([REGISTRY.compute(one).values for one in symbols], axis=1)


def _mismatch(name: str, panel_column: np.ndarray, reference: np.ndarray) -> str | None:
    """Why the panel's ``(T, N)`` values of ``name`` differ from the per-symbol ones, or None."""
    if panel_column.shape != reference.shape:
        return f"{name}: shape {panel_column.shape} != {reference.shape}"
    if np.array_equal(panel_column, reference, equal_nan=True):
        return None
    if name in ULP_TOLERANT and np.allclose(panel_column, reference, rtol=1e-12, atol=0.0, equal_nan=True):
        return None
    both = np.isfinite(panel_column) & np.isfinite(reference)
    nan_diff = int((np.isnan(panel_column) != np.isnan(reference)).sum())
    rel = np.abs(panel_column[both] - reference[both]) / np.maximum(np.abs(reference[both]), 1e-300)
    worst = float(rel.max()) if rel.size else 0.0
    columns = sorted({int(i) for i in np.argwhere(~((panel_column == reference)
                                                    | (np.isnan(panel_column) & np.isnan(reference))))[:, 1]})
    return f"{name}: max relative difference {worst:.3g}, {nan_diff} NaN mismatches, columns {columns}"


def _check_all(registry: FeatureRegistry, series: list[SeriesInputs], panel: PanelInputs) -> None:
    values = registry.compute_panel(panel)
    assert values.shape == (len(panel), panel.width, len(registry.series_names))
    reference = np.stack([registry.compute(one).values for one in series], axis=1)
    problems = [problem for j, name in enumerate(registry.series_names)
                if (problem := _mismatch(name, values[:, :, j], reference[:, :, j])) is not None]
    assert not problems, "panel differs from per-symbol compute: " + "; ".join(problems)


# ---------------------------------------------------------------------------- every feature, real panel


@pytest.mark.parametrize("name", SERIES_NAMES)
def test_feature_on_a_panel_equals_it_per_symbol(name: str, panel: PanelInputs, panel_values: np.ndarray,
                                                 symbol_values: np.ndarray) -> None:
    j = SERIES_NAMES.index(name)
    one = np.asarray(REGISTRY.series(name).fn(panel))
    assert one.shape == (len(panel), panel.width) and one.dtype == np.float64
    problem = _mismatch(name, panel_values[:, :, j], symbol_values[:, :, j])
    assert problem is None, problem


def test_the_panel_is_not_trivial(panel: PanelInputs, panel_values: np.ndarray) -> None:
    """Most features have values (the comparison is not all-NaN against all-NaN)."""
    finite = np.isfinite(panel_values[-1]).any(axis=0)
    assert finite.sum() >= 0.95 * len(SERIES_NAMES)
    assert panel.width >= 6 and panel.market is not None


def test_without_market(symbols: list[SeriesInputs]) -> None:
    bare = [_with(one, market=None) for one in symbols]
    panel = PanelInputs.stack(bare)
    assert panel.market is None
    _check_all(REGISTRY, bare, panel)
    assert np.isnan(REGISTRY.compute_panel(panel, ["beta_20", "corr_60"])).all()


def test_one_symbol(symbols: list[SeriesInputs]) -> None:
    panel = PanelInputs.stack(symbols[:1])
    assert panel.width == 1
    _check_all(REGISTRY, symbols[:1], panel)


def test_fewer_bars_than_the_longest_window(symbols: list[SeriesInputs], panel: PanelInputs) -> None:
    count = LONGEST_WINDOW // 2
    short = panel.head(count)
    assert isinstance(short, PanelInputs) and short.close.shape == (count, panel.width)
    _check_all(REGISTRY, [one.head(count) for one in symbols], short)
    tiny = panel.head(1)
    assert isinstance(tiny, PanelInputs)
    _check_all(REGISTRY, [one.head(1) for one in symbols], tiny)


def test_a_subset_of_features_in_the_given_order(panel: PanelInputs, panel_values: np.ndarray) -> None:
    names = ["day_of_week", "KMID", "beta_60"]
    values = REGISTRY.compute_panel(panel, names)
    assert values.shape == (len(panel), panel.width, 3)
    for k, name in enumerate(names):
        np.testing.assert_array_equal(values[:, :, k], panel_values[:, :, SERIES_NAMES.index(name)])
    with pytest.raises(DataError, match="unknown series feature"):
        REGISTRY.compute_panel(panel, ["no_such_feature"])


# ---------------------------------------------------------------------------- PanelInputs


@pytest.mark.parametrize("last", [1, 3])
def test_the_last_rows_only_equal_the_full_computations_last_rows(panel: PanelInputs, panel_values: np.ndarray,
                                                                   last: int) -> None:
    values = REGISTRY.compute_panel(panel, last=last)

    assert values.shape == (last, *panel_values.shape[1:])
    np.testing.assert_array_equal(values, panel_values[-last:])


@pytest.mark.parametrize("last", [0, -1, 10_000])
def test_a_last_outside_the_panels_dates_is_refused(panel: PanelInputs, last: int) -> None:
    with pytest.raises(DataError, match="last must be in 1.."):
        REGISTRY.compute_panel(panel, ["ROC5"], last=last)


def _bars(dates: np.ndarray, seed: int, market: bool = True) -> SeriesInputs:
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, len(dates))))
    return SeriesInputs(dates, close, close * 1.01, close * 0.99, close, rng.lognormal(12.0, 0.3, len(dates)),
                        np.full(len(dates), np.nan), close if market else None)


DATES = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + 30)


def test_stack_builds_dates_by_symbols_columns() -> None:
    series = [_bars(DATES, seed) for seed in range(3)]
    panel = PanelInputs.stack(series)
    assert isinstance(panel, SeriesInputs) and len(panel) == 30 and panel.width == 3
    for name in COLUMNS:
        column = getattr(panel, name)
        assert column.shape == (30, 3) and column.dtype == np.float64
        np.testing.assert_array_equal(column[:, 2], getattr(series[2], name))
    np.testing.assert_array_equal(panel.dates, DATES)


def test_stack_refuses_different_dates() -> None:
    with pytest.raises(DataError, match="input 1 has different dates"):
        PanelInputs.stack([_bars(DATES, 0), _bars(DATES + 1, 1)])
    with pytest.raises(DataError, match="input 2 has different dates"):
        PanelInputs.stack([_bars(DATES, 0), _bars(DATES, 1), _bars(DATES[:-1], 2)])


def test_stack_refuses_mixed_market() -> None:
    with pytest.raises(DataError, match="mixed market"):
        PanelInputs.stack([_bars(DATES, 0), _bars(DATES, 1, market=False)])
    assert PanelInputs.stack([_bars(DATES, 0, market=False)]).market is None


def test_stack_refuses_nothing_and_panels() -> None:
    with pytest.raises(DataError, match="at least one"):
        PanelInputs.stack([])
    panel = PanelInputs.stack([_bars(DATES, 0)])
    with pytest.raises(DataError, match="is a panel"):
        PanelInputs.stack([panel])


def test_panel_inputs_refuse_wrong_shapes() -> None:
    good = PanelInputs.stack([_bars(DATES, seed) for seed in range(2)])
    columns = {name: getattr(good, name) for name in COLUMNS}

    def build(dates: np.ndarray = DATES, **changes: object) -> PanelInputs:
        return PanelInputs(dates, **{**columns, **changes})  # type: ignore[arg-type]

    assert build().width == 2
    with pytest.raises(DataError, match=r"column close has shape \(30,\), expected \(T, N\)"):
        build(close=columns["close"][:, 0])
    with pytest.raises(DataError, match="column open has shape"):
        build(open=columns["open"][:, :1])
    with pytest.raises(DataError, match="column market has shape"):
        build(market=columns["market"][:, 0])
    with pytest.raises(DataError, match="column volume has shape"):
        build(volume=columns["volume"][:-1])
    with pytest.raises(DataError, match="dates has shape"):
        build(DATES[:-1])
    with pytest.raises(DataError, match="strictly increasing"):
        build(DATES[::-1])
    # one symbol's inputs need 1-D columns
    with pytest.raises(DataError, match=r"series inputs: column open has shape \(30, 2\)"):
        SeriesInputs(DATES, *(columns[name] for name in ("open", "high", "low", "close", "volume", "vwap")))


# ---------------------------------------------------------------------------- compute_panel's checks


def test_compute_panel_refuses_a_feature_of_the_wrong_shape_or_dtype() -> None:
    registry = FeatureRegistry()

    @registry.register("date_only", window=1, group="bad")
    def date_only(b: SeriesInputs) -> np.ndarray:
        """One value per date, not per symbol: wrong for a panel."""
        return np.zeros(len(b))

    @registry.register("single_precision", window=1, group="bad")
    def single_precision(b: SeriesInputs) -> np.ndarray:
        """float32 values."""
        return np.zeros(b.close.shape, dtype=np.float32)

    @registry.register("fine", window=1, group="ok")
    def fine(b: SeriesInputs) -> np.ndarray:
        """The close."""
        return b.close.copy()

    panel = PanelInputs.stack([_bars(DATES, seed) for seed in range(3)])
    with pytest.raises(DataError, match=r"feature date_only: returned float64 of shape \(30,\), "
                                        r"expected float64 of shape \(30, 3\)"):
        registry.compute_panel(panel)
    with pytest.raises(DataError, match="feature single_precision: returned float32"):
        registry.compute_panel(panel, ["single_precision"])
    np.testing.assert_array_equal(registry.compute_panel(panel, ["fine"])[:, :, 0], panel.close)
    with pytest.raises(DataError, match="needs PanelInputs"):
        registry.compute_panel(_bars(DATES, 0), ["fine"])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- micro-benchmark (not a test)


def _benchmark(symbols: int = 50, bars: int = 140, runs: int = 10) -> None:
    import time

    dates = np.arange(np.datetime64("2021-01-04"), np.datetime64("2021-01-04") + bars)
    rng = np.random.default_rng(5)
    market = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, bars)))
    series = []
    for k in range(symbols):
        close = 30.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, bars)))
        open_ = close * np.exp(rng.normal(0.0, 0.005, bars))
        high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.01, bars)))
        low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.01, bars)))
        series.append(SeriesInputs(dates, open_, high, low, close, rng.lognormal(13.0, 0.5, bars),
                                   np.full(bars, np.nan), market))
    panel = PanelInputs.stack(series)
    REGISTRY.compute_panel(panel)  # warm up (numba compilation, caches)
    for one in series:
        REGISTRY.compute(one)

    def median(fn) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    def fresh(inputs: SeriesInputs) -> SeriesInputs:  # a new object per run: no memo carried over
        return type(inputs).from_checked_arrays(inputs.dates, inputs.open, inputs.high, inputs.low,
                                                inputs.close, inputs.volume, inputs.vwap, inputs.market)

    def per_symbol() -> None:
        for one in series:
            REGISTRY.compute(fresh(one))

    def one_panel() -> None:
        REGISTRY.compute_panel(PanelInputs.stack(series))

    def panel_only() -> None:
        REGISTRY.compute_panel(fresh(panel))  # type: ignore[arg-type]

    loop, stacked, bare = median(per_symbol), median(one_panel), median(panel_only)
    print(f"{symbols} symbols x {bars} bars, {len(SERIES_NAMES)} series features, median of {runs}:")
    print(f"  per-symbol compute loop : {loop * 1e3:8.2f} ms")
    print(f"  stack + compute_panel   : {stacked * 1e3:8.2f} ms  ({loop / stacked:.1f}x)")
    print(f"  compute_panel alone     : {bare * 1e3:8.2f} ms  ({loop / bare:.1f}x)")


if __name__ == "__main__":
    _benchmark()
