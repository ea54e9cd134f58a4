"""Conformance mixin `DependencyTests`: Futures as arguments, `wait_for`, failed upstreams and `allow_failure`."""

from __future__ import annotations

from typing import Any

from taskrunners import (
    TaskRunner,
    UpstreamFailedError,
    allow_failure,
    wait,
)

from . import tasks as t
from ._base import ConformanceBase

__all__ = ["DependencyTests"]


class DependencyTests(ConformanceBase):
    """Futures as arguments, `wait_for`, failed upstreams and `allow_failure`."""

    def test_future_as_argument_passes_its_value(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            one = t.add.submit(0, 1)
            two = t.add.submit(one, one)
            return t.add.submit(two, one).result()

        assert self.run_flow(task_runner, body) == 3

    def test_futures_nested_in_collections_and_dataclasses(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            a = t.identity.submit(1)
            b = t.identity.submit("b")
            argument = {
                "list": [a, [b]],
                "tuple": (a, b),
                "set": {a},
                b: "key",
                "pair": t.Pair(a, [b]),
            }
            return t.identity.submit(argument).result()

        received = self.run_flow(task_runner, body)
        assert received["list"] == [1, ["b"]]
        assert received["tuple"] == (1, "b")
        assert received["set"] == {1}
        assert received["b"] == "key"
        assert received["pair"] == t.Pair(1, ["b"])

    def test_wait_for_orders_runs_without_passing_data(self, task_runner: TaskRunner, signals: str) -> None:
        def body() -> Any:
            first = t.signal_and_return.submit(signals, "first-done")
            second = t.signal_exists.submit(signals, "first-done", wait_for=[first])
            return second.result()

        assert self.run_flow(task_runner, body) is True

    def test_wait_for_holds_a_run_until_its_upstream_is_final(
        self, task_runner: TaskRunner, signals: str
    ) -> None:
        def body() -> Any:
            first = t.wait_and_return.submit(signals, "go", value=1)
            second = t.signal_and_return.submit(signals, "second-ran", wait_for=[first])
            second.wait(timeout=0.2)  # it must not start while `first` waits for "go"
            held = not second.done() and not t.is_set(signals, "second-ran")
            t.signal(signals, "go")
            second.wait()
            return held, first.state.is_completed(), second.state.is_completed()

        assert self.run_flow(task_runner, body) == (True, True, True)

    def test_failed_upstream_gives_a_final_state_naming_it(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            upstream = t.fail.submit("upstream broke")
            downstream = t.add.submit(upstream, 1)
            after = t.add.submit(downstream, 1)  # the failure cascades
            ordered = t.noop.submit(wait_for=[upstream])
            wait([downstream, after, ordered])
            states = [f.state for f in (downstream, after, ordered)]
            return upstream.task_run.name, downstream.task_run.name, states

        upstream_name, downstream_name, states = self.run_flow(task_runner, body)
        downstream, after, ordered = states
        for state in states:
            assert state.is_final() and state.is_failed()
            assert isinstance(state.exception, UpstreamFailedError)
        assert upstream_name in str(downstream.exception)
        assert downstream_name in str(after.exception)
        assert upstream_name in str(ordered.exception)

    def test_allow_failure_runs_and_receives_the_exception(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            upstream = t.fail.submit("expected")
            as_argument = t.identity.submit(allow_failure(upstream))
            in_wait_for = t.add.submit(1, 1, wait_for=[allow_failure(upstream)])
            return as_argument.result(), in_wait_for.result()

        received, value = self.run_flow(task_runner, body)
        assert isinstance(received, t.ConformanceError) and received.message == "expected"
        assert value == 2
