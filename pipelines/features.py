"""The feature job: every registered feature and the labels of a universe, into the feature store.

Run:
    python -m pipelines.features --config configs/features.yaml

Reads the configured daily bars (a Parquet file or the market-data store, checked and repaired
by :func:`amcp.data.bars.load_daily_bars`), builds the market proxy (:func:`amcp.features.market.equal_weight_index`,
point in time), then computes the series features of :func:`amcp.features.default_registry` per
symbol as Ray tasks (``ray.symbols_per_task`` symbols each; the bars are put in the object store
once), the cross-sectional features per date on the driver, and the forward-return labels
``label_fwd_ret_<h>`` for each configured horizon. Writes one row per (date, symbol) bar to the
feature store (:mod:`amcp.features.store`; default ``<run.output_dir>/<run-id>/features``).

A progress bar (symbols done) runs on stderr; the last stdout line is a JSON summary: symbols,
rows, features, labels, seconds, output. Exit code 0 on success, 1 when a feature task failed
(nothing is written), 2 for a bad config or data file. On the bundled sample (35 symbols, 8
years) it takes a few seconds after Ray starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pandas as pd
from tqdm import tqdm

from actors.cluster import connect_ray
from amcp._typing import FloatArray, IntArray
from amcp.config import (
    FeaturesJobConfig,
    load_config,
)
from amcp.data.bars import BarPanel, load_daily_bars
from amcp.errors import AmcpError
from amcp.features.labels import forward_returns
from amcp.features.market import equal_weight_index
from amcp.features.registry import FeatureRegistry, SeriesInputs, names_in
from pipelines._common import guarded, new_run_id, run_bounded

LABEL_PREFIX = "label_fwd_ret_"


class FeatureJobError(AmcpError):
    """A feature task failed: the job stops without writing (exit code 1)."""

    exit_code = 1


# --------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class SymbolFeatures:
    """One symbol's series features: ``values[r]`` belongs to panel date ``rows[r]``."""

    column: int
    rows: IntArray
    values: FloatArray


def symbol_inputs(bars: dict[str, Any], column: int) -> tuple[IntArray, SeriesInputs] | None:
    """The panel dates where symbol ``column`` has a bar, and its :class:`SeriesInputs`.

    The inputs span the symbol's first to last bar; dates in between without a bar are NaN rows.
    ``bars`` holds ``dates`` (T,) and ``open``…``volume`` (T × N) and ``market`` (T,). None when
    the symbol has no bar at all.
    """
    close = bars["close"][:, column]
    rows = np.flatnonzero(np.isfinite(close))
    if rows.size == 0:
        return None
    span = slice(int(rows[0]), int(rows[-1]) + 1)
    inputs = SeriesInputs(
        bars["dates"][span], bars["open"][span, column], bars["high"][span, column], bars["low"][span, column],
        close[span], bars["volume"][span, column], np.full(span.stop - span.start, np.nan), bars["market"][span])
    return rows, inputs


def compute_symbols(bars: dict[str, Any], columns: list[int], names: tuple[str, ...],
                    registry: FeatureRegistry | None = None) -> list[SymbolFeatures]:
    """The series features ``names`` of the symbols ``columns`` (the body of one feature task)."""
    if registry is None:
        from amcp.features import default_registry

        registry = default_registry()
    out = []
    for column in columns:
        found = symbol_inputs(bars, column)
        if found is None:
            continue
        rows, inputs = found
        matrix = registry.compute(inputs, names)
        out.append(SymbolFeatures(column, rows, matrix.values[rows - rows[0]]))
    return out


def panel_bars(panel: BarPanel) -> dict[str, Any]:
    """The arrays a feature task reads: the panel's dates and OHLCV, and the market proxy."""
    return {"dates": panel.dates, "open": panel.open, "high": panel.high, "low": panel.low, "close": panel.close,
            "volume": panel.volume, "market": equal_weight_index(panel.close)}


def assemble(panel: BarPanel, results: list[SymbolFeatures], series: tuple[str, ...], registry: FeatureRegistry,
             cross: tuple[str, ...], horizons: tuple[int, ...]) -> pd.DataFrame:
    """One row per (date, symbol) bar: series features, cross-sectional features, labels."""
    results = sorted(results, key=lambda r: r.column)
    rows = np.concatenate([r.rows for r in results]) if results else np.empty(0, np.int64)
    columns = np.concatenate([np.full(r.rows.size, r.column) for r in results]) if results else rows
    values = np.vstack([r.values for r in results]) if results else np.empty((0, len(series)))
    data: dict[str, Any] = {
        "date": panel.dates[rows].astype("datetime64[ns]"),
        "symbol": np.asarray(panel.symbols, dtype=object)[columns],
    }
    for j, name in enumerate(series):
        data[name] = values[:, j]
    shape = (len(panel), len(panel.symbols))
    for name in cross:
        base = np.full(shape, np.nan)
        base[rows, columns] = data[registry.cross_sectional(name).base]  # plan() computes every base
        data[name] = registry.compute_cross_sectional(name, base)[rows, columns]
    for horizon in horizons:
        data[f"{LABEL_PREFIX}{horizon}"] = forward_returns(panel.close, horizon)[rows, columns]
    frame = pd.DataFrame(data)
    return frame.sort_values(["date", "symbol"], kind="stable", ignore_index=True)


