"""The model interface every signal model implements, and the one loader, :func:`load_model`.

A *signal model* maps features known at the close of date ``t`` to a score for each symbol,
trained to predict the symbol's forward return (higher = more attractive). Tabular families
(random forest, SVM, XGBoost, LightGBM) look at one row of features (``lookback = 1``);
sequence families (LSTM, Transformer) look at the last ``lookback`` rows of a symbol.

Model input:

- ``X`` of shape ``(n, F)`` — one row per sample, the columns in ``feature_names`` order — is
  accepted by models with ``lookback == 1``;
- ``X`` of shape ``(n, lookback, F)`` — for each sample its symbol's last ``lookback`` feature
  rows, oldest first, the sample's own row last — is accepted by every model (a tabular model
  uses the last row). :func:`build_windows` builds it from a long frame.

NaN features are allowed everywhere: tree families split on them natively, the others impute
them with the training rows' per-feature medians, which are stored with the model.

Persistence: :meth:`SignalModel.save` writes ``model.json`` (``family``, ``params``,
``feature_names``, ``lookback``, ``format_version`` and the family's preprocessing state) and one
artefact in the family's native format next to it; :func:`load_model` reads any of them back.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from amcp._typing import FloatArray, IntArray
from amcp.config import ModelParams as ModelParams
from amcp.errors import AmcpError

__all__ = [
    "check_model_args",
    "FAMILIES",
    "MODEL_FILE",
    "FeatureImputer",
    "ModelError",
    "ModelParams",
    "SignalModel",
    "build_windows",
    "create_model",
    "load_model",
    "read_manifest",
    "write_manifest",
]

MODEL_FILE = "model.json"
FORMAT_VERSION = 1

FAMILIES: Mapping[str, str] = {
    "random_forest": "amcp.models.tabular:RandomForestModel",
    "svm": "amcp.models.tabular:SupportVectorModel",
    "xgboost": "amcp.models.tabular:XGBoostModel",
    "lightgbm": "amcp.models.tabular:LightGBMModel",
    "lstm": "amcp.models.sequence:LSTMModel",
    "transformer": "amcp.models.sequence:TransformerModel",
}
"""Model family name → ``module:Class`` of its implementation (imported on first use)."""


class ModelError(AmcpError):
    """A model was built, fitted, used or loaded incorrectly."""


@runtime_checkable
class SignalModel(Protocol):
    """A trained (or trainable) model that scores symbols from their features.

    Attributes:
        family: the family name, a key of :data:`FAMILIES`.
        feature_names: the feature columns the model reads, in input order.
        lookback: bars of features one prediction needs (1 for tabular models).
    """

    family: str
    feature_names: tuple[str, ...]
    lookback: int

    def fit(
        self, X: FloatArray, y: FloatArray, *, X_valid: FloatArray | None = None, y_valid: FloatArray | None = None
    ) -> SignalModel:
        """Train on ``X`` (see the module docstring for shapes) and targets ``y`` (shape ``(n,)``); return self."""
        ...

    def predict(self, X: FloatArray) -> FloatArray:
        """Score each sample of ``X``; shape ``(n,)`` float64."""
        ...

    def save(self, directory: str) -> None:
        """Write ``model.json`` and the family's artefact into ``directory`` (created if missing)."""
        ...


def _family_class(family: str) -> Any:
    target = FAMILIES.get(family)
    if target is None:
        raise ModelError(f"unknown model family {family!r}; known families: {sorted(FAMILIES)}")
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def create_model(
    family: str, feature_names: tuple[str, ...], params: Mapping[str, Any] | ModelParams | None = None
) -> SignalModel:
    """Build an untrained model of ``family`` reading ``feature_names``.

    Args:
        family: a key of :data:`FAMILIES`.
        feature_names: the feature columns, in the order of ``X``'s last axis.
        params: the family's hyper-parameters (a mapping validated by the family's params model,
            or that model itself); None uses the family's defaults.

    Raises:
        ModelError: if the family is unknown or a parameter is invalid.
    """
    cls = _family_class(family)
    params_model = cls.params_type
    if params is None:
        validated = params_model()
    elif isinstance(params, params_model):
        validated = params
    elif isinstance(params, ModelParams):
        raise ModelError(f"{family}: expected {params_model.__name__}, got {type(params).__name__}")
    else:
        try:
            validated = params_model.model_validate(dict(params))
        except ValueError as exc:
            raise ModelError(f"{family}: invalid parameters: {exc}") from None
    model: SignalModel = cls(feature_names, validated)
    return model


