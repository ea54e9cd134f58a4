"""Behaviour of ThreadPoolTaskRunner beyond the conformance suite."""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import pytest
from taskrunners import DependencyError, Future, TaskRunCrashed, flow, task
from taskrunners.plugins import load_runner
from taskrunners.testing import run_with_deadline
from taskrunners_threads import ThreadPoolTaskRunner, default_max_workers

DEADLINE = 30.0


def pool_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("taskrunners-threads-")]


@task
def identity(x: Any) -> Any:
    return x


@task
def nested(depth: int) -> int:
    if depth == 0:
        return 0
    return nested.submit(depth - 1).result() + 1


# -- configuration ----------------------------------------------------------------------


def test_registered_as_threads_through_its_entry_point() -> None:
    assert load_runner("threads") is ThreadPoolTaskRunner


def test_default_max_workers_matches_thread_pool_executor() -> None:
    import os

    assert default_max_workers() == min(32, (os.cpu_count() or 1) + 4)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_invalid_max_workers_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        ThreadPoolTaskRunner(max_workers=bad)


def test_equality_follows_configuration() -> None:
    assert ThreadPoolTaskRunner(2) == ThreadPoolTaskRunner(2)
    assert ThreadPoolTaskRunner(2) != ThreadPoolTaskRunner(3)
    assert ThreadPoolTaskRunner(2).duplicate() == ThreadPoolTaskRunner(2)
    assert repr(ThreadPoolTaskRunner(2)) == "ThreadPoolTaskRunner(max_workers=2)"


# -- the bound and slot lending -----------------------------------------------------------


def test_never_more_than_max_workers_tasks_at_once() -> None:
    lock = threading.Lock()
    full = threading.Event()
    running = [0]
    peak = [0]

    @task
    def occupy(_: int) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            if running[0] == 3:
                full.set()
        full.wait(DEADLINE)
        with lock:
            running[0] -= 1

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def body() -> None:
        occupy.map(range(12)).result()

    run_with_deadline(body, DEADLINE)
    assert peak[0] == 3


def test_nested_submission_at_one_worker_does_not_deadlock() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def body() -> int:
        return nested.submit(30).result()

    assert run_with_deadline(body, DEADLINE) == 30


def test_queued_and_pending_runs_hold_no_thread() -> None:
    gate = threading.Event()
    counts: list[int] = []

    @task
    def blocked() -> None:
        gate.wait(DEADLINE)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def body() -> None:
        first = blocked.submit()
        queued = [blocked.submit() for _ in range(200)]
        pending = [identity.submit(i, wait_for=[first]) for i in range(10_000)]
        counts.append(len(pool_threads()))
        gate.set()
        assert [f.result() for f in pending] == list(range(10_000))
        assert all(f.state.is_completed() for f in queued)

    run_with_deadline(body, DEADLINE)
    assert counts[0] <= 4


def test_a_blocked_worker_lends_its_slot_and_threads_stay_bounded() -> None:
    peak: list[int] = []

    @task
    def leaf(x: int) -> int:
        peak.append(len(pool_threads()))
        return x

    @task
    def parent(x: int) -> int:
        return sum(leaf.map([x] * 5).result())

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def body() -> list[int]:
        return parent.map([1, 2, 3]).result()

    assert run_with_deadline(body, DEADLINE) == [5, 10, 15]
    # One worker per blocked parent at most, plus the one running a leaf.
    assert max(peak) <= 1 + 3


def test_pool_threads_are_gone_after_the_flow() -> None:
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def body() -> list[int]:
        return identity.map(range(50)).result()

    run_with_deadline(body, DEADLINE)
    assert pool_threads() == []


# -- what runs see ----------------------------------------------------------------------


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def test_context_at_submit_is_visible_in_the_task() -> None:
    @task
    def read() -> str:
        return request_id.get()

    @flow
    def body() -> tuple[str, str]:
        request_id.set("abc")
        early = read.submit()
        request_id.set("def")
        return early.result(), read.submit().result()

    assert run_with_deadline(body, DEADLINE) == ("abc", "def")


def test_a_run_may_not_depend_on_the_run_submitting_it() -> None:
    holder: list[Future[Any]] = []
    ready = threading.Event()

    @task
    def self_dependent() -> Any:
        ready.wait(DEADLINE)
        return identity.submit(1, wait_for=holder)

    @flow
    def body() -> Any:
        outer = self_dependent.submit()
        holder.append(outer)
        ready.set()
        return outer.result(raise_on_failure=False)

    error = run_with_deadline(body, DEADLINE)
    assert isinstance(error, DependencyError) and "submits it" in str(error)


def test_a_run_may_not_wait_for_its_own_future() -> None:
    holder: list[Future[Any]] = []
    ready = threading.Event()

    @task
    def waits_for_itself() -> Any:
        ready.wait(DEADLINE)
        return holder[0].result()

    @flow
    def body() -> Any:
        outer = waits_for_itself.submit()
        holder.append(outer)
        ready.set()
        return outer.result(raise_on_failure=False)

    error = run_with_deadline(body, DEADLINE)
    assert isinstance(error, DependencyError) and "its own result" in str(error)


# -- interrupts -------------------------------------------------------------------------


def test_interrupted_flow_crashes_queued_runs_and_lets_running_ones_finish() -> None:
    started = threading.Event()
    release = threading.Event()
    futures: list[Future[Any]] = []

    @task
    def running() -> str:
        started.set()
        release.wait(DEADLINE)
        return "finished"

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def body() -> None:
        futures.append(running.submit())
        futures.extend(identity.submit(i) for i in range(3))
        # The running task may end only once the queued runs were dropped.
        futures[1].add_done_callback(lambda _: release.set())
        started.wait(DEADLINE)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_with_deadline(body, DEADLINE)
    first, *queued = futures
    assert first.result() == "finished"
    for future in queued:
        assert future.state.is_crashed()
        assert isinstance(future.state.exception, TaskRunCrashed)
        assert "interrupted" in str(future.state.exception)


def test_tasks_with_a_timeout_count_against_max_workers() -> None:
    second_started = threading.Event()

    @task(timeout_seconds=30)
    def first() -> bool:
        # With the bound kept, the second run cannot start while this one runs: the
        # wait runs out. A broken bound lets it start within milliseconds.
        return second_started.wait(0.5)

    @task(timeout_seconds=30)
    def second() -> None:
        second_started.set()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def body() -> bool:
        overlapped = first.submit()
        second.submit()
        return overlapped.result()

    assert run_with_deadline(body, DEADLINE) is False


def test_awaiting_a_future_in_an_async_task_lends_the_slot() -> None:
    @task
    async def parent() -> int:
        return await identity.submit(1) + await identity.submit(2)

    @task(timeout_seconds=30)
    def timed_parent() -> int:
        return identity.submit(3).result()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def body() -> tuple[int, int]:
        return parent.submit().result(), timed_parent.submit().result()

    assert run_with_deadline(body, DEADLINE) == (3, 3)
