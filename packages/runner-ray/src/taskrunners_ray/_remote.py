"""The one remote function that runs every task run on a Ray worker, and its variants.

`run_remote(call, *upstream)` receives the pickled `TaskCall` and the upstream runs'
pickled final states (Ray resolves the upstream `ObjectRef`s, passed as top-level
arguments, to those bytes on the worker), executes the call with a worker-side runner
for nested submission, and returns the final state, pickled: the one object that the
flow's process watches and downstream runs receive (see `_states` and `_pickling`).

The remote function is made once per process; its variants with Ray options (the
task's name, its retries, `remote_options`) are made once per distinct set of options
and kept, so a submit only looks one up.
"""

from __future__ import annotations

import threading
from typing import Any

from taskrunners import State, StateType, TaskCall

from ._options import Options
from ._pickling import dumps, loads
from ._states import portable

__all__ = ["base_function", "run_remote", "variant"]

_lock = threading.Lock()
_base: Any = None
_variants: dict[Any, Any] = {}


def run_remote(payload: bytes, *upstream: bytes) -> bytes:
    """Execute one run on a Ray worker; returns its final state, pickled."""
    from ._runner import WorkerRayTaskRunner

    call: TaskCall = loads(payload)
    states: list[State[Any]] = [loads(data) for data in upstream]
    with WorkerRayTaskRunner() as runner:
        state = call.execute(states, runner=runner)
    if state.exception is not None:
        state = portable(state)
    try:
        full = dumps(state)
    except Exception as exc:  # a return value that cannot leave the worker
        error = TypeError(
            f"task run {call.info.name!r} returned a value that cannot be pickled to leave its "
            f"Ray worker: {type(exc).__name__}: {exc}"
        )
        state = State(StateType.FAILED, exception=error, name="NotSerializable", attempt=state.attempt)
        full = dumps(state)
    return full


def base_function() -> Any:
    """The Ray remote function for `run_remote`, made on first use."""
    global _base
    if _base is None:
        with _lock:
            if _base is None:
                import ray

                _base = ray.remote(max_retries=0, retry_exceptions=False)(run_remote)
    return _base


def variant(task_name: str, retries: int, options: Options | None, nested: bool) -> Any:
    """The remote function with Ray options for runs of `task_name`.

    Ray names the task after ours, reruns it `retries` times if its worker dies (unless
    the options say otherwise), and a run submitted from inside a task reserves no CPU
    unless the options ask for some.
    """
    key = (task_name, retries, options.key if options is not None else (), nested)
    fn = _variants.get(key)
    if fn is not None:
        return fn
    values: dict[str, Any] = {"name": task_name, "max_retries": retries}
    if nested:
        values["num_cpus"] = 0
    if options is not None:
        values.update(options.values)
    fn = base_function().options(**values)
    if options is None or options.key is not None:
        _variants[key] = fn
    return fn
