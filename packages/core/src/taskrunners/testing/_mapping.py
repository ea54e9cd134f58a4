"""Conformance mixin `MappingTests`: `.map()`: zipping, broadcasting, `unmapped`, mapping over futures."""

from __future__ import annotations

from typing import Any

from taskrunners import (
    FutureList,
    TaskRunner,
    unmapped,
)

from . import tasks as t
from ._base import ConformanceBase

__all__ = ["MappingTests"]


class MappingTests(ConformanceBase):
    """`.map()`: zipping, broadcasting, `unmapped`, mapping over futures."""

    def test_map_zips_and_broadcasts(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            zipped = t.add.map([1, 2, 3], [10, 20, 30])
            broadcast = t.add.map([1, 2, 3], 5)
            kept_whole = t.add.map([[1], [2]], unmapped([0]))
            strings = t.add.map(["a", "b"], "!")
            assert isinstance(zipped, FutureList) and len(zipped) == 3
            return zipped.result(), broadcast.result(), kept_whole.result(), strings.result()

        assert self.run_flow(task_runner, body) == ([11, 22, 33], [6, 7, 8], [[1, 0], [2, 0]], ["a!", "b!"])

    def test_map_over_a_future_and_with_wait_for(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            numbers = t.identity.submit([1, 2, 3])
            gate = t.signal_and_return.submit(signals, "gate")
            mapped = t.signal_exists.map(unmapped(signals), ["gate", "gate"], wait_for=[gate])
            return t.add.map(numbers, 1).result(), mapped.result()

        assert self.run_flow(task_runner, body) == ([2, 3, 4], [True, True])

    def test_map_of_mapped_futures(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            first = t.add.map([1, 2, 3], 1)
            second = t.add.map(first, 10)
            return t.sum_all.submit(second).result()

        assert self.run_flow(task_runner, body) == 39
