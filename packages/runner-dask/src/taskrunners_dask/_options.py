"""Per-run Dask options (`dask_options`) and a Dask client for code inside tasks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from taskrunners.lowlevel import RunOptions, blocking, current_runner

if TYPE_CHECKING:
    import distributed

__all__ = ["current_options", "dask_options", "get_dask_client"]

#: The `Client.submit` keywords that `dask_options` passes on.
OPTIONS = frozenset({"resources", "priority", "retries", "workers", "allow_other_workers", "fifo_timeout"})

_options = RunOptions("dask_options", allowed=OPTIONS)


@contextlib.contextmanager
def dask_options(**options: Any) -> Iterator[None]:
    """Dask options for the runs submitted inside the `with` block.

    The options are those of `distributed.Client.submit`: `resources` (e.g.
    `{"GPU": 1}`: only workers started with that resource run it), `priority` (higher
    runs first), `retries` (Dask re-runs a run whose *Dask task* errs; a task's own
    exceptions are retried by its `retries` option), `workers` (addresses or names the
    run may go to), `allow_other_workers` and `fifo_timeout`. Blocks nest; an inner
    block's value wins. `dask.annotate(...)` works as well.

    Raises:
        TypeError: An option is not one of these.
    """
    with _options.using(**options):
        yield


def current_options() -> Mapping[str, Any]:
    """The options of the `dask_options` blocks, over those of the `dask.annotate` in
    force: kept for a run that is sent later, from another thread."""
    from dask.base import get_annotations

    options = _options.current().values
    annotations = get_annotations()
    if not annotations:
        return options
    return {**{name: annotations[name] for name in OPTIONS if name in annotations}, **options}


@contextlib.contextmanager
def get_dask_client(timeout: float | str | None = None) -> Iterator[distributed.Client]:
    """A `distributed.Client` on the cluster of the running flow, for Dask collections.

    Inside a task run on a Dask worker, it is the worker's client, and the task leaves
    the worker's thread pool for the `with` block, so that the work it hands to Dask
    can use the slot it held. In a flow whose runner is a `DaskTaskRunner`, it is the
    runner's client. Inside the block, `dask.compute()` and `.compute()` use it.

    Args:
        timeout: Seconds (or a Dask duration such as `"10s"`) to wait for the worker's
            client to connect.

    Raises:
        RuntimeError: Neither a Dask worker nor a flow on a `DaskTaskRunner` runs here.
    """
    from distributed import get_client, get_worker

    try:
        get_worker()
    except ValueError:
        pass
    else:
        client = get_client(timeout=timeout)
        with blocking(), client.as_current():
            yield client
        return
    from ._runner import DaskTaskRunner

    runner = current_runner()
    if not isinstance(runner, DaskTaskRunner) or not runner.started:
        raise RuntimeError(
            "get_dask_client() needs a task running on a Dask worker or a flow running on a "
            "DaskTaskRunner; call it inside such a task or flow"
        )
    client = runner.client
    with client.as_current():
        yield client
