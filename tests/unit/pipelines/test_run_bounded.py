"""run_bounded: the bounded in-flight task loop every fan-out job shares (on a scripted stand-in for Ray)."""

from __future__ import annotations

from typing import Any

import pytest

from pipelines._common import run_bounded


class _Ref:
    def __init__(self, item: int) -> None:
        self.item = item


class _TaskError(Exception):
    """Like RayTaskError: the task's own exception is ``cause``."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("ray task error")
        self.cause = cause


class FakeRay:
    """Tasks take ``durations[item]`` units of a clock that ``wait`` advances; ``errors`` raise from ``get``."""

    def __init__(self, durations: dict[int, float], errors: dict[int, BaseException] | None = None) -> None:
        self.durations, self.errors = durations, errors or {}
        self.now = 0.0
        self.finish: dict[_Ref, float] = {}
        self.in_flight: set[_Ref] = set()
        self.max_in_flight = 0
        self.submitted: list[int] = []
        self.cancelled: list[int] = []
        self.timeouts: list[float | None] = []

    def submit(self, item: int) -> _Ref:
        ref = _Ref(item)
        self.finish[ref] = self.now + self.durations[item]
        self.in_flight.add(ref)
        self.max_in_flight = max(self.max_in_flight, len(self.in_flight))
        self.submitted.append(item)
        return ref

    def wait(self, refs: list[_Ref], num_returns: int, timeout: float | None = None) -> tuple[list[_Ref], list[_Ref]]:
        assert num_returns == 1 and set(refs) == self.in_flight
        self.timeouts.append(timeout)
        first = min(refs, key=lambda r: self.finish[r])
        if timeout is not None and self.finish[first] - self.now > timeout:
            self.now += timeout
            return [], refs
        self.now = self.finish[first]
        self.in_flight.discard(first)
        return [first], [r for r in refs if r is not first]

    def get(self, ref: _Ref) -> Any:
        if ref.item in self.errors:
            raise self.errors[ref.item]
        return f"r{ref.item}"

    def cancel(self, ref: _Ref) -> None:
        self.cancelled.append(ref.item)


def _no_error(item: int, reason: str) -> Any:
    raise AssertionError(f"unexpected failure of {item}: {reason}")


def test_results_come_in_completion_order_with_at_most_limit_tasks_in_flight() -> None:
    # item 0 runs the whole time; 1..5 finish one after the other beside it
    ray = FakeRay({0: 10, 1: 1, 2: 1, 3: 1, 4: 2, 5: 3})
    done: list[int] = []
    polls: list[float] = []
    results = run_bounded(ray, range(6), ray.submit, 2, on_error=_no_error, on_done=done.append,
                          poll=lambda: polls.append(ray.now))
    assert results == ["r1", "r2", "r3", "r4", "r5", "r0"]
    assert done == [1, 2, 3, 4, 5, 0]
    assert ray.submitted == [0, 1, 2, 3, 4, 5]
    assert ray.max_in_flight == 2
    assert polls == [1, 2, 3, 5, 8, 10]
    assert ray.timeouts == [None] * 6 and ray.cancelled == []


def test_a_limit_above_the_item_count_submits_everything_at_once() -> None:
    ray = FakeRay({0: 3, 1: 2, 2: 1})
    assert run_bounded(ray, [0, 1, 2], ray.submit, 8, on_error=_no_error) == ["r2", "r1", "r0"]
    assert ray.max_in_flight == 3
    assert run_bounded(ray, [], ray.submit, 8, on_error=_no_error) == []


def test_a_failed_task_gives_on_errors_answer_with_the_causes_first_line_and_the_rest_carry_on() -> None:
    ray = FakeRay({0: 1, 1: 2, 2: 3, 3: 4},
                  errors={1: _TaskError(ValueError("bad input\nsecond line")), 3: RuntimeError("x" * 400)})
    done: list[int] = []
    results = run_bounded(ray, range(4), ray.submit, 2, on_error=lambda item, reason: f"failed {item}: {reason}",
                          on_done=done.append)
    assert results == ["r0", "failed 1: ValueError: bad input", "r2", f"failed 3: RuntimeError: {'x' * 300}"]
    assert done == [0, 1, 2, 3]
    assert ray.cancelled == []


def test_an_empty_error_message_gives_just_the_type() -> None:
    ray = FakeRay({0: 1}, errors={0: _TaskError(KeyError())})
    assert run_bounded(ray, [0], ray.submit, 1, on_error=lambda item, reason: reason) == ["KeyError: "]


def test_when_on_error_raises_the_tasks_in_flight_are_cancelled_and_nothing_more_is_submitted() -> None:
    ray = FakeRay({0: 5, 1: 1, 2: 9, 3: 1, 4: 1}, errors={1: _TaskError(OSError("disk gone"))})
    done: list[int] = []

    def fail_fast(item: int, reason: str) -> Any:
        raise LookupError(f"task {item} failed: {reason}")

    with pytest.raises(LookupError, match=r"task 1 failed: OSError: disk gone"):
        run_bounded(ray, range(5), ray.submit, 3, on_error=fail_fast, on_done=done.append)
    assert ray.submitted == [0, 1, 2]
    assert sorted(ray.cancelled) == [0, 2]
    assert done == []


def test_a_wait_that_times_out_still_polls() -> None:
    ray = FakeRay({0: 1.2, 1: 0.2})
    polls: list[float] = []
    results = run_bounded(ray, [0, 1], ray.submit, 1, on_error=_no_error, timeout=0.5,
                          poll=lambda: polls.append(round(ray.now, 6)))
    assert results == ["r0", "r1"]
    assert ray.timeouts == [0.5] * 4
    assert polls == [0.5, 1.0, 1.2, 1.4]
