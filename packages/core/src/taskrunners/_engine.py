"""The task-run engine: what runs one task run, wherever a runner runs code.

A runner never calls a task's function itself. It receives a `TaskCall` from
`TaskRunner.prepare` and, once the upstream runs are final, calls `TaskCall.execute`
with their states, in this process (`TaskCall.run` does it all for in-process runners)
or on a worker elsewhere (a `TaskCall` pickles without its future). The engine checks
the upstream states, puts upstream values in place of the futures in the arguments,
calls the function with retries and a timeout, and returns the final `State`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import _context
from ._errors import TaskRunCancelled, TaskRunCrashed, TaskTimeoutError, UpstreamFailedError
from ._futures import Future, _lock
from ._states import State, StateType, fast_state
from ._walk import fill

if TYPE_CHECKING:
    from datetime import datetime

    from ._runner import TaskRunner
    from ._tasks import Task

__all__ = ["TaskCall", "TaskRunInfo", "close_thread_event_loop"]

_COMPLETED = StateType.COMPLETED
_RUNNING = StateType.RUNNING
_run_numbers = itertools.count(1)


class TaskRunInfo:
    """Identity and timing of one task run (`Future.task_run`).

    Attributes:
        number: A number unique to the run within the process that submitted it.
        task_name: The name of the task.
        tags: The task's tags.
        created: When the run was submitted (seconds since the epoch).
        start: When its first attempt started, or `None`.
        end: When it reached a final state, or `None`.
    """

    __slots__ = ("number", "task_name", "tags", "created", "start", "end", "_id")

    def __init__(self, task_name: str, tags: frozenset[str] = frozenset()) -> None:
        self.task_name = task_name
        self.number = next(_run_numbers)
        self.tags = tags
        self.created = time.time()
        self.start: float | None = None
        self.end: float | None = None
        self._id: int | None = None  # the id as a 128-bit number

    @property
    def name(self) -> str:
        """The run's name: the task's name and a number unique in this process."""
        return f"{self.task_name}-{self.number}"

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

    def __getstate__(self) -> tuple[Any, ...]:
        # A copy sent elsewhere must carry the same id: make it now if nobody asked yet.
        if self._id is None:
            self._id = _id_base() | self.number
        return (self.number, self.task_name, self.tags, self.created, self.start, self.end, self._id)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        (self.number, self.task_name, self.tags, self.created, self.start, self.end, self._id) = state

    def __repr__(self) -> str:
        return f"TaskRunInfo(name={self.name!r})"


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


class TaskCall:
    """One task run, ready to execute: what a runner ships to where it runs code.

    Made by `TaskRunner.prepare`. A `TaskCall` pickles (with cloudpickle where the
    task needs it) without its future and its upstream futures, so that a runner can
    send it to another process and call `execute` there.

    Attributes:
        task: The `Task` to run.
        info: The run's `TaskRunInfo`.
        parameters: The arguments by parameter name; where an argument held futures,
            they are replaced by `Slot`s that `execute` fills with upstream values.
        upstream: The distinct upstream futures (from the arguments, then `wait_for`),
            in the order `execute` expects their states. Local only.
        future: The run's future. Local only.
    """

    __slots__ = ("task", "info", "parameters", "slotted", "required", "upstream", "upstream_runs", "future")

    def __init__(
        self,
        task: Task[Any, Any],
        info: TaskRunInfo,
        parameters: dict[str, Any],
        slotted: tuple[str, ...] = (),
        required: frozenset[int] = frozenset(),
        upstream: tuple[Future[Any], ...] = (),
        future: Future[Any] | None = None,
    ) -> None:
        self.task = task
        self.info = info
        self.parameters = parameters
        self.slotted = slotted
        self.required = required
        self.upstream = upstream
        self.upstream_runs = tuple(f.task_run for f in upstream) if upstream else ()
        self.future = future

    def __reduce__(self) -> tuple[Any, ...]:
        return (_remote_call, (self.task, self.info, self.parameters, self.slotted, self.required, self.upstream_runs))

    # -- running ----------------------------------------------------------------------

    def when_ready(self, fn: Callable[[TaskCall], object]) -> None:
        """Call `fn(self)` once every upstream future is final (at once if there are none).

        `fn` runs in the thread that finishes the last upstream run: keep it short
        (hand the call to a queue or an executor).
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
            if last:
                fn(self)

        for future in upstream:
            future.add_done_callback(one_done)

    def upstream_states(self) -> list[State[Any]]:
        """The states of the upstream futures (all final once `when_ready` fired)."""
        return [f._state for f in self.upstream]  # type: ignore[misc]

    def run(self) -> None:
        """Execute here, in this thread, and move the future to each state reached.

        For runners that run tasks in this process, once `when_ready` has fired.
        """
        future = self.future
        assert future is not None, "TaskCall.run() needs the local call, not a copy"
        try:
            state = self.execute(self.upstream_states(), future.set_state)
        except BaseException as exc:  # a fault outside the task's code: never leave it open
            state = self.crashed(f"the engine failed: {type(exc).__name__}: {exc}", exc)
        future.set_state(state)

    def execute(
        self,
        upstream_states: Sequence[State[Any]] = (),
        on_running: Callable[[State[Any]], object] | None = None,
        runner: TaskRunner | None = None,
    ) -> State[Any]:
        """Run the task once its upstream runs are final, and return its final state.

        Never raises: whatever happens ends as a final state.

        Args:
            upstream_states: The final states of the upstream runs, in `upstream` order.
            on_running: Called with a RUNNING state as each attempt starts.
            runner: The (started) runner that `.submit()` and `.map()` reach from inside
                the task. A runner that executes the call in another process passes one
                that works there (say, one attached to the same cluster); in this
                process the runner of the submitting flow is already current.
        """
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
        """The arguments with upstream values in place, or the final state of a run
        that cannot start because a required upstream did not complete."""
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
        """A CRASHED state for this run, for a runner that lost it (`reason` says how)."""
        error = TaskRunCrashed(f"task run {self.info.name!r} crashed: {reason}")
        error.__cause__ = cause
        return State(StateType.CRASHED, exception=error)


