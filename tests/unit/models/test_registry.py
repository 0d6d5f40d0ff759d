"""ModelRegistry: immutable content-hashed versions, hash-checked loads, a production pointer with
history, and no lost write under concurrent registrations and promotions — locally and on S3 (moto)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amcp.models.base import SignalModel, create_model
from amcp.models.registry import (
    CorruptArtefactError,
    ModelRegistry,
    RegistryError,
    UnknownVersionError,
    git_commit,
)
from tests.unit.data.conftest import s3_server  # noqa: F401 - the moto S3 fixture, shared

FEATURES = ("alpha", "beta", "gamma")
START, END = date(2010, 1, 4), date(2014, 12, 31)


def fitted_model(seed: int = 0) -> SignalModel:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(200, len(FEATURES)))
    y = X @ np.array([0.5, -0.2, 0.1]) + rng.normal(0, 0.1, 200)
    model = create_model("random_forest", FEATURES,
                         {"n_estimators": 5, "max_depth": 3, "min_samples_leaf": 5, "seed": seed})
    return model.fit(X, y)


def register(registry: ModelRegistry, model: SignalModel, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {"features": FEATURES, "train_start": START, "train_end": END,
                                 "metrics": {"ic": 0.04, "rank_ic": 0.05}, "params": {"n_estimators": 5},
                                 "code_version": "abc123"}
    arguments.update(overrides)
    return registry.register(model, **arguments)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(str(tmp_path / "models"))


@pytest.fixture
def s3_registry(s3_server: tuple[str, dict[str, Any]]) -> ModelRegistry:  # noqa: F811 - the imported fixture
    url, options = s3_server
    return ModelRegistry(f"{url}/{uuid.uuid4().hex}/models", storage_options=options)


PROBE = np.random.default_rng(99).normal(size=(50, len(FEATURES)))


# --------------------------------------------------------------------------- versions


def test_registered_model_loads_back_predicting_identically(registry: ModelRegistry) -> None:
    model = fitted_model()

    version = register(registry, model)
    loaded = registry.load(version.version)

    assert loaded.family == "random_forest" and loaded.feature_names == FEATURES
    np.testing.assert_array_equal(loaded.predict(PROBE), model.predict(PROBE))


def test_version_ids_carry_the_sequence_and_the_content_hash(registry: ModelRegistry) -> None:
    first = register(registry, fitted_model(0))
    second = register(registry, fitted_model(1))

    assert (first.sequence, second.sequence) == (1, 2)
    assert first.version == f"v0001-{first.content_hash[:8]}"
    assert second.version == f"v0002-{second.content_hash[:8]}"
    assert [v.version for v in registry.versions()] == [first.version, second.version]


def test_metadata_records_the_training_run(tmp_path: Path) -> None:
    stamp = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
    registry = ModelRegistry(str(tmp_path), clock=lambda: stamp)

    version = register(registry, fitted_model(), metrics={"ic": 0.04, "auc": float("nan")},
                       params={"n_estimators": 5, "max_depth": 3})
    stored = registry.get(version.version)

    assert stored == version
    assert (stored.family, stored.features, stored.lookback) == ("random_forest", FEATURES, 1)
    assert (stored.train_start, stored.train_end, stored.created_at) == (START, END, stamp)
    assert stored.metrics["ic"] == 0.04 and np.isnan(stored.metrics["auc"])
    assert stored.params == {"max_depth": 3, "n_estimators": 5}
    assert stored.code_version == "abc123"
    assert "model.json" in {path for path, _, _ in stored.files}


def test_code_version_defaults_to_this_checkouts_commit(registry: ModelRegistry) -> None:
    version = register(registry, fitted_model(), code_version=None)

    assert version.code_version == git_commit()
    assert version.code_version == "unknown" or len(version.code_version) == 40


def test_the_content_hash_covers_metadata_not_the_creation_time(tmp_path: Path) -> None:
    times = iter([datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=i) for i in range(3)])
    registry = ModelRegistry(str(tmp_path), clock=lambda: next(times))
    model = fitted_model()

    base = register(registry, model)
    same = register(registry, model)
    other_metrics = register(registry, model, metrics={"ic": 0.01})

    assert same.content_hash == base.content_hash and same.version != base.version
    assert other_metrics.content_hash != base.content_hash


@pytest.mark.parametrize(("overrides", "message"), [
    ({"features": ("alpha", "beta")}, "differ from the model's feature_names"),
    ({"train_start": END, "train_end": START}, "is before train_start"),
    ({"params": {"callback": object()}}, "JSON-serialisable"),
    ({"params": {"alpha": float("inf")}}, "finite numbers"),
])
def test_inconsistent_registrations_are_refused(registry: ModelRegistry, overrides: dict[str, Any],
                                                message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        register(registry, fitted_model(), **overrides)

    assert registry.versions() == []


def test_an_unknown_version_is_named_with_the_latest_ones(registry: ModelRegistry) -> None:
    known = register(registry, fitted_model())

    with pytest.raises(UnknownVersionError, match=rf"v0009-deadbeef is not registered.*{known.version}"):
        registry.load("v0009-deadbeef")
    with pytest.raises(UnknownVersionError, match="not a model version id"):
        registry.get("latest")


# --------------------------------------------------------------------------- corruption


def artefact_file(registry_root: Path, version: str, name: str) -> Path:
    return registry_root / "versions" / version / "artefact" / name


@pytest.mark.parametrize("damage", ["flip_byte", "delete", "add_file"])
def test_a_damaged_artefact_is_refused_on_load(tmp_path: Path, damage: str) -> None:
    registry = ModelRegistry(str(tmp_path))
    version = register(registry, fitted_model()).version
    target = artefact_file(tmp_path, version, "model.joblib")

    if damage == "flip_byte":
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.write_bytes(bytes(data))
        expected = "file model.joblib has sha256"
    elif damage == "delete":
        target.unlink()
        expected = r"missing \['model.joblib'\]"
    else:
        artefact_file(tmp_path, version, "extra.bin").write_bytes(b"x")
        expected = r"unexpected \['extra.bin'\]"

    with pytest.raises(CorruptArtefactError, match=expected):
        registry.load(version)


def test_edited_metadata_is_refused_on_load(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path))
    version = register(registry, fitted_model()).version
    path = tmp_path / "versions" / version / "metadata.json"
    record = json.loads(path.read_text())
    record["metrics"]["ic"] = 0.5
    path.write_text(json.dumps(record))

    with pytest.raises(CorruptArtefactError, match="metadata.json was changed after registration"):
        registry.load(version)


# --------------------------------------------------------------------------- production pointer


def test_promote_and_rollback_move_the_production_pointer_with_history(registry: ModelRegistry) -> None:
    first = register(registry, fitted_model(0))
    second = register(registry, fitted_model(1))
    assert registry.production() is None

    registry.promote(first.version)
    registry.promote(second.version)
    production_after_promotions = registry.production()
    restored = registry.rollback()

    assert production_after_promotions == second
    assert restored == first and registry.production() == first
    events = registry.history()
    assert [(e.sequence, e.action, e.version) for e in events] == [
        (1, "promote", first.version), (2, "promote", second.version), (3, "rollback", first.version)]
    assert events[1].stack == (first.version, second.version)


def test_promoting_the_production_version_again_writes_no_event(registry: ModelRegistry) -> None:
    version = register(registry, fitted_model())
    registry.promote(version.version)

    registry.promote(version.version)

    assert len(registry.history()) == 1


def test_rollback_without_a_previous_version_is_refused(registry: ModelRegistry) -> None:
    only = register(registry, fitted_model())
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    registry.promote(only.version)

    with pytest.raises(RegistryError, match=rf"nothing to roll back to \(production: {only.version}"):
        registry.rollback()
    assert registry.production() == only


def test_promoting_an_unknown_version_leaves_production_unchanged(registry: ModelRegistry) -> None:
    version = register(registry, fitted_model())
    registry.promote(version.version)

    with pytest.raises(UnknownVersionError):
        registry.promote("v0002-00000000")

    assert registry.production() == version and len(registry.history()) == 1


# --------------------------------------------------------------------------- concurrency


def run_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    results: list[Any] = [None] * count
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def body(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    return results


def check_concurrent_registrations(registry: ModelRegistry, count: int) -> None:
    models = [fitted_model(seed) for seed in range(count)]

    versions = run_threads(count, lambda i: register(registry, models[i]))

    assert sorted(v.sequence for v in versions) == list(range(1, count + 1))
    assert {v.version for v in registry.versions()} == {v.version for v in versions}
    for version, model in zip(versions, models):
        np.testing.assert_array_equal(registry.load(version.version).predict(PROBE), model.predict(PROBE))


def check_concurrent_promotions(registry: ModelRegistry, count: int) -> None:
    versions = [register(registry, fitted_model(seed)).version for seed in range(count)]

    run_threads(count, lambda i: registry.promote(versions[i]))

    events = registry.history()
    assert [e.sequence for e in events] == list(range(1, count + 1))
    assert sorted(events[-1].stack) == sorted(versions)  # no promotion was lost
    production = registry.production()
    assert production is not None and production.version == events[-1].stack[-1]


def test_concurrent_registrations_get_distinct_versions_and_all_load(registry: ModelRegistry) -> None:
    check_concurrent_registrations(registry, 8)


def test_concurrent_promotions_are_all_recorded(registry: ModelRegistry) -> None:
    check_concurrent_promotions(registry, 6)


# --------------------------------------------------------------------------- S3


def test_s3_registry_round_trips_and_moves_the_pointer(s3_registry: ModelRegistry) -> None:
    model = fitted_model()
    first = register(s3_registry, model)
    second = register(s3_registry, fitted_model(1))

    s3_registry.promote(first.version)
    s3_registry.promote(second.version)
    restored = s3_registry.rollback()

    np.testing.assert_array_equal(s3_registry.load(first.version).predict(PROBE), model.predict(PROBE))
    assert restored == first and s3_registry.production() == first
    assert [e.action for e in s3_registry.history()] == ["promote", "promote", "rollback"]
    with pytest.raises(UnknownVersionError):
        s3_registry.get("v0003-00000000")


def test_s3_concurrent_registrations_and_promotions_lose_nothing(s3_registry: ModelRegistry) -> None:
    check_concurrent_registrations(s3_registry, 4)
    check_concurrent_promotions(s3_registry, 4)


def test_s3_damaged_artefact_is_refused(s3_registry: ModelRegistry,
                                        s3_server: tuple[str, dict[str, Any]]) -> None:  # noqa: F811
    version = register(s3_registry, fitted_model()).version
    fs = s3_registry._fs  # the test reaches past the API to damage the stored object
    path = f"{s3_registry._path}/versions/{version}/artefact/model.joblib"
    fs.pipe_file(path, fs.cat_file(path)[:-1])

    with pytest.raises(CorruptArtefactError, match="file model.joblib has sha256"):
        s3_registry.load(version)
