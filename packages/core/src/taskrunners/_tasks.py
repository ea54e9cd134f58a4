"""Tasks: functions whose runs a flow hands to its task runner."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from . import _context, _logging, _tracebacks, _wire
from ._engine import (
    RunSpec,
    TaskRunInfo,
    call_in_thread,
    run_attempts_async,
    run_coroutine,
    with_timeout,
)
from ._errors import (
    DefinitionError,
    MappingLengthMismatch,
    MappingMissingIterable,
    ParameterError,
    ReservedArgumentError,
)
from ._futures import Future, FutureList, wait
from ._states import State, StateType
from ._walk import Extractor, allow_failure, unmapped

__all__ = ["Task", "task"]

P = ParamSpec("P")
R = TypeVar("R")

RESERVED_PARAMETERS = ("wait_for", "return_state")
_SIMPLE_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_OPTIONS = ("name", "retries", "retry_delay_seconds", "timeout_seconds", "tags", "log_prints")


def check_reserved(fn: Callable[..., Any], what: str, signature: inspect.Signature) -> None:
    """Refuse a function that declares a parameter named like a reserved keyword.

    Raises:
        ReservedArgumentError: It does.
    """
    for reserved in RESERVED_PARAMETERS:
        if reserved in signature.parameters:
            raise ReservedArgumentError(
                f"{what} {fn.__qualname__!r} declares a parameter named {reserved!r}, which "
                f"taskrunners reserves for its own keyword ({reserved}=...). Rename the parameter."
            )


class Task(Generic[P, R]):
    """A function whose runs can be handed to a task runner. Made by `@task`.

    Call the task to run it here and now; `.submit()` and `.map()` hand runs to the
    runner of the flow that is running.

    Attributes:
        fn: The wrapped function.
        name: The task's name (the function's name by default).
        retries: How many times a run that raised is run again.
        retry_delay_seconds: Seconds before each retry: one number for all, or a list
            (the last entry repeats).
        timeout_seconds: Seconds an attempt may take before it fails with
            `TaskTimeoutError`, or `None`.
        tags: Labels for the task.
        log_prints: Whether `print` in the task goes to the run logger; `None`
            takes the setting of the flow (or task) that submits the run.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        retries: int = 0,
        retry_delay_seconds: float | Sequence[float] = 0,
        timeout_seconds: float | None = None,
        tags: Iterable[str] = (),
        log_prints: bool | None = None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"@task needs a function, got {fn!r}")
        signature = inspect.signature(fn)
        check_reserved(fn, "task", signature)
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.retries = _check_retries(self.name, retries)
        self.retry_delay_seconds = _check_delays(self.name, retry_delay_seconds)
        self.timeout_seconds = _check_timeout(self.name, timeout_seconds)
        self.tags = frozenset(tags) if not isinstance(tags, str) else frozenset((tags,))
        if log_prints is not None and not isinstance(log_prints, bool):
            raise DefinitionError(f"task {self.name!r}: log_prints must be True, False or None, got {log_prints!r}")
        self.log_prints = log_prints
        self.is_async = inspect.iscoroutinefunction(fn)
        self._signature = signature
        parameters = signature.parameters.values()
        self._kinds = {p.name: p.kind for p in parameters}
        self._simple = all(p.kind in _SIMPLE_KINDS for p in parameters)
        self._positional = tuple(
            p.name for p in parameters if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        )
        self._required = frozenset(
            p.name for p in parameters if p.default is inspect.Parameter.empty and p.kind in _SIMPLE_KINDS
        )
        functools.update_wrapper(self, fn)

    # -- options ----------------------------------------------------------------------

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some options changed (`name`, `retries`, ...).

        Raises:
            TypeError: An option name is not one of the task's options.
        """
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise TypeError(
                f"{self.name}.with_options() got unknown option(s) {sorted(unknown)}; "
                f"the options are {', '.join(_OPTIONS)}"
            )
        current = {key: getattr(self, key) for key in _OPTIONS}
        current.update(options)
        return Task(self.fn, **current)

    def _retry_delay(self, attempt: int) -> float:
        delays = self.retry_delay_seconds
        if isinstance(delays, tuple):
            return delays[min(attempt, len(delays)) - 1] if delays else 0.0
        return delays

    # -- running here -----------------------------------------------------------------

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R: ...

    @overload
    def __call__(self, *args: Any, return_state: Literal[True], **kwargs: Any) -> State[R]: ...

    @overload
    def __call__(self, *args: Any, wait_for: Iterable[Any] | Future[Any], **kwargs: Any) -> R: ...

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task now, in this thread, and return its value.

        Accepts two extra keywords: `wait_for=[futures]` waits for those runs first,
        and `return_state=True` returns the run's `State` instead of its value. For an
        `async def` task called where an event loop is running, returns a coroutine to
        await.

        Raises:
            BaseException: Whatever the task raised (after its retries).
            ParameterError: The arguments do not fit the function's signature.
        """
        wait_for = kwargs.pop("wait_for", None)
        return_state = bool(kwargs.pop("return_state", False))
        parameters = self._bind(args, kwargs)
        if self.is_async and _loop_running():
            return self._call_async(parameters, wait_for, return_state)
        state = self._run_here(parameters, wait_for)
        return _outcome(state, return_state)

    def _run_here(self, parameters: dict[str, Any], wait_for: Any) -> State[Any]:
        spec, upstream = self._prepare(parameters, wait_for, TaskRunInfo(self.name, self.tags))
        if upstream:
            wait(upstream)
        state = spec.execute([future.peek() for future in upstream])
        if state.logs:  # ran with no flow run current: its records were kept
            _logging.deliver(state.logs, None)
            state.logs = ()
        if state.exception is not None:
            _tracebacks.restore(state.exception, here=True)
        return state

    async def _call_async(self, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
        spec, upstream = self._prepare(parameters, wait_for, TaskRunInfo(self.name, self.tags))
        for future in upstream:
            await _await_final(future)
        inputs = spec.inputs([future.peek() for future in upstream])
        if isinstance(inputs, State):
            return _outcome(inputs, return_state)
        return _outcome(await run_attempts_async(self, spec.info, inputs), return_state)

    # -- handing runs to the flow's runner --------------------------------------------

    @overload
    def submit(self, *args: P.args, **kwargs: P.kwargs) -> Future[R]: ...

    @overload
    def submit(self, *args: Any, wait_for: Iterable[Any] | Future[Any], **kwargs: Any) -> Future[R]: ...

    def submit(self, *args: Any, **kwargs: Any) -> Future[R]:
        """Hand one run to the task runner of the running flow; return its future at once.

        Accepts the extra keyword `wait_for=[futures]`: runs that must be final before
        this one starts, without passing their values.

        Raises:
            NoActiveFlowError: No flow is running here.
            ParameterError: The arguments do not fit the function's signature.
        """
        wait_for = kwargs.pop("wait_for", None)
        runner = _context.require_runner(self.name, "submit")
        parameters = self._bind(args, kwargs)
        task = self._printing() if self.log_prints is None and runner._log_prints else self
        previous = _context.track_prepared()
        try:
            return runner.submit(task, parameters, wait_for)
        except BaseException as exc:
            _crash_prepared(runner, exc)
            raise
        finally:
            _context.stop_tracking(previous)

    def map(self, *args: Any, **kwargs: Any) -> FutureList[R]:
        """Hand one run per element of the iterable arguments to the flow's runner.

        Iterables are zipped; `str`, `bytes` and non-iterable values, and any value
        wrapped in `unmapped(...)`, go whole to every run. A future whose result is
        iterable is waited for and mapped over. `wait_for=[futures]` applies to every
        run. Nothing is submitted if the arguments do not pair up.

        Returns:
            One future per run, in input order.

        Raises:
            MappingMissingIterable: No argument is iterable.
            MappingLengthMismatch: The iterables have different lengths.
            NoActiveFlowError: No flow is running here.
            ParameterError: The arguments do not fit the function's signature.
        """
        wait_for = kwargs.pop("wait_for", None)
        runner = _context.require_runner(self.name, "map")
        wait_list = None if wait_for is None else as_wait_list(wait_for)
        parameter_sets = self._expand(self._bind(args, kwargs))
        task = self._printing() if self.log_prints is None and runner._log_prints else self
        previous = _context.track_prepared()
        try:
            return runner.map(task, parameter_sets, wait_list)
        except BaseException as exc:
            _crash_prepared(runner, exc)
            raise
        finally:
            _context.stop_tracking(previous)

    # -- internals --------------------------------------------------------------------

    def _printing(self) -> Task[P, R]:
        """This task with `log_prints=True`, for runs that inherit it from their flow:
        made once, and pickled as "this task, printing" (by reference when this one is)."""
        variant: Task[P, R] | None = self.__dict__.get("_printing_variant")
        if variant is None:
            options = {key: getattr(self, key) for key in _OPTIONS}
            options["log_prints"] = True
            variant = Task(self.fn, **options)
            variant.__dict__["_printing_origin"] = self
            self._printing_variant = variant
        return variant

    def _prepare(
        self, parameters: dict[str, Any], wait_for: Any, info: TaskRunInfo
    ) -> tuple[RunSpec, tuple[Future[Any], ...]]:
        """The `RunSpec` for `parameters`, and the upstream futures found in them and
        in `wait_for`."""
        extractor: Extractor | None = None
        slotted: list[str] = []
        template = parameters
        for name, value in parameters.items():
            if type(value) in _PLAIN:
                continue
            if extractor is None:
                extractor = Extractor()
            new = extractor.visit(value)
            if new is not value:
                if template is parameters:
                    template = dict(parameters)
                template[name] = new
                slotted.append(name)
        if wait_for is not None:
            if extractor is None:
                extractor = Extractor()
            extractor.visit(as_wait_list(wait_for))
        if extractor is None or not extractor.futures:
            return RunSpec(self, info, parameters), ()
        upstream = tuple(extractor.futures)
        for future in upstream:
            future._observed = True  # the downstream run now answers for its failure
        spec = RunSpec(
            self,
            info,
            template,
            tuple(slotted),
            frozenset(extractor.required),
            tuple(f.task_run for f in upstream),
        )
        return spec, upstream

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments by parameter name, as the function would bind them."""
        if self._simple and len(args) <= len(self._positional):
            parameters = dict(zip(self._positional, args)) if args else {}
            fits = True
            if kwargs:
                kinds = self._kinds
                for key in kwargs:
                    if key in parameters or key not in kinds:
                        fits = False
                        break
                parameters.update(kwargs)
            if fits and (len(parameters) == len(self._kinds) or self._required.issubset(parameters)):
                return parameters
        try:
            bound = self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise ParameterError(
                f"task {self.name!r}: {exc}. The function's signature is "
                f"{self.name}{self._signature}; pass arguments that fit it."
            ) from None
        return dict(bound.arguments)

    def _invoke(self, parameters: dict[str, Any], info: TaskRunInfo) -> Any:
        """Call the function once with `parameters`, honouring `timeout_seconds`."""
        fn = self.fn
        if self._simple:
            args: tuple[Any, ...] = ()
            kwargs = parameters
        else:
            bound = inspect.BoundArguments(self._signature, parameters)
            args, kwargs = bound.args, bound.kwargs
        if self.is_async:
            return run_coroutine(fn(*args, **kwargs), self.timeout_seconds, info.name)
        if self.timeout_seconds is None:
            return fn(*args, **kwargs)
        return call_in_thread(lambda: fn(*args, **kwargs), self.timeout_seconds, info.name)

    async def _invoke_async(self, parameters: dict[str, Any], info: TaskRunInfo) -> Any:
        """Await the async function once with `parameters`, in the running loop."""
        fn: Callable[..., Any] = self.fn
        if self._simple:
            coro = fn(**parameters)
        else:
            bound = inspect.BoundArguments(self._signature, parameters)
            coro = fn(*bound.args, **bound.kwargs)
        if self.timeout_seconds is None:
            return await coro
        return await with_timeout(coro, self.timeout_seconds, info.name)

    def _expand(self, parameters: dict[str, Any]) -> list[dict[str, Any]]:
        """One parameter dict per run of `.map()`; raise before anything is submitted."""
        flat: list[tuple[Any, Any]] = []
        for name, value in parameters.items():
            kind = self._kinds.get(name)
            if kind is inspect.Parameter.VAR_KEYWORD:
                flat.extend(((name, key), item) for key, item in value.items())
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                flat.extend(((name, index), item) for index, item in enumerate(value))
            else:
                flat.append((name, value))
        columns = [(path, *_column(value)) for path, value in flat]
        lengths = {_label(path): len(seq) for path, seq, _ in columns if seq is not None}
        if not lengths:
            given = ", ".join(f"{_label(path)}={type(value).__name__}" for path, value in flat) or "none"
            raise MappingMissingIterable(
                f"{self.name}.map() has no iterable argument to map over (arguments: {given}). "
                f"Pass a list or other iterable for at least one parameter, or call "
                f"{self.name}.submit() for a single run."
            )
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{label} has {n} items" for label, n in lengths.items())
            raise MappingLengthMismatch(
                f"{self.name}.map() got iterables of different lengths: {detail}. Give "
                "them the same length, or wrap a value meant for every run in unmapped(...)."
            )
        count = next(iter(lengths.values()))
        runs = []
        for index in range(count):
            run: dict[str, Any] = {}
            for path, seq, fixed in columns:
                value = seq[index] if seq is not None else fixed
                if isinstance(path, tuple):
                    name, key = path
                    if self._kinds[name] is inspect.Parameter.VAR_KEYWORD:
                        run.setdefault(name, {})[key] = value
                    else:
                        run[name] = run.get(name, ()) + (value,)
                else:
                    run[path] = value
            runs.append(run)
        return runs

    # -- pickling and display ---------------------------------------------------------

    def __reduce__(self) -> Any:
        origin = self.__dict__.get("_printing_origin")
        if origin is not None:
            return (_printing_of, (origin,))
        module_name = getattr(self, "__module__", "") or ""
        module = sys.modules.get(module_name)
        qualname = getattr(self, "__qualname__", "")
        # By reference when another process can import it; by value (the function,
        # with cloudpickle) for tasks of __main__, a notebook, a closure, a module made
        # outside the import system (no __spec__: by exec, say), or a module
        # registered with cloudpickle.register_pickle_by_value.
        if (
            module is not None
            and module_name != "__main__"
            and getattr(module, "__spec__", None) is not None
            and "<locals>" not in qualname
            and not _pickled_by_value(module_name)
        ):
            target: Any = module
            for part in qualname.split("."):
                target = getattr(target, part, None)
            if target is self:
                return qualname  # pickled by reference, like a module-level function
        return _by_value(self)

    def __repr__(self) -> str:
        return f"Task({self.name!r})"


def _crash_prepared(runner: Any, error: BaseException) -> None:
    """A runner raised while handing runs over: end those it had prepared but not
    finished, so that nothing stays open (the flow would wait for it forever)."""
    for run in _context.prepared_calls():
        run.crash(f"{type(runner).__name__} raised while accepting it: {error!r}", error)


def as_wait_list(wait_for: Any) -> list[Any] | tuple[Any, ...] | set[Any] | frozenset[Any]:
    """`wait_for` as a collection: one future (or `allow_failure`) or any iterable."""
    if isinstance(wait_for, (Future, allow_failure)):
        return [wait_for]
    if isinstance(wait_for, (list, tuple, set, frozenset)):
        return wait_for
    return list(wait_for)


def _pickled_by_value(module_name: str) -> bool:
    """Whether cloudpickle (if loaded) was told to send `module_name`'s objects by value."""
    cloudpickle = sys.modules.get("cloudpickle")
    if cloudpickle is None:
        return False
    registry = getattr(getattr(cloudpickle, "cloudpickle", None), "_PICKLE_BY_VALUE_MODULES", None)
    if registry is None:  # a cloudpickle without that set: ask the public (slower) way
        return module_name in cloudpickle.list_registry_pickle_by_value()
    return module_name in registry


def _printing_of(task: Task[Any, Any]) -> Task[Any, Any]:
    return task._printing()


def _rebuild_task(fn: Callable[..., Any], options: dict[str, Any]) -> Task[Any, Any]:
    return Task(fn, **options)


#: Tasks pickled by value in this process, as their bytes (made once per task).
_BLOBS: weakref.WeakKeyDictionary[Task[Any, Any], tuple[bytes, int]] = weakref.WeakKeyDictionary()
#: Tasks loaded from bytes in this process (loaded once per worker process).
_LOADED: dict[bytes, Task[Any, Any]] = {}
_LOADED_MAX = 1024


def _by_value(task: Task[Any, Any]) -> tuple[Any, ...]:
    """The reduction of a task that another process cannot import: its function and
    options as cloudpickle bytes, made once per task and loaded once per process, so
    that shipping many runs of one task costs one pickle of its code."""
    options = {key: getattr(task, key) for key in _OPTIONS}
    cloudpickle = _cloudpickle()
    if cloudpickle is None:  # the pickler at hand must handle the function (or say it cannot)
        return (_rebuild_task, (task.fn, options))
    entry = _BLOBS.get(task)
    if entry is None:
        blob = _wire.by_value(cloudpickle, (task.fn, options), 5)
        entry = _BLOBS[task] = (blob, blob.count(b"__main__"))
    _wire.note_shipped_by_value(entry[1])
    return (_load_task, (entry[0],))


def _load_task(blob: bytes) -> Task[Any, Any]:
    task = _LOADED.get(blob)
    if task is None:
        import pickle

        fn, options = pickle.loads(blob)
        task = Task(fn, **options)
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.clear()
        _LOADED[blob] = task
    return task


def _cloudpickle() -> Any:
    cloudpickle = sys.modules.get("cloudpickle")
    if cloudpickle is not None:
        return cloudpickle
    try:
        return importlib.import_module("cloudpickle")
    except ImportError:
        return None


async def _await_final(future: Future[Any]) -> None:
    """Wait for `future` without raising its failure (the engine reads its state)."""
    try:
        await future
    except BaseException:
        if not future.done():
            raise


_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})


