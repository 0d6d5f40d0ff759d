"""Every public kernel of ``_rolling`` and ``_indicators`` on a (T, N) panel equals, column by column
and bit for bit, the 1-D call on that column."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from amcp.errors import DataError
from amcp.features import _indicators as indicators
from amcp.features import _rolling as rolling

WINDOWS = (1, 2, 5, 20, 301)  # 301 > T


def _panel(t: int = 300, n: int = 7, seed: int = 0) -> np.ndarray:
    """Random walks with NaN gaps, ±inf, zero runs, constant stretches and ties in some columns."""
    rng = np.random.default_rng(seed)
    x = 100.0 + np.cumsum(rng.normal(size=(t, n)), axis=0)
    if n > 1:
        x[t // 5: t // 5 + 3, 1] = np.nan
        x[t // 2, 1] = np.nan
        x[-1, 1] = np.nan
    if n > 2:
        x[t // 3, 2] = np.inf
        x[min(t - 1, t // 3 + 7), 2] = -np.inf
    if n > 3:
        x[t // 4: t // 4 + 25, 3] = 0.0
        x[: min(t, 10), 3] = 0.0
    if n > 4:
        x[t // 2: t // 2 + 30, 4] = x[t // 2, 4]
    if n > 5:
        x[:, 5] = np.round(x[:, 5] / 3.0)  # ties
        x[t // 6: t // 6 + 5, 5] = -x[t // 6: t // 6 + 5, 5]  # negatives
    if n > 6:
        x[: min(t, 30), 6] = np.nan  # all-NaN when T is short
    return x


def _partner(x: np.ndarray) -> np.ndarray:
    """A second panel of the same shape, correlated with ``x``, with gaps of its own."""
    rng = np.random.default_rng(1)
    y = 0.5 * x + rng.normal(size=x.shape)
    y[x.shape[0] // 7, 0] = np.nan
    if x.shape[1] > 4:
        y[:, 4] = np.where(np.arange(x.shape[0]) % 40 < 20, 3.0, y[:, 4])  # flat stretches
    return y


# name -> list of (call(*arrays) -> result, how many panel arguments)
def _calls(window: int) -> dict[str, list[tuple[Callable[..., object], int]]]:
    w = window
    w2 = max(window, 2)
    return {
        "rolling_sum": [(lambda x: rolling.rolling_sum(x, w), 1)],
        "rolling_mean": [(lambda x: rolling.rolling_mean(x, w), 1)],
        "rolling_std": [(lambda x: rolling.rolling_std(x, w2), 1),
                        (lambda x: rolling.rolling_std(x, w, ddof=0), 1)],
        "rolling_max": [(lambda x: rolling.rolling_max(x, w), 1)],
        "rolling_min": [(lambda x: rolling.rolling_min(x, w), 1)],
        "rolling_argmax": [(lambda x: rolling.rolling_argmax(x, w), 1)],
        "rolling_argmin": [(lambda x: rolling.rolling_argmin(x, w), 1)],
        "rolling_quantile": [(lambda x, q=q: rolling.rolling_quantile(x, w, q), 1)
                             for q in (0.0, 0.3, 0.5, 1.0)],
        "rolling_rank": [(lambda x: rolling.rolling_rank(x, w), 1)],
        "rolling_slope": [(lambda x: rolling.rolling_slope(x, w2), 1)],
        "rolling_rsquare": [(lambda x: rolling.rolling_rsquare(x, w2), 1),
                            (lambda x: rolling.rolling_rsquare(x, w2, min_std=2e-5), 1)],
        "rolling_resi": [(lambda x: rolling.rolling_resi(x, w2), 1)],
        "rolling_corr": [(lambda x, y: rolling.rolling_corr(x, y, w2), 2),
                         (lambda x, y: rolling.rolling_corr(x, y, w2, min_std=2e-5), 2)],
        "rolling_count": [(lambda x: rolling.rolling_count(x, w), 1)],
        "exp_smooth": [(lambda x: indicators.exp_smooth(x, w, 2.0 / (w + 1.0)), 1),
                       (lambda x: indicators.exp_smooth(x, w, 1.0 / w), 1)],
        "wilder_sum": [(lambda x: indicators.wilder_sum(x, w), 1)],
        "rolling_age_of_max": [(lambda x: indicators.rolling_age_of_max(x, w), 1)],
        "rolling_age_of_min": [(lambda x: indicators.rolling_age_of_min(x, w), 1)],
        "rolling_cov": [(lambda x, y: indicators.rolling_cov(x, y, w), 2)],
        "rolling_mean_abs_dev": [(lambda x: indicators.rolling_mean_abs_dev(x, w), 1)],
        "rolling_moments": [(lambda x: indicators.rolling_moments(x, w), 1)],
        "rolling_nanmean": [(lambda x: indicators.rolling_nanmean(x, w, max(1, w // 2)), 1)],
        "lag": [(lambda x: indicators.lag(x, w), 1), (lambda x: indicators.lag(x), 1),
                (lambda x: indicators.lag(x, 0), 1)],
        "safe_div": [(lambda x, y: indicators.safe_div(x, y), 2),
                     (lambda x: indicators.safe_div(x, float(w)), 1),
                     (lambda x: indicators.safe_div(x, 0.0), 1)],
        "safe_log": [(lambda x: indicators.safe_log(x), 1)],
        "true_range": [(lambda x, y: indicators.true_range(np.fmax(x, y), np.fmin(x, y), x), 2)],
    }


PUBLIC = sorted(set(rolling.__all__) | set(indicators.__all__))


def test_every_public_kernel_has_a_panel_test() -> None:
    assert sorted(_calls(5)) == PUBLIC


def _assert_columns_match(call: Callable[..., object], arrays: list[np.ndarray]) -> None:
    result = call(*arrays)
    parts = result if isinstance(result, tuple) else (result,)
    for part in parts:
        assert isinstance(part, np.ndarray) and part.shape == arrays[0].shape and part.dtype == np.float64
    for j in range(arrays[0].shape[1]):
        column = call(*[np.ascontiguousarray(a[:, j]) for a in arrays])
        column_parts = column if isinstance(column, tuple) else (column,)
        assert len(column_parts) == len(parts)
        for part, expected in zip(parts, column_parts, strict=True):
            assert expected.shape == (arrays[0].shape[0],)
            np.testing.assert_array_equal(part[:, j], expected)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("name", PUBLIC)
def test_panel_equals_each_column_bit_for_bit(name: str, window: int) -> None:
    x = _panel()
    y = _partner(x)
    for call, arity in _calls(window)[name]:
        _assert_columns_match(call, [x, y][:arity])


@pytest.mark.parametrize("shape", [(300, 1), (3, 7), (1, 4), (0, 3), (40, 0)],
                         ids=["N=1", "T<window", "T=1", "T=0", "N=0"])
@pytest.mark.parametrize("name", PUBLIC)
def test_panel_edge_shapes(name: str, shape: tuple[int, int]) -> None:
    t, n = shape
    x = _panel(t, n, seed=2) if t and n else np.empty(shape)
    y = _partner(x) if t and n else np.empty(shape)
    for call, arity in _calls(5)[name]:
        _assert_columns_match(call, [x, y][:arity])


@pytest.mark.parametrize("name", PUBLIC)
def test_strided_fortran_panels_match_their_contiguous_copy(name: str) -> None:
    base = _panel(120, 7, seed=3)
    strided = np.asfortranarray(base)[:, ::2]  # Fortran order, strided columns
    y = _partner(base)[:, ::2]
    for call, arity in _calls(7)[name]:
        got = call(*[strided, y][:arity])
        want = call(*[np.ascontiguousarray(strided), np.ascontiguousarray(y)][:arity])
        got_parts = got if isinstance(got, tuple) else (got,)
        want_parts = want if isinstance(want, tuple) else (want,)
        for g, e in zip(got_parts, want_parts, strict=True):
            np.testing.assert_array_equal(g, e)


def test_lag_shifts_down_each_column_never_across() -> None:
    x = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(indicators.lag(x, 1),
                                  [[np.nan] * 3, [0, 1, 2], [3, 4, 5], [6, 7, 8]])
    assert np.isnan(indicators.lag(x, 4)).all() and np.isnan(indicators.lag(x, 9)).all()


def test_safe_div_keeps_scalar_denominators() -> None:
    x = _panel(50, 7)
    expected = np.where(np.isfinite(x / 2.0), x / 2.0, np.nan)
    np.testing.assert_array_equal(indicators.safe_div(x, 2.0), expected)
    assert np.isnan(indicators.safe_div(x, 0.0)).all()


@pytest.mark.parametrize("call", [
    lambda: rolling.rolling_mean(np.ones((5, 2, 2)), 3),
    lambda: rolling.rolling_mean(np.float64(1.0), 3),
    lambda: rolling.rolling_quantile(np.ones((5, 2, 1)), 3, 0.5),
    lambda: rolling.rolling_corr(np.ones((5, 2)), np.ones((5, 3)), 3),
    lambda: rolling.rolling_corr(np.ones((5, 2)), np.ones(5), 3),
    lambda: rolling.rolling_mean(np.ones((5, 2)), 0),
], ids=["3-d", "0-d", "quantile-3-d", "corr-shapes", "corr-ndim", "window0"])
def test_rolling_rejects_bad_panels_with_data_error(call: Callable[[], object]) -> None:
    with pytest.raises(DataError, match="rolling"):
        call()


@pytest.mark.parametrize("call", [
    lambda: indicators.exp_smooth(np.ones((5, 2, 2)), 3, 0.5),
    lambda: indicators.wilder_sum(np.float64(1.0), 3),
    lambda: indicators.rolling_nanmean(np.ones((5, 2, 2)), 3, 1),
    lambda: indicators.rolling_age_of_max(np.ones((5, 2, 2)), 3),
    lambda: indicators.rolling_moments(np.ones((5, 2, 2)), 3),
    lambda: indicators.rolling_cov(np.ones((5, 2)), np.ones((5, 3)), 3),
    lambda: indicators.lag(np.ones((5, 2, 2))),
], ids=["exp_smooth-3-d", "wilder-0-d", "nanmean-3-d", "age-3-d", "moments-3-d", "cov-shapes", "lag-3-d"])
def test_indicators_reject_bad_panels_with_data_error(call: Callable[[], object]) -> None:
    with pytest.raises(DataError, match=r"1-D|differ"):
        call()
