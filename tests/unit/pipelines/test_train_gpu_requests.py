"""The training job asks Ray for the GPUs its config names: torch fits as GPU tasks or Ray Train
GPU workers, the other families on CPUs only (on a stand-in for Ray: this machine has no GPU).

What a real GPU adds — torch moving the model and batches to CUDA — is ``resolve_device`` in
``amcp/models/sequence.py`` (``auto`` picks CUDA when torch sees one; ``cuda`` without one is a
ModelError, tested in ``tests/unit/models/test_sequence.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from amcp.config import TrainJobConfig
from pipelines import train

ROOT = Path(__file__).resolve().parents[3]


class _Ref:
    def __init__(self, value: Any) -> None:
        self.value = value


class FakeRay:
    """Runs each task at submission and records the options it was declared with, per job family."""

    def __init__(self) -> None:
        self.options_by_family: dict[str, dict[str, Any]] = {}

    def put(self, value: Any) -> Any:
        return value

    def remote(self, **options: Any) -> Any:
        fake = self

        def declare(function: Any) -> Any:
            class Task:
                @staticmethod
                def remote(data: Any, spec: Any, job: train.FitJob) -> _Ref:
                    fake.options_by_family[job.family] = options
                    return _Ref(function(data, spec, job))

            return Task

        return declare

    def wait(self, refs: list[_Ref], num_returns: int, timeout: float | None = None) -> tuple[list[_Ref], list[_Ref]]:
        return refs[:1], refs[1:]

    def get(self, ref: _Ref) -> Any:
        return ref.value


def _config(task_num_gpus: float, use_ray_train: bool) -> TrainJobConfig:
    raw = yaml.safe_load((ROOT / "configs/train.yaml").read_text())
    lstm = next(m for m in raw["models"] if m["family"] == "lstm")
    forest = next(m for m in raw["models"] if m["family"] == "random_forest")
    raw["models"] = [{**lstm, "device": "auto"}, forest]
    raw["ray"].update(task_num_cpus=1, task_num_gpus=task_num_gpus, use_ray_train=use_ray_train, train_workers=2)
    return TrainJobConfig.model_validate(raw)


def _data() -> train.TrainingData:
    n = 8
    return train.TrainingData(
        feature_names=("f",), values=np.zeros((n, 1)), row_dates=np.arange(n).astype("datetime64[D]"),
        row_symbols=np.array(["A"] * n), position_in_symbol=np.arange(n), label=np.zeros(n), target=np.zeros(n),
        date_axis=np.arange(n).astype("datetime64[D]"), panel_dates=np.arange(n).astype("datetime64[D]"),
        panel_symbols=("A",), close=np.ones((n, 1)))


def _jobs() -> list[train.FitJob]:
    rows = np.arange(4)
    return [train.FitJob(family, 0, rows, rows + 4) for family in ("lstm", "random_forest")]


def _stub_fit(data: train.TrainingData, spec: Any, job: train.FitJob) -> train.FitOutcome:
    return train.FitOutcome(job.family, job.fold, None, None, 0.0, "stub")


@pytest.mark.parametrize("gpus", [0.5, 1.0])
def test_torch_fits_are_gpu_tasks_and_the_rest_cpu_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                         gpus: float) -> None:
    monkeypatch.setattr(train, "fit_and_predict", _stub_fit)
    ray = FakeRay()

    outcomes = train.run_fits(ray, _data(), _jobs(), _config(gpus, use_ray_train=False), tmp_path, quiet=True)

    assert sorted(o.family for o in outcomes) == ["lstm", "random_forest"]
    assert ray.options_by_family["lstm"]["num_gpus"] == gpus
    assert ray.options_by_family["lstm"]["num_cpus"] == 1
    assert ray.options_by_family["random_forest"].get("num_gpus", 0) == 0


def test_without_gpus_in_the_config_no_task_asks_for_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(train, "fit_and_predict", _stub_fit)
    ray = FakeRay()

    train.run_fits(ray, _data(), _jobs(), _config(0.0, use_ray_train=False), tmp_path, quiet=True)

    assert all(options.get("num_gpus", 0) == 0 for options in ray.options_by_family.values())


@pytest.mark.parametrize(("gpus", "use_gpu", "per_worker"), [(0.5, True, {"CPU": 1, "GPU": 0.5}),
                                                             (0.0, False, {"CPU": 1})])
def test_ray_train_workers_ask_for_the_configured_gpus(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       gpus: float, use_gpu: bool, per_worker: dict[str, float]) -> None:
    import ray.train.torch

    seen: dict[str, Any] = {}

    class Trainer:
        def __init__(self, loop: Any, *, train_loop_config: Any, scaling_config: Any, run_config: Any) -> None:
            seen["scaling"] = scaling_config

        def fit(self) -> Any:
            raise RuntimeError("no cluster here")

    monkeypatch.setattr(ray.train.torch, "TorchTrainer", Trainer)
    monkeypatch.setattr(train, "fit_and_predict", _stub_fit)
    fake = FakeRay()

    outcomes = train.run_fits(fake, _data(), _jobs(), _config(gpus, use_ray_train=True), tmp_path, quiet=True)

    scaling = seen["scaling"]
    assert scaling.num_workers == 2 and scaling.use_gpu is use_gpu
    assert scaling.resources_per_worker == per_worker
    assert "lstm" not in fake.options_by_family  # through Ray Train, not a task
    lstm = next(o for o in outcomes if o.family == "lstm")
    assert lstm.model is None and "ray train failed: RuntimeError: no cluster here" in (lstm.error or "")
