"""What runs on a Ray worker: the remote functions that execute task runs, and their
variants with Ray options (made once per task name and set of options, and kept)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from taskrunners import State, StateType
from taskrunners.lowlevel import OptionSet, RunSpec, add_location_hook, dumps, loads

__all__ = ["base_function", "batch_variant", "batchable", "on_worker", "run_batch", "run_remote", "variant"]

#: A failed state larger than this once pickled has its exception replaced by a short one.
FAILURE_MAX_BYTES = 8 * 1024

_variants: dict[Any, Any] = {}
_options: dict[Any, dict[str, Any]] = {}  # variant -> its options


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
    if state.exception is not None:
        state = _portable(state)
    try:
        return dumps(state)
    except Exception as exc:  # a return value that cannot leave the worker
        cause = exc.__cause__ or exc
        error = TypeError(
            f"task run {spec.info.name!r} returned a value that cannot be pickled to leave its "
            f"Ray worker: {type(cause).__name__}: {cause}"
        )
        return dumps(
            State(StateType.FAILED, exception=error, name="NotSerializable", attempt=state.attempt, where=state.where)
        )


def _portable(state: State[Any]) -> State[Any]:
    """`state`, or a copy whose exception can be pickled and is small (the flow's
    process tells a completed run's large value from a failure by size alone)."""
    fields = state.fields()
    exc = fields.exception
    try:
        size = len(dumps(exc))
    except Exception as error:
        problem = f"it cannot be pickled: {error.__cause__ or error!r}"
    else:
        if size <= FAILURE_MAX_BYTES:
            return state
        problem = f"it is {size:,} bytes once pickled, more than {FAILURE_MAX_BYTES:,}"
    text = str(exc)
    if len(text) > 2000:
        text = text[:2000] + "..."
    replacement = RuntimeError(
        f"{type(exc).__module__}.{type(exc).__qualname__}: {text} (the original exception "
        f"does not travel back from the Ray worker: {problem})"
    )
    return State.from_fields(fields._replace(exception=replacement), state.where)


@functools.cache
def base_function(function: Any = run_remote) -> Any:
    """The Ray remote function for `run_remote` (or `run_batch`), made on first use."""
    import ray

    return ray.remote(max_retries=0, retry_exceptions=False)(function)


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
        fn = base_function().options(**values)
        if options.key is not None:  # kept, and its runs may go in batches
            _variants[key] = fn
            _options[fn] = values
    return fn


def batchable(single: Any) -> bool:
    """Whether runs of `single` (a `variant`) may go in batches."""
    return single in _options


@functools.cache
def batch_variant(single: Any, count: int) -> Any:
    """The remote function for a batch of `count` runs with the options of the `variant` `single`."""
    return base_function(run_batch).options(**_options[single], num_returns=count)
