"""Every Alpha158 feature against an independent pandas/numpy/scipy rendering of Qlib's expression.

The reference below is written from Qlib's expressions (``Alpha158DL.get_feature_config``) with
pandas rolling windows and Qlib's own per-window functions (``argmax() + 1``,
``percentileofscore / 100``, a least-squares line), plus amcp's documented deviations: full windows only
(pandas' default ``min_periods = window``), a comparison with a missing side is missing, ±inf is
missing. Standard deviations, correlations and the regression on time (numpy's ``polyfit``) are
computed per window with numpy because pandas' online ``rolling().std()``/``corr()`` drift by up to
~1e-9 relative on prices with a small spread.

Tolerance: 1e-9 relative, 1e-12 absolute (for values at or near zero such as RESI, SUMD, CORD).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from scipy import stats

from amcp.features.alpha158 import ALPHA158_NAMES, GROUP, WINDOWS, register_alpha158
from amcp.features.registry import REGISTRY, FeatureRegistry, SeriesInputs

SYMBOLS = ("AAPL", "JPM", "XOM")
START, END = "2010-01-01", "2012-12-31"
FLAT = 2e-5
EPS = 1e-12


# ---------------------------------------------------------------------------------- the reference


def _clean(x: pd.Series) -> pd.Series:
    return x.replace([np.inf, -np.inf], np.nan)


def _apply(x: pd.Series, d: int, fn: Callable[[np.ndarray], float]) -> pd.Series:
    return x.rolling(d).apply(fn, raw=True)


def _windows(x: pd.Series, d: int) -> tuple[np.ndarray, np.ndarray]:
    """The full windows of ``x`` without a missing value (one per row) and the bars they end at."""
    if len(x) < d:
        return np.empty((0, d)), np.empty(0, dtype=int)
    windows = sliding_window_view(x.to_numpy(), d)
    keep = np.isfinite(windows).all(axis=1)
    return windows[keep], np.flatnonzero(keep) + d - 1


def _per_window(x: pd.Series, d: int, values: Callable[[np.ndarray], np.ndarray]) -> pd.Series:
    windows, ends = _windows(x, d)
    out = np.full(len(x), np.nan)
    out[ends] = values(windows) if len(ends) else []
    return pd.Series(out, index=x.index)


def _std(x: pd.Series, d: int) -> pd.Series:
    return _per_window(x, d, lambda w: np.std(w, axis=1, ddof=1))


def _corr(x: pd.Series, y: pd.Series, d: int) -> pd.Series:
    """Qlib's Corr: Pearson correlation per window, NaN where either std is within 2e-5 of 0."""
    pairs = pd.Series(np.arange(len(x), dtype=float), index=x.index).where(x.notna() & y.notna())

    def corr(positions: np.ndarray) -> np.ndarray:
        rows = positions.astype(int)
        a, b = x.to_numpy()[rows], y.to_numpy()[rows]
        a_dev, b_dev = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):  # flat windows: blanked below
            r = (a_dev * b_dev).sum(axis=1) / np.sqrt((a_dev**2).sum(axis=1) * (b_dev**2).sum(axis=1))
        flat = (np.std(a, axis=1, ddof=1) <= FLAT) | (np.std(b, axis=1, ddof=1) <= FLAT)
        return np.where(flat, np.nan, r)

    return _per_window(pairs, d, corr)


