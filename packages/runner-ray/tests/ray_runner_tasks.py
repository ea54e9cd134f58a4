"""Tasks of the Ray runner's own tests, importable by name on Ray workers.

The session puts this folder on the workers' `PYTHONPATH` (see conftest.py). Tasks
synchronise through files in a directory the test passes in, never through sleeps.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

from taskrunners import task
from taskrunners.testing.tasks import signal, wait_signal


def _record(path: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\n")


def _rebuild(payload: bytes, path: str) -> Tracked:
    _record(path)  # runs wherever the value is unpickled
    return Tracked(payload, path)


class Tracked:
    """A value that writes the pid of every process that unpickles it to a file."""

    def __init__(self, payload: bytes, path: str) -> None:
        self.payload = payload
        self.path = path

    def __reduce__(self) -> Any:
        return (_rebuild, (self.payload, self.path))


def unpickled_in(path: str) -> list[int]:
    """The pids of the processes that unpickled the `Tracked` values recording to `path`."""
    if not Path(path).exists():
        return []
    return [int(line) for line in Path(path).read_text().split()]


@task
def make_tracked(size: int, path: str) -> Tracked:
    return Tracked(b"x" * size, path)


@task
def measure(value: Tracked) -> tuple[int, int]:
    """The size of the value received and the pid of the worker that received it."""
    return len(value.payload), os.getpid()


@task
def assigned_resources() -> dict[str, float]:
    import ray

    return dict(ray.get_runtime_context().get_assigned_resources())


@task
def ray_namespace() -> str:
    import ray

    return str(ray.get_runtime_context().namespace)


@task
def environment_variable(name: str) -> str | None:
    return os.environ.get(name)


@task
def pid() -> int:
    return os.getpid()


@task
def wait_to_be_killed(directory: str) -> None:
    """Write this worker's pid to `pid`, then wait for a signal that never comes."""
    path = Path(directory, "pid")
    tmp = path.with_name("pid.tmp")
    tmp.write_text(str(os.getpid()))
    tmp.replace(path)
    wait_signal(directory, "never", timeout=120)


@task
def nest_and_meet(directory: str, me: str, other: str, depth: int) -> int:
    """Meet the other run (so both hold a CPU), then wait for runs nested `depth` deep."""
    signal(directory, me)
    wait_signal(directory, other)
    return chain_down.submit(depth).result()


@task
def chain_down(depth: int) -> int:
    if depth == 0:
        return 0
    return chain_down.submit(depth - 1).result() + 1


class Unpicklable(Exception):
    """An exception that cannot be pickled (it holds a lock)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.lock = threading.Lock()


@task
def raise_unpicklable(message: str) -> None:
    raise Unpicklable(message)


@task
def identity(value: Any) -> Any:
    return value


@task
def exit_worker() -> None:
    os._exit(17)


@task
def measure_nested(values: dict[str, list[Tracked]]) -> int:
    return sum(len(value.payload) for value in values["inside"])


@task
def map_inside(count: int) -> list[int]:
    """Map `count` runs from inside a task (more than the cluster's CPUs: some queue)."""
    return identity.map(range(count)).result()


@task
def make_lock() -> Any:
    return threading.Lock()


@task
def exit_on(value: int, bad: int) -> int:
    """`value`, or the end of this worker process when `value` is `bad`."""
    if value == bad:
        os._exit(23)
    return value


@task
def lock_or_value(value: int, bad: int) -> Any:
    """A lock (which cannot leave the worker) when `value` is `bad`, else `value`."""
    return threading.Lock() if value == bad else value


@task
def busy(seconds: float) -> float:
    """Take `seconds` (a run's length, not a wait for another run)."""
    time.sleep(seconds)
    return seconds
