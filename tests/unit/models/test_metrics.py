"""IC, rank IC, ICIR, sign accuracy and AUC against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from amcp.models import ModelError
from amcp.models.metrics import daily_ic, sign_accuracy, signal_auc, signal_metrics, summarise

# date 1: p = 1,2,3 vs y = 1,3,2. Deviations (-1,0,1) and (-1,1,0): cov 1, variances 2 and 2 → IC = 1/2 (ranks equal values).
# date 2: p = 1,2,4 vs y = 1,2,10. Deviations ×3: (-4,-1,5) and (-10,-7,17): IC = 132 / sqrt(42 · 438); ranks agree → 1.
# date 3: a constant prediction → no IC.  date 4: one row → no IC.
DATES = np.array([1, 1, 1, 2, 2, 2, 3, 3, 3, 4])
PRED = np.array([1.0, 2, 3, 1, 2, 4, 7, 7, 7, 1])
LABEL = np.array([1.0, 3, 2, 1, 2, 10, 1, 2, 3, 5])
IC_2 = 132 / math.sqrt(42 * 438)


def test_daily_ic_is_pearson_and_rank_ic_is_spearman_per_date() -> None:
    dates, ic, rank_ic = daily_ic(DATES, PRED, LABEL)

    np.testing.assert_array_equal(dates, [1, 2, 3, 4])
    np.testing.assert_allclose(ic[:2], [0.5, IC_2], rtol=1e-12)
    np.testing.assert_allclose(rank_ic[:2], [0.5, 1.0], rtol=1e-12)
    assert np.isnan(ic[2:]).all() and np.isnan(rank_ic[2:]).all()


def test_rows_with_a_missing_value_are_left_out_of_their_date() -> None:
    pred = np.array([1.0, 2, 3, np.nan])
    label = np.array([1.0, 3, 2, 100.0])

    _, ic, _ = daily_ic(np.zeros(4), pred, label)

    assert ic[0] == pytest.approx(0.5)


def test_icir_is_the_mean_over_the_sample_std_of_the_dates_with_an_ic() -> None:
    metrics = signal_metrics(DATES, PRED, LABEL)

    mean = (0.5 + IC_2) / 2
    std = abs(IC_2 - 0.5) / math.sqrt(2)  # ddof = 1 over two values
    assert metrics["ic_mean"] == pytest.approx(mean) and metrics["ic_std"] == pytest.approx(std)
    assert metrics["icir"] == pytest.approx(mean / std)
    assert metrics["rank_ic_mean"] == pytest.approx(0.75) and metrics["ic_dates"] == 2
    assert math.isnan(summarise([0.3])["ir"]) and math.isnan(summarise([])["mean"])


def test_sign_accuracy_counts_only_rows_where_both_make_a_call() -> None:
    # calls: (1, .5) right, (-1, .5) wrong, (2, -1) wrong; p = 0 and y = 0 rows make none → 1/3
    assert sign_accuracy([1, -1, 2, 0, 3], [0.5, 0.5, -1, 1, 0]) == pytest.approx(1 / 3)
    assert math.isnan(sign_accuracy([0, 0], [1, -1]))


def test_auc_ranks_scores_against_positive_returns() -> None:
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of the 4 pairs ordered right → 0.75
    assert signal_auc([0.1, 0.4, 0.35, 0.8], [-0.01, -0.02, 0.01, 0.03]) == pytest.approx(0.75)
    assert math.isnan(signal_auc([0.1, 0.2], [0.01, 0.02]))


def test_inputs_of_different_lengths_are_refused() -> None:
    with pytest.raises(ModelError, match="one shape"):
        daily_ic([1, 2], [0.1], [0.2, 0.3])
