"""Conformance mixin `CapabilityTests`: Tests gated by the runner's declared capabilities (`Capability`), and the one-worker configuration."""

from __future__ import annotations

import os
from typing import Any

import pytest

from taskrunners import (
    Capability,
    TaskRunCrashed,
    TaskRunner,
)

from . import tasks as t
from ._base import ConformanceBase, requires

__all__ = ["CapabilityTests"]


class CapabilityTests(ConformanceBase):
    """Tests gated by the runner's declared capabilities (`Capability`), and the one-worker configuration."""


    def test_nested_submission_with_one_worker(self, task_runner_with_one_worker: TaskRunner | None) -> None:
        if task_runner_with_one_worker is None:
            pytest.skip("no one-worker configuration given (override task_runner_with_one_worker)")

        def body() -> Any:
            return t.submit_and_wait.submit(3).result(), t.map_inside.submit([1, 2]).result()

        assert self.run_flow(task_runner_with_one_worker, body) == (3, [2, 3])


    @requires(Capability.PARALLEL)
    def test_runs_execute_at_once_in_separate_processes(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            a = t.meet_and_report_pid.submit(signals, "a", "b")
            b = t.meet_and_report_pid.submit(signals, "b", "a")
            return a.result(), b.result()

        first, second = self.run_flow(task_runner, body)
        assert first != second
        assert os.getpid() not in (first, second)

    @requires(Capability.SURVIVES_WORKER_LOSS)
    def test_worker_loss_crashes_only_that_run(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            lost = t.exit_process.submit()
            others = [t.add.submit(i, 1) for i in range(4)]
            lost.wait()
            after = t.add.map([10, 20], 1)
            return lost.state, [f.result() for f in others], after.result()

        state, others, after = self.run_flow(task_runner, body)
        assert state.is_crashed() and isinstance(state.exception, TaskRunCrashed)
        assert others == [1, 2, 3, 4]
        assert after == [11, 21]

    @requires(Capability.SURVIVES_WORKER_LOSS)
    def test_worker_loss_is_retried_when_the_task_asks(self, task_runner: TaskRunner, signals: str) -> None:
        retried = t.exit_process_once.with_options(retries=1)

        def body() -> Any:
            return retried.submit(signals, "crashed").result()

        assert self.run_flow(task_runner, body) == "recovered"
