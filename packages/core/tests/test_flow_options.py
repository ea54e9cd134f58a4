"""Prefect's flow options: flow_run_name, retries, retry_delay_seconds, timeout_seconds,
and the state hooks."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest
from taskrunners import DefinitionError, FlowRunInfo, FlowTimeoutError, flow, tags, task
from taskrunners.states import Cancelled
from taskrunners_threads import ThreadPoolTaskRunner

RUNNER = ThreadPoolTaskRunner(max_workers=2)


def test_flow_run_name_and_hooks_see_the_flow_run() -> None:
    seen: list[Any] = []

    def hook(flow: Any, flow_run: FlowRunInfo, state: Any) -> None:
        seen.append((flow.name, flow_run.name, flow_run.parameters, sorted(flow_run.tags), state.type.value))

    @flow(task_runner=RUNNER, flow_run_name="report-{day}", on_completion=[hook], on_running=[hook])
    def report(day: str, pages: int = 3) -> int:
        return pages

    with tags("nightly"):
        assert report("monday") == 3
    assert seen == [
        ("report", "report-monday", {"day": "monday"}, ["nightly"], "RUNNING"),
        ("report", "report-monday", {"day": "monday"}, ["nightly"], "COMPLETED"),
    ]


def test_flow_retries_rerun_the_function_and_failure_hooks_fire_once() -> None:
    attempts: list[int] = []
    failures: list[int] = []

    @flow(task_runner=RUNNER, retries=2, retry_delay_seconds=0)
    def flaky() -> int:
        attempts.append(1)
        if len(attempts) < 3:
            raise ValueError("again")
        return len(attempts)

    @flow(task_runner=RUNNER, retries=1, on_failure=[lambda f, r, s: failures.append(r.attempt)])
    def hopeless() -> None:
        raise ValueError("never")

    assert flaky() == 3
    state = hopeless(return_state=True)
    assert state.is_failed() and state.attempt == 2 and failures == [2]


def test_flow_timeout_fails_the_run() -> None:
    release = threading.Event()

    @flow(task_runner=RUNNER, timeout_seconds=0.2)
    def stuck() -> None:
        release.wait(10)

    @flow(task_runner=RUNNER, timeout_seconds=0.2)
    async def stuck_async() -> None:
        await asyncio.sleep(10)

    try:
        state = stuck(return_state=True)
        assert state.is_failed() and state.name == "TimedOut"
        assert isinstance(state.exception, FlowTimeoutError) and isinstance(state.exception, TimeoutError)
        with pytest.raises(FlowTimeoutError, match="stuck"):
            stuck()
    finally:
        release.set()
    assert asyncio.run(stuck_async(return_state=True)).name == "TimedOut"


def test_cancellation_and_crash_hooks() -> None:
    seen: list[str] = []

    @flow(task_runner=RUNNER, on_cancellation=[lambda f, r, s: seen.append(s.type.value)])
    def stops() -> Any:
        return Cancelled(message="enough")

    @flow(task_runner=RUNNER, on_crashed=[lambda f, r, s: seen.append(s.type.value)])
    def interrupted() -> None:
        raise KeyboardInterrupt

    assert stops(return_state=True).is_cancelled()
    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert seen == ["CANCELLED", "CRASHED"]


def test_crash_hook_of_a_task_fires_for_a_run_crashed_in_the_flows_process() -> None:
    crashed: list[int] = []

    @task(on_crashed=[lambda t, r, s: crashed.append(os.getpid())])
    def interrupted() -> None:
        raise KeyboardInterrupt

    @flow(task_runner=RUNNER)
    def body() -> bool:
        future = interrupted.submit()
        future.wait()
        return future.state.is_crashed()

    assert body() and crashed == [os.getpid()]


def test_with_options_and_bad_values() -> None:
    @flow
    def plain() -> int:
        return 1

    changed = plain.with_options(retries=2, flow_run_name="x", timeout_seconds=5)
    assert (changed.retries, changed.flow_run_name, changed.timeout_seconds) == (2, "x", 5.0)
    with pytest.raises(DefinitionError, match="flow 'plain'"):
        plain.with_options(retries=-1)
    with pytest.raises(DefinitionError, match="flow_run_name"):
        flow(flow_run_name=3)(lambda: None)  # type: ignore[arg-type]
