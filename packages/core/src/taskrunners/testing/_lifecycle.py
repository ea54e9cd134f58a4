"""Conformance mixin `LifecycleTests`: Starting, entering and duplicating a runner; what is refused outside a flow; nothing leaks."""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from taskrunners import (
    Future,
    NoActiveFlowError,
    RunnerLifecycleError,
    TaskRunner,
)
from taskrunners.lowlevel import current_runner

from . import tasks as t
from ._base import ConformanceBase, _resources

__all__ = ["LifecycleTests"]


class LifecycleTests(ConformanceBase):
    """Starting, entering and duplicating a runner; what is refused outside a flow; nothing leaks."""

    def test_duplicate_is_equal_and_distinct(self, task_runner: TaskRunner) -> None:
        copy = task_runner.duplicate()
        assert copy is not task_runner
        assert type(copy) is type(task_runner)
        assert copy == task_runner

    def test_submit_before_start_is_refused(self, task_runner: TaskRunner) -> None:
        with pytest.raises(RunnerLifecycleError, match="not started"):
            task_runner.submit(t.identity, {"x": 1})

    def test_entering_twice_is_refused(self, task_runner: TaskRunner) -> None:
        with task_runner, pytest.raises(RunnerLifecycleError, match="already started"):
            task_runner.__enter__()

    def test_runner_used_directly_as_context_manager(self, task_runner: TaskRunner) -> None:
        with task_runner:
            future = task_runner.submit(t.add, {"x": 1, "y": 2})
            assert isinstance(future, Future)
            assert future.result(timeout=self.deadline) == 3

    def test_flow_runs_on_a_duplicate_not_the_given_instance(self, task_runner: TaskRunner) -> None:
        seen = []

        def body() -> None:
            seen.append(current_runner())

        self.run_flow(task_runner, body)
        assert seen[0] is not task_runner and seen[0] == task_runner
        assert not task_runner.started

    def test_submit_outside_a_flow_says_how_to_fix_it(self) -> None:
        with pytest.raises(NoActiveFlowError, match="@flow"):
            t.identity.submit(1)

    def test_no_threads_processes_or_files_leak(self, task_runner: TaskRunner, signals: str) -> None:
        if not sys.platform.startswith("linux"):
            pytest.skip("counts threads, children and open files through /proc (Linux only)")

        def body() -> Any:
            return t.add.map(range(20), 1).result(), t.async_add.submit(1, 2).result()

        self.run_flow(task_runner, body)  # warms up what is made once per process
        before = _resources()
        self.run_flow(task_runner, body)
        deadline = time.monotonic() + self.deadline
        after = _resources()
        while after != before and time.monotonic() < deadline:
            time.sleep(0.05)  # children take a moment to be reaped; poll, bounded
            after = _resources()
        assert after["threads"] <= before["threads"], f"threads left behind: {after} vs {before}"
        assert after["children"] <= before["children"], f"child processes left behind: {after} vs {before}"
        assert after["files"] <= before["files"], f"open files left behind: {after} vs {before}"
