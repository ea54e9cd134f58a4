"""`ExecutorTaskRunner`: task runs on any `concurrent.futures.Executor`."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures import Future as ExecutorFuture
from typing import Any, Protocol

from taskrunners import Future, State, Task, TaskRunner
from taskrunners.lowlevel import PreparedRun, RunSpec, dumps, loads

__all__ = ["ExecutorTaskRunner"]


class Submits(Protocol):
    """What the runner needs of an executor: `submit` (an `Executor` has it)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> ExecutorFuture[Any]: ...


#: An executor to share, or a callable that makes a fresh one per flow run.
ExecutorOrFactory = Submits | Callable[[], Executor]


class ExecutorTaskRunner(TaskRunner):
    """Runs task runs on a `concurrent.futures.Executor`: threads, processes, loky, MPI...

    Args:
        executor: A **factory**, a callable that returns a new executor (such as the
            class `ThreadPoolExecutor`, the default, or `partial(ProcessPoolExecutor, 4)`):
            each flow run makes one and shuts it down. Or an **instance**, anything with
            a `submit` method that is not a class: shared by every flow run and every
            `duplicate()`, and never shut down by the runner.

    With a `ThreadPoolExecutor`, runs execute in this process, in the context of the
    code that submitted them, and tasks can submit tasks. With any other executor, a
    run's spec travels pickled by `taskrunners.lowlevel.dumps` (tasks from `__main__`
    work), states go through the executor's serializer, and tasks cannot submit tasks.
    A task that waits for runs it submitted holds its worker meanwhile.

    Raises:
        TypeError: `executor` is neither an executor nor a callable.
    """

    def __init__(self, executor: ExecutorOrFactory = ThreadPoolExecutor) -> None:
        self._shared: Submits | None = None
        self._factory: Callable[[], Executor] | None = None
        if isinstance(executor, type) or not hasattr(executor, "submit"):
            if not callable(executor):
                raise TypeError(
                    f"executor must be an Executor or a callable that makes one, got {executor!r}"
                )
            self._factory = executor
        else:
            self._shared = executor
        self._executor: Submits | None = None  # the one in use while started
        self._in_process = False

    @property
    def executor(self) -> Submits | None:
        """The executor runs go to: the shared one, or the flow run's own while started."""
        return self._shared if self._shared is not None else self._executor

    def duplicate(self) -> ExecutorTaskRunner:
        return type(self)(self._shared or self._factory or ThreadPoolExecutor)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutorTaskRunner) or type(other) is not type(self):
            return NotImplemented
        return other._shared is self._shared and other._factory == self._factory

    __hash__ = None  # type: ignore[assignment]  # mypy wants a method; None makes it unhashable

    def __repr__(self) -> str:
        return f"ExecutorTaskRunner(executor={self._shared or self._factory!r})"

    # -- lifecycle: the base's __enter__ and __exit__ call these -----------------------

    def start(self) -> None:
        executor = self._shared if self._factory is None else self._factory()
        self._executor = executor
        self._in_process = isinstance(executor, ThreadPoolExecutor)

    def shutdown(self, interrupted: bool) -> None:
        executor, self._executor = self._executor, None
        if self._factory is not None and isinstance(executor, Executor):  # ours to close
            executor.shutdown(wait=not interrupted)  # interrupted: do not wait again

    def take_back_unstarted(self) -> list[PreparedRun]:
        # On an interrupt: cancel what the executor has not started; the base crashes it.
        return [
            run
            for run in self.open_runs()
            if isinstance(run.future.native, ExecutorFuture) and run.future.native.cancel()
        ]

    # -- runs -------------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        run = self.prepare(task, parameters, wait_for)
        # In this process, the run sees the context of the code that submitted it.
        context = contextvars.copy_context() if self._in_process else None
        run.when_ready(lambda ready: self._start(ready, context))
        return run.future

    def _start(self, run: PreparedRun, context: contextvars.Context | None) -> None:
        """Hand a run whose upstream runs are final to the executor (never blocks)."""
        executor = self._executor
        try:
            if executor is None:
                raise RuntimeError("the runner shut down before the run could start")
            if context is not None:  # a thread of this process: report RUNNING, allow nesting
                work = executor.submit(
                    context.run, run.spec.execute, run.upstream_states(), run.set_state, self
                )
            else:  # elsewhere: only the spec travels, pickled
                work = executor.submit(_execute, dumps(run.spec), run.upstream_states())
        except Exception as exc:  # noqa: BLE001 - shut down, broken, or the run does not pickle
            failed = run.spec.not_serializable(exc)  # FAILED, naming the argument; else None
            if failed is not None:
                run.set_state(failed)
            else:
                run.crash(f"it could not be handed to the executor: {type(exc).__name__}: {exc}", exc)
            return
        run.future.native = work
        work.add_done_callback(lambda done: _finish(run, done, self.interruption))


def _execute(spec: bytes, upstream_states: list[State[Any]]) -> bytes:
    """On the executor's worker: rebuild the spec, run it, return the final state pickled
    (a return value that cannot be pickled gives a FAILED state that names it)."""
    run: RunSpec = loads(spec)
    return run.dumps_state(run.execute(upstream_states))  # never raises


def _finish(run: PreparedRun, done: ExecutorFuture[Any], interruption: str | None) -> None:
    """Move the run's future to the final state that `execute` returned on the worker."""
    if done.cancelled():  # by `take_back_unstarted` after an interrupt, or by someone else
        reason = "the executor cancelled it before it started"
        run.crash(f"{interruption} before the run started" if interruption else reason)
        return
    error = done.exception()  # `execute` never raises: an error here is the executor's
    if error is not None:  # a lost worker, an unpicklable result: never leave the run open
        run.crash(f"the executor lost it: {type(error).__name__}: {error}", error)
    else:
        result = done.result()  # a State from a thread, its pickle from another process
        run.set_state(loads(result) if isinstance(result, bytes) else result)
