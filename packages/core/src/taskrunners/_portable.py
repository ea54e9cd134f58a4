"""What crosses a process boundary badly: arguments and results that cannot be
pickled, and exceptions that cannot be rebuilt on the other side.

Runners that execute runs in other processes all meet the same two problems, and this
module answers them once:

- a value that cannot be pickled (a lock, a generator, a client) ends its run FAILED
  with a `NotSerializableError` that names the run, the parameter (or "return value"),
  the offending type, and what to do (`argument_error`, `return_error`);
- an exception travels as a `_Shipped` wrapper (`portable`), which unpickles to the
  exception itself when it can be rebuilt there, and to a `RemoteError` stand-in
  (`stand_in`) when it cannot: the same type name, message and remote traceback text,
  subclassing the nearest importable class of the original's hierarchy. It never fails
  to pickle nor to unpickle, so a failed run never becomes a crash, nor a hang.

Only failures pay: a value is searched for its culprit only after pickling failed,
and an exception is pickled on its own only when a state that holds one is pickled.
"""

from __future__ import annotations

import importlib
import pickle
import sys
import threading
import traceback
from typing import Any

from ._errors import NotSerializableError, RemoteError
from ._tracebacks import _KEY as _TRACEBACK_KEY
from ._tracebacks import RemoteTraceback

__all__ = ["RemoteTraceback", "argument_error", "portable", "return_error", "stand_in"]

#: The remote traceback text is cut to its last this many characters.
TRACEBACK_MAX = 6000
#: How deep `_culprit` looks into containers and objects for the part that cannot be pickled.
_SEARCH_DEPTH = 4
_SEARCH_ITEMS = 200

_HINT_ARGUMENT = (
    "Create the object inside the task from something that pickles (a path, an address, "
    "settings), or run this flow on threads (ThreadPoolTaskRunner), which pickles nothing."
)
_HINT_RETURN = (
    "Return something that pickles (plain data), keep the object inside the task, or run "
    "this flow on threads (ThreadPoolTaskRunner), which pickles nothing."
)


# -- exceptions ---------------------------------------------------------------------------


