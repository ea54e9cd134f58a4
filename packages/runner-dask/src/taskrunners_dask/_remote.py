"""What runs on the Dask worker: one task run, and the report of its final state.

The Dask task of a run calls `run` with the `RunSpec`, the topic of the submitting
client, and the upstream runs' final `State`s (Dask puts each upstream Dask task's
result, its `State`, in place of its `distributed.Future`: data moves worker to
worker). `run` executes the spec, then *reports* the final state to the client as a
Dask event on its topic: the state's fields, with the value only when it is small. The
value stays on the worker as the Dask task's result, for downstream runs and for the
client to fetch when someone reads it.

While the task waits on another run (a nested submission), the worker thread secedes
from the worker's thread pool, so that waiting tasks never hold every slot.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from taskrunners import State
from taskrunners.lowlevel import DeferredState, RunSpec, add_location_hook, blocking, dumps, lending

__all__ = ["INLINE_LIMIT", "encode", "run"]

#: Values whose pickle is at most this many bytes travel with the final state's report
#: and are read in the flow's process without another round trip; larger ones stay on
#: the worker until read (the scheduler keeps recent reports, so keep this small).
INLINE_LIMIT = 16 * 1024

_ALWAYS_INLINE = frozenset({type(None), bool, int, float, complex})


# -- on the worker ----------------------------------------------------------------------


def run(spec: RunSpec, topic: str, upstream_states: Sequence[State[Any]]) -> State[Any]:
    """The Dask task of one run: execute it here and report its final state."""
    from dask.context import thread_state
    from distributed import get_worker

    from ._runner import DaskTaskRunner
    from ._worker_plugin import NAME, pending

    worker = get_worker()
    add_location_hook(_where)
    runner = DaskTaskRunner._for_worker()
    with lending(_seceding), runner:
        state = spec.execute(upstream_states, None, runner)
        if not runner.wait_idle(0):  # runs the task submitted and did not wait for
            with blocking():
                runner.wait_idle()
    report, state = encode(state, spec)
    message = [spec.info.number, report]
    if NAME in worker.plugins:
        pending[thread_state.key] = (topic, message)  # sent by the plugin, in Dask's own batch
    else:
        worker.log_event(topic, message)
    return state


def _where() -> dict[str, str]:
    """The run report's location hook: the Dask worker this thread belongs to."""
    from distributed import get_worker

    try:
        address = str(get_worker().address)
    except ValueError:  # not a Dask worker's thread (the client's process)
        return {}
    return {"worker": f"dask {address}", "dask_worker": address}


@contextlib.contextmanager
def _seceding() -> Iterator[None]:
    """While a task's thread waits on another run, it leaves the worker's thread pool.

    Only the thread that Dask runs the task in can secede; a helper thread (a task
    with a timeout runs in one) waits in place.
    """
    from dask.context import thread_state as task_state
    from distributed.threadpoolexecutor import thread_state as pool_state

    if getattr(pool_state, "executor", None) is None or getattr(task_state, "key", None) is None:
        yield
        return
    from distributed import rejoin, secede

    secede()
    try:
        yield
    finally:
        rejoin()


# -- what Dask knows of a result -------------------------------------------------------------


def _sizeof_state(state: State[Any]) -> int:
    """The memory a run's result takes on a worker, for Dask's memory management,
    spilling and transfer accounting: what its value takes (Dask's default would count
    a few hundred bytes whatever it holds)."""
    from dask.sizeof import sizeof

    if isinstance(state, DeferredState) and not state.loaded:
        return 256
    data = state.fields().data
    return 256 + (int(sizeof(data)) if data is not None else 0)


@functools.cache
def register_sizeof() -> None:
    """Tell Dask what a `State` weighs (once per process)."""
    from dask.sizeof import sizeof

    sizeof.register(State)(_sizeof_state)


if "dask" in sys.modules:  # on a worker (unpickling a run): Dask is loaded already
    register_sizeof()


# -- the report ---------------------------------------------------------------------------


def encode(state: State[Any], spec: RunSpec) -> tuple[bytes, State[Any]]:
    """The final state as bytes for the report (`State.to_wire()`'s fields, whether the value
    is included, which it is only if small, where the run ran, and the records the
    run logged, for the flow's process), and the state for the Dask task to return.

    The exception always arrives (as itself, or as a `RemoteError` stand-in). A value
    that cannot be pickled makes the run FAILED, naming its return value
    (`RunSpec.result_not_serializable`), and the Dask task returns that state too:
    small values are pickled here anyway, and a large one is pickled once to check it,
    unless Dask has a serializer of its own for its type (arrays, frames), which it
    then uses to move it.
    """
    wire = state.to_wire()
    head, data, error, logs, where = wire[:6], wire[6], wire[7], wire[8], wire[9]
    try:
        if type(data) in _ALWAYS_INLINE or _small(data):
            blob = dumps((*head, data, error, True, where, logs))
            if len(blob) <= INLINE_LIMIT + len(logs) * 1024:
                return blob, state
        elif data is not None and not _dask_serializes(type(data)):
            dumps(data)
    except Exception as exc:  # noqa: BLE001 - any pickling failure fails that run, naming it
        failed = spec.result_not_serializable(state, exc)
        wire = failed.to_wire()
        return dumps((*wire[:6], None, wire[7], True, wire[9], logs)), failed
    return dumps((*head, None, error, False, where, logs)), state


def _dask_serializes(cls: type) -> bool:
    """Whether Dask has a serializer of its own for values of `cls` (not pickle)."""
    from distributed.protocol.serialize import dask_serialize

    try:
        dask_serialize.dispatch(cls)
    except TypeError:
        return False
    return True


def _small(data: Any) -> bool:
    from dask.sizeof import sizeof

    try:
        return bool(sizeof(data) <= INLINE_LIMIT)
    except Exception:  # noqa: BLE001 - an object sizeof cannot measure is not inlined
        return False