def _linear_fit(x: pd.Series, d: int, what: str) -> pd.Series:
    """Least squares of each window on time 1..d with numpy's polyfit (all windows in one call)."""
    time = np.arange(1.0, d + 1.0)

    def fit(windows: np.ndarray) -> np.ndarray:
        slope, intercept = np.polyfit(time, windows.T, 1)
        if what == "slope":
            return slope
        if what == "resi":
            return windows[:, -1] - (intercept + slope * d)
        fitted = intercept[:, None] + slope[:, None] * time
        total = ((windows - windows.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):  # flat windows: blanked below
            rsquare = 1.0 - ((windows - fitted) ** 2).sum(axis=1) / total
        return np.where(np.std(windows, axis=1, ddof=1) > FLAT, rsquare, np.nan)

    return _per_window(x, d, fit)


def _compare(x: pd.Series, y: pd.Series, op: Callable[[pd.Series, pd.Series], pd.Series]) -> pd.Series:
    return op(x, y).astype(float).where(x.notna() & y.notna())


def reference(df: pd.DataFrame) -> dict[str, pd.Series]:
    """The 158 Alpha158 features of one symbol's bars ``df`` (columns open … vwap)."""
    o, h, low, c, v = df["open"], df["high"], df["low"], df["close"], df["volume"]
    vwap = df["vwap"].fillna((h + low + c) / 3.0)
    rng = h - low + EPS
    out = {
        "KMID": (c - o) / o, "KLEN": (h - low) / o, "KMID2": (c - o) / rng,
        "KUP": (h - np.maximum(o, c)) / o, "KUP2": (h - np.maximum(o, c)) / rng,
        "KLOW": (np.minimum(o, c) - low) / o, "KLOW2": (np.minimum(o, c) - low) / rng,
        "KSFT": (2 * c - h - low) / o, "KSFT2": (2 * c - h - low) / rng,
        "OPEN0": o / c, "HIGH0": h / c, "LOW0": low / c, "VWAP0": vwap / c,
    }
    up = _compare(c, c.shift(1), lambda a, b: a > b)
    down = _compare(c, c.shift(1), lambda a, b: a < b)
    log_volume = _clean(np.log(v + 1))
    price_ratio = _clean(c / c.shift(1))
    volume_ratio = _clean(np.log(v / v.shift(1) + 1))
    weighted = _clean((c / c.shift(1) - 1).abs() * v)
    for d in WINDOWS:
        def sums(x: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
            change = x - x.shift(1)
            return (change.clip(lower=0).rolling(d).sum(), (-change).clip(lower=0).rolling(d).sum(),
                    change.abs().rolling(d).sum() + EPS)

        gains, losses, moved = sums(c)
        vgains, vlosses, vmoved = sums(v)
        lowest, highest = low.rolling(d).min(), h.rolling(d).max()
        imax = _apply(h, d, lambda a: float(a.argmax() + 1))
        imin = _apply(low, d, lambda a: float(a.argmin() + 1))
        out |= {
            f"ROC{d}": c.shift(d) / c,
            f"MA{d}": c.rolling(d).mean() / c,
            f"STD{d}": _std(c, d) / c,
            f"BETA{d}": _linear_fit(c, d, "slope") / c,
            f"RSQR{d}": _linear_fit(c, d, "rsquare"),
            f"RESI{d}": _linear_fit(c, d, "resi") / c,
            f"MAX{d}": highest / c,
            f"MIN{d}": lowest / c,
            f"QTLU{d}": c.rolling(d).quantile(0.8) / c,
            f"QTLD{d}": c.rolling(d).quantile(0.2) / c,
            f"RANK{d}": _apply(c, d, lambda a: stats.percentileofscore(a, a[-1]) / 100.0),
            f"RSV{d}": (c - lowest) / (highest - lowest + EPS),
            f"IMAX{d}": imax / d,
            f"IMIN{d}": imin / d,
            f"IMXD{d}": (imax - imin) / d,
            f"CORR{d}": _corr(c, log_volume, d),
            f"CORD{d}": _corr(price_ratio, volume_ratio, d),
            f"CNTP{d}": up.rolling(d).mean(),
            f"CNTN{d}": down.rolling(d).mean(),
            f"CNTD{d}": up.rolling(d).mean() - down.rolling(d).mean(),
            f"SUMP{d}": gains / moved,
            f"SUMN{d}": losses / moved,
            f"SUMD{d}": (gains - losses) / moved,
            f"VMA{d}": v.rolling(d).mean() / (v + EPS),
            f"VSTD{d}": _std(v, d) / (v + EPS),
            f"WVMA{d}": _std(weighted, d) / (weighted.rolling(d).mean() + EPS),
            f"VSUMP{d}": vgains / vmoved,
            f"VSUMN{d}": vlosses / vmoved,
            f"VSUMD{d}": (vgains - vlosses) / vmoved,
        }
    return {name: _clean(series) for name, series in out.items()}


# ---------------------------------------------------------------------------------- data


def _inputs(df: pd.DataFrame) -> SeriesInputs:
    return SeriesInputs(df.index.to_numpy(dtype="datetime64[D]"), df["open"].to_numpy(),
                        df["high"].to_numpy(), df["low"].to_numpy(), df["close"].to_numpy(),
                        df["volume"].to_numpy(dtype=float), df["vwap"].to_numpy())


def _real_frames(path: Path) -> list[pd.DataFrame]:
    table = pq.read_table(path, columns=["symbol", "date", "open", "high", "low", "close", "volume"],
                          filters=[("symbol", "in", list(SYMBOLS))])
    bars = table.to_pandas()
    bars["date"] = pd.to_datetime(bars["date"])
    bars = bars[(bars["date"] >= START) & (bars["date"] <= END)]
    frames = []
    for symbol in SYMBOLS:
        frame = bars[bars["symbol"] == symbol].set_index("date").sort_index()
        frame = frame[["open", "high", "low", "close"]].assign(volume=frame["volume"].astype(float),
                                                               vwap=np.nan)
        assert len(frame) > 700, f"{symbol}: expected ~750 bars in {START}..{END}, got {len(frame)}"
        frames.append(frame)
    return frames


def clean_frame(seed: int, n: int = 600) -> pd.DataFrame:
    """A random walk of bars rounded to cents (so with ties), positive volume, vwap on half the days."""
    rng = np.random.default_rng(seed)
    close = np.round(30.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, n))), 2)
    open_ = np.round(close * np.exp(rng.normal(0.0, 0.006, n)), 2)
    high = np.maximum(open_, close) + np.round(np.abs(rng.normal(0.0, 0.1, n)), 2)
    low = np.minimum(open_, close) - np.round(np.abs(rng.normal(0.0, 0.1, n)), 2)
    volume = np.round(rng.lognormal(12.0, 0.6, n), -2)
    vwap = np.where(rng.random(n) < 0.5, (high + low + 2 * close) / 4.0, np.nan)
    frame = pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume,
                          "vwap": vwap}, index=pd.bdate_range("2001-01-01", periods=n))
    return frame


