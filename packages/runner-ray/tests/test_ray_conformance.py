"""The conformance suite against (a) the local Ray that the runner starts and (b) a
cluster started as a separate process (`ray start`, see conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from ray_runner_support import OBJECT_STORE, RayCluster, disconnect
from taskrunners.testing import TaskRunnerTests
from taskrunners_ray import RayTaskRunner, remote_options

#: The local Ray of these tests: 2 CPUs and a small object store, as on CI.
LOCAL = {"num_cpus": 2, "object_store_memory": OBJECT_STORE}


class TestRayTaskRunnerLocal(TaskRunnerTests):
    """Flows with `RayTaskRunner()` on the local Ray a runner started.

    Starting Ray takes seconds, so one runner starts it for the whole class and stays
    open; the flows' runners join that Ray and leave it running (the start and the
    shutdown at exit of a runner on its own are tested in test_ray_runner.py).
    """

    deadline = 120.0
    many_runs = 1_000

    @pytest.fixture(scope="class")
    @classmethod
    def local_ray(cls, ray_environment: Any) -> Iterator[RayTaskRunner]:
        disconnect()
        # Ray's session files go to the test session's folder, not /tmp/ray.
        with RayTaskRunner(init_kwargs={**LOCAL, "_temp_dir": str(ray_environment / "local")}) as keeper:
            yield keeper
        disconnect()

    @pytest.fixture
    def task_runner(self, local_ray: RayTaskRunner) -> RayTaskRunner:
        return RayTaskRunner(init_kwargs=local_ray.init_kwargs)

    @pytest.fixture
    def resource_limited_runner(self, local_ray: RayTaskRunner) -> tuple[RayTaskRunner, Callable[[], Any]]:
        # The local Ray has 2 CPUs: a run that asks for both holds the only "unit".
        return RayTaskRunner(init_kwargs=local_ray.init_kwargs), lambda: remote_options(num_cpus=2)


class TestRayTaskRunnerCluster(TaskRunnerTests):
    """Flows with `RayTaskRunner(address=...)` on a `ray start` cluster.

    Each new connection to a cluster is a new Ray job, whose worker processes start
    afresh (a second or two), so one runner connects for the whole class and stays
    open; the flows' runners join that connection. Connecting and disconnecting per
    flow run is tested in test_ray_runner.py.
    """

    deadline = 120.0
    many_runs = 1_000

    @pytest.fixture(scope="class")
    @classmethod
    def connection(cls, ray_cluster: RayCluster) -> Iterator[RayTaskRunner]:
        disconnect()
        with RayTaskRunner(address=ray_cluster.address) as keeper:
            yield keeper
        disconnect()

    @pytest.fixture
    def task_runner(self, ray_cluster: RayCluster, connection: RayTaskRunner) -> RayTaskRunner:
        return RayTaskRunner(address=ray_cluster.address)

    @pytest.fixture
    def resource_limited_runner(
        self, ray_cluster: RayCluster, connection: RayTaskRunner
    ) -> tuple[RayTaskRunner, Callable[[], Any]]:
        # The cluster has 2 CPUs (ray start --num-cpus 2).
        return RayTaskRunner(address=ray_cluster.address), lambda: remote_options(num_cpus=2)
