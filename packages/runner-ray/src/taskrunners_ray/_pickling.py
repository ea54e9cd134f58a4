"""Pickling what travels through Ray: runs to workers, final states back.

The runner hands Ray bytes, not objects: Ray's own serializer runs cloudpickle with a
hook for every object, which costs several times what the standard pickler does for
the small `TaskCall`s and `State`s of a flow. The objects of a run get compact
reductions here (`_DISPATCH`), each one reconstructor and flat tuples (every global
that a pickle names costs an import lookup when pickling):

- a `TaskCall` as its task, run info, arguments and upstream run infos;
- a `Task` as the bytes of its own pickle, made once per task in this process and
  loaded once per worker process (a task of `__main__` or a notebook, pickled by value
  with cloudpickle, would otherwise cost more than the run);
- a `TaskRunInfo` as the tuple of its own `__getstate__`;
- a `State` as a tuple.

Anything else that the standard pickler would send by reference to a module a worker
cannot import (`__main__`, a module registered with
`cloudpickle.register_pickle_by_value`), or refuses outright (a closure), goes with
cloudpickle, by value.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import threading
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
from taskrunners import State, StateType, Task, TaskCall, TaskRunInfo

__all__ = ["dumps", "loads"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_registry = cloudpickle.list_registry_pickle_by_value
_MAIN = b"__main__"
_CACHE_MAX = 4096
loads = pickle.loads

_lock = threading.Lock()
_thread = threading.local()
_blobs: dict[int, tuple[Task[Any, Any], bytes, int]] = {}  # id(task) -> (task, pickle, "__main__" count)
_loaded: dict[bytes, Task[Any, Any]] = {}  # pickle -> task, where tasks are loaded


# -- tasks ------------------------------------------------------------------------------


def _task_blob(task: Task[Any, Any]) -> tuple[bytes, int]:
    entry = _blobs.get(id(task))
    if entry is not None and entry[0] is task:
        return entry[1], entry[2]
    blob = _plain_or_cloud(task)
    mains = blob.count(_MAIN)
    with _lock:
        if len(_blobs) >= _CACHE_MAX:
            _blobs.clear()
        _blobs[id(task)] = (task, blob, mains)
    return blob, mains


def _plain_or_cloud(value: Any) -> bytes:
    if not _registry():
        try:
            data = pickle.dumps(value, _PROTOCOL)
        except Exception:
            pass
        else:
            if _MAIN not in data:
                return data
    return cloudpickle.dumps(value, _PROTOCOL)


def _reduce_task(task: Task[Any, Any]) -> tuple[Any, ...]:
    blob, mains = _task_blob(task)
    _thread.mains = getattr(_thread, "mains", 0) + mains
    return (_load_task, (blob,))


def _load_task(blob: bytes) -> Task[Any, Any]:
    task = _loaded.get(blob)
    if task is None:
        task = pickle.loads(blob)
        with _lock:
            if len(_loaded) >= _CACHE_MAX:
                _loaded.clear()
            _loaded[blob] = task
    return task


# -- calls, run infos and states ----------------------------------------------------------


def _reduce_call(call: TaskCall) -> tuple[Any, ...]:
    # The core's own reduction gives what a copy needs; only the pieces' form changes.
    _, (task, info, parameters, slotted, required, upstream_runs) = call.__reduce__()
    blob, mains = _task_blob(task)
    _thread.mains = getattr(_thread, "mains", 0) + mains
    return (
        _load_call,
        (
            blob,
            _info_tuple(info),
            parameters,
            slotted,
            required,
            tuple(_info_tuple(i) for i in upstream_runs),
        ),
    )


def _load_call(
    blob: bytes,
    info: tuple[Any, ...],
    parameters: dict[str, Any],
    slotted: tuple[str, ...],
    required: frozenset[int],
    upstream_runs: tuple[tuple[Any, ...], ...],
) -> TaskCall:
    call = TaskCall(_load_task(blob), _info(*info), parameters, slotted, required)
    call.upstream_runs = tuple(_info(*run) for run in upstream_runs)
    return call


def _info_tuple(info: TaskRunInfo) -> tuple[Any, ...]:
    return info.__getstate__()  # the core's own state of a copy (it carries the run's id)


def _reduce_info(info: TaskRunInfo) -> tuple[Any, ...]:
    return (_info, _info_tuple(info))


def _info(*state: Any) -> TaskRunInfo:
    info = TaskRunInfo.__new__(TaskRunInfo)
    info.__setstate__(state)
    return info


_TYPES = tuple(StateType)
_TYPE_INDEX = {kind: index for index, kind in enumerate(_TYPES)}


def _reduce_state(state: State[Any]) -> tuple[Any, ...]:
    return (
        _load_state,
        (
            _TYPE_INDEX[state.type],
            state.name,
            state.message,
            state.timestamp,
            state.attempt,
            state.started,
            state._data,
            state._exception,
        ),
    )


def _load_state(
    kind: int,
    name: str,
    message: str,
    timestamp: float,
    attempt: int,
    started: Any,
    data: Any,
    exception: Any,
) -> State[Any]:
    return State(
        _TYPES[kind],
        data=data,
        exception=exception,
        name=name,
        message=message,
        attempt=attempt,
        started=started,
        timestamp=timestamp,
    )


_DISPATCH: dict[type, Any] = {
    TaskCall: _reduce_call,
    Task: _reduce_task,
    TaskRunInfo: _reduce_info,
    State: _reduce_state,
}


class _Pickler(pickle.Pickler):
    dispatch_table = {**copyreg.dispatch_table, **_DISPATCH}


class _CloudPickler(cloudpickle.CloudPickler):
    pass


_CloudPickler.dispatch_table = {**cloudpickle.CloudPickler.dispatch_table, **_DISPATCH}  # type: ignore[attr-defined]


# -- the entry point ------------------------------------------------------------------------


def dumps(value: Any) -> bytes:
    """`value` pickled so that a Ray worker (or the flow's process) can load it."""
    if len(_Pickler.dispatch_table) != len(copyreg.dispatch_table) + len(_DISPATCH):
        _Pickler.dispatch_table = {**copyreg.dispatch_table, **_DISPATCH}  # a reducer was registered
    if not _registry():
        _thread.mains = 0
        buffer = io.BytesIO()
        try:
            _Pickler(buffer, _PROTOCOL).dump(value)
        except Exception:
            pass
        else:
            data = buffer.getvalue()
            # "__main__" outside the tasks' own pickles: something refers to the script.
            if data.count(_MAIN) <= _thread.mains:
                return data
    buffer = io.BytesIO()
    _CloudPickler(buffer, _PROTOCOL).dump(value)
    return buffer.getvalue()
