"""The parent side of the worker processes: queue, batching, results, lost workers.

Unlike `concurrent.futures.ProcessPoolExecutor`, whose pool breaks for good when one
worker dies, this pool knows which run each worker is executing (the worker writes the
run's number to shared memory before it starts it). When a worker dies, that run alone
ends CRASHED (or runs again if its task has retries left); the runs queued behind it
go back to the queue, and a new worker takes its place.

One dispatcher thread does all the talking to the workers: it sends batches of runs to
workers (one pickle per batch, and a second batch before the first is done when many
runs wait, so that a worker never idles on a round trip), reads their replies, and
moves each run's future to its final state. If that thread fails, or workers keep
exiting before they are ready (typically a script without the
`if __name__ == "__main__":` guard), the pool breaks: `on_broken` is called with the
reason (the runner abandons its open runs), and every later run ends CRASHED with it,
rather than waiting for workers that will never answer.
"""

from __future__ import annotations

import contextlib
import pickle
import selectors
import sys
import threading
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from typing import Any

from taskrunners import RemoteTraceback, State, StateType, Task
from taskrunners.lowlevel import PreparedRun, RunSpec, dumps, loads

from ._worker import INIT_FAILED, LOGS, READY, Reply, Wire, worker_main

#: The most runs sent to a worker in one message.
MAX_BATCH = 512
#: A run in flight on this many workers that died without a culprit being known is
#: given up on (guards against a run that kills every worker before it even starts).
MAX_LOSSES = 3
#: After this many workers in a row exit before they are ready to run tasks, the pool
#: stops starting new ones and breaks: a worker that cannot start would otherwise be
#: replaced forever, burning CPU while the runs wait.
MAX_START_FAILURES = 3

#: Seconds a stopping worker gets after SIGTERM before SIGKILL, and the dispatcher to
#: stop the workers after an interrupt before the pool kills them itself.
STOP_SECONDS = 2.0

#: A worker whose last reply reported this many runs or more runs short tasks.
_FAST_REPLY = 8

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_COMPLETED = StateType.COMPLETED
_TASK_BLOBS_MAX = 1024
_STOP = b""


class _Packet:
    """Runs pickled as one batch ahead of time, in the thread that queued them (`map`
    does it while the workers start, so that the dispatcher only sends it)."""

    __slots__ = ("runs", "message")

    def __init__(self, runs: list[PreparedRun], message: bytes) -> None:
        self.runs = runs
        self.message = message


class _Worker:
    __slots__ = ("process", "conn", "progress", "batch", "ready", "dead", "fast")

    def __init__(self, process: Any, conn: Connection, progress: Any) -> None:
        self.process = process
        self.conn = conn
        self.progress = progress
        # The runs sent and not reported yet, by number, in the order sent.
        self.batch: dict[int, PreparedRun] = {}
        self.ready = False
        self.dead = False
        # Whether its last reply reported many runs: its runs are short, and it may
        # hold the next batch while it runs one (with long runs that would only keep
        # runs from idle workers).
        self.fast = False


