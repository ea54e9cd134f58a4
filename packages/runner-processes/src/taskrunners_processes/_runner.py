"""`ProcessPoolTaskRunner`: parallel Python in worker processes on this machine."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from taskrunners import Capability, Future, FutureList, Task, TaskRunner
from taskrunners.lowlevel import PreparedRun, RunSpec, dumps

from ._pool import WorkerPool

__all__ = ["ProcessPoolTaskRunner", "default_start_method"]

#: `map` queues the runs it prepares this many at a time.
_MAP_CHUNK = 1024


def default_start_method() -> str:
    """`"forkserver"` where the platform has it, else `"spawn"`.

    Plain `fork` is avoided: forking a process that runs threads (as a flow's process
    does) can copy a lock held by another thread and deadlock the child.
    """
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class ProcessPoolTaskRunner(TaskRunner):
    """Runs task runs in a pool of worker processes on this machine.

    Tasks and their arguments travel to the workers pickled (with cloudpickle where
    the standard pickler cannot), so lambdas, closures and tasks defined in `__main__`
    or a notebook work. An exception raised in a worker comes back as itself, with the
    worker's traceback text as its `__cause__`. A worker that dies (`os._exit`, a
    segfault, the OOM killer) ends the run it was executing CRASHED (or runs it again,
    using one of its task's retries) and is replaced: the other runs complete. Many
    queued runs go to the workers in batches, one pickle each.

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

    capabilities = frozenset(
        {Capability.PARALLEL, Capability.SURVIVES_WORKER_LOSS, Capability.OUT_OF_PROCESS}
    )

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
        if not isinstance(other, ProcessPoolTaskRunner) or type(other) is not type(self):
            return NotImplemented
        return self._config() == other._config()

    def __repr__(self) -> str:
        return f"ProcessPoolTaskRunner(max_workers={self.max_workers!r}, mp_context={self._start_method()!r})"

    def _start_method(self) -> str:
        if self.mp_context is None:
            return default_start_method()
        if isinstance(self.mp_context, str):
            return self.mp_context
        return str(self.mp_context.get_start_method())

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Make the pool; its workers and dispatcher thread start with the first run.

        A worker that cannot start (no file descriptors or processes left), or a script
        without the `if __name__ == "__main__":` guard, makes that first `.submit()` or
        `.map()` raise and crashes the runs handed over.

        Raises:
            TypeError: `initializer` or `initargs` cannot be pickled to reach the
                workers (the runner stays unstarted).
        """
        context = self.mp_context
        if context is None or isinstance(context, str):
            context = multiprocessing.get_context(self._start_method())
        try:
            setup = dumps((self.initializer, self.initargs, _preload()))
        except Exception as exc:
            raise TypeError(
                "the initializer and initargs of ProcessPoolTaskRunner must be picklable to reach "
                f"the worker processes: {_reason(exc)}"
            ) from exc
        workers = self.max_workers or os.cpu_count() or 1
        self._pool = WorkerPool(workers, context, setup, self.abandon, _unpicklable)

    def shutdown(self, interrupted: bool) -> None:
        """Stop the workers once the runs in flight are done (at once if `interrupted`)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(wait=not interrupted)

    def take_back_unstarted(self) -> list[PreparedRun]:
        """The runs not yet sent to a worker (an interrupt crashes them); the workers
        start no more runs, and those of their batches end CRASHED too."""
        pool = self._pool
        return [] if pool is None else pool.drain(self.interruption or "the flow was interrupted")

    # -- runs -------------------------------------------------------------------------

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        run = self.prepare(task, parameters, wait_for)
        if run.upstream:
            run.when_ready(self._send)
        else:
            self._send(run)
        return run.future

    def map(
        self,
        task: Task[Any, Any],
        parameter_sets: Sequence[dict[str, Any]],
        wait_for: Iterable[Any] | None = None,
    ) -> FutureList[Any]:
        """Like `submit` per run, but queues the runs that are ready in one go, so that
        they reach the workers in large batches.

        Raises:
            RunnerLifecycleError: The runner is not started.
            DependencyError: A run would depend on the task run submitting it.
        """
        if wait_for is not None and not isinstance(wait_for, (list, tuple)):
            wait_for = list(wait_for)  # one iterable for every run
        prepare = self.prepare
        runs: list[PreparedRun] = []
        waiting = False
        for start in range(0, len(parameter_sets), _MAP_CHUNK):
            # Queue each chunk as it is prepared: the workers start on it meanwhile.
            chunk = [
                prepare(task, parameters, wait_for)
                for parameters in parameter_sets[start : start + _MAP_CHUNK]
            ]
            runs += chunk
            ready = [run for run in chunk if not run.upstream]
            if ready:
                self._send_all(ready, packed=True)
            waiting = waiting or len(ready) < len(chunk)
        if waiting:
            for run in runs:
                if run.upstream:
                    run.when_ready(self._send)
        return FutureList(run.future for run in runs)

    def _send(self, run: PreparedRun) -> None:
        self._send_all([run])

    def _send_all(self, runs: list[PreparedRun], packed: bool = False) -> None:
        pool = self._pool
        if pool is None:
            for run in runs:
                run.crash("the runner shut down before the run could start")
        elif packed:  # pickled here, into batches, while the workers are busy or starting
            pool.submit_packed(runs)
        else:
            pool.submit(runs)


def _preload() -> tuple[str, ...]:
    """Modules the workers import as they start: cloudpickle if this process uses it
    (tasks of `__main__`, a notebook or a closure travel with it)."""
    return ("cloudpickle",) if "cloudpickle" in sys.modules else ()


def _unpicklable(spec: RunSpec, error: BaseException) -> TypeError:
    """The error of a run that could not be sent although its spec pickles (its upstream
    runs' values, say); `RunSpec.not_serializable` covers the rest."""
    cause = error.__cause__ if error.__cause__ is not None and str(error.__cause__) in str(error) else error
    problem = TypeError(
        f"task run {spec.info.name!r} cannot be pickled to send it to a worker process "
        f"({type(cause).__name__}: {cause}): the values of its upstream runs must be picklable too."
    )
    problem.__cause__ = error
    return problem


def _reason(error: BaseException) -> str:
    """`error` as `Type: message`, looking through the core's wrapper to the pickler's error."""
    cause = error.__cause__
    if cause is not None and str(cause) in str(error):
        error = cause
    return f"{type(error).__name__}: {error}"
