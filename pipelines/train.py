"""The training job: every configured model family on purged walk-forward folds, as Ray tasks, and a leaderboard.

Run (after the feature store has been built, e.g. by ``pipelines/features.py``):
    python -m pipelines.train --config configs/train.yaml

Steps:

1. read the feature set (:func:`amcp.features.store.read_features`) and the daily bars
   (``data``, for labels, next-day returns and the baselines);
2. label each (date, symbol) with its forward return over ``label.horizon`` bars (a label
   column of the feature set when ``label.column`` names one, else
   :func:`amcp.features.labels.forward_returns` of the closes); models are trained on the
   return itself or (``label.target: rank``) its cross-sectional percentile rank − 0.5;
3. lay purged, embargoed walk-forward folds on the date axis
   (:func:`amcp.features.splits.purged_walk_forward`);
4. fit every family on every fold's training rows, one Ray task per (family, fold) — or, for
   torch families with ``ray.use_ray_train: true``, one Ray Train ``TorchTrainer`` run — and
   predict the fold's test rows;
5. score every model and two naive baselines (``momentum``: the ``momentum_window``-day return;
   ``zero``: no signal) on the same test rows: IC, rank IC, ICIR, sign accuracy, AUC
   (:mod:`amcp.models.metrics`) and a long-short portfolio (:mod:`amcp.models.evaluate`), per
   fold and over all folds together; with ``evaluation.engine: true`` (the default) each model's
   all-fold long-short book also runs through the event-driven backtest engine
   (:func:`amcp.models.engine_eval.engine_long_short`: the live ``ml_signal`` strategy, whole-share
   sizing, risk checks, next-open fills with slippage, fees and a participation cap), giving the
   leaderboard's ``bt_*`` columns (NaN with the engine off);
6. write ``leaderboard.csv``/``.md`` (all folds), ``folds.csv`` (per fold), ``cumulative_returns.png``,
   ``predictions.parquet`` and (engine on) ``engine_equity.csv`` (``date``, ``model``, ``equity``:
   the engine's account equity at each session's close) under ``<output_dir>/<run-id>/``, save each family's model of the
   last fold under ``models/<family>/`` and, with ``registry.register: true``, register it in
   :class:`amcp.models.registry.ModelRegistry`.

Ends with a one-line JSON summary on stdout. Exit code 0 when every fit succeeded, 1 when some
failed (the rest are scored), 2 for a bad config or input.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from actors.cluster import connect_ray
from amcp._typing import FloatArray, IntArray
from amcp.config import EvaluationConfig, TrainJobConfig, load_config
from amcp.data.bars import BarPanel
from amcp.errors import AmcpError, ConfigError, DataError
from amcp.models.base import ModelError, SignalModel, build_windows, create_model, load_model
from amcp.models.engine_eval import engine_long_short
from amcp.models.evaluate import (
    ENGINE_COLUMNS,
    leaderboard,
    long_short_backtest,
    momentum_signal,
    next_period_returns,
    plot_cumulative_returns,
    write_leaderboard,
)
from amcp.models.metrics import signal_metrics
from pipelines._common import guarded, new_run_id, run_bounded

EXIT_PARTIAL = 1
TORCH_FAMILIES = frozenset({"lstm", "transformer"})


# --------------------------------------------------------------------------- the data set


@dataclass(frozen=True, eq=False)
class TrainingData:
    """Feature rows sorted by (symbol, date), their labels, and the bar panel they align to.

    Attributes:
        feature_names: the feature columns, in ``values`` column order.
        values: shape (n, F) float64.
        row_dates: shape (n,) datetime64[D].
        row_symbols: shape (n,) str.
        position_in_symbol: each row's index among its symbol's rows.
        label: the forward return (NaN where unknown).
        target: what the models are trained on (the label or its rank transform).
        date_axis: sorted unique dates of the rows.
        panel_dates: shape (T,) the bars' session dates; ``close`` is (T, N) over ``panel_symbols``.
        panel: the whole bar panel (OHLCV) on ``panel_dates`` × ``panel_symbols``, for the backtest
            engine; None when only closes are known (the engine is then skipped).
    """

    feature_names: tuple[str, ...]
    values: FloatArray
    row_dates: np.ndarray
    row_symbols: np.ndarray
    position_in_symbol: IntArray
    label: FloatArray
    target: FloatArray
    date_axis: np.ndarray
    panel_dates: np.ndarray
    panel_symbols: tuple[str, ...]
    close: FloatArray
    panel: BarPanel | None = None

    def panel_index(self, rows: IntArray) -> tuple[IntArray, IntArray]:
        """The panel (date, symbol) coordinates of ``rows`` (-1 where a row is off the panel)."""
        return panel_coordinates(self.panel_dates, self.panel_symbols, self.row_dates[rows], self.row_symbols[rows])


def panel_coordinates(panel_dates: np.ndarray, panel_symbols: tuple[str, ...], row_dates: np.ndarray,
                      row_symbols: np.ndarray) -> tuple[IntArray, IntArray]:
    """Each row's (date index, symbol index) in a bar panel; -1 where its date or symbol is not there."""
    date_index = np.searchsorted(panel_dates, row_dates)
    clipped = np.minimum(date_index, max(panel_dates.size - 1, 0))
    found = (date_index < panel_dates.size) & (panel_dates[clipped] == row_dates) if panel_dates.size else \
        np.zeros(row_dates.shape, dtype=bool)
    lookup = {s: i for i, s in enumerate(panel_symbols)}
    symbol_index = np.array([lookup.get(s, -1) for s in row_symbols], dtype=np.int64)
    return np.where(found, date_index, -1).astype(np.int64), symbol_index


