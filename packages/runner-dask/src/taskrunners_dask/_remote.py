"""What runs on the Dask worker: one task run, and the report of its final state.

The Dask task of a run calls `run` (or `run_packed`, for `map`) with the `TaskCall`,
the topic of the submitting client, and the upstream runs' final `State`s: Dask puts
the value of each upstream `distributed.Future` in place (the upstream's `State`), so
data moves from worker to worker. `run` executes the call with the engine, then
*reports* the final state to the submitting client as a Dask event on that client's
topic: a small message with the state's type, timing and exception, and the value only
when it is small. The value itself stays on the worker as the Dask task's result, for
downstream runs and for the client to fetch when someone reads it.

While the task waits on another run (a nested submission), the worker thread secedes
from the worker's thread pool, so that waiting tasks never hold every slot.
"""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from taskrunners import State, StateType, Task, TaskCall, _context

if TYPE_CHECKING:
    from ._runner import DaskTaskRunner

__all__ = ["INLINE_LIMIT", "decode_fields", "encode", "run", "run_packed", "shippable"]

#: Values whose pickle is at most this many bytes travel with the final state's report
#: and are read in the flow's process without another round trip; larger ones stay on
#: the worker until read (the scheduler keeps recent reports, so keep this small).
INLINE_LIMIT = 16 * 1024

_COMPLETED = StateType.COMPLETED
_ALWAYS_INLINE = frozenset({type(None), bool, int, float, complex})


# -- on the worker ----------------------------------------------------------------------


def run(call: TaskCall, topic: str, *upstream_states: State[Any]) -> State[Any]:
    """The Dask task of one run: execute it here and report its final state."""
    return _execute(call, topic, upstream_states)


def run_packed(call: TaskCall, topic: str, upstream_states: Sequence[State[Any]]) -> State[Any]:
    """`run` with the upstream states in one tuple (the shape `Client.map` needs)."""
    return _execute(call, topic, upstream_states)


def _execute(call: TaskCall, topic: str, upstream_states: Sequence[State[Any]]) -> State[Any]:
    from distributed import get_worker

    from ._runner import DaskTaskRunner

    worker = get_worker()
    runner = DaskTaskRunner._worker_side()
    previous = _context.blocking_hook()
    _context.set_blocking_hook(_seceding)
    try:
        state = call.execute(upstream_states, None, runner)
        _close_worker_side(runner)
    finally:
        _context.set_blocking_hook(previous)
    message = [call.info.number, encode(state)]
    key = getattr(_task_state(), "key", None)
    if key is not None and _REPORT_PLUGIN in worker.plugins:
        from ._worker_plugin import pending

        pending[key] = (topic, message)  # sent by the plugin, in Dask's own batch
    else:
        worker.log_event(topic, message)
    return state


_REPORT_PLUGIN = "taskrunners-dask-reports"


def _task_state() -> Any:
    from dask.context import thread_state

    return thread_state


def _close_worker_side(runner: DaskTaskRunner) -> None:
    """Wait for the runs the task submitted and did not wait for, seceded meanwhile."""
    if runner.wait_idle(0):
        runner.__exit__(None, None, None)
        return
    with _context.blocking():
        runner.__exit__(None, None, None)


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
    """The memory a run's result takes on a worker: what its value takes.

    Dask's memory management, spilling and transfer accounting go by this figure; left
    to its default, a `State` would count as a few hundred bytes whatever it holds.
    """
    from dask.sizeof import sizeof

    try:
        data = _DATA_SLOT.__get__(state)
    except AttributeError:  # a state whose value was never loaded here
        data = None
    return 256 + (sizeof(data) if data is not None else 0)


_DATA_SLOT = State.__dict__["_data"]


_sizeof_registered = False


def register_sizeof() -> None:
    """Tell Dask what a `State` weighs (once per process)."""
    global _sizeof_registered
    if _sizeof_registered:
        return
    from dask.sizeof import sizeof

    sizeof.register(State)(_sizeof_state)
    _sizeof_registered = True


if "dask" in sys.modules:  # on a worker (unpickling a run): Dask is loaded already
    register_sizeof()


# -- the report ---------------------------------------------------------------------------