def write_manifest(directory: str, model: SignalModel, params: ModelParams, state: Mapping[str, Any]) -> Path:
    """Write ``model.json`` for ``model`` into ``directory`` (created if missing); return the folder."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": FORMAT_VERSION,
        "family": model.family,
        "params": params.model_dump(mode="json"),
        "feature_names": list(model.feature_names),
        "lookback": model.lookback,
        "state": dict(state),
    }
    (folder / MODEL_FILE).write_text(json.dumps(manifest, indent=1, allow_nan=True))
    return folder


def read_manifest(directory: str) -> dict[str, Any]:
    """Read and check ``model.json`` in ``directory``.

    Raises:
        ModelError: if the file is missing, not JSON, of another format version or lacks a key.
    """
    path = Path(directory) / MODEL_FILE
    if not path.is_file():
        raise ModelError(f"no saved model in {directory}: {MODEL_FILE} not found")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON: {exc}") from None
    missing = sorted({"format_version", "family", "params", "feature_names", "lookback", "state"} - set(manifest))
    if missing:
        raise ModelError(f"{path}: missing keys {missing}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise ModelError(f"{path}: format_version {manifest['format_version']}, this amcp reads {FORMAT_VERSION}")
    return dict(manifest)


def load_model(directory: str) -> SignalModel:
    """Load a model saved by :meth:`SignalModel.save`, whatever its family.

    Raises:
        ModelError: if ``directory`` holds no valid saved model.
    """
    manifest = read_manifest(directory)
    cls = _family_class(str(manifest["family"]))
    model: SignalModel = cls.load(directory, manifest)
    return model


# --------------------------------------------------------------------------- input helpers


def check_model_args(family: str, feature_names: tuple[str, ...], params: ModelParams,
                     params_type: type[ModelParams]) -> tuple[str, ...]:
    """A family constructor's arguments checked: features named, unique; params of the family's type.

    Raises:
        ModelError: naming the family and what is wrong.
    """
    if not feature_names:
        raise ModelError(f"{family}: at least one feature is needed")
    if len(set(feature_names)) != len(feature_names):
        raise ModelError(f"{family}: feature names must be unique")
    if not isinstance(params, params_type):
        raise ModelError(f"{family}: expected {params_type.__name__}, got {type(params).__name__}")
    return tuple(feature_names)


def as_matrix(X: FloatArray, n_features: int) -> FloatArray:
    """A tabular model's view of ``X``: ``(n, F)`` as is, or the last row of each ``(n, L, F)`` window.

    Raises:
        ModelError: if ``X`` is not 2-D or 3-D or has another number of features.
    """
    array = np.asarray(X, dtype=np.float64)
    if array.ndim == 3:
        array = array[:, -1, :]
    if array.ndim != 2 or array.shape[1] != n_features:
        raise ModelError(f"expected X of shape (n, {n_features}) or (n, lookback, {n_features}), got {np.shape(X)}")
    return np.ascontiguousarray(array)


def check_target(y: FloatArray, n_rows: int) -> FloatArray:
    """``y`` as a float64 vector of ``n_rows`` finite values.

    Raises:
        ModelError: if ``y`` has another length or holds NaN or infinity.
    """
    target = np.asarray(y, dtype=np.float64).ravel()
    if target.shape != (n_rows,):
        raise ModelError(f"y has {target.size} values for {n_rows} rows of X")
    if not np.isfinite(target).all():
        raise ModelError(f"y holds {int(np.count_nonzero(~np.isfinite(target)))} non-finite values; drop those rows")
    if n_rows < 2:
        raise ModelError(f"need at least 2 training rows, got {n_rows}")
    return target


class FeatureImputer:
    """Per-feature medians of the training rows, used to fill NaN (a feature with no value at all gets 0)."""

    def __init__(self, medians: FloatArray) -> None:
        self.medians = np.asarray(medians, dtype=np.float64)

    @classmethod
    def fit(cls, X: FloatArray) -> FeatureImputer:
        """Learn the medians of ``X`` over every axis but the last (all-NaN columns get 0)."""
        flat = np.asarray(X, dtype=np.float64).reshape(-1, np.shape(X)[-1])
        with np.errstate(all="ignore"):
            finite = np.where(np.isfinite(flat), flat, np.nan)
            counts = np.count_nonzero(np.isfinite(flat), axis=0)
            medians = np.zeros(flat.shape[1])
            if counts.any():
                medians[counts > 0] = np.nanmedian(finite[:, counts > 0], axis=0)
        return cls(medians)

    def transform(self, X: FloatArray) -> FloatArray:
        """Return a copy of ``X`` with each non-finite value replaced by its feature's median."""
        array = np.array(X, dtype=np.float64, copy=True)
        bad = ~np.isfinite(array)
        if bad.any():
            array[bad] = np.broadcast_to(self.medians, array.shape)[bad]
        return array


def build_windows(values: FloatArray, position_in_symbol: IntArray, rows: IntArray, lookback: int) -> FloatArray:
    """Each requested row's window of its symbol's last ``lookback`` feature rows, oldest first.

    ``values`` holds the feature rows of every symbol, each symbol's rows contiguous and in date
    order (a frame sorted by (symbol, date)); ``position_in_symbol[i]`` is row ``i``'s index
    within its symbol (0 for the symbol's first row). A window reaching before its symbol's
    first row is NaN there (imputed by the model like any missing feature).

    Args:
        values: shape ``(N, F)``, feature rows sorted by (symbol, date).
        position_in_symbol: shape ``(N,)``, each row's index within its symbol's rows.
        rows: indices into ``values`` of the samples to build windows for.
        lookback: window length ``L >= 1``.

    Returns:
        Shape ``(len(rows), L, F)``; ``[:, -1, :]`` equals ``values[rows]``.

    Raises:
        ModelError: if ``lookback < 1`` or the shapes disagree.
    """
    if lookback < 1:
        raise ModelError(f"lookback must be at least 1, got {lookback}")
    data = np.asarray(values, dtype=np.float64)
    positions = np.asarray(position_in_symbol, dtype=np.int64)
    if data.ndim != 2 or positions.shape != (data.shape[0],):
        raise ModelError(f"values {data.shape} and position_in_symbol {positions.shape} do not match")
    index = np.asarray(rows, dtype=np.int64)
    windows = np.full((index.size, lookback, data.shape[1]), np.nan)
    for step in range(lookback):
        back = lookback - 1 - step
        known = positions[index] >= back
        windows[known, step, :] = data[index[known] - back]
    return windows
