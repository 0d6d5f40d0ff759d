"""Benchmark: every registered feature over a synthetic universe, and the TA-Lib-shared indicators.

Run:
    .venv/bin/python benchmarks/features.py [--quick] [--symbols 500] [--bars 5040] [--workers 2]

Data: seeded geometric Brownian motion daily bars, ``--symbols`` × ``--bars`` (default 500 × 5,040,
20 years of sessions): close with 2% daily volatility, open a gap from the previous close, high and
low beyond the open and close, lognormal volume. Three parts (issue #6):

1. ``feature_count``: the features :func:`amcp.features.default_registry` holds (series and
   cross-sectional) against Qlib's Alpha158 (158).
2. ``universe_features_s`` and ``feature_cells_per_s``: the feature job's path
   (:mod:`pipelines.features`) on a local Ray with ``--workers`` CPUs: the bars and market proxy
   put in the object store once, every series feature computed per symbol in Ray tasks of 8
   symbols (:func:`pipelines.features.compute_symbols`), then every cross-sectional feature per
   date and the forward-return labels on the driver. The tasks send back only the
   cross-sectional features' base columns and a checksum of the rest: gathering every value
   (rows × features × 8 bytes, 4.3 GB at the default size) is the job's cost of writing the
   store, not of computing features, and does not fit beside other work on a small machine. Ray
   start-up is excluded (reported as ``ray_start_s``). Peer: the issue's target, the universe in
   60 s; cells per second = rows × features / seconds.
3. ``shared_indicator_cells_per_s``: the technical indicators that TA-Lib also has (ADX, ±DI,
   NATR, MACD, RSI, STOCH, STOCHF, WILLR, CCI, MFI, ULTOSC, AROONOSC, TRIX, OBV — those the registry
   holds), one process, over ``--peer-symbols`` symbols: ours through ``registry.compute`` against
   TA-Lib 0.8 (C) producing the same quantities (its outputs divided by the close or
   differenced where ours are scale-free), and against a plain pandas implementation (rolling and
   ewm; ``rolling.apply`` where pandas has no built-in). ``agreement`` is the fraction of cells
   past bar 300 where ours and TA-Lib agree within 1e-6 (relative).

Prints JSON lines ``{"bench": "features", "metric", "ours", "peer", "peer_value", "ratio", "unit"}``
(``ratio`` > 1 means ours is better: ours/peer for rates and counts, peer/ours for times), then a
one-line summary. Progress goes to stderr. About a minute on two cores, plus Ray's start
(``--quick``: 100 symbols × 2,520 bars, about 25 s).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit, host_load, line, load_average_1m, progress  # noqa: E402

from amcp._typing import FloatArray  # noqa: E402
from amcp.data.bars import BarPanel  # noqa: E402
from amcp.features import default_registry  # noqa: E402
from amcp.features.labels import forward_returns  # noqa: E402
from amcp.features.registry import FeatureRegistry, SeriesInputs  # noqa: E402
from pipelines.features import compute_symbols, panel_bars, plan  # noqa: E402

BENCH = "features"
ALPHA158 = 158
TARGET_UNIVERSE_S = 60.0
SYMBOLS_PER_TASK = 8
AGREEMENT_FROM_BAR = 300
Bars = dict[str, FloatArray]


# ---------------------------------------------------------------------------- data


def synthetic_panel(symbols: int, bars: int, seed: int = 6) -> BarPanel:
    """Seeded GBM OHLCV of ``symbols`` symbols over ``bars`` business days from 2000-01-03."""
    rng = np.random.default_rng(seed)
    shape = (bars, symbols)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0002, 0.02, shape), axis=0))
    previous = np.vstack([close[:1], close[:-1]])
    open_ = previous * np.exp(rng.normal(0.0, 0.005, shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.008, shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.008, shape)))
    volume = np.round(rng.lognormal(13.0, 0.6, shape))
    days = pd.bdate_range("2000-01-03", periods=bars).to_numpy().astype("datetime64[ns]").astype(np.int64)
    ts_ns = days + 21 * 3600 * 10**9  # 16:00 New York in winter: the session date stays the same in UTC
    return BarPanel(tuple(f"S{i:04d}" for i in range(symbols)), ts_ns, open_, high, low, close, volume)


def symbol_series(bars: Bars, column: int) -> SeriesInputs:
    n = len(bars["dates"])
    return SeriesInputs(bars["dates"], bars["open"][:, column], bars["high"][:, column], bars["low"][:, column],
                        bars["close"][:, column], bars["volume"][:, column], np.full(n, np.nan), bars["market"])


# ---------------------------------------------------------------------------- part 2: the universe


def _task(bars: Bars, columns: list[int], names: tuple[str, ...],
          keep: tuple[int, ...]) -> tuple[list[Any], float]:
    """compute_symbols, sending back the kept columns and a checksum of every value."""
    warnings.simplefilter("ignore", RuntimeWarning)
    results = compute_symbols(bars, columns, names)
    checksum = float(sum(np.nansum(r.values) for r in results))
    return [(r.column, r.rows, r.values[:, list(keep)]) for r in results], checksum


def bench_universe(panel: BarPanel, registry: FeatureRegistry, workers: int) -> dict[str, Any]:
    import ray

    series, cross = plan(registry, ())
    bases = tuple(dict.fromkeys(registry.cross_sectional(name).base for name in cross))
    keep = tuple(series.index(base) for base in bases)
    started = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, configure_logging=False, log_to_driver=False)
    ray_start_s = time.perf_counter() - started
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_task)
        ray.get(task.remote(panel_bars(panel.select(panel.symbols[:1])), [0], series, keep))  # workers warm
        started = time.perf_counter()
        bars_ref = ray.put(panel_bars(panel))
        batches = [list(range(i, min(i + SYMBOLS_PER_TASK, len(panel.symbols))))
                   for i in range(0, len(panel.symbols), SYMBOLS_PER_TASK)]
        refs = [task.remote(bars_ref, batch, series, keep) for batch in batches]
        done = 0
        kept: dict[str, FloatArray] = {base: np.full(panel.close.shape, np.nan) for base in bases}
        checksum = 0.0
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            results, part = ray.get(ready[0])
            checksum += part
            for column, rows, values in results:
                for j, base in enumerate(bases):
                    kept[base][rows, column] = values[:, j]
            done += 1
            if done % max(1, len(refs) // 10) == 0:
                progress(f"universe: {done}/{len(refs)} tasks, {time.perf_counter() - started:.1f} s")
        for name in cross:
            registry.compute_cross_sectional(name, kept[registry.cross_sectional(name).base])
        for horizon in (1, 5, 20):
            forward_returns(panel.close, horizon)
        seconds = time.perf_counter() - started
    finally:
        ray.shutdown()
    return {"seconds": seconds, "ray_start_s": ray_start_s, "series": len(series), "cross": len(cross),
            "checksum": checksum}


# ---------------------------------------------------------------------------- part 3: TA-Lib and pandas

# Each entry: the registry names it produces, computed from (open, high, low, close, volume).
Peer = tuple[tuple[str, ...], Callable[..., tuple[FloatArray, ...]]]


def _talib_peers() -> list[Peer]:
    import talib

    def obv_20(o, h, l, c, v):  # noqa: E741 - TA-Lib's names
        obv = talib.OBV(c, v)
        out = np.full(len(c), np.nan)
        window = np.cumsum(v)
        out[20:] = (obv[20:] - obv[:-20]) / (window[20:] - window[:-20])
        return (out,)

    def macd(o, h, l, c, v):  # noqa: E741
        line_, signal, hist = talib.MACD(c, 12, 26, 9)
        return line_ / c, signal / c, hist / c

    return [
        (("natr_14",), lambda o, h, l, c, v: (talib.NATR(h, l, c, 14),)),
        (("macd_12_26", "macd_signal_12_26_9", "macd_hist_12_26_9"), macd),
        (("plus_di_14",), lambda o, h, l, c, v: (talib.PLUS_DI(h, l, c, 14),)),
        (("minus_di_14",), lambda o, h, l, c, v: (talib.MINUS_DI(h, l, c, 14),)),
        (("adx_14",), lambda o, h, l, c, v: (talib.ADX(h, l, c, 14),)),
        (("aroon_osc_14",), lambda o, h, l, c, v: (talib.AROONOSC(h, l, 14),)),
        (("trix_15",), lambda o, h, l, c, v: (talib.TRIX(c, 15),)),
        (("rsi_14",), lambda o, h, l, c, v: (talib.RSI(c, 14),)),
        (("stoch_fastk_14",), lambda o, h, l, c, v: (talib.STOCHF(h, l, c, 14, 1, 0)[0],)),
        (("stoch_k_14_3", "stoch_d_14_3_3"), lambda o, h, l, c, v: talib.STOCH(h, l, c, 14, 3, 0, 3, 0)),
        (("willr_14",), lambda o, h, l, c, v: (talib.WILLR(h, l, c, 14),)),
        (("cci_20",), lambda o, h, l, c, v: (talib.CCI(h, l, c, 20),)),
        (("mfi_14",), lambda o, h, l, c, v: (talib.MFI(h, l, c, v, 14),)),
        (("ultosc_7_14_28",), lambda o, h, l, c, v: (talib.ULTOSC(h, l, c, 7, 14, 28),)),
        (("obv_20",), obv_20),
    ]


def _pandas_peers() -> dict[tuple[str, ...], Callable[..., tuple[Any, ...]]]:
    """The same indicators in plain pandas (Wilder smoothing as ``ewm(alpha=1/n)``)."""

    def wilder(x: pd.Series, n: int) -> pd.Series:
        return x.ewm(alpha=1.0 / n, adjust=False).mean()

    def true_range(h, l, c):  # noqa: E741
        previous = c.shift(1)
        return pd.concat([h, previous], axis=1).max(axis=1) - pd.concat([l, previous], axis=1).min(axis=1)

    def directional(h, l, c):  # noqa: E741
        up, down = h.diff(), -l.diff()
        plus = up.where((up > down) & (up > 0), 0.0)
        minus = down.where((down > up) & (down > 0), 0.0)
        atr = wilder(true_range(h, l, c), 14)
        plus_di, minus_di = 100 * wilder(plus, 14) / atr, 100 * wilder(minus, 14) / atr
        adx = wilder(100 * (plus_di - minus_di).abs() / (plus_di + minus_di), 14)
        return plus_di, minus_di, adx

    def macd(o, h, l, c, v):  # noqa: E741
        line_ = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
        signal = line_.ewm(span=9, adjust=False).mean()
        return line_ / c, signal / c, (line_ - signal) / c

    def rsi(o, h, l, c, v):  # noqa: E741
        change = c.diff()
        gain, loss = wilder(change.clip(lower=0), 14), wilder((-change).clip(lower=0), 14)
        return (100 * gain / (gain + loss),)

    def fast_k(h, l, c):  # noqa: E741
        lowest, highest = l.rolling(14).min(), h.rolling(14).max()
        return 100 * (c - lowest) / (highest - lowest)

    def stoch(o, h, l, c, v):  # noqa: E741
        k = fast_k(h, l, c).rolling(3).mean()
        return k, k.rolling(3).mean()

    def willr(o, h, l, c, v):  # noqa: E741
        highest, lowest = h.rolling(14).max(), l.rolling(14).min()
        return (-100 * (highest - c) / (highest - lowest),)

    def cci(o, h, l, c, v):  # noqa: E741
        tp = (h + l + c) / 3
        deviation = tp.rolling(20).apply(lambda x: np.abs(x - x.mean()).mean(), raw=True)
        return ((tp - tp.rolling(20).mean()) / (0.015 * deviation),)

    def mfi(o, h, l, c, v):  # noqa: E741
        tp = (h + l + c) / 3
        flow, change = tp * v, tp.diff()
        positive = flow.where(change > 0, 0.0).rolling(14).sum()
        negative = flow.where(change < 0, 0.0).rolling(14).sum()
        return (100 * positive / (positive + negative),)

    def ultosc(o, h, l, c, v):  # noqa: E741
        buying = c - pd.concat([l, c.shift(1)], axis=1).min(axis=1)
        tr = true_range(h, l, c)
        a = [buying.rolling(n).sum() / tr.rolling(n).sum() for n in (7, 14, 28)]
        return (100 * (4 * a[0] + 2 * a[1] + a[2]) / 7,)

    def aroon(o, h, l, c, v):  # noqa: E741
        since_high = h.rolling(15).apply(lambda x: np.argmax(x[::-1]), raw=True)  # the latest on ties
        since_low = l.rolling(15).apply(lambda x: np.argmin(x[::-1]), raw=True)
        return (100 * (since_low - since_high) / 14,)

    def trix(o, h, l, c, v):  # noqa: E741
        triple = c
        for _ in range(3):
            triple = triple.ewm(span=15, adjust=False).mean()
        return (100 * triple.pct_change(),)

    def obv(o, h, l, c, v):  # noqa: E741
        return ((np.sign(c.diff()) * v).rolling(20).sum() / v.rolling(20).sum(),)

    return {
        ("natr_14",): lambda o, h, l, c, v: (100 * wilder(true_range(h, l, c), 14) / c,),
        ("macd_12_26", "macd_signal_12_26_9", "macd_hist_12_26_9"): macd,
        ("plus_di_14",): lambda o, h, l, c, v: directional(h, l, c)[:1],
        ("minus_di_14",): lambda o, h, l, c, v: directional(h, l, c)[1:2],
        ("adx_14",): lambda o, h, l, c, v: directional(h, l, c)[2:],
        ("aroon_osc_14",): aroon,
        ("trix_15",): trix,
        ("rsi_14",): rsi,
        ("stoch_fastk_14",): lambda o, h, l, c, v: (fast_k(h, l, c),),
        ("stoch_k_14_3", "stoch_d_14_3_3"): stoch,
        ("willr_14",): willr,
        ("cci_20",): cci,
        ("mfi_14",): mfi,
        ("ultosc_7_14_28",): ultosc,
        ("obv_20",): obv,
    }


def bench_shared(panel: BarPanel, registry: FeatureRegistry, symbols: int) -> dict[str, Any]:
    known = set(registry.series_names)
    talib_peers = [(names, fn) for names, fn in _talib_peers() if set(names) <= known]
    pandas_peers = _pandas_peers()
    shared = tuple(name for names, _ in talib_peers for name in names)
    if not shared:
        raise SystemExit("no registered feature has a TA-Lib counterpart: is amcp.features.technical importable?")
    bars = panel_bars(panel)
    columns = range(min(symbols, len(panel.symbols)))
    inputs = [symbol_series(bars, j) for j in columns]
    cells = len(inputs) * len(panel) * len(shared)

    def run_pandas(x: SeriesInputs) -> None:
        o, h, l, c, v = (pd.Series(a) for a in (x.open, x.high, x.low, x.close, x.volume))  # noqa: E741
        for names, _ in talib_peers:
            pandas_peers[names](o, h, l, c, v)

    registry.compute(inputs[0], shared)  # untimed warm-up of all three (JIT compilation, caches)
    for _, fn in talib_peers:
        fn(inputs[0].open, inputs[0].high, inputs[0].low, inputs[0].close, inputs[0].volume)
    run_pandas(inputs[0])

    started = time.perf_counter()
    ours = [registry.compute(x, shared).values for x in inputs]
    ours_s = time.perf_counter() - started

    started = time.perf_counter()
    theirs = [np.column_stack([out for _, fn in talib_peers
                               for out in fn(x.open, x.high, x.low, x.close, x.volume)]) for x in inputs]
    talib_s = time.perf_counter() - started

    started = time.perf_counter()
    for x in inputs:
        run_pandas(x)
    pandas_s = time.perf_counter() - started

    agreement: dict[str, float] = {}
    for j, name in enumerate(shared):
        a = np.concatenate([m[AGREEMENT_FROM_BAR:, j] for m in ours])
        b = np.concatenate([m[AGREEMENT_FROM_BAR:, j] for m in theirs])
        both = np.isfinite(a) & np.isfinite(b)
        close = np.abs(a[both] - b[both]) <= 1e-6 * np.maximum(1.0, np.abs(b[both]))
        agreement[name] = float(close.mean()) if both.any() else float("nan")
    return {"indicators": shared, "symbols": len(inputs), "cells": cells, "ours_s": ours_s, "talib_s": talib_s,
            "pandas_s": pandas_s, "agreement": agreement}


# ---------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 symbols × 2,520 bars (about 30 s)")
    parser.add_argument("--symbols", type=int, default=None,
                        help="symbols of the universe (default 500; --quick 100)")
    parser.add_argument("--bars", type=int, default=None,
                        help="daily bars per symbol (default 5,040; --quick 2,520)")
    parser.add_argument("--workers", type=int, default=2, help="Ray CPUs for the universe (default 2)")
    parser.add_argument("--peer-symbols", type=int, default=None,
                        help="symbols of the TA-Lib / pandas comparison (default 50; --quick 10)")
    args = parser.parse_args()
    symbols = args.symbols or (100 if args.quick else 500)
    bars = args.bars or (2520 if args.quick else 5040)
    peer_symbols = args.peer_symbols or (10 if args.quick else 50)
    if min(symbols, bars, args.workers, peer_symbols) < 1 or bars < 300:
        parser.error("--symbols, --workers and --peer-symbols must be >= 1 and --bars >= 300")
    warnings.simplefilter("ignore", RuntimeWarning)

    started = time.perf_counter()
    load_before = load_average_1m()
    registry = default_registry()
    progress(f"synthetic GBM bars: {symbols} symbols × {bars} bars")
    panel = synthetic_panel(symbols, bars)
    rows = symbols * bars
    features = len(registry)
    emit(line(BENCH, "feature_count", features, "Qlib Alpha158", ALPHA158, "features", True, digits=0,
              series=len(registry.series_names), cross_sectional=len(registry.cross_sectional_names)))

    progress(f"universe: {features} features on a local Ray with {args.workers} CPUs")
    universe = bench_universe(panel, registry, args.workers)
    emit(line(BENCH, "universe_features_s", universe["seconds"], "issue #6 target", TARGET_UNIVERSE_S, "s", False,
              rows=rows, symbols=symbols, bars=bars, workers=args.workers, executor="ray",
              ray_start_s=round(universe["ray_start_s"], 2)))
    cells_per_s = rows * features / universe["seconds"]
    emit(line(BENCH, "feature_cells_per_s", cells_per_s, "issue #6 target (universe in 60 s)",
              rows * features / TARGET_UNIVERSE_S, "cells/s", True, digits=0, workers=args.workers))

    progress(f"shared indicators: ours vs TA-Lib vs pandas on {peer_symbols} symbols, one process")
    shared = bench_shared(panel, registry, peer_symbols)
    ours_rate = shared["cells"] / shared["ours_s"]
    worst = min(shared["agreement"], key=lambda k: shared["agreement"][k])
    emit(line(BENCH, "shared_indicator_cells_per_s", ours_rate, "TA-Lib 0.8 (C), same indicators",
              shared["cells"] / shared["talib_s"], "cells/s", True, digits=0, indicators=len(shared["indicators"]),
              symbols=shared["symbols"], agreement=round(float(np.nanmean(list(shared["agreement"].values()))), 4),
              worst_agreement={worst: round(shared["agreement"][worst], 4)}))
    emit(line(BENCH, "shared_indicator_cells_per_s", ours_rate, "plain pandas, same indicators",
              shared["cells"] / shared["pandas_s"], "cells/s", True, digits=0, indicators=len(shared["indicators"]),
              symbols=shared["symbols"]))

    emit({
        "bench": BENCH, "summary": True, "features": features, "symbols": symbols, "bars": bars, "rows": rows,
        "universe_s": round(universe["seconds"], 2), "executor": f"ray, {args.workers} CPUs",
        "target_met": {"universe_under_60_s": universe["seconds"] < TARGET_UNIVERSE_S,
                       "more_features_than_alpha158": features > ALPHA158},
        "shared_indicators": list(shared["indicators"]),
        "shared_speedup_vs_talib": round(shared["talib_s"] / shared["ours_s"], 3),
        "shared_speedup_vs_pandas": round(shared["pandas_s"] / shared["ours_s"], 3),
        "agreement_with_talib": {k: round(v, 4) for k, v in shared["agreement"].items()},
        **host_load(load_before), "wall_s": round(time.perf_counter() - started, 1),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