def _loop_running() -> bool:
    if "asyncio" not in sys.modules:
        return False
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _outcome(state: State[Any], return_state: bool) -> Any:
    if state.type is StateType.CRASHED:
        cause = state.exception.__cause__ if state.exception is not None else None
        if isinstance(cause, (KeyboardInterrupt, SystemExit)):
            raise cause
    if return_state:
        return state
    return state.result()


def _label(path: Any) -> str:
    if isinstance(path, tuple):
        name, key = path
        return f"{name}[{key!r}]"
    return str(path)


def _column(value: Any) -> tuple[list[Any] | None, Any]:
    """How `.map()` uses one argument: `(items, None)` to map over, `(None, value)` to broadcast."""
    if isinstance(value, unmapped):
        return None, value.value
    if isinstance(value, allow_failure):
        items, _ = _column(value.value)
        if items is None:
            return None, value
        return [allow_failure(item) for item in items], None
    if isinstance(value, Future):
        value.wait()
        state = value.state
        if state.is_completed() and _iterable(state.result()):
            return list(state.result()), None
        return None, value  # passed whole: each run depends on it (and fails if it did)
    if _iterable(value):
        return list(value), None
    return None, value


def _iterable(value: Any) -> bool:
    if isinstance(value, (str, bytes, bytearray)):
        return False
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _check_retries(name: str, retries: Any) -> int:
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise DefinitionError(f"task {name!r}: retries must be a whole number >= 0, got {retries!r}")
    return retries