def encode(state: State[Any]) -> bytes:
    """The final state as bytes for the report: its value included only if small."""
    data = state._data if state.type is _COMPLETED else None
    inline = True
    if type(data) not in _ALWAYS_INLINE:
        from dask.sizeof import sizeof

        try:
            inline = sizeof(data) <= INLINE_LIMIT
        except Exception:
            inline = False
    exception = state._exception
    blob = _dumps(state, exception, data if inline else None, inline)
    if blob is None and exception is not None:
        # The exception does not pickle: send its type and message in a stand-in.
        blob = _dumps(state, _stand_in(exception), data if inline else None, inline)
    if inline and (blob is None or len(blob) > INLINE_LIMIT):
        blob = _dumps(state, exception, None, False)
    if blob is None:
        blob = _dumps(state, _stand_in(exception), None, False)
    assert blob is not None
    return blob


def _dumps(state: State[Any], exception: Any, data: Any, inline: bool) -> bytes | None:
    fields = (
        state.type.value,
        state.name,
        state.message,
        state.timestamp,
        state.attempt,
        state.started,
        exception,
        data,
        inline,
    )
    try:
        return pickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        pass
    try:
        import cloudpickle  # type: ignore[import-untyped]

        return cloudpickle.dumps(fields, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return None


def _stand_in(exception: BaseException | None) -> BaseException | None:
    if exception is None:
        return None
    from taskrunners import TaskRunnersError

    return TaskRunnersError(
        f"the run raised {type(exception).__qualname__}: {exception}, which could not be "
        "pickled to reach the flow's process"
    )


def decode_fields(blob: bytes) -> tuple[Any, ...]:
    """The fields that `encode` packed: type, name, message, timestamp, attempt,
    started, exception, data, and whether data is included."""
    return pickle.loads(blob)  # type: ignore[no-any-return]


# -- shipping tasks ---------------------------------------------------------------------

_shipped_lock = threading.Lock()
_shipped: dict[int, tuple[Any, Any]] = {}  # id(task) -> (task, what to pickle)


def shippable(task: Task[Any, Any]) -> Any:
    """What to send for `task`: the task itself when workers can import it by name,
    else a `_TaskByValue` made once per task (and rebuilt once per worker process).

    A task of `__main__` (a script), of a module made outside the import system (a
    notebook cell, an example run with `exec`), or defined inside a function, cannot
    be imported by name on a worker; pickling its function by value on every submit
    would cost more than the run itself.
    """
    entry = _shipped.get(id(task))
    if entry is not None and entry[0] is task:
        return entry[1]
    shipped: Any = task if _importable(task) else _TaskByValue.of(task)
    with _shipped_lock:
        if len(_shipped) > 4096:
            _shipped.clear()
        _shipped[id(task)] = (task, shipped)
    return shipped


def _importable(task: Task[Any, Any]) -> bool:
    module_name = getattr(task, "__module__", None) or ""
    qualname = getattr(task, "__qualname__", "") or ""
    module = sys.modules.get(module_name)
    if module is None or module_name == "__main__" or "<locals>" in qualname:
        return False
    if getattr(module, "__spec__", None) is None:
        return False
    import cloudpickle  # type: ignore[import-untyped]

    if module_name in cloudpickle.list_registry_pickle_by_value():
        return False
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    return target is task


class _TaskByValue:
    """A task pickled once, by value, and rebuilt once per worker process."""

    __slots__ = ("blob", "digest")

    def __init__(self, digest: str, blob: bytes) -> None:
        self.digest = digest
        self.blob = blob

    @classmethod
    def of(cls, task: Task[Any, Any]) -> _TaskByValue:
        import cloudpickle  # type: ignore[import-untyped]

        module = sys.modules.get(getattr(task, "__module__", "") or "")
        registered = False
        with _shipped_lock:
            # Functions of a module that workers cannot import must travel by value.
            if (
                module is not None
                and module.__name__ != "__main__"
                and module.__name__ not in cloudpickle.list_registry_pickle_by_value()
            ):
                cloudpickle.register_pickle_by_value(module)
                registered = True
            try:
                blob = cloudpickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
            finally:
                if registered:
                    cloudpickle.unregister_pickle_by_value(module)
        return cls(hashlib.sha1(blob).hexdigest(), blob)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_task, (self.digest, self.blob))


_loaded: dict[str, Task[Any, Any]] = {}


def _load_task(digest: str, blob: bytes) -> Task[Any, Any]:
    task = _loaded.get(digest)
    if task is None:
        if len(_loaded) > 1024:
            _loaded.clear()
        task = _loaded[digest] = pickle.loads(blob)
    return task