def _rank_target(dates: np.ndarray, label: FloatArray) -> FloatArray:
    frame = pd.DataFrame({"date": dates, "label": label})
    return (frame.groupby("date")["label"].rank(pct=True) - 0.5).to_numpy(dtype=np.float64)


def build_training_data(frame: pd.DataFrame, *, feature_names: tuple[str, ...], label_column: str | None,
                        horizon: int, target: str, panel_dates: np.ndarray, panel_symbols: tuple[str, ...],
                        close: FloatArray, panel: BarPanel | None = None) -> TrainingData:
    """Align a feature frame (``date``, ``symbol``, features…) with the bars and label every row.

    ``panel``, when given, is kept on the result for the backtest engine; it must be the bars
    ``panel_dates``, ``panel_symbols`` and ``close`` describe.

    Raises:
        DataError: if a feature column is missing, no row has a label, or ``panel`` disagrees with
            ``panel_dates``/``panel_symbols``/``close``.
    """
    from amcp.features.labels import forward_returns

    missing = [c for c in (*feature_names, *([label_column] if label_column else [])) if c not in frame.columns]
    if missing:
        raise DataError(f"the feature set lacks columns {missing}")
    ordered = frame.sort_values(["symbol", "date"], kind="stable", ignore_index=True)
    row_dates = ordered["date"].to_numpy().astype("datetime64[D]")
    row_symbols = ordered["symbol"].to_numpy().astype(str)
    position = ordered.groupby("symbol", sort=False).cumcount().to_numpy(dtype=np.int64)
    values = ordered[list(feature_names)].to_numpy(dtype=np.float64)
    dates_axis = np.asarray(panel_dates, dtype="datetime64[D]")
    prices = np.asarray(close, dtype=np.float64)
    if panel is not None and (tuple(panel.symbols) != tuple(panel_symbols) or len(panel) != dates_axis.size
                              or not (panel.dates.astype("datetime64[D]") == dates_axis).all()
                              or panel.close.shape != prices.shape):
        raise DataError(f"the bar panel ({len(panel)} sessions × {len(panel.symbols)} symbols) is not the one "
                        f"panel_dates ({dates_axis.size}), panel_symbols ({len(panel_symbols)}) and close "
                        f"{prices.shape} describe")
    if label_column:
        label = ordered[label_column].to_numpy(dtype=np.float64)
    else:
        forward = forward_returns(prices, horizon)
        date_index, symbol_index = panel_coordinates(dates_axis, panel_symbols, row_dates, row_symbols)
        on_panel = (date_index >= 0) & (symbol_index >= 0)
        label = np.full(len(ordered), np.nan)
        label[on_panel] = forward[date_index[on_panel], symbol_index[on_panel]]
    if not np.isfinite(label).any():
        raise DataError("no feature row has a label: do the feature set and the bars cover the same dates and symbols?")
    train_target = _rank_target(row_dates, label) if target == "rank" else label
    return TrainingData(feature_names, values, row_dates, row_symbols, position, label, train_target,
                        np.unique(row_dates), dates_axis, tuple(panel_symbols), prices, panel)


