"""`ThreadPoolTaskRunner`: concurrency with a bounded pool of threads in this process."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterable
from typing import Any

from taskrunners import Capability, Future, Task, TaskRunner
from taskrunners.lowlevel import PreparedRun

from ._pool import LendingPool

__all__ = ["ThreadPoolTaskRunner", "default_max_workers"]


def default_max_workers() -> int:
    """The pool size used when `max_workers` is None: `min(32, CPUs + 4)`.

    The same default as `concurrent.futures.ThreadPoolExecutor`.
    """
    return min(32, (os.cpu_count() or 1) + 4)


class ThreadPoolTaskRunner(TaskRunner):
    """Runs task runs on a bounded pool of threads in this process.

    Threads give concurrency (I/O, waiting, code that releases the GIL), not parallel
    Python: for CPU-bound Python use the process, Dask or Ray runner.

    At most `max_workers` threads run tasks at once. A task that waits on a future
    lends its slot meanwhile, so tasks that submit tasks and wait for them never
    deadlock the pool, even at `max_workers=1`. Runs waiting on upstream runs, or
    queued, hold no thread.

    Args:
        max_workers: How many tasks may run at once; `None` means
            `default_max_workers()`, that is `min(32, CPUs + 4)`.

    Raises:
        ValueError: `max_workers` is not a positive whole number.
    """

    capabilities = frozenset({Capability.IN_PROCESS})

    def __init__(self, max_workers: int | None = None) -> None:
        if max_workers is not None and (
            not isinstance(max_workers, int) or isinstance(max_workers, bool) or max_workers < 1
        ):
            raise ValueError(f"max_workers must be a whole number >= 1 or None, got {max_workers!r}")
        self.max_workers = max_workers
        self._pool: LendingPool | None = None

    def duplicate(self) -> ThreadPoolTaskRunner:
        return type(self)(max_workers=self.max_workers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ThreadPoolTaskRunner) or type(other) is not type(self):
            return NotImplemented
        return other.max_workers == self.max_workers

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers!r})"

    def start(self) -> None:
        workers = self.max_workers or default_max_workers()
        self._pool = LendingPool(workers, thread_name_prefix=f"taskrunners-threads-{id(self):x}")

    def shutdown(self, interrupted: bool) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(join=not interrupted)  # interrupted: do not wait again

    def take_back_unstarted(self) -> list[PreparedRun]:
        if self._pool is None:
            return []
        return [work.run for work in self._pool.cancel_queued() if isinstance(work, _Work)]

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        run = self.prepare(task, parameters, wait_for)
        work = _Work(run, contextvars.copy_context())
        if run.upstream:
            run.when_ready(lambda _: self._dispatch(work))
        else:
            self._dispatch(work)
        return run.future

    def _dispatch(self, work: _Work) -> None:
        pool = self._pool
        if pool is None or not pool.submit(work):
            work.run.crash("the runner shut down before the run could start")


class _Work:
    """One run for the pool: the call, run inside the context captured at submit."""

    __slots__ = ("context", "run")

    def __init__(self, run: PreparedRun, context: contextvars.Context) -> None:
        self.run = run
        self.context = context

    def __call__(self) -> None:
        self.context.run(self.run.run_here)
