"""Tasks: functions whose runs a flow hands to its task runner."""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
import weakref
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Generic, Literal, ParamSpec, TypeVar, overload

from . import _context, _logging, _progress, _tracebacks, _wire
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
from ._hooks import check_hooks, render_name, run_hooks
from ._prefect_options import refuse
from ._quote import quote
from ._retries import jittered
from ._states import _FINAL, State, StateType
from ._tags import _tags_var
from ._walk import Extractor, allow_failure, unmapped

__all__ = ["Task", "task"]

P = ParamSpec("P")
R = TypeVar("R", covariant=True)  # a Task[P, CoroutineType[..]] is a Task[P, Coroutine[..]]
T = TypeVar("T")

RESERVED_PARAMETERS = ("wait_for", "return_state")
_SIMPLE_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_OPTIONS = (
    "name",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
    "tags",
    "task_run_name",
    "retry_jitter_factor",
    "retry_condition_fn",
    "on_completion",
    "on_failure",
    "on_crashed",
    "on_running",
    "description",
    "version",
    "log_prints",
)
_HOOKS = ("on_completion", "on_failure", "on_crashed", "on_running")
_UNBOUND: Any = object()
#: Hooks that run only in the flow's process (see PreparedRun.set_state).
_FLOW_SIDE_HOOKS = ("on_completion", "on_failure", "on_crashed")


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
        task_run_name: The template (or callable) that names each run, or `None`.
        retry_jitter_factor: How far each retry delay may move at random, or `None`.
        retry_condition_fn: `fn(task, task_run, state) -> bool`: whether to retry.
        on_completion_hooks: Called as `hook(task, task_run, state)` when a run completes.
        on_failure_hooks: Likewise when a run fails.
        on_crashed_hooks: Likewise when a run crashes.
        on_running_hooks: Likewise as each attempt starts (where the run executes).
        description: A description of the task (the docstring by default).
        version: A version label for the task, or `None`.
        log_prints: Whether `print` in the task goes to the run logger; `None`
            takes the setting of the flow (or task) that submits the run.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        retries: int = 0,
        retry_delay_seconds: float | Sequence[float] | Callable[[int], Sequence[float]] = 0,
        timeout_seconds: float | None = None,
        tags: Iterable[str] = (),
        task_run_name: str | Callable[..., str] | None = None,
        retry_jitter_factor: float | None = None,
        retry_condition_fn: Callable[..., bool] | None = None,
        on_completion: Any = None,
        on_failure: Any = None,
        on_crashed: Any = None,
        on_running: Any = None,
        description: str | None = None,
        version: str | None = None,
        log_prints: bool | None = None,
    ) -> None:
        method: str | None = None
        if isinstance(fn, (classmethod, staticmethod)):
            method = "class" if isinstance(fn, classmethod) else "static"
            fn = fn.__func__
        if not callable(fn):
            raise DefinitionError(f"@task needs a function, got {fn!r}")
        signature = inspect.signature(fn)
        check_reserved(fn, "task", signature)
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        self.retries: int = _check_retries(self.name, retries)
        if callable(retry_delay_seconds):
            retry_delay_seconds = list(retry_delay_seconds(self.retries))
        self.retry_delay_seconds: float | tuple[float, ...] = _check_delays(self.name, retry_delay_seconds)
        self.timeout_seconds: float | None = _check_timeout(self.name, timeout_seconds)
        self.tags: frozenset[str] = frozenset(tags) if not isinstance(tags, str) else frozenset((tags,))
        if task_run_name is not None and not (isinstance(task_run_name, str) or callable(task_run_name)):
            raise DefinitionError(
                f"task {self.name!r}: task_run_name must be a string template or a callable, "
                f"got {task_run_name!r}"
            )
        self.task_run_name = task_run_name
        self.retry_jitter_factor: float | None = _check_jitter(self.name, retry_jitter_factor)
        if retry_condition_fn is not None and not callable(retry_condition_fn):
            raise DefinitionError(
                f"task {self.name!r}: retry_condition_fn must be a callable, got {retry_condition_fn!r}"
            )
        self.retry_condition_fn = retry_condition_fn
        self.on_completion_hooks: list[Callable[..., Any]] = list(
            check_hooks("task", self.name, "on_completion", on_completion)
        )
        self.on_failure_hooks: list[Callable[..., Any]] = list(
            check_hooks("task", self.name, "on_failure", on_failure)
        )
        self.on_crashed_hooks: list[Callable[..., Any]] = list(
            check_hooks("task", self.name, "on_crashed", on_crashed)
        )
        self.on_running_hooks: list[Callable[..., Any]] = list(
            check_hooks("task", self.name, "on_running", on_running)
        )
        self.description: str | None = description if description is not None else inspect.getdoc(fn)
        self.version = version
        self._refresh_hooks()
        self._method = method
        self._self_param = next(iter(signature.parameters), None) if method == "class" else None
        self._bound: Any = _UNBOUND
        self._origin: Task[Any, Any] = self
        if log_prints is not None and not isinstance(log_prints, bool):
            raise DefinitionError(
                f"task {self.name!r}: log_prints must be True, False or None, got {log_prints!r}"
            )
        self.log_prints: bool | None = log_prints
        self.is_async: bool = inspect.iscoroutinefunction(fn)
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

    # -- methods ----------------------------------------------------------------------

    def __set_name__(self, owner: type, name: str) -> None:
        # Defined in a class body: the first parameter is `self` (or `cls`), passed
        # through as it is (never searched for futures, never mapped over).
        if self._method is None and getattr(self.fn, "__qualname__", "").startswith(owner.__qualname__ + "."):
            self._method = "instance"
            self._self_param = next(iter(self._signature.parameters), None)

    def __get__(self, instance: Any, owner: type | None = None) -> Task[..., R]:
        """The task bound to `instance` (or to the class, for a class method), as a
        function would be: calls, `.submit()` and `.map()` pass it as the first argument."""
        kind = self._method
        if kind == "static" or self._bound is not _UNBOUND:
            return self
        if kind == "class":
            target = owner if owner is not None else type(instance)
        elif instance is None:
            return self
        else:
            target = instance
        bound = object.__new__(type(self))  # not copy.copy: that would use __reduce__
        bound.__dict__.update(self.__dict__)
        bound._bound = target
        bound._origin = self
        if bound._self_param is None:
            bound._self_param = next(iter(self._signature.parameters), None)
        return bound

    # -- options ----------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        """The options, by keyword, as `Task(...)` takes them."""
        values = {key: getattr(self, key) for key in _OPTIONS if key not in _HOOKS}
        for key in _HOOKS:
            values[key] = list(getattr(self, f"{key}_hooks"))
        return values

    def with_options(self, **options: Any) -> Task[P, R]:
        """A copy of this task with some options changed (`name`, `retries`, ...).

        Raises:
            TypeError: An option name is not one of the task's options (a Prefect
                option that taskrunners refuses is named as such).
        """
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            refuse("task", self.name, {key: options[key] for key in unknown})
        current = self._options()
        current.update(options)
        fn: Any = self.fn
        if self._method == "class":
            fn = classmethod(fn)
        elif self._method == "static":
            fn = staticmethod(fn)
        new: Task[P, R] = Task(fn, **current)
        new._method = self._method
        new._self_param = self._self_param
        new._bound = self._bound
        return new

    def on_completion(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add `fn` to the completion hooks (a decorator, as in Prefect)."""
        self.on_completion_hooks.append(fn)
        self._refresh_hooks()
        return fn

    def on_failure(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add `fn` to the failure hooks (a decorator, as in Prefect)."""
        self.on_failure_hooks.append(fn)
        self._refresh_hooks()
        return fn

    def on_crashed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add `fn` to the crash hooks (a decorator)."""
        self.on_crashed_hooks.append(fn)
        self._refresh_hooks()
        return fn

    def on_running(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add `fn` to the hooks called as each attempt starts (a decorator, as in Prefect)."""
        self.on_running_hooks.append(fn)
        return fn

    def _refresh_hooks(self) -> None:
        hooks = {
            StateType.COMPLETED: tuple(self.on_completion_hooks),
            StateType.FAILED: tuple(self.on_failure_hooks),
            StateType.CRASHED: tuple(self.on_crashed_hooks),
        }
        self._final_hooks = {kind: fns for kind, fns in hooks.items() if fns}

    def _run_info(self, parameters: dict[str, Any]) -> TaskRunInfo:
        """A new run's `TaskRunInfo`: its tags (the task's and the open `tags()`
        blocks') and its name (from `task_run_name`)."""
        extra = _tags_var.get()
        tags = self.tags | extra if extra else self.tags
        template = self.task_run_name
        if template is None:
            return TaskRunInfo(self.name, tags)
        shown = parameters
        if self._self_param is not None and self._self_param in parameters:
            shown = {k: v for k, v in parameters.items() if k != self._self_param}
            shown["self" if self._method != "class" else "cls"] = parameters[self._self_param]
        return TaskRunInfo(self.name, tags, render_name("task", template, shown))

    def _retry_delay(self, attempt: int) -> float:
        delays = self.retry_delay_seconds
        if isinstance(delays, tuple):
            delay = delays[min(attempt, len(delays)) - 1] if delays else 0.0
        else:
            delay = delays
        if self.retry_jitter_factor:
            return jittered(delay, self.retry_jitter_factor)
        return delay

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
        if self.task_run_name is None and not _tags_var.get():
            info = TaskRunInfo(self.name, self.tags)
        else:
            info = self._run_info(parameters)
        spec, upstream = self._prepare(parameters, wait_for, info)
        if upstream:
            wait(upstream)
        state = spec.execute([future.peek() for future in upstream])
        if state.logs:  # ran with no flow run current: its records were kept
            _logging.deliver(state.logs, None)
            state.logs = ()
        if state.exception is not None:
            _tracebacks.restore(state.exception, here=True)
        return self._after_run(spec.info, state) if self._final_hooks else state

    async def _call_async(self, parameters: dict[str, Any], wait_for: Any, return_state: bool) -> Any:
        spec, upstream = self._prepare(parameters, wait_for, self._run_info(parameters))
        for future in upstream:
            await _await_final(future)
        inputs = spec.inputs([future.peek() for future in upstream])
        if isinstance(inputs, State):
            return _outcome(self._after_run(spec.info, inputs), return_state)
        state = await run_attempts_async(self._origin, spec.info, inputs)
        return _outcome(self._after_run(spec.info, state), return_state)

    def _after_run(self, info: TaskRunInfo, state: State[Any]) -> State[Any]:
        """Fire the final-state hooks of a run called directly; return its state."""
        hooks = self._final_hooks.get(state.type) if self._final_hooks else None
        if hooks and state.type in _FINAL:
            run_hooks(hooks, self._origin, info, state)
        return state

    # -- handing runs to the flow's runner --------------------------------------------

    # Typing: an `async def` task's future holds what the coroutine returns. The first
    # two overloads check the arguments against the function's parameters; the last two
    # accept any arguments, so that a future (or a collection of futures) can stand
    # where the task takes the value: a type checker cannot express "a future of this
    # parameter's type". `wait_for=` is accepted by the last two as well.
    @overload
    def submit(self: Task[P, Coroutine[Any, Any, T]], *args: P.args, **kwargs: P.kwargs) -> Future[T]: ...

    @overload
    def submit(self: Task[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]: ...

    @overload
    def submit(self: Task[P, Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> Future[T]: ...

    @overload
    def submit(self: Task[P, T], *args: Any, **kwargs: Any) -> Future[T]: ...

    def submit(self, *args: Any, **kwargs: Any) -> Future[Any]:
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

    @overload
    def map(self: Task[P, Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> FutureList[T]: ...

    @overload
    def map(self: Task[P, T], *args: Any, **kwargs: Any) -> FutureList[T]: ...

    def map(self, *args: Any, **kwargs: Any) -> FutureList[Any]:
        """Hand one run per element of the iterable arguments to the flow's runner.

        Iterables are zipped; `str`, `bytes` and non-iterable values, and any value
        wrapped in `unmapped(...)`, go whole to every run. A future whose result is
        iterable is waited for and mapped over. `wait_for=[futures]` applies to every
        run. Nothing is submitted if the arguments do not pair up. Where the flow shows
        progress, the map gets a row of its own in the progress display.

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
            futures = runner.map(task, parameter_sets, wait_list)
            if _progress._active:  # a progress display is shown: a row for this map
                _progress.track_map(self.name, futures)
            return futures
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
        if variant is None or variant._bound is not self._bound:  # a bound copy makes its own
            variant = self.with_options(log_prints=True)
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
        skip = self._self_param
        for name, value in parameters.items():
            if type(value) in _PLAIN or name == skip:
                continue
            if type(value) is quote:  # passed as it is, unwrapped, never searched
                if template is parameters:
                    template = dict(parameters)
                template[name] = value.value
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
            return RunSpec(self._origin, info, template), ()
        upstream = tuple(extractor.futures)
        for future in upstream:
            future._observed = True  # the downstream run now answers for its failure
        spec = RunSpec(
            self._origin,
            info,
            template,
            tuple(slotted),
            frozenset(extractor.required),
            tuple(f.task_run for f in upstream),
        )
        return spec, upstream

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The arguments by parameter name, as the function would bind them."""
        if self._bound is not _UNBOUND:
            args = (self._bound, *args)
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
            if name == self._self_param and self._bound is not _UNBOUND:
                flat.append((name, unmapped(value)))  # the bound `self` goes whole to every run
            elif kind is inspect.Parameter.VAR_KEYWORD:
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
                        run[name] = (*run.get(name, ()), value)
                else:
                    run[path] = value
            runs.append(run)
        return runs

    # -- pickling and display ---------------------------------------------------------

    def __reduce__(self) -> Any:
        origin = self.__dict__.get("_printing_origin")
        if origin is not None:
            return (_printing_of, (origin,))
        if self._origin is not self:  # bound: the task by reference, and what it is bound to
            return (_rebind, (self._origin, self._bound))
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
            if "." in qualname and _lookup_static(module_name, qualname) is self:
                return (_lookup_static, (module_name, qualname))  # a method, read unbound
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


def _rebind(task: Task[Any, Any], target: Any) -> Task[Any, Any]:
    """`task` bound again to `target` (an instance, or a class for a class method)."""
    if task._method == "class":
        return task.__get__(None, target)
    return task.__get__(target, type(target))


def _lookup_static(module_name: str, qualname: str) -> Any:
    """The object at `module.qualname`, read from class dictionaries without binding."""
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = inspect.getattr_static(target, part, None)
    if isinstance(target, (classmethod, staticmethod)):
        target = target.__func__
    return target


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
    options = task._options()
    for key in _FLOW_SIDE_HOOKS:  # they run in the flow's process: they need not travel
        options[key] = []
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
    if isinstance(value, quote):
        inner = value.value
        if _iterable(inner):
            return [type(value)(item) for item in inner], None
        return None, value
    if isinstance(value, Future):
        value.wait()
        state = value.state
        if state.is_completed() and _iterable(state.result()):
            return list(state.result()), None
        return None, value  # passed whole: each run depends on it (and fails if it did)
    if isinstance(value, State):
        if value.is_completed() and _iterable(value.result()):
            return list(value.result()), None
        return None, value  # passed whole: resolved (or failing) like a future
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


def _check_jitter(name: str, factor: Any) -> float | None:
    if factor is None:
        return None
    if isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor >= 0:
        return float(factor)
    raise DefinitionError(f"task {name!r}: retry_jitter_factor must be a number >= 0 or None, got {factor!r}")


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
    retry_delay_seconds: float | Sequence[float] | Callable[[int], Sequence[float]] = 0,
    timeout_seconds: float | None = None,
    tags: Iterable[str] = (),
    task_run_name: str | Callable[..., str] | None = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: Callable[..., bool] | None = None,
    on_completion: Any = None,
    on_failure: Any = None,
    on_crashed: Any = None,
    on_running: Any = None,
    description: str | None = None,
    version: str | None = None,
    log_prints: bool | None = None,
    **prefect_options: Any,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    retries: int = 0,
    retry_delay_seconds: float | Sequence[float] | Callable[[int], Sequence[float]] = 0,
    timeout_seconds: float | None = None,
    tags: Iterable[str] = (),
    task_run_name: str | Callable[..., str] | None = None,
    retry_jitter_factor: float | None = None,
    retry_condition_fn: Callable[..., bool] | None = None,
    on_completion: Any = None,
    on_failure: Any = None,
    on_crashed: Any = None,
    on_running: Any = None,
    description: str | None = None,
    version: str | None = None,
    log_prints: bool | None = None,
    **prefect_options: Any,
) -> Any:
    """Make a function a task: `@task` or `@task(name=..., retries=..., ...)`.

    Works on functions, and on instance, class and static methods (put `@task` under
    `@classmethod` / `@staticmethod`, or above them).

    Args:
        fn: The function (when used as a bare `@task`).
        name: The task's name; the function's name by default.
        retries: How many times to run a run again after it raised.
        retry_delay_seconds: Seconds before each retry, a list of them, or a callable
            that takes `retries` and returns the list (`exponential_backoff(...)`).
        timeout_seconds: Seconds an attempt may take before it fails.
        tags: Labels for the task.
        task_run_name: Names each run: a `str.format` template over the run's
            parameters (`"fetch-{url}"`), or a callable returning the name.
        retry_jitter_factor: Moves each retry delay at random by up to this factor of
            itself, so that many failing runs do not retry at the same instant.
        retry_condition_fn: `fn(task, task_run, state) -> bool`, called in the worker
            after an attempt failed: whether to retry it.
        on_completion: Hooks `hook(task, task_run, state)` for a run that completed.
        on_failure: Hooks for a run that failed (after its last retry).
        on_crashed: Hooks for a run that crashed.
        on_running: Hooks called as each attempt starts, where the run executes.
        description: A description (the docstring by default).
        version: A version label.
        log_prints: Send `print` in the task to the run logger (`get_run_logger()`);
            `None` takes the setting of the flow that runs it.
        **prefect_options: Refused: Prefect's other options.

    Raises:
        ReservedArgumentError: The function declares `wait_for` or `return_state`.
        DefinitionError: An option has a value that cannot work.
        TypeError: A Prefect option that taskrunners does not support (the message
            names it and the section of the migration guide).
    """
    refuse("task", str(name or getattr(fn, "__name__", "@task")), prefect_options)
    options: dict[str, Any] = {
        "name": name,
        "retries": retries,
        "retry_delay_seconds": retry_delay_seconds,
        "timeout_seconds": timeout_seconds,
        "tags": tags,
        "task_run_name": task_run_name,
        "retry_jitter_factor": retry_jitter_factor,
        "retry_condition_fn": retry_condition_fn,
        "on_completion": on_completion,
        "on_failure": on_failure,
        "on_crashed": on_crashed,
        "on_running": on_running,
        "description": description,
        "version": version,
        "log_prints": log_prints,
    }
    if fn is not None:
        return Task(fn, **options)
    return lambda function: Task(function, **options)
