"""`TaskRunnerTests`: the behaviour every task runner must show, as pytest tests.

A runner's test module subclasses `TaskRunnerTests` and provides one fixture,
`task_runner`, that returns an unstarted runner::

    import pytest
    from taskrunners.testing import TaskRunnerTests
    from my_package import MyTaskRunner

    class TestMyTaskRunner(TaskRunnerTests):
        @pytest.fixture
        def task_runner(self):
            return MyTaskRunner(workers=2)

Every test runs flows on duplicates of that runner, with a hard deadline, so a broken
runner fails instead of hanging. The suite assumes the runner can execute at least two
runs at the same time (a pool of two workers is enough). Tasks synchronise through signal files (see
`tasks`), never through sleeps, so the tests hold for threads, processes and
clusters on this machine alike.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import pytest

from taskrunners import (
    Capability,
    Future,
    FutureList,
    NoActiveFlowError,
    RunnerLifecycleError,
    StateType,
    TaskRunCrashed,
    TaskRunner,
    TaskTimeoutError,
    UnobservedFailureWarning,
    UpstreamFailedError,
    WaitTimeout,
    allow_failure,
    as_completed,
    flow,
    unmapped,
    wait,
)

from taskrunners.lowlevel import current_runner

from . import tasks as t
from ._observability import ObservabilityTests

__all__ = ["Capability", "TaskRunnerTests", "requires", "run_with_deadline"]

F = TypeVar("F", bound=Callable[..., Any])


def requires(*capabilities: Capability) -> Callable[[F], F]:
    """Mark a test of the suite as needing `capabilities` of the runner."""

    def mark(test: F) -> F:
        test._requires = frozenset(capabilities)  # type: ignore[attr-defined]
        return test

    return mark


class TaskRunnerTests(ObservabilityTests):
    """Conformance tests for a `TaskRunner`. Subclass it and provide `task_runner`.

    Class attributes a runner's test class may override:

    Attributes:
        capabilities: What the runner can do beyond the basics (see `Capability`);
            `None` (the default) takes what the runner class declares in its own
            `capabilities` attribute.
        deadline: Seconds a single flow in a test may take before the test fails.
        many_runs: How many runs the "many runs" test submits.
        known_failures: Test names mapped to the reason they fail on this runner;
            each is applied as a strict xfail, so a fixed test is noticed. Added to
            those the runner class declares in `known_conformance_failures`.
    """

    capabilities: ClassVar[frozenset[Capability] | None] = None
    deadline: ClassVar[float] = 60.0
    many_runs: ClassVar[int] = 10_000
    known_failures: ClassVar[dict[str, str]] = {}

    @pytest.fixture
    def task_runner(self) -> TaskRunner:
        """Return an unstarted instance of the runner under test."""
        raise NotImplementedError(
            "subclass TaskRunnerTests and define a `task_runner` fixture (decorated with "
            "@pytest.fixture) that returns an unstarted runner"
        )

    @pytest.fixture
    def task_runner_with_one_worker(self) -> TaskRunner | None:
        """Return an unstarted runner that runs one task at a time, if it has such a setting.

        The default, `None`, skips the tests that need it.
        """
        return None

    @pytest.fixture(autouse=True)
    def _apply_capabilities_and_known_failures(self, request: pytest.FixtureRequest) -> None:
        runner = request.getfixturevalue("task_runner")  # an instance may differ from its class
        declared = self.capabilities if self.capabilities is not None else runner.capabilities
        needed: frozenset[Capability] = getattr(request.function, "_requires", frozenset())
        missing = sorted(Capability(c).value for c in set(needed) - {Capability(c) for c in declared})
        if missing:
            pytest.skip(f"the runner lacks the capability {', '.join(missing)}")
        name = getattr(request.node, "originalname", request.node.name)
        reason = {**runner.known_conformance_failures, **self.known_failures}.get(name)
        if reason is not None:
            request.applymarker(pytest.mark.xfail(reason=reason, strict=True))

    @pytest.fixture
    def signals(self, tmp_path: Any) -> str:
        """A directory for the signal files of one test."""
        return str(tmp_path)

    # -- helpers ----------------------------------------------------------------------

    def run_flow(self, task_runner: TaskRunner, body: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run `body` as a flow on `task_runner`, failing the test past `deadline`."""
        return run_with_deadline(flow(task_runner=task_runner)(body), self.deadline, *args, **kwargs)

    # -- lifecycle --------------------------------------------------------------------

    def test_duplicate_is_equal_and_distinct(self, task_runner: TaskRunner) -> None:
        copy = task_runner.duplicate()
        assert copy is not task_runner
        assert type(copy) is type(task_runner)
        assert copy == task_runner

    def test_submit_before_start_is_refused(self, task_runner: TaskRunner) -> None:
        with pytest.raises(RunnerLifecycleError, match="not started"):
            task_runner.submit(t.identity, {"x": 1})

    def test_entering_twice_is_refused(self, task_runner: TaskRunner) -> None:
        with task_runner:
            with pytest.raises(RunnerLifecycleError, match="already started"):
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

    # -- submit and results -----------------------------------------------------------

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

    # -- concurrency ------------------------------------------------------------------

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

    # -- dependencies -----------------------------------------------------------------

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

    # -- mapping ----------------------------------------------------------------------

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

    # -- waiting on many --------------------------------------------------------------

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
                    seen.append(future)
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

    # -- retries and timeouts ---------------------------------------------------------

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

    # -- flow exit --------------------------------------------------------------------

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
            for i in range(3):
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

    # -- one worker -------------------------------------------------------------------

    def test_nested_submission_with_one_worker(self, task_runner_with_one_worker: TaskRunner | None) -> None:
        if task_runner_with_one_worker is None:
            pytest.skip("no one-worker configuration given (override task_runner_with_one_worker)")

        def body() -> Any:
            return t.submit_and_wait.submit(3).result(), t.map_inside.submit([1, 2]).result()

        assert self.run_flow(task_runner_with_one_worker, body) == (3, [2, 3])

    # -- capabilities -----------------------------------------------------------------

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

    # -- resources --------------------------------------------------------------------

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


def run_with_deadline(fn: Callable[..., Any], deadline: float, *args: Any, **kwargs: Any) -> Any:
    """Call `fn(*args, **kwargs)` in a thread; fail the test if it runs past `deadline`."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append((True, fn(*args, **kwargs)))
        except BaseException as exc:  # handed back to the test thread
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="taskrunners-conformance", daemon=True)
    thread.start()
    thread.join(deadline)
    if thread.is_alive():
        pytest.fail(f"the flow did not finish within {deadline} s: the runner hangs", pytrace=False)
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def _resources() -> dict[str, int]:
    """Threads, child processes and open file descriptors of this process (Linux)."""
    me = os.getpid()
    children = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == me and fields[0] != "Z":
                children += 1
    return {
        "threads": threading.active_count(),
        "children": children,
        "files": len(os.listdir("/proc/self/fd")),
    }
