"""Behaviour of ProcessPoolTaskRunner beyond the conformance suite."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import cloudpickle
import pytest
from taskrunners import Future, TaskRunCrashed, flow, task
from taskrunners.plugins import load_runner
from taskrunners.testing import run_with_deadline
from taskrunners_processes import ProcessPoolTaskRunner, RemoteTraceback, default_start_method
from taskrunners_processes._pool import MAX_START_FAILURES

# Workers cannot import this test module by name (pytest imports it by path), so its
# tasks travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

DEADLINE = 60.0


@task
def pid(_: Any = None) -> int:
    return os.getpid()


@task
def double(x: int) -> int:
    return 2 * x


class Unusual(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"code {code}")
        self.code = code


@task
def raise_unusual(code: int) -> None:
    raise Unusual(code)


@task
def segfault() -> None:
    ctypes.string_at(0)


@task
def exit_now(code: int) -> None:
    os._exit(code)


@task
def length(value: Any) -> int:
    return len(value)


@task
def make_lock() -> Any:
    return threading.Lock()


def run(runner: ProcessPoolTaskRunner, body: Any) -> Any:
    return run_with_deadline(flow(task_runner=runner)(body), DEADLINE)


# -- configuration ----------------------------------------------------------------------


def test_registered_as_processes_through_its_entry_point() -> None:
    assert load_runner("processes") is ProcessPoolTaskRunner


def test_default_start_method_is_safe_with_threads() -> None:
    assert default_start_method() in ("forkserver", "spawn")
    assert ProcessPoolTaskRunner()._start_method() == default_start_method()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_invalid_max_workers_is_refused(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_workers"):
        ProcessPoolTaskRunner(max_workers=bad)


def test_unknown_start_method_is_refused() -> None:
    with pytest.raises(ValueError, match="start method"):
        ProcessPoolTaskRunner(mp_context="teleport")


def test_equality_and_duplicate_keep_the_configuration() -> None:
    runner = ProcessPoolTaskRunner(2, "spawn", print, ("x",))
    copy = runner.duplicate()
    assert copy == runner and copy is not runner
    assert (copy.max_workers, copy.mp_context, copy.initializer, copy.initargs) == (2, "spawn", print, ("x",))
    assert runner != ProcessPoolTaskRunner(3, "spawn", print, ("x",))
    assert ProcessPoolTaskRunner(2, multiprocessing.get_context("spawn")) == ProcessPoolTaskRunner(2, "spawn")


# -- what travels ------------------------------------------------------------------------


def test_runs_happen_in_other_processes() -> None:
    def body() -> Any:
        return pid.map(range(6)).result()

    pids = run(ProcessPoolTaskRunner(max_workers=2), body)
    assert os.getpid() not in pids
    assert 1 <= len(set(pids)) <= 2


def test_closures_and_lambdas_travel_by_value() -> None:
    offset = 40
    add_offset = task(lambda x: x + offset)

    def body() -> Any:
        return add_offset.submit(2).result()

    assert run(ProcessPoolTaskRunner(max_workers=1), body) == 42


def test_exception_keeps_its_type_and_carries_the_worker_traceback() -> None:
    def body() -> Any:
        return raise_unusual.submit(5).result(raise_on_failure=False)

    error = run(ProcessPoolTaskRunner(max_workers=1), body)
    assert type(error) is Unusual and error.code == 5
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "in raise_unusual" in error.__cause__.text and "Unusual: code 5" in error.__cause__.text


def test_an_unpicklable_argument_fails_that_run_naming_the_task_and_parameter() -> None:
    def body() -> Any:
        bad = length.submit(threading.Lock())
        good = double.submit(21)
        return bad.result(raise_on_failure=False), good.result()

    error, value = run(ProcessPoolTaskRunner(max_workers=1), body)
    assert isinstance(error, TypeError)
    assert "task run 'length-" in str(error) and "argument 'value'" in str(error)
    assert "it is a _thread.lock" in str(error) and "Create the object inside the task" in str(error)
    assert value == 42


def test_an_unpicklable_argument_in_a_map_fails_that_run_alone() -> None:
    def body() -> Any:
        return [f.result(raise_on_failure=False) for f in length.map([[1], threading.Lock(), "ab"] * 20)]

    results = run(ProcessPoolTaskRunner(max_workers=2), body)
    for index, result in enumerate(results):
        if index % 3 == 1:
            assert isinstance(result, TypeError) and "argument 'value' cannot be pickled" in str(result)
        else:
            assert result == [1, None, 2][index % 3]


def test_an_unpicklable_result_fails_that_run_with_a_clear_error() -> None:
    def body() -> Any:
        return make_lock.submit().result(raise_on_failure=False), double.submit(1).result()

    error, value = run(ProcessPoolTaskRunner(max_workers=1), body)
    assert isinstance(error, TypeError) and "task run 'make_lock-" in str(error)
    assert "its return value cannot be pickled" in str(error) and "it is a _thread.lock" in str(error)
    assert value == 2


def test_submit_does_not_wait_for_upstream_runs(tmp_path: Path) -> None:
    from taskrunners.testing import tasks as signals

    def body() -> Any:
        gate = signals.wait_and_return.submit(str(tmp_path), "go", value=4)
        downstream = double.submit(gate)  # must return at once although gate waits
        submitted_before_release = not gate.done()
        signals.signal(str(tmp_path), "go")
        return submitted_before_release, downstream.result()

    assert run(ProcessPoolTaskRunner(max_workers=2), body) == (True, 8)


# -- lost workers ------------------------------------------------------------------------


@pytest.mark.parametrize("crash", ["segfault", "exit"])
def test_a_dead_worker_crashes_only_its_run_and_is_replaced(crash: str) -> None:
    crasher = segfault if crash == "segfault" else exit_now.with_options()

    def body() -> Any:
        lost = crasher.submit() if crash == "segfault" else crasher.submit(7)
        others = double.map(range(20))
        lost.wait()
        later = pid.map(range(4)).result()
        return lost.state, others.result(), later

    state, others, later = run(ProcessPoolTaskRunner(max_workers=1), body)
    assert state.is_crashed() and isinstance(state.exception, TaskRunCrashed)
    assert "died with exit code" in str(state.exception)
    assert others == [2 * i for i in range(20)]
    assert len(later) == 4


def record_attempt_then_exit_or_raise(directory: str) -> None:
    """The first attempt kills its worker; later ones raise."""
    attempts = len(list(Path(directory).iterdir()))
    Path(directory, f"attempt-{attempts + 1}").touch()
    if attempts == 0:
        os._exit(3)
    raise ValueError(f"attempt {attempts + 1}")


def test_a_lost_worker_uses_one_of_the_task_s_retries(tmp_path: Path) -> None:
    flaky = task(record_attempt_then_exit_or_raise, retries=1)

    def body() -> Any:
        return flaky.submit(str(tmp_path)).result(raise_on_failure=False)

    error = run(ProcessPoolTaskRunner(max_workers=1), body)
    # The loss took the first attempt; the one retry left ran, raised, and failed the run.
    assert isinstance(error, ValueError) and str(error) == "attempt 2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["attempt-1", "attempt-2"]


def test_a_run_that_kills_every_worker_crashes_once_its_retries_are_used() -> None:
    def body() -> Any:
        future = exit_now.with_options(retries=1).submit(9)
        future.wait()
        return {"state": future.state}  # returned bare, the crashed State would end the flow

    state = run(ProcessPoolTaskRunner(max_workers=1), body)["state"]
    assert state.is_crashed() and "died with exit code 9" in str(state.exception)


def explode() -> None:
    raise RuntimeError("this object does not unpickle in a worker")


class Fragile:
    """Pickles in the flow's process, fails to unpickle in a worker."""

    def __reduce__(self) -> Any:
        return (explode, ())


