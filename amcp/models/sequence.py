"""Sequence signal models in torch: an LSTM and a Transformer encoder over each symbol's last bars.

Input: ``X`` of shape ``(n, lookback, F)``, each sample its symbol's last ``lookback`` feature
rows, oldest first (see :func:`amcp.models.base.build_windows`).

Preprocessing, learned on the training rows and saved in ``model.json``:

- NaN / infinite features → the feature's training median (:class:`~amcp.models.base.FeatureImputer`);
- ``z = clip((x - mean) / std, -5, 5)`` per feature (std 0 → 1), so raw volumes and ratios
  share one scale and a fat tail cannot blow up a gradient;
- the target is standardised the same way for training; predictions are returned in the
  target's units (``pred * std_y + mean_y``).

Training: Adam on the mean squared error for ``epochs`` epochs, mini-batches drawn in an order
fixed by ``seed`` (network initialisation and dropout are seeded too, so a CPU fit is
reproducible). With a validation set, the weights of the epoch with the lowest validation loss
are kept. ``device``: ``cpu``, ``cuda``, or ``auto`` (CUDA when torch sees a GPU, else CPU).

Artefact next to ``model.json``: ``model.pt``, the network's ``state_dict``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, cast

import numpy as np
import torch
from torch import nn

from amcp._typing import FloatArray

# The families' hyper-parameters live in amcp.config (readable without torch), re-exported
# here (__all__).
from amcp.config import LSTMParams, TransformerParams, _SequenceParams
from amcp.models.base import (
    FeatureImputer,
    ModelError,
    ModelParams,
    check_model_args,
    check_target,
    write_manifest,
)

__all__ = ["LSTMModel", "LSTMParams", "TransformerModel", "TransformerParams", "resolve_device"]

_CLIP = 5.0
_PREDICT_BATCH = 8192

NetworkWrapper = Callable[[nn.Module], nn.Module]


def resolve_device(device: str) -> torch.device:
    """``cpu``/``cuda`` as given (``cuda`` without a GPU is an error); ``auto`` picks CUDA when present.

    Raises:
        ModelError: if ``cuda`` is asked for and torch sees no GPU.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(device)


