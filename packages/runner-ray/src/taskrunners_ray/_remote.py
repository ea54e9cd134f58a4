"""What runs on a Ray worker: the remote functions that execute task runs, and their
variants with Ray options (made once per task name and set of options, and kept)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from taskrunners import RemoteError, State
from taskrunners.lowlevel import OptionSet, RunSpec, add_location_hook, dumps, loads

__all__ = ["base_function", "batch_variant", "batchable", "on_worker", "run_batch", "run_remote", "variant"]

#: A failed state larger than this once pickled has its exception replaced by a short one.
FAILURE_MAX_BYTES = 32 * 1024  # with the remote traceback as text (at most 6,000 characters)

_variants: dict[Any, Any] = {}
_options: dict[Any, tuple[dict[str, Any], tuple[tuple[str, Any], ...]]] = {}  # variant -> its options

#: Ray options that only `ray.remote(...)` takes (`.options()` refuses them).
REMOTE_ONLY = frozenset({"max_calls"})


def split_options(values: dict[str, Any]) -> tuple[dict[str, Any], tuple[tuple[str, Any], ...]]:
    """`values` as the options for `.options()`, and those for `ray.remote(...)` (sorted pairs)."""
    remote = tuple(sorted((key, value) for key, value in values.items() if key in REMOTE_ONLY))
    if not remote:
        return values, ()
    return {key: value for key, value in values.items() if key not in REMOTE_ONLY}, remote


@functools.cache
def on_worker() -> bool:
    """Whether this process is a Ray worker (a task running here submits runs)."""
    from ray._private import worker

    return bool(worker.global_worker.mode == worker.WORKER_MODE)


def run_remote(payload: bytes, *upstream: bytes) -> bytes:
    """Execute one run on a Ray worker (given its upstream runs' pickled states); return its own."""
    return _execute(loads(payload), [loads(data) for data in upstream])


def run_batch(payload: bytes) -> tuple[bytes, ...]:
    """Execute a batch of runs without upstream runs in turn; one pickled state each."""
    specs: list[RunSpec] = loads(payload)
    return tuple(_execute(spec, ()) for spec in specs)


@functools.cache
def _where() -> dict[str, str]:
    """The run report's location hook: the Ray node and worker of this process."""
    import ray

    if not on_worker():
        return {}
    context = ray.get_runtime_context()
    node, worker = str(context.get_node_id()), str(context.get_worker_id())
    return {"worker": f"ray worker {worker[:12]}", "ray_node": node, "ray_worker": worker}


def _execute(spec: RunSpec, states: Sequence[State[Any]]) -> bytes:
    from ._runner import RayTaskRunner

    add_location_hook(_where)
    runner = RayTaskRunner.for_worker()
    state = spec.execute(states, runner=runner)
    if runner.started:  # the task submitted runs: wait for them
        runner.__exit__(None, None, None)
    # A return value that cannot leave the worker fails the run, naming it; an exception
    # always arrives (as itself, or as a stand-in that keeps its type's name).
    blob = spec.dumps_state(state)
    if state.exception is not None and len(blob) > FAILURE_MAX_BYTES:
        return dumps(_shortened(state, len(blob)))
    return blob


def _shortened(state: State[Any], size: int) -> State[Any]:
    """A copy of the failed `state` whose exception pickles small (the flow's process
    tells a completed run's large value from a failure by size alone): a stand-in
    that keeps its type and the start of its message, without the traceback."""
    fields = state.fields()
    exc = fields.exception
    assert exc is not None
    text = str(exc)
    if len(text) > 2000:
        text = text[:2000] + "..."
    note = f"(the original exception is {size:,} bytes once pickled, more than {FAILURE_MAX_BYTES:,}: "
    replacement = RemoteError.standing_in_for(exc, f"{text} {note}it stayed on the Ray worker)")
    return State.from_fields(fields._replace(exception=replacement), state.where)


@functools.cache
def base_function(function: Any = run_remote, remote: tuple[tuple[str, Any], ...] = ()) -> Any:
    """The Ray remote function for `run_remote` (or `run_batch`), made on first use, with
    the options that only `ray.remote(...)` takes (`remote`, such as `max_calls`)."""
    import ray

    return ray.remote(max_retries=0, retry_exceptions=False, **dict(remote))(function)


def variant(task_name: str, options: OptionSet, nested: bool) -> Any:
    """The remote function with Ray options for runs of `task_name`: named after the
    task, and reserving no CPU for a run submitted from a task (`nested`) unless asked."""
    key = (task_name, options.key, nested)
    fn = _variants.get(key)
    if fn is None:
        values: dict[str, Any] = {"name": task_name}
        if nested:
            values["num_cpus"] = 0
        values.update(options.values)
        values, remote = split_options(values)
        fn = base_function(run_remote, remote).options(**values)
        if options.key is not None:  # kept, and its runs may go in batches
            _variants[key] = fn
            _options[fn] = (values, remote)
    return fn


def batchable(single: Any) -> bool:
    """Whether runs of `single` (a `variant`) may go in batches."""
    return single in _options


@functools.cache
def batch_variant(single: Any, count: int) -> Any:
    """The remote function for a batch of `count` runs with the options of the `variant` `single`."""
    values, remote = _options[single]
    return base_function(run_batch, remote).options(**values, num_returns=count)