def _remote_call(
    task: Task[Any, Any],
    info: TaskRunInfo,
    parameters: dict[str, Any],
    slotted: tuple[str, ...],
    required: frozenset[int],
    upstream_runs: tuple[TaskRunInfo, ...],
) -> TaskCall:
    call = TaskCall(task, info, parameters, slotted, required)
    call.upstream_runs = upstream_runs
    return call


def run_attempts(
    task: Task[Any, Any],
    info: TaskRunInfo,
    parameters: dict[str, Any],
    on_running: Callable[[State[Any]], object] | None = None,
) -> State[Any]:
    """Call the task with `parameters`, retrying as it asks; return the final state."""
    token = _context.current_task_run_var.set(info)
    try:
        started = time.time()
        attempt = 0
        while True:
            attempt += 1
            if on_running is not None:
                on_running(fast_state(_RUNNING, None, attempt, started))
            try:
                value = task._invoke(parameters, info)
            except Exception as exc:
                outcome = _after_failure(task, exc, attempt, started)
                if isinstance(outcome, State):
                    # The traceback keeps this frame alive: drop the reference to the
                    # future's method so that state -> exception -> frame -> future is
                    # not a cycle that only the garbage collector can free.
                    on_running = None
                    return outcome
                with _context.blocking():
                    time.sleep(outcome)
                continue
            except BaseException as exc:
                return _interrupted(info, exc, attempt, started)
            return fast_state(_COMPLETED, value, attempt, started)
    finally:
        _context.current_task_run_var.reset(token)


async def run_attempts_async(task: Task[Any, Any], info: TaskRunInfo, parameters: dict[str, Any]) -> State[Any]:
    """`run_attempts` for an async task called directly inside a running event loop."""
    import asyncio

    token = _context.current_task_run_var.set(info)
    try:
        started = time.time()
        attempt = 0
        while True:
            attempt += 1
            try:
                value = await task._invoke_async(parameters, info)
            except Exception as exc:
                outcome = _after_failure(task, exc, attempt, started)
                if isinstance(outcome, State):
                    return outcome
                await asyncio.sleep(outcome)
                continue
            except BaseException as exc:
                return _interrupted(info, exc, attempt, started)
            return State(_COMPLETED, data=value, attempt=attempt, started=started)
    finally:
        _context.current_task_run_var.reset(token)


def _after_failure(task: Task[Any, Any], exc: Exception, attempt: int, started: float) -> float | State[Any]:
    """Seconds to wait before the next attempt, or the final FAILED state."""
    if attempt <= task.retries:
        return task._retry_delay(attempt)
    name = "TimedOut" if isinstance(exc, TaskTimeoutError) else None
    return State(StateType.FAILED, exception=exc, name=name, attempt=attempt, started=started)


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


async def with_timeout(coro: Any, timeout: float, label: str) -> Any:
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
            raise _timeout_error(label, timeout) from None
        raise
    finally:
        handle.cancel()


def _timeout_error(label: str, timeout: float) -> TaskTimeoutError:
    return TaskTimeoutError(f"task run {label!r} exceeded its timeout of {timeout} s")


def call_in_thread(fn: Callable[[], Any], timeout: float | None, label: str) -> Any:
    """Call `fn()` in a new thread and wait for it at most `timeout` seconds.

    The new thread stands in for the calling one: a pool worker keeps its slot (the
    task still counts against the pool's bound), and the new thread inherits the
    worker's blocking hook, so a wait inside the task lends the slot as usual. On
    timeout, the thread is asked to stop by raising `TaskTimeoutError` inside it at its
    next Python instruction; a thread inside a blocking call (`time.sleep`, I/O, C code)
    only stops when that call returns, and its result is then discarded.

    Raises:
        TaskTimeoutError: `fn` ran longer than `timeout`.
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
        except BaseException as exc:  # handed to the waiting thread
            outcome.append((False, exc))
        finally:
            finished.set()

    thread = threading.Thread(target=target, name=f"taskrunners-{label}", daemon=True)
    thread.start()
    done = finished.wait(timeout)
    if not done:
        _raise_in_thread(thread, TaskTimeoutError)
        raise _timeout_error(label, timeout)  # type: ignore[arg-type]
    ok, value = outcome[0]
    if ok:
        return value
    raise value


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    import ctypes

    ident = thread.ident
    if ident is not None and thread.is_alive():
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))