def test_a_run_that_cannot_be_unpickled_in_the_worker_fails_alone() -> None:
    def body() -> Any:
        return [f.result(raise_on_failure=False) for f in length.map([[1], Fragile(), [1, 2, 3], "abcd"] * 3)]

    results = run(ProcessPoolTaskRunner(max_workers=1), body)
    for index, result in enumerate(results):
        if index % 4 == 1:
            assert isinstance(result, RuntimeError)
            assert "could not unpickle the run" in str(result) and "does not unpickle" in str(result)
        else:
            assert result == {0: 1, 2: 3, 3: 4}[index % 4]


def test_many_mapped_runs_come_back_in_order() -> None:
    def body() -> Any:
        return double.map(range(5000)).result()

    assert run(ProcessPoolTaskRunner(max_workers=2), body) == [2 * i for i in range(5000)]


@task
def slow_echo(text: str) -> str:
    time.sleep(0.0005)  # long enough for the worker to report in the middle of a batch
    return text


def test_large_batches_and_replies_both_ways_do_not_deadlock() -> None:
    # A worker with short runs is sent its next batch (1 MB or more here) while it runs
    # one and writes replies (8 KB a run): neither side may wait for the other to read.
    texts = [f"{i:06d}" + "x" * 8186 for i in range(3000)]

    def body() -> Any:
        return slow_echo.map(texts).result()

    assert run(ProcessPoolTaskRunner(max_workers=1), body) == texts


# -- initializer -------------------------------------------------------------------------


def record_start(directory: str) -> None:
    Path(directory, f"started-{os.getpid()}").touch()


def failing_initializer() -> None:
    raise RuntimeError("no database")


def test_initializer_runs_once_in_each_worker(tmp_path: Path) -> None:
    runner = ProcessPoolTaskRunner(max_workers=2, initializer=record_start, initargs=(str(tmp_path),))

    def body() -> Any:
        return set(pid.map(range(20)).result())

    pids = run(runner.duplicate(), body)
    started = {int(p.name.split("-")[1]) for p in tmp_path.iterdir()}
    assert pids <= started and len(started) <= 2


def test_a_failing_initializer_crashes_the_runs_with_its_error() -> None:
    def body() -> Any:
        futures: list[Future[Any]] = [double.submit(i) for i in range(3)]
        return [f.result(raise_on_failure=False) for f in futures]

    errors = run(ProcessPoolTaskRunner(max_workers=1, initializer=failing_initializer), body)
    assert all(isinstance(e, TaskRunCrashed) for e in errors)
    assert all("no database" in str(e) for e in errors)


