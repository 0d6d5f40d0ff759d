"""How the cycle reaches its components: directly, or (in ``actors/``) through Ray."""

from __future__ import annotations

from typing import Any, Protocol, Sequence

Call = tuple[Any, str, tuple[Any, ...]]


class Invoker(Protocol):
    def call(self, target: Any, method: str, *args: Any) -> Any:
        """Call ``target.method(*args)`` and return its result."""

    def gather(self, calls: Sequence[Call]) -> list[Any]:
        """Make several independent calls (concurrently where the invoker can); results in order."""


class LocalInvoker:
    """Plain in-process method calls (the backtest)."""

    def call(self, target: Any, method: str, *args: Any) -> Any:
        return getattr(target, method)(*args)

    def gather(self, calls: Sequence[Call]) -> list[Any]:
        return [getattr(target, method)(*args) for target, method, args in calls]
