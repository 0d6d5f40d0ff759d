"""The tabular families learn a planted signal, survive NaN, round-trip through save/load exactly."""

from __future__ import annotations

import numpy as np
import pytest

from amcp.models import ModelError, create_model, load_model
from amcp.models.metrics import signal_metrics
from tests.unit.models._synthetic import planted_panel

SMALL = {
    "random_forest": {"n_estimators": 20, "min_samples_leaf": 20},
    "svm": {"max_train_rows": 1500},
    "xgboost": {"n_estimators": 40, "max_depth": 3},
    "lightgbm": {"n_estimators": 40, "num_leaves": 7},
}


@pytest.fixture(scope="module")
def panel():
    return planted_panel()


@pytest.mark.parametrize("family", sorted(SMALL))
def test_each_tabular_family_finds_the_planted_signal_out_of_sample(panel, family) -> None:
    model = create_model(family, panel.names, SMALL[family])

    model.fit(panel.inputs(panel.train_rows, 1), panel.target[panel.train_rows])
    predictions = model.predict(panel.inputs(panel.test_rows, 1))

    metrics = signal_metrics(panel.position[panel.test_rows], predictions, panel.target[panel.test_rows])
    assert predictions.shape == (panel.test_rows.size,) and np.isfinite(predictions).all()
    assert metrics["ic_mean"] > 0.15 and metrics["rank_ic_mean"] > 0.15
    assert metrics["auc"] > 0.55


@pytest.mark.parametrize("family", sorted(SMALL))
def test_save_then_load_gives_identical_predictions(panel, family, tmp_path) -> None:
    model = create_model(family, panel.names, SMALL[family])
    model.fit(panel.values[panel.train_rows], panel.target[panel.train_rows])
    expected = model.predict(panel.values[panel.test_rows])

    model.save(str(tmp_path / family))
    loaded = load_model(str(tmp_path / family))

    assert (loaded.family, loaded.feature_names, loaded.lookback) == (family, panel.names, 1)
    np.testing.assert_array_equal(loaded.predict(panel.values[panel.test_rows]), expected)


@pytest.mark.parametrize("family", sorted(SMALL))
def test_fits_with_the_same_seed_are_identical(panel, family) -> None:
    rows = panel.train_rows[:3000]
    first = create_model(family, panel.names, SMALL[family]).fit(panel.values[rows], panel.target[rows])
    second = create_model(family, panel.names, SMALL[family]).fit(panel.values[rows], panel.target[rows])

    np.testing.assert_array_equal(first.predict(panel.values[panel.test_rows]),
                                  second.predict(panel.values[panel.test_rows]))


def test_a_tabular_model_reads_the_last_row_of_a_window(panel) -> None:
    model = create_model("lightgbm", panel.names, SMALL["lightgbm"])
    model.fit(panel.values[panel.train_rows], panel.target[panel.train_rows])

    windows = panel.inputs(panel.test_rows, 3)

    np.testing.assert_array_equal(model.predict(windows), model.predict(panel.values[panel.test_rows]))


def test_boosting_stops_early_on_a_validation_set(panel) -> None:
    params = {"n_estimators": 400, "learning_rate": 0.3, "early_stopping_rounds": 5}
    valid_rows = panel.test_rows[:2000]

    model = create_model("xgboost", panel.names, params).fit(
        panel.values[panel.train_rows], panel.target[panel.train_rows],
        X_valid=panel.values[valid_rows], y_valid=panel.target[valid_rows])
    light = create_model("lightgbm", panel.names, params).fit(
        panel.values[panel.train_rows], panel.target[panel.train_rows],
        X_valid=panel.values[valid_rows], y_valid=panel.target[valid_rows])

    assert model._regressor.best_iteration < 399
    assert light._best_iteration is not None and light._best_iteration < 400


def test_the_svm_fits_on_a_capped_subsample_and_predicts_through_all_nan_columns(panel) -> None:
    values = panel.values.copy()
    values[:, 3] = np.nan
    model = create_model("svm", panel.names, {"max_train_rows": 500})

    model.fit(values[panel.train_rows], panel.target[panel.train_rows])

    assert model._estimator.regressor_[-1].support_.size <= 500
    assert np.isfinite(model.predict(values[panel.test_rows])).all()


def test_wrong_inputs_are_refused_with_the_shapes_named(panel) -> None:
    model = create_model("random_forest", panel.names, SMALL["random_forest"])

    with pytest.raises(ModelError, match="predict before fit"):
        model.predict(panel.values[:5])
    with pytest.raises(ModelError, match=r"expected X of shape \(n, 6\)"):
        model.fit(panel.values[:50, :4], panel.target[:50])
    with pytest.raises(ModelError, match="non-finite"):
        model.fit(panel.values[:50], np.where(np.arange(50) == 3, np.nan, panel.target[:50]))
    with pytest.raises(ModelError, match="invalid parameters"):
        create_model("xgboost", panel.names, {"n_trees": 5})
