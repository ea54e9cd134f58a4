"""Flows: functions that hand task runs to their own task runner."""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any, Generic, TypeVar, Union, overload

from . import _context, _logging, _tracebacks
from ._errors import DefinitionError, UpstreamFailedError
from ._futures import Future
from ._runner import TaskRunner
from ._states import State, StateType, fast_state
from ._tasks import P, check_reserved
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
        return spec.duplicate()
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

        raise RunnerLookupError(
            f"task {task.name!r}: .submit() and .map() hand runs to a task runner, and none is "
            f"installed (only taskrunners-core is). Install the default one with "
            f"`pip install taskrunners-threads` (or `pip install taskrunners`), give the flow a "
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
    function, resolves futures in the return value to their results, waits until every
    task run it submitted is final, and shuts the runner down.

    Attributes:
        fn: The wrapped function.
        name: The flow's name (the function's name by default).
        task_runner: What the flow runs its tasks on, as given to `@flow`.
        log_prints: Whether `print` in the flow and its tasks goes to the run logger;
            `None` takes the enclosing flow's setting, else
            `TASKRUNNERS_LOGGING_LOG_PRINTS`.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        name: str | None = None,
        task_runner: RunnerSpec = None,
        log_prints: bool | None = None,
    ) -> None:
        if not callable(fn):
            raise DefinitionError(f"@flow needs a function, got {fn!r}")
        check_reserved(fn, "flow", inspect.signature(fn))
        self.fn = fn
        self.name: str = name or str(getattr(fn, "__name__", type(fn).__name__))
        _check_spec(self.name, task_runner)
        self.task_runner = task_runner
        if log_prints is not None and not isinstance(log_prints, bool):
            raise DefinitionError(f"flow {self.name!r}: log_prints must be True, False or None, got {log_prints!r}")
        self.log_prints = log_prints
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    def with_options(
        self, *, name: Any = _UNSET, task_runner: Any = _UNSET, log_prints: Any = _UNSET
    ) -> Flow[P, R]:
        """A copy of this flow with its name, task runner or `log_prints` changed.

        `task_runner=None` resets the copy to the default runner.
        """
        return Flow(
            self.fn,
            name=self.name if name is _UNSET else name,
            task_runner=self.task_runner if task_runner is _UNSET else task_runner,
            log_prints=self.log_prints if log_prints is _UNSET else log_prints,
        )

    def _begin(self, runner: TaskRunner) -> None:
        """Tie `runner` to this flow's run, set up logging and `log_prints` (before the
        runner becomes current: the enclosing flow's setting is read here)."""
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

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the flow and return its value (a coroutine to await for an async flow).

        Futures among the arguments, at any depth, are waited for and replaced by their
        values before the runner starts, as for a task; one wrapped in
        `allow_failure(...)` passes the exception of a failed run instead.

        Accepts two extra keywords: `return_state=True` to get the flow run's `State`
        instead of its value (and no exception raised), and `wait_for=[futures]` to
        start only after those runs are final.

        Raises:
            UpstreamFailedError: A future among the arguments or in `wait_for` did
                not complete (the flow function did not run).
            BaseException: Whatever the flow function raised, or the exception of a
                failed run whose future it returned.
            RunnerLookupError: Its runner name is not installed.
        """
        return_state = bool(kwargs.pop("return_state", False))
        wait_for = kwargs.pop("wait_for", None)
        if self.is_async:
            return self._run_async(args, kwargs, wait_for, return_state)  # type: ignore[return-value]
        state: State[Any]
        call_args: tuple[Any, ...] = args
        call_kwargs: dict[str, Any] = kwargs
        # A flow called without arguments has no futures to wait for: skip the walk.
        inputs = _Inputs(self.name, args, kwargs, wait_for) if args or kwargs or wait_for is not None else None
        if inputs is not None and inputs.futures:
            for future in inputs.futures:
                future.wait()
            try:
                call_args, call_kwargs = inputs.fill([future.state for future in inputs.futures])
            except UpstreamFailedError as exc:
                state = State(StateType.FAILED, exception=exc, name="UpstreamFailed")
                return state if return_state else state.result()  # type: ignore[return-value]
        runner = resolve_runner(self.task_runner)
        self._begin(runner)
        token = _context.current_runner_var.set(runner)
        if _logging.flow_lines:
            _logging.flow_started(runner)
        final: State[Any] | None = None
        try:
            with runner:
                try:
                    state = fast_state(StateType.COMPLETED, _results(self.fn(*call_args, **call_kwargs)), 0, None)
                except Exception as exc:
                    state = State(StateType.FAILED, exception=_tracebacks.trimmed(exc))
            final = state
        finally:
            _context.current_runner_var.reset(token)
            if final is not None and (_logging.flow_lines or final.type is not StateType.COMPLETED):
                _logging.flow_finished(runner, final)
        return state if return_state else state.result()  # type: ignore[return-value]

    async def _run_async(self, args: Any, kwargs: Any, wait_for: Any, return_state: bool) -> Any:
        import asyncio

        state: State[Any]
        inputs = _Inputs(self.name, args, kwargs, wait_for)
        if inputs.futures:
            for future in inputs.futures:
                try:
                    await future
                except Exception:  # a run that did not complete: its state says how it ended
                    pass
            try:
                args, kwargs = inputs.fill([future.state for future in inputs.futures])
            except UpstreamFailedError as exc:
                state = State(StateType.FAILED, exception=exc, name="UpstreamFailed")
                return state if return_state else state.result()
        runner = resolve_runner(self.task_runner)
        self._begin(runner)
        token = _context.current_runner_var.set(runner)
        if _logging.flow_lines:
            _logging.flow_started(runner)
        final: State[Any] | None = None
        try:
            runner.__enter__()
            try:
                try:
                    value = await self.fn(*args, **kwargs)  # type: ignore[misc]
                    state = State(StateType.COMPLETED, data=await _results_async(value))
                except Exception as exc:
                    state = State(StateType.FAILED, exception=_tracebacks.trimmed(exc))
                idle = asyncio.get_running_loop().create_future()
                runner._when_idle(lambda: idle.get_loop().call_soon_threadsafe(_set_done, idle))
                await idle
            except BaseException as exc:
                runner.__exit__(type(exc), exc, exc.__traceback__)
                raise
            runner.__exit__(None, None, None)
            final = state
        finally:
            _context.current_runner_var.reset(token)
            if final is not None and (_logging.flow_lines or final.type is not StateType.COMPLETED):
                _logging.flow_finished(runner, final)
        return state if return_state else state.result()

    def __repr__(self) -> str:
        return f"Flow({self.name!r})"


class _Inputs:
    """The futures among a flow call's arguments and `wait_for`, and how to fill them in."""

    __slots__ = ("args", "flow", "futures", "kwargs", "required")

    def __init__(self, flow: str, args: tuple[Any, ...], kwargs: dict[str, Any], wait_for: Any) -> None:
        self.flow = flow
        extractor = Extractor()
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
    extractor = Extractor()
    template = extractor.visit(value)
    if not extractor.futures:
        return value
    for future in extractor.futures:
        future._observed = True  # returned from the flow: its failure is the flow's
    return fill(template, [future.result() for future in extractor.futures])


