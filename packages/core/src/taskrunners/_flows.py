"""Flows: functions that hand task runs to their own task runner."""

from __future__ import annotations

import functools
import inspect
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, Union, overload

from . import _context, _logging, _tracebacks
from ._engine import call_in_thread, with_timeout
from ._errors import DefinitionError, FlowTimeoutError, TaskRunCrashed, UpstreamFailedError
from ._flowrun import FlowRunInfo
from ._futures import Future
from ._hooks import FINAL_HOOKS, check_hooks, render_name, run_hooks
from ._interrupts import SigtermGuard
from ._prefect_options import refuse
from ._record import Recording
from ._returned import MARKERS, returned_state
from ._runner import TaskRunner
from ._states import State, StateType, fast_state
from ._tags import current_tags
from ._tasks import P, _check_delays, _check_retries, _check_timeout, check_reserved
from ._walk import Extractor, fill

__all__ = ["Flow", "flow", "resolve_runner"]

R = TypeVar("R")
RunnerSpec = Union[TaskRunner, "type[TaskRunner]", str, None]

#: The environment variable that names the runner of flows that do not choose one.
RUNNER_ENV = "TASKRUNNERS_RUNNER"
_UNSET: Any = object()
DEFAULT_RUNNER = "threads"


def resolve_runner(spec: RunnerSpec) -> TaskRunner:
    """A fresh, unstarted runner for one flow run.

    Args:
        spec: A `TaskRunner` instance (duplicated), a `TaskRunner` subclass
            (instantiated without arguments), a registered runner name, or `None` for
            the name in `TASKRUNNERS_RUNNER`, else `"threads"`.

    Raises:
        RunnerLookupError: No installed runner has that name.
        PluginLoadError: The plugin providing that name failed to load.
        DefinitionError: `spec` is none of the above.
    """
    if spec is None:
        spec = os.environ.get(RUNNER_ENV)
        if not spec:
            return _default_runner()
    if isinstance(spec, str):
        from .plugins import load_runner

        return load_runner(spec)()
    if isinstance(spec, TaskRunner):
        runner = spec.duplicate()
        grace = spec.shutdown_grace
        if grace is not None:
            runner.shutdown_grace = grace
        return runner
    if isinstance(spec, type) and issubclass(spec, TaskRunner):
        return spec()
    raise DefinitionError(
        f"task_runner must be a TaskRunner instance, a TaskRunner subclass or a runner "
        f"name such as 'threads'; got {spec!r}"
    )


def _default_runner() -> TaskRunner:
    """The `"threads"` runner, or, where only the core is installed, a runner that
    refuses `.submit()` and `.map()` with the package to install (a flow that calls
    its tasks directly still runs)."""
    from ._errors import RunnerLookupError
    from .plugins import load_runner

    try:
        runner_class = load_runner(DEFAULT_RUNNER)
    except RunnerLookupError:
        return _MissingRunner()
    return runner_class()


class _MissingRunner(TaskRunner):
    """Stands in for the default runner when no runner package is installed."""

    def duplicate(self) -> _MissingRunner:
        return _MissingRunner()

    def __eq__(self, other: object) -> bool:
        return type(other) is _MissingRunner

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None) -> Future[Any]:
        from ._errors import RunnerLookupError
        from .plugins import _checkout_member

        folder = _checkout_member("runner-threads")
        here = f' (from this checkout: `pip install "{folder}"`)' if folder is not None else ""
        raise RunnerLookupError(
            f"task {task.name!r}: .submit() and .map() hand runs to a task runner, and none is "
            f"installed (only taskrunners-core is). Install the default one with "
            f"`pip install taskrunners-threads` (or `pip install taskrunners`){here}, give the flow a "
            f"task_runner=..., or call the task directly ({task.name}(...)) to run it here."
        )


def _check_spec(name: str, spec: Any) -> None:
    if spec is None or isinstance(spec, (str, TaskRunner)):
        return
    if isinstance(spec, type) and issubclass(spec, TaskRunner):
        return
    raise DefinitionError(
        f"flow {name!r}: task_runner must be a TaskRunner instance, a TaskRunner subclass "
        f"or a runner name such as 'threads'; got {spec!r}"
    )


