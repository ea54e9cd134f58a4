"""The parent side of the worker processes: queue, batching, results, lost workers.

Unlike `concurrent.futures.ProcessPoolExecutor`, whose pool breaks for good when one
worker dies, this pool knows which run each worker is executing (the worker writes the
run's token to shared memory before it starts it). When a worker dies, that run alone
ends CRASHED (or runs again if its task has retries left); the runs queued behind it
in the same batch go back to the queue, and a new worker takes its place.

One dispatcher thread does all the talking to the workers: it sends batches to idle
workers, reads their replies, and hands each final state to `on_done`. If that thread
fails, or workers keep exiting before they are ready (typically a script without the
`if __name__ == "__main__":` guard), the pool breaks: every pending and later run ends
CRASHED with the reason, rather than waiting for workers that will never answer.
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
#: After this many workers in a row exit before they are ready to run tasks, the pool
#: stops starting new ones and breaks: a worker that cannot start would otherwise be
#: replaced forever, burning CPU while the runs wait.
MAX_START_FAILURES = 3


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
        self._broken: str | None = None  # why the pool cannot run anything any more
        self._start_failures = 0  # workers in a row that exited before being ready
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
            reason = self._broken if self._broken is not None else "the runner shut down"
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
        failed = False
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
        except BaseException as exc:
            # Nobody else would ever report the runs this thread was looking after: end
            # them (and refuse new ones) instead of letting the flow wait forever.
            failed = True
            self._fail_everything(_dispatcher_failure(exc), exc)
        finally:
            if self._selector is not None:
                self._selector.close()
            # After a failure the runs the workers execute are already CRASHED: stop
            # the workers now rather than wait for them.
            self._stop_workers(grace=0 if failed else 10)

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
        try:
            progress = self._context.RawValue("q", -1)
            process = self._context.Process(
                target=worker_main,
                args=(child_end, progress, self._setup),
                name="taskrunners-processes-worker",
                daemon=True,
            )
            process.start()  # raises in a child still importing `__main__` (no main guard)
        except BaseException:
            parent_end.close()
            raise
        finally:
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
                self._start_failures = 0
                continue
            if token == "init-failed":
                self._fail_everything(f"the pool's initializer raised in a worker process:\n{text}")
                return
            item = worker.batch.pop(token)
            with self._lock:
                self._in_flight -= 1
            self._on_done(item.call, _load_state(item.call, state_bytes, text))  # type: ignore[arg-type]

    def _lost(self, worker: _Worker) -> None:
        """A worker died: crash the run it was executing, requeue the rest of its batch.

        A worker that died before it was ready counts as a start-up failure instead; see
        `_start_failed`.
        """
        # What it sent before it died still counts: its last results, or that its
        # initializer raised (which must not pass for a start-up failure).
        try:
            while worker.conn.poll():
                self._handle(worker, pickle.loads(worker.conn.recv_bytes()))
        except (EOFError, OSError):
            pass
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
        if not worker.ready:
            self._start_failed(code)

    def _start_failed(self, code: int | None) -> None:
        """A worker exited before it was ready; break the pool if too many in a row did.

        Workers that cannot start (the script that started the flow fails when a worker
        imports it, an initializer that exits the process, ...) would otherwise be
        replaced forever while the runs wait.
        """
        self._start_failures += 1
        if self._start_failures < MAX_START_FAILURES or self._broken is not None:
            return
        reason = (
            f"{MAX_START_FAILURES} worker processes in a row exited (the last with exit code {code}) "
            "before they were ready to run tasks, so the runner stopped starting them"
        )
        script = _main_imported_by_workers(self._context)
        if script is not None:
            reason += (
                f". Each worker process imports the script that started the flow ({script}) as it "
                "starts: if that script runs the flow at module level, put the code that runs the flow "
                'under `if __name__ == "__main__":`, as with multiprocessing'
            )
        self._fail_everything(reason + ". The workers' own error output says why they exited.")

    def _fail_everything(self, reason: str, cause: BaseException | None = None) -> None:
        """Break the pool: crash every pending run with `reason`, and refuse new ones."""
        with self._lock:
            if self._broken is None:
                self._broken = reason
            items = list(self._queue)
            self._queue.clear()
            for worker in self._workers:
                items.extend(worker.batch.values())
                self._in_flight -= len(worker.batch)
                worker.batch.clear()
        for item in items:
            self._on_done(item.call, item.call.crashed(reason, cause))

    def _stop_workers(self, grace: float) -> None:
        """Ask the workers to exit; terminate those still running after `grace` seconds."""
        for worker in self._workers:
            try:
                worker.conn.send_bytes(pickle.dumps([]))
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(grace)
            if worker.process.is_alive():  # a task that never returns, or a broken pool
                worker.process.terminate()
                worker.process.join()
            worker.conn.close()
            worker.process.close()
        self._workers.clear()


def _dispatcher_failure(exc: BaseException) -> str:
    """Why the runs of a pool whose dispatcher thread raised `exc` crashed, and what to do."""
    if isinstance(exc, RuntimeError) and "bootstrapping phase" in str(exc):
        # multiprocessing refuses to start processes from a process that is still
        # importing `__main__`: this is a worker running the flow's script at import.
        return (
            "this process cannot start worker processes because it is itself a child process "
            "still starting up: it imports the script that started the flow (as `__mp_main__`), "
            "and that script runs the flow at module level. Put the code that runs the flow under "
            '`if __name__ == "__main__":`, as with multiprocessing'
        )
    return (
        f"the runner's dispatcher thread failed ({type(exc).__name__}: {exc}), so it cannot start or "
        "talk to worker processes any more and no run of this runner can proceed. Fix what the "
        "error (attached as the cause) names, for instance a limit on processes or open files, "
        "and run the flow again"
    )


def _main_imported_by_workers(context: Any) -> str | None:
    """The file of `__main__` if workers made by `context` import it as they start.

    Only `fork` copies the parent instead; `spawn` and `forkserver` re-import the main
    script (or `-m` module) in each worker, running whatever it does at module level.
    """
    if context.get_start_method() == "fork":
        return None
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return path if isinstance(path, str) else None


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
