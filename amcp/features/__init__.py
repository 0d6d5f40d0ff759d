"""Point-in-time features of daily bars: the registry, the Alpha158-compatible set, technical
indicators, cross-sectional transforms, labels and leak-free walk-forward splits."""

from __future__ import annotations

from amcp.features.registry import REGISTRY, FeatureRegistry

__all__ = ["default_registry"]


def default_registry() -> FeatureRegistry:
    """The registry with every feature module of amcp imported (each registers on import)."""
    import importlib

    for module in ("amcp.features.alpha158", "amcp.features.technical", "amcp.features.cross_sectional"):
        importlib.import_module(module)
    return REGISTRY
