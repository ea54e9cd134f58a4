"""Conformance mixin `CapabilityTests`: Tests gated by the runner's declared capabilities (`Capability`), and the one-worker configuration."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from taskrunners import (
    Capability,
    TaskRunCrashed,
    TaskRunner,
    wait,
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

    @requires(Capability.IN_PROCESS)
    def test_runs_share_the_flows_process_memory_and_context(self, task_runner: TaskRunner) -> None:
        event = threading.Event()
        event.set()

        def body() -> Any:
            token = t.CONTEXT_PROBE.set("set in the flow")
            try:
                return t.in_process_probe.submit(event).result()
            finally:
                t.CONTEXT_PROBE.reset(token)

        pid, context_value, event_seen = self.run_flow(task_runner, body)
        assert pid == os.getpid()
        assert context_value == "set in the flow"
        assert event_seen  # the very object, not a copy: a copied Event would not pickle

    @requires(Capability.NATIVE_DEPENDENCIES)
    def test_a_large_result_goes_worker_to_worker_not_through_the_flow(
        self, task_runner: TaskRunner, signals: str
    ) -> None:
        size = 4 * 2**20  # large: no runner inlines it into the state it sends home

        def body() -> Any:
            big = t.make_tripwire.submit(signals, os.getpid(), size)
            received = t.tripwire_size.submit(big).result()
            # Checked before the flow ends: a runner may bring held values home then.
            return received, t.is_set(signals, t.TRIPWIRE_SIGNAL)

        received, unpickled_here = self.run_flow(task_runner, body)
        assert received == size
        assert not unpickled_here, "the upstream result was unpickled in the flow's process"

    @requires(Capability.RESOURCE_REQUESTS)
    def test_resource_requests_limit_what_runs_at_once(
        self,
        resource_limited_runner: tuple[TaskRunner, Callable[[], AbstractContextManager[Any]]] | None,
        signals: str,
    ) -> None:
        if resource_limited_runner is None:
            pytest.skip("no resource-limited configuration given (override resource_limited_runner)")
        runner, request = resource_limited_runner

        def body() -> Any:
            free = [t.meet.submit(signals, "free-a", "free-b"), t.meet.submit(signals, "free-b", "free-a")]
            met = [f.result() for f in free]  # without a request, two runs run at once
            with request():
                runs = {name: t.hold_slot.submit(signals, name) for name in ("a", "b")}
            holder = _first_started(signals, ("a", "b"), self.deadline)
            waiter = "b" if holder == "a" else "a"
            runs[waiter].wait(timeout=0.3)  # it must not start while `holder` holds the unit
            held_back = not t.is_set(signals, f"{waiter}-started")
            t.signal(signals, f"{holder}-go")
            t.wait_signal(signals, f"{waiter}-started")
            t.signal(signals, f"{waiter}-go")
            wait(list(runs.values()))
            return met, held_back, runs["a"].state.is_completed(), runs["b"].state.is_completed()

        met, held_back, first_done, second_done = self.run_flow(runner, body)
        assert met == [True, True]
        assert held_back, "two runs that each asked for the only unit of a resource ran at once"
        assert first_done and second_done


def _first_started(directory: str, names: tuple[str, ...], timeout: float) -> str:
    """The first of `names` whose `<name>-started` signal exists (polled, bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in names:
            if t.is_set(directory, f"{name}-started"):
                return name
        time.sleep(0.002)
    pytest.fail(f"none of {names} started within {timeout} s")
