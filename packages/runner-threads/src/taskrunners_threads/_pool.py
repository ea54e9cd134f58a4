"""A bounded thread pool whose workers lend their slot while they wait on a future.

At most `max_workers` threads *run* task code at once. A worker whose task blocks on
a future (`Future.result()`, `wait`, ...) stops counting against that bound for the
duration of the wait, and the pool starts or wakes another thread for the queued
work. So a task that submits tasks and waits for them never deadlocks the pool, even
at `max_workers=1`, while the number of threads stays at `max_workers` plus the number
of tasks blocked at that moment. Queued work holds no thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from taskrunners.lowlevel import worker_thread

Work = Callable[[], Any]


class _Idle:
    """An idle worker asleep on its own lock until handed work (or `None` to exit)."""

    __slots__ = ("wake", "work")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.work: Work | None = None


class LendingPool:
    """Runs work items on at most `max_workers` unblocked threads."""

    def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
        self.max_workers = max_workers
        self._prefix = thread_name_prefix
        self._lock = threading.Lock()
        self._queue: deque[Work] = deque()
        self._idle: list[_Idle] = []
        self._threads: set[threading.Thread] = set()
        self._running = 0  # threads running work and not blocked
        self._closed = False
        self._spawned = 0

    # -- handing out work -------------------------------------------------------------

    def submit(self, work: Work) -> bool:
        """Queue `work`; returns False (and drops it) if the pool is closed."""
        with self._lock:
            if self._closed:
                return False
            if self._idle:
                idle = self._idle.pop()
                idle.work = work
                self._running += 1
                idle.wake.release()
            elif self._running < self.max_workers:
                self._running += 1
                self._spawn(work)
            else:
                self._queue.append(work)
        return True

    def _spawn(self, work: Work) -> None:  # with self._lock held
        self._spawned += 1
        thread = threading.Thread(
            target=self._worker, args=(work,), name=f"{self._prefix}_{self._spawned}", daemon=True
        )
        self._threads.add(thread)
        thread.start()

    def _worker(self, work: Work | None) -> None:
        try:
            with worker_thread(self._blocked):
                while work is not None:
                    work()
                    work = self._next()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _next(self) -> Work | None:
        """The next work item for a worker that finished one, or None to exit."""
        with self._lock:
            if self._queue and self._running <= self.max_workers:
                return self._queue.popleft()
            self._running -= 1
            if self._closed or len(self._threads) > self.max_workers:
                return None
            idle = _Idle()
            self._idle.append(idle)
        idle.wake.acquire()
        return idle.work

    @contextlib.contextmanager
    def _blocked(self) -> Iterator[None]:
        """While the calling worker waits on a future, its slot goes to queued work."""
        with self._lock:
            self._running -= 1
            if self._queue and self._running < self.max_workers:
                self._running += 1
                self._spawn(self._queue.popleft())
        try:
            yield
        finally:
            with self._lock:
                self._running += 1

    # -- shutting down ----------------------------------------------------------------

    def cancel_queued(self) -> list[Work]:
        """Close the pool and return the work that had not started."""
        with self._lock:
            self._closed = True
            dropped = list(self._queue)
            self._queue.clear()
        return dropped

    def shutdown(self, join: bool = True) -> None:
        """Close the pool, let its threads finish their work, and join them if `join`."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            threads = list(self._threads)
        for sleeper in idle:
            sleeper.work = None
            sleeper.wake.release()
        if not join:
            return
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:
                thread.join()

    @property
    def thread_count(self) -> int:
        """How many worker threads exist now."""
        return len(self._threads)