class Flow(Generic[P, R]):
    """A function whose task runs go to its own task runner. Made by `@flow`.

    Each call is a flow run: it waits for the futures among its arguments (and in
    `wait_for=`) and passes their values, starts a fresh copy of the runner, runs the
    function (again, up to `retries` times, while it fails), works out the run's final
    state from what the function returned, waits until every task run it submitted is
    final, shuts the runner down, and calls the flow's hooks for that final state.

    Attributes:
        fn: The wrapped function.
        name: The flow's name (the function's name by default).
        task_runner: What the flow runs its tasks on, as given to `@flow`.
        flow_run_name: The template (or callable) that names each flow run, or `None`.
        retries: How many times a failed flow run is run again.
        retry_delay_seconds: Seconds before each retry (a number or a list).
        timeout_seconds: Seconds an attempt may take before it fails with
            `FlowTimeoutError`, or `None`.
        on_completion_hooks, on_failure_hooks, on_crashed_hooks,
        on_cancellation_hooks, on_running_hooks: Hooks `hook(flow, flow_run, state)`,
            called in the calling process.
        description: A description (the docstring by default).
        version: A version label, or `None`.
        progress: Whether its runs show a live progress bar (`None`: at an
            interactive terminal, unless `TASKRUNNERS_PROGRESS` says otherwise).
        log_prints: Whether `print` in the flow and its tasks goes to the run logger;
            `None` takes the enclosing flow's setting, else
            `TASKRUNNERS_LOGGING_LOG_PRINTS`.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        task_runner: RunnerSpec = None,
        *,
        flow_run_name: str | Callable[..., str] | None = None,
        retries: int = 0,
        retry_delay_seconds: float | Sequence[float] = 0,
        timeout_seconds: float | None = None,
        on_completion: Any = None,
        on_failure: Any = None,
        on_crashed: Any = None,
        on_cancellation: Any = None,
        on_running: Any = None,
        description: str | None = None,
        version: str | None = None,
        progress: bool | None = None,
        log_prints: bool | None = None,
    ) -> None:
        method: str | None = None
        if isinstance(fn, (classmethod, staticmethod)):
            method = "class" if isinstance(fn, classmethod) else "static"
            fn = fn.__func__
        if not callable(fn):
            raise DefinitionError(f"@flow needs a function, got {fn!r}")
        self._signature = inspect.signature(fn)
        check_reserved(fn, "flow", self._signature)
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        _check_spec(self.name, task_runner)
        self.task_runner: RunnerSpec = task_runner
        if flow_run_name is not None and not (isinstance(flow_run_name, str) or callable(flow_run_name)):
            raise DefinitionError(
                f"flow {self.name!r}: flow_run_name must be a string template or a callable, "
                f"got {flow_run_name!r}"
            )
        self.flow_run_name = flow_run_name
        try:
            self.retries: int = _check_retries(self.name, retries)
            self.retry_delay_seconds: float | tuple[float, ...] = _check_delays(
                self.name, retry_delay_seconds
            )
            self.timeout_seconds: float | None = _check_timeout(self.name, timeout_seconds)
        except DefinitionError as exc:
            raise DefinitionError(str(exc).replace("task ", "flow ", 1)) from None
        self.on_completion_hooks: list[Callable[..., Any]] = list(
            check_hooks("flow", self.name, "on_completion", on_completion)
        )
        self.on_failure_hooks: list[Callable[..., Any]] = list(
            check_hooks("flow", self.name, "on_failure", on_failure)
        )
        self.on_crashed_hooks: list[Callable[..., Any]] = list(
            check_hooks("flow", self.name, "on_crashed", on_crashed)
        )
        self.on_cancellation_hooks: list[Callable[..., Any]] = list(
            check_hooks("flow", self.name, "on_cancellation", on_cancellation)
        )
        self.on_running_hooks: list[Callable[..., Any]] = list(
            check_hooks("flow", self.name, "on_running", on_running)
        )
        self._hook_lists = (
            self.on_completion_hooks,
            self.on_failure_hooks,
            self.on_crashed_hooks,
            self.on_cancellation_hooks,
            self.on_running_hooks,
        )
        self.description: str | None = description if description is not None else inspect.getdoc(fn)
        self.version = version
        self.progress: bool | None = progress
        if log_prints is not None and not isinstance(log_prints, bool):
            raise DefinitionError(
                f"flow {self.name!r}: log_prints must be True, False or None, got {log_prints!r}"
            )
        self.log_prints: bool | None = log_prints
        self._method = method
        self._bound: Any = _UNBOUND
        self.is_async: bool = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    # -- methods ----------------------------------------------------------------------

    def __set_name__(self, owner: type, name: str) -> None:
        if self._method is None and getattr(self.fn, "__qualname__", "").startswith(owner.__qualname__ + "."):
            self._method = "instance"

    def __get__(self, instance: Any, owner: type | None = None) -> Flow[..., R]:
        """The flow bound to `instance` (or to the class, for a class method)."""
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
        if bound._method is None:
            bound._method = "instance"
        return bound

    # -- options ----------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        values: dict[str, Any] = {key: getattr(self, key) for key in _FLOW_OPTIONS if key not in _FLOW_HOOKS}
        for key in _FLOW_HOOKS:
            values[key] = list(getattr(self, f"{key}_hooks"))
        return values

    def with_options(self, **options: Any) -> Flow[P, R]:
        """A copy of this flow with some options changed (`name`, `task_runner`,
        `retries`, hooks, ...). `task_runner=None` resets the copy to the default runner.

        Raises:
            TypeError: An option name is not one of the flow's options (a Prefect option
                that taskrunners refuses is named as such).
        """
        unknown = set(options) - set(_FLOW_OPTIONS)
        if unknown:
            refuse("flow", self.name, {key: options[key] for key in unknown})
        current = self._options()
        current.update(options)
        fn: Any = self.fn
        if self._method == "class":
            fn = classmethod(fn)
        elif self._method == "static":
            fn = staticmethod(fn)
        new: Flow[P, R] = Flow(fn, **current)
        new._method = self._method
        new._bound = self._bound
        return new

    def on_completion(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add `fn` to the completion hooks (a decorator, as in Prefect)."""
        self.on_completion_hooks.append(fn)
        return fn

    def on_failure(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add `fn` to the failure hooks (a decorator, as in Prefect)."""
        self.on_failure_hooks.append(fn)
        return fn

    def on_crashed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add `fn` to the crash hooks (a decorator, as in Prefect)."""
        self.on_crashed_hooks.append(fn)
        return fn

    def on_cancellation(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add `fn` to the cancellation hooks (a decorator, as in Prefect)."""
        self.on_cancellation_hooks.append(fn)
        return fn

    def on_running(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Add `fn` to the hooks called as each attempt starts (a decorator, as in Prefect)."""
        self.on_running_hooks.append(fn)
        return fn

    # -- running ----------------------------------------------------------------------

    def _begin(self, runner: TaskRunner, info: FlowRunInfo | None) -> None:
        """Tie `runner` to this flow's run, set up logging and `log_prints` (before the
        runner becomes current: the enclosing flow's setting is read here). A run that
        already has its `FlowRunInfo` (hooks or a run name) logs under it."""
        _logging.configure()
        log_prints = self.log_prints
        if log_prints is None:
            parent = _context.current_runner_var.get()
            if parent is not None and parent._flow is not None:
                log_prints = parent._log_prints
            else:
                log_prints = _logging.log_prints_default
        if log_prints:
            _logging.enable_print_capture()
        runner._log_prints = log_prints  # on the instance: read at each submit
        runner._flow = self
        if info is not None:
            info.log_prints = bool(log_prints)
            runner._flow_run = info

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the flow and return its value (a coroutine to await for an async flow).

        Futures and final States among the arguments, at any depth, are waited for and
        replaced by their values before the runner starts, as for a task; one wrapped
        in `allow_failure(...)` passes the exception of a failed run instead.

        The run's final state: a returned `State` is the final state; a returned future
        gives its run's state (with its value as data); a returned list, tuple or set
        of States and futures gives their aggregate ("2/3 states failed."). Other
        futures in the returned value are replaced by their values.

        Accepts two extra keywords: `return_state=True` to get the flow run's `State`
        instead of its value (and no exception raised), and `wait_for=[futures]` to
        start only after those runs are final. The state of a flow run that started
        has its report as `state.run` (a `taskrunners.report.FlowRun`).

        Raises:
            UpstreamFailedError: A future among the arguments or in `wait_for` did
                not complete (the flow function did not run).
            BaseException: Whatever the flow function raised, or the exception of the
                final state (a failed run whose future it returned, say).
            FlowTimeoutError: The flow ran longer than its `timeout_seconds`.
            RunnerLookupError: Its runner name is not installed.
        """
        return_state = bool(kwargs.pop("return_state", False))
        wait_for = kwargs.pop("wait_for", None)
        if self._bound is not _UNBOUND:
            args = (self._bound, *args)  # type: ignore[assignment]
        if self.is_async:
            return self._run_async(args, kwargs, wait_for, return_state)  # type: ignore[return-value]
        state: State[Any]
        call_args: tuple[Any, ...] = args
        call_kwargs: dict[str, Any] = kwargs
        # A flow called without arguments has no futures to wait for: skip the walk.
        inputs = (
            _Inputs(self.name, args, kwargs, wait_for, self._method is not None)
            if args or kwargs or wait_for is not None
            else None
        )
        if inputs is not None and inputs.futures:
            for future in inputs.futures:
                future.wait()
            try:
                call_args, call_kwargs = inputs.fill([future.state for future in inputs.futures])
            except UpstreamFailedError as exc:
                state = State(StateType.FAILED, exception=exc, name="UpstreamFailed")
                return state if return_state else state.result()  # type: ignore[return-value]
        info = (
            self._flow_run(call_args, call_kwargs)
            if self.flow_run_name is not None or any(self._hook_lists)
            else None
        )
        runner = resolve_runner(self.task_runner)
        self._begin(runner, info)
        watch = Recording.begin(self.name, runner, self.progress)
        token = _context.current_runner_var.set(runner)
        if _logging.flow_lines:
            _logging.flow_started(runner)
        final: State[Any] | None = None
        sigterm = SigtermGuard()  # SIGTERM unwinds like Ctrl-C while the flow runs
        try:
            with runner:
                sigterm.reclaim()  # from an engine that took it over as it started
                if info is None and not self.retries and self.timeout_seconds is None:
                    try:  # the common case, inline: one attempt, nothing to report
                        value = self.fn(*call_args, **call_kwargs)
                        if isinstance(value, MARKERS):
                            state = _final_state(value)
                            plain = value if _only_states(value) else _UNBOUND
                        else:
                            state, plain = fast_state(StateType.COMPLETED, _results(value), 0, None), _UNBOUND
                    except Exception as exc:  # noqa: BLE001 - any failure of the flow's code is its result
                        state, plain = _failed(exc, 1), _UNBOUND
                else:
                    state, plain = self._attempts(call_args, call_kwargs, info)
            final = state
        except BaseException as exc:
            self._crashed(info, exc)
            raise
        finally:
            sigterm.restore()
            _context.current_runner_var.reset(token)
            watch.close()
            if final is not None and (_logging.flow_lines or final.type is not StateType.COMPLETED):
                _logging.flow_finished(runner, final)
        if info is not None:
            self._final_hooks(info, state)
        if return_state or plain is _UNBOUND:
            return watch.outcome(state, return_state)  # type: ignore[no-any-return]
        watch.outcome(state, True)  # the report's end; the call returns the States themselves
        return plain

    def _flow_run(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> FlowRunInfo | None:
        """The run's `FlowRunInfo` (made only for a flow with hooks or a run name)."""
        try:
            parameters = dict(self._signature.bind(*args, **kwargs).arguments)
        except TypeError:
            parameters = {}
        info = FlowRunInfo(self.name, parameters, current_tags())
        if self.flow_run_name is not None:
            shown = parameters
            if self._method is not None and args:
                shown = dict(list(parameters.items())[1:])
            info.name = render_name("flow", self.flow_run_name, shown)
        return info

    def _label(self, info: FlowRunInfo | None) -> str:
        return info.name if info is not None else self.name

    def _attempts(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], info: FlowRunInfo | None
    ) -> tuple[State[Any], Any]:
        """The final state, and what a plain call returns (`_UNBOUND`: the state's result)."""
        attempt = 0
        while True:
            attempt += 1
            if info is not None:
                self._running(info, attempt)
            try:
                if self.timeout_seconds is None:
                    value = self.fn(*args, **kwargs)
                else:
                    value = call_in_thread(
                        lambda: self.fn(*args, **kwargs),
                        self.timeout_seconds,
                        self._label(info),
                        FlowTimeoutError,
                        "flow run",
                    )
                if isinstance(value, MARKERS):
                    state = _final_state(value)
                    plain = value if _only_states(value) else _UNBOUND
                else:
                    state, plain = State(StateType.COMPLETED, data=_results(value)), _UNBOUND
            except Exception as exc:  # noqa: BLE001 - the flow's own error fails the flow run
                state, plain = _failed(exc, attempt), _UNBOUND
            if state.type is StateType.FAILED and attempt <= self.retries:
                delay = _delay(self.retry_delay_seconds, attempt)
                if delay:
                    with _context.blocking():
                        time.sleep(delay)
                continue
            return state, plain

    def _running(self, info: FlowRunInfo | None, attempt: int) -> None:
        if info is not None:
            info.attempt = attempt
            if self.on_running_hooks:
                run_hooks(self.on_running_hooks, self, info, State(StateType.RUNNING, attempt=attempt))

    def _final_hooks(self, info: FlowRunInfo | None, state: State[Any]) -> None:
        if info is None:
            return
        option = FINAL_HOOKS.get(state.type)
        if option is not None:
            run_hooks(getattr(self, f"{option}_hooks"), self, info, state)

    def _crashed(self, info: FlowRunInfo | None, exc: BaseException) -> None:
        """The flow run ended by an exception that is not an `Exception` (an interrupt)."""
        if info is not None and self.on_crashed_hooks:
            error = TaskRunCrashed(f"flow run {info.name!r} was interrupted by {type(exc).__name__}")
            error.__cause__ = exc
            run_hooks(self.on_crashed_hooks, self, info, State(StateType.CRASHED, exception=error))

    async def _run_async(self, args: Any, kwargs: Any, wait_for: Any, return_state: bool) -> Any:
        import asyncio

        state: State[Any]
        inputs = _Inputs(self.name, args, kwargs, wait_for, self._method is not None)
        if inputs.futures:
            for future in inputs.futures:
                try:
                    await future
                except Exception:  # noqa: BLE001, S110 - a run that did not complete: its state says how it ended
                    pass
            try:
                args, kwargs = inputs.fill([future.state for future in inputs.futures])
            except UpstreamFailedError as exc:
                state = State(StateType.FAILED, exception=exc, name="UpstreamFailed")
                return state if return_state else state.result()
        info = (
            self._flow_run(args, kwargs) if self.flow_run_name is not None or any(self._hook_lists) else None
        )
        runner = resolve_runner(self.task_runner)
        self._begin(runner, info)
        watch = Recording.begin(self.name, runner, self.progress)
        token = _context.current_runner_var.set(runner)
        if _logging.flow_lines:
            _logging.flow_started(runner)
        final: State[Any] | None = None
        sigterm = SigtermGuard()
        try:
            runner.__enter__()
            sigterm.reclaim()
            try:
                attempt = 0
                while True:
                    attempt += 1
                    if info is not None:
                        self._running(info, attempt)
                    try:
                        coro = self.fn(*args, **kwargs)
                        if self.timeout_seconds is None:
                            value = await coro  # type: ignore[misc]
                        else:
                            value = await with_timeout(
                                coro, self.timeout_seconds, self._label(info), FlowTimeoutError, "flow run"
                            )
                        state = await _final_state_async(value)
                        plain = value if _only_states(value) else _UNBOUND
                    except Exception as exc:  # noqa: BLE001 - any failure of the flow's code is its result
                        state, plain = _failed(exc, attempt), _UNBOUND
                    if state.type is StateType.FAILED and attempt <= self.retries:
                        await asyncio.sleep(_delay(self.retry_delay_seconds, attempt))
                        continue
                    break
                idle = asyncio.get_running_loop().create_future()
                runner._when_idle(lambda: idle.get_loop().call_soon_threadsafe(_set_done, idle))
                await idle
            except BaseException as exc:
                runner.__exit__(type(exc), exc, exc.__traceback__)
                self._crashed(info, exc)
                raise
            runner.__exit__(None, None, None)
            final = state
        finally:
            sigterm.restore()
            _context.current_runner_var.reset(token)
            watch.close()
            if final is not None and (_logging.flow_lines or final.type is not StateType.COMPLETED):
                _logging.flow_finished(runner, final)
        if info is not None:
            self._final_hooks(info, state)
        if return_state or plain is _UNBOUND:
            return watch.outcome(state, return_state)
        watch.outcome(state, True)  # the report's end; the call returns the States themselves
        return plain

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"


_FLOW_OPTIONS = (
    "name",
    "task_runner",
    "flow_run_name",
    "retries",
    "retry_delay_seconds",
    "timeout_seconds",
    "on_completion",
    "on_failure",
    "on_crashed",
    "on_cancellation",
    "on_running",
    "description",
    "version",
    "progress",
    "log_prints",
)
_FLOW_HOOKS = ("on_completion", "on_failure", "on_crashed", "on_cancellation", "on_running")
_UNBOUND: Any = object()


def _failed(exc: Exception, attempt: int) -> State[Any]:
    _tracebacks.trimmed(exc)
    name = "TimedOut" if isinstance(exc, FlowTimeoutError) else None
    return State(StateType.FAILED, exception=exc, name=name, attempt=attempt)


def _only_states(value: Any) -> bool:
    """Whether `value` is a non-empty list, tuple or set of States only: a plain call
    returns it as it is (as in Prefect), whatever the aggregate state."""
    if not isinstance(value, (list, tuple, set, frozenset)) or not value:
        return False
    return all(isinstance(item, State) for item in value)


def _delay(delays: float | tuple[float, ...], attempt: int) -> float:
    if isinstance(delays, tuple):
        return delays[min(attempt, len(delays)) - 1] if delays else 0.0
    return delays


def _final_state(value: Any) -> State[Any]:
    """The final state of a flow run whose function returned `value`."""
    if isinstance(value, MARKERS):
        state = returned_state(value)
        if state is not None:
            return state
    return State(StateType.COMPLETED, data=_results(value))


async def _final_state_async(value: Any) -> State[Any]:
    if isinstance(value, MARKERS):
        items: Any = () if isinstance(value, State) else [value] if isinstance(value, Future) else value
        for item in items:
            if isinstance(item, Future):
                try:
                    await item
                except BaseException:
                    if not item.done():
                        raise
        state = returned_state(value)
        if state is not None:
            return state
    return State(StateType.COMPLETED, data=await _results_async(value))


class _Inputs:
    """The futures among a flow call's arguments and `wait_for`, and how to fill them in."""

    __slots__ = ("args", "flow", "futures", "kwargs", "required")

    def __init__(
        self, flow: str, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Any, method: bool = False
    ) -> None:
        self.flow = flow
        extractor = Extractor()
        if method and args:  # `self` / `cls` passes through as it is
            rest = args[1:]
            visited = extractor.visit(rest) if rest else rest
            self.args = args if visited is rest else (args[0], *visited)
        else:
            self.args = extractor.visit(args) if args else args
        self.kwargs = extractor.visit(kwargs) if kwargs else kwargs
        if wait_for is not None:
            extractor.visit(list(wait_for) if not isinstance(wait_for, Future) else [wait_for])
        self.futures: list[Future[Any]] = extractor.futures
        self.required = extractor.required

    def fill(self, states: list[State[Any]]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments with each future's value in place.

        Raises:
            UpstreamFailedError: A required future's run did not complete.
        """
        for future in self.futures:
            future._observed = True  # passed to the flow: its failure is the flow's to report
        for index in sorted(self.required):
            state = states[index]
            if not state.is_completed():
                upstream = self.futures[index].task_run
                error = UpstreamFailedError(
                    f"flow {self.flow!r} did not run: its upstream run {upstream.name!r} ended "
                    f"{state.type.value} ({state.exception!r}). Wrap the future in allow_failure(...) "
                    "to run anyway and receive the exception.",
                    upstream=upstream,
                )
                error.__cause__ = state.exception
                raise error
        values = [state.result(raise_on_failure=False) for state in states]
        return fill(self.args, values), fill(self.kwargs, values)


def _set_done(future: Any) -> None:
    if not future.done():
        future.set_result(None)


def _results(value: Any) -> Any:
    """`value` with every future in it replaced by its result (raising failures)."""
    if type(value) in (int, float, str, bytes, bool, type(None)):
        return value
    extractor = Extractor(states=False)
    template = extractor.visit(value)
    if not extractor.futures:
        return value
    for future in extractor.futures:
        future._observed = True  # returned from the flow: its failure is the flow's
    return fill(template, [future.result() for future in extractor.futures])


async def _results_async(value: Any) -> Any:
    extractor = Extractor(states=False)
    template = extractor.visit(value)
    if not extractor.futures:
        return value
    futures: list[Future[Any]] = extractor.futures
    for future in futures:
        future._observed = True
    return fill(template, [await future for future in futures])


@overload
def flow(fn: Callable[P, R], /) -> Flow[P, R]: ...


@overload
def flow(
    *,
    name: str | None = None,
    task_runner: RunnerSpec = None,
    flow_run_name: str | Callable[..., str] | None = None,
    retries: int = 0,
    retry_delay_seconds: float | Sequence[float] = 0,
    timeout_seconds: float | None = None,
    on_completion: Any = None,
    on_failure: Any = None,
    on_crashed: Any = None,
    on_cancellation: Any = None,
    on_running: Any = None,
    description: str | None = None,
    version: str | None = None,
    progress: bool | None = None,
    log_prints: bool | None = None,
    **prefect_options: Any,
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    task_runner: RunnerSpec = None,
    flow_run_name: str | Callable[..., str] | None = None,
    retries: int = 0,
    retry_delay_seconds: float | Sequence[float] = 0,
    timeout_seconds: float | None = None,
    on_completion: Any = None,
    on_failure: Any = None,
    on_crashed: Any = None,
    on_cancellation: Any = None,
    on_running: Any = None,
    description: str | None = None,
    version: str | None = None,
    progress: bool | None = None,
    log_prints: bool | None = None,
    **prefect_options: Any,
) -> Any:
    """Make a function a flow: `@flow` or `@flow(name=..., task_runner=...)`.

    Works on functions, and on instance, class and static methods.

    Args:
        fn: The function (when used as a bare `@flow`).
        name: The flow's name; the function's name by default.
        task_runner: A `TaskRunner` instance, a `TaskRunner` subclass, or a registered
            runner name such as `"threads"`. Without one, the environment variable
            `TASKRUNNERS_RUNNER` names the runner, else `"threads"`.
        flow_run_name: Names each flow run: a `str.format` template over the call's
            parameters, or a callable returning the name.
        retries: How many times a failed flow run is run again (the whole function).
        retry_delay_seconds: Seconds before each retry, or a list of them.
        timeout_seconds: Seconds an attempt may take before it fails with
            `FlowTimeoutError`.
        on_completion: Hooks `hook(flow, flow_run, state)` for a run that completed.
        on_failure: Hooks for a run that failed (after its last retry).
        on_crashed: Hooks for a run that an interrupt ended.
        on_cancellation: Hooks for a run that ended cancelled.
        on_running: Hooks called as each attempt starts.
        description: A description (the docstring by default).
        version: A version label.
        progress: Show a live progress bar of the flow's runs (and a row per
            `.map()`): `True` or `False`; `None` (the default) shows it at an
            interactive terminal once the flow has run half a second, unless the
            environment variable `TASKRUNNERS_PROGRESS` is `0` (or `1`: always). Needs
            the extra `taskrunners-core[progress]` (rich); without it, nothing is shown.
        log_prints: Send `print` in the flow, and in its tasks that do not set their
            own, to the run logger (`get_run_logger()`). `None` takes the enclosing
            flow's setting, else the environment variable
            `TASKRUNNERS_LOGGING_LOG_PRINTS` (false when unset).
        **prefect_options: Refused: Prefect's other options.

    Raises:
        ReservedArgumentError: The function declares `wait_for` or `return_state`.
        DefinitionError: `task_runner` is not a runner, a runner class or a name, or
            another option has a value that cannot work.
        TypeError: A Prefect option that taskrunners does not support (the message
            names it and the section of the migration guide).
    """
    refuse("flow", str(name or getattr(fn, "__name__", "@flow")), prefect_options)
    options: dict[str, Any] = {
        "name": name,
        "task_runner": task_runner,
        "flow_run_name": flow_run_name,
        "retries": retries,
        "retry_delay_seconds": retry_delay_seconds,
        "timeout_seconds": timeout_seconds,
        "on_completion": on_completion,
        "on_failure": on_failure,
        "on_crashed": on_crashed,
        "on_cancellation": on_cancellation,
        "on_running": on_running,
        "description": description,
        "version": version,
        "progress": progress,
        "log_prints": log_prints,
    }
    if fn is not None:
        return Flow(fn, **options)
    return lambda function: Flow(function, **options)
