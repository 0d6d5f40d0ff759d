"""Build strategies from their configs: one place maps a config ``kind`` to its class."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from amcp.config import (
    MeanReversionConfig,
    MLSignalConfig,
    MomentumConfig,
    MovingAverageCrossConfig,
    StrategyConfig,
)
from amcp.errors import ConfigError
from amcp.strategies.base import Strategy
from amcp.strategies.ma_cross import MovingAverageCross
from amcp.strategies.mean_reversion import MeanReversion
from amcp.strategies.ml_signal import MLSignalStrategy
from amcp.strategies.momentum import CrossSectionalMomentum

_BUILDERS: dict[type, Callable[..., Strategy]] = {
    MomentumConfig: CrossSectionalMomentum,
    MeanReversionConfig: MeanReversion,
    MovingAverageCrossConfig: MovingAverageCross,
    MLSignalConfig: MLSignalStrategy,
}


def build_strategy(config: StrategyConfig, symbols: tuple[str, ...]) -> Strategy:
    """Build the strategy ``config`` describes, trading ``config.symbols`` or, if empty, ``symbols``.

    Args:
        config: one strategy's config.
        symbols: the symbols of the data (the bar batches' columns).

    Raises:
        ConfigError: if the config is of no known kind, names symbols the data lacks, or the
            resulting universe does not suit the strategy (e.g. fewer symbols than ``top_n``).
    """
    builder = _BUILDERS.get(type(config))
    if builder is None:
        raise ConfigError(
            f"no strategy for config {type(config).__name__}; known: {sorted(c.__name__ for c in _BUILDERS)}"
        )
    symbols = tuple(symbols)
    if not symbols:
        raise ConfigError(f"strategy {config.id!r}: the data has no symbols")
    if config.symbols:
        known = set(symbols)
        unknown = [s for s in config.symbols if s not in known]
        if unknown:
            raise ConfigError(f"strategy {config.id!r}: symbols not in the data: {unknown}")
        universe = tuple(config.symbols)
    else:
        universe = symbols
    return builder(config, universe)


def build_strategies(configs: Sequence[StrategyConfig], symbols: tuple[str, ...]) -> list[Strategy]:
    """Build every strategy of ``configs`` in order.

    Raises:
        ConfigError: if two configs share an id, or as :func:`build_strategy`.
    """
    ids = [c.id for c in configs]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ConfigError(f"strategy ids must be unique, repeated: {repeated}")
    return [build_strategy(config, symbols) for config in configs]
