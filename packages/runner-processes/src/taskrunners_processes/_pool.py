"""The parent side of the worker processes: queue, batching, results, lost workers.

Unlike `concurrent.futures.ProcessPoolExecutor`, whose pool breaks for good when one
worker dies, this pool knows which run each worker is executing (the worker writes the
run's token to shared memory before it starts it). When a worker dies, that run alone
ends CRASHED (or runs again if its task has retries left); the runs queued behind it
in the same batch go back to the queue, and a new worker takes its place.

One dispatcher thread does all the talking to the workers: it sends batches to idle
workers, reads their replies, and hands each final state to `on_done`.
"""

from __future__ import annotations

import pickle
import selectors
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from taskrunners import State, StateType, TaskCall

from ._worker import worker_main

#: The most runs sent to a worker in one message.
MAX_BATCH = 512
#: A run in flight on this many workers that died without a culprit being known is
#: given up on (guards against a run that kills every worker before it even starts).
MAX_LOSSES = 3


class RemoteTraceback(Exception):
    """The traceback of an exception as the worker process printed it."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return f'\n"""\n{self.text}"""'


class _Item:
    __slots__ = ("token", "call", "payload", "crashes", "losses")

    def __init__(self, token: int, call: TaskCall, payload: bytes) -> None:
        self.token = token
        self.call = call
        self.payload = payload
        self.crashes = 0
        self.losses = 0


class _Worker:
    __slots__ = ("process", "conn", "progress", "batch", "ready", "dead")

    def __init__(self, process: Any, conn: Connection, progress: Any) -> None:
        self.process = process
        self.conn = conn
        self.progress = progress
        self.batch: dict[int, _Item] = {}
        self.ready = False
        self.dead = False


class WorkerPool:
    """Runs `TaskCall`s in up to `max_workers` processes made by `context`."""

    def __init__(
        self,
        max_workers: int,
        context: Any,
        setup: bytes,
        on_done: Callable[[TaskCall, State[Any]], None],
    ) -> None:
        self.max_workers = max_workers
        self._context = context
        self._setup = setup
        self._on_done = on_done
        self._lock = threading.Lock()
        self._queue: deque[_Item] = deque()
        self._workers: list[_Worker] = []
        self._next_token = 0
        self._in_flight = 0  # items sent to workers and not yet reported
        self._closed = False
        self._broken: str | None = None
        self._wake_r, self._wake_w = context.Pipe(duplex=False)
        self._wake_pending = False
        self._selector = _selector()
        self._watch(self._wake_r, self._wake_r)
        self._thread = threading.Thread(target=self._loop, name="taskrunners-processes-dispatcher", daemon=True)
        self._thread.start()

    # -- called from other threads ----------------------------------------------------

    def submit(self, runs: list[tuple[TaskCall, bytes]]) -> None:
        """Queue runs, each with its payload from `payload()`; their final states reach
        `on_done` (maybe before this returns)."""
        with self._lock:
            if self._broken is None and not self._closed:
                for call, payload in runs:
                    self._next_token += 1
                    self._queue.append(_Item(self._next_token, call, payload))
                self._wake()
                return
            reason = self._broken_reason() if self._broken is not None else "the runner shut down"
        for call, _ in runs:
            self._on_done(call, call.crashed(reason))

    def cancel_queued(self) -> list[TaskCall]:
        """Take back the runs not yet sent to a worker."""
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
        return [item.call for item in items]

    def close(self) -> None:
        """Stop taking runs; once those in flight are done, stop the workers and the thread."""
        with self._lock:
            self._closed = True
            self._wake()
        self._thread.join()
        self._wake_r.close()
        self._wake_w.close()

    def _wake(self) -> None:  # with self._lock held
        if not self._wake_pending:
            self._wake_pending = True
            self._wake_w.send_bytes(b"")

    # -- the dispatcher thread --------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    if self._wake_pending:
                        while self._wake_r.poll():
                            self._wake_r.recv_bytes()
                        self._wake_pending = False
                    if self._closed and not self._queue and not self._in_flight:
                        break
                    missing = self._dispatch()
                for _ in range(missing):
                    self._spawn()
                for ready in self._wait():
                    if ready is not self._wake_r:
                        self._service(ready)
        finally:
            if self._selector is not None:
                self._selector.close()
            self._stop_workers()

    def _wait(self) -> list[Any]:
        """The pipes and process sentinels that are ready, waiting until one is."""
        if self._selector is None:  # Windows: pipes are not selectable
            waitables: list[Any] = [self._wake_r]
            for worker in self._workers:
                waitables += [worker.conn, worker.process.sentinel]
            return wait(waitables)
        return [key.data for key, _ in self._selector.select()]

    def _dispatch(self) -> int:  # with self._lock held
        """Send batches to idle workers; return how many workers to start."""
        queued = len(self._queue)
        if not queued:
            return 0
        alive = [w for w in self._workers if not w.dead]
        idle = [w for w in alive if w.ready and not w.batch]
        starting = sum(1 for w in alive if not w.ready)
        missing = max(0, min(queued - len(idle) - starting, self.max_workers - len(alive)))
        size = max(1, min(MAX_BATCH, queued // (2 * self.max_workers)))
        for worker in idle:
            if not self._queue:
                break
            batch = [self._queue.popleft() for _ in range(min(size, len(self._queue)))]
            for item in batch:
                worker.batch[item.token] = item
            self._in_flight += len(batch)
            try:
                worker.conn.send_bytes(pickle.dumps([(item.token, item.payload) for item in batch]))
            except OSError:
                pass  # the worker is gone: its sentinel tells, and _lost requeues the batch
        return missing

    def _spawn(self) -> None:
        parent_end, child_end = self._context.Pipe()
        progress = self._context.RawValue("q", -1)
        process = self._context.Process(
            target=worker_main,
            args=(child_end, progress, self._setup),
            name="taskrunners-processes-worker",
            daemon=True,
        )
        process.start()
        child_end.close()
        self._workers.append(_Worker(process, parent_end, progress))
        self._watch(parent_end, parent_end)
        self._watch(process.sentinel, process.sentinel)

    def _watch(self, fileobj: Any, data: Any) -> None:
        if self._selector is not None:
            self._selector.register(fileobj, selectors.EVENT_READ, data)

    def _unwatch(self, fileobj: Any) -> None:
        if self._selector is not None:
            self._selector.unregister(fileobj)

    def _service(self, ready: Any) -> None:
        for worker in self._workers:
            if ready is worker.conn or ready == worker.process.sentinel:
                break
        else:
            return
        if worker.dead:
            return
        if ready is worker.conn:
            try:
                replies = pickle.loads(worker.conn.recv_bytes())
            except (EOFError, OSError):
                self._lost(worker)
                return
            self._handle(worker, replies)
        else:
            self._lost(worker)

    def _handle(self, worker: _Worker, replies: list[tuple[Any, bytes | None, str | None]]) -> None:
        for token, state_bytes, text in replies:
            if token == "ready":
                worker.ready = True
                continue
            if token == "init-failed":
                self._fail_everything(text or "")
                return
            item = worker.batch.pop(token)
            with self._lock:
                self._in_flight -= 1
            self._on_done(item.call, _load_state(item.call, state_bytes, text))  # type: ignore[arg-type]

    def _lost(self, worker: _Worker) -> None:
        """A worker died: crash the run it was executing, requeue the rest of its batch."""
        worker.dead = True
        self._unwatch(worker.conn)
        self._unwatch(worker.process.sentinel)
        worker.process.join()
        worker.conn.close()
        self._workers.remove(worker)
        current = worker.progress.value
        code = worker.process.exitcode
        crashed: list[tuple[TaskCall, State[Any]]] = []
        with self._lock:
            self._in_flight -= len(worker.batch)
            for token, item in reversed(list(worker.batch.items())):
                if token == current:
                    item.crashes += 1
                    if item.crashes > item.call.task.retries:
                        reason = f"its worker process (pid {worker.process.pid}) died with exit code {code}"
                        crashed.append((item.call, item.call.crashed(reason)))
                        continue
                elif current == -1:
                    item.losses += 1
                    if item.losses >= MAX_LOSSES:
                        reason = f"{MAX_LOSSES} worker processes died before it could start"
                        crashed.append((item.call, item.call.crashed(reason)))
                        continue
                self._queue.appendleft(item)  # done-but-unreported runs run again
            worker.batch.clear()
        for call, state in crashed:
            self._on_done(call, state)

    def _fail_everything(self, text: str) -> None:
        with self._lock:
            self._broken = text
            items = list(self._queue)
            self._queue.clear()
            for worker in self._workers:
                items.extend(worker.batch.values())
                self._in_flight -= len(worker.batch)
                worker.batch.clear()
        for item in items:
            self._on_done(item.call, item.call.crashed(self._broken_reason()))

    def _broken_reason(self) -> str:
        return f"the pool's initializer raised in a worker process:\n{self._broken}"

    def _stop_workers(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send_bytes(pickle.dumps([]))
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(10)
            if worker.process.is_alive():  # pragma: no cover - a task that never returns
                worker.process.terminate()
                worker.process.join()
            worker.conn.close()
            worker.process.close()
        self._workers.clear()


def _selector() -> selectors.BaseSelector | None:
    return None if sys.platform == "win32" else selectors.DefaultSelector()


def _load_state(call: TaskCall, state_bytes: bytes, text: str | None) -> State[Any]:
    try:
        state: State[Any] = pickle.loads(state_bytes)
    except Exception as exc:
        error = RuntimeError(
            f"the state of task run {call.info.name!r} came back from the worker but cannot be "
            f"unpickled here: {type(exc).__name__}: {exc}"
        )
        return State(StateType.FAILED, exception=error)
    exception = state.exception
    if text and exception is not None and exception.__cause__ is None:
        exception.__cause__ = RemoteTraceback(text)
    return state
