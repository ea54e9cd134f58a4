"""`ThreadPoolTaskRunner`: concurrency with a bounded pool of threads in this process."""

from __future__ import annotations

import contextvars
import os
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from taskrunners import Capability, Future, Task, TaskCall, TaskRunner

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
        if type(other) is not type(self):
            return NotImplemented
        return other.max_workers == self.max_workers  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ThreadPoolTaskRunner(max_workers={self.max_workers!r})"

    def __enter__(self) -> ThreadPoolTaskRunner:
        super().__enter__()
        workers = self.max_workers or default_max_workers()
        self._pool = LendingPool(workers, thread_name_prefix=f"taskrunners-threads-{id(self):x}")
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
        except BaseException:
            pool.shutdown(join=False)  # interrupted while waiting: do not wait again
            raise
        finally:
            self._pool = None
        pool.shutdown()

    def take_back_unstarted(self) -> list[TaskCall]:
        assert self._pool is not None
        return [work.call for work in self._pool.cancel_queued()]  # type: ignore[attr-defined]

    def submit(
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
    ) -> Future[Any]:
        call = self.prepare(task, parameters, wait_for)
        work = _Work(call, contextvars.copy_context())
        if call.upstream:
            call.when_ready(lambda _: self._dispatch(work))
        else:
            self._dispatch(work)
        return call.future  # type: ignore[return-value]

    def _dispatch(self, work: _Work) -> None:
        pool = self._pool
        if pool is None or not pool.submit(work):
            call = work.call
            call.future.set_state(call.crashed("the runner shut down before the run could start"))  # type: ignore[union-attr]


class _Work:
    """One run for the pool: the call, run inside the context captured at submit."""

    __slots__ = ("call", "context")

    def __init__(self, call: TaskCall, context: contextvars.Context) -> None:
        self.call = call
        self.context = context

    def __call__(self) -> None:
        self.context.run(self.call.run)