# --------------------------------------------------------------------------- fitting


@dataclass(frozen=True)
class FitJob:
    """One (family, fold) fit: the rows to train on and to predict."""

    family: str
    fold: int
    train_rows: IntArray
    test_rows: IntArray


@dataclass(frozen=True, eq=False)
class FitOutcome:
    """A fit's result: the model and its test predictions, or why there are none."""

    family: str
    fold: int
    model: SignalModel | None
    predictions: FloatArray | None
    fit_s: float
    error: str | None = None


def _inputs(data: TrainingData, rows: IntArray, lookback: int) -> FloatArray:
    return build_windows(data.values, data.position_in_symbol, rows, lookback) if lookback > 1 else data.values[rows]


def fit_and_predict(data: TrainingData, spec: Any, job: FitJob) -> FitOutcome:
    """Fit ``spec``'s family on the job's training rows and predict its test rows (errors become a reason)."""
    started = time.perf_counter()
    try:
        model = create_model(spec.family, data.feature_names, spec)
        train_rows = job.train_rows[np.isfinite(data.target[job.train_rows])]
        model.fit(_inputs(data, train_rows, model.lookback), data.target[train_rows])
        predictions = model.predict(_inputs(data, job.test_rows, model.lookback))
        return FitOutcome(job.family, job.fold, model, predictions, time.perf_counter() - started)
    except AmcpError as exc:
        return FitOutcome(job.family, job.fold, None, None, time.perf_counter() - started,
                          f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}")


def _ray_train_loop(loop_config: dict[str, Any]) -> None:
    """Ray Train worker: fit its shard (preprocessing learned on every row) and report rank 0's model."""
    import ray
    import ray.train
    import ray.train.torch

    data: TrainingData = ray.get(loop_config["data"])
    spec, rows = loop_config["spec"], loop_config["train_rows"]
    context = ray.train.get_context()
    model = create_model(spec.family, data.feature_names, spec)
    model.fit(_inputs(data, rows, model.lookback), data.target[rows],  # type: ignore[call-arg]
              shard=(context.get_world_rank(), context.get_world_size()),
              wrap_network=ray.train.torch.prepare_model)
    if context.get_world_rank() == 0:
        with tempfile.TemporaryDirectory() as folder:
            model.save(folder)
            ray.train.report({"train_rows": int(rows.size)}, checkpoint=ray.train.Checkpoint.from_directory(folder))
    else:
        ray.train.report({"train_rows": int(rows.size)})


