"""Pickling what a runner ships: specs of runs to workers, final states back.

`dumps` uses the standard pickler where it is enough, which is the fast path: a
`RunSpec`, a `TaskRunInfo` and a `State` reduce to flat tuples, and a task that
another process can import goes by reference. It falls back to cloudpickle (by value)
for what names `__main__`, a notebook or a closure, or what a module registered with
`cloudpickle.register_pickle_by_value` holds. A task that must go by value is pickled
once per process and loaded once per worker process, however many runs ship it.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import threading
from collections.abc import Callable
from typing import Any

from ._errors import NotSerializableError, TaskRunnersError

__all__ = ["dumps", "loads"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_MAIN = b"__main__"

_thread = threading.local()

#: Unpickle what `dumps` made (the standard `pickle.loads`: cloudpickle's output loads with it).
loads: Callable[[bytes], Any] = pickle.loads


def dumps(obj: Any) -> bytes:
    """Pickle `obj` for another process that runs the same code.

    Ship runs in batches by pickling a list of `RunSpec`s at once: what they share
    (the task, its tags) is written once.

    Raises:
        TaskRunnersError: `obj` needs pickling by value and cloudpickle is not
            installed (the message names the package).
        NotSerializableError: Neither pickler can pickle it (the original error is
            the `__cause__`). `RunSpec.not_serializable` says which argument it is.
    """
    cloudpickle = sys.modules.get("cloudpickle")
    first: Exception | None = None
    if cloudpickle is None or not _registry(cloudpickle):
        _thread.mains = 0
        try:
            data = pickle.dumps(obj, _PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - anything pickle refuses falls back to cloudpickle
            first = exc
        else:
            # "__main__" inside the cached bytes of tasks shipped by value is fine; any
            # other occurrence is a reference that a worker could not resolve.
            if _MAIN not in data or data.count(_MAIN) == _thread.mains:
                return data
    if cloudpickle is None:
        try:
            cloudpickle = importlib.import_module("cloudpickle")
        except ImportError:
            raise TaskRunnersError(
                f"{type(obj).__name__} must be pickled by value (it holds code of __main__, a "
                "notebook or a closure), and cloudpickle is not installed: pip install cloudpickle"
            ) from first
    try:
        return by_value(cloudpickle, obj, _PROTOCOL)
    except Exception as exc:
        raise NotSerializableError(
            f"cannot pickle {type(obj).__name__}: {type(exc).__name__}: {exc}"
        ) from exc


def note_shipped_by_value(blob_mains: int) -> None:
    """A task's by-value bytes, with `blob_mains` occurrences of `__main__`, were written
    into the pickle that `dumps` is making in this thread (called by `Task.__reduce__`)."""
    _thread.mains = getattr(_thread, "mains", 0) + blob_mains


def _registry(cloudpickle: Any) -> bool:
    """Whether any module is registered with cloudpickle to be pickled by value."""
    registry = getattr(getattr(cloudpickle, "cloudpickle", None), "_PICKLE_BY_VALUE_MODULES", None)
    if registry is None:
        return bool(cloudpickle.list_registry_pickle_by_value())
    return bool(registry)


def by_value(cloudpickle: Any, obj: Any, protocol: int = _PROTOCOL) -> bytes:
    """`cloudpickle.dumps(obj)`, keeping the file name of the code it ships.

    cloudpickle writes `<dynamic-code>` in place of each code object's file name; a
    traceback on the worker would then show no file and no source line for a task
    defined in `__main__`. The file name is put back, so tracebacks name the script
    and, where the worker sees the same file, show its lines.

    Raises:
        Exception: Whatever cloudpickle raises.
    """
    import io

    buffer = io.BytesIO()
    _pickler(cloudpickle)(buffer, protocol=protocol).dump(obj)
    return buffer.getvalue()


_PICKLERS: dict[int, Any] = {}


def _pickler(cloudpickle: Any) -> Any:
    pickler = _PICKLERS.get(id(cloudpickle))
    if pickler is not None:
        return pickler
    import collections
    import types

    base = cloudpickle.Pickler
    table: Any = getattr(base, "dispatch_table", None)
    reduce_code = table.get(types.CodeType) if table is not None else None
    if reduce_code is None:  # a cloudpickle that keeps file names, or works otherwise
        pickler = base
    else:

        def keep_filename(code: types.CodeType) -> Any:
            rebuild, args = reduce_code(code)[:2]
            args = tuple(code.co_filename if arg == "<dynamic-code>" else arg for arg in args)
            return rebuild, args

        class Pickler(base):  # type: ignore[misc, valid-type]
            dispatch_table = collections.ChainMap({types.CodeType: keep_filename}, table)  # noqa: RUF012 - read by pickle

        pickler = Pickler
    _PICKLERS[id(cloudpickle)] = pickler
    return pickler
