"""Joining the Ray cluster: one way for every job and Serve app to connect."""

from __future__ import annotations

import os

__all__ = ["connect_ray"]


def connect_ray(address: str | None, namespace: str) -> bool:
    """Connect to ``address``/RAY_ADDRESS or start a local Ray; return whether we started it.

    ``"local"`` always starts a new local Ray, even where another runs on this machine.
    """
    import ray

    target = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return False
    ray.init(
        address=target,
        namespace=namespace,
        include_dashboard=False if target in (None, "local") else None,
        log_to_driver=True,
        configure_logging=False,
    )
    return target in (None, "local")
