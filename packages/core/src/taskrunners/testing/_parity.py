"""`ParityTests`: what every runner must do for code ported from Prefect.

Methods as tasks and flows, tasks that return States, States given as arguments, state
hooks, run names and tags, `retry_condition_fn`, and a `FutureList.result(timeout=)`
that also bounds the fetching of values that stay on a cluster. A mixin of
`TaskRunnerTests`: it uses that class's fixtures and `run_flow`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest

from taskrunners import (
    Capability,
    StateType,
    TaskRunCrashed,
    TaskRunner,
    UpstreamFailedError,
    WaitTimeout,
    allow_failure,
    flow,
    tags,
)
from taskrunners.states import Completed, Failed

from . import parity_tasks as p
from . import tasks as t
from ._base import ConformanceBase, requires

__all__ = ["ParityTests"]


class ParityTests(ConformanceBase):
    """Prefect-parity behaviour that every runner must show (see the module docstring)."""

    # -- methods ----------------------------------------------------------------------

    def test_methods_as_tasks_through_an_instance_and_the_class(self, task_runner: TaskRunner) -> None:
        account = p.Account(10)

        def body() -> Any:
            return (
                account.add.submit(1).result(),
                p.Account.add.submit(account, 2).result(),
                account.add_async.submit(3).result(),
                account.add.map([4, 5]).result(),
                account.describe.submit(6).result(),
                p.Account.describe.submit(7).result(),
                account.double.submit(8).result(),
                p.Account.double.submit(9).result(),
                account.add(100),  # called directly, in the flow
                p.Account.add(account, 200),
            )

        assert self.run_flow(task_runner, body) == (
            11,
            12,
            13,
            [14, 15],
            "Account:6",
            "Account:7",
            16,
            18,
            110,
            210,
        )

    def test_methods_as_flows(self, task_runner: TaskRunner) -> None:
        account = p.Account(1)
        flows = account.total.with_options(task_runner=task_runner)
        labelled = p.Account.label.with_options(task_runner=task_runner)
        assert flows([1, 2, 3]) == 9
        assert labelled(5) == "Account-Account:5"

    @requires(Capability.IN_PROCESS)
    def test_self_is_neither_copied_nor_searched(self, task_runner: TaskRunner) -> None:
        account = p.Account(0)
        out: dict[str, Any] = {}

        def body() -> None:
            holds_future = t.identity.submit(1)
            account.notes.append(holds_future)  # a future inside `self` stays a future
            out["same"] = account.itself.submit().result() is account
            out["untouched"] = account.notes[0] is holds_future

        self.run_flow(task_runner, body)
        assert out == {"same": True, "untouched": True}

    # -- returned States and State arguments --------------------------------------------

    def test_a_task_that_returns_a_state_ends_in_it(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            futures = [p.returns_state.submit(kind, 7) for kind in ("completed", "failed", "cancelled")]
            for future in futures:
                future.wait()
            return [
                (f.state.type, f.state.message, f.result(raise_on_failure=False) if i == 0 else None)
                for i, f in enumerate(futures)
            ]

        completed, failed, cancelled = self.run_flow(task_runner, body)
        assert completed == (StateType.COMPLETED, "done", 7)
        assert failed[:2] == (StateType.FAILED, "gave up on 7")
        assert cancelled[:2] == (StateType.CANCELLED, "stopped")

    def test_a_flow_that_returns_futures_ends_in_their_aggregate(self, task_runner: TaskRunner) -> None:
        @flow(task_runner=task_runner)
        def several() -> Any:
            return [t.add.submit(1, 1), t.fail.submit("one"), t.fail.submit("two")]

        state = cast(Any, several)(return_state=True)
        assert state.is_failed() and state.message == "2/3 states failed."
        values = state.result(raise_on_failure=False)
        assert values[0] == 2 and isinstance(values[1], t.ConformanceError)

        @flow(task_runner=task_runner)
        def returns_cancelled() -> Any:
            return p.returns_state.submit("cancelled")

        assert cast(Any, returns_cancelled)(return_state=True).is_cancelled()

    def test_states_given_as_arguments_pass_their_values(self, task_runner: TaskRunner) -> None:
        def body() -> Any:
            single = t.add.submit(Completed(data=1), 2)
            nested = t.sum_all.submit([Completed(data=1), {"k": Completed(data=2)}["k"]])
            mapped = t.add.map([Completed(data=10), Completed(data=20)], 1)
            over_a_state = t.add.map(Completed(data=[1, 2]), 100)
            broken = Failed(data=ValueError("no"))
            refused = t.add.submit(broken, 1)
            allowed = t.identity.submit(allow_failure(broken))
            refused.wait()
            return (
                single.result(),
                nested.result(),
                mapped.result(),
                over_a_state.result(),
                refused.state.exception,
                allowed.result(),
            )

        single, nested, mapped, over_a_state, refused, allowed = self.run_flow(task_runner, body)
        assert (single, nested, mapped, over_a_state) == (3, 3, [11, 21], [101, 102])
        assert isinstance(refused, UpstreamFailedError)
        assert isinstance(allowed, ValueError) and str(allowed) == "no"

    # -- hooks, names, tags, retry conditions -------------------------------------------

    def test_state_hooks_fire_in_the_flows_process(self, task_runner: TaskRunner, signals: str) -> None:
        seen: list[tuple[str, str, int]] = []

        def record(task: Any, task_run: Any, state: Any) -> None:
            seen.append((state.type.value, task_run.name, os.getpid()))

        succeeds = t.add.with_options(on_completion=[record], on_failure=[record])
        fails = t.fail.with_options(on_failure=[record], on_completion=[record])
        crashes = t.interrupted.with_options(on_crashed=[record])
        running = t.noop.with_options(on_running=[p.write_running_signal], tags={f"dir:{signals}"})

        def body() -> Any:
            futures = [succeeds.submit(1, 2), fails.submit("x"), crashes.submit(), running.submit()]
            for future in futures:
                future.wait()
                future.state  # noqa: B018 - observed: no UnobservedFailureWarning
            # a hook has run by the time the run's future is final
            return [f.task_run.name for f in futures[:3]], len(seen)

        names, seen_at_end = self.run_flow(task_runner, body)
        assert seen_at_end == 3
        assert sorted(seen) == sorted(
            [
                ("COMPLETED", names[0], os.getpid()),
                ("FAILED", names[1], os.getpid()),
                ("CRASHED", names[2], os.getpid()),
            ]
        )
        assert [name.split("-")[:2] for name in os.listdir(signals)] == [["running", "1"]]

    def test_task_run_names_and_tags_reach_the_run(self, task_runner: TaskRunner) -> None:
        named = p.run_name_inside.with_options(task_run_name="inside-x")
        templated = t.add.with_options(task_run_name="add-{x}-{y}")
        by_callable = p.run_name_inside.with_options(task_run_name=lambda: "called")

        def body() -> Any:
            with tags("outer"), tags("inner"):
                tagged = p.tags_inside.submit()
            return (
                named.submit().result(),
                [f.task_run.name for f in templated.map([1, 2], 3)],
                by_callable.submit().result(),
                tagged.result(),
                sorted(tagged.task_run.tags),
            )

        assert self.run_flow(task_runner, body) == (
            "inside-x",
            ["add-1-3", "add-2-3"],
            "called",
            ["inner", "outer"],
            ["inner", "outer"],
        )

    def test_retry_condition_fn_can_refuse_retries(self, task_runner: TaskRunner, signals: str) -> None:
        refused = t.count_calls.with_options(retries=3, retry_condition_fn=p.never_retry)

        def body() -> Any:
            future = refused.submit(signals, "calls", succeed_on=3)
            future.wait()
            return future.state.type, future.state.attempt

        assert self.run_flow(task_runner, body) == (StateType.FAILED, 1)
        assert Path(signals, "calls").read_text().count("x") == 1

    # -- results that stay on a cluster -------------------------------------------------

    @requires(Capability.NATIVE_DEPENDENCIES)
    def test_future_list_result_timeout_bounds_fetching_values(
        self, task_runner: TaskRunner, signals: str
    ) -> None:
        def body() -> Any:
            futures = p.slow_to_fetch.map([signals, signals], "release", os.getpid())
            futures.wait()
            assert all(f.done() for f in futures)
            try:
                with pytest.raises(WaitTimeout, match="fetched"):
                    futures.result(timeout=0.5)  # final runs, but their values cannot arrive
                with pytest.raises(WaitTimeout, match="fetched"):
                    futures[0].result(timeout=0.2)  # one future alike
            finally:
                t.signal(signals, "release")
            return len(futures.result(timeout=60)[0].payload)

        assert self.run_flow(task_runner, body) == 1_000_000

    def test_interrupted_run_is_crashed_and_its_hook_sees_it(self, task_runner: TaskRunner) -> None:
        states: list[Any] = []
        crashes = t.interrupted.with_options(on_crashed=lambda task, run, state: states.append(state))

        def body() -> Any:
            future = crashes.submit()
            future.wait()
            return future.state.is_crashed()

        assert self.run_flow(task_runner, body) is True
        assert len(states) == 1 and isinstance(states[0].exception, TaskRunCrashed)