def _fit_with_ray_train(data_ref: Any, data: TrainingData, spec: Any, job: FitJob, config: TrainJobConfig,
                        storage: Path) -> FitOutcome:
    from ray.train import RunConfig as TrainRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    train_rows = job.train_rows[np.isfinite(data.target[job.train_rows])]
    use_gpu = config.ray.task_num_gpus > 0
    trainer = TorchTrainer(
        _ray_train_loop,
        train_loop_config={"data": data_ref, "spec": spec, "train_rows": train_rows},
        scaling_config=ScalingConfig(num_workers=config.ray.train_workers, use_gpu=use_gpu,
                                     resources_per_worker={"CPU": config.ray.task_num_cpus,
                                                           **({"GPU": config.ray.task_num_gpus} if use_gpu else {})}),
        run_config=TrainRunConfig(name=f"{job.family}-fold{job.fold}", storage_path=str(storage.resolve())),
    )
    try:
        result = trainer.fit()
        if result.checkpoint is None:
            raise DataError("Ray Train returned no checkpoint")
        with result.checkpoint.as_directory() as folder:
            model = load_model(folder)
        predictions = model.predict(_inputs(data, job.test_rows, model.lookback))
        return FitOutcome(job.family, job.fold, model, predictions, time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - a failed trainer fails its fit, the job carries on
        return FitOutcome(job.family, job.fold, None, None, time.perf_counter() - started,
                          f"ray train failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")


def run_fits(ray: Any, data: TrainingData, jobs: list[FitJob], config: TrainJobConfig, run_dir: Path,
             quiet: bool) -> list[FitOutcome]:
    """Run every fit: plain Ray tasks (at most ``max_tasks_in_flight`` at once), Ray Train for torch if asked."""
    specs = {spec.family: spec for spec in config.models}
    data_ref = ray.put(data)
    cpu_task = ray.remote(num_cpus=config.ray.task_num_cpus, max_retries=0)(fit_and_predict)
    torch_task = ray.remote(num_cpus=config.ray.task_num_cpus, num_gpus=config.ray.task_num_gpus,
                            max_retries=0)(fit_and_predict)
    by_trainer = [j for j in jobs if config.ray.use_ray_train and j.family in TORCH_FAMILIES]
    by_task = [j for j in jobs if j not in by_trainer]

    def submit(job: FitJob) -> Any:
        task = torch_task if job.family in TORCH_FAMILIES else cpu_task
        return task.remote(data_ref, specs[job.family], job)

    def failed(job: FitJob, reason: str) -> FitOutcome:  # a dead task fails its fit, the job carries on
        return FitOutcome(job.family, job.fold, None, None, 0.0, f"task failed: {reason}")

    with tqdm(total=len(jobs), desc="train", unit="fit", disable=quiet, file=sys.stderr) as bar:
        def done(job: FitJob) -> None:
            bar.set_postfix_str(f"{job.family} fold {job.fold}")
            bar.update(1)

        outcomes: list[FitOutcome] = run_bounded(ray, by_task, submit, config.ray.max_tasks_in_flight,
                                                 on_error=failed, on_done=done)
        for job in by_trainer:
            outcomes.append(_fit_with_ray_train(data_ref, data, specs[job.family], job, config, run_dir / "ray_train"))
            bar.set_postfix_str(f"{job.family} fold {job.fold} (ray train)")
            bar.update(1)
    return sorted(outcomes, key=lambda o: (o.family, o.fold))


# --------------------------------------------------------------------------- scoring


def _signal_matrix(data: TrainingData, rows: IntArray, scores: FloatArray, dates: np.ndarray) -> FloatArray:
    """Scores of ``rows`` as a (len(dates), N) matrix over the panel's symbols (NaN elsewhere)."""
    matrix = np.full((dates.size, len(data.panel_symbols)), np.nan)
    date_index, symbol_index = data.panel_index(rows)
    local = np.searchsorted(dates, data.panel_dates[np.maximum(date_index, 0)])
    keep = (date_index >= 0) & (symbol_index >= 0) & (local < dates.size)
    matrix[local[keep], symbol_index[keep]] = scores[keep]
    return matrix


def score(data: TrainingData, name: str, rows: IntArray, scores: FloatArray, evaluation: EvaluationConfig,
          next_returns: FloatArray) -> tuple[dict[str, float], np.ndarray, FloatArray]:
    """Signal metrics and the long-short backtest of ``scores`` on ``rows``; also the daily LS returns."""
    labelled = np.isfinite(data.label[rows])
    metrics = signal_metrics(data.row_dates[rows][labelled], scores[labelled], data.label[rows][labelled])
    dates = np.unique(data.row_dates[rows])
    panel_rows = np.searchsorted(data.panel_dates, dates)
    on_panel = (panel_rows < data.panel_dates.size) & (data.panel_dates[np.minimum(panel_rows, data.panel_dates.size - 1)] == dates)
    dates, panel_rows = dates[on_panel], panel_rows[on_panel]
    if dates.size == 0:
        raise DataError(f"{name}: no test date is a session of the bars")
    signal = _signal_matrix(data, rows, scores, dates)
    result = long_short_backtest(signal, next_returns[panel_rows], quantile=evaluation.quantile,
                                 rebalance_every=evaluation.rebalance_every, cost_bps=evaluation.cost_bps)
    metrics.update({f"ls_{key}": value for key, value in result.metrics.items()})
    return metrics, dates, result.returns


def _baseline_scores(data: TrainingData, rows: IntArray, momentum: FloatArray) -> dict[str, FloatArray]:
    date_index, symbol_index = data.panel_index(rows)
    on_panel = (date_index >= 0) & (symbol_index >= 0)
    values = np.full(rows.size, np.nan)
    values[on_panel] = momentum[date_index[on_panel], symbol_index[on_panel]]
    return {"momentum": values, "zero": np.zeros(rows.size)}


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


# --------------------------------------------------------------------------- the job


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train signal models on walk-forward folds and compare them.")
    parser.add_argument("--config", default="configs/train.yaml", help="YAML config (default: configs/train.yaml)")
    parser.add_argument("--run-id", default=None, help="run id (default: <run.name>-<UTC timestamp>)")
    parser.add_argument("--output-dir", default=None, help="folder for run folders, overriding run.output_dir")
    parser.add_argument("--quiet", action="store_true", help="no progress bar: only the JSON summary")
    return parser.parse_args(argv)


def load_inputs(config: TrainJobConfig) -> TrainingData:
    """Read the feature set and the bars and build the labelled data set (keeping the whole bar panel)."""
    from amcp.data.bars import load_daily_bars
    from amcp.features.store import read_features, read_manifest

    manifest = read_manifest(config.features.root)
    excluded = {*config.features.exclude, *([config.label.column] if config.label.column else [])}
    prefix = config.features.label_prefix
    leaking = [c for c in config.features.columns if c.startswith(prefix) or c == config.label.column]
    if leaking:
        raise ConfigError(f"features.columns: {leaking} are labels (they look ahead) and cannot be features")
    feature_names = config.features.columns or tuple(c for c in manifest.features
                                                     if c not in excluded and not c.startswith(prefix))
    if not feature_names:
        raise ConfigError(f"features: no feature column left in {config.features.root} after excluding {sorted(excluded)}")
    wanted = [*feature_names, *([config.label.column] if config.label.column else [])]
    frame = read_features(config.features.root, symbols=config.data.symbols or None, start=config.data.start,
                          end=config.data.end, columns=wanted)
    if frame.empty:
        raise DataError(f"features: no row in {config.features.root} for the symbols and dates of data")
    panel, _ = load_daily_bars(config.data)
    return build_training_data(frame, feature_names=tuple(feature_names), label_column=config.label.column,
                               horizon=config.label.horizon, target=config.label.target, panel_dates=panel.dates,
                               panel_symbols=panel.symbols, close=np.asarray(panel.close), panel=panel)


def make_jobs(data: TrainingData, config: TrainJobConfig) -> tuple[list[Any], list[FitJob]]:
    """The walk-forward folds and one fit job per (family, fold)."""
    from amcp.features.splits import purged_walk_forward, rows_of

    folds = purged_walk_forward(data.date_axis, n_folds=config.folds.n_folds, train_size=config.folds.train_size,
                                test_size=config.folds.test_size, label_horizon=config.label.horizon,
                                embargo=config.folds.embargo, window=config.folds.window)
    jobs = []
    for k, fold in enumerate(folds):
        train = rows_of(data.row_dates, data.date_axis, fold.train)
        test = rows_of(data.row_dates, data.date_axis, fold.test)
        jobs.extend(FitJob(spec.family, k, train, test) for spec in config.models)
    return folds, jobs


@dataclass(frozen=True, eq=False)
class EngineRun:
    """One model's all-fold long-short book run through the backtest engine.

    Attributes:
        columns: the :data:`ENGINE_COLUMNS` values (NaN when the engine was not run).
        dates: shape (S,), the sessions run (empty when not run).
        equity: shape (S,), the account equity at each session's close.
        note: why the engine was not run, or "" when it was.
    """

    columns: dict[str, float]
    dates: np.ndarray
    equity: FloatArray
    note: str = ""


def _no_engine(note: str) -> EngineRun:
    empty = np.array([], dtype="datetime64[D]")
    return EngineRun({c: math.nan for c in ENGINE_COLUMNS}, empty, np.array([]), note)


def engine_backtest(data: TrainingData, rows: IntArray, scores: FloatArray,
                    evaluation: EvaluationConfig) -> EngineRun:
    """Run the long-short book of ``scores`` (one per row of ``rows``) through the backtest engine.

    The scores become a (sessions × symbols) matrix on the whole panel (NaN off the rows) handed
    to :func:`engine_long_short` with the evaluation's quantile, rebalance period, ``cost_bps`` (as
    slippage), starting cash and participation cap, and Alpaca's fees. A constant signal (the
    ``zero`` baseline) holds no book, as in the vectorised backtest: the strategy refuses to pick
    ends that a tie spans.

    Returns NaN columns with a note when ``data`` has no bar panel or the engine refuses the
    signal (:class:`~amcp.models.base.ModelError`, e.g. no date with two scores).
    """
    if data.panel is None:
        return _no_engine("no bar panel")
    signal = _signal_matrix(data, rows, scores, data.panel_dates)
    try:
        result = engine_long_short(data.panel, signal, quantile=evaluation.quantile,
                                   rebalance_every=evaluation.rebalance_every, cost_bps=evaluation.cost_bps,
                                   starting_cash_usd=evaluation.starting_cash_usd,
                                   participation_rate=evaluation.participation_rate, fees=True)
    except ModelError as exc:
        return _no_engine(str(exc).splitlines()[0][:300])
    m = result.metrics
    return EngineRun({"bt_total_return": m["total_return"], "bt_sharpe": m["sharpe"],
                      "bt_max_drawdown": m["max_drawdown"], "bt_turnover": m["turnover"], "bt_fills": m["fills"]},
                     result.dates, result.equity,
                     f"{result.score_failures} rebalances without scores" if result.score_failures else "")


def evaluate(data: TrainingData, jobs: list[FitJob], outcomes: list[FitOutcome], evaluation: EvaluationConfig,
             log: Callable[[str], None] | None = None,
             ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, tuple[np.ndarray, FloatArray]], pd.DataFrame,
                        pd.DataFrame]:
    """Per-fold and all-fold scores of every model and baseline; the LS curves; the prediction table.

    With ``evaluation.engine`` each model's (and baseline's) all-fold book also runs through the
    backtest engine (:func:`engine_backtest`), filling the leaderboard's :data:`ENGINE_COLUMNS`
    (NaN with the engine off or without a bar panel), and ``log`` (if given) gets one line per run.

    Returns:
        the leaderboard, the per-fold scores, each model's (dates, vectorised LS daily returns),
        the predictions, and the engine's equity curves (``date``, ``model``, ``equity``; empty
        with the engine off).
    """
    next_returns = next_period_returns(data.close)
    momentum = momentum_signal(data.close, evaluation.momentum_window)
    test_rows = {job.fold: job.test_rows for job in jobs}
    scores: dict[str, dict[int, FloatArray]] = {}
    for outcome in outcomes:
        if outcome.predictions is not None:
            scores.setdefault(outcome.family, {})[outcome.fold] = outcome.predictions
    for fold, rows in test_rows.items():
        for name, values in _baseline_scores(data, rows, momentum).items():
            scores.setdefault(name, {})[fold] = values
    fold_rows, board_rows, curves, tables = [], [], {}, []
    equities: list[pd.DataFrame] = []
    for name, per_fold in scores.items():
        for fold, values in sorted(per_fold.items()):
            metrics, _, _ = score(data, name, test_rows[fold], values, evaluation, next_returns)
            fold_rows.append({"model": name, "fold": fold, **metrics})
            tables.append(pd.DataFrame({"model": name, "fold": fold, "date": data.row_dates[test_rows[fold]],
                                        "symbol": data.row_symbols[test_rows[fold]], "prediction": values,
                                        "label": data.label[test_rows[fold]]}))
        folds = sorted(per_fold)
        rows = np.concatenate([test_rows[f] for f in folds])
        all_scores = np.concatenate([per_fold[f] for f in folds])
        metrics, dates, returns = score(data, name, rows, all_scores, evaluation, next_returns)
        curves[name] = (dates, returns)
        engine = dict.fromkeys(ENGINE_COLUMNS, math.nan)
        if evaluation.engine:
            started = time.perf_counter()
            run = engine_backtest(data, rows, all_scores, evaluation)
            engine = run.columns
            if run.dates.size:
                equities.append(pd.DataFrame({"date": run.dates, "model": name, "equity": run.equity}))
            if log is not None:
                c = run.columns
                line = (f"engine: {name}: {run.dates.size} sessions, total return {c['bt_total_return']:.2%}, "
                        f"sharpe {c['bt_sharpe']:.2f}, max drawdown {c['bt_max_drawdown']:.2%}, "
                        f"{c['bt_fills']:.0f} fills") if run.dates.size else f"engine: {name}: not run"
                log(f"{line}{f' ({run.note})' if run.note else ''} in {time.perf_counter() - started:.1f} s")
        board_rows.append({"model": name, "folds": len(folds), **metrics, **engine})
    board = leaderboard(board_rows)
    equity = (pd.concat(equities, ignore_index=True) if equities
              else pd.DataFrame({"date": pd.Series(dtype="datetime64[s]"), "model": pd.Series(dtype=str),
                                 "equity": pd.Series(dtype=np.float64)}))
    return board, pd.DataFrame(fold_rows), curves, pd.concat(tables, ignore_index=True), equity