def synthetic_frame(seed: int, n: int = 900) -> pd.DataFrame:
    """:func:`clean_frame` with gaps, a flat zero-volume halt, zero volumes and a missing close."""
    frame = clean_frame(seed, n)
    frame.iloc[[100, 250, 251, 400]] = np.nan  # gaps: whole missing rows
    frame.iloc[300:312, :4] = frame["close"].iloc[299]  # a halt: flat bars ...
    frame.iloc[300:312, 4] = 0.0  # ... with no volume
    frame.iloc[[150, 151, 500], 4] = 0.0  # zero volume on a moving day
    frame.iloc[450, 3] = np.nan  # one missing close
    return frame


@pytest.fixture(scope="module")
def datasets(shared_daily: Path) -> list[tuple[str, pd.DataFrame]]:
    real = [(f"real-{symbol}", frame) for symbol, frame in zip(SYMBOLS, _real_frames(shared_daily))]
    return real + [("synthetic-1", synthetic_frame(1)), ("synthetic-2", synthetic_frame(2))]


@pytest.fixture(scope="module")
def computed(datasets: list[tuple[str, pd.DataFrame]]) -> list[tuple[str, np.ndarray, dict[str, pd.Series]]]:
    registry = FeatureRegistry()
    register_alpha158(registry)
    return [(label, registry.compute(_inputs(df)).values, reference(df)) for label, df in datasets]


# ---------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("name", ALPHA158_NAMES)
def test_feature_matches_the_independent_pandas_rendering_of_qlibs_expression(
        name: str, computed: list[tuple[str, np.ndarray, dict[str, pd.Series]]]) -> None:
    column = ALPHA158_NAMES.index(name)
    for label, values, expected in computed:
        np.testing.assert_allclose(values[:, column], expected[name].to_numpy(), rtol=1e-9, atol=1e-12,
                                   equal_nan=True, err_msg=f"{name} on {label}")
        # the comparison is not vacuous: most bars carry a value
        assert np.isfinite(values[:, column]).mean() > 0.3, f"{name} on {label}"


