"""Per-run Dask options (`dask_options`) and a Dask client for code inside tasks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import distributed

__all__ = ["current_options", "dask_options", "get_dask_client"]

#: The `Client.submit` keywords that `dask_options` passes on.
OPTIONS = frozenset({"resources", "priority", "retries", "workers", "allow_other_workers", "fifo_timeout"})

_EMPTY: dict[str, Any] = {}
_options_var: ContextVar[dict[str, Any]] = ContextVar("taskrunners_dask_options", default=_EMPTY)


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
    unknown = set(options) - OPTIONS
    if unknown:
        raise TypeError(
            f"dask_options() got unknown option(s) {sorted(unknown)}; the options are {sorted(OPTIONS)}"
        )
    token = _options_var.set({**_options_var.get(), **options})
    try:
        yield
    finally:
        _options_var.reset(token)


def current_options() -> dict[str, Any]:
    """The options of the innermost `dask_options` block (empty outside any)."""
    return _options_var.get()


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
    from taskrunners import _context

    try:
        from distributed import get_worker

        get_worker()
    except ValueError:
        on_worker = False
    else:
        on_worker = True
    if on_worker:
        from distributed import get_client

        client = get_client(timeout=timeout)
        with _context.blocking(), client.as_current():
            yield client
        return
    from ._runner import DaskTaskRunner

    runner = _context.current_runner_var.get()
    if not isinstance(runner, DaskTaskRunner) or not runner.started:
        raise RuntimeError(
            "get_dask_client() needs a task running on a Dask worker or a flow running on a "
            "DaskTaskRunner; call it inside such a task or flow"
        )
    client = runner.client
    with client.as_current():
        yield client
