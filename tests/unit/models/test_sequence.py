"""The torch families learn a planted lagged signal, are reproducible, round-trip through save/load exactly."""

from __future__ import annotations

import numpy as np
import pytest

from amcp.models import ModelError, create_model, load_model
from amcp.models.metrics import signal_metrics
from amcp.models.sequence import resolve_device
from tests.unit.models._synthetic import planted_panel

SMALL = {
    "lstm": {"lookback": 4, "hidden_size": 16, "epochs": 3, "batch_size": 256},
    "transformer": {"lookback": 4, "d_model": 16, "nhead": 2, "dim_feedforward": 32, "epochs": 3, "batch_size": 256},
}


@pytest.fixture(scope="module")
def panel():
    return planted_panel()


@pytest.mark.parametrize("family", sorted(SMALL))
def test_each_sequence_family_finds_the_planted_signal_out_of_sample(panel, family) -> None:
    model = create_model(family, panel.names, SMALL[family])

    model.fit(panel.inputs(panel.train_rows, 4), panel.target[panel.train_rows])
    predictions = model.predict(panel.inputs(panel.test_rows, 4))

    metrics = signal_metrics(panel.position[panel.test_rows], predictions, panel.target[panel.test_rows])
    assert metrics["ic_mean"] > 0.15 and metrics["rank_ic_mean"] > 0.15


def test_the_lstm_uses_the_lagged_part_of_the_signal(panel) -> None:
    rows = panel.test_rows
    longer = create_model("lstm", panel.names, SMALL["lstm"])
    longer.fit(panel.inputs(panel.train_rows, 4), panel.target[panel.train_rows])
    one_bar = create_model("lstm", panel.names, SMALL["lstm"] | {"lookback": 1})
    one_bar.fit(panel.inputs(panel.train_rows, 1), panel.target[panel.train_rows])

    ic_longer = signal_metrics(panel.position[rows], longer.predict(panel.inputs(rows, 4)), panel.target[rows])
    ic_one_bar = signal_metrics(panel.position[rows], one_bar.predict(panel.inputs(rows, 1)), panel.target[rows])

    assert ic_longer["ic_mean"] > ic_one_bar["ic_mean"] + 0.03


@pytest.mark.parametrize("family", sorted(SMALL))
def test_save_then_load_gives_identical_predictions_and_fits_repeat(panel, family, tmp_path) -> None:
    rows = panel.train_rows[:2000]
    model = create_model(family, panel.names, SMALL[family]).fit(panel.inputs(rows, 4), panel.target[rows])
    again = create_model(family, panel.names, SMALL[family]).fit(panel.inputs(rows, 4), panel.target[rows])
    expected = model.predict(panel.inputs(panel.test_rows, 4))

    model.save(str(tmp_path / family))
    loaded = load_model(str(tmp_path / family))

    assert (loaded.family, loaded.feature_names, loaded.lookback) == (family, panel.names, 4)
    np.testing.assert_array_equal(loaded.predict(panel.inputs(panel.test_rows, 4)), expected)
    np.testing.assert_array_equal(again.predict(panel.inputs(panel.test_rows, 4)), expected)


def test_a_validation_set_keeps_the_best_epoch(panel) -> None:
    rows, valid = panel.train_rows[:1500], panel.test_rows[:1500]
    params = SMALL["lstm"] | {"epochs": 4}
    model = create_model("lstm", panel.names, params)

    model.fit(panel.inputs(rows, 4), panel.target[rows], X_valid=panel.inputs(valid, 4), y_valid=panel.target[valid])

    assert np.isfinite(model.predict(panel.inputs(valid, 4))).all()


def test_sharded_fits_learn_the_preprocessing_from_every_row(panel) -> None:
    rows = panel.train_rows[:1000]
    whole = create_model("lstm", panel.names, SMALL["lstm"]).fit(panel.inputs(rows, 4), panel.target[rows])
    shard = create_model("lstm", panel.names, SMALL["lstm"]).fit(panel.inputs(rows, 4), panel.target[rows],
                                                                 shard=(1, 2))

    np.testing.assert_array_equal(shard._mean, whole._mean)
    assert not np.array_equal(shard.predict(panel.inputs(rows, 4)), whole.predict(panel.inputs(rows, 4)))


def test_wrong_inputs_and_devices_are_refused(panel, monkeypatch) -> None:
    model = create_model("transformer", panel.names, SMALL["transformer"])

    with pytest.raises(ModelError, match=r"expected X of shape \(n, 4, 6\)"):
        model.fit(panel.values[:50], panel.target[:50])
    with pytest.raises(ModelError, match="multiple of nhead"):
        create_model("transformer", panel.names, {"d_model": 10, "nhead": 4})
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(ModelError, match="no CUDA device"):
        resolve_device("cuda")
