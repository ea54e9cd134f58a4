"""The conformance suite on the Dask runner: a LocalCluster of 2 worker processes, and a
scheduler and 2 workers started with the `dask` command line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from taskrunners.testing import TaskRunnerTests
from taskrunners_dask import DaskTaskRunner, dask_options


class TestOnLocalCluster(TaskRunnerTests):
    many_runs = 1_000

    @pytest.fixture
    def task_runner(self, request: pytest.FixtureRequest) -> DaskTaskRunner:
        # The tests that kill workers get a cluster of their own: the shared cluster's
        # scheduler runs in this process, and workers restarting (and reconnecting)
        # under later tests would show in the leak test's count of open files.
        name = getattr(request.node, "originalname", request.node.name)
        fixture = "fresh_local_cluster" if "worker_loss" in name else "local_cluster"
        cluster = request.getfixturevalue(fixture)
        return DaskTaskRunner(address=cluster.scheduler_address)  # type: ignore[attr-defined]

    @pytest.fixture
    def task_runner_with_one_worker(self, one_worker_cluster: Any) -> DaskTaskRunner:
        return DaskTaskRunner(address=one_worker_cluster.scheduler_address)

    @pytest.fixture
    def resource_limited_runner(self) -> tuple[DaskTaskRunner, Callable[[], Any]]:
        # One worker with two threads and one unit of "slot": a temporary LocalCluster.
        cluster = {"n_workers": 1, "threads_per_worker": 2, "processes": False, "resources": {"slot": 1}}
        return DaskTaskRunner(cluster_kwargs=cluster), lambda: dask_options(resources={"slot": 1})


class TestOnCommandLineCluster(TaskRunnerTests):
    many_runs = 1_000

    @pytest.fixture(autouse=True)
    def _workers_back(self, cli_cluster: Any) -> None:
        """Start each test with both workers up (a test before may have killed one)."""
        cli_cluster.wait_for_workers(2)

    @pytest.fixture
    def task_runner(self, cli_cluster: Any) -> DaskTaskRunner:
        return DaskTaskRunner(address=cli_cluster.address)
