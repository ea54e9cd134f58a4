"""The conformance suite over every runner in this repository."""

import pytest
from taskrunners.testing import TaskRunnerTests
from taskrunners_processes import ProcessPoolTaskRunner
from taskrunners_threads import ThreadPoolTaskRunner


class TestThreadPoolTaskRunner(TaskRunnerTests):
    @pytest.fixture
    def task_runner(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner()

    @pytest.fixture
    def task_runner_with_one_worker(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(max_workers=1)


class TestThreadPoolTaskRunnerTwoWorkers(TaskRunnerTests):
    """The smallest pool on which two runs can meet at a barrier."""

    @pytest.fixture
    def task_runner(self) -> ThreadPoolTaskRunner:
        return ThreadPoolTaskRunner(max_workers=2)


class TestProcessPoolTaskRunner(TaskRunnerTests):
    @pytest.fixture
    def task_runner(self) -> ProcessPoolTaskRunner:
        return ProcessPoolTaskRunner(max_workers=2)

    @pytest.fixture
    def task_runner_with_one_worker(self) -> ProcessPoolTaskRunner:
        return ProcessPoolTaskRunner(max_workers=1)
