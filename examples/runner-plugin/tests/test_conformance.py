"""The conformance suite of taskrunners, once per kind of executor.

Each class states what its configuration can do (`capabilities`) and what it cannot
(`known_failures`, run as strict xfails); the suite does the rest.
"""

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial

import pytest
from taskrunners import Capability
from taskrunners.testing import TaskRunnerTests
from taskrunners_executor import ExecutorTaskRunner

NESTED = "a task in a worker process cannot reach the flow's runner"
AHEAD = (
    "a process pool executor hands calls to its workers' queue ahead of time: those cannot be "
    "cancelled, and start after an interrupt once a worker is free"
)
INTERRUPTS = {
    "test_ctrl_c_ends_unstarted_runs_and_exits_130": AHEAD,
    "test_sigterm_ends_unstarted_runs_and_exits_143": AHEAD,
}


@pytest.fixture(scope="module")
def process_pool():
    """One process pool for the module: started once, shut down by its owner (us)."""
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("forkserver")) as pool:
        yield pool


@pytest.fixture(scope="module")
def loky_executor():
    loky = pytest.importorskip("loky", reason="the loky configuration needs loky (pip install loky)")
    executor = loky.get_reusable_executor(max_workers=2)
    yield executor
    executor.shutdown(wait=True)


class TestThreadPoolFactory(TaskRunnerTests):
    """A fresh pool of threads per flow run (the default, with room for nesting)."""

    capabilities = frozenset({Capability.IN_PROCESS})

    @pytest.fixture
    def task_runner(self):
        return ExecutorTaskRunner(partial(ThreadPoolExecutor, max_workers=8))


def process_pool_runner() -> ExecutorTaskRunner:
    """For the interrupt tests' child process: the runner on a process pool of its own."""
    pool = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("forkserver"))
    return ExecutorTaskRunner(pool)


def loky_runner() -> ExecutorTaskRunner:
    """For the interrupt tests' child process: the runner on loky's reusable executor."""
    import loky

    return ExecutorTaskRunner(loky.get_reusable_executor(max_workers=2))


class TestSharedProcessPool(TaskRunnerTests):
    """A ProcessPoolExecutor shared by every flow run."""

    capabilities = frozenset({Capability.PARALLEL, Capability.OUT_OF_PROCESS})
    many_runs = 1_000
    known_failures = {"test_nested_submission_from_a_task": NESTED, **INTERRUPTS}

    @pytest.fixture
    def task_runner(self, process_pool):
        return ExecutorTaskRunner(process_pool)

    @pytest.fixture
    def task_runner_in_child(self):
        return f"{__file__}:process_pool_runner"


class TestSharedLokyExecutor(TaskRunnerTests):
    """loky's reusable executor, shared by every flow run."""

    capabilities = frozenset({Capability.PARALLEL, Capability.OUT_OF_PROCESS})
    many_runs = 1_000
    known_failures = {"test_nested_submission_from_a_task": NESTED, **INTERRUPTS}

    @pytest.fixture
    def task_runner(self, loky_executor):
        return ExecutorTaskRunner(loky_executor)

    @pytest.fixture
    def task_runner_in_child(self):
        return f"{__file__}:loky_runner"
