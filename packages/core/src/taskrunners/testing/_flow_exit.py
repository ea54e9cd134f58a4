"""Conformance mixin `FlowExitTests`: What a flow does as it ends: waits for its runs, resolves returned futures, warns of unobserved failures; nested flows."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from taskrunners import (
    TaskRunner,
    UnobservedFailureWarning,
    flow,
)
from taskrunners.lowlevel import current_runner

from . import tasks as t
from ._base import ConformanceBase

__all__ = ["FlowExitTests"]


class FlowExitTests(ConformanceBase):
    """What a flow does as it ends: waits for its runs, resolves returned futures, warns of unobserved failures; nested flows."""

    def test_flow_waits_for_runs_nobody_waited_for(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> None:
            for i in range(5):
                t.signal_and_return.submit(signals, f"ran{i}")

        self.run_flow(task_runner, body)
        assert all(t.is_set(signals, f"ran{i}") for i in range(5))

    def test_flow_waits_for_dependent_runs_nobody_waited_for(
        self, task_runner: TaskRunner, signals: str
    ) -> None:
        def body() -> None:
            gate = t.wait_and_return.submit(signals, "go", value=1)
            chain = t.add.submit(gate, 1)
            for _ in range(3):
                chain = t.add.submit(chain, 1)
            t.signal_and_return.submit(signals, "last", wait_for=[chain])
            t.signal(signals, "go")  # the flow returns while the chain is still pending

        self.run_flow(task_runner, body)
        assert t.is_set(signals, "last")

    def test_flow_resolves_returned_futures(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            return {"one": t.identity.submit(1), "many": t.add.map([1, 2], 1)}

        assert self.run_flow(task_runner, body) == {"one": 1, "many": [2, 3]}

    def test_flow_returning_a_failed_future_fails(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            return t.fail.submit("returned")

        state = self.run_flow(task_runner, body, return_state=True)
        assert state.is_failed() and isinstance(state.exception, t.ConformanceError)

    def test_unobserved_failure_is_named_in_a_warning(self, task_runner: TaskRunner) -> None:
        names = []

        def body() -> None:
            names.append(t.fail.submit("nobody looks").task_run.name)

        with pytest.warns(UnobservedFailureWarning) as record:
            self.run_flow(task_runner, body)
        assert any(names[0] in str(w.message) for w in record)

    def test_observed_failure_gives_no_warning(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            read = t.fail.submit("read")
            inspected = t.fail.submit("inspected")
            inspected.wait()
            return read.result(raise_on_failure=False), inspected.state.is_failed()

        with warnings.catch_warnings():
            warnings.simplefilter("error", UnobservedFailureWarning)
            error, failed = self.run_flow(task_runner, body)
        assert isinstance(error, t.ConformanceError) and failed

    def test_nested_flow_with_another_runner(self, task_runner: TaskRunner) -> None:
        runners = []

        @flow(task_runner="threads")
        def child(x: int) -> int:
            runners.append(current_runner())
            return int(t.add.submit(x, 1).result())

        def body() -> Any:
            runners.append(current_runner())
            before = t.add.submit(1, 1)
            inner = child(before.result())
            return t.add.submit(inner, 1).result()

        assert self.run_flow(task_runner, body) == 4
        assert runners[0] is not runners[1]
        assert type(runners[0]) is type(task_runner)
