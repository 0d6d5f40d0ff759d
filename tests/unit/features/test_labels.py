"""Labels: forward returns and López de Prado's triple barrier, checked against a bar-by-bar oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from amcp.errors import DataError
from amcp.features.labels import forward_returns, rolling_volatility, triple_barrier


def _oracle(close, high, low, horizon, upper, lower, scale):
    """The triple barrier written as the textbook loop, one bar at a time."""
    n = len(close)
    labels, hits = [], []
    for t in range(n):
        if not (np.isfinite(close[t]) and close[t] > 0 and np.isfinite(scale[t]) and scale[t] > 0):
            labels.append(0)
            hits.append(-1)
            continue
        up, down = close[t] * (1 + upper * scale[t]), close[t] * (1 - lower * scale[t])
        label, hit = 0, -1
        for j in range(t + 1, min(t + horizon, n - 1) + 1):
            if low[j] <= down:
                label, hit = -1, j
                break
            if high[j] >= up:
                label, hit = 1, j
                break
        if hit == -1 and t + horizon < n:
            hit = t + horizon
        labels.append(label)
        hits.append(hit)
    return np.array(labels, dtype=np.int8), np.array(hits, dtype=np.int64)


def _path(seed: int, n: int):
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    high = close * np.exp(np.abs(rng.normal(0, 0.01, n)))
    low = close * np.exp(-np.abs(rng.normal(0, 0.01, n)))
    return close, high, low


def test_forward_returns_are_the_close_h_bars_ahead_over_todays_close_and_nan_at_the_end() -> None:
    close = np.array([10.0, 11.0, 12.1, np.nan, 13.0, 0.0, 14.0])

    result = forward_returns(close, 2)

    expected = [12.1 / 10 - 1, np.nan, 13.0 / 12.1 - 1, np.nan, 14.0 / 13.0 - 1, np.nan, np.nan]
    np.testing.assert_allclose(result, expected, equal_nan=True)


def test_forward_returns_of_a_panel_treat_each_column_on_its_own() -> None:
    panel = np.array([[1.0, 4.0], [2.0, 2.0], [4.0, 1.0]])

    result = forward_returns(panel, 1)

    np.testing.assert_allclose(result, [[1.0, -0.5], [1.0, -0.5], [np.nan, np.nan]], equal_nan=True)


def test_forward_returns_with_a_horizon_past_the_data_are_all_unknown() -> None:
    assert np.isnan(forward_returns(np.array([1.0, 2.0]), 5)).all()


@pytest.mark.parametrize("horizon", [0, -1, 1.5, True])
def test_forward_returns_refuse_a_horizon_that_is_not_a_positive_int(horizon) -> None:
    with pytest.raises(DataError, match="horizon"):
        forward_returns(np.ones(5), horizon)


def test_the_upper_barrier_touched_by_a_high_labels_plus_one_at_that_bar() -> None:
    close = np.array([100.0, 101.0, 102.0, 101.0, 100.0])
    high = np.array([100.0, 103.0, 105.5, 101.0, 100.0])  # bar 2's high reaches +5%
    low = close - 0.5

    label, hit = triple_barrier(close, high, low, horizon=3, upper=0.05, lower=0.05)

    assert label[0] == 1 and hit[0] == 2


def test_the_lower_barrier_touched_by_a_low_labels_minus_one() -> None:
    close = np.array([100.0, 99.0, 98.0, 99.0])
    high = close + 0.5
    low = np.array([99.5, 94.9, 97.0, 98.0])

    label, hit = triple_barrier(close, high, low, horizon=2, upper=0.05, lower=0.05)

    assert (label[0], hit[0]) == (-1, 1)


def test_a_bar_touching_both_barriers_counts_as_the_lower_one() -> None:
    close = np.array([100.0, 100.0, 100.0])
    high = np.array([100.0, 110.0, 100.0])
    low = np.array([100.0, 90.0, 100.0])

    label, hit = triple_barrier(close, high, low, horizon=2, upper=0.05, lower=0.05)

    assert (label[0], hit[0]) == (-1, 1)


def test_no_touch_within_the_horizon_is_zero_at_the_vertical_barrier_and_unknown_near_the_end() -> None:
    close = np.full(6, 100.0)
    high, low = close + 1, close - 1

    result = triple_barrier(close, high, low, horizon=3, upper=0.05, lower=0.05)

    np.testing.assert_array_equal(result.label, np.zeros(6, dtype=np.int8))
    np.testing.assert_array_equal(result.hit_index, [3, 4, 5, -1, -1, -1])
    np.testing.assert_array_equal(result.known, [True, True, True, False, False, False])


def test_a_touch_before_the_data_ends_is_known_even_when_the_vertical_barrier_is_not() -> None:
    close = np.array([100.0, 100.0, 100.0])
    high = np.array([100.0, 100.0, 120.0])
    low = close - 1

    label, hit = triple_barrier(close, high, low, horizon=10, upper=0.1, lower=0.1)

    assert (label[0], hit[0]) == (1, 2) and (label[1], hit[1]) == (1, 2) and hit[2] == -1


def test_an_unusable_entry_close_has_an_unknown_label() -> None:
    close = np.array([np.nan, 0.0, 100.0, 100.0, 100.0])
    label, hit = triple_barrier(close, close + 1, close - 1, horizon=1, upper=0.5, lower=0.5)
    assert list(hit[:2]) == [-1, -1] and list(label[:2]) == [0, 0] and hit[2] == 3


def test_an_infinite_barrier_is_never_touched() -> None:
    close = np.array([100.0, 300.0, 1.0])
    label, hit = triple_barrier(close, close, close, horizon=2, upper=math.inf, lower=math.inf)
    assert label[0] == 0 and hit[0] == 2


def test_volatility_scales_the_barrier_distance() -> None:
    close = np.array([100.0, 100.0, 100.0])
    high = np.array([100.0, 104.0, 100.0])
    low = close - 1

    narrow = triple_barrier(close, high, low, horizon=2, upper=1.0, lower=1.0, volatility=np.full(3, 0.03))
    wide = triple_barrier(close, high, low, horizon=2, upper=1.0, lower=1.0, volatility=np.full(3, 0.05))

    assert narrow.label[0] == 1 and wide.label[0] == 0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), horizon=st.integers(1, 12),
       upper=st.floats(0.005, 0.2), lower=st.floats(0.005, 0.2), scaled=st.booleans())
def test_the_vectorised_triple_barrier_equals_the_bar_by_bar_loop(seed, n, horizon, upper, lower, scaled) -> None:
    close, high, low = _path(seed, n)
    rng = np.random.default_rng(seed + 1)
    gaps = rng.random(n) < 0.1
    high[gaps], low[gaps] = np.nan, np.nan
    volatility = rng.uniform(0.5, 2.0, n) if scaled else None

    label, hit = triple_barrier(close, high, low, horizon=horizon, upper=upper, lower=lower, volatility=volatility)

    expected_label, expected_hit = _oracle(close, high, low, horizon, upper, lower,
                                           volatility if scaled else np.ones(n))
    np.testing.assert_array_equal(label, expected_label)
    np.testing.assert_array_equal(hit, expected_hit)
    assert ((hit == -1) | ((hit > np.arange(n)) & (hit <= np.arange(n) + horizon))).all()


def test_triple_barrier_refuses_mismatched_arrays_and_bad_barriers() -> None:
    with pytest.raises(DataError, match="one length"):
        triple_barrier(np.ones(3), np.ones(4), np.ones(3), horizon=1, upper=0.1, lower=0.1)
    with pytest.raises(DataError, match="lower must be a number > 0"):
        triple_barrier(np.ones(3), np.ones(3), np.ones(3), horizon=1, upper=0.1, lower=0.0)
    with pytest.raises(DataError, match="upper must be a number > 0"):
        triple_barrier(np.ones(3), np.ones(3), np.ones(3), horizon=1, upper=math.nan, lower=0.1)


def test_rolling_volatility_uses_only_the_last_window_returns() -> None:
    close, _, _ = _path(3, 40)
    window = 5

    result = rolling_volatility(close, window)

    returns = np.diff(np.log(close))
    assert np.isnan(result[:window]).all()
    for t in range(window, 40):
        assert result[t] == pytest.approx(np.std(returns[t - window : t], ddof=1))
    poisoned = close.copy()
    poisoned[30:] = 1e6
    np.testing.assert_array_equal(rolling_volatility(poisoned, window)[:30], result[:30])
