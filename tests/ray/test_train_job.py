"""The training job end to end on Ray: six families on walk-forward folds of the bundled sample, a leaderboard, the registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from amcp.features.registry import FeatureRegistry
from amcp.features.store import write_features
from amcp.models import load_model
from amcp.models.registry import ModelRegistry
from pipelines import train

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data/sample/daily_bars.parquet"
SYMBOLS = ["AAPL", "MSFT", "JPM", "XOM", "PG", "JNJ", "WMT", "KO", "INTC", "CSCO"]
FEATURE_DOCS = {
    "ret_1": "close[t] / close[t-1] - 1", "ret_5": "close[t] / close[t-5] - 1", "ret_20": "close[t] / close[t-20] - 1",
    "vol_20": "std of the last 20 daily returns", "range_1": "(high[t] - low[t]) / close[t]",
}


@pytest.fixture(scope="module")
def feature_root(tmp_path_factory) -> str:
    """A small feature set of the bundled sample: five point-in-time price features of ten symbols, 2013-2015."""
    bars = pd.read_parquet(SAMPLE)
    bars = bars[bars["symbol"].isin(SYMBOLS)].assign(date=lambda f: pd.to_datetime(f["date"]))
    bars = bars[(bars["date"] >= "2013-01-01") & (bars["date"] <= "2015-12-31")].sort_values(["symbol", "date"])
    assert bars["symbol"].nunique() == len(SYMBOLS)
    close = bars.groupby("symbol")["close"]
    frame = pd.DataFrame({"date": bars["date"], "symbol": bars["symbol"],
                          "ret_1": close.pct_change(1), "ret_5": close.pct_change(5), "ret_20": close.pct_change(20),
                          "vol_20": close.pct_change(1).groupby(bars["symbol"]).transform(lambda r: r.rolling(20).std()),
                          "range_1": (bars["high"] - bars["low"]) / bars["close"]})
    root = str(tmp_path_factory.mktemp("features") / "sample")
    write_features(root, frame.sort_values(["date", "symbol"], ignore_index=True), registry=FeatureRegistry(),
                   label_docs=FEATURE_DOCS)
    return root


def _config(tmp_path: Path, feature_root: str, **overrides: object) -> Path:
    config = yaml.safe_load((ROOT / "configs/train.yaml").read_text())
    config["run"]["output_dir"] = str(tmp_path / "runs")
    config["features"]["root"] = feature_root
    config["data"].update(symbols=SYMBOLS, start="2013-01-01", end="2015-12-31")
    config["folds"].update(n_folds=2, train_size=250, test_size=120)
    config["ray"].update(task_num_cpus=0.5, max_tasks_in_flight=2)
    config["registry"] = {"register": True, "root": str(tmp_path / "registry")}
    config.update(overrides)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _run(path: Path, capsys) -> tuple[int, dict]:
    code = train.main(["--config", str(path), "--quiet"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, json.loads(lines[-1])


def test_every_family_trains_on_every_fold_is_ranked_against_baselines_and_registered(ray_local, tmp_path, capsys,
                                                                                     feature_root) -> None:
    code, summary = _run(_config(tmp_path, feature_root), capsys)

    assert code == 0 and summary["ok"], summary
    families = {"random_forest", "svm", "xgboost", "lightgbm", "lstm", "transformer"}
    assert set(summary["models"]) == families | {"momentum", "zero"}
    assert summary["folds"] == 2 and len(summary["fit_s"]) == 12 and summary["features"] == 5
    board = pd.read_csv(summary["files"]["csv"])
    assert list(board["rank_ic_mean"].dropna()) == sorted(board["rank_ic_mean"].dropna(), reverse=True)
    assert (board["folds"] == 2).all() and (board.loc[board["model"] != "zero", "ic_dates"] == 2 * 120 - 5).all()  # last 5: no label yet
    assert Path(summary["files"]["chart"]).read_bytes()[:4] == b"\x89PNG"
    # Every model's all-fold book also ran through the backtest engine.
    columns = list(board.columns)
    assert columns[columns.index("ls_turnover") + 1:][:5] == list(train.ENGINE_COLUMNS)
    traded = board[board["model"] != "zero"]
    assert np.isfinite(traded[list(train.ENGINE_COLUMNS)].to_numpy()).all() and (traded["bt_fills"] > 0).all()
    assert "bt_sharpe" in Path(summary["files"]["markdown"]).read_text().splitlines()[0]
    for name, entry in summary["models"].items():
        assert {"bt_sharpe", "bt_total_return"} <= set(entry), name
        expected = board.set_index("model").loc[name, "bt_total_return"]
        assert entry["bt_total_return"] == pytest.approx(expected), name
    equity = pd.read_csv(summary["files"]["engine_equity"])
    assert Path(summary["files"]["engine_equity"]).name == "engine_equity.csv"
    assert set(equity["model"]) == families | {"momentum", "zero"}
    assert (equity.groupby("model").size() == 2 * 120).all()  # the test sessions of both folds
    last = equity.groupby("model")["equity"].last() / 1_000_000 - 1
    assert last.to_dict() == pytest.approx(board.set_index("model")["bt_total_return"].to_dict(), rel=1e-6)
    predictions = pd.read_parquet(summary["files"]["predictions"])
    assert predictions.groupby("model").size().nunique() == 1  # every model and baseline on the same rows
    registry = ModelRegistry(str(tmp_path / "registry"))
    assert sorted(v["family"] for v in summary["registered"]) == sorted(families)
    assert sorted(v.family for v in registry.versions()) == sorted(families)
    run_dir = Path(summary["files"]["csv"]).parent
    for entry in summary["registered"]:
        saved = load_model(str(run_dir / "models" / entry["family"]))
        loaded = registry.load(entry["version"])
        X = np.random.default_rng(0).normal(size=(7, saved.lookback, 5))
        np.testing.assert_array_equal(loaded.predict(X), saved.predict(X))


def test_torch_families_train_through_ray_train_when_asked(ray_local, tmp_path, capsys, feature_root) -> None:
    config = yaml.safe_load((ROOT / "configs/train.yaml").read_text())
    lstm = next(m for m in config["models"] if m["family"] == "lstm")
    path = _config(tmp_path, feature_root, models=[lstm])
    raw = yaml.safe_load(path.read_text())
    raw["ray"]["use_ray_train"] = True
    raw["folds"]["n_folds"] = 1
    raw["registry"]["register"] = False
    path.write_text(yaml.safe_dump(raw))

    code, summary = _run(path, capsys)

    assert code == 0 and summary["ok"], summary
    assert set(summary["models"]) == {"lstm", "momentum", "zero"} and summary["registered"] == []
    assert (Path(summary["files"]["csv"]).parent / "models" / "lstm" / "model.pt").is_file()
