"""The cycle's invoker over Ray actor handles: one remote call per hop, gathers in parallel."""

from __future__ import annotations

from typing import Any, Sequence

import ray

from amcp.engine.invoker import Call


class RayInvoker:
    """Calls ``handle.method.remote(*args)`` and waits; ``gather`` submits all calls first."""

    def __init__(self, timeout_s: float | None = 300.0) -> None:
        self.timeout_s = timeout_s

    def call(self, target: Any, method: str, *args: Any) -> Any:
        return ray.get(getattr(target, method).remote(*args), timeout=self.timeout_s)

    def gather(self, calls: Sequence[Call]) -> list[Any]:
        refs = [getattr(target, method).remote(*args) for target, method, args in calls]
        return ray.get(refs, timeout=self.timeout_s)
