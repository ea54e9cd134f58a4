"""What is particular to `ExecutorTaskRunner`: factories and instances, and lost runs.

The behaviour every runner shares is in `test_conformance.py`.
"""

import contextvars
import multiprocessing
import os
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial

import pytest
from taskrunners import StateType, TaskRunCrashed, flow, task
from taskrunners.plugins import load_runner
from taskrunners_executor import ExecutorTaskRunner

request_id = contextvars.ContextVar("request_id", default=None)


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def read_context() -> object:
    return request_id.get()


@task
def exit_worker() -> None:
    os._exit(3)


class Recording:
    """A factory that remembers the executors it made."""

    def __init__(self) -> None:
        self.made: list[ThreadPoolExecutor] = []

    def __call__(self) -> ThreadPoolExecutor:
        self.made.append(ThreadPoolExecutor(max_workers=2))
        return self.made[-1]


class Inline:
    """A user's own executor, duck-typed (no Executor base): runs each call at once."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


class Unreachable(Executor):
    """An executor whose every call is lost on the way (say, a cluster link went down)."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        future.set_exception(ConnectionError("link down"))
        return future


class Closed(Executor):
    """An executor that refuses new work."""

    def submit(self, fn, /, *args, **kwargs):
        raise RuntimeError("cannot schedule new futures after shutdown")


def test_a_factory_makes_one_executor_per_flow_run_and_shuts_it_down() -> None:
    factory = Recording()
    runner = ExecutorTaskRunner(factory)

    @flow(task_runner=runner)
    def body() -> int:
        return add.submit(1, 2)

    assert body() == 3 and body() == 3
    assert len(factory.made) == 2 and factory.made[0] is not factory.made[1]
    for executor in factory.made:
        with pytest.raises(RuntimeError, match="after shutdown"):
            executor.submit(int)
    assert runner.executor is None  # made only while a flow run uses the runner


def test_an_instance_is_shared_and_never_shut_down() -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        runner = ExecutorTaskRunner(pool)
        copy = runner.duplicate()
        assert copy == runner and copy is not runner
        assert copy.executor is pool and runner.executor is pool

        @flow(task_runner=runner)
        def body() -> object:
            future = add.submit(2, 3)
            future.wait()
            return future.native

        native = body()
        assert isinstance(native, Future) and native.result().result() == 5  # the executor's future
        assert pool.submit(pow, 2, 3).result() == 8  # still open after the flow run


def test_equality_follows_the_configuration() -> None:
    factory = partial(ThreadPoolExecutor, max_workers=2)
    with ThreadPoolExecutor() as one, ThreadPoolExecutor() as other:
        assert ExecutorTaskRunner(one) == ExecutorTaskRunner(one)
        assert ExecutorTaskRunner(one) != ExecutorTaskRunner(other)
    assert ExecutorTaskRunner(factory) == ExecutorTaskRunner(factory)
    assert ExecutorTaskRunner() == ExecutorTaskRunner(ThreadPoolExecutor)
    assert ExecutorTaskRunner(factory) != ExecutorTaskRunner()


def test_neither_an_executor_nor_a_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="executor must be an Executor or a callable"):
        ExecutorTaskRunner(4)  # type: ignore[arg-type]


def test_a_thread_pool_runs_tasks_in_the_submitters_context() -> None:
    @flow(task_runner=ExecutorTaskRunner())
    def body() -> object:
        request_id.set("r-17")
        return read_context.submit()

    assert body() == "r-17"


def test_a_users_own_duck_typed_executor_works() -> None:
    @flow(task_runner=ExecutorTaskRunner(Inline()))
    def body() -> list[int]:
        one = add.submit(0, 1)
        return add.map([one, 10], 1)

    assert body() == [2, 11]


@pytest.mark.parametrize(
    ("executor", "reason"),
    [
        (Unreachable(), "the executor lost it: ConnectionError: link down"),
        (
            Closed(),
            "could not be handed to the executor: RuntimeError: cannot schedule new futures after shutdown",
        ),
    ],
    ids=["lost", "refused"],
)
def test_a_run_the_executor_loses_or_refuses_crashes(executor: Executor, reason: str) -> None:
    @flow(task_runner=ExecutorTaskRunner(executor))
    def body() -> object:
        future = add.submit(1, 1)
        future.wait()
        return future.state

    state = body(return_state=True)  # the flow ends in the State it returned
    assert state.type is StateType.CRASHED and isinstance(state.exception, TaskRunCrashed)
    assert reason in str(state.exception)


def test_a_task_made_in_a_function_travels_to_a_process_pool() -> None:
    offset = 100

    @task
    def shifted(x: int) -> tuple[int, int]:
        return x + offset, os.getpid()

    context = multiprocessing.get_context("forkserver")

    @flow(task_runner=ExecutorTaskRunner(partial(ProcessPoolExecutor, max_workers=1, mp_context=context)))
    def body() -> tuple[int, int]:
        return shifted.submit(1)

    value, pid = body()
    assert value == 101 and pid != os.getpid()


def test_a_dead_worker_process_crashes_its_run_instead_of_hanging() -> None:
    context = multiprocessing.get_context("forkserver")

    @flow(task_runner=ExecutorTaskRunner(partial(ProcessPoolExecutor, max_workers=1, mp_context=context)))
    def body() -> object:
        lost = exit_worker.submit()
        lost.wait()
        return lost.state

    state = body(return_state=True)  # the flow ends in the State it returned
    assert state.is_crashed() and "BrokenProcessPool" in str(state.exception)


def test_the_runner_is_registered_as_executor() -> None:
    assert load_runner("executor") is ExecutorTaskRunner

    @flow(task_runner="executor")
    def body() -> int:
        return add.submit(20, 22)

    assert body() == 42


def test_an_interrupt_crashes_the_runs_the_executor_has_not_started() -> None:
    started, release = threading.Event(), threading.Event()

    @task
    def hold() -> str:
        started.set()
        assert release.wait(30)
        return "held"

    runner = ExecutorTaskRunner(partial(ThreadPoolExecutor, max_workers=1))
    with pytest.raises(KeyboardInterrupt):
        with runner:
            held = runner.submit(hold, {})
            assert started.wait(30)
            queued = runner.submit(add, {"x": 1, "y": 2})  # behind `hold`, in the executor's queue
            queued.add_done_callback(lambda _: release.set())  # crashing it lets `hold` finish
            raise KeyboardInterrupt

    assert held.result() == "held"  # a started run is waited for
    assert queued.state.is_crashed() and queued.state.attempt == 0  # never started
    assert "interrupted by SIGINT (Ctrl-C) before the run started" in str(queued.state.exception)
