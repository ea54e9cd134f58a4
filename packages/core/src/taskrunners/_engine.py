"""The task-run engine: what runs one task run, wherever a runner runs code.

A runner never calls a task's function itself. It receives a `PreparedRun` from
`TaskRunner.prepare` and, once the upstream runs are final, calls `RunSpec.execute`
on its `spec` with their states, in this process (`PreparedRun.run_here` does it all
for in-process runners) or on a worker elsewhere (the spec pickles). The engine checks
the upstream states, puts upstream values in place of the futures in the arguments,
calls the function with retries and a timeout, and returns the final `State`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _context, _logging, _tracebacks
from ._errors import (
    NotSerializableError,
    TaskRunCancelled,
    TaskRunCrashed,
    TaskTimeoutError,
    UpstreamFailedError,
)
from ._futures import Future, _lock
from ._hooks import run_hooks
from ._location import here
from ._returned import MARKERS, returned_state
from ._states import _FINAL, _NOT_OK, State, StateType, fast_state
from ._walk import fill

if TYPE_CHECKING:
    from datetime import datetime

    from ._runner import TaskRunner
    from ._tasks import Task

__all__ = ["PreparedRun", "RunSpec", "TaskRunInfo", "close_thread_event_loop"]

_COMPLETED = StateType.COMPLETED
_current_runner = _context.current_runner_var.get
_RUNNING = StateType.RUNNING
_run_numbers = itertools.count(1)


class TaskRunInfo:
    """Identity and timing of one task run (`Future.task_run`).

    Attributes:
        number: A number unique to the run within the process that submitted it.
        task_name: The name of the task.
        tags: The task's tags, with those of the `tags(...)` blocks open at submit time.
        created: When the run was submitted (seconds since the epoch).
        start: When its first attempt started, or `None`.
        end: When it reached a final state, or `None`.
    """

    __slots__ = ("number", "task_name", "tags", "created", "start", "end", "_id", "_name")

    def __init__(self, task_name: str, tags: frozenset[str] = frozenset(), name: str | None = None) -> None:
        self.task_name: str = task_name
        self.number: int = next(_run_numbers)
        self.tags: frozenset[str] = tags
        self.created: float = time.time()
        self.start: float | None = None
        self.end: float | None = None
        self._id: int | None = None  # the id as a 128-bit number
        self._name = name

    @property
    def name(self) -> str:
        """The run's name: the one its task's `task_run_name` gave it, else the task's
        name and a number unique in this process."""
        return self._name or f"{self.task_name}-{self.number}"

    @property
    def id(self) -> Any:
        """A `uuid.UUID` that identifies the run (made on first use).

        Its high 64 bits are random, drawn once per process; its low 64 bits are the
        run's number. Unique across processes, and far cheaper than `uuid4()` per run
        (where the system's random source is slow, each `uuid4()` costs a system call).
        """
        import uuid

        if self._id is None:
            self._id = _id_base() | self.number
        return uuid.UUID(int=self._id)

    @property
    def start_time(self) -> datetime | None:
        """When the run's first attempt started, as an aware `datetime` (UTC)."""
        return _datetime(self.start)

    @property
    def end_time(self) -> datetime | None:
        """When the run reached its final state, as an aware `datetime` (UTC)."""
        return _datetime(self.end)

    @property
    def duration(self) -> float | None:
        """Seconds from the first attempt's start to the final state, if both happened."""
        if self.start is None or self.end is None:
            return None
        return self.end - self.start

    def to_wire(self) -> tuple[Any, ...]:
        """The run info as a tuple of builtins: `(number, task_name, tags, created,
        start, end, id)`, with `id` as a 128-bit int, and the run's name as an eighth
        item when `task_run_name` gave it one. A copy sent elsewhere carries the same
        id. `TaskRunInfo` pickles as this tuple."""
        if self._id is None:
            self._id = _id_base() | self.number
        if self._name is not None:
            return (
                self.number,
                self.task_name,
                self.tags,
                self.created,
                self.start,
                self.end,
                self._id,
                self._name,
            )
        return (self.number, self.task_name, self.tags, self.created, self.start, self.end, self._id)

    @classmethod
    def from_wire(cls, wire: tuple[Any, ...]) -> TaskRunInfo:
        """The run info that `to_wire()` gave `wire`.

        Raises:
            ValueError: `wire` is not a run info's wire tuple.
        """
        info = object.__new__(cls)
        info._name = None
        try:
            if len(wire) == 8:
                (
                    info.number,
                    info.task_name,
                    info.tags,
                    info.created,
                    info.start,
                    info.end,
                    info._id,
                    info._name,
                ) = wire
            else:
                (info.number, info.task_name, info.tags, info.created, info.start, info.end, info._id) = wire
        except (TypeError, ValueError):
            raise ValueError(f"not the wire form of a TaskRunInfo: {wire!r}") from None
        return info

    def __reduce__(self) -> tuple[Any, ...]:
        return (_info_from_wire, self.to_wire())

    def __repr__(self) -> str:
        return f"TaskRunInfo(name={self.name!r})"


def _info_from_wire(*wire: Any) -> TaskRunInfo:
    return TaskRunInfo.from_wire(wire)


_ID_BASE: list[int] = []


def _id_base() -> int:
    if not _ID_BASE:
        import os

        _ID_BASE.append(int.from_bytes(os.urandom(8), "big") << 64)
    return _ID_BASE[0]


def _datetime(timestamp: float | None) -> datetime | None:
    if timestamp is None:
        return None
    from datetime import datetime, timezone  # imported on use: keeps `import taskrunners` light

    return datetime.fromtimestamp(timestamp, timezone.utc)


class RunSpec:
    """What a run needs in order to execute anywhere: the picklable part of a run.

    Made by `TaskRunner.prepare` (as `PreparedRun.spec`). A runner ships it to where it
    runs code (another thread, process or machine) and calls `execute` there with the
    final states of the upstream runs.

    Its wire form is `to_wire()`: a tuple of the task, the run's `TaskRunInfo` wire
    tuple, the parameters, the slotted parameter names, the required upstream
    indices and the upstream runs' wire tuples. A `RunSpec` pickles as that tuple, and
    `RunSpec.from_wire` rebuilds it. Ship specs in batches by pickling a list of them:
    a task that many specs share, and its tags, are written once per pickle.

    Attributes:
        task: The `Task` to run.
        info: The run's `TaskRunInfo`.
        parameters: The arguments by parameter name; where an argument held futures,
            they are replaced by placeholders that `execute` fills with upstream values.
        slotted: The names of the parameters that hold placeholders.
        required: The indices of the upstream runs that must complete for the run to
            start (the others were wrapped in `allow_failure`).
        upstream_runs: The `TaskRunInfo` of each upstream run, in the order `execute`
            expects their states.
    """

    __slots__ = ("task", "info", "parameters", "slotted", "required", "upstream_runs")

    def __init__(
        self,
        task: Task[Any, Any],
        info: TaskRunInfo,
        parameters: dict[str, Any],
        slotted: tuple[str, ...] = (),
        required: frozenset[int] = frozenset(),
        upstream_runs: tuple[TaskRunInfo, ...] = (),
    ) -> None:
        self.task: Task[..., Any] = task
        self.info: TaskRunInfo = info
        self.parameters: dict[str, Any] = parameters
        self.slotted: tuple[str, ...] = slotted
        self.required: frozenset[int] = required
        self.upstream_runs: tuple[TaskRunInfo, ...] = upstream_runs

    # -- wire form --------------------------------------------------------------------

    def to_wire(self) -> tuple[Any, ...]:
        """The spec as a tuple: `(task, info, parameters, slotted, required, upstream)`,
        where `info` and each of `upstream` are `TaskRunInfo.to_wire()` tuples."""
        return (
            self.task,
            self.info.to_wire(),
            self.parameters,
            self.slotted,
            self.required,
            tuple(run.to_wire() for run in self.upstream_runs) if self.upstream_runs else (),
        )

    @classmethod
    def from_wire(cls, wire: tuple[Any, ...]) -> RunSpec:
        """The spec that `to_wire()` gave `wire`.

        Raises:
            ValueError: `wire` is not a spec's wire tuple.
        """
        try:
            task, info, parameters, slotted, required, upstream = wire
        except (TypeError, ValueError):
            raise ValueError(f"not the wire form of a RunSpec: {wire!r}") from None
        return cls(
            task,
            TaskRunInfo.from_wire(info),
            parameters,
            tuple(slotted),
            frozenset(required),
            tuple(TaskRunInfo.from_wire(run) for run in upstream) if upstream else (),
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_spec_from_wire, self.to_wire())

    def with_task(self, task: Task[Any, Any]) -> RunSpec:
        """The same run of another task, e.g. `spec.task.with_options(retries=n)`."""
        return RunSpec(task, self.info, self.parameters, self.slotted, self.required, self.upstream_runs)

    # -- running ----------------------------------------------------------------------

    def execute(
        self,
        upstream_states: Sequence[State[Any]] = (),
        on_running: Callable[[State[Any]], object] | None = None,
        runner: TaskRunner | None = None,
        log_sink: Callable[[tuple[dict[str, Any], ...]], object] | None = None,
    ) -> State[Any]:
        """Run the task once its upstream runs are final, and return its final state.

        Never raises: whatever happens ends as a final state.

        Args:
            upstream_states: The final states of the upstream runs, in `upstream_runs`
                order.
            on_running: Called with a RUNNING state as each attempt starts.
            runner: The (started) runner that `.submit()` and `.map()` reach from inside
                the task. A runner that executes the spec in another process passes one
                that works there (say, one attached to the same cluster); in this
                process the runner of the submitting flow is already current.
            log_sink: For a runner with a channel to the flow's process: called with
                the run's log records (a tuple of dicts of builtins) as they are
                made, instead of keeping them in the state, so that a worker that
                dies mid-run has sent what its run logged. The flow's process hands
                them to `PreparedRun.deliver_logs`, in the order they came.

        Where no flow run is current (a worker process, a Dask or Ray worker), the
        run's log records are kept and returned in the final state's `logs` (or
        given to `log_sink`), and a failure's traceback travels as text with its
        exception: return the state to the flow's process whole (`State.fields()`
        or its pickle), where `PreparedRun.set_state` delivers both.
        """
        here = _current_runner()
        if here is None or here._flow is None:  # no flow run here: keep the records
            return self._execute_away(upstream_states, on_running, runner, log_sink)
        return self._execute(upstream_states, on_running, runner)

    def _execute_away(
        self,
        upstream_states: Sequence[State[Any]],
        on_running: Callable[[State[Any]], object] | None,
        runner: TaskRunner | None,
        log_sink: Callable[[tuple[dict[str, Any], ...]], object] | None = None,
    ) -> State[Any]:
        records: list[dict[str, Any]] = [] if log_sink is None else _logging.streaming(log_sink)
        token = _logging.capture_var.set(records)
        try:
            state = self._execute(upstream_states, on_running, runner)
        finally:
            _logging.capture_var.reset(token)
        if records and log_sink is None:
            state.logs = tuple(records)
        return state

    def _execute(
        self,
        upstream_states: Sequence[State[Any]],
        on_running: Callable[[State[Any]], object] | None,
        runner: TaskRunner | None,
    ) -> State[Any]:
        inputs = self.inputs(upstream_states)
        if isinstance(inputs, State):
            return inputs
        if runner is None:
            return run_attempts(self.task, self.info, inputs, on_running)
        token = _context.current_runner_var.set(runner)
        try:
            return run_attempts(self.task, self.info, inputs, on_running)
        finally:
            _context.current_runner_var.reset(token)

    def inputs(self, upstream_states: Sequence[State[Any]]) -> dict[str, Any] | State[Any]:
        """The arguments with upstream values in place, or the final (FAILED) state of a
        run that cannot start because a required upstream run did not complete."""
        if self.required:
            for index in self.required:
                state = upstream_states[index]
                if state.type is not _COMPLETED:
                    return self._upstream_failed(index, state)
        parameters = self.parameters
        if self.slotted:
            values = [state.result(raise_on_failure=False) for state in upstream_states]
            parameters = dict(parameters)
            for name in self.slotted:
                parameters[name] = fill(parameters[name], values)
        return parameters

    def _upstream_failed(self, index: int, state: State[Any]) -> State[Any]:
        upstream = self.upstream_runs[index]
        error = UpstreamFailedError(
            f"task run {self.info.name!r} did not run: its upstream run {upstream.name!r} "
            f"ended {state.type.value} ({state.exception!r}). Wrap the upstream future in "
            "allow_failure(...) to run anyway and receive the exception.",
            upstream=upstream,
        )
        error.__cause__ = state.exception
        return State(StateType.FAILED, exception=error, name="UpstreamFailed")

    def crashed(self, reason: str, cause: BaseException | None = None) -> State[Any]:
        """A CRASHED state for this run, for a runner that lost it (`reason` says how).

        The state's exception is a `TaskRunCrashed` that names the run, with `cause`
        as its `__cause__`.
        """
        error = TaskRunCrashed(f"task run {self.info.name!r} crashed: {reason}")
        error.__cause__ = cause
        return State(StateType.CRASHED, exception=error)

    # -- crossing a process boundary ----------------------------------------------------

    def not_serializable(self, error: BaseException | None = None) -> State[Any] | None:
        """Why this run cannot be shipped, as its final state; `None` if it pickles.

        For a runner that failed to pickle (or hand over) the run, with `error` (kept
        as the cause; the spec's own pickling error replaces it): if the spec does not pickle with `dumps`, the answer is a FAILED state (named
        "NotSerializable") whose `NotSerializableError` names the run, the argument
        that cannot be pickled (or the task), the offending type and what to do. The
        same on every runner. It pickles the arguments one by one: call it only after
        a failure.
        """
        from ._portable import argument_error
        from ._wire import dumps

        try:
            dumps(self)
        except Exception as exc:  # noqa: BLE001 - any pickling failure is the answer sought
            error = exc
        else:
            return None  # the problem lies elsewhere (another run of a batch, the engine)
        problem = argument_error(self.info.name, self.parameters, self.task, error)
        problem.__cause__ = error
        return State(StateType.FAILED, exception=problem, name="NotSerializable")

    def dumps_state(self, state: State[Any]) -> bytes:
        """This run's final `state`, pickled (`dumps`) to send it back to the flow's process.

        One pickle when all is well. A return value that cannot be pickled gives the
        pickle of a FAILED state (named "NotSerializable") instead, whose
        `NotSerializableError` names the run, "return value", the offending type and
        what to do; an exception always pickles (see `State.to_wire`). `loads` gives
        back a `State`.

        Raises:
            TaskRunnersError: Pickling the value needs cloudpickle, which is not installed.
        """
        from ._wire import dumps

        try:
            return dumps(state)
        except NotSerializableError as exc:
            return dumps(self.result_not_serializable(state, exc))

    def result_not_serializable(self, state: State[Any], error: BaseException) -> State[Any]:
        """The FAILED state for this run whose final `state` holds a value that could not
        be pickled (`error`), to send back instead: it names "return value"."""
        from ._portable import return_error

        value = state.fields().data if state.type is _COMPLETED else None
        problem = return_error(self.info.name, value, error)
        problem.__cause__ = error
        return State(
            StateType.FAILED,
            exception=problem,
            name="NotSerializable",
            attempt=state.attempt,
            started=state.started,
        )

    def __repr__(self) -> str:
        return f"RunSpec({self.info.name!r})"


def _spec_from_wire(*wire: Any) -> RunSpec:
    return RunSpec.from_wire(wire)


class PreparedRun:
    """One run handed to a runner, in the flow's process: its spec, future and upstreams.

    Made by `TaskRunner.prepare`; it never leaves the process (ship `spec` instead).
    Its future is always there. The methods that move the future are safe to call
    from any thread and never fail on a run that is final already (an interrupt may
    have crashed it meanwhile): they return whether they changed it.

    Attributes:
        spec: The picklable `RunSpec` to ship and execute.
        future: The run's `Future`.
        upstream: The distinct upstream futures (from the arguments, then `wait_for`),
            in the order `spec.execute` expects their states.
        losses: How many times the run was lost with its worker (see `count_loss`).
    """

    __slots__ = ("spec", "future", "upstream", "losses")

    def __init__(self, spec: RunSpec, future: Future[Any], upstream: tuple[Future[Any], ...] = ()) -> None:
        self.spec: RunSpec = spec
        self.future: Future[Any] = future
        self.upstream: tuple[Future[Any], ...] = upstream
        self.losses: int = 0

    @property
    def task(self) -> Task[Any, Any]:
        """The task of the run (`spec.task`)."""
        return self.spec.task

    @property
    def info(self) -> TaskRunInfo:
        """The run's `TaskRunInfo` (`spec.info`, the same object as `future.task_run`)."""
        return self.spec.info

    def __reduce__(self) -> Any:
        raise TypeError(
            f"a PreparedRun ({self.info.name!r}) stays in the flow's process: ship its "
            "`spec` (a RunSpec) to workers and keep the PreparedRun to finish its future"
        )

    # -- upstream runs ----------------------------------------------------------------

    def when_ready(self, fn: Callable[[PreparedRun], object]) -> None:
        """Call `fn(self)` once every upstream future is final (at once if there are none),
        unless the run itself is final by then (an interrupt crashed it).

        `fn` runs in the thread that finishes the last upstream run: keep it short
        (hand the run to a queue or an executor).
        """
        upstream = self.upstream
        if not upstream:
            fn(self)
            return
        remaining = [len(upstream)]

        def one_done(_: Future[Any]) -> None:
            with _lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last and not self.future.done():  # not one an interrupt crashed meanwhile
                fn(self)

        for future in upstream:
            future.add_done_callback(one_done)

    def upstream_states(self) -> list[State[Any]]:
        """The states of the upstream futures (all final once `when_ready` fired),
        read with `Future.peek`."""
        return [f.peek() for f in self.upstream]

    def native_upstreams(self, runner: TaskRunner) -> tuple[Any, ...] | None:
        """The upstream runs as the engine can take them now, or `None` to wait.

        For runners whose engine passes results between its own tasks (Dask, Ray).
        Each upstream run of `runner` becomes its `future.native` handle (or its final
        state, if it ended other than COMPLETED: that state says all). If an upstream
        run belongs to another runner, or has no native handle yet, the answer is
        `None`: wait with `when_ready`, then use `final_upstreams`.
        """
        args: list[Any] = []
        for future in self.upstream:
            if future.owner is not runner:
                return None
            state = future._state
            if state is not None and state.type in _NOT_OK:
                args.append(state)
                continue
            native = future.native
            if native is None:
                return None
            args.append(native)
        return tuple(args)

    def final_upstreams(
        self, runner: TaskRunner, usable: Callable[[Any], bool] | None = None
    ) -> tuple[Any, ...]:
        """The upstream runs once all are final: the native handle of each COMPLETED run
        of `runner` (if `usable(native)` says the engine still has its value), else
        the run's final state."""
        args: list[Any] = []
        for future in self.upstream:
            state = future.peek()
            native = future.native
            if (
                future.owner is runner
                and native is not None
                and state.type is _COMPLETED
                and (usable is None or usable(native))
            ):
                args.append(native)
            else:
                args.append(state)
        return tuple(args)

    # -- moving the future ------------------------------------------------------------

    def set_state(self, state: State[Any]) -> bool:
        """Move the future to `state` unless the run is final already; returns whether it moved.

        A final state's `logs` (records made on a worker elsewhere) are handed to this
        process's loggers first, and a failure's traceback text becomes its
        exception's `__cause__` (a `RemoteTraceback`); the engine logs the run's end.
        Then, before the final state reaches the future, the task's hooks for it
        (`on_completion`, `on_failure`, `on_crashed`) run here, in the flow's process.
        """
        kind = state.type
        hooks = self.spec.task._final_hooks
        if hooks and kind in _FINAL and self.future.done():
            return False
        if kind is _RUNNING:
            if _logging.per_run:
                self._note(state)
        elif kind is not _COMPLETED or state.logs or _logging.per_run:
            self._note(state)
        if hooks and kind in _FINAL:
            fire = hooks.get(kind)
            if fire:
                run_hooks(fire, self.spec.task, self.spec.info, state)
        try:
            self.future.set_state(state)
        except RuntimeError:
            if not self.future.done():  # pragma: no cover - set_state raises only when final
                raise
            return False
        return True

    def _note(self, state: State[Any]) -> None:
        """Deliver the state's records and log its lines (see `set_state`)."""
        if state.type is _RUNNING:
            _logging.task_run_running(self, state)
            return
        previous = self.future._state
        if state.logs:
            _logging.deliver(state.logs, _flow_run_of(self.future.owner))
            state.logs = ()
        exc = state.exception
        if exc is not None:
            _tracebacks.restore(exc)
        if previous is None or previous.type is _RUNNING:
            _logging.task_run_final(self, state, previous)

    def deliver_logs(self, records: tuple[dict[str, Any], ...]) -> None:
        """Hand log records that the run's worker streamed (`RunSpec.execute`'s
        `log_sink`) to this process's loggers, named after the flow run."""
        _logging.deliver(records, _flow_run_of(self.future.owner))

    def crash(self, reason: str, cause: BaseException | None = None) -> bool:
        """End the run CRASHED (`spec.crashed(reason, cause)`) unless it is final already."""
        if self.future.done():
            return False
        return self.set_state(self.spec.crashed(reason, cause))

    def count_loss(self) -> bool:
        """Count one loss of the run with its worker, as an attempt; return whether the
        task's retries allow running it again.

        The one rule for lost workers, the same on every runner: a run lost while it
        executed uses up one of its task's retries, and crashes once none is left.
        """
        self.losses += 1
        return self.losses <= self.spec.task.retries

    def run_here(self) -> None:
        """Execute in this thread and move the future to each state reached.

        For runners that run tasks in this process, once `when_ready` has fired. A run
        that is final already (an interrupt crashed it) does not start.
        """
        if self.future._state is not None and self.future.done():
            return
        try:
            state = self.spec.execute(self.upstream_states() if self.upstream else (), self.set_state)
        except BaseException as exc:  # noqa: BLE001 - a fault outside the task's code: never leave it open
            state = self.spec.crashed(f"the engine failed: {type(exc).__name__}: {exc}", exc)
        self.set_state(state)

    def __repr__(self) -> str:
        return f"<PreparedRun {self.info.name!r}>"


def _flow_run_of(owner: TaskRunner | None) -> Any:
    return None if owner is None else _logging.flow_run_of(owner)


def run_attempts(
    task: Task[Any, Any],
    info: TaskRunInfo,
    parameters: dict[str, Any],
    on_running: Callable[[State[Any]], object] | None = None,
) -> State[Any]:
    """Call the task with `parameters`, retrying as it asks; return the final state."""
    token = _context.current_task_run_var.set(info)
    prints = None
    if task.log_prints is not None:
        prints = _logging.log_prints_var.set(task.log_prints)
        if task.log_prints:
            _logging.enable_print_capture()
    try:
        started = time.time()
        where = here()
        attempt = 0
        running_hooks = task.on_running_hooks
        while True:
            attempt += 1
            if on_running is not None:
                on_running(fast_state(_RUNNING, None, attempt, started, where))
            if running_hooks:
                run_hooks(running_hooks, task, info, fast_state(_RUNNING, None, attempt, started, where))
            try:
                value = task._invoke(parameters, info)
            except Exception as exc:  # noqa: BLE001 - any failure of the task's code is its result
                outcome = _after_failure(task, info, exc, attempt, started)
                if isinstance(outcome, State):
                    # The traceback keeps this frame alive: drop the reference to the
                    # future's method so that state -> exception -> frame -> future is
                    # not a cycle that only the garbage collector can free.
                    on_running = None
                    outcome.where = where
                    return outcome
                _logging.retrying(info, exc, attempt, task.retries, outcome)
                with _context.blocking():
                    time.sleep(outcome)
                continue
            except BaseException as exc:  # noqa: BLE001 - an interrupt inside the task crashes the run
                final = _interrupted(info, exc, attempt, started)
                final.where = where
                return final
            if isinstance(value, MARKERS):
                returned = returned_state(value, attempt, started)
                if returned is not None:
                    returned.where = where
                    return returned
            return fast_state(_COMPLETED, value, attempt, started, where)
    finally:
        if prints is not None:
            _logging.log_prints_var.reset(prints)
        _context.current_task_run_var.reset(token)


async def run_attempts_async(
    task: Task[Any, Any], info: TaskRunInfo, parameters: dict[str, Any]
) -> State[Any]:
    """`run_attempts` for an async task called directly inside a running event loop."""
    import asyncio

    token = _context.current_task_run_var.set(info)
    prints = None
    if task.log_prints is not None:
        prints = _logging.log_prints_var.set(task.log_prints)
        if task.log_prints:
            _logging.enable_print_capture()
    try:
        started = time.time()
        where = here()
        attempt = 0
        while True:
            attempt += 1
            if task.on_running_hooks:
                run_hooks(task.on_running_hooks, task, info, fast_state(_RUNNING, None, attempt, started))
            try:
                value = await task._invoke_async(parameters, info)
            except Exception as exc:  # noqa: BLE001 - any failure of the task's code is its result
                outcome = _after_failure(task, info, exc, attempt, started)
                if isinstance(outcome, State):
                    outcome.where = where
                    return outcome
                _logging.retrying(info, exc, attempt, task.retries, outcome)
                await asyncio.sleep(outcome)
                continue
            except BaseException as exc:  # noqa: BLE001 - an interrupt inside the task crashes the run
                final = _interrupted(info, exc, attempt, started)
                final.where = where
                return final
            if isinstance(value, MARKERS):
                returned = returned_state(value, attempt, started)
                if returned is not None:
                    returned.where = where
                    return returned
            return State(_COMPLETED, data=value, attempt=attempt, started=started, where=where)
    finally:
        if prints is not None:
            _logging.log_prints_var.reset(prints)
        _context.current_task_run_var.reset(token)


def _after_failure(
    task: Task[Any, Any], info: TaskRunInfo, exc: Exception, attempt: int, started: float
) -> float | State[Any]:
    """Seconds to wait before the next attempt, or the final FAILED state.

    A task's `retry_condition_fn(task, task_run, state)` sees the FAILED state of the
    attempt and says whether to retry (one that raises means no).
    """
    name = "TimedOut" if isinstance(exc, TaskTimeoutError) else None
    failed: State[Any] = State(StateType.FAILED, exception=exc, name=name, attempt=attempt, started=started)
    if attempt <= task.retries:
        condition = task.retry_condition_fn
        if condition is None or _retry_allowed(condition, task, info, failed):
            return task._retry_delay(attempt)
    _tracebacks.trimmed(exc)
    if _logging.capture_var.get() is not None:  # away from the flow's process
        _tracebacks.attach_text(exc)
    return failed


def _retry_allowed(
    condition: Callable[..., Any], task: Task[Any, Any], info: TaskRunInfo, state: State[Any]
) -> bool:
    try:
        return bool(condition(task, info, state))
    except Exception:
        import logging

        logging.getLogger("taskrunners").exception(
            "retry_condition_fn of task run %r raised; the run is not retried", info.name
        )
        return False


def _interrupted(info: TaskRunInfo, exc: BaseException, attempt: int, started: float) -> State[Any]:
    import asyncio

    if isinstance(exc, asyncio.CancelledError):
        error: BaseException = TaskRunCancelled(f"task run {info.name!r} was cancelled")
        kind = StateType.CANCELLED
    else:
        error = TaskRunCrashed(f"task run {info.name!r} was interrupted by {type(exc).__name__}")
        kind = StateType.CRASHED
    error.__cause__ = exc
    return State(kind, exception=error, attempt=attempt, started=started)


# -- calling the function -------------------------------------------------------------

_thread = threading.local()


def keep_thread_event_loop() -> None:
    """Run this thread's async tasks on one event loop kept for the thread's lifetime.

    For a runner's long-lived worker threads: it saves creating a loop per async run.
    The worker must call `close_thread_event_loop()` before it exits.
    """
    _thread.keep_loop = True


def close_thread_event_loop() -> None:
    """Close the event loop kept by `keep_thread_event_loop`, if any."""
    loop = getattr(_thread, "loop", None)
    _thread.loop = None
    _thread.keep_loop = False
    if loop is not None and not loop.is_closed():
        loop.close()


def run_coroutine(coro: Any, timeout: float | None, label: str) -> Any:
    """Run `coro` to completion in this thread (which has no running loop)."""
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:  # a loop already runs in this thread: run the coroutine beside it, in a thread
        return call_in_thread(lambda: run_coroutine(coro, timeout, label), None, label)
    main = coro if timeout is None else with_timeout(coro, timeout, label)
    if not getattr(_thread, "keep_loop", False):
        return asyncio.run(main)
    loop = getattr(_thread, "loop", None)
    if loop is None:
        loop = _thread.loop = asyncio.new_event_loop()
    return loop.run_until_complete(main)


async def with_timeout(
    coro: Any, timeout: float, label: str, error: type[Exception] = TaskTimeoutError, what: str = "task run"
) -> Any:
    """Await `coro`, cancelling it after `timeout` seconds (a task run's, or with
    `error` and `what`, a flow run's).

    Raises:
        TaskTimeoutError: It ran longer than `timeout` (or `error`).
    """
    import asyncio

    task = asyncio.ensure_future(coro)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        task.cancel()

    handle = asyncio.get_running_loop().call_later(timeout, expire)
    try:
        return await task
    except asyncio.CancelledError:
        if expired:
            raise _timeout_error(label, timeout, error, what) from None
        raise
    finally:
        handle.cancel()


def _timeout_error(
    label: str, timeout: float, error: type[Exception] = TaskTimeoutError, what: str = "task run"
) -> Exception:
    return error(f"{what} {label!r} exceeded its timeout of {timeout} s")


def call_in_thread(
    fn: Callable[[], Any],
    timeout: float | None,
    label: str,
    error: type[Exception] = TaskTimeoutError,
    what: str = "task run",
) -> Any:
    """Call `fn()` in a new thread and wait for it at most `timeout` seconds.

    The new thread stands in for the calling one: a pool worker keeps its slot (the
    task still counts against the pool's bound), and the new thread inherits the
    worker's blocking hook, so a wait inside the task lends the slot as usual. On
    timeout, the thread is asked to stop by raising `TaskTimeoutError` inside it at its
    next Python instruction; a thread inside a blocking call (`time.sleep`, I/O, C code)
    only stops when that call returns, and its result is then discarded.

    A flow run's timeout uses it too, with `error=FlowTimeoutError, what="flow run"`.

    Raises:
        TaskTimeoutError: `fn` ran longer than `timeout` (or `error`).
    """
    import contextvars

    outcome: list[Any] = []
    finished = threading.Event()
    context = contextvars.copy_context()
    hook = _context.blocking_hook()

    def target() -> None:
        _context.set_blocking_hook(hook)
        try:
            outcome.append((True, context.run(fn)))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome.append((False, exc))
        finally:
            finished.set()

    thread = threading.Thread(target=target, name=f"taskrunners-{label}", daemon=True)
    thread.start()
    done = finished.wait(timeout)
    if not done:
        _raise_in_thread(thread, error)
        raise _timeout_error(label, timeout, error, what)  # type: ignore[arg-type]
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    import ctypes

    ident = thread.ident
    if ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
