"""What runs in a worker process: receive batches of runs, execute them, send states back.

The protocol over the worker's pipe (`pack_batch` and `unpack_results` are the parent's
half):

- parent to worker: a batch, the standard pickle of `(tasks, numbers, wires)`:
  `tasks` is a tuple of tasks each pickled once (`dumps`), `numbers` the run numbers
  of the batch, and `wires` one `dumps` of the list of runs, each
  `(task_index, info, parameters, slotted, required, upstream_runs, upstream_states)`
  (a `RunSpec` wire form with its task replaced by an index into `tasks`). The tasks
  travel apart so that a task pickled by value costs one pickle per batch and the runs
  stay on the fast standard pickler. An empty message asks the worker to exit.
- worker to parent: the standard pickle of `(done, others, split)` for the runs
  finished since the last reply: `done` holds `(number, value, attempt, started,
  timestamp, where)` for each run that COMPLETED with a value of a plain builtin type,
  `others` holds `(number, state, traceback_text)` for the rest (a run with log
  records among them), `state` being the
  `dumps` of the state's fields and its `where` (so that a state that cannot be unpickled in the parent
  fails its run alone), and `split` the numbers of a batch whose runs could not be
  unpickled together (the parent sends them again one by one). A reply goes when the
  batch is done, or sooner once `FLUSH_SECONDS` have passed.
- before its first batch the worker sends `READY`, or `INIT_FAILED` followed by the
  traceback text if the initializer raised.
- while a run executes, each log record it makes is sent at once: `LOGS` followed by
  the standard pickle of `(number, records)`, so that a worker that dies mid-run has
  sent what its run logged (the parent hands them to `PreparedRun.deliver_logs`).

`progress` (shared memory) holds the number of the run being executed (-1 between
runs), so that the parent knows which run a dead worker was executing. `stop` (shared
memory, one for the pool) is set by the parent after an interrupt: a worker then
starts no more runs and reports the rest of its batch in `split`. The worker writes
`progress` before it reads `stop`, so a run whose start the parent did not stop in time
was already under way when the interrupt came.
"""

from __future__ import annotations

import importlib
import pickle
import queue
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from taskrunners import State, StateType, Task, TaskRunInfo
from taskrunners.lowlevel import RunSpec, dumps, loads, using_runner

if TYPE_CHECKING:
    from ._nested import NestedRunner

#: A worker reports finished runs at least this often while a batch is in progress.
FLUSH_SECONDS = 0.02
#: The first bytes of the worker's control messages (a reply starts with pickle's
#: protocol marker, b"\x80").
READY = b"R"
INIT_FAILED = b"I"
LOGS = b"L"

_PROTOCOL = pickle.HIGHEST_PROTOCOL
_COMPLETED = StateType.COMPLETED
#: Values sent back inside the reply itself; others are pickled one by one.
_PLAIN = frozenset({int, float, str, bytes, bool, type(None)})
#: Tasks loaded in this worker, by their pickle (a batch sends each task it uses).
_TASKS: dict[bytes, Task[Any, Any]] = {}
_TASKS_MAX = 256

#: One run in a batch: `(task_index, info, parameters, slotted, required, upstream_runs, upstream_states)`.
Wire = tuple[int, tuple[Any, ...], dict[str, Any], tuple[str, ...], frozenset[int], tuple[Any, ...], Any]
#: A reply: `(done, others, split)` (see the module's docstring).
Reply = tuple[
    list[tuple[int, Any, int, "float | None", float, Any]],
    list[tuple[int, bytes, "str | None"]],
    list[int],
]


