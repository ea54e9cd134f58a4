"""Conformance mixin `RetryAndTimeoutTests`: Retries, timeouts, and interrupts inside a task."""

from __future__ import annotations

from typing import Any

from taskrunners import (
    TaskRunCrashed,
    TaskRunner,
    TaskTimeoutError,
    UpstreamFailedError,
    wait,
)

from . import tasks as t
from ._base import ConformanceBase

__all__ = ["RetryAndTimeoutTests"]


class RetryAndTimeoutTests(ConformanceBase):
    """Retries, timeouts, and interrupts inside a task."""

    def test_retries_rerun_a_failed_task(self, task_runner: TaskRunner, signals: str) -> None:
        retried = t.count_calls.with_options(retries=2)
        once = t.count_calls.with_options(retries=1)

        def body() -> Any:
            good = retried.submit(signals, "good", succeed_on=3)
            bad = once.submit(signals, "bad", succeed_on=3)
            good.wait()
            bad.wait()
            return good.state, bad.state

        good, bad = self.run_flow(task_runner, body)
        assert good.is_completed() and good.result() == 3 and good.attempt == 3
        assert bad.is_failed() and bad.attempt == 2
        assert isinstance(bad.exception, t.ConformanceError) and bad.exception.code == 2

    def test_timeout_fails_the_run(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            sync_run = t.wait_too_long.submit(signals, "never")
            async_run = t.async_wait_too_long.submit()
            independent = t.add.submit(1, 1)
            dependent = t.add.submit(sync_run, 1)
            wait([sync_run, async_run, dependent])
            return sync_run.state, async_run.state, independent.result(), dependent.state

        sync_state, async_state, independent, dependent = self.run_flow(task_runner, body)
        for state in (sync_state, async_state):
            assert state.is_failed() and state.name == "TimedOut"
            assert isinstance(state.exception, TaskTimeoutError)
            assert isinstance(state.exception, TimeoutError)
        assert independent == 2
        assert isinstance(dependent.exception, UpstreamFailedError)

    def test_task_timeout_error_is_not_ours(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            return t.raise_timeout_error.submit().result(raise_on_failure=False)

        error = self.run_flow(task_runner, body)
        assert type(error) is TimeoutError and not isinstance(error, TaskTimeoutError)

    def test_interrupt_inside_a_task_crashes_the_run(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            crashed = t.interrupted.submit()
            crashed.wait()
            return crashed.state, t.add.submit(1, 1).result()

        state, after = self.run_flow(task_runner, body)
        assert state.is_crashed() and isinstance(state.exception, TaskRunCrashed)
        assert after == 2
