"""Interrupts in the core: the grace period, what an interrupted runner refuses, runs
waiting on upstream runs, and the SIGTERM handler a flow installs (main thread only,
only while it runs, never over the program's own)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable
from typing import Any

import pytest
from taskrunners import Future, RunnerLifecycleError, Task, TaskRunner, Terminated, flow, task
from taskrunners.lowlevel import PreparedRun

LONG = 30.0


@task
def add(x: int, y: int) -> int:
    return x + y


class StartedRunner(TaskRunner):
    """Treats every run as started, and finishes it only on `finish()` (a run that
    outlasts the grace period when nobody calls it)."""

    def __init__(self) -> None:
        self.runs: list[PreparedRun] = []
        self.shutdowns: list[bool] = []

    def duplicate(self) -> StartedRunner:
        return StartedRunner()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StartedRunner)

    def submit(
        self, task: Task[Any, Any], parameters: dict[str, Any], wait_for: Iterable[Any] | None = None
    ) -> Future[Any]:
        run = self.prepare(task, parameters, wait_for)
        self.runs.append(run)
        return run.future

    def shutdown(self, interrupted: bool) -> None:
        self.shutdowns.append(interrupted)


def test_runs_that_outlast_the_grace_period_end_crashed_saying_so() -> None:
    runner = StartedRunner()
    runner.shutdown_grace = 0.05
    with pytest.raises(KeyboardInterrupt), runner:
        future = runner.submit(add, {"x": 1, "y": 2})
        raise KeyboardInterrupt
    message = str(future.state.exception)
    assert future.state.is_crashed()
    assert (
        "interrupted by SIGINT (Ctrl-C), and the run did not finish within the 0.05 s grace period" in message
    )
    assert runner.shutdowns == [True]


def test_a_run_that_finishes_within_the_grace_period_completes() -> None:
    runner = StartedRunner()
    runner.shutdown_grace = LONG
    with pytest.raises(KeyboardInterrupt), runner:
        future = runner.submit(add, {"x": 1, "y": 2})
        threading.Timer(0.01, lambda: runner.runs[0].run_here()).start()  # a worker finishing it
        raise KeyboardInterrupt
    assert future.result() == 3


def test_runs_waiting_for_upstream_runs_end_crashed_and_never_start() -> None:
    runner = StartedRunner()
    runner.shutdown_grace = 0.05
    with pytest.raises(KeyboardInterrupt), runner:
        upstream = runner.submit(add, {"x": 1, "y": 2})
        downstream = runner.submit(add, {"x": upstream, "y": 1})
        raise KeyboardInterrupt
    assert "SIGINT (Ctrl-C) before the run started" in str(downstream.state.exception)
    assert "grace period" in str(upstream.state.exception)


def test_an_interrupted_runner_takes_no_new_runs() -> None:
    refused: list[BaseException] = []

    class Submitting(StartedRunner):
        def shutdown(self, interrupted: bool) -> None:  # as a running task would, meanwhile
            try:
                self.submit(add, {"x": 1, "y": 1})
            except RunnerLifecycleError as exc:
                refused.append(exc)

    runner = Submitting()
    runner.shutdown_grace = 0
    with pytest.raises(KeyboardInterrupt), runner:
        raise KeyboardInterrupt
    assert "takes no new runs ('add'): the flow was interrupted by SIGINT (Ctrl-C)" in str(refused[0])


def test_the_grace_period_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKRUNNERS_SHUTDOWN_GRACE", "0.01")
    runner = StartedRunner()
    with pytest.raises(KeyboardInterrupt), runner:
        future = runner.submit(add, {"x": 1, "y": 2})
        raise KeyboardInterrupt
    assert "within the 0.01 s grace period" in str(future.state.exception)


@pytest.mark.parametrize("bad", [-1, "soon", float("nan"), True])
def test_a_bad_grace_period_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="shutdown_grace must be a number of seconds >= 0"):
        StartedRunner().shutdown_grace = bad


def test_the_flow_gives_its_runner_the_grace_period() -> None:
    seen: list[float | None] = []
    runner = StartedRunner()
    runner.shutdown_grace = 1.5

    @flow(task_runner=runner)
    def grace() -> None:
        from taskrunners.lowlevel import current_runner

        current = current_runner()
        assert current is not None and current is not runner
        seen.append(current.shutdown_grace)

    grace()
    assert seen == [1.5]


# -- SIGTERM ---------------------------------------------------------------------------------


def test_a_flow_turns_sigterm_into_terminated_while_it_runs_and_restores_it() -> None:
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    caught: list[BaseException] = []

    @flow(task_runner=StartedRunner())
    def terminated() -> None:
        try:
            signal.raise_signal(signal.SIGTERM)
        except Terminated as exc:
            caught.append(exc)

    terminated()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert isinstance(caught[0], SystemExit) and caught[0].code == 143


def test_sigterm_unwinds_the_flow_and_crashes_its_runs() -> None:
    runner = StartedRunner()
    runner.shutdown_grace = 0
    futures: list[Future[Any]] = []

    @flow(task_runner=runner)
    def terminated() -> None:
        futures.append(add.submit(1, 2))
        signal.raise_signal(signal.SIGTERM)

    with pytest.raises(Terminated):
        terminated()
    assert "interrupted by SIGTERM" in str(futures[0].state.exception)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_program_with_its_own_sigterm_handler_keeps_it() -> None:
    def own(signum: int, frame: Any) -> None:
        pass

    seen: list[Any] = []

    @flow(task_runner=StartedRunner())
    def keeps() -> None:
        seen.append(signal.getsignal(signal.SIGTERM))

    previous = signal.signal(signal.SIGTERM, own)
    try:
        keeps()
        assert seen == [own] and signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_flow_outside_the_main_thread_installs_nothing() -> None:
    seen: list[Any] = []

    @flow(task_runner=StartedRunner())
    def elsewhere() -> None:
        seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(LONG)
    assert seen == [signal.SIG_DFL]


def test_cancelling_an_async_flow_interrupts_its_runner() -> None:
    import asyncio

    runner = StartedRunner()
    runner.shutdown_grace = 0
    futures: list[Future[Any]] = []

    async def main() -> None:
        submitted = asyncio.Event()

        @flow(task_runner=runner)
        async def cancelled() -> None:
            futures.append(add.submit(1, 2))
            submitted.set()
            await asyncio.sleep(LONG)

        running = asyncio.ensure_future(cancelled())
        await submitted.wait()
        running.cancel()  # what asyncio.run does to its main task on Ctrl-C
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(main())
    assert "interrupted by asyncio cancellation (asyncio.run sends it on Ctrl-C)" in str(
        futures[0].state.exception
    )