class _Shipped:
    """An exception on its way to another process: pickles to `_rebuild(...)`."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, _describe(self.exc))


def portable(exc: BaseException | None) -> Any:
    """`exc` in a form that always pickles, and unpickles to `exc` or its stand-in."""
    if exc is None or isinstance(exc, RemoteError):
        return exc
    return _Shipped(exc)


def stand_in_for(exc: BaseException, message: str | None = None) -> RemoteError:
    """A stand-in for `exc` made here (see `RemoteError.standing_in_for`)."""
    _, module, qualname, bases, text_message, text, _ = _describe(exc, rebuild=False)
    return stand_in(module, qualname, bases, text_message if message is None else message, text)


def _describe(exc: BaseException, rebuild: bool = True) -> tuple[Any, ...]:
    """`(blob, module, qualname, bases, message, traceback, recipe)` of `exc`: `blob`
    is its pickle if it can be rebuilt from it (else `None`), `recipe` its args if it
    is a built-in exception that its class rebuilds from them (then `blob` is `None`)."""
    from . import _wire

    blob: bytes | None = None
    recipe: tuple[Any, ...] | None = None
    if rebuild:
        # A pickle inside the pickle that `dumps` may be making in this thread: keep its
        # count of "__main__" in by-value bytes, and add the blob's (by value, or plain).
        if _builtin_with_plain_args(exc):  # rebuilt from its class and args: no pickle inside
            recipe = exc.args
        else:
            outer = getattr(_wire._thread, "mains", 0)
            try:
                blob = _plain_pickle(exc)
                if blob is None:
                    blob = _wire.dumps(exc)
                _wire.loads(blob)  # an __init__ that does not accept its own args fails here
            except Exception:  # noqa: BLE001 - whatever fails, the exception travels as a stand-in
                blob = None
            _wire._thread.mains = outer + (blob.count(_wire._MAIN) if blob is not None else 0)
    cls = type(exc)
    bases = tuple(
        (getattr(c, "__module__", ""), getattr(c, "__qualname__", c.__name__))
        for c in cls.__mro__
        if c is not object
    )
    text = _text(exc)
    if len(text) > TRACEBACK_MAX:
        text = "...\n" + text[-TRACEBACK_MAX:]
    return (blob, cls.__module__, cls.__qualname__, bases, _message(exc), text, recipe)


_PLAIN = (str, int, float, bool, bytes, type(None))


def _builtin_with_plain_args(exc: BaseException) -> bool:
    """Whether `type(exc)(*exc.args)` rebuilds `exc`: a built-in exception with plain
    arguments and no attributes of its own (the common case, made cheap, and safe
    where pickling itself fails: a `RecursionError` on a Dask worker, say)."""
    state = getattr(exc, "__dict__", None)
    return (
        type(exc).__module__ == "builtins"
        and (not state or state.keys() <= {_TRACEBACK_KEY})  # the text travels as the cause
        and all(type(arg) in _PLAIN for arg in exc.args)
    )


def _plain_pickle(exc: BaseException) -> bytes | None:
    """The standard pickle of `exc` if it is enough (its class goes by reference to a
    module other than `__main__`), else `None`. Tried before `dumps`, whose cloudpickle
    path (taken whenever a module is registered to go by value, as on Dask workers)
    can fail on an exception that the standard pickler writes in a few bytes."""
    from ._wire import _MAIN, _PROTOCOL

    try:
        blob = pickle.dumps(exc, _PROTOCOL)
    except Exception:  # noqa: BLE001 - the standard pickler refused it: the caller tries `dumps`
        return None
    return None if _MAIN in blob else blob


def _text(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(exc))
    except Exception:  # noqa: BLE001 - a broken __str__ or the like
        return f"{type(exc).__qualname__} (its traceback could not be formatted)\n"


def _message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not hide the error itself
        return repr(exc.args) if isinstance(getattr(exc, "args", None), tuple) else ""


def _rebuild(
    blob: bytes | None,
    module: str,
    qualname: str,
    bases: tuple[tuple[str, str], ...],
    message: str,
    text: str,
    recipe: tuple[Any, ...] | None = None,
) -> BaseException:
    """The exception from `blob` (or from its built-in class and `recipe`, its args) if
    it can be rebuilt here, else its stand-in; either way with the remote traceback as
    its `__cause__` (unless it has one)."""
    if recipe is not None:
        cls = _resolve(module, qualname)
        if cls is not None:
            try:
                rebuilt = cls(*recipe)
            except Exception:  # noqa: BLE001, S110 - it cannot be rebuilt here: the stand-in follows
                pass
            else:
                rebuilt.__cause__ = RemoteTraceback(text) if text else None
                return rebuilt
    if blob is not None:
        from ._wire import loads

        try:
            exc = loads(blob)
        except Exception:  # noqa: BLE001, S110 - it cannot be unpickled here: the stand-in follows
            pass
        else:
            if isinstance(exc, BaseException):
                if exc.__cause__ is None and text:
                    exc.__cause__ = RemoteTraceback(text)
                return exc
    return stand_in(module, qualname, bases, message, text)


_classes: dict[tuple[str, str, type], type[RemoteError]] = {}
_classes_lock = threading.Lock()


def stand_in(
    module: str,
    qualname: str,
    bases: tuple[tuple[str, str], ...],
    message: str,
    text: str,
) -> RemoteError:
    """A `RemoteError` for an exception of type `module.qualname` that cannot be rebuilt.

    Its class has the original's name, qualified name and module, and subclasses
    `RemoteError` and the first class of `bases` (the original's MRO, as module and
    qualified name) that can be imported here and combined with it.
    """
    for base_module, base_qualname in (*bases, ("builtins", "Exception")):
        base = _resolve(base_module, base_qualname)
        if base is None:
            continue
        cls = _stand_in_class(module, qualname, base)
        if cls is None:
            continue
        try:
            error: RemoteError = cls.__new__(cls)
        except Exception:  # noqa: BLE001 - a __new__ of its own that needs arguments
            continue
        break
    else:  # pragma: no cover - builtins.Exception always resolves and combines
        error = RemoteError.__new__(RemoteError)
    error.args = (message,)
    error._module, error._qualname, error._bases = module, qualname, tuple(bases)
    error.remote_traceback = text
    if text:
        error.__cause__ = RemoteTraceback(text)
    return error


def _resolve(module: str, qualname: str) -> type[BaseException] | None:
    """The class `module.qualname` if it can be found here without side effects
    beyond importing its module; `None` otherwise."""
    if not module or "<" in qualname:
        return None
    try:
        target: Any = sys.modules.get(module) or importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception:  # noqa: BLE001 - any import or lookup failure means not found here
        return None
    if isinstance(target, type) and issubclass(target, BaseException) and not issubclass(target, RemoteError):
        return target
    return None


def _stand_in_class(module: str, qualname: str, base: type) -> type[RemoteError] | None:
    key = (module, qualname, base)
    cls = _classes.get(key)
    if cls is not None:
        return cls
    bases: tuple[type, ...] = (RemoteError,) if base is Exception else (RemoteError, base)
    try:
        made: type[RemoteError] = type(
            qualname.rpartition(".")[2], bases, {"__module__": module, "__qualname__": qualname}
        )
    except TypeError:  # a layout or MRO that cannot be combined (or a final class)
        return None
    with _classes_lock:
        return _classes.setdefault(key, made)


# -- values that cannot be pickled ------------------------------------------------------------


def argument_error(
    task_run: str, parameters: dict[str, Any], task: Any, error: BaseException
) -> NotSerializableError:
    """The error of a run that could not be pickled (`error`): names the argument that
    cannot be pickled (or the task), and what to do."""
    for name, value in parameters.items():
        found = _culprit(value, name)
        if found is not None:
            part, where, reason = found
            type_name = _type_name(part)
            what = f"it is a {type_name}" if where == name else f"it holds a {type_name} (at {where})"
            return NotSerializableError(
                f"task run {task_run!r}: argument {name!r} cannot be pickled to send it to the process "
                f"that runs the task: {what} ({reason}). {_HINT_ARGUMENT}",
                task_run=task_run,
                parameter=name,
                type_name=type_name,
            )
    found = _culprit(task, "the task")
    if found is not None:
        part, _, reason = found
        return NotSerializableError(
            f"task run {task_run!r}: its task cannot be pickled to send it to the process that runs "
            f"it ({reason}). Define the task at module level, or make what it closes over picklable.",
            task_run=task_run,
            type_name=_type_name(part),
        )
    return NotSerializableError(
        f"task run {task_run!r} cannot be pickled to send it to the process that runs the task "
        f"({_reason(error)}). {_HINT_ARGUMENT}",
        task_run=task_run,
    )


def return_error(task_run: str, value: Any, error: BaseException) -> NotSerializableError:
    """The error of a run whose return value could not be pickled (`error`)."""
    found = _culprit(value, "value")
    part, where, reason = found if found is not None else (value, "value", _reason(error))
    type_name = _type_name(part)
    what = f"it is a {type_name}" if where == "value" else f"it holds a {type_name} (at {where})"
    return NotSerializableError(
        f"task run {task_run!r}: its return value cannot be pickled to send it back from the process "
        f"that ran the task: {what} ({reason}). {_HINT_RETURN}",
        task_run=task_run,
        parameter="return value",
        type_name=type_name,
    )


def _culprit(value: Any, where: str, depth: int = 0) -> tuple[Any, str, str] | None:
    """The innermost part of `value` that cannot be pickled, where it is, and why; or
    `None` if `value` pickles."""
    from ._wire import dumps

    try:
        dumps(value)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the answer sought
        reason = _reason(exc)
    else:
        return None
    if depth < _SEARCH_DEPTH:
        for child, label in _children(value, where):
            found = _culprit(child, label, depth + 1)
            if found is not None:
                return found
    return value, where, reason


def _children(value: Any, where: str) -> list[tuple[Any, str]]:
    if isinstance(value, dict):
        return [(v, f"{where}[{k!r}]") for k, v in list(value.items())[:_SEARCH_ITEMS]]
    if isinstance(value, (list, tuple)):
        return [(v, f"{where}[{i}]") for i, v in enumerate(value[:_SEARCH_ITEMS])]
    if isinstance(value, (set, frozenset)):
        return [(v, f"an item of {where}") for v in list(value)[:_SEARCH_ITEMS]]
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict) and not isinstance(value, type):
        return [(v, f"{where}.{k}") for k, v in list(attributes.items())[:_SEARCH_ITEMS]]
    return []


def _type_name(value: Any) -> str:
    cls = type(value)
    module = getattr(cls, "__module__", "")
    return cls.__qualname__ if module in ("builtins", "") else f"{module}.{cls.__qualname__}"


def _reason(error: BaseException) -> str:
    """`error` as `Type: message`, looking through `dumps`'s wrapper to the pickler's error."""
    cause = error.__cause__
    if cause is not None and str(cause) in str(error):
        error = cause
    return f"{type(error).__name__}: {error}"
