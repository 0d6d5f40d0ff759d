"""The feature job end to end on Ray: bundled sample bars in, a feature store out, values recomputable."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from amcp.config import DataConfig
from amcp.data.bars import load_daily_bars
from amcp.features import default_registry
from amcp.features.market import equal_weight_index
from amcp.features.registry import SeriesInputs, cross_sectional
from amcp.features.store import read_features, read_manifest
from pipelines import features as job

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "daily_bars.parquet"
SYMBOLS = ["AAPL", "CVX", "MSFT", "XOM"]  # CVX lacks 2010-11-19 in the sample: a gap inside its series
DATA = {"path": str(SAMPLE), "symbols": SYMBOLS, "start": "2010-06-01", "end": "2011-12-30"}


def _run(tmp_path, config: dict, capsys) -> tuple[int, dict]:
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(config))
    code = job.main(["--config", str(path), "--quiet", "--run-id", "test"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    return code, json.loads(lines[-1])


@pytest.fixture(scope="module")
def stored(ray_local, tmp_path_factory) -> tuple[dict, str]:
    tmp_path = tmp_path_factory.mktemp("features")
    config = {"kind": "features", "run": {"name": "features-test", "output_dir": str(tmp_path / "runs")},
              "data": DATA, "labels": {"forward_return_horizons": [1, 5]},
              "ray": {"symbols_per_task": 2, "task_num_cpus": 0.5, "max_tasks_in_flight": 2}}
    path = tmp_path / "features.yaml"
    path.write_text(yaml.safe_dump(config))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = job.main(["--config", str(path), "--quiet", "--run-id", "test"])
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert code == 0, lines
    summary = json.loads(lines[-1])
    return summary, summary["output"]


def test_the_job_stores_one_row_per_bar_with_every_feature_and_label(stored) -> None:
    summary, root = stored
    panel, _ = load_daily_bars(DataConfig(**DATA))
    registry = default_registry()

    frame = read_features(root)

    bars = int(np.isfinite(panel.close).sum())
    assert summary["ok"] and summary["symbols"] == 4 and summary["rows"] == len(frame) == bars
    assert summary["features"] == len(registry) and summary["labels"] == 2
    assert list(frame.columns) == ["date", "symbol", *registry.names, "label_fwd_ret_1", "label_fwd_ret_5"]
    assert frame.groupby("symbol").size().to_dict() == {
        s: int(np.isfinite(panel.close[:, panel.index_of(s)]).sum()) for s in SYMBOLS}
    assert frame["symbol"].value_counts()["CVX"] == len(panel) - 1
    manifest = read_manifest(root)
    assert manifest.undocumented == () and manifest.metadata["labels"] == ["label_fwd_ret_1", "label_fwd_ret_5"]
    assert (manifest.start, manifest.end) == ("2010-06-01", "2011-12-30")


def test_every_series_feature_recomputed_in_process_equals_the_stored_one(stored) -> None:
    _, root = stored
    panel, _ = load_daily_bars(DataConfig(**DATA))
    registry = default_registry()
    column = panel.index_of("MSFT")
    market = equal_weight_index(panel.close)
    inputs = SeriesInputs(panel.dates, panel.open[:, column], panel.high[:, column], panel.low[:, column],
                          panel.close[:, column], panel.volume[:, column], np.full(len(panel), np.nan), market)

    expected = registry.compute(inputs)
    stored_frame = read_features(root, symbols=["MSFT"], columns=list(registry.series_names))

    np.testing.assert_array_equal(stored_frame["date"].to_numpy().astype("datetime64[D]"), panel.dates)
    np.testing.assert_array_equal(stored_frame[list(expected.names)].to_numpy(), expected.values)
    assert np.isfinite(expected.values[-1]).mean() > 0.9  # the last bar has (almost) every feature


def test_cross_sectional_features_and_labels_match_their_definitions(stored) -> None:
    _, root = stored
    registry = default_registry()
    frame = read_features(root)
    name = registry.cross_sectional_names[0]
    spec = registry.cross_sectional(name)
    base = frame.pivot(index="date", columns="symbol", values=spec.base)

    expected = cross_sectional(spec.op, base.to_numpy())

    got = frame.pivot(index="date", columns="symbol", values=name).to_numpy()
    np.testing.assert_allclose(got, expected, equal_nan=True)
    close = pd.read_parquet(SAMPLE, filters=[("symbol", "==", "XOM")]).set_index("date")["close"]
    xom = frame[frame["symbol"] == "XOM"].set_index(frame.loc[frame["symbol"] == "XOM", "date"].dt.date)
    forward = close.shift(-5) / close - 1
    np.testing.assert_allclose(xom["label_fwd_ret_5"].to_numpy()[:-5],
                               forward.reindex(xom.index).to_numpy()[:-5], rtol=1e-12)
    assert xom["label_fwd_ret_5"].iloc[-5:].isna().all()


def test_a_config_with_an_unknown_feature_exits_2_naming_it(ray_local, tmp_path, capsys) -> None:
    config = {"kind": "features", "run": {"output_dir": str(tmp_path)}, "data": DATA,
              "features": {"names": ["no_such_feature"]}}

    code, summary = _run(tmp_path, config, capsys)

    assert code == 2 and not summary["ok"] and "no_such_feature" in summary["error"]