def worker_main(conn: Connection, progress: Any, stop: Any, setup: bytes) -> None:
    """The worker process's main loop.

    `setup` is the pickle of `(initializer, initargs, preload)`, `preload` naming
    modules to import before the worker reports ready (cloudpickle, when runs will
    likely need it to load their tasks: an import on the first run would delay it).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the flow's to handle
    try:
        # Inside the `try`: an initializer that cannot be unpickled here is reported
        # like one that raises, not as a worker that silently failed to start.
        initializer, initargs, preload = loads(setup)
        for module in preload:
            importlib.import_module(module)
        if initializer is not None:
            initializer(*initargs)
    except BaseException:  # noqa: BLE001 - a failed initializer is reported to the parent
        conn.send_bytes(INIT_FAILED + traceback.format_exc().encode("utf-8", "replace"))
        return
    from ._nested import NestedRunner

    # Runs that a task submits from inside this worker run here, in threads.
    # A thread reads the pipe while the worker runs a batch, so that the parent never
    # waits to write the next one (and never deadlocks with a worker that writes a
    # large reply while the parent writes to it).
    inbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
    reader = threading.Thread(
        target=_read, args=(conn, inbox), name="taskrunners-processes-reader", daemon=True
    )
    reader.start()
    with NestedRunner() as nested, using_runner(nested):
        conn.send_bytes(READY)
        try:
            while True:
                message = inbox.get()
                if not message:
                    break
                _run_batch(conn, progress, stop, message, nested)
        finally:
            conn.close()


def _read(conn: Connection, inbox: queue.SimpleQueue[bytes]) -> None:
    """Move the messages of the parent into `inbox`, then an empty one at the end."""
    try:
        while True:
            message = conn.recv_bytes()
            inbox.put(message)
            if not message:
                return
    except (EOFError, OSError):
        inbox.put(b"")


def _run_batch(conn: Connection, progress: Any, stop: Any, message: bytes, nested: NestedRunner) -> None:
    blobs, numbers, payload = pickle.loads(message)
    done: list[Any] = []
    others: list[Any] = []
    try:
        wires: list[Wire] = loads(payload)
    except BaseException as exc:  # noqa: BLE001 - any unpickling failure is reported to the parent
        if len(numbers) > 1:  # find the culprit: the parent sends the runs one by one
            _send(conn, pickle.dumps(([], [], list(numbers)), _PROTOCOL))
        else:
            others.append((numbers[0], _unloadable(exc), None))
            _send(conn, pickle.dumps((done, others, []), _PROTOCOL))
        return
    tasks = [_load_task(blob) for blob in blobs]
    execute = RunSpec.execute
    sink = _LogSink(conn)
    run_info = TaskRunInfo.from_wire
    flushed = time.monotonic()
    for position, (index, info, parameters, slotted, required, upstream_runs, states) in enumerate(wires):
        number = info[0]
        task = tasks[index]
        if isinstance(task, BaseException):
            others.append((number, _unloadable(task), None))
            continue
        progress.value = sink.number = number
        if stop.value:  # an interrupt: report what ran, hand back the rest unstarted
            progress.value = -1
            rest = [wire[1][0] for wire in wires[position:]]
            conn.send_bytes(pickle.dumps((done, others, rest), _PROTOCOL))
            return
        # The wire's pieces are already a tuple and a frozenset: build the spec directly.
        upstream = tuple(run_info(run) for run in upstream_runs) if upstream_runs else ()
        spec = RunSpec(task, run_info(info), parameters, slotted, required, upstream)
        state = execute(spec, states, None, None, sink)  # `nested` is current: tasks submit to it
        if nested.submitted:
            nested.wait_idle()  # runs the task submitted, and did not wait for, end with it
            nested.submitted = 0
        if (
            state.type is _COMPLETED
            and type(state.result()) in _PLAIN
            and state.name == "Completed"
            and not state.message  # a State the task returned keeps its message
            and not state.logs
        ):
            done.append((number, state.result(), state.attempt, state.started, state.timestamp, state.where))
        else:
            others.append(_other(spec, number, state))
        now = time.monotonic()
        if now - flushed > FLUSH_SECONDS:
            _send(conn, pickle.dumps((done, others, []), _PROTOCOL))
            done, others = [], []
            flushed = now
    progress.value = -1
    if done or others:
        _send(conn, pickle.dumps((done, others, []), _PROTOCOL))


_send_lock = threading.Lock()


def _send(conn: Connection, data: bytes) -> None:
    """Send one message to the parent (a task's thread may be sending log records)."""
    with _send_lock:
        conn.send_bytes(data)


class _LogSink:
    """Sends the log records of the run being executed to the parent at once."""

    __slots__ = ("conn", "number")

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.number = -1

    def __call__(self, records: tuple[dict[str, Any], ...]) -> None:
        _send(self.conn, LOGS + pickle.dumps((self.number, records), _PROTOCOL))


def _load_task(blob: bytes) -> Task[Any, Any] | BaseException:
    task = _TASKS.get(blob)
    if task is None:
        try:
            task = loads(blob)
        except BaseException as exc:  # noqa: BLE001 - any unpickling failure crashes that run
            return exc
        if len(_TASKS) >= _TASKS_MAX:
            _TASKS.clear()
        _TASKS[blob] = task
    return task


def _unloadable(exc: BaseException) -> bytes:
    error = RuntimeError(
        f"the worker process could not unpickle the run: {type(exc).__name__}: {exc}. A task and "
        "its arguments must be importable or picklable by value in the worker."
    )
    return dumps(tuple_fields(State(StateType.FAILED, exception=error)))


def _other(spec: RunSpec, number: int, state: State[Any]) -> tuple[int, bytes, str | None]:
    """The reply entry of a run that did not complete with a plain value."""
    try:  # the traceback's text travels inside the exception (`State.to_wire`)
        return number, dumps(tuple_fields(state)), None
    except Exception as exc:  # noqa: BLE001 - a return value that cannot leave (an exception always can)
        return number, dumps(tuple_fields(spec.result_not_serializable(state, exc))), None


def tuple_fields(state: State[Any]) -> tuple[Any, ...]:
    """The wire tuple of `state` (`State.to_wire`): its exception arrives as itself or
    as a `taskrunners.RemoteError` stand-in."""
    return state.to_wire()
