"""Conformance mixin `SubmitTests`: `.submit()`: futures, values, exceptions, states, async tasks, concurrency, nesting."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from taskrunners import (
    Future,
    StateType,
    TaskRunner,
    WaitTimeout,
    flow,
)

from . import tasks as t
from ._base import ConformanceBase, run_with_deadline

__all__ = ["SubmitTests"]


class SubmitTests(ConformanceBase):
    """`.submit()`: futures, values, exceptions, states, async tasks, concurrency, nesting."""

    def test_submit_returns_a_future_with_the_value(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            future = t.add.submit(1, 2)
            assert isinstance(future, Future)
            return future.result()

        assert self.run_flow(task_runner, body) == 3

    def test_submit_does_not_wait_for_the_run(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            future = t.wait_and_return.submit(signals, "go", value="done")
            assert not future.done()  # it cannot be: it waits for a signal we send later
            t.signal(signals, "go")
            return future.result()

        assert self.run_flow(task_runner, body) == "done"

    def test_async_task(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            return t.async_add.submit(20, 22).result()

        assert self.run_flow(task_runner, body) == 42

    def test_exception_keeps_its_type_and_message(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            future = t.fail.submit("it broke")
            with pytest.raises(t.ConformanceError) as info:
                future.result()
            assert future.state.is_failed()
            returned = future.result(raise_on_failure=False)
            return info.value, returned

        raised, returned = self.run_flow(task_runner, body)
        assert (raised.code, raised.message) == (7, "it broke")
        assert type(returned) is t.ConformanceError and returned.args == (7, "it broke")

    def test_states_move_from_running_to_completed(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            future = t.wait_and_return.submit(signals, "go", value=1, started="started")
            t.wait_signal(signals, "started")
            during = future.state
            t.signal(signals, "go")
            future.wait()
            return during, future.state, future.task_run

        during, after, run = self.run_flow(task_runner, body)
        assert during.type in (StateType.PENDING, StateType.RUNNING)
        assert not during.is_final()
        assert after.is_completed() and after.is_final() and after.result() == 1
        assert run.start_time is not None and run.end_time is not None
        assert run.start_time <= run.end_time

    def test_wait_with_timeout_does_not_raise(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            future = t.wait_and_return.submit(signals, "go", value=1)
            future.wait(timeout=0.05)
            assert not future.done()
            with pytest.raises(WaitTimeout):
                future.result(timeout=0.05)
            t.signal(signals, "go")
            return future.result()

        assert self.run_flow(task_runner, body) == 1

    def test_done_callback_runs_once_the_run_is_final(self, task_runner: TaskRunner) -> None:
        called = threading.Event()
        seen: list[Any] = []

        def on_done(future: Future[Any]) -> None:
            seen.append(future.state.result())
            called.set()

        def body() -> None:
            future = t.add.submit(1, 1)
            future.add_done_callback(on_done)
            future.wait()

        self.run_flow(task_runner, body)
        assert called.wait(self.deadline)
        assert seen == [2]

    def test_await_future_in_async_flow(self, task_runner: TaskRunner) -> None:
        @flow(task_runner=task_runner)
        async def body() -> Any:
            first = await t.add.submit(1, 2)
            second = await t.async_add.submit(first, 3)
            return second

        assert run_with_deadline(lambda: asyncio.run(body()), self.deadline) == 6

    def test_many_runs_complete(self, task_runner: TaskRunner) -> None:
        count = self.many_runs

        def body() -> Any:
            futures = [t.add.submit(i, 1) for i in range(count)]
            return [f.result() for f in futures]

        assert self.run_flow(task_runner, body) == [i + 1 for i in range(count)]

    def test_two_runs_execute_at_the_same_time(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            a = t.meet.submit(signals, "a", "b")
            b = t.meet.submit(signals, "b", "a")
            return a.result(), b.result()

        assert self.run_flow(task_runner, body) == (True, True)

    def test_nested_submission_from_a_task(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            return t.submit_and_wait.submit(5).result(), t.map_inside.submit([1, 2, 3]).result()

        assert self.run_flow(task_runner, body) == (5, [2, 3, 4])
