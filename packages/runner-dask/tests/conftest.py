"""Clusters for the Dask runner's tests, shared by the whole session.

- `local_cluster`: a `distributed.LocalCluster` of 2 worker processes (1 thread each),
  on 127.0.0.1, with `allowed_failures=0` as DaskTaskRunner gives its own clusters.
- `one_worker_cluster`: the same with a single worker process of a single thread.
- `fresh_local_cluster` (per test): the same as `local_cluster`, for tests that kill
  workers, so that the shared one never has workers restarting under other tests.
- `cli_cluster`: a scheduler and 2 worker processes started with the `dask` command
  line (`python -m dask scheduler` / `python -m dask worker`, of this environment), on
  127.0.0.1 only, with Dask's default settings; stopped by the PIDs it started.

Each starts on first use and stops at the end of the session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # workers import the tests' tasks module by name

START_TIMEOUT = 60.0


def _local_cluster(workers: int) -> Iterator[object]:
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        scheduler_kwargs={"allowed_failures": 0},
    )
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="session")
def local_cluster() -> Iterator[object]:
    yield from _local_cluster(2)


@pytest.fixture
def fresh_local_cluster() -> Iterator[object]:
    yield from _local_cluster(2)


@pytest.fixture(scope="session")
def one_worker_cluster() -> Iterator[object]:
    yield from _local_cluster(1)


class CommandLineCluster:
    """`dask scheduler` and `dask worker --nworkers 2`, as separate processes."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.scheduler_file = directory / "scheduler.json"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.address = ""
        self.client: Any = None  # the fixture's own, to watch the workers

    def start(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), *filter(None, [env.get("PYTHONPATH")])])
        dask = [sys.executable, "-m", "dask"]  # the `dask` command line, of this environment
        with open(self.directory / "scheduler.log", "wb") as scheduler_log:
            self.processes.append(
                subprocess.Popen(
                    [
                        *dask, "scheduler",
                        "--host", "127.0.0.1",
                        "--port", "0",
                        "--dashboard-address", "127.0.0.1:0",
                        "--scheduler-file", str(self.scheduler_file),
                    ],
                    env=env, stdout=scheduler_log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        self._wait_for(self.scheduler_file.exists, "the scheduler to write its file")
        with open(self.directory / "workers.log", "wb") as worker_log:
            self.processes.append(
                subprocess.Popen(
                    [
                        *dask, "worker",
                        "--scheduler-file", str(self.scheduler_file),
                        "--nworkers", "2",
                        "--nthreads", "1",
                        "--host", "127.0.0.1",
                        "--dashboard-address", "127.0.0.1:0",
                    ],
                    env=env, stdout=worker_log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        import json

        self.address = json.loads(self.scheduler_file.read_text())["address"]
        self.wait_for_workers(2)

    def pids(self) -> set[int]:
        """The processes of the cluster: those started, and their children."""
        import psutil

        found = set()
        for process in self.processes:
            found.add(process.pid)
            found |= {child.pid for child in psutil.Process(process.pid).children(recursive=True)}
        return found

    def wait_for_workers(self, count: int = 2) -> None:
        """Wait until `count` workers are connected (after a test killed one)."""
        if self.client is None:
            from distributed import Client

            self.client = Client(self.address, set_as_default=False, timeout=START_TIMEOUT)
        self.client.wait_for_workers(count, timeout=START_TIMEOUT)

    def _wait_for(self, condition: object, what: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not condition():  # type: ignore[operator]
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a dask process exited ({process.args}); see {self.directory}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {START_TIMEOUT} s for {what}")
            time.sleep(0.05)  # polling for a file another process writes: no event to wait on

    def stop(self) -> None:
        """SIGTERM the workers' and the scheduler's processes we started; SIGKILL what
        is left of them (and of their child processes) after a grace period."""
        import psutil

        if self.client is not None:
            self.client.close()
        descendants = []
        for process in self.processes:
            try:
                descendants += psutil.Process(process.pid).children(recursive=True)
            except psutil.NoSuchProcess:
                pass
        for process in reversed(self.processes):  # workers first, then the scheduler
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        _, alive = psutil.wait_procs(descendants, timeout=10)
        for child in alive:
            child.kill()


@pytest.fixture(scope="session")
def cli_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CommandLineCluster]:
    cluster = CommandLineCluster(tmp_path_factory.mktemp("dask-cli"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
