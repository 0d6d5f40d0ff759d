"""Configs: the shipped files validate; bad keys and values are named with their values."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from amcp.config import (
    BacktestConfig,
    FeaturesJobConfig,
    IngestConfig,
    ScanJobConfig,
    ServeSignalsConfig,
    TradeConfig,
    TrainJobConfig,
    load_config,
    parse_config,
)
from amcp.errors import ConfigError

ROOT = Path(__file__).resolve().parents[3]
MINIMAL = {"data": {"path": "x.parquet"}, "strategies": [{"kind": "momentum", "id": "m"}]}


def test_shipped_configs_validate() -> None:
    paper = load_config(ROOT / "configs/paper.yaml", TradeConfig)
    backtest = load_config(ROOT / "configs/backtest.yaml", BacktestConfig)
    assert paper.mode == "paper" and len(paper.strategies) == 2
    # The backtest and the paper run share every setting that decides fills.
    for key in ("data", "account", "venue", "risk", "sizing", "strategies"):
        assert getattr(paper, key) == getattr(backtest, key), key


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"risk": {"max_order_notional_usd": -5}}, "risk.max_order_notional_usd: Input should be greater than 0 (got -5)"),
        ({"risk": {"bogus_key": 1}}, "risk.bogus_key: Extra inputs are not permitted (got 1)"),
        ({"surprise": True}, "surprise: Extra inputs are not permitted"),
        ({"venue": {"participation_rate": 1.5}}, "venue.participation_rate"),
        ({"strategies": [{"kind": "momentum", "id": "m", "lookback_bars": 1}]}, "strategies.0.lookback_bars"),
        ({"strategies": [{"kind": "warp", "id": "m"}]}, "does not match any of the expected tags"),
        ({"strategies": [{"kind": "momentum", "id": "m", "skip_bars": 200}]}, "skip_bars 200 must be < lookback_bars 126"),
        ({"strategies": [{"kind": "momentum", "id": "a", "capital_fraction": 0.7}, {"kind": "momentum", "id": "b", "capital_fraction": 0.7}]}, "sums to 1.4"),
        ({"strategies": [{"kind": "momentum", "id": "a"}, {"kind": "ma_cross", "id": "a"}]}, "repeated: ['a']"),
        ({"data": {"path": "x", "start": "2015-01-01", "end": "2014-01-01"}}, "start 2015-01-01 is after end 2014-01-01"),
        ({"risk": {"daily_loss_reduce_pct": 0.2, "daily_loss_halt_pct": 0.1}}, "daily_loss_halt_pct 0.1 must be >="),
        ({"strategies": []}, "strategies: Tuple should have at least 1 item"),
    ],
)
def test_bad_value_is_named_with_key_and_value(patch: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL | patch, TradeConfig, "paper.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("paper.yaml: ")


@pytest.mark.parametrize(
    ("path", "model"),
    [("features.yaml", FeaturesJobConfig), ("scan.yaml", ScanJobConfig), ("scan_vxx.yaml", ScanJobConfig),
     ("serve_signals.yaml", ServeSignalsConfig), ("train.yaml", TrainJobConfig)],
)
def test_shipped_job_configs_validate(path: str, model: type) -> None:
    assert isinstance(load_config(ROOT / "configs" / path, model), model)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"source": {"kind": "synthetic", "underlyings": [{"symbol": "SYNA", "spot": -1, "strike_step": 1}]}},
         "scan.yaml: source.underlyings.0.spot: Input should be greater than 0 (got -1)"),
        ({"source": {"kind": "vendor_file", "path": ""}}, "scan.yaml: source.path: String should have at least"),
        ({"source": {"kind": "store", "underlyings": ["VXX"], "quote_dates": ["2024-01-02"], "store": {"url": ""}}},
         "scan.yaml: source.store.url: String should have at least"),
    ],
)
def test_scan_source_error_path_omits_the_union_tag(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, ScanJobConfig, "scan.yaml")
    assert str(info.value).startswith(expected), str(info.value)


TRAIN_MINIMAL = {
    "features": {"root": "f"}, "data": {"path": "x.parquet"}, "models": [{"family": "random_forest"}],
}


@pytest.mark.parametrize(
    ("models", "expected"),
    [
        ([{"family": "random_forest", "n_estimators": 0}],
         "train.yaml: models.0.n_estimators: Input should be greater than or equal to 1 (got 0)"),
        ([{"family": "random_forest"}, {"family": "lstm", "device": "tpu"}],
         "train.yaml: models.1.device: Input should be 'cpu', 'cuda' or 'auto' (got 'tpu')"),
        ([{"family": "transformer", "d_model": 30, "nhead": 4}],
         "train.yaml: models.0: Value error, d_model 30 must be a multiple of nhead 4"),
        ([{"family": "svm", "kernel": "linear"}],
         "train.yaml: models.0.kernel: Extra inputs are not permitted"),
        ([{"family": "xgboost"}, {"family": "xgboost"}],
         "train.yaml: models: Value error, each family may appear once, repeated: ['xgboost']"),
        ([{"family": "catboost"}],
         "train.yaml: models.0: Input tag 'catboost' found using 'family' does not match"),
    ],
)
def test_train_model_error_path_omits_the_family_tag(models: list[dict[str, object]], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(TRAIN_MINIMAL | {"models": models}, TrainJobConfig, "train.yaml")
    assert str(info.value).startswith(expected), str(info.value)


def test_train_config_models_and_aliases() -> None:
    config = load_config(ROOT / "configs/train.yaml", TrainJobConfig)
    families = ["random_forest", "svm", "xgboost", "lightgbm", "lstm", "transformer"]
    assert [m.family for m in config.models] == families
    assert config.registry.enabled is False and config.label.horizon == 5
    registered = parse_config(TRAIN_MINIMAL | {"registry": {"register": True}}, TrainJobConfig)
    assert registered.registry.enabled is True


def test_importing_config_pulls_in_no_numerics_or_models() -> None:
    code = ("import amcp.config, sys; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('numpy', 'torch', 'sklearn') or m.startswith('amcp.models')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stdout


def test_model_params_are_re_exported_from_their_old_modules() -> None:
    import amcp.config as config
    from amcp.models import sequence, tabular

    for name in ("RandomForestParams", "SupportVectorParams", "XGBoostParams", "LightGBMParams"):
        assert getattr(tabular, name) is getattr(config, name), name
    for name in ("LSTMParams", "TransformerParams"):
        assert getattr(sequence, name) is getattr(config, name), name


def test_union_tag_that_is_also_a_field_name_stays_in_the_path() -> None:
    # "store" is the scan source's tag, but elsewhere a plain field: only a tag is dropped.
    with pytest.raises(ConfigError, match=r"^paper\.yaml: data\.store\.url: String should have at least"):
        parse_config(MINIMAL | {"data": {"store": {"url": ""}}}, TradeConfig, "paper.yaml")
    with pytest.raises(ConfigError, match=r"^ingest\.yaml: store\.url: String should have at least"):
        parse_config({"source": {"kind": "file", "path": "x.csv"}, "store": {"url": ""}}, IngestConfig, "ingest.yaml")
    with pytest.raises(ConfigError, match=r"^ingest\.yaml: source\.path: String should have at least"):
        parse_config({"source": {"kind": "file", "path": ""}}, IngestConfig, "ingest.yaml")


def test_item_error_is_not_echoed_as_too_short() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(MINIMAL | {"strategies": [{"kind": "momentum", "id": "m", "lookback_bars": -3}]}, TradeConfig)
    assert "too_short" not in str(info.value) and "at least 1 item" not in str(info.value)


def test_missing_file_and_bad_yaml_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", TradeConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, TradeConfig)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(scalar, TradeConfig)


def test_configs_are_frozen() -> None:
    config = parse_config(MINIMAL, TradeConfig)
    with pytest.raises(Exception):
        config.risk.max_order_quantity = 1  # type: ignore[misc]
