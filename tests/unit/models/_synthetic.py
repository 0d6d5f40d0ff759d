"""A synthetic panel with a planted, partly lagged and non-linear signal, for the model tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amcp.models.base import build_windows


@dataclass(frozen=True, eq=False)
class Panel:
    values: np.ndarray  # (S*T, F), rows sorted by (symbol, date)
    position: np.ndarray  # each row's date index within its symbol
    target: np.ndarray
    train_rows: np.ndarray
    test_rows: np.ndarray
    names: tuple[str, ...]

    def inputs(self, rows: np.ndarray, lookback: int) -> np.ndarray:
        return build_windows(self.values, self.position, rows, lookback)


def planted_panel(symbols: int = 40, dates: int = 260, features: int = 6, seed: int = 0,
                  missing: float = 0.05) -> Panel:
    """y = 0.5·x0[t] + 0.4·x0[t−2] + 0.3·x1·[x2 > 0] + N(0, 1); 5% of features NaN; first 180 dates train."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(symbols, dates, features))
    clean = x.copy()
    x[rng.random(x.shape) < missing] = np.nan
    lagged = np.concatenate([np.zeros((symbols, 2)), clean[:, :-2, 0]], axis=1)
    y = 0.5 * clean[..., 0] + 0.4 * lagged + 0.3 * clean[..., 1] * (clean[..., 2] > 0) + rng.normal(size=(symbols, dates))
    position = np.tile(np.arange(dates), symbols)
    return Panel(x.reshape(-1, features), position, y.reshape(-1), np.flatnonzero(position < 180),
                 np.flatnonzero(position >= 180), tuple(f"f{i}" for i in range(features)))
