"""`ExecutorTaskRunner`: task runs on any `concurrent.futures.Executor`."""

from __future__ import annotations

import contextvars
import pickle
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from concurrent.futures import Future as ExecutorFuture
from types import TracebackType
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
from taskrunners import Future, State, Task, TaskCall, TaskRunner

__all__ = ["ExecutorTaskRunner"]

#: An executor to share, or a callable that makes a fresh one per flow run.
ExecutorOrFactory = Executor | Callable[[], Executor]


class ExecutorTaskRunner(TaskRunner):
    """Runs task runs on a `concurrent.futures.Executor`: threads, processes, loky, MPI...

    Args:
        executor: Where the runs go, in one of two forms:

            - a **factory**: a callable that returns a new executor, such as the class
              `ThreadPoolExecutor` or `functools.partial(ProcessPoolExecutor, 4)`. Each
              flow run calls it when it starts and shuts that executor down when it
              ends: the runner owns it.
            - an **instance**: an executor that you made. Every flow run using the
              runner (and every `duplicate()`) shares it, and the runner never shuts
              it down: you do.

            An `Executor` (or any object with a `submit` method that is not a class)
            is an instance; any other callable is a factory. The default is the
            factory `ThreadPoolExecutor`.

    With a `ThreadPoolExecutor`, runs execute in this process: they see the context
    variables of the code that submitted them, and tasks can submit tasks. With any
    other executor, a run travels to the worker as cloudpickle bytes (so tasks defined
    in `__main__`, a notebook or a function work), upstream values and results go
    through the executor's own serializer, and a task cannot submit tasks. A task that
    waits for runs it submitted holds its worker meanwhile: size a pool for that.

    Raises:
        TypeError: `executor` is neither an executor nor a callable.
    """

    def __init__(self, executor: ExecutorOrFactory = ThreadPoolExecutor) -> None:
        if isinstance(executor, Executor) or (hasattr(executor, "submit") and not isinstance(executor, type)):
            self._shared: Executor | None = executor  # type: ignore[assignment]
            self._factory: Callable[[], Executor] | None = None
        elif callable(executor):
            self._shared, self._factory = None, executor
        else:
            raise TypeError(f"executor must be an Executor or a callable that makes one, got {executor!r}")
        self._executor: Executor | None = None
        self._in_process = False

    @property
    def executor(self) -> Executor | None:
        """The executor runs go to: the shared one, or the flow run's own while started."""
        return self._shared if self._shared is not None else self._executor

    def duplicate(self) -> ExecutorTaskRunner:
        return type(self)(self._shared if self._shared is not None else self._factory)  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return other._shared is self._shared and other._factory == self._factory  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self._shared is not None:
            return f"ExecutorTaskRunner(executor={self._shared!r})"
        return f"ExecutorTaskRunner(executor={self._factory!r})"

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> ExecutorTaskRunner:
        super().__enter__()
        executor = self._shared if self._shared is not None else self._factory()  # type: ignore[misc]
        self._executor = executor
        self._in_process = isinstance(executor, ThreadPoolExecutor)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        executor, owned = self._executor, self._factory is not None
        try:
            super().__exit__(exc_type, exc, tb)  # waits until every run is final
        except BaseException:
            if owned and executor is not None:
                executor.shutdown(wait=False)  # interrupted while waiting: do not wait again
            raise
        finally:
            self._executor = None
        if owned and executor is not None:
            executor.shutdown(wait=True)

    # -- runs -------------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        call = self.prepare(task, parameters, wait_for)
        # In this process, the run sees the context of the code that submitted it.
        context = contextvars.copy_context() if self._in_process else None
        call.when_ready(lambda ready: self._start(ready, context))
        return call.future  # type: ignore[return-value]

    def _start(self, call: TaskCall, context: contextvars.Context | None) -> None:
        """Hand a run whose upstream runs are final to the executor (never blocks)."""
        future: Future[Any] = call.future  # type: ignore[assignment]
        executor = self._executor
        try:
            if executor is None:
                raise RuntimeError("the runner shut down before the run could start")
            if context is not None:  # a thread of this process: report RUNNING, allow nesting
                work = executor.submit(
                    context.run, call.execute, call.upstream_states(), future.set_state, self
                )
            else:  # elsewhere: the call travels pickled (without its futures)
                work = executor.submit(_execute, cloudpickle.dumps(call), call.upstream_states())
        except Exception as exc:  # shut down, broken, or the run does not pickle
            reason = f"it could not be handed to the executor: {type(exc).__name__}: {exc}"
            future.set_state(call.crashed(reason, exc))
            return
        future.native = work
        work.add_done_callback(lambda done: _finish(call, done))


def _execute(call: bytes, upstream_states: list[State[Any]]) -> State[Any]:
    """On the executor's worker: run the call and return its final state."""
    return pickle.loads(call).execute(upstream_states)


def _finish(call: TaskCall, done: ExecutorFuture[State[Any]]) -> None:
    """Move the run's future to the final state that `execute` returned on the worker."""
    try:
        state = done.result()  # `execute` never raises: an error here is the executor's
    except BaseException as exc:  # a lost worker, a cancelled or unpicklable run: never leave it open
        state = call.crashed(f"the executor lost it: {type(exc).__name__}: {exc}", exc)
    call.future.set_state(state)  # type: ignore[union-attr]
