"""`ProcessPoolTaskRunner`: parallel Python in worker processes on this machine."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any

import cloudpickle

from taskrunners import Capability, Future, FutureList, State, StateType, Task, TaskCall, TaskRunner

from ._pool import WorkerPool
from ._worker import dumps

__all__ = ["ProcessPoolTaskRunner", "default_start_method"]


def default_start_method() -> str:
    """`"forkserver"` where the platform has it, else `"spawn"`.

    Plain `fork` is avoided: forking a process that runs threads (as a flow's process
    does) can copy a lock held by another thread and deadlock the child.
    """
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class ProcessPoolTaskRunner(TaskRunner):
    """Runs task runs in a pool of worker processes on this machine.

    Tasks and their arguments travel to the workers with cloudpickle, so lambdas,
    closures and tasks defined in `__main__` or a notebook work. An exception raised in
    a worker comes back as itself, with the worker's traceback text as its
    `__cause__`. A worker that dies (`os._exit`, a segfault, the OOM killer) ends the
    run it was executing CRASHED (or runs it again if the task has retries left) and is
    replaced: the other runs complete. Many queued runs go to the workers in batches.

    A task that submits tasks from inside a worker runs them in threads of that worker
    (its own `ThreadPoolTaskRunner`), so nested submission never waits for a free worker.

    Args:
        max_workers: How many worker processes; `None` means `os.cpu_count()`.
        mp_context: A `multiprocessing` context or start-method name; `None` means
            `default_start_method()` (`"forkserver"`, or `"spawn"` where there is none).
        initializer: Called once in each worker process when it starts.
        initargs: The arguments of `initializer`.

    Raises:
        ValueError: `max_workers` is not a positive whole number, or the start method
            is unknown.
    """

    capabilities = frozenset({Capability.PARALLEL, Capability.SURVIVES_WORKER_LOSS})

    def __init__(
        self,
        max_workers: int | None = None,
        mp_context: Any = None,
        initializer: Callable[..., object] | None = None,
        initargs: tuple[Any, ...] = (),
    ) -> None:
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be a whole number >= 1 or None, got {max_workers!r}")
        if isinstance(mp_context, str) and mp_context not in multiprocessing.get_all_start_methods():
            raise ValueError(
                f"unknown start method {mp_context!r}; this platform has "
                f"{', '.join(multiprocessing.get_all_start_methods())}"
            )
        self.max_workers = max_workers
        self.mp_context = mp_context
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self._pool: WorkerPool | None = None

    def duplicate(self) -> ProcessPoolTaskRunner:
        return type(self)(self.max_workers, self.mp_context, self.initializer, self.initargs)

    def _config(self) -> tuple[Any, ...]:
        return (self.max_workers, self._start_method(), self.initializer, self.initargs)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._config() == other._config()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ProcessPoolTaskRunner(max_workers={self.max_workers!r}, mp_context={self._start_method()!r})"

    def _start_method(self) -> str:
        if self.mp_context is None:
            return default_start_method()
        if isinstance(self.mp_context, str):
            return self.mp_context
        return str(self.mp_context.get_start_method())

    # -- lifecycle --------------------------------------------------------------------

    def __enter__(self) -> ProcessPoolTaskRunner:
        super().__enter__()
        context = self.mp_context
        if context is None or isinstance(context, str):
            context = multiprocessing.get_context(self._start_method())
        setup = cloudpickle.dumps((self.initializer, self.initargs))
        workers = self.max_workers or os.cpu_count() or 1
        self._pool = WorkerPool(workers, context, setup, self._finish)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pool = self._pool
        assert pool is not None
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            self._pool = None
            pool.close()

    def take_back_unstarted(self) -> list[TaskCall]:
        """The runs not yet sent to a worker (an interrupt crashes them)."""
        assert self._pool is not None
        return self._pool.cancel_queued()

    # -- runs -------------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        call = self.prepare(task, parameters, wait_for)
        if call.upstream:
            call.when_ready(self._send)
        else:
            self._send(call)
        return call.future  # type: ignore[return-value]

    def map(
        self,
        task: Task[Any, Any],
        parameter_sets: Sequence[dict[str, Any]],
        wait_for: Iterable[Any] | None = None,
    ) -> FutureList[Any]:
        """Like `submit` per run, but queues the runs that are ready in one go, so that
        they reach the workers in large batches."""
        calls = [self.prepare(task, parameters, wait_for) for parameters in parameter_sets]
        self._send_all([call for call in calls if not call.upstream])
        for call in calls:
            if call.upstream:
                call.when_ready(self._send)
        return FutureList(call.future for call in calls)  # type: ignore[misc]

    def _send(self, call: TaskCall) -> None:
        self._send_all([call])

    def _send_all(self, calls: list[TaskCall]) -> None:
        pool = self._pool
        if pool is None:
            for call in calls:
                self._finish(call, call.crashed("the runner shut down before the run could start"))
            return
        runs = []
        for call in calls:
            try:
                runs.append((call, dumps((call, call.upstream_states()))))
            except Exception as exc:
                self._finish(call, State(StateType.FAILED, exception=_unpicklable(call, exc)))
        if runs:
            pool.submit(runs)

    @staticmethod
    def _finish(call: TaskCall, state: State[Any]) -> None:
        call.future.set_state(state)  # type: ignore[union-attr]


def _unpicklable(call: TaskCall, error: Exception) -> TypeError:
    """Say which argument of `call` could not be sent to a worker, and what to do."""
    for name, value in call.parameters.items():
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            problem = TypeError(
                f"task {call.info.task_name!r}: argument {name!r} cannot be pickled to send it to "
                f"a worker process ({type(exc).__name__}: {exc}). Pass something picklable (plain "
                "data, or a path or address to open), or create the object inside the task."
            )
            break
    else:
        problem = TypeError(
            f"task {call.info.task_name!r} cannot be pickled to send it to a worker process "
            f"({type(error).__name__}: {error}). Define it at module level, or make what it "
            "closes over picklable."
        )
    problem.__cause__ = error
    return problem