def test_a_failed_start_leaves_the_runner_unstarted_so_that_the_next_with_works() -> None:
    runner = ProcessPoolTaskRunner(max_workers=1, initializer=print, initargs=(threading.Lock(),))
    with pytest.raises(TypeError, match=r"initializer and initargs .* must be picklable"):
        with runner:
            pass
    assert not runner.started
    with pytest.raises(TypeError, match="must be picklable"):  # the same error, not "already started"
        with runner:
            pass
    runner.initargs = ("worker started",)
    with runner:
        future = runner.submit(double, {"x": 4})
        assert future.result(timeout=DEADLINE) == 8
    assert not runner.started


# -- workers that cannot start, a broken pool ---------------------------------------------

MAIN_GUARD = 'if __name__ == "__main__":'

NO_GUARD_SCRIPT = """
from taskrunners import flow, task
from taskrunners_processes import ProcessPoolTaskRunner


@task
def double(x):
    return 2 * x


@flow(task_runner=ProcessPoolTaskRunner(max_workers=2, mp_context={method!r}))
def doubles():
    return double.map(range(4)).result()


print("RESULT", doubles())
"""


@pytest.mark.parametrize("method", sorted({default_start_method(), "spawn"}))
def test_a_script_without_the_main_guard_fails_with_the_fix_instead_of_hanging(
    method: str, tmp_path: Path
) -> None:
    # Each worker imports the script as `__mp_main__` and so runs the flow again, whose
    # runner cannot start processes there: that used to leave the flow waiting forever.
    script = tmp_path / "no_guard.py"
    script.write_text(textwrap.dedent(NO_GUARD_SCRIPT.format(method=method)))
    command = [sys.executable, str(script)]
    done = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "RESULT" not in done.stdout
    # The flow's own process says what happened and what to do...
    parent = [line for line in output.splitlines() if "stopped starting them" in line]
    assert parent and MAIN_GUARD in parent[-1] and str(script) in parent[-1]
    # ...and so does each worker, whose own runner refused to start processes.
    assert "child process still starting up" in output


def record_and_exit(directory: str, code: int) -> None:
    Path(directory, f"started-{os.getpid()}").touch()
    os._exit(code)


def test_workers_that_exit_before_they_are_ready_crash_the_runs_and_are_not_replaced_forever(
    tmp_path: Path,
) -> None:
    runner = ProcessPoolTaskRunner(max_workers=2, initializer=record_and_exit, initargs=(str(tmp_path), 3))

    def body() -> Any:
        first = [f.result(raise_on_failure=False) for f in double.map(range(5))]
        later = double.submit(1).result(raise_on_failure=False)  # the pool stays broken
        return first, later

    first, later = run(runner, body)
    for error in [*first, later]:
        assert isinstance(error, TaskRunCrashed)
        assert "exited (the last with exit code 3) before they were ready" in str(error)
    # One batch of workers at most beyond the failures that broke the pool.
    assert len(list(tmp_path.iterdir())) <= MAX_START_FAILURES + runner.max_workers - 1


@pytest.mark.skipif(sys.platform == "win32", reason="sets RLIMIT_NOFILE")
def test_a_failing_dispatcher_crashes_the_pending_runs_and_refuses_new_ones() -> None:
    import resource

    def body() -> Any:
        # The only worker dies, so the next run needs a new one; with no file descriptor
        # left, the dispatcher thread cannot create that worker's pipe: a real failure
        # inside it, not a mock. (Workers start with the runner: the first ones exist
        # before the limit is set.)
        assert isinstance(exit_now.submit(7).result(raise_on_failure=False), TaskRunCrashed)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = os.open(os.devnull, os.O_RDONLY)
        os.close(lowest_free)
        resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
        try:
            pending = double.submit(1)
            pending.wait()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return pending.state, double.submit(2).state

    pending, later = run(ProcessPoolTaskRunner(max_workers=1), body)
    assert pending.is_crashed() and isinstance(pending.exception, TaskRunCrashed)
    assert "dispatcher thread failed (OSError" in str(pending.exception)
    assert isinstance(pending.exception.__cause__, OSError)
    assert later.is_crashed() and "dispatcher thread failed" in str(later.exception)


# -- interrupts --------------------------------------------------------------------------


def test_interrupted_flow_crashes_runs_not_yet_sent(tmp_path: Path) -> None:
    from taskrunners.testing import tasks as signals

    futures: list[Future[Any]] = []

    def body() -> None:
        futures.append(
            signals.wait_and_return.submit(str(tmp_path), "go", value="finished", started="started")
        )
        signals.wait_signal(str(tmp_path), "started")
        futures.extend(double.submit(i) for i in range(3))
        futures[1].add_done_callback(lambda _: signals.signal(str(tmp_path), "go"))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(ProcessPoolTaskRunner(max_workers=1), body)
    assert futures[0].result() == "finished"
    for future in futures[1:]:
        assert future.state.is_crashed() and "interrupted" in str(future.state.exception)