def _check_delays(name: str, delays: Any) -> float | tuple[float, ...]:
    if isinstance(delays, (int, float)) and not isinstance(delays, bool) and delays >= 0:
        return float(delays)
    if isinstance(delays, (list, tuple)) and all(
        isinstance(d, (int, float)) and not isinstance(d, bool) and d >= 0 for d in delays
    ):
        return tuple(float(d) for d in delays)
    raise DefinitionError(
        f"task {name!r}: retry_delay_seconds must be a number >= 0 or a list of them, got {delays!r}"
    )


def _check_timeout(name: str, timeout: Any) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0:
        return float(timeout)
    raise DefinitionError(f"task {name!r}: timeout_seconds must be a number > 0 or None, got {timeout!r}")


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float | Sequence[float] = 0,
    timeout_seconds: float | None = None,
    tags: Iterable[str] = (),
    log_prints: bool | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float | Sequence[float] = 0,
    timeout_seconds: float | None = None,
    tags: Iterable[str] = (),
    log_prints: bool | None = None,
) -> Any:
    """Make a function a task: `@task` or `@task(name=..., retries=..., ...)`.

    Args:
        fn: The function (when used as a bare `@task`).
        name: The task's name; the function's name by default.
        retries: How many times to run a run again after it raised.
        retry_delay_seconds: Seconds before each retry, or a list of them.
        timeout_seconds: Seconds an attempt may take before it fails.
        tags: Labels for the task.
        log_prints: Send `print` in the task to the run logger (`get_run_logger()`);
            `None` takes the setting of the flow that runs it.

    Raises:
        ReservedArgumentError: The function declares `wait_for` or `return_state`.
        DefinitionError: An option has a value that cannot work.
    """
    options: dict[str, Any] = {
        "name": name,
        "retries": retries,
        "retry_delay_seconds": retry_delay_seconds,
        "timeout_seconds": timeout_seconds,
        "tags": tags,
        "log_prints": log_prints,
    }
    if fn is not None:
        return Task(fn, **options)
    return lambda function: Task(function, **options)