def plan(registry: FeatureRegistry, wanted: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(series features to compute, cross-sectional features) for the names ``wanted`` (empty: all).

    The series list includes the bases of the chosen cross-sectional features.
    """
    chosen = names_in(registry, wanted) if wanted else registry.names
    cross = tuple(name for name in chosen if name in registry.cross_sectional_names)
    series = [name for name in chosen if name in registry.series_names]
    series += [registry.cross_sectional(name).base for name in cross
               if registry.cross_sectional(name).base not in series]
    return tuple(dict.fromkeys(series)), cross


# --------------------------------------------------------------------------- Ray shell


def _run_tasks(ray: Any, config: FeaturesJobConfig, panel: BarPanel, series: tuple[str, ...],
               quiet: bool) -> list[SymbolFeatures]:
    task = ray.remote(num_cpus=config.ray.task_num_cpus, max_retries=0)(compute_symbols)
    bars_ref = ray.put(panel_bars(panel))
    size = config.ray.symbols_per_task
    groups = [list(range(i, min(i + size, len(panel.symbols)))) for i in range(0, len(panel.symbols), size)]

    def failed(batch: list[int], reason: str) -> NoReturn:  # run_bounded cancels the tasks still in flight
        symbols = [panel.symbols[c] for c in batch]
        raise FeatureJobError(f"feature task for {symbols} failed: {reason}") from None

    with tqdm(total=len(panel.symbols), desc="features", unit="symbol", disable=quiet, file=sys.stderr) as bar:
        batches = run_bounded(ray, groups, lambda batch: task.remote(bars_ref, batch, series),
                              config.ray.max_tasks_in_flight, on_error=failed,
                              on_done=lambda batch: bar.update(len(batch)))
    return [result for batch in batches for result in batch]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compute features and labels into the feature store.")
    parser.add_argument("--config", default="configs/features.yaml",
                        help="YAML config (default: configs/features.yaml)")
    parser.add_argument("--run-id", default=None, help="run id (default: <run.name>-<UTC timestamp>)")
    parser.add_argument("--output-dir", default=None, help="folder for run folders, overriding run.output_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bar: only the JSON summary")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def job() -> int:
        import ray

        from amcp.features import default_registry
        from amcp.features.store import write_features

        started_at = time.perf_counter()
        config = load_config(args.config, FeaturesJobConfig)
        if args.output_dir:
            run = config.run.model_copy(update={"output_dir": args.output_dir})
            config = config.model_copy(update={"run": run})
        registry = default_registry()
        series, cross = plan(registry, config.features.names)
        panel, quality = load_daily_bars(config.data)
        if not args.quiet:
            print(f"data: {quality.summary_line()}", file=sys.stderr)
        started = connect_ray(config.ray.address, "amcp")
        try:
            results = _run_tasks(ray, config, panel, series, args.quiet)
        finally:
            if started:
                ray.shutdown()
        frame = assemble(panel, results, series, registry, cross, config.labels.forward_return_horizons)
        run_id = args.run_id or new_run_id(config.run.name)
        store = config.output.store
        root = store.url if store is not None else str(Path(config.run.output_dir) / run_id / "features")
        labels = {f"{LABEL_PREFIX}{h}": f"close[t+{h}] / close[t] - 1 on the panel's date axis; NaN where unknown"
                  for h in config.labels.forward_return_horizons}
        manifest = write_features(
            root, frame, registry=registry, label_docs=labels, partition_by=config.output.partition_by,
            storage_options=store.storage_options() if store is not None else None,
            metadata={"job": "features", "run_id": run_id, "labels": list(labels),
                      "data_repairs": quality.to_dict().get("counts", {})})
        summary = {
            "ok": True, "job": "features", "run_id": run_id, "symbols": manifest.symbols, "rows": manifest.rows,
            "features": len(series) + len(cross), "labels": len(labels), "start": manifest.start,
            "end": manifest.end, "seconds": round(time.perf_counter() - started_at, 3), "output": root,
        }
        print(json.dumps(summary))
        return 0

    return guarded(job)


if __name__ == "__main__":
    sys.exit(main())
