"""The training job's pieces without Ray: its config, the labelled data set, fits, and scoring on shared folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from amcp.config import load_config
from amcp.data.bars import BarPanel, session_close_ns
from amcp.errors import ConfigError, DataError
from pipelines.train import (
    ENGINE_COLUMNS,
    FitJob,
    TrainJobConfig,
    build_training_data,
    evaluate,
    fit_and_predict,
    make_jobs,
)

ROOT = Path(__file__).resolve().parents[3]


def test_the_default_config_is_valid_cpu_only_and_names_all_six_families() -> None:
    config = load_config(ROOT / "configs/train.yaml", TrainJobConfig)

    assert sorted(m.family for m in config.models) == ["lightgbm", "lstm", "random_forest", "svm", "transformer",
                                                      "xgboost"]
    assert config.ray.task_num_gpus == 0 and not config.ray.use_ray_train and not config.registry.enabled
    assert all(getattr(m, "device", "cpu") == "cpu" for m in config.models)


def test_a_family_listed_twice_is_refused(tmp_path) -> None:
    raw = yaml.safe_load((ROOT / "configs/train.yaml").read_text())
    raw["models"].append({"family": "xgboost", "n_estimators": 5})
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))

    with pytest.raises(ConfigError, match="repeated: \\['xgboost'\\]"):
        load_config(tmp_path / "t.yaml", TrainJobConfig)


def _panel(dates: pd.DatetimeIndex, symbols: tuple[str, ...], close: np.ndarray) -> BarPanel:
    """Bars on the closes: each open is the previous close, volume ample for any fill."""
    days = dates.to_numpy().astype("datetime64[D]").astype(np.int64)
    open_ = np.vstack([close[:1], close[:-1]])
    return BarPanel(symbols, session_close_ns(days), open_, np.maximum(open_, close), np.minimum(open_, close),
                    close.copy(), np.full(close.shape, 1e9))


@pytest.fixture(scope="module")
def data():
    """12 symbols × 160 dates of random-walk closes (and their bars); feature f0 is the next 3-day return plus noise."""
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2020-01-01", periods=160)
    symbols = tuple(f"S{i:02d}" for i in range(12))
    close = 100 * np.cumprod(1 + rng.normal(0, 0.01, (160, 12)), axis=0)
    forward = np.full_like(close, np.nan)
    forward[:-3] = close[3:] / close[:-3] - 1
    frame = pd.DataFrame({"date": np.repeat(dates, 12), "symbol": np.tile(symbols, 160),
                          "f0": (np.nan_to_num(forward) + rng.normal(0, 0.01, close.shape)).ravel(),
                          "f1": rng.normal(size=close.size)})
    return build_training_data(frame, feature_names=("f0", "f1"), label_column=None, horizon=3, target="rank",
                               panel_dates=dates.to_numpy().astype("datetime64[D]"), panel_symbols=symbols,
                               close=close, panel=_panel(dates, symbols, close)), close


def test_rows_are_labelled_with_their_forward_return_and_trained_on_its_rank(data) -> None:
    training, close = data
    row = 12 * 0 + 40  # rows are sorted by (symbol, date): symbol S00, date 40

    assert training.row_symbols[row] == "S00"
    assert training.label[row] == pytest.approx(close[43, 0] / close[40, 0] - 1)
    assert np.isnan(training.label[training.position_in_symbol >= 157]).all()
    known = np.isfinite(training.target)
    assert training.target[known].min() > -0.5 and training.target[known].max() <= 0.5


@pytest.fixture(scope="module")
def fitted(data):
    """lightgbm and lstm fitted on two walk-forward folds of ``data``: (config, folds, jobs, outcomes)."""
    training, _ = data
    config = load_config(ROOT / "configs/train.yaml", TrainJobConfig).model_copy(update={
        "folds": TrainJobConfig.model_fields["folds"].annotation(n_folds=2, train_size=60, test_size=40, embargo=2),
        "models": tuple(m for m in load_config(ROOT / "configs/train.yaml", TrainJobConfig).models
                        if m.family in ("lightgbm", "lstm")),
    })
    folds, jobs = make_jobs(training, config)
    specs = {m.family: m for m in config.models}
    return config, folds, jobs, [fit_and_predict(training, specs[job.family], job) for job in jobs]


def test_models_and_baselines_are_scored_on_the_same_folds(data, fitted) -> None:
    training, _ = data
    config, folds, jobs, outcomes = fitted

    board, per_fold, curves, predictions, _ = evaluate(training, jobs, outcomes, config.evaluation)

    assert len(folds) == 2 and all(o.error is None for o in outcomes)
    assert sorted(board["model"]) == ["lightgbm", "lstm", "momentum", "zero"]
    scored = per_fold[per_fold["model"] != "zero"]  # a zero signal has no IC on any date
    assert scored.groupby("fold")["ic_dates"].nunique().tolist() == [1, 1]  # every model: the same test dates
    assert predictions.groupby("model").size().nunique() == 1
    assert board.set_index("model").loc["lightgbm", "rank_ic_mean"] > 0.2  # f0 leaks the label by construction
    assert board.set_index("model").loc["zero", "ls_total_return"] == 0.0
    assert {len(dates) for dates, _ in curves.values()} == {80}


def test_each_models_all_fold_book_runs_through_the_engine(data, fitted) -> None:
    training, _ = data
    config, _, jobs, outcomes = fitted
    lines: list[str] = []

    board, _, _, _, equity = evaluate(training, jobs, outcomes, config.evaluation, log=lines.append)

    columns = list(board.columns)
    assert columns[columns.index("ls_turnover") + 1: columns.index("ls_turnover") + 6] == list(ENGINE_COLUMNS)
    rows = board.set_index("model")
    traded = rows.loc[["lightgbm", "lstm", "momentum"]]
    assert np.isfinite(traded[list(ENGINE_COLUMNS)].to_numpy()).all()
    assert (traded["bt_fills"] > 0).all() and (traded["bt_turnover"] > 0).all()
    # The engine's book follows the vectorised one: f0 leaks the label, so both earn on lightgbm.
    assert rows.loc["lightgbm", "bt_total_return"] > 0 and rows.loc["lightgbm", "ls_total_return"] > 0
    assert rows.loc["zero", ["bt_total_return", "bt_turnover", "bt_fills", "bt_max_drawdown"]].tolist() == [0, 0, 0, 0]
    # One equity curve per model over the 80 test sessions (the last one's signal is never filled).
    assert sorted(equity["model"].unique()) == ["lightgbm", "lstm", "momentum", "zero"]
    assert equity.groupby("model").size().tolist() == [80] * 4
    last = equity.groupby("model")["equity"].last()
    assert last["lightgbm"] == pytest.approx(config.evaluation.starting_cash_usd * (1 + rows.loc["lightgbm", "bt_total_return"]))
    assert len(lines) == 4 and all(line.startswith("engine: ") for line in lines)


def test_the_engine_columns_are_nan_with_the_engine_off(data, fitted) -> None:
    training, _ = data
    config, _, jobs, outcomes = fitted
    off = config.evaluation.model_copy(update={"engine": False})
    lines: list[str] = []

    board, _, _, _, equity = evaluate(training, jobs, outcomes, off, log=lines.append)

    assert board[list(ENGINE_COLUMNS)].isna().all().all() and equity.empty and lines == []
    assert np.isfinite(board.loc[board["model"] == "lightgbm", "ls_total_return"]).all()


def test_a_panel_that_is_not_the_closes_bars_is_refused(data) -> None:
    training, close = data
    frame = pd.DataFrame({"date": training.row_dates, "symbol": training.row_symbols, "f0": training.values[:, 0]})
    dates = pd.DatetimeIndex(training.panel_dates)

    with pytest.raises(DataError, match="bar panel"):
        build_training_data(frame, feature_names=("f0",), label_column=None, horizon=3, target="rank",
                            panel_dates=training.panel_dates, panel_symbols=training.panel_symbols, close=close,
                            panel=_panel(dates[:-1], training.panel_symbols, close[:-1]))


def test_a_failing_fit_is_reported_not_raised(data) -> None:
    training, _ = data
    spec = load_config(ROOT / "configs/train.yaml", TrainJobConfig).models[0]

    outcome = fit_and_predict(training, spec, FitJob(spec.family, 0, np.array([0]), np.array([1, 2])))

    assert outcome.model is None and "at least 2 training rows" in outcome.error


def _label_leak_config(tmp_path: Path, columns: list[str]) -> TrainJobConfig:
    """configs/train.yaml on a two-symbol feature set holding a feature and a look-ahead label."""
    from amcp.features.store import write_features

    dates = pd.bdate_range("2015-01-02", periods=30)
    frame = pd.DataFrame({"date": np.repeat(dates, 2), "symbol": np.tile(["AAPL", "MSFT"], 30),
                          "f0": np.arange(60, dtype=float), "label_fwd_ret_5": np.linspace(-0.1, 0.1, 60)})
    write_features(str(tmp_path / "features"), frame)
    raw = yaml.safe_load((ROOT / "configs/train.yaml").read_text())
    raw["features"].update(root=str(tmp_path / "features"), columns=columns)
    raw["data"].update(path=str(ROOT / raw["data"]["path"]), symbols=["AAPL", "MSFT"], start="2015-01-02",
                       end="2015-02-12")
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    return load_config(tmp_path / "t.yaml", TrainJobConfig)


def test_label_columns_of_the_feature_set_are_never_features(tmp_path) -> None:
    from pipelines.train import load_inputs

    training = load_inputs(_label_leak_config(tmp_path, []))

    assert training.feature_names == ("f0",)  # label_fwd_ret_5 is in the set but looks ahead


def test_naming_a_label_column_as_a_feature_is_refused(tmp_path) -> None:
    from pipelines.train import load_inputs

    with pytest.raises(ConfigError, match="label_fwd_ret_5.*are labels"):
        load_inputs(_label_leak_config(tmp_path, ["f0", "label_fwd_ret_5"]))
