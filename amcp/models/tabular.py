"""Tabular signal models: random forest, support vector regression, XGBoost and LightGBM.

Each reads one row of features per sample (``lookback = 1``; a ``(n, L, F)`` window is reduced
to its last row) and regresses the forward return. Determinism: every family takes ``seed``
and runs single-threaded unless ``n_jobs`` says otherwise (XGBoost ``hist`` and LightGBM with
``deterministic=True`` give the same model for the same data, seed and thread count).

Missing values: the random forest (scikit-learn >= 1.4), XGBoost and LightGBM route NaN down a
learned branch; the SVM imputes the training rows' per-feature medians (kept in its pipeline).

Artefacts next to ``model.json``: ``model.joblib`` (scikit-learn families), ``xgboost.ubj``
(XGBoost's binary JSON) and ``lightgbm.txt`` (LightGBM's text model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, cast

import joblib
import numpy as np

from amcp._typing import FloatArray

# The families' hyper-parameters live in amcp.config (readable without numpy or scikit-learn);
# re-exported here (__all__).
from amcp.config import (
    LightGBMParams,
    RandomForestParams,
    SupportVectorParams,
    XGBoostParams,
)
from amcp.models.base import (
    ModelError,
    ModelParams,
    as_matrix,
    check_model_args,
    check_target,
    write_manifest,
)

__all__ = [
    "LightGBMModel",
    "LightGBMParams",
    "RandomForestModel",
    "RandomForestParams",
    "SupportVectorModel",
    "SupportVectorParams",
    "XGBoostModel",
    "XGBoostParams",
]


class _TabularModel:
    """What the tabular families share: input checks, the manifest, the fitted flag."""

    family: ClassVar[str]
    params_type: ClassVar[type[ModelParams]]
    lookback: int = 1

    def __init__(self, feature_names: tuple[str, ...], params: ModelParams) -> None:
        self.feature_names = check_model_args(self.family, feature_names, params, self.params_type)
        self.params = params
        self._fitted = False

    def _train_inputs(self, X: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        matrix = as_matrix(X, len(self.feature_names))
        return matrix, check_target(y, matrix.shape[0])

    def _valid_inputs(self, X_valid: FloatArray | None, y_valid: FloatArray | None) -> tuple[FloatArray, FloatArray] | None:
        if X_valid is None or y_valid is None:
            return None
        matrix = as_matrix(X_valid, len(self.feature_names))
        target = np.asarray(y_valid, dtype=np.float64).ravel()
        keep = np.isfinite(target)
        return (matrix[keep], target[keep]) if keep.sum() >= 2 else None

    def _predict_inputs(self, X: FloatArray) -> FloatArray:
        if not self._fitted:
            raise ModelError(f"{self.family}: predict before fit (or load)")
        return as_matrix(X, len(self.feature_names))


class _SklearnModel(_TabularModel):
    """A scikit-learn estimator persisted with joblib."""

    def __init__(self, feature_names: tuple[str, ...], params: ModelParams) -> None:
        super().__init__(feature_names, params)
        self._estimator: Any = None

    def predict(self, X: FloatArray) -> FloatArray:
        """Score each sample; shape ``(n,)``."""
        matrix = self._predict_inputs(X)
        return np.asarray(self._estimator.predict(matrix), dtype=np.float64)

    def save(self, directory: str) -> None:
        """Write ``model.json`` and ``model.joblib``."""
        if not self._fitted:
            raise ModelError(f"{self.family}: save before fit")
        folder = write_manifest(directory, self, self.params, {"artefact": "model.joblib"})
        joblib.dump(self._estimator, folder / "model.joblib")

    @classmethod
    def load(cls, directory: str, manifest: dict[str, Any]) -> _SklearnModel:
        """Rebuild from a folder written by :meth:`save` (``manifest`` is its parsed ``model.json``)."""
        model = cls(tuple(manifest["feature_names"]), cls.params_type.model_validate(manifest["params"]))
        model._estimator = joblib.load(Path(directory) / "model.joblib")
        model._fitted = True
        return model


class RandomForestModel(_SklearnModel):
    """Bagged regression trees (scikit-learn), NaN handled natively by the splitter."""

    family = "random_forest"
    params_type = RandomForestParams

    def fit(self, X: FloatArray, y: FloatArray, *, X_valid: FloatArray | None = None,
            y_valid: FloatArray | None = None) -> RandomForestModel:
        """Fit on ``X``, ``y``; the validation set is not used (forests need no early stopping)."""
        from sklearn.ensemble import RandomForestRegressor

        matrix, target = self._train_inputs(X, y)
        p = cast(RandomForestParams, self.params)
        self._estimator = RandomForestRegressor(
            n_estimators=p.n_estimators, max_depth=p.max_depth, min_samples_leaf=p.min_samples_leaf,
            max_features=p.max_features, max_samples=p.max_samples, bootstrap=True, n_jobs=p.n_jobs,
            random_state=p.seed,
        ).fit(matrix, target)
        self._fitted = True
        return self


class SupportVectorModel(_SklearnModel):
    """RBF support vector regression on median-imputed, standardised features and a standardised target."""

    family = "svm"
    params_type = SupportVectorParams

    def fit(self, X: FloatArray, y: FloatArray, *, X_valid: FloatArray | None = None,
            y_valid: FloatArray | None = None) -> SupportVectorModel:
        """Fit on at most ``max_train_rows`` rows of ``X``, ``y``; the validation set is not used."""
        from sklearn.compose import TransformedTargetRegressor
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from sklearn.svm import SVR

        matrix, target = self._train_inputs(X, y)
        p = cast(SupportVectorParams, self.params)
        if matrix.shape[0] > p.max_train_rows:
            rows = np.sort(np.random.default_rng(p.seed).choice(matrix.shape[0], p.max_train_rows, replace=False))
            matrix, target = matrix[rows], target[rows]
        features = make_pipeline(
            SimpleImputer(strategy="median", keep_empty_features=True),
            StandardScaler(),
            SVR(kernel="rbf", C=p.C, epsilon=p.epsilon, gamma=p.gamma),
        )
        self._estimator = TransformedTargetRegressor(regressor=features, transformer=StandardScaler())
        self._estimator.fit(np.where(np.isinf(matrix), np.nan, matrix), target)
        self._fitted = True
        return self

    def predict(self, X: FloatArray) -> FloatArray:
        """Score each sample (infinite features are treated as missing); shape ``(n,)``."""
        matrix = self._predict_inputs(X)
        return np.asarray(self._estimator.predict(np.where(np.isinf(matrix), np.nan, matrix)), dtype=np.float64)


class XGBoostModel(_TabularModel):
    """Gradient-boosted trees (XGBoost, ``hist`` on the CPU), NaN routed natively."""

    family = "xgboost"
    params_type = XGBoostParams

    def __init__(self, feature_names: tuple[str, ...], params: ModelParams) -> None:
        super().__init__(feature_names, params)
        self._regressor: Any = None

    def fit(self, X: FloatArray, y: FloatArray, *, X_valid: FloatArray | None = None,
            y_valid: FloatArray | None = None) -> XGBoostModel:
        """Fit on ``X``, ``y``; with a validation set and ``early_stopping_rounds``, stop early on its RMSE."""
        import xgboost as xgb

        matrix, target = self._train_inputs(X, y)
        p = cast(XGBoostParams, self.params)
        valid = self._valid_inputs(X_valid, y_valid)
        self._regressor = xgb.XGBRegressor(
            n_estimators=p.n_estimators, max_depth=p.max_depth, learning_rate=p.learning_rate, subsample=p.subsample,
            colsample_bytree=p.colsample_bytree, min_child_weight=p.min_child_weight, reg_lambda=p.reg_lambda,
            tree_method="hist", device="cpu", n_jobs=p.n_jobs, random_state=p.seed,
            early_stopping_rounds=p.early_stopping_rounds if valid is not None else None,
        )
        self._regressor.fit(matrix, target, eval_set=[valid] if valid is not None else None, verbose=False)
        self._fitted = True
        return self

    def predict(self, X: FloatArray) -> FloatArray:
        """Score each sample (up to the best round when early stopping ran); shape ``(n,)``."""
        return np.asarray(self._regressor.predict(self._predict_inputs(X)), dtype=np.float64)

    def save(self, directory: str) -> None:
        """Write ``model.json`` and ``xgboost.ubj``."""
        if not self._fitted:
            raise ModelError(f"{self.family}: save before fit")
        folder = write_manifest(directory, self, self.params, {"artefact": "xgboost.ubj"})
        self._regressor.save_model(folder / "xgboost.ubj")

    @classmethod
    def load(cls, directory: str, manifest: dict[str, Any]) -> XGBoostModel:
        """Rebuild from a folder written by :meth:`save`."""
        import xgboost as xgb

        model = cls(tuple(manifest["feature_names"]), cls.params_type.model_validate(manifest["params"]))
        model._regressor = xgb.XGBRegressor()
        model._regressor.load_model(Path(directory) / "xgboost.ubj")
        model._fitted = True
        return model


class LightGBMModel(_TabularModel):
    """Gradient-boosted trees (LightGBM, leaf-wise), NaN routed natively."""

    family = "lightgbm"
    params_type = LightGBMParams

    def __init__(self, feature_names: tuple[str, ...], params: ModelParams) -> None:
        super().__init__(feature_names, params)
        self._booster: Any = None
        self._best_iteration: int | None = None

    def fit(self, X: FloatArray, y: FloatArray, *, X_valid: FloatArray | None = None,
            y_valid: FloatArray | None = None) -> LightGBMModel:
        """Fit on ``X``, ``y``; with a validation set and ``early_stopping_rounds``, stop early on its L2 loss."""
        import lightgbm as lgb

        matrix, target = self._train_inputs(X, y)
        p = cast(LightGBMParams, self.params)
        valid = self._valid_inputs(X_valid, y_valid)
        regressor = lgb.LGBMRegressor(
            n_estimators=p.n_estimators, num_leaves=p.num_leaves, max_depth=p.max_depth, learning_rate=p.learning_rate,
            subsample=p.subsample, subsample_freq=1 if p.subsample < 1 else 0, colsample_bytree=p.colsample_bytree,
            min_child_samples=p.min_child_samples, reg_lambda=p.reg_lambda, n_jobs=p.n_jobs, random_state=p.seed,
            deterministic=True, force_row_wise=True, verbose=-1,
        )
        callbacks = [lgb.early_stopping(p.early_stopping_rounds, verbose=False)] if (
            valid is not None and p.early_stopping_rounds) else None
        regressor.fit(matrix, target, eval_X=(valid[0],) if valid is not None else None,
                      eval_y=(valid[1],) if valid is not None else None, callbacks=callbacks)
        self._booster = regressor.booster_
        best = regressor.best_iteration_
        self._best_iteration = int(best) if best else None
        self._fitted = True
        return self

    def predict(self, X: FloatArray) -> FloatArray:
        """Score each sample (up to the best round when early stopping ran); shape ``(n,)``."""
        return np.asarray(self._booster.predict(self._predict_inputs(X), num_iteration=self._best_iteration),
                          dtype=np.float64)

    def save(self, directory: str) -> None:
        """Write ``model.json`` and ``lightgbm.txt`` (trees up to the best round)."""
        if not self._fitted:
            raise ModelError(f"{self.family}: save before fit")
        folder = write_manifest(directory, self, self.params, {"artefact": "lightgbm.txt"})
        self._booster.save_model(str(folder / "lightgbm.txt"), num_iteration=self._best_iteration)

    @classmethod
    def load(cls, directory: str, manifest: dict[str, Any]) -> LightGBMModel:
        """Rebuild from a folder written by :meth:`save`."""
        import lightgbm as lgb

        model = cls(tuple(manifest["feature_names"]), cls.params_type.model_validate(manifest["params"]))
        model._booster = lgb.Booster(model_file=str(Path(directory) / "lightgbm.txt"))
        model._fitted = True
        return model
