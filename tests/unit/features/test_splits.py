"""Purged, embargoed walk-forward splits: no label window of a training date reaches its test window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from amcp.errors import DataError
from amcp.features.splits import purged_walk_forward, rows_of

DATES = pd.bdate_range("2020-01-01", periods=100).to_numpy().astype("datetime64[D]")


@st.composite
def split_parameters(draw):
    n_folds = draw(st.integers(1, 6))
    test_size = draw(st.integers(1, 20))
    train_size = draw(st.integers(1, 40))
    label_horizon = draw(st.integers(0, 10))
    embargo = draw(st.integers(0, 8))
    spare = draw(st.integers(0, 30))
    count = train_size + label_horizon + n_folds * test_size + spare
    window = draw(st.sampled_from(["expanding", "rolling"]))
    return dict(n_folds=n_folds, train_size=train_size, test_size=test_size, label_horizon=label_horizon,
                embargo=embargo, window=window), count


@settings(max_examples=300, deadline=None)
@given(split_parameters())
def test_every_fold_is_purged_embargoed_ordered_and_the_tests_tile_the_end(drawn) -> None:
    parameters, count = drawn
    dates = np.datetime64("2001-01-01") + np.arange(count)
    try:
        folds = purged_walk_forward(dates, **parameters)
    except DataError as exc:
        # only the embargo may empty a training window of valid sizes, and it must say so
        assert "embargo" in str(exc)
        return
    h, embargo = parameters["label_horizon"], parameters["embargo"]

    assert len(folds) == parameters["n_folds"]
    tests = np.concatenate([fold.test for fold in folds])
    np.testing.assert_array_equal(tests, np.arange(count - len(tests), count))  # disjoint, ordered, covering
    for k, fold in enumerate(folds):
        assert fold.train.size > 0 and (np.diff(fold.train) > 0).all()
        assert (np.diff(fold.test) == 1).all() and fold.test.size == parameters["test_size"]
        # the label window [t, t + h] of every training date ends before the test window starts
        assert (fold.train + h < fold.test[0]).all()
        assert not np.intersect1d(np.arange(fold.train.min(), fold.train.max() + h + 1), fold.test).size
        for earlier in folds[:k]:
            after = np.arange(earlier.test[-1] + 1, earlier.test[-1] + 1 + embargo)
            assert not np.intersect1d(fold.train, after).size
        if k:
            assert folds[k - 1].test[-1] < fold.test[0]
        np.testing.assert_array_equal(fold.train_dates, dates[fold.train])
        np.testing.assert_array_equal(fold.test_dates, dates[fold.test])


@settings(max_examples=100, deadline=None)
@given(split_parameters())
def test_training_keeps_every_date_that_is_neither_purged_nor_embargoed(drawn) -> None:
    parameters, count = drawn
    assume(parameters["window"] == "expanding")
    dates = np.arange(count)
    try:
        folds = purged_walk_forward(dates, **parameters)
    except DataError:
        return
    h, embargo = parameters["label_horizon"], parameters["embargo"]
    for k, fold in enumerate(folds):
        allowed = set(range(fold.test[0] - h))
        for earlier in folds[:k]:
            allowed -= set(range(earlier.test[-1] + 1, earlier.test[-1] + 1 + embargo))
        assert set(fold.train.tolist()) == allowed


def test_a_rolling_window_spans_train_size_dates_ending_at_the_purge_gap() -> None:
    folds = purged_walk_forward(DATES, n_folds=3, train_size=30, test_size=10, label_horizon=5, embargo=0,
                                window="rolling")

    assert [(f.train[0], f.train[-1], f.test[0], f.test[-1]) for f in folds] == [
        (35, 64, 70, 79), (45, 74, 80, 89), (55, 84, 90, 99)]


def test_the_embargo_drops_the_dates_right_after_an_earlier_test_window() -> None:
    folds = purged_walk_forward(DATES, n_folds=3, train_size=30, test_size=10, label_horizon=0, embargo=4)

    assert set(range(80, 84)).isdisjoint(folds[2].train) and 84 in folds[2].train
    assert 79 in folds[2].train and 70 in folds[1].train


def test_without_test_size_the_dates_after_the_first_training_window_are_split_evenly() -> None:
    folds = purged_walk_forward(DATES, n_folds=4, train_size=20, label_horizon=3)

    assert [f.test.size for f in folds] == [19] * 4 and folds[0].test[0] == 100 - 76
    assert folds[0].train[-1] == 100 - 76 - 4


@pytest.mark.parametrize(("parameters", "message"), [
    (dict(n_folds=5, train_size=60, test_size=10, label_horizon=5), "too few"),
    (dict(n_folds=2, train_size=95, label_horizon=5), "too few"),
    (dict(n_folds=0, train_size=10, test_size=5, label_horizon=1), "n_folds must be an int >= 1"),
    (dict(n_folds=2, train_size=10, test_size=0, label_horizon=1), "test_size must be an int >= 1"),
    (dict(n_folds=2, train_size=10, test_size=5, label_horizon=-1), "label_horizon must be an int >= 0"),
    (dict(n_folds=2, train_size=10, test_size=5, label_horizon=1, embargo=-2), "embargo must be an int >= 0"),
    (dict(n_folds=2, train_size=10, test_size=5, label_horizon=1, window="sliding"), "window must be"),
    (dict(n_folds=3, train_size=5, test_size=5, label_horizon=0, embargo=5, window="rolling"), "embargo of 5"),
])
def test_impossible_parameters_are_refused_with_the_reason(parameters, message) -> None:
    with pytest.raises(DataError, match=message):
        purged_walk_forward(DATES, **parameters)


def test_dates_that_are_not_strictly_increasing_are_refused() -> None:
    with pytest.raises(DataError, match="strictly increasing; date 2"):
        purged_walk_forward(DATES[[0, 1, 1, 2]], n_folds=1, train_size=1, test_size=1, label_horizon=0)


def test_rows_of_maps_date_indices_to_every_symbols_rows_of_a_long_frame() -> None:
    dates = DATES[:5]
    frame = pd.DataFrame({"date": np.tile(dates, 3), "symbol": np.repeat(["A", "B", "C"], 5)})
    frame = frame.sample(frac=1.0, random_state=1).reset_index(drop=True)

    rows = rows_of(frame["date"].to_numpy(), dates, np.array([1, 3]))

    assert sorted(frame.loc[rows, "date"].astype("datetime64[s]").tolist()) == sorted(
        pd.to_datetime(np.repeat(dates[[1, 3]], 3)).tolist())
    assert (np.diff(rows) > 0).all() and len(rows) == 6


def test_rows_of_refuses_rows_off_the_date_axis_and_indices_out_of_range() -> None:
    with pytest.raises(DataError, match="not on the date axis"):
        rows_of(np.array(["2030-01-01"], dtype="datetime64[D]"), DATES, np.array([0]))
    with pytest.raises(DataError, match="must lie in"):
        rows_of(DATES[:2], DATES, np.array([100]))
