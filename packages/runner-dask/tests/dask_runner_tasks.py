"""Tasks and cluster classes for the Dask runner's tests.

A module of its own, importable by name on every worker (the tests' conftest puts this
folder on `sys.path`, and on `PYTHONPATH` for workers started from the command line),
so that the tasks pickle by reference as users' tasks do.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

from distributed import LocalCluster
from taskrunners import task
from taskrunners.testing.tasks import signal, wait_signal


@task
def where() -> dict[str, Any]:
    """Which worker (and process) runs this run."""
    from distributed import get_worker

    return {"worker": get_worker().address, "pid": os.getpid()}


@task
def make_bytes(size: int, fill: int = 1) -> bytes:
    return bytes([fill]) * size


@task
def grow(data: bytes) -> bytes:
    """A new large value from a large value (the chain's links)."""
    return bytes([(data[0] + 1) % 256]) * len(data)


@task
def first_byte(data: bytes) -> int:
    return data[0]


@task
def held(directory: str, name: str, value: Any = None) -> Any:
    """Signal `name`-started, wait for `name`, return `value`."""
    signal(directory, f"{name}-started")
    wait_signal(directory, name)
    return value


@task
def key_of_nested() -> tuple[str, str]:
    """Submit a run from inside a run; report its Dask key and its client's scheduler."""
    future = where.submit()
    future.result()
    return future.native.key, future.native.client.scheduler.address


@task
def compute_with_dask_client(n: int) -> int:
    """Use Dask directly from inside a task (a Dask collection on the same cluster)."""
    import dask
    from taskrunners_dask import get_dask_client

    with get_dask_client() as client:
        parts = [dask.delayed(lambda i: i * i)(i) for i in range(n)]
        total = dask.delayed(sum)(parts)
        return int(client.compute(total).result())


@task
def dask_compute_inside(n: int) -> tuple[int, str]:
    """`dask.compute` inside the block runs on the cluster's scheduler."""
    import dask
    from taskrunners_dask import get_dask_client

    with get_dask_client() as client:
        total = dask.delayed(sum)([dask.delayed(lambda i: i + 1)(i) for i in range(n)])
        (value,) = dask.compute(total)
        return int(value), client.scheduler.address


class RecordingCluster(LocalCluster):
    """A LocalCluster that records the calls of `adapt` (in this process)."""

    adapt_calls: ClassVar[list[dict[str, Any]]] = []

    def adapt(self, **kwargs: Any) -> Any:  # type: ignore[override]
        type(self).adapt_calls.append(kwargs)
        return super().adapt(**kwargs)


class AsyncAdaptCluster(LocalCluster):
    """A LocalCluster whose `adapt` is a coroutine function, as some cluster managers' are."""

    adapt_calls: ClassVar[list[dict[str, Any]]] = []

    async def adapt(self, **kwargs: Any) -> None:  # type: ignore[override]
        type(self).adapt_calls.append(kwargs)


class NarrowCluster(LocalCluster):
    """A LocalCluster subclass whose constructor takes only its own keywords (no
    `host`, `dashboard_address` or `scheduler_kwargs`): it passes its own choices on."""

    def __init__(self, n_workers: int = 1) -> None:
        super().__init__(n_workers=n_workers, processes=False, dashboard_address=None)
