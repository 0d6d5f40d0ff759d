"""Leak-free walk-forward splits: purged and embargoed, on a panel's date axis.

A label at date index ``t`` with horizon ``h`` is computed from dates ``t .. t+h`` (its *label
window*, see :mod:`amcp.features.labels`). Training on a row whose label window reaches into the
test window would let the model see test-period prices, so :func:`purged_walk_forward`:

* lays ``n_folds`` test windows of ``test_size`` consecutive dates end to end, the last ending at
  the last date (together they cover the last ``n_folds · test_size`` dates, each date once);
* trains fold ``k`` on dates strictly before its test window: all of them (``"expanding"``) or
  the last ``train_size`` (``"rolling"``), counted before the purge gap;
* **purges** every training date ``t`` whose label window ``[t, t + label_horizon]`` overlaps the
  test window, i.e. the last ``label_horizon`` dates before it;
* **embargoes** the ``embargo`` dates right after every earlier test window: they are dropped
  from the training dates of every later fold (López de Prado, *Advances in Financial ML*, 7.4.2:
  features and labels right after a test period are serially correlated with it, so a model
  evaluated there should not later be trained on them as if independent).

Indices refer to the *date axis* (sorted unique dates); a long frame holds many symbols' rows on
one date, so :func:`rows_of` maps date indices to the rows of such a frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from amcp._typing import IntArray
from amcp.errors import DataError

__all__ = ["Fold", "purged_walk_forward", "rows_of"]

Window = Literal["expanding", "rolling"]


@dataclass(frozen=True, eq=False)
class Fold:
    """One walk-forward fold: indices into the date axis, and those dates.

    Attributes:
        train: ascending date indices to train on (purged and embargoed).
        test: the ascending, consecutive date indices of the test window.
        train_dates: ``dates[train]``.
        test_dates: ``dates[test]``.
    """

    train: IntArray
    test: IntArray
    train_dates: npt.NDArray[np.datetime64]
    test_dates: npt.NDArray[np.datetime64]


def purged_walk_forward(
    dates: npt.ArrayLike,
    *,
    n_folds: int,
    train_size: int,
    test_size: int | None = None,
    label_horizon: int,
    embargo: int = 0,
    window: Window = "expanding",
) -> list[Fold]:
    """Walk-forward folds over ``dates`` with purging and embargo (see the module docstring).

    Args:
        dates: the date axis, strictly increasing (e.g. a panel's session dates).
        n_folds: test windows, >= 1.
        train_size: for ``"rolling"``, the dates each training window spans; for
            ``"expanding"``, the fewest the first fold's training window may span. Counted before
            the purge gap, so the window ends ``label_horizon`` dates before the test window.
        test_size: dates per test window; ``None`` splits everything after the first training
            window and its purge gap into ``n_folds`` equal windows (the remainder, fewer than
            ``n_folds`` dates, goes to the first training window).
        label_horizon: bars a label looks ahead (``[t, t + label_horizon]`` is its window), >= 0.
        embargo: dates after each test window dropped from later training sets, >= 0.
        window: ``"expanding"`` (train on all earlier dates) or ``"rolling"`` (the last
            ``train_size``).

    Returns:
        The folds in time order.

    Raises:
        DataError: if ``dates`` is not 1-D and strictly increasing, a size is out of range, the
            dates are too few for the first training window, its purge gap and the test windows,
            or the embargo leaves a fold with no training date.
    """
    axis = np.asarray(dates)
    if axis.ndim != 1:
        raise DataError(f"purged_walk_forward: dates must be 1-D, got shape {axis.shape}")
    if axis.size > 1 and not bool((axis[1:] > axis[:-1]).all()):
        first = int(np.flatnonzero(~(axis[1:] > axis[:-1]))[0]) + 1
        raise DataError(f"purged_walk_forward: dates must be strictly increasing; date {first} ({axis[first]}) "
                        f"is not after {axis[first - 1]}")
    _check_int("n_folds", n_folds, 1)
    _check_int("train_size", train_size, 1)
    _check_int("label_horizon", label_horizon, 0)
    _check_int("embargo", embargo, 0)
    if window not in ("expanding", "rolling"):
        raise DataError(f"purged_walk_forward: window must be 'expanding' or 'rolling', got {window!r}")
    count = axis.size
    head = train_size + label_horizon
    if test_size is None:
        test_size = (count - head) // n_folds
        if test_size < 1:
            raise DataError(
                f"purged_walk_forward: {count} dates are too few for a training window of {train_size}, "
                f"a purge gap of {label_horizon} and {n_folds} test windows of at least one date")
    _check_int("test_size", test_size, 1)
    first_test = count - n_folds * test_size
    if first_test < head:
        raise DataError(
            f"purged_walk_forward: {count} dates are too few: the first training window ({train_size}) "
            f"and its purge gap ({label_horizon}) need {head} dates before {n_folds} test windows of "
            f"{test_size} ({n_folds * test_size} dates), {head + n_folds * test_size} in all")
    embargoed = np.zeros(count, dtype=bool)
    folds: list[Fold] = []
    for k in range(n_folds):
        test_start = first_test + k * test_size
        test = np.arange(test_start, test_start + test_size, dtype=np.int64)
        train_end = test_start - label_horizon  # exclusive: t + label_horizon < test_start
        train_start = 0 if window == "expanding" else train_end - train_size
        span = np.arange(train_start, train_end, dtype=np.int64)
        train = span[~embargoed[span]]
        if train.size == 0:
            raise DataError(
                f"purged_walk_forward: fold {k} has no training date left: the embargo of {embargo} "
                f"after the previous test window covers its whole training window of {span.size} dates")
        folds.append(Fold(train, test, axis[train], axis[test]))
        embargoed[test_start + test_size : test_start + test_size + embargo] = True
    return folds


def rows_of(row_dates: npt.ArrayLike, dates: npt.ArrayLike, date_indices: IntArray) -> IntArray:
    """The rows of a long frame whose date is one of ``dates[date_indices]``.

    Args:
        row_dates: each row's date (any order, many rows per date), comparable with ``dates``.
        dates: the date axis the indices refer to, strictly increasing.
        date_indices: indices into ``dates`` (e.g. ``fold.train``).

    Returns:
        The matching row positions, ascending.

    Raises:
        DataError: if a row's date is not on the date axis, or an index is out of range.
    """
    axis = np.asarray(dates)
    rows = np.asarray(row_dates).astype(axis.dtype, copy=False)
    wanted = np.asarray(date_indices, dtype=np.int64)
    if wanted.size and (wanted.min() < 0 or wanted.max() >= axis.size):
        raise DataError(f"rows_of: date indices must lie in [0, {axis.size}), got {wanted.min()}..{wanted.max()}")
    position = np.searchsorted(axis, rows)
    inside = position < axis.size
    found = np.zeros(rows.shape, dtype=bool)
    found[inside] = axis[position[inside]] == rows[inside]
    if not found.all():
        missing = rows[~found]
        raise DataError(f"rows_of: {missing.size} rows have dates not on the date axis, e.g. {missing[0]}")
    selected = np.zeros(axis.size, dtype=bool)
    selected[wanted] = True
    return np.flatnonzero(selected[position]).astype(np.int64)


def _check_int(name: str, value: object, least: int) -> None:
    if type(value) is not int or value < least:
        raise DataError(f"purged_walk_forward: {name} must be an int >= {least}, got {value!r}")
