"""The equal-weighted market proxy: point in time, symbols counted only on days they trade both sides."""

from __future__ import annotations

import numpy as np

from amcp.features.market import equal_weight_index


def test_the_equal_weight_index_compounds_the_mean_return_of_symbols_trading_on_both_days() -> None:
    close = np.array([[10.0, np.nan, 5.0],
                      [11.0, 20.0, 5.0],
                      [11.0, 22.0, np.nan],
                      [np.nan, np.nan, np.nan]])

    index = equal_weight_index(close)

    np.testing.assert_allclose(index, [1.0, 1.05, 1.05 * 1.05, 1.05 * 1.05])
