"""Deliberately broken task runners, to prove that the conformance suite can fail.

Each one is the real `ThreadPoolTaskRunner` with one bug of a kind that a runner
plugin could plausibly ship. `test_suite_can_fail.py` runs the suite against each and
checks that the tests aimed at that bug fail, while tests unrelated to it pass.

Not a test module (pytest does not collect it): the suite imports it by name, with
this folder on `PYTHONPATH`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from taskrunners import Future, State, StateType, Task
from taskrunners.lowlevel import PreparedRun
from taskrunners_threads import ThreadPoolTaskRunner

__all__ = ["DropsExceptionsRunner", "DuplicateIsSelfRunner", "IgnoresWaitForRunner"]


class DropsExceptionsRunner(ThreadPoolTaskRunner):
    """Reports every FAILED run as COMPLETED with the value `None`.

    The bug of a runner that catches the task's exception on its worker and sends back
    only "done". Crashed and cancelled runs are reported as they are.
    """

    def prepare(
        self, task: Task[Any, Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> Any:
        return _ExceptionDroppingCall(super().prepare(task, parameters, wait_for))


class _ExceptionDroppingCall:
    """A `PreparedRun` whose `run_here` turns a failure into a completion; the rest delegated."""

    def __init__(self, run: PreparedRun) -> None:
        self.run = run

    def __getattr__(self, name: str) -> Any:
        return getattr(self.run, name)

    def run_here(self) -> None:
        run = self.run
        state = run.spec.execute(run.upstream_states(), run.set_state)
        if state.type is StateType.FAILED:
            state = State(StateType.COMPLETED, data=None)
        run.set_state(state)


class IgnoresWaitForRunner(ThreadPoolTaskRunner):
    """Drops `wait_for`: a run starts without waiting for the runs it should follow.

    Upstream runs passed as arguments are still waited for (their values are needed).
    """

    def submit(
        self, task: Task[Any, Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> Future[Any]:
        return super().submit(task, parameters)


class DuplicateIsSelfRunner(ThreadPoolTaskRunner):
    """`duplicate()` returns the runner itself, so flow runs share (and restart) it."""

    def duplicate(self) -> DuplicateIsSelfRunner:
        return self