def _register(config: TrainJobConfig, finals: dict[str, tuple[SignalModel, Any]], board: pd.DataFrame,
              data: TrainingData) -> list[dict[str, Any]]:
    from amcp.models.registry import ModelRegistry

    registry = ModelRegistry(config.registry.root)
    registered = []
    for family, (model, fold) in sorted(finals.items()):
        row = board.loc[board["model"] == family].iloc[0].to_dict()
        metrics = {k: float(v) for k, v in row.items()
                   if k != "model" and isinstance(v, (int, float)) and math.isfinite(float(v))}
        spec = next(s for s in config.models if s.family == family)
        version = registry.register(model, features=model.feature_names, train_start=_as_date(fold.train_dates[0]),
                                    train_end=_as_date(fold.train_dates[-1]), metrics=metrics,
                                    params=spec.model_dump(mode="json"))
        registered.append({"family": family, "version": version.version})
    return registered


def _as_date(value: np.datetime64) -> date:
    return date.fromisoformat(str(np.datetime64(value, "D")))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def job() -> int:
        import ray

        started_at = time.perf_counter()
        config = load_config(args.config, TrainJobConfig)
        if args.output_dir:
            config = config.model_copy(update={"run": config.run.model_copy(update={"output_dir": args.output_dir})})
        data = load_inputs(config)
        folds, jobs = make_jobs(data, config)
        run_id = args.run_id or new_run_id(config.run.name)
        run_dir = Path(config.run.output_dir) / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        if not args.quiet:
            print(f"train: {data.values.shape[0]:,} rows × {len(data.feature_names)} features, "
                  f"{len(folds)} folds × {len(config.models)} families → {run_dir}", file=sys.stderr)
        started = connect_ray(config.ray.address, "amcp")
        try:
            outcomes = run_fits(ray, data, jobs, config, run_dir, args.quiet)
        finally:
            if started:
                ray.shutdown()
        failures = [{"family": o.family, "fold": o.fold, "reason": o.error} for o in outcomes if o.error]
        board, per_fold, curves, predictions, engine_equity = evaluate(
            data, jobs, outcomes, config.evaluation,
            log=None if args.quiet else (lambda line: print(line, file=sys.stderr)))
        files = write_leaderboard(board, run_dir)
        if config.evaluation.engine:
            engine_equity.to_csv(run_dir / "engine_equity.csv", index=False)
            files["engine_equity"] = str(run_dir / "engine_equity.csv")
        per_fold.to_csv(run_dir / "folds.csv", index=False)
        predictions.to_parquet(run_dir / "predictions.parquet", index=False)
        files.update(folds=str(run_dir / "folds.csv"), predictions=str(run_dir / "predictions.parquet"),
                     chart=plot_cumulative_returns(curves, run_dir / "cumulative_returns.png"))
        last = len(folds) - 1
        finals = {o.family: (o.model, folds[last]) for o in outcomes if o.fold == last and o.model is not None}
        for family, (model, _) in finals.items():
            model.save(str(run_dir / "models" / family))
        registered = _register(config, finals, board, data) if config.registry.enabled else []
        if not args.quiet:
            print(board.to_string(index=False, float_format=lambda v: f"{v:.4f}"), file=sys.stderr)
            for failure in failures:
                print(f"  failed {failure['family']} fold {failure['fold']}: {failure['reason']}", file=sys.stderr)
        summary = {
            "ok": not failures, "job": "train", "run_id": run_id, "rows": int(data.values.shape[0]),
            "features": len(data.feature_names), "folds": len(folds),
            "fold_test_dates": [[str(f.test_dates[0]), str(f.test_dates[-1])] for f in folds],
            "models": {row["model"]: {k: _finite(row[k]) for k in ("rank_ic_mean", "ic_mean", "icir", "auc",
                                                                     "ls_sharpe", "ls_total_return",
                                                                     "bt_sharpe", "bt_total_return")}
                       for row in board.to_dict("records")},
            "best": board["model"].iloc[0] if len(board) else None,
            "failures": failures, "registered": registered, "files": files,
            "fit_s": {f"{o.family}/{o.fold}": round(o.fit_s, 3) for o in outcomes},
            "elapsed_s": round(time.perf_counter() - started_at, 3),
        }
        print(json.dumps(summary, default=str))
        return 0 if not failures else EXIT_PARTIAL

    return guarded(job)


if __name__ == "__main__":
    sys.exit(main())
