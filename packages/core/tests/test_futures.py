"""Futures: Future, FutureList, wait() and as_completed(), with a real thread runner.

Runs are held back with `threading.Event`s that the test releases, so that which run is
finished, and in what order, is decided by the test and never by timing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import pytest
from taskrunners import (
    DependencyError,
    DoneAndNotDone,
    Future,
    FutureList,
    State,
    StateType,
    WaitTimeout,
    as_completed,
    flow,
    task,
    wait,
)
from taskrunners_threads import ThreadPoolTaskRunner

RUNNER = ThreadPoolTaskRunner(max_workers=6)
LONG = 10  # seconds: a bound that only a broken implementation reaches


@task
def held(gate: threading.Event, value: Any = None, started: threading.Event | None = None) -> Any:
    """Return `value` once `gate` is set (setting `started` first, if given)."""
    if started is not None:
        started.set()
    assert gate.wait(LONG), "the test never released this run"
    return value


@task
def held_then_fail(gate: threading.Event, error: BaseException) -> None:
    assert gate.wait(LONG)
    raise error


@task
def identity(value: Any) -> Any:
    return value


@task
def fail(error: BaseException) -> None:
    raise error


def in_flow(body: Callable[[], Any]) -> Any:
    """Run `body` as a flow on a thread runner and return what it returns.

    The value travels in a dict: a flow that returned a failed State (or a list of
    States with a failed one) directly would end FAILED in it, as in Prefect."""

    @flow(task_runner=RUNNER, name=getattr(body, "__name__", "body"))
    def boxed() -> dict:
        return {"value": body()}

    return boxed()["value"]


class Box:
    """Carries futures out of a flow untouched (a flow resolves futures it returns
    inside lists, tuples, dicts and dataclasses, not inside other objects)."""

    def __init__(self, *items: Any) -> None:
        self.items = items


# -- Future.result / wait / done / state ---------------------------------------------


def test_result_with_timeout_raises_wait_timeout_while_the_run_goes_on() -> None:
    def body() -> tuple:
        gate = threading.Event()
        future = held.submit(gate, "value")
        try:
            with pytest.raises(WaitTimeout) as caught:
                future.result(timeout=0.05)
            still_running = not future.done()
        finally:
            gate.set()
        return caught.value, future.task_run.name, still_running, future.result(timeout=LONG)

    error, run_name, still_running, value = in_flow(body)
    assert isinstance(error, TimeoutError)
    assert run_name in str(error)
    assert still_running
    assert value == "value"


def test_result_with_timeout_zero_returns_a_finished_value() -> None:
    def body() -> Any:
        future = identity.submit(7)
        future.wait(LONG)
        return future.result(timeout=0)

    assert in_flow(body) == 7


def test_result_raises_the_tasks_own_exception_or_returns_it() -> None:
    error = ValueError("own")

    def body() -> tuple:
        future = fail.submit(error)
        with pytest.raises(ValueError) as caught:
            future.result(timeout=LONG)
        return caught.value, future.result(raise_on_failure=False)

    raised, returned = in_flow(body)
    assert raised is error
    assert returned is error


def test_wait_with_timeout_never_raises() -> None:
    def body() -> tuple:
        gate = threading.Event()
        future = held.submit(gate, 1)
        try:
            first = future.wait(0.05)
            done_before = future.done()
        finally:
            gate.set()
        future.wait(LONG)
        return first, done_before, future.done()

    assert in_flow(body) == (None, False, True)


def test_wait_does_not_raise_for_a_failed_run() -> None:
    def body() -> State:
        future = fail.submit(KeyError("k"))
        future.wait(LONG)
        return future.state

    assert in_flow(body).is_failed()


def test_state_is_pending_then_running_then_final() -> None:
    def body() -> list:
        gate, started = threading.Event(), threading.Event()
        running = held.submit(gate, "v", started)
        waiting = identity.submit(1, wait_for=[running])
        try:
            assert started.wait(LONG)
            seen = [
                (running.state.type, running.done(), running.state.attempt),
                (waiting.state.type, waiting.done(), waiting.state.attempt),
            ]
        finally:
            gate.set()
        waiting.wait(LONG)
        seen.append((running.state.type, running.done(), running.state.attempt))
        seen.append((waiting.state.type, waiting.done(), waiting.state.attempt))
        return seen

    assert in_flow(body) == [
        (StateType.RUNNING, False, 1),
        (StateType.PENDING, False, 0),
        (StateType.COMPLETED, True, 1),
        (StateType.COMPLETED, True, 1),
    ]


def test_a_pending_run_times_out_as_well() -> None:
    def body() -> bool:
        gate = threading.Event()
        upstream = held.submit(gate)
        downstream = identity.submit(upstream)
        try:
            with pytest.raises(WaitTimeout):
                downstream.result(timeout=0.02)
            return downstream.state.is_pending()
        finally:
            gate.set()

    assert in_flow(body) is True


def test_repr_shows_the_run_name_and_state_type() -> None:
    def body() -> tuple:
        future = identity.submit(1)
        future.wait(LONG)
        return repr(future), future.task_run.name

    text, name = in_flow(body)
    assert text == f"<Future {name!r} COMPLETED>"


def test_owner_is_the_runner_that_runs_the_flow() -> None:
    def body() -> tuple:
        future = identity.submit(1)
        return future.owner

    owner = in_flow(body)
    assert isinstance(owner, ThreadPoolTaskRunner)
    assert owner is not RUNNER


# -- done callbacks ---------------------------------------------------------------------


def test_done_callback_runs_when_the_run_finishes() -> None:
    called: list = []
    finished = threading.Event()

    def callback(future: Future) -> None:
        called.append((future, future.done()))
        finished.set()

    def body() -> Future:
        gate = threading.Event()
        future = held.submit(gate, "x")
        future.add_done_callback(callback)
        registered_early = list(called)
        gate.set()
        assert finished.wait(LONG)
        assert registered_early == []
        return future

    (future,) = in_flow(lambda: Box(body())).items
    assert called == [(future, True)]


def test_done_callback_on_a_finished_future_runs_at_once_in_the_caller() -> None:
    def body() -> list:
        future = identity.submit(1)
        future.wait(LONG)
        called = []
        future.add_done_callback(lambda f: called.append((f is future, threading.current_thread())))
        return called

    assert in_flow(body) == [(True, threading.current_thread())]


def test_an_exception_in_a_done_callback_is_logged_and_harmless(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_: Future) -> None:
        raise RuntimeError("callback broke")

    def body() -> tuple:
        later: list = []
        gate = threading.Event()
        future = held.submit(gate, "fine")
        future.add_done_callback(broken)  # registered before the run finishes
        future.add_done_callback(later.append)
        gate.set()
        value = future.result(timeout=LONG)
        future.add_done_callback(broken)  # runs at once: must not raise here either
        now: list = []
        future.add_done_callback(now.append)
        return value, future.state.type, later == [future], now == [future]

    with caplog.at_level(logging.ERROR, logger="taskrunners"):
        assert in_flow(body) == ("fine", StateType.COMPLETED, True, True)
    logged = [r for r in caplog.records if r.name == "taskrunners" and r.exc_info]
    assert len(logged) == 2
    assert all("callback broke" in str(r.exc_info[1]) for r in logged)


# -- await ---------------------------------------------------------------------------


def test_await_a_future_inside_an_async_flow() -> None:
    error = ValueError("awaited")

    @flow(task_runner=RUNNER)
    async def body() -> tuple:
        gate = threading.Event()
        future = held.submit(gate, 41)
        loop = asyncio.get_running_loop()
        loop.call_soon(gate.set)  # released once the flow is awaiting the future
        value = await future
        done_already = await future  # awaiting a finished future
        with pytest.raises(ValueError) as caught:
            await fail.submit(error)
        return value, done_already, caught.value

    value, again, raised = asyncio.run(body())
    assert (value, again) == (41, 41)
    assert raised is error


# -- task_run ------------------------------------------------------------------------


def test_task_run_identity_and_timing() -> None:
    def body() -> tuple:
        gate = threading.Event()
        upstream = held.submit(gate, 1)
        future = identity.submit(upstream)
        try:
            before = (future.task_run.start_time, future.task_run.end_time, future.task_run.duration)
        finally:
            gate.set()
        future.wait(LONG)
        return Box(future, before)

    future, before = in_flow(body).items
    run = future.task_run
    assert before == (None, None, None)
    assert isinstance(run.id, uuid.UUID)
    assert run.id == future.task_run.id  # stable
    assert run.name.startswith("identity-")
    assert run.task_name == "identity"
    assert isinstance(run.start_time, datetime) and isinstance(run.end_time, datetime)
    assert run.start_time.tzinfo == timezone.utc
    assert run.start_time <= run.end_time
    assert run.duration == pytest.approx((run.end_time - run.start_time).total_seconds(), abs=1e-5)
    assert run.duration >= 0


def test_task_runs_have_distinct_ids_and_names() -> None:
    def body() -> list:
        return [f.task_run for f in identity.map([1, 2, 3])]

    runs = in_flow(body)
    assert len({r.id for r in runs}) == 3
    assert len({r.name for r in runs}) == 3


# -- FutureList ------------------------------------------------------------------------


def test_future_list_result_is_in_list_order_whatever_the_completion_order() -> None:
    def body() -> list:
        gates = [threading.Event() for _ in range(3)]
        futures = held.map(gates, ["a", "b", "c"])
        assert isinstance(futures, FutureList)
        try:
            for gate, future in reversed(list(zip(gates, futures))):
                gate.set()
                future.wait(LONG)
        finally:
            for gate in gates:
                gate.set()
        return FutureList([futures[0], futures[2], futures[0]]).result() + futures.result()

    assert in_flow(body) == ["a", "c", "a", "a", "b", "c"]


def test_future_list_result_fails_fast_while_an_earlier_run_is_still_blocked() -> None:
    error = ValueError("fast failure")

    def body() -> tuple:
        gate = threading.Event()
        slow = held.submit(gate, "slow")
        fast = fail.submit(error)
        futures = FutureList([slow, fast])
        try:
            with pytest.raises(ValueError) as caught:
                futures.result(timeout=LONG)
            return caught.value, slow.done()
        finally:
            gate.set()

    raised, slow_done = in_flow(body)
    assert raised is error
    assert slow_done is False


def test_future_list_result_fails_fast_for_a_failure_that_happens_while_waiting() -> None:
    error = KeyError("while waiting")

    def body() -> tuple:
        slow_gate, fail_gate = threading.Event(), threading.Event()
        slow = held.submit(slow_gate, "slow")
        failing = held_then_fail.submit(fail_gate, error)
        threading.Timer(0, fail_gate.set).start()  # fails while result() waits
        try:
            with pytest.raises(KeyError) as caught:
                FutureList([slow, failing]).result(timeout=LONG)
            return caught.value, slow.done()
        finally:
            slow_gate.set()

    raised, slow_done = in_flow(body)
    assert raised is error
    assert slow_done is False


def test_future_list_result_without_raise_puts_exceptions_in_place() -> None:
    error = ValueError("in place")

    def body() -> list:
        return FutureList([identity.submit(1), fail.submit(error), identity.submit(3)]).result(
            timeout=LONG, raise_on_failure=False
        )

    assert in_flow(body) == [1, error, 3]


def test_future_list_result_timeout_names_how_many_are_unfinished() -> None:
    def body() -> tuple:
        gates = [threading.Event() for _ in range(3)]
        futures = held.map(gates, [1, 2, 3])
        gates[1].set()
        futures[1].wait(LONG)
        try:
            with pytest.raises(WaitTimeout) as caught:
                futures.result(timeout=0.05)
            return str(caught.value)
        finally:
            for gate in gates:
                gate.set()

    assert "2 (of 3)" in in_flow(body)


def test_future_list_wait_never_raises() -> None:
    def body() -> tuple:
        gate = threading.Event()
        futures = FutureList([identity.submit(1), held.submit(gate, 2)])
        try:
            futures.wait(0.05)
            done = [f.done() for f in futures]
        finally:
            gate.set()
        futures.wait(LONG)
        return done, [f.done() for f in futures]

    first, after = in_flow(body)
    assert first[1] is False
    assert after == [True, True]


# -- wait() ----------------------------------------------------------------------------


def test_wait_returns_done_and_not_done_with_timeout() -> None:
    def body() -> tuple:
        gate = threading.Event()
        quick = identity.submit(1)
        quick.wait(LONG)
        stuck = held.submit(gate)
        try:
            result = wait([quick, stuck], timeout=0.05)
        finally:
            gate.set()
        everything = wait([quick, stuck])
        return Box(result, everything, quick, stuck)

    result, everything, quick, stuck = in_flow(body).items
    assert isinstance(result, DoneAndNotDone)
    assert result.done == {quick}
    assert result.not_done == {stuck}
    done, not_done = everything
    assert done == {quick, stuck} and not_done == set()


def test_wait_sees_later_runs_finish_while_an_earlier_one_is_stuck() -> None:
    def body() -> tuple:
        gates = [threading.Event() for _ in range(3)]
        futures = held.map(gates, [0, 1, 2])
        gates[1].set()
        gates[2].set()
        try:
            futures[1].wait(LONG)
            futures[2].wait(LONG)
            done, not_done = wait(futures, timeout=0.05)
        finally:
            gates[0].set()
        return {futures.index(f) for f in done}, {futures.index(f) for f in not_done}

    assert in_flow(body) == ({1, 2}, {0})


# -- as_completed() ----------------------------------------------------------------------


def test_as_completed_yields_in_completion_order() -> None:
    def body() -> list:
        gates = [threading.Event() for _ in range(3)]
        futures = held.map(gates, ["a", "b", "c"])
        release_order = [2, 0, 1]
        yielded = []
        try:
            gates[release_order[0]].set()
            for count, future in enumerate(as_completed(futures, timeout=LONG), start=1):
                yielded.append(future.result())
                if count < len(release_order):
                    gates[release_order[count]].set()
        finally:
            for gate in gates:
                gate.set()
        return yielded

    assert in_flow(body) == ["c", "a", "b"]


def test_as_completed_yields_finished_futures_first_and_each_future_once() -> None:
    def body() -> list:
        gate = threading.Event()
        stuck = held.submit(gate, "last")
        finished = identity.submit("first")
        finished.wait(LONG)
        order = []
        try:
            iterator = as_completed([stuck, finished, finished])
            order.append(next(iterator).result())
        finally:
            gate.set()
        order.extend(f.result() for f in iterator)
        return order

    assert in_flow(body) == ["first", "last"]


def test_as_completed_with_zero_timeout_yields_finished_futures() -> None:
    def body() -> list:
        future = identity.submit(5)
        future.wait(LONG)
        return [f.result() for f in as_completed([future], timeout=0)]

    assert in_flow(body) == [5]


def test_as_completed_timeout_raises_wait_timeout_naming_the_unfinished_count() -> None:
    def body() -> tuple:
        gates = [threading.Event() for _ in range(3)]
        futures = held.map(gates, [0, 1, 2])
        gates[1].set()
        futures[1].wait(LONG)
        yielded = []
        try:
            with pytest.raises(WaitTimeout) as caught:
                for future in as_completed(futures, timeout=0.05):
                    yielded.append(future.result())
        finally:
            for gate in gates:
                gate.set()
        return yielded, str(caught.value)

    yielded, message = in_flow(body)
    assert yielded == [1]
    assert "2 (of 3)" in message


def test_waiting_on_nothing_returns_at_once() -> None:
    assert wait([]) == (set(), set())
    assert list(as_completed([])) == []
    assert FutureList().result() == []
    assert FutureList().result(timeout=0) == []


# -- argument checks ------------------------------------------------------------------------


NEGATIVE_TIMEOUT_CALLS = {
    "Future.wait": lambda futures: futures[0].wait(-1),
    "Future.result": lambda futures: futures[0].result(timeout=-1),
    "FutureList.wait": lambda futures: futures.wait(-1),
    "FutureList.result": lambda futures: futures.result(timeout=-1),
    "wait": lambda futures: wait(futures, timeout=-1),
    "as_completed": lambda futures: as_completed(futures, timeout=-1),
}


@pytest.mark.parametrize("call", list(NEGATIVE_TIMEOUT_CALLS))
def test_a_negative_timeout_raises_value_error(call: str) -> None:
    def body() -> str:
        gate = threading.Event()
        futures = FutureList([held.submit(gate)])
        try:
            with pytest.raises(ValueError, match="non-negative") as caught:
                NEGATIVE_TIMEOUT_CALLS[call](futures)
            return str(caught.value)
        finally:
            gate.set()

    in_flow(body)


@pytest.mark.parametrize(
    "how",
    ["result", "wait", "wait()", "as_completed", "submit-downstream"],
)
def test_a_run_waiting_for_its_own_future_raises_dependency_error(how: str) -> None:
    holder: dict = {}

    @task
    def waits_for_itself(ready: threading.Event) -> None:
        assert ready.wait(LONG)
        own = holder["future"]
        if how == "result":
            own.result()
        elif how == "wait":
            own.wait()
        elif how == "wait()":
            wait([own])
        elif how == "as_completed":
            list(as_completed([own]))
        else:
            identity.submit(own)

    def body() -> State:
        ready = threading.Event()
        holder["future"] = future = waits_for_itself.submit(ready)
        ready.set()
        future.wait(LONG)
        return future.state

    state = in_flow(body)
    assert state.type is StateType.FAILED
    assert isinstance(state.exception, DependencyError)
    assert isinstance(state.exception, ValueError)
    assert "waits_for_itself" in str(state.exception)


def test_many_threads_waiting_on_many_futures_all_wake_with_the_right_values() -> None:
    """Waiters of every kind race with runs finishing in a shuffled order."""
    import random

    from taskrunners.testing import run_with_deadline

    count = 300
    gates = [threading.Event() for _ in range(count)]

    @task
    def gated(i: int) -> int:
        gates[i].wait(30)
        return i

    def waiters(futures: list[Future[int]]) -> list[Any]:
        rng = random.Random(7)
        results: list[Any] = []

        def by_result() -> None:
            results.append(sorted(f.result() for f in rng.sample(futures, 50)))

        def by_wait() -> None:
            done, not_done = wait(futures)
            results.append((len(done), len(not_done)))

        def by_as_completed() -> None:
            results.append(sorted(f.result() for f in as_completed(futures)))

        def by_list() -> None:
            results.append(FutureList(futures).result())

        threads = [threading.Thread(target=fn) for fn in (by_result, by_wait, by_as_completed, by_list)]
        for thread in threads:
            thread.start()
        order = list(range(count))
        rng.shuffle(order)
        for i in order:
            gates[i].set()
        for thread in threads:
            thread.join(30)
        return results

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=8))
    def body() -> list[Any]:
        return waiters([gated.submit(i) for i in range(count)])

    results = run_with_deadline(body, 60)
    assert len(results) == 4
    assert (count, 0) in results
    assert list(range(count)) in results  # as_completed, sorted, and FutureList in order
    assert results.count(list(range(count))) == 2
