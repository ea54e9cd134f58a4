"""Conformance mixin `WaitingTests`: Waiting on many runs: `wait`, `as_completed`, `FutureList.result`."""

from __future__ import annotations

from typing import Any

import pytest

from taskrunners import (
    FutureList,
    TaskRunner,
    WaitTimeout,
    as_completed,
    wait,
)

from . import tasks as t
from ._base import ConformanceBase

__all__ = ["WaitingTests"]


class WaitingTests(ConformanceBase):
    """Waiting on many runs: `wait`, `as_completed`, `FutureList.result`."""

    def test_as_completed_yields_in_completion_order(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            futures = [t.wait_and_return.submit(signals, f"go{i}", value=i) for i in range(2)]
            order = []
            release = iter([1, 0])
            t.signal(signals, f"go{next(release)}")
            for future in as_completed(futures, timeout=self.deadline):
                order.append(future.result())
                following = next(release, None)
                if following is not None:
                    t.signal(signals, f"go{following}")
            return order

        assert self.run_flow(task_runner, body) == [1, 0]

    def test_as_completed_timeout_names_unfinished(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            done = t.identity.submit(1)
            blocked = t.wait_and_return.submit(signals, "go")
            done.wait()
            seen = []
            with pytest.raises(WaitTimeout, match=r"1 \(of 2\)"):
                for future in as_completed([done, blocked], timeout=0.1):
                    seen.append(future)  # noqa: PERF402 - collects until the timeout raises
            t.signal(signals, "go")
            return seen == [done]

        assert self.run_flow(task_runner, body) is True

    def test_wait_returns_done_and_not_done(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            done = t.identity.submit(1)
            blocked = t.wait_and_return.submit(signals, "go")
            done.wait()
            result = wait([done, blocked], timeout=0.1)
            t.signal(signals, "go")
            everything = wait([done, blocked])
            return result, everything, done, blocked

        result, everything, done, blocked = self.run_flow(task_runner, body)
        assert result.done == {done} and result.not_done == {blocked}
        assert everything.done == {done, blocked} and not everything.not_done

    def test_future_list_result_is_fail_fast(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            futures = FutureList([t.wait_and_return.submit(signals, "go"), t.fail.submit("fast")])
            with pytest.raises(t.ConformanceError):
                futures.result()  # must raise although the first run still waits
            still_running = not futures[0].done()
            t.signal(signals, "go")
            return still_running, futures.result(raise_on_failure=False)

        still_running, results = self.run_flow(task_runner, body)
        assert still_running
        assert results[0] is None and isinstance(results[1], t.ConformanceError)
