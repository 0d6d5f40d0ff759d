"""Signal-quality metrics: cross-sectional IC and rank IC per date, their ICIR, sign accuracy and AUC.

For predictions ``p`` and realised forward returns ``y`` of the symbols present on date ``d``
(rows where both are finite):

- ``IC_d = pearson(p, y)``; ``rankIC_d = pearson(rank(p), rank(y))`` (Spearman, ties averaged);
  a date with fewer than ``min_count`` rows, or where ``p`` or ``y`` is constant, has no IC (NaN);
- ``summarise(IC)`` over dates with an IC: ``mean``, ``std`` (``ddof = 1``) and
  ``ICIR = mean / std`` (not annualised; NaN when ``std = 0`` or fewer than 2 dates);
- ``accuracy = #(sign(p) == sign(y)) / n`` over rows with ``p != 0`` and ``y != 0`` (the hit rate
  of the sign; a zero prediction makes no call);
- ``AUC = roc_auc_score(y > 0, p)`` over every row (NaN when ``y > 0`` is all true or all false).

Kernels take arrays and return arrays or floats; NaN means "undefined", never 0.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd

from amcp._typing import FloatArray
from amcp.models.base import ModelError

__all__ = ["SIGNAL_METRIC_NAMES", "daily_ic", "sign_accuracy", "signal_auc", "signal_metrics", "summarise"]

SIGNAL_METRIC_NAMES: tuple[str, ...] = (
    "ic_mean", "ic_std", "icir", "rank_ic_mean", "rank_ic_std", "rank_icir", "accuracy", "auc", "ic_dates",
)
"""Keys of :func:`signal_metrics`'s result."""


def _check(dates: npt.ArrayLike, prediction: npt.ArrayLike, label: npt.ArrayLike) -> tuple[
        npt.NDArray[np.generic], FloatArray, FloatArray]:
    d = np.asarray(dates)
    p = np.asarray(prediction, dtype=np.float64).ravel()
    y = np.asarray(label, dtype=np.float64).ravel()
    if not (d.shape == p.shape == y.shape):
        raise ModelError(f"dates {d.shape}, predictions {p.shape} and labels {y.shape} must have one shape")
    return d, p, y


def daily_ic(dates: npt.ArrayLike, prediction: npt.ArrayLike, label: npt.ArrayLike, *,
             min_count: int = 2) -> tuple[npt.NDArray[np.generic], FloatArray, FloatArray]:
    """Per-date Pearson IC and Spearman rank IC of ``prediction`` against ``label``.

    Args:
        dates: shape ``(n,)``, the date of each row (any sortable type).
        prediction: shape ``(n,)``, the signal.
        label: shape ``(n,)``, the realised forward return.
        min_count: fewest rows with both values finite for a date to have an IC.

    Returns:
        ``(unique_dates, ic, rank_ic)``, sorted by date, NaN where a date has no IC.

    Raises:
        ModelError: if the three inputs differ in shape or ``min_count < 2``.
    """
    if min_count < 2:
        raise ModelError(f"min_count must be at least 2, got {min_count}")
    d, p, y = _check(dates, prediction, label)
    frame = pd.DataFrame({"date": d, "p": p, "y": y})
    frame = frame[np.isfinite(p) & np.isfinite(y)]
    unique = np.unique(d)
    if frame.empty:
        return unique, np.full(unique.size, np.nan), np.full(unique.size, np.nan)
    grouped = frame.groupby("date", sort=True)
    frame["rp"] = grouped["p"].rank(method="average")
    frame["ry"] = grouped["y"].rank(method="average")

    def pearson(x: str, z: str) -> pd.Series:
        centred = frame[[x, z]] - grouped[[x, z]].transform("mean").to_numpy()
        parts = pd.DataFrame({"xy": centred[x] * centred[z], "xx": centred[x] ** 2, "zz": centred[z] ** 2,
                              "date": frame["date"]}).groupby("date", sort=True).sum()
        return (parts["xy"] / np.sqrt(parts["xx"] * parts["zz"])).clip(-1.0, 1.0)

    spread = grouped[["p", "y"]].max() - grouped[["p", "y"]].min()
    defined = (grouped.size() >= min_count) & (spread["p"] > 0) & (spread["y"] > 0)
    ic = pearson("p", "y").where(defined)
    rank_ic = pearson("rp", "ry").where(defined)
    ic_full = ic.reindex(unique).to_numpy(dtype=np.float64)
    rank_full = rank_ic.reindex(unique).to_numpy(dtype=np.float64)
    return unique, ic_full, rank_full


def summarise(values: npt.ArrayLike) -> dict[str, float]:
    """``mean``, ``std`` (ddof 1), ``ir = mean / std`` and ``count`` of the finite ``values``."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    mean = float(v.mean()) if v.size else math.nan
    std = float(v.std(ddof=1)) if v.size >= 2 else math.nan
    ir = mean / std if std > 0 else math.nan
    return {"mean": mean, "std": std, "ir": ir, "count": float(v.size)}


def sign_accuracy(prediction: npt.ArrayLike, label: npt.ArrayLike) -> float:
    """Share of rows with ``p != 0`` and ``y != 0`` (both finite) where ``sign(p) == sign(y)``; NaN if none."""
    p = np.asarray(prediction, dtype=np.float64).ravel()
    y = np.asarray(label, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ModelError(f"predictions {p.shape} and labels {y.shape} must have one shape")
    keep = np.isfinite(p) & np.isfinite(y) & (y != 0) & (p != 0)
    if not keep.any():
        return math.nan
    return float(np.mean(np.sign(p[keep]) == np.sign(y[keep])))


def signal_auc(prediction: npt.ArrayLike, label: npt.ArrayLike) -> float:
    """ROC AUC of ``p`` as a score for ``y > 0`` (both finite); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    p = np.asarray(prediction, dtype=np.float64).ravel()
    y = np.asarray(label, dtype=np.float64).ravel()
    if p.shape != y.shape:
        raise ModelError(f"predictions {p.shape} and labels {y.shape} must have one shape")
    keep = np.isfinite(p) & np.isfinite(y)
    positive = y[keep] > 0
    if positive.all() or not positive.any():
        return math.nan
    return float(roc_auc_score(positive, p[keep]))


def signal_metrics(dates: npt.ArrayLike, prediction: npt.ArrayLike, label: npt.ArrayLike) -> dict[str, float]:
    """Every metric of the module docstring, keyed by :data:`SIGNAL_METRIC_NAMES` (NaN = undefined)."""
    d, p, y = _check(dates, prediction, label)
    _, ic, rank_ic = daily_ic(d, p, y)
    ic_stats, rank_stats = summarise(ic), summarise(rank_ic)
    return {
        "ic_mean": ic_stats["mean"],
        "ic_std": ic_stats["std"],
        "icir": ic_stats["ir"],
        "rank_ic_mean": rank_stats["mean"],
        "rank_ic_std": rank_stats["std"],
        "rank_icir": rank_stats["ir"],
        "accuracy": sign_accuracy(p, y),
        "auc": signal_auc(p, y),
        "ic_dates": ic_stats["count"],
    }
