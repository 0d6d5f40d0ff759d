"""Group commit: concurrent callers' requests processed together, one batch at a time.

The live OMS pays two durable commits and a broker round trip per submit. Callers that arrive
while a batch is being processed queue up; the next batch takes all of them (up to a maximum),
so the two commits are shared — as a database's group commit shares one log flush among the
transactions that wait for it. Each caller still gets its own result (or exception) and
returns as soon as its own batch is done.

There is no extra thread: the first waiting caller whose request is not done becomes the
leader, processes batches until its own request is done, then hands leadership on. Batches are
processed one at a time, under ``lock`` (the lock other entry points of the service take, so a
batch never interleaves with, say, a kill switch or a reconciliation).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from amcp.errors import ExecutionError

__all__ = ["GroupCommit"]

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class _Slot(Generic[_Item, _Result]):
    """One caller's request and, once processed, its result or exception."""

    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: _Item) -> None:
        self.item = item
        self.done = False
        self.result: _Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[_Item, _Result]):
    """Process concurrent requests in batches with ``process`` (see the module docstring).

    Args:
        process: takes a batch of requests, returns one result per request, in order. If it
            raises, every caller of that batch gets the exception.
        lock: held while a batch is processed.
        max_batch: the most requests in one batch.

    Raises:
        ExecutionError: if ``max_batch`` is not a positive int.
    """

    def __init__(self, process: Callable[[Sequence[_Item]], Sequence[_Result]], lock: threading.RLock,
                 *, max_batch: int = 64) -> None:
        if type(max_batch) is not int or max_batch < 1:
            raise ExecutionError(f"max_batch must be an int >= 1, got {max_batch!r}")
        self._process = process
        self._lock = lock
        self._max_batch = max_batch
        self._queue: deque[_Slot[_Item, _Result]] = deque()
        self._changed = threading.Condition()
        self._leading = False
        self.batches = 0  # batches processed (for metrics and tests)
        self.largest_batch = 0

    def run(self, item: _Item) -> _Result:
        """Queue ``item``, wait for its batch, and return its result (or raise its exception)."""
        slot: _Slot[_Item, _Result] = _Slot(item)
        with self._changed:
            self._queue.append(slot)
            while not slot.done and self._leading:
                self._changed.wait()
            if not slot.done:
                self._leading = True
        if not slot.done:
            self._lead(slot)
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]  # set when done without an error

    def _lead(self, own: _Slot[_Item, _Result]) -> None:
        """Process batches until ``own`` is done, then let a waiting caller lead."""
        try:
            while not own.done:
                with self._changed:
                    count = min(len(self._queue), self._max_batch)
                    batch = [self._queue.popleft() for _ in range(count)]
                self._run_batch(batch)
        finally:
            with self._changed:
                self._leading = False
                self._changed.notify_all()

    def _run_batch(self, batch: list[_Slot[_Item, _Result]]) -> None:
        try:
            with self._lock:
                results = list(self._process([slot.item for slot in batch]))
            if len(results) != len(batch):
                raise ExecutionError(f"group commit: {len(batch)} requests but {len(results)} results")
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for slot in batch:
                slot.error = exc
        else:
            for slot, result in zip(batch, results):
                slot.result = result
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(batch))
        with self._changed:
            for slot in batch:
                slot.done = True
            self._changed.notify_all()