class WorkerPool:
    """Runs `PreparedRun`s in up to `max_workers` processes made by `context`.

    Args:
        max_workers: How many worker processes at most.
        context: The `multiprocessing` context that makes them.
        setup: The pickle of `(initializer, initargs)` for each worker.
        on_broken: Called (in the dispatcher thread) with the reason and cause once
            the pool breaks; the pool has already crashed the runs it held.
        unpicklable: Makes the error of a run that cannot be pickled.
    """

    def __init__(
        self,
        max_workers: int,
        context: Any,
        setup: bytes,
        on_broken: Callable[[str, BaseException | None], object],
        unpicklable: Callable[[RunSpec, BaseException], BaseException],
    ) -> None:
        self.max_workers = max_workers
        self._context = context
        self._setup = setup
        self._on_broken = on_broken
        self._unpicklable = unpicklable
        self._lock = threading.Lock()
        self._queue: deque[PreparedRun | _Packet] = deque()
        self._queued = 0  # runs in the queue (a packet holds many)
        self._workers: list[_Worker] = []
        self._in_flight = 0  # runs sent to workers and not yet reported
        self._closed = False
        self._abort = False  # closed by an interrupt: stop the workers at once
        self._draining: str | None = None  # an interrupt: start nothing more (why, as a crash reason)
        self._stop: Any = None  # shared with the workers (made at boot): set, they start nothing more
        self._broken: str | None = None  # why the pool cannot run anything any more
        self._broken_cause: BaseException | None = None
        self._start_failures = 0  # workers in a row that exited before being ready
        # Rare cases, by run number: runs to send alone (their batch could not be
        # unpickled), losses of a run before it started, and the spec to send instead
        # of `run.spec` (a retry after a lost worker, with one retry fewer).
        self._solo: set[int] = set()
        self._start_losses: dict[int, int] = {}
        self._respec: dict[int, RunSpec] = {}
        # Tasks pickled for the workers, by id (the task is kept so that ids stay unique).
        self._task_blobs: dict[int, tuple[Task[Any, Any], bytes]] = {}
        self._wake_r, self._wake_w = context.Pipe(duplex=False)
        self._wake_pending = False
        self._selector = _selector()
        self._watch(self._wake_r, self._wake_r)
        self._thread: threading.Thread | None = None  # the dispatcher, from the first run on
        self._boot_lock = threading.Lock()

    def _boot(self) -> None:
        """Start the workers and the dispatcher, once, when the first runs arrive (a flow
        that submits nothing starts no process).

        The workers start here, in the submitting thread, rather than in the dispatcher
        thread, which would wait for the flow's thread to let go of the GIL at each step
        of starting a process; a `map` pickles its batches while they boot.

        Raises:
            RuntimeError: This process is a worker still importing the script that
                started the flow (the script lacks the `if __name__ == "__main__":` guard).
            OSError: A worker process cannot be started.
        """
        with self._boot_lock:
            if self._thread is not None or self._broken is not None or self._closed:
                return
            try:
                self._stop = self._context.RawValue("b", 1 if self._draining is not None else 0)
                for _ in range(self.max_workers):
                    self._spawn()
                thread = threading.Thread(
                    target=self._loop, name="taskrunners-processes-dispatcher", daemon=True
                )
                thread.start()
            except BaseException as exc:
                self._stop_workers(grace=0)
                with self._lock:
                    self._broken = f"the worker processes could not start: {type(exc).__name__}: {exc}"
                    self._broken_cause = exc
                if _bootstrapping(exc):
                    raise RuntimeError(_dispatcher_failure(exc)) from exc
                raise
            self._thread = thread

    # -- called from other threads ----------------------------------------------------

    def submit(self, runs: list[PreparedRun]) -> None:
        """Queue runs whose upstream runs are final; the dispatcher moves their futures
        to their final states (maybe before this returns)."""
        if self._thread is None:
            self._boot()
        self._put(runs, runs)

    def submit_packed(self, runs: list[PreparedRun]) -> None:
        """`submit`, pickling the runs into batches first, here: for many runs at once.

        Runs that cannot be pickled end FAILED here.
        """
        if self._thread is None:
            self._boot()
        size = max(1, min(MAX_BATCH, (len(runs) + self._queued) // (2 * self.max_workers)))
        packets: list[_Packet] = []
        for start in range(0, len(runs), size):
            message, sent, failed = self._pack(runs[start : start + size], {})
            self._fail_unpicklable(failed)
            if message is not None:
                packets.append(_Packet(sent, message))
        self._put(packets, [run for packet in packets for run in packet.runs])

    def _put(self, items: list[PreparedRun] | list[_Packet], runs: list[PreparedRun]) -> None:
        with self._lock:
            if self._broken is None and not self._closed:
                self._queue.extend(items)
                self._queued += len(runs)
                self._wake()
                return
            reason = self._broken if self._broken is not None else self._draining or "the runner shut down"
            cause = self._broken_cause
        for run in runs:
            run.crash(reason, cause)

    def drain(self, reason: str) -> list[PreparedRun]:
        """After an interrupt: take back the runs not yet sent to a worker, and have the
        workers start no more runs; those they hand back end CRASHED with `reason`."""
        with self._lock:
            self._closed = True
            self._draining = reason
            if self._stop is not None:
                self._stop.value = 1  # at once in every worker: no message to wait for
            runs = _flatten(self._queue)
            self._queue.clear()
            self._queued = 0
            if not self._wake_w.closed:
                self._wake()
        return runs

    def close(self, wait: bool = True) -> None:
        """Stop taking runs; once those in flight are done (at once unless `wait`), stop
        the workers and the thread.

        Not waiting, it gives the dispatcher `STOP_SECONDS` to stop the workers, then
        kills those left itself: no worker outlives the pool.
        """
        with self._lock:
            self._closed = True
            self._abort = not wait
            self._wake()
        with self._boot_lock:  # a boot in progress ends first; none starts after this
            thread = self._thread
        if thread is not None:
            thread.join(None if wait else STOP_SECONDS)
            if thread.is_alive():  # stuck (a done callback that blocks): kill the workers here
                for worker in list(self._workers):
                    with contextlib.suppress(Exception):
                        worker.process.kill()
                return  # the thread still uses the pipes; they close with the process
        self._release()

    def _release(self) -> None:
        self._wake_r.close()
        self._wake_w.close()
        if self._selector is not None:
            self._selector.close()
            self._selector = None

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
                    if self._abort or (self._closed and not self._queue and not self._in_flight):
                        break
                    sends, missing = self._plan()
                freed = False
                for worker, runs, message in sends:
                    freed = not self._send(worker, runs, message) or freed
                for _ in range(missing):
                    self._spawn()
                if freed:
                    continue  # runs that failed to pickle left room for others: plan again
                for ready in self._wait():
                    if ready is not self._wake_r:
                        self._service(ready)
        except BaseException as exc:  # noqa: BLE001 - the dispatcher ends its runs whatever stopped it
            # Nobody else would ever report the runs this thread was looking after: end
            # them (and refuse new ones) instead of letting the flow wait forever.
            failed = True
            self._fail_everything(_dispatcher_failure(exc), exc)
        finally:
            # After a failure or an interrupt the runs that the workers execute are
            # given up on: stop the workers now rather than wait for them.
            self._stop_workers(grace=0 if failed or self._abort else 10)

    def _wait(self) -> list[Any]:
        """The pipes and process sentinels that are ready, waiting until one is."""
        if self._selector is None:  # Windows: pipes are not selectable
            waitables: list[Any] = [self._wake_r]
            for worker in self._workers:
                waitables += [worker.conn, worker.process.sentinel]
            return wait(waitables)
        return [key.data for key, _ in self._selector.select()]

    def _plan(
        self,
    ) -> tuple[list[tuple[_Worker, list[PreparedRun], bytes | None]], int]:  # with self._lock held
        """Take batches off the queue for the workers that can take one; return them
        and how many workers to start.

        Batches are smaller as fewer runs wait (one run when few do). A worker takes a
        batch when it is idle or, if its runs are short (`fast`), when it holds fewer
        runs than a batch: so it never waits for its next batch. A packet goes whole
        unless it holds more than two batches (few runs are left), else it is split
        back into runs.
        """
        queue = self._queue
        queued = self._queued
        if not queued:
            return [], 0
        alive = [w for w in self._workers if not w.dead]
        starting = sum(1 for w in alive if not w.ready)
        size = max(1, min(MAX_BATCH, queued // (2 * self.max_workers)))
        sends: list[tuple[_Worker, list[PreparedRun], bytes | None]] = []
        idle = 0
        for worker in alive:
            batch = worker.batch
            if not worker.ready or (batch and not (worker.fast and len(batch) < size)):
                continue
            if not batch:
                idle += 1
            if not queue:
                continue
            head = queue.popleft()
            if isinstance(head, _Packet):
                if len(head.runs) <= 2 * size:
                    runs, message = head.runs, head.message
                else:  # few runs left: smaller batches spread them better
                    queue.extendleft(reversed(head.runs[1:]))
                    runs, message = self._take(head.runs[0], size), None
            else:
                runs, message = self._take(head, size), None
            for run in runs:
                batch[run.info.number] = run
            self._in_flight += len(runs)
            self._queued -= len(runs)
            sends.append((worker, runs, message))
        missing = max(0, min(queued - idle - starting, self.max_workers - len(alive)))
        return sends, missing

    def _take(self, first: PreparedRun, size: int) -> list[PreparedRun]:  # with self._lock held
        """`first` and the runs after it in the queue, up to `size` runs in all, up to the
        next packet; a run marked solo goes on its own."""
        queue, solo = self._queue, self._solo
        runs = [first]
        if solo and first.info.number in solo:
            return runs
        while queue and len(runs) < size:
            run = queue[0]
            if isinstance(run, _Packet) or (solo and run.info.number in solo):
                break
            queue.popleft()
            runs.append(run)
        return runs

    def _send(self, worker: _Worker, runs: list[PreparedRun], message: bytes | None) -> bool:
        """Send `runs` as one batch (pickled now unless `message` is); fail the runs that
        cannot be pickled. Returns whether every run was sent."""
        failed: list[tuple[PreparedRun, BaseException]] = []
        if message is None:
            message, _, failed = self._pack(runs, self._respec)
        if failed:
            self._forget(worker, [run for run, _ in failed])
            self._fail_unpicklable(failed)
        if message is not None:
            try:
                worker.conn.send_bytes(message)
            except OSError:
                pass  # the worker is gone: its sentinel tells, and _lost requeues the batch
        return not failed

    def _fail_unpicklable(self, failed: list[tuple[PreparedRun, BaseException]]) -> None:
        for run, error in failed:
            state = run.spec.not_serializable(error)  # names the argument, the same on every runner
            if state is None:
                state = State(
                    StateType.FAILED, exception=self._unpicklable(run.spec, error), name="NotSerializable"
                )
            run.set_state(state)

    def _pack(
        self, runs: list[PreparedRun], respec: dict[int, RunSpec]
    ) -> tuple[bytes | None, list[PreparedRun], list[tuple[PreparedRun, BaseException]]]:
        """The batch message of `runs` (`None` if none can be pickled), the runs in it,
        and the runs that cannot be pickled with their errors.

        `respec` holds the specs to send instead of some runs' own.
        """
        blobs: list[bytes] = []
        indices: dict[int, int] = {}
        wires: list[Wire] = []
        failed: list[tuple[PreparedRun, BaseException]] = []
        for run in runs:
            spec = respec.get(run.info.number, run.spec) if respec else run.spec
            task = spec.task
            index = indices.get(id(task))
            if index is None:
                try:
                    blob = self._task_blob(task)
                except Exception as exc:  # noqa: BLE001 - a task that does not pickle crashes its runs
                    failed.append((run, exc))
                    continue
                index = indices[id(task)] = len(blobs)
                blobs.append(blob)
            upstream = spec.upstream_runs
            wires.append(
                (
                    index,
                    spec.info.to_wire(),
                    spec.parameters,
                    spec.slotted,
                    spec.required,
                    tuple(info.to_wire() for info in upstream) if upstream else (),
                    run.upstream_states() if upstream else (),
                )
            )
        try:
            payload = dumps(wires)
        except Exception:  # noqa: BLE001 - find which run does not pickle, one by one
            payload = self._without_unpicklable(runs, wires, failed)
        if not wires:
            return None, [], failed
        if failed:
            unsent = {id(run) for run, _ in failed}
            runs = [run for run in runs if id(run) not in unsent]
        numbers = [wire[1][0] for wire in wires]
        return pickle.dumps((tuple(blobs), numbers, payload), _PROTOCOL), runs, failed

    def _without_unpicklable(
        self, runs: list[PreparedRun], wires: list[Wire], failed: list[tuple[PreparedRun, BaseException]]
    ) -> bytes:
        """Drop from `wires` (in place) the runs that cannot be pickled, adding them to
        `failed`, and return the pickle of the others."""
        by_number = {run.info.number: run for run in runs}
        kept: list[Wire] = []
        for wire in wires:
            try:
                dumps(wire)
            except Exception as exc:  # noqa: BLE001 - a run that does not pickle crashes alone
                failed.append((by_number[wire[1][0]], exc))
            else:
                kept.append(wire)
        wires[:] = kept
        return dumps(kept)

    def _task_blob(self, task: Task[Any, Any]) -> bytes:
        entry = self._task_blobs.get(id(task))
        if entry is None:
            if len(self._task_blobs) >= _TASK_BLOBS_MAX:
                self._task_blobs.clear()
            entry = self._task_blobs[id(task)] = (task, dumps(task))
        return entry[1]

    def _forget(self, worker: _Worker, runs: list[PreparedRun]) -> None:
        """Take back runs that were planned for `worker` but never sent."""
        for run in runs:
            del worker.batch[run.info.number]
        with self._lock:
            self._in_flight -= len(runs)

    def _spawn(self) -> None:
        parent_end, child_end = self._context.Pipe()
        try:
            progress = self._context.RawValue("q", -1)
            process = self._context.Process(
                target=worker_main,
                args=(child_end, progress, self._stop, self._setup),
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
                message = worker.conn.recv_bytes()
            except (EOFError, OSError):
                self._lost(worker)
                return
            self._handle(worker, message)
        else:
            self._lost(worker)

    def _handle(self, worker: _Worker, message: bytes) -> None:
        if message == READY:
            worker.ready = True
            self._start_failures = 0
            return
        if message.startswith(INIT_FAILED):
            trace = message[len(INIT_FAILED) :].decode("utf-8", "replace")
            self._fail_everything(f"the pool's initializer raised in a worker process:\n{trace}")
            return
        if message[:1] == LOGS:  # records of a run as it executes
            number, records = pickle.loads(message[1:])
            run = worker.batch.get(number)
            if run is not None:
                run.deliver_logs(records)
            return
        reply: Reply = pickle.loads(message)
        done, others, split = reply
        worker.fast = len(done) + len(others) >= _FAST_REPLY
        batch = worker.batch
        finished: list[tuple[PreparedRun, State[Any]]] = []
        from_fields = State.from_fields
        for number, value, attempt, started, timestamp, where in done:
            run = batch.pop(number, None)
            if run is not None:  # else given up on already (a broken pool)
                state = from_fields(
                    (_COMPLETED, "Completed", "", timestamp, attempt, started, value, None), where
                )
                finished.append((run, state))
        for number, blob, text in others:
            run = batch.pop(number, None)
            if run is not None:
                finished.append((run, _load_state(run, blob, text)))
        requeue = [run for run in (batch.pop(number, None) for number in split) if run is not None]
        if requeue and self._draining is not None:  # handed back after an interrupt
            with self._lock:
                self._in_flight -= len(requeue)
            for run in requeue:
                run.crash(f"{self._draining} before the run started")
            requeue = []
        with self._lock:
            self._in_flight -= len(finished) + len(requeue)
            if requeue:
                self._solo.update(run.info.number for run in requeue)
                self._queue.extendleft(reversed(requeue))
                self._queued += len(requeue)
        if self._solo or self._start_losses or self._respec:
            for run, _ in finished:
                self._forget_run(run.info.number)
        for run, state in finished:
            run.set_state(state)

    def _forget_run(self, number: int) -> None:
        self._solo.discard(number)
        self._start_losses.pop(number, None)
        self._respec.pop(number, None)

    def _lost(self, worker: _Worker) -> None:
        """A worker died: crash the run it was executing, requeue the rest of its batch.

        A worker that died before it was ready counts as a start-up failure instead; see
        `_start_failed`.
        """
        # What it sent before it died still counts: its last results, or that its
        # initializer raised (which must not pass for a start-up failure).
        try:
            while worker.conn.poll():
                self._handle(worker, worker.conn.recv_bytes())
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
        pid = worker.process.pid
        worker.process.close()
        crashed: list[tuple[PreparedRun, str]] = []
        requeue: list[PreparedRun] = []
        for number, run in worker.batch.items():
            if number == current:
                if not run.count_loss():
                    crashed.append((run, f"its worker process (pid {pid}) died with exit code {code}"))
                    continue
                # Lost while it ran: it used one of its task's retries.
                task = run.task
                self._respec[number] = run.spec.with_task(
                    task.with_options(retries=max(0, task.retries - run.losses))
                )
            elif current == -1:
                losses = self._start_losses[number] = self._start_losses.get(number, 0) + 1
                if losses >= MAX_LOSSES:
                    crashed.append((run, f"{MAX_LOSSES} worker processes died before it could start"))
                    continue
            requeue.append(run)  # done-but-unreported runs run again
        if self._draining is not None:  # after an interrupt nothing runs again
            crashed += [(run, f"{self._draining} before the run started") for run in requeue]
            requeue = []
        with self._lock:
            self._in_flight -= len(worker.batch)
            self._queue.extendleft(reversed(requeue))
            self._queued += len(requeue)
        worker.batch.clear()
        for run, reason in crashed:
            self._forget_run(run.info.number)
            run.crash(reason)
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
        """Break the pool: crash every run it holds with `reason`, refuse new ones, and
        tell `on_broken`."""
        with self._lock:
            if self._broken is None:
                self._broken = reason
                self._broken_cause = cause
            runs = _flatten(self._queue)
            self._queue.clear()
            self._queued = 0
            for worker in self._workers:
                runs.extend(worker.batch.values())
                self._in_flight -= len(worker.batch)
                worker.batch.clear()
        for run in runs:
            run.crash(reason, cause)
        self._on_broken(reason, cause)

    def _stop_workers(self, grace: float) -> None:
        """Ask the workers to exit; terminate those still running after `grace` seconds."""
        for worker in self._workers:
            try:
                worker.conn.send_bytes(_STOP)
            except OSError:
                pass
        for worker in self._workers:
            worker.process.join(grace)
            if worker.process.is_alive():  # a task that never returns, or a broken pool
                worker.process.terminate()
                worker.process.join(STOP_SECONDS)
            if worker.process.is_alive():  # a task that ignores SIGTERM
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
            worker.process.close()
        self._workers.clear()


def _flatten(queue: deque[PreparedRun | _Packet]) -> list[PreparedRun]:
    runs: list[PreparedRun] = []
    for item in queue:
        if isinstance(item, _Packet):
            runs += item.runs
        else:
            runs.append(item)
    return runs


def _dispatcher_failure(exc: BaseException) -> str:
    """Why the runs of a pool whose dispatcher thread raised `exc` crashed, and what to do."""
    if _bootstrapping(exc):
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


def _bootstrapping(exc: BaseException) -> bool:
    """Whether `exc` is multiprocessing refusing to start a process from a process that
    is still importing `__main__`."""
    return isinstance(exc, RuntimeError) and "bootstrapping phase" in str(exc)


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


def _load_state(run: PreparedRun, blob: bytes, text: str | None) -> State[Any]:
    try:
        state = State.from_fields(loads(blob))
    except Exception as exc:  # noqa: BLE001 - any unpickling failure crashes that run, naming it
        error = RuntimeError(
            f"the state of task run {run.info.name!r} came back from the worker but cannot be "
            f"unpickled here: {type(exc).__name__}: {exc}"
        )
        return State(StateType.FAILED, exception=error)
    exception = state.exception
    if text and exception is not None and exception.__cause__ is None:
        exception.__cause__ = RemoteTraceback(text)
    return state