async def _results_async(value: Any) -> Any:
    extractor = Extractor()
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
    *, name: str | None = None, task_runner: RunnerSpec = None, log_prints: bool | None = None
) -> Callable[[Callable[P, R]], Flow[P, R]]: ...


def flow(
    fn: Any = None,
    /,
    *,
    name: str | None = None,
    task_runner: RunnerSpec = None,
    log_prints: bool | None = None,
) -> Any:
    """Make a function a flow: `@flow` or `@flow(name=..., task_runner=...)`.

    Args:
        fn: The function (when used as a bare `@flow`).
        name: The flow's name; the function's name by default.
        task_runner: A `TaskRunner` instance, a `TaskRunner` subclass, or a registered
            runner name such as `"threads"`. Without one, the environment variable
            `TASKRUNNERS_RUNNER` names the runner, else `"threads"`.
        log_prints: Send `print` in the flow, and in its tasks that do not set their
            own, to the run logger (`get_run_logger()`). `None` takes the enclosing
            flow's setting, else the environment variable
            `TASKRUNNERS_LOGGING_LOG_PRINTS` (false when unset).

    Raises:
        ReservedArgumentError: The function declares `wait_for` or `return_state`.
        DefinitionError: `task_runner` is not a runner, a runner class or a name.
    """
    if fn is not None:
        return Flow(fn, name=name, task_runner=task_runner, log_prints=log_prints)
    return lambda function: Flow(function, name=name, task_runner=task_runner, log_prints=log_prints)