class _LSTMNetwork(nn.Module):
    def __init__(self, n_features: int, p: LSTMParams) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_features, p.hidden_size, p.num_layers, batch_first=True,
                            dropout=p.dropout if p.num_layers > 1 else 0.0)
        self.head = nn.Linear(p.hidden_size, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(x)
        return cast(torch.Tensor, self.head(output[:, -1, :]).squeeze(-1))


class _TransformerNetwork(nn.Module):
    def __init__(self, n_features: int, p: TransformerParams) -> None:
        super().__init__()
        self.project = nn.Linear(n_features, p.d_model)
        self.position = nn.Parameter(torch.zeros(p.lookback, p.d_model))
        layer = nn.TransformerEncoderLayer(p.d_model, p.nhead, p.dim_feedforward, p.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, p.num_layers, enable_nested_tensor=False)
        self.head = nn.Linear(p.d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.project(x) + self.position)
        return cast(torch.Tensor, self.head(hidden[:, -1, :]).squeeze(-1))


class _SequenceModel(ABC):
    """What both torch families share: preprocessing, the training loop, persistence."""

    family: ClassVar[str]
    params_type: ClassVar[type[_SequenceParams]]

    def __init__(self, feature_names: tuple[str, ...], params: ModelParams) -> None:
        self.feature_names = check_model_args(self.family, feature_names, params, self.params_type)
        self.params: _SequenceParams = params
        self.lookback = params.lookback
        self._network: nn.Module | None = None
        self._imputer: FeatureImputer | None = None
        self._mean = np.zeros(len(feature_names))
        self._std = np.ones(len(feature_names))
        self._y_mean = 0.0
        self._y_std = 1.0

    @abstractmethod
    def _build_network(self) -> nn.Module:
        """A freshly initialised network for this model's features and parameters."""

    # ------------------------------------------------------------------ preprocessing

    def _windows(self, X: FloatArray) -> FloatArray:
        array = np.asarray(X, dtype=np.float64)
        if array.ndim == 2 and self.lookback == 1:
            array = array[:, None, :]
        expected = (self.lookback, len(self.feature_names))
        if array.ndim != 3 or array.shape[1:] != expected:
            raise ModelError(f"{self.family}: expected X of shape (n, {expected[0]}, {expected[1]}), got {np.shape(X)}")
        return array

    def _scale(self, windows: FloatArray) -> torch.Tensor:
        if self._imputer is None:
            raise ModelError(f"{self.family}: predict before fit (or load)")
        filled = self._imputer.transform(windows)
        scaled = np.clip((filled - self._mean) / self._std, -_CLIP, _CLIP)
        return torch.from_numpy(scaled.astype(np.float32))

    def _learn_scaling(self, windows: FloatArray, target: FloatArray) -> None:
        self._imputer = FeatureImputer.fit(windows[:, -1, :])
        rows = self._imputer.transform(windows[:, -1, :])
        self._mean = rows.mean(axis=0)
        std = rows.std(axis=0)
        self._std = np.where(std > 0, std, 1.0)
        self._y_mean = float(target.mean())
        y_std = float(target.std())
        self._y_std = y_std if y_std > 0 else 1.0

    # ------------------------------------------------------------------ training

    def fit(
        self,
        X: FloatArray,
        y: FloatArray,
        *,
        X_valid: FloatArray | None = None,
        y_valid: FloatArray | None = None,
        shard: tuple[int, int] = (0, 1),
        wrap_network: NetworkWrapper | None = None,
    ) -> _SequenceModel:
        """Train on windows ``X`` (``(n, lookback, F)``) and targets ``y``.

        Args:
            X: training windows.
            y: training targets, finite.
            X_valid: validation windows; with ``y_valid``, the best epoch's weights are kept.
            y_valid: validation targets (NaN rows are dropped).
            shard: ``(rank, world_size)``: train on rows ``rank::world_size`` (data-parallel
                workers; the preprocessing is still learned from every row, so all agree).
            wrap_network: applied to the network before training, e.g.
                ``ray.train.torch.prepare_model`` (device placement and DistributedDataParallel).

        Raises:
            ModelError: if the shapes are wrong or ``y`` is not finite.
        """
        p = self.params
        windows = self._windows(X)
        target = check_target(y, windows.shape[0])
        rank, world_size = shard
        if not (world_size >= 1 and 0 <= rank < world_size):
            raise ModelError(f"{self.family}: shard must be (rank, world_size) with 0 <= rank < world_size, got {shard}")
        if p.max_train_rows is not None and windows.shape[0] > p.max_train_rows:
            rows = np.sort(np.random.default_rng(p.seed).choice(windows.shape[0], p.max_train_rows, replace=False))
            windows, target = windows[rows], target[rows]
        self._learn_scaling(windows, target)
        inputs = self._scale(windows[rank::world_size])
        labels = torch.from_numpy(((target[rank::world_size] - self._y_mean) / self._y_std).astype(np.float32))
        valid: tuple[torch.Tensor, torch.Tensor] | None = None
        if X_valid is not None and y_valid is not None:
            valid_windows = self._windows(X_valid)
            valid_target = np.asarray(y_valid, dtype=np.float64).ravel()
            keep = np.isfinite(valid_target)
            if keep.sum() >= 2:
                valid = (self._scale(valid_windows[keep]),
                         torch.from_numpy(((valid_target[keep] - self._y_mean) / self._y_std).astype(np.float32)))

        device = resolve_device(p.device)
        torch.manual_seed(p.seed)
        network = self._build_network()
        trained = wrap_network(network) if wrap_network is not None else network.to(device)
        device = next(network.parameters()).device
        optimizer = torch.optim.Adam(trained.parameters(), lr=p.learning_rate, weight_decay=p.weight_decay)
        loss_fn = nn.MSELoss()
        order_rng = torch.Generator().manual_seed(p.seed)
        best_loss, best_state = float("inf"), None
        for _ in range(p.epochs):
            trained.train()
            for batch in torch.randperm(inputs.shape[0], generator=order_rng).split(p.batch_size):
                optimizer.zero_grad()
                loss = loss_fn(trained(inputs[batch].to(device)), labels[batch].to(device))
                loss.backward()
                optimizer.step()
            if valid is not None:
                valid_loss = float(loss_fn(self._forward(network, valid[0], device), valid[1].to(device)))
                if valid_loss < best_loss:
                    best_loss, best_state = valid_loss, copy.deepcopy(network.state_dict())
        if best_state is not None:
            network.load_state_dict(best_state)
        self._network = network.eval()
        return self

    @staticmethod
    def _forward(network: nn.Module, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
        network.eval()
        with torch.no_grad():
            return torch.cat([network(chunk.to(device)) for chunk in inputs.split(_PREDICT_BATCH)])

    def predict(self, X: FloatArray) -> FloatArray:
        """Score each window of ``X``, in the target's units; shape ``(n,)``."""
        if self._network is None:
            raise ModelError(f"{self.family}: predict before fit (or load)")
        inputs = self._scale(self._windows(X))
        if inputs.shape[0] == 0:
            return np.zeros(0)
        device = next(self._network.parameters()).device
        scores = self._forward(self._network, inputs, device).double().cpu().numpy()
        return np.asarray(scores * self._y_std + self._y_mean, dtype=np.float64)

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str) -> None:
        """Write ``model.json`` (with the preprocessing state) and ``model.pt`` (the ``state_dict``)."""
        if self._network is None or self._imputer is None:
            raise ModelError(f"{self.family}: save before fit")
        state = {
            "artefact": "model.pt",
            "medians": self._imputer.medians.tolist(),
            "mean": self._mean.tolist(),
            "std": self._std.tolist(),
            "y_mean": self._y_mean,
            "y_std": self._y_std,
        }
        folder = write_manifest(directory, self, self.params, state)
        weights = {key: value.detach().cpu() for key, value in self._network.state_dict().items()}
        torch.save(weights, folder / "model.pt")

    @classmethod
    def load(cls, directory: str, manifest: dict[str, Any]) -> _SequenceModel:
        """Rebuild from a folder written by :meth:`save`; the network goes to the params' device."""
        model = cls(tuple(manifest["feature_names"]), cls.params_type.model_validate(manifest["params"]))
        state = manifest["state"]
        model._imputer = FeatureImputer(np.asarray(state["medians"], dtype=np.float64))
        model._mean = np.asarray(state["mean"], dtype=np.float64)
        model._std = np.asarray(state["std"], dtype=np.float64)
        model._y_mean, model._y_std = float(state["y_mean"]), float(state["y_std"])
        network = model._build_network()
        network.load_state_dict(torch.load(Path(directory) / "model.pt", weights_only=True))
        model._network = network.to(resolve_device(model.params.device)).eval()
        return model


class LSTMModel(_SequenceModel):
    """An LSTM signal model (see the module docstring)."""

    family = "lstm"
    params_type = LSTMParams

    def _build_network(self) -> nn.Module:
        return _LSTMNetwork(len(self.feature_names), cast(LSTMParams, self.params))


class TransformerModel(_SequenceModel):
    """A Transformer-encoder signal model (see the module docstring)."""

    family = "transformer"
    params_type = TransformerParams

    def _build_network(self) -> nn.Module:
        return _TransformerNetwork(len(self.feature_names), cast(TransformerParams, self.params))