def test_alpha158_registers_qlibs_158_names_in_qlibs_order() -> None:
    rolling_ops = ("ROC MA STD BETA RSQR RESI MAX MIN QTLU QTLD RANK RSV IMAX IMIN IMXD CORR CORD CNTP CNTN "
                   "CNTD SUMP SUMN SUMD VMA VSTD WVMA VSUMP VSUMN VSUMD").split()
    expected = ["KMID", "KLEN", "KMID2", "KUP", "KUP2", "KLOW", "KLOW2", "KSFT", "KSFT2",
                "OPEN0", "HIGH0", "LOW0", "VWAP0"]
    expected += [f"{op}{d}" for op in rolling_ops for d in (5, 10, 20, 30, 60)]
    assert len(expected) == 158
    assert ALPHA158_NAMES == tuple(expected)
    assert set(REGISTRY.group(GROUP)) >= set(expected)


def test_every_alpha158_docstring_states_its_formula_with_the_concrete_window() -> None:
    for name in ALPHA158_NAMES:
        spec = REGISTRY.series(name)
        assert spec.doc.startswith(f"{name} = "), name
        assert f"Window: {spec.window} bar" in spec.doc, name
        if spec.window > 1:  # a rolling feature: its name ends in its window d
            digits = name.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
            formula = spec.doc.split(": ", 1)[0]
            assert re.search(rf"\b{digits}\b", formula), f"{name}: formula lacks its window {digits}"
            assert "{d}" not in spec.doc, name


def test_windows_are_the_bars_each_expression_reads() -> None:
    # a clean series: the first value is exactly at bar window - 1
    values = REGISTRY.compute(_inputs(clean_frame(3, 70)), ALPHA158_NAMES).values
    for column, name in enumerate(ALPHA158_NAMES):
        window = REGISTRY.series(name).window
        assert np.isnan(values[:window - 1, column]).all(), name
        assert np.isfinite(values[window - 1:, column]).all(), name
    lagged = {"ROC", "CORD", "CNTP", "CNTN", "CNTD", "SUMP", "SUMN", "SUMD", "WVMA",
              "VSUMP", "VSUMN", "VSUMD"}
    for name in ALPHA158_NAMES[:13]:  # candles and price ratios: today's bar only
        assert REGISTRY.series(name).window == 1, name
    for name in ALPHA158_NAMES[13:]:
        op, d = name.rstrip("0123456789"), int(name.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        assert REGISTRY.series(name).window == (d + 1 if op in lagged else d), name


def test_a_missing_bar_blanks_each_window_that_contains_it_then_values_resume() -> None:
    frame = clean_frame(4, 200)
    gap = 120
    frame.iloc[gap] = np.nan
    values = REGISTRY.compute(_inputs(frame), ALPHA158_NAMES).values
    for column, name in enumerate(ALPHA158_NAMES):
        window = REGISTRY.series(name).window
        assert np.isfinite(values[gap - 1, column]), name
        if name.startswith("ROC"):  # Ref($close, d)/$close reads two bars, not a window
            finite = np.isfinite(values[gap:gap + window, column])
            np.testing.assert_array_equal(finite, [False] + [True] * (window - 2) + [False], err_msg=name)
        else:
            assert np.isnan(values[gap:gap + window, column]).all(), name
        assert np.isfinite(values[gap + window, column]), name


def test_vwap0_uses_the_typical_price_only_where_vwap_is_missing() -> None:
    frame = clean_frame(5, 50)
    frame["vwap"] = np.where(np.arange(50) % 2 == 0, 31.5, np.nan)
    vwap0 = REGISTRY.compute(_inputs(frame), ["VWAP0"]).values[:, 0]
    typical = (frame["high"] + frame["low"] + frame["close"]).to_numpy() / 3.0
    np.testing.assert_array_equal(vwap0[::2], 31.5 / frame["close"].to_numpy()[::2])
    np.testing.assert_array_equal(vwap0[1::2], typical[1::2] / frame["close"].to_numpy()[1::2])
