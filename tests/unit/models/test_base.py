"""The model interface: windows, imputation, the loader's dispatch and its refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from amcp.models import FAMILIES, ModelError, SignalModel, create_model, load_model
from amcp.models.base import FeatureImputer, build_windows


def test_windows_hold_each_rows_own_symbol_history_oldest_first_and_nan_before_it() -> None:
    # two symbols, rows sorted by (symbol, date): A has 3 rows, B has 2; one feature = row number
    values = np.arange(5, dtype=np.float64)[:, None] * np.array([[1.0, 10.0]])
    position = np.array([0, 1, 2, 0, 1])

    windows = build_windows(values, position, np.array([2, 3, 4]), lookback=3)

    np.testing.assert_array_equal(windows[0, :, 0], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(windows[1, :, 0], [np.nan, np.nan, 3.0])  # B's first row: no history
    np.testing.assert_array_equal(windows[2, :, 1], [np.nan, 30.0, 40.0])   # never reaches into A's rows
    np.testing.assert_array_equal(windows[:, -1, :], values[[2, 3, 4]])


def test_the_imputer_fills_with_training_medians_and_zero_for_an_empty_feature() -> None:
    train = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, np.nan], [10.0, np.nan, 7.0]])

    imputer = FeatureImputer.fit(train)
    filled = imputer.transform(np.array([[np.nan, np.inf, np.nan], [2.0, 1.0, 0.0]]))

    np.testing.assert_array_equal(imputer.medians, [3.0, 0.0, 6.0])
    np.testing.assert_array_equal(filled, [[3.0, 0.0, 6.0], [2.0, 1.0, 0.0]])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_builds_from_defaults_and_satisfies_the_protocol(family) -> None:
    model = create_model(family, ("a", "b"))

    assert isinstance(model, SignalModel)
    assert model.family == family and model.feature_names == ("a", "b") and model.lookback >= 1


def test_unknown_families_and_missing_or_foreign_folders_are_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="unknown model family 'catboost'"):
        create_model("catboost", ("a",))
    with pytest.raises(ModelError, match="model.json not found"):
        load_model(str(tmp_path))
    (tmp_path / "model.json").write_text(json.dumps({"format_version": 99, "family": "svm", "params": {},
                                                      "feature_names": ["a"], "lookback": 1, "state": {}}))
    with pytest.raises(ModelError, match="format_version 99"):
        load_model(str(tmp_path))
    with pytest.raises(ModelError, match="save before fit"):
        create_model("lightgbm", ("a",)).save(str(tmp_path / "unfitted"))
