"""The rolling kernels against brute force over each window (numpy, scipy), NaN and inf included.

Tolerance: 1e-12 relative (1e-12 absolute near zero) — the kernels compute every value from its
own window with centred sums, as the brute force does; only the summation order differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from scipy import stats

from amcp.errors import DataError
from amcp.features import _rolling as rolling

WINDOWS = (1, 2, 5, 17)


def _series(seed: int, n: int = 400, ties: bool = False) -> np.ndarray:
    """A random walk with NaN, +inf and -inf sprinkled in (and many ties when ``ties``)."""
    rng = np.random.default_rng(seed)
    x = 100.0 + np.cumsum(rng.normal(0.0, 1.0, n))
    if ties:
        x = np.round(x / 2.0) * 2.0
    x[rng.choice(n, 12, replace=False)] = np.nan
    x[[50, 51]] = np.inf
    x[200] = -np.inf
    return x


def _brute(x: np.ndarray, window: int, fn: Callable[[np.ndarray], float]) -> np.ndarray:
    """``fn`` of each full window whose values are all finite; NaN elsewhere."""
    out = np.full(len(x), np.nan)
    for t in range(window - 1, len(x)):
        values = x[t - window + 1:t + 1]
        if np.isfinite(values).all():
            out[t] = fn(values)
    return out


def _close(actual: np.ndarray, expected: np.ndarray) -> None:
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12, equal_nan=True)


def _regression(values: np.ndarray) -> Any:
    return stats.linregress(np.arange(1.0, len(values) + 1.0), values)


SINGLE: dict[str, tuple[Callable[[np.ndarray, int], np.ndarray], Callable[[np.ndarray], float], int]] = {
    "sum": (rolling.rolling_sum, np.sum, 1),
    "mean": (rolling.rolling_mean, np.mean, 1),
    "std": (rolling.rolling_std, lambda v: float(np.std(v, ddof=1)), 2),
    "max": (rolling.rolling_max, np.max, 1),
    "min": (rolling.rolling_min, np.min, 1),
    "argmax": (rolling.rolling_argmax, lambda v: float(np.argmax(v) + 1), 1),
    "argmin": (rolling.rolling_argmin, lambda v: float(np.argmin(v) + 1), 1),
    "rank": (rolling.rolling_rank, lambda v: stats.percentileofscore(v, v[-1]) / 100.0, 1),
    "slope": (rolling.rolling_slope, lambda v: float(np.polyfit(np.arange(1.0, len(v) + 1.0), v, 1)[0]), 2),
    "resi": (rolling.rolling_resi,
             lambda v: float(v[-1] - (_regression(v).intercept + _regression(v).slope * len(v))), 2),
}


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("name", sorted(SINGLE))
def test_single_series_kernels_match_brute_force_over_each_window(name: str, ties: bool) -> None:
    kernel, reference, minimum = SINGLE[name]
    x = _series(3, ties=ties)
    for window in (w for w in WINDOWS if w >= minimum):
        _close(kernel(x, window), _brute(x, window, reference))


@pytest.mark.parametrize("q", [0.0, 0.2, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_quantile_matches_numpy_linear_quantile_across_gaps(q: float, ties: bool) -> None:
    # the sorted window is updated incrementally between gaps and rebuilt after each one
    x = _series(5, n=1500, ties=ties)
    for window in WINDOWS:
        _close(rolling.rolling_quantile(x, window, q), _brute(x, window, lambda v: float(np.quantile(v, q))))


def test_rsquare_matches_squared_correlation_with_time_and_blanks_flat_windows() -> None:
    x = _series(7)
    x[300:320] = 42.0  # a flat stretch: no R²
    for window in (2, 5, 17):
        expected = _brute(x, window, lambda v: _regression(v).rvalue ** 2 if np.ptp(v) > 0 else np.nan)
        _close(rolling.rolling_rsquare(x, window), expected)
    guarded = rolling.rolling_rsquare(x, 5, min_std=0.5)
    std = rolling.rolling_std(x, 5)
    assert np.isnan(guarded[std <= 0.5]).all()
    assert np.isfinite(guarded[std > 0.5]).all()


def test_corr_matches_numpy_corrcoef_and_blanks_windows_at_or_below_min_std() -> None:
    rng = np.random.default_rng(11)
    x = _series(9)
    y = 0.3 * np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0) + rng.normal(0.0, 1.0, len(x))
    y[[20, 333]] = np.nan
    y[100:110] = 5.0  # flat: no correlation
    for window in (2, 5, 17):
        expected = np.full(len(x), np.nan)
        for t in range(window - 1, len(x)):
            a, b = x[t - window + 1:t + 1], y[t - window + 1:t + 1]
            if np.isfinite(a).all() and np.isfinite(b).all() and np.ptp(a) > 0 and np.ptp(b) > 0:
                expected[t] = np.corrcoef(a, b)[0, 1]
        _close(rolling.rolling_corr(x, y, window), expected)
    guarded = rolling.rolling_corr(x, y, 5, min_std=1.0)
    low = (rolling.rolling_std(x, 5) <= 1.0) | (rolling.rolling_std(y, 5) <= 1.0)
    assert np.isnan(guarded[low]).all()
    assert np.isfinite(guarded[~low & np.isfinite(rolling.rolling_corr(x, y, 5))]).all()


def test_count_counts_present_values_and_is_nan_only_before_the_window_is_full() -> None:
    x = _series(13)
    for window in WINDOWS:
        expected = np.full(len(x), np.nan)
        ends = range(window - 1, len(x))
        expected[window - 1:] = [np.isfinite(x[t - window + 1:t + 1]).sum() for t in ends]
        np.testing.assert_array_equal(rolling.rolling_count(x, window), expected)


def test_a_value_depends_only_on_its_window_bit_for_bit() -> None:
    x = _series(17, ties=True)
    cut = 233
    changed = x.copy()
    changed[cut + 1:] = np.random.default_rng(1).normal(0.0, 1e6, len(x) - cut - 1)
    changed[:cut - 40] = -7.0  # bars older than every window below do not matter either
    kernels: list[Callable[[np.ndarray], np.ndarray]] = [
        *(lambda v, k=k: SINGLE[k][0](v, 17) for k in SINGLE),
        lambda v: rolling.rolling_quantile(v, 17, 0.8),
        lambda v: rolling.rolling_rsquare(v, 17),
        lambda v: rolling.rolling_corr(v, np.sqrt(np.abs(v)), 17),
    ]
    for kernel in kernels:
        np.testing.assert_array_equal(kernel(changed)[cut - 16:cut + 1], kernel(x)[cut - 16:cut + 1])


def test_every_kernel_returns_float64_of_the_input_length_and_no_inf() -> None:
    x = _series(19)
    outputs = [SINGLE[name][0](x, 5) for name in SINGLE]
    outputs += [rolling.rolling_quantile(x, 5, 0.3), rolling.rolling_rsquare(x, 5),
                rolling.rolling_corr(x, np.sqrt(np.abs(x)), 5), rolling.rolling_count(x, 5)]
    for out in outputs:
        assert out.dtype == np.float64 and out.shape == x.shape
        assert not np.isinf(out).any()


def test_a_window_longer_than_the_series_gives_all_nan() -> None:
    x = np.arange(4.0)
    assert np.isnan(rolling.rolling_mean(x, 5)).all()
    assert np.isnan(rolling.rolling_quantile(x, 5, 0.5)).all()
    assert rolling.rolling_mean(np.empty(0), 3).shape == (0,)


@pytest.mark.parametrize("call", [
    lambda: rolling.rolling_mean(np.ones(5), 0),
    lambda: rolling.rolling_mean(np.ones(5), 2.5),  # type: ignore[arg-type]
    lambda: rolling.rolling_mean(np.ones(5), True),  # type: ignore[arg-type]
    lambda: rolling.rolling_std(np.ones(5), 3, ddof=3),
    lambda: rolling.rolling_slope(np.ones(5), 1),
    lambda: rolling.rolling_corr(np.ones(5), np.ones(4), 3),
    lambda: rolling.rolling_corr(np.ones(5), np.ones(5), 3, min_std=-1.0),
    lambda: rolling.rolling_quantile(np.ones(5), 3, 1.5),
    lambda: rolling.rolling_max(np.ones((5, 2, 2)), 3),
], ids=["window0", "float-window", "bool-window", "ddof", "slope-window1", "corr-lengths", "corr-min-std",
        "quantile-q", "3-d"])
def test_bad_arguments_raise_data_error_naming_the_problem(call: Callable[[], object]) -> None:
    with pytest.raises(DataError, match="rolling"):
        call()
